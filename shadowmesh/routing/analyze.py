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
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from shadowmesh.model.resources import (
    Destination,
    DestinationRule,
    Resource,
    VirtualService,
    fqdn,
    resource_key,
)
from shadowmesh.routing.inventory import Inventory, build_inventory, rule_host
from shadowmesh.routing.table import applies_to_mesh

Level = Literal["Error", "Warning", "Info"]
Key = tuple[str, str, str]


@dataclass(frozen=True)
class Message:
    code: str
    level: Level
    key: Key  # (kind, namespace, name) of the resource the message is about
    text: str

    def __str__(self) -> str:
        """As istioctl prints it: ``Error [IST0101] (VirtualService default/httpbin) ...``."""
        kind, namespace, name = self.key
        return f"{self.level} [{self.code}] ({kind} {namespace}/{name}) {self.text}"


def analyze(resources: Iterable[Resource]) -> list[tuple[Key, str]]:
    return [(m.key, m.text) for m in analyze_messages(resources)]


def analyze_messages(resources: Iterable[Resource]) -> list[Message]:
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
    return list(found)


def _quote(value: str) -> str:
    """Go's %q for the strings that occur here."""
    return json.dumps(value, ensure_ascii=False)


def _virtual_service(vs: VirtualService, inventory: Inventory) -> Iterator[Message]:
    key = resource_key(vs)
    for http in vs.http:
        for d in http.route:
            yield from _destination(key, d.destination, vs.meta.namespace, inventory, "host")
        for m in http.mirrors:
            yield from _destination(key, m.destination, vs.meta.namespace, inventory, "mirror")


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
    info = inventory.services.get(rule_host(rule))
    if info is None:
        yield Message(
            "IST0174",
            "Warning",
            key,
            f"The host {rule.host} defined in the DestinationRule does not match any services "
            "in the mesh.",
        )
        return
    for subset in rule.subsets:
        if not info.selects_any(subset.labels):
            yield Message(
                "IST0173",
                "Error",
                key,
                f"The Subset {subset.name} defined in the DestinationRule does not select any "
                "pods. Which may lead to 503 UH (NoHealthyUpstream).",
            )


def _host_key(host: str, namespace: str) -> str:
    return host.lower() if host.startswith("*") else fqdn(host, namespace)
