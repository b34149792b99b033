"""Cross-reference checks, worded as ``istioctl analyze`` words them.

These are warnings at apply time, never errors: resources may arrive in any order, so a route to
a subset whose DestinationRule comes in the next file must still apply. Messages, as Istio's
``pkg/config/analysis/msg/messages.yaml`` defines them:

- IST0101 ReferencedResourceNotFound: a route or mirror to an unknown host, host:port, or
  host+subset (the host as written in the VirtualService);
- IST0109 ConflictingMeshGatewayVirtualServiceHosts: two VirtualServices claim one host
  (shadowmesh uses the first by namespace/name);
- IST0112 VirtualServiceDestinationPortSelectorRequired: a destination without a port to a
  service with several;
- IST0173 DestinationRuleSubsetNotSelectPods: a subset with no endpoints (503 UH at run time);
- IST0174 UnknownDestinationRuleHost: a DestinationRule for a host no Service has.

And one of shadowmesh's own, since Istio's proxies never share an address with a workload:

- SM0001 EndpointIsThisProxy: a Service's endpoint is one of the proxy's own listeners (a
  Service port on ``--bind``, a Gateway's on ``--gateway-bind``, the outbound or the admin
  port), so whatever is routed or mirrored to it loops back (the data plane then answers 508,
  see ``dataplane/request.py``);
- SM0002 IngressPortConflict: Gateway servers on one port, some with TLS and some without; one
  listener cannot be both, so the plain-text ones are not served.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from shadowmesh.model.resources import (
    Destination,
    DestinationRule,
    Resource,
    ServiceEntry,
    VirtualService,
    fqdn,
    resource_key,
)
from shadowmesh.routing.ingress import admits, ingress_ports
from shadowmesh.routing.inventory import Inventory, build_inventory, host_match, rule_host
from shadowmesh.routing.table import applies_to_mesh

Level = Literal["Error", "Warning", "Info"]
Key = tuple[str, str, str]


@dataclass(frozen=True)
class Message:
    code: str
    level: Level
    key: Key  # (kind, namespace, name) of the resource the message is about
    text: str
    related: tuple[Key, ...] = ()  # other resources it is about (an apply of one reports it)

    def __str__(self) -> str:
        """As istioctl prints it: ``Error [IST0101] (VirtualService default/httpbin) ...``."""
        kind, namespace, name = self.key
        return f"{self.level} [{self.code}] ({kind} {namespace}/{name}) {self.text}"

    def as_json(self) -> dict[str, str]:
        """As ``istioctl analyze -o json`` gives it (code, level, origin, message), with the log
        line."""
        kind, namespace, name = self.key
        origin = f"{kind} {namespace}/{name}"
        return {
            "code": self.code,
            "level": self.level,
            "origin": origin,
            "message": self.text,
            "line": str(self),
        }


@dataclass(frozen=True)
class OwnListeners:
    """Where the proxy itself listens: every Service port on ``bind``, every Gateway server's
    port on ``gateway_bind`` (none if empty), and ``others`` (the outbound and admin
    addresses)."""

    bind: str
    others: tuple[tuple[str, int], ...] = ()
    gateway_bind: str = ""


def analyze(
    resources: Iterable[Resource], own: OwnListeners | None = None
) -> list[tuple[Key, str]]:
    return [(m.key, m.text) for m in analyze_messages(resources, own)]


def analyze_messages(
    resources: Iterable[Resource], own: OwnListeners | None = None
) -> list[Message]:
    inventory = build_inventory(resources)
    found: dict[Message, None] = {}  # an ordered set: one line per distinct finding
    for vs in inventory.virtual_services:
        for message in _virtual_service(vs, inventory):
            found[message] = None
    for message in _conflicting_hosts(inventory):
        found[message] = None
    for rule in inventory.all_rules:
        for message in _destination_rule(rule, inventory):
            found[message] = None
    if own is not None:
        for message in _own_endpoints(inventory, own):
            found[message] = None
    for message in _ingress(inventory):
        found[message] = None
    return list(found)


def _ingress(inventory: Inventory) -> Iterator[Message]:
    """SM0002 IngressPortConflict: a port whose servers cannot all be served on one listener."""
    for ingress in ingress_ports(inventory.gateways).values():
        for note in ingress.notes:
            keys = [resource_key(g) for g, _ in ingress.servers]
            for dropped in ingress.dropped:
                namespace, _, name = dropped.partition("/")
                keys.append(("Gateway", namespace, name))
            for key in dict.fromkeys(keys):
                yield Message("SM0002", "Warning", key, note)


def _quote(value: str) -> str:
    """Go's %q for the strings that occur here."""
    return json.dumps(value, ensure_ascii=False)


def _virtual_service(vs: VirtualService, inventory: Inventory) -> Iterator[Message]:
    key = resource_key(vs)
    yield from _gateways(key, vs, inventory)
    for http in vs.http:
        for d in http.route:
            yield from _destination(key, d.destination, vs.meta.namespace, inventory, "host")
        for m in http.mirrors:
            yield from _destination(key, m.destination, vs.meta.namespace, inventory, "mirror")


def _gateways(key: Key, vs: VirtualService, inventory: Inventory) -> Iterator[Message]:
    """istioctl's GatewayAnalyzer: each named Gateway exists and admits one of the hosts."""
    if not vs.gateways:
        return
    by_key = {g.key: g for g in inventory.gateways}
    for written, resolved in zip(vs.gateways, vs.bound_gateways(), strict=True):
        if written == "mesh":
            continue
        gateway = by_key.get(resolved)
        if gateway is None:
            yield _not_found(key, "gateway", written)
        if gateway is None or not any(
            admits(gateway, server, vs, host) for server in gateway.servers for host in vs.hosts
        ):
            hosts = "[" + " ".join(vs.hosts) + "]"
            yield Message(
                "IST0132",
                "Warning",
                key,
                f"one or more host {hosts} defined in VirtualService {vs.meta.namespace}/"
                f"{vs.meta.name} not found in Gateway {resolved}.",
            )


def _destination(
    key: Key, d: Destination, namespace: str, inventory: Inventory, role: Literal["host", "mirror"]
) -> Iterator[Message]:
    host = fqdn(d.host, namespace)
    info = inventory.services.get(host)
    if info is None:
        what = "host" if role == "host" else "mirror host"
        yield _not_found(key, what, d.host)
    elif d.port is None and len(info.ports) > 1:
        ports = " ".join(str(p) for p in info.ports)
        yield Message(
            "IST0112",
            "Error",
            key,
            f"This VirtualService routes to a service {_quote(d.host)} that exposes multiple "
            f"ports [{ports}]. Specifying a port in the destination is required to disambiguate.",
        )
    elif d.port is not None and d.port not in info.ports:
        yield _not_found(key, "host:port", f"{d.host}:{d.port}")
    if d.subset and inventory.subset(host, d.subset) is None:
        yield _not_found(key, f"{role}+subset in destinationrule", f"{d.host}+{d.subset}")


def _not_found(key: Key, what: str, value: str) -> Message:
    return Message("IST0101", "Error", key, f"Referenced {what} not found: {_quote(value)}")


def _conflicting_hosts(inventory: Inventory) -> Iterator[Message]:
    claims: dict[str, list[VirtualService]] = {}
    for vs in inventory.virtual_services:
        if applies_to_mesh(vs):
            for host in dict.fromkeys(_host_key(h, vs.meta.namespace) for h in vs.hosts):
                claims.setdefault(host, []).append(vs)
    for host, owners in claims.items():
        if len(owners) < 2:
            continue
        names = ",".join(f"{v.meta.namespace}/{v.meta.name}" for v in owners)
        for vs in owners:
            yield Message(
                "IST0109",
                "Error",
                resource_key(vs),
                f"The VirtualServices {names} associated with mesh gateway define the same host "
                f"{host} which can lead to undefined behavior. This can be fixed by merging the "
                "conflicting VirtualServices into a single resource.",
            )


def _destination_rule(rule: DestinationRule, inventory: Inventory) -> Iterator[Message]:
    key = resource_key(rule)
    pattern = rule_host(rule)
    covered = [i for h, i in inventory.services.items() if host_match(pattern, h) is not None]
    if not covered:
        yield Message(
            "IST0174",
            "Warning",
            key,
            f"The host {rule.host} defined in the DestinationRule does not match any services "
            "in the mesh.",
        )
        return
    # A wildcard rule's subsets are judged on the hosts it is the rule of (a more specific
    # rule may take over some); a subset selecting nothing on all of them is reported.
    mine = [i for i in covered if inventory.rules.get(i.fqdn) is rule] or covered
    for subset in rule.subsets:
        if not any(info.selects_any(subset.labels) for info in mine):
            yield Message(
                "IST0173",
                "Error",
                key,
                f"The Subset {subset.name} defined in the DestinationRule does not select any "
                "pods. Which may lead to 503 UH (NoHealthyUpstream).",
            )


def _host_key(host: str, namespace: str) -> str:
    return host.lower() if host.startswith("*") else fqdn(host, namespace)


def _own_endpoints(inventory: Inventory, own: OwnListeners) -> Iterator[Message]:
    ports = sorted({p for info in inventory.services.values() for p in info.ports})
    listeners = [(own.bind, p) for p in ports] + list(own.others)
    if own.gateway_bind:
        listeners += [(own.gateway_bind, s.port) for g in inventory.gateways for s in g.servers]
    for info in inventory.services.values():
        for port, members in sorted(info.members.items()):
            for member in members:
                endpoint = member.endpoint
                if not any(
                    endpoint.port == lport and _same_host(endpoint.address, lhost)
                    for lhost, lport in listeners
                ):
                    continue
                namespace, _, name = member.workload.partition("/")
                service = resource_key(info.service)
                inline = (
                    isinstance(info.service, ServiceEntry) and not info.service.workload_selector
                )
                yield Message(
                    "SM0001",
                    "Warning",
                    ("ServiceEntry" if inline else "WorkloadEntry", namespace, name),
                    f"The endpoint {endpoint} of {service[0]} {service[1]}/{service[2]} port "
                    f"{port} is one of this proxy's own listeners: requests routed or mirrored to "
                    "it come back to the proxy and are answered 508 Loop Detected.",
                    related=(service,),
                )


def _same_host(address: str, listening: str) -> bool:
    """Whether a connection to ``address`` reaches a socket bound to ``listening``."""
    if address == listening:
        return True
    a, listen = _ip(address), _ip(listening)
    if a is None or listen is None:
        return False
    if listen.is_unspecified:  # 0.0.0.0 or ::, every local address: loopback at least
        return a.is_loopback or a.is_unspecified
    return a == listen


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if host == "localhost":
        return ipaddress.ip_address("127.0.0.1")
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
