"""Services, the endpoints they select and the subsets that split them, as Istio resolves them.

The route table and ``analyze()`` read the same inventory, so a subset that ``analyze()`` calls
empty is exactly the subset that answers 503 UH at run time.

DestinationRules apply by host with Istio's precedence (``applicable_rules``), wildcard hosts
included. A WorkloadEntry's (or ServiceEntry endpoint's) ``weight`` is its endpoints'
load-balancing weight, unset or 0 meaning 1 (Istio's ``GetLoadBalancingWeight``); each address
a DNS endpoint resolves to carries the endpoint's weight, as Envoy's STRICT_DNS hosts do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shadowmesh.model.resources import (
    CLUSTER_DOMAIN,
    DestinationRule,
    Gateway,
    Resource,
    Service,
    ServiceEntry,
    ServicePort,
    Subset,
    VirtualService,
    WorkloadEntry,
    fqdn,
)
from shadowmesh.routing.decision import Endpoint


@dataclass(frozen=True, slots=True)
class Member:
    """One WorkloadEntry as an endpoint of one Service port, with the labels subsets select on."""

    endpoint: Endpoint
    labels: Mapping[str, str]
    workload: str  # namespace/name, for describe()
    weight: int = 1  # load-balancing weight, >= 1


@dataclass(frozen=True)
class ServiceInfo:
    """A Service, or one host of a ServiceEntry, with its endpoints per port."""

    service: Service | ServiceEntry
    fqdn: str
    # Per port number: the selected WorkloadEntries (or ServiceEntry endpoints) for it.
    members: Mapping[int, tuple[Member, ...]]
    ports: tuple[int, ...]

    @property
    def only_port(self) -> int | None:
        ports = self.ports
        return ports[0] if len(ports) == 1 else None

    def subset_members(self, port: int, labels: Mapping[str, str]) -> tuple[Member, ...]:
        return tuple(m for m in self.members.get(port, ()) if _superset(m.labels, labels))

    def selects_any(self, labels: Mapping[str, str]) -> bool:
        return any(self.subset_members(port, labels) for port in self.ports)


@dataclass(frozen=True)
class Inventory:
    services: Mapping[str, ServiceInfo]  # by FQDN
    rules: Mapping[str, DestinationRule]  # by host FQDN: the one rule that applies to it
    virtual_services: tuple[VirtualService, ...]  # sorted by (namespace, name)
    all_rules: tuple[DestinationRule, ...]  # sorted by (namespace, name)
    # Names a ServiceEntry needs resolved (DNS, DNS_ROUND_ROBIN), for the resolver.
    dns_names: frozenset[str] = frozenset()
    gateways: tuple[Gateway, ...] = ()  # sorted by (namespace, name)
    # A host that several ServiceEntries declare (and no Service has): every one of them,
    # by namespace/name, the first being ``services[host]``. Which one a route reaches
    # depends on the route's namespace (``ClusterSet.target``), as each Istio proxy sees only
    # the entries exported to its own.
    entry_choices: Mapping[str, tuple[ServiceInfo, ...]] = field(default_factory=dict)

    def subset(self, host: str, name: str) -> Subset | None:
        rule = self.rules.get(host)
        if rule is None:
            return None
        return next((s for s in rule.subsets if s.name == name), None)


def build_inventory(
    resources: Iterable[Resource], dns: Mapping[str, tuple[str, ...]] | None = None
) -> Inventory:
    """``dns``: the addresses each name resolved to last (the resolver's snapshot)."""
    services: list[Service] = []
    entries: list[ServiceEntry] = []
    workloads: list[WorkloadEntry] = []
    virtual_services: list[VirtualService] = []
    rules: list[DestinationRule] = []
    gateways: list[Gateway] = []
    for r in resources:
        if isinstance(r, Gateway):
            gateways.append(r)
        elif isinstance(r, Service):
            services.append(r)
        elif isinstance(r, ServiceEntry):
            entries.append(r)
        elif isinstance(r, WorkloadEntry):
            workloads.append(r)
        elif isinstance(r, VirtualService):
            virtual_services.append(r)
        elif isinstance(r, DestinationRule):
            rules.append(r)
    # Sorted, so the result never depends on the order resources were applied in.
    services.sort(key=_by_key)
    workloads.sort(key=_by_key)
    virtual_services.sort(key=_by_key)
    rules.sort(key=_by_key)
    entries.sort(key=_by_key)
    infos = {s.host: _service_info(s, workloads) for s in services}
    names: set[str] = set()
    choices: dict[str, list[ServiceInfo]] = {}
    for entry in entries:
        if "~" in entry.export_to:
            continue  # exported to no one: not even its own namespace's clients see it
        for host in entry.hosts:
            # A Service of the same name wins; of ServiceEntries, the route's namespace picks.
            if host not in infos or host in choices:
                info = _entry_info(entry, host, workloads, dns or {}, names)
                infos.setdefault(host, info)
                choices.setdefault(host, []).append(info)
    return Inventory(
        services=infos,
        rules=applicable_rules(rules, infos),
        virtual_services=tuple(virtual_services),
        all_rules=tuple(rules),
        dns_names=frozenset(names),
        gateways=tuple(sorted(gateways, key=_by_key)),
        entry_choices={h: tuple(c) for h, c in choices.items() if len(c) > 1},
    )


def rule_host(rule: DestinationRule) -> str:
    return fqdn(rule.host, rule.meta.namespace)


def host_namespace(host: str) -> str | None:
    """``httpbin.ns.svc.cluster.local`` is in ``ns``; a host outside the cluster is in none."""
    suffix = "." + CLUSTER_DOMAIN
    if not host.endswith(suffix):
        return None
    labels = host[: -len(suffix)].split(".")
    return labels[1] if len(labels) == 2 else None


def _by_key(r: Resource) -> tuple[str, str]:
    return (r.meta.namespace, r.meta.name)


def _superset(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _service_info(service: Service, workloads: list[WorkloadEntry]) -> ServiceInfo:
    # An empty selector selects nothing: Kubernetes creates no endpoints for it.
    selected = [
        w
        for w in workloads
        if service.selector
        and w.meta.namespace == service.meta.namespace
        and _superset(w.labels, service.selector)
    ]
    members = {p.port: _members(p, selected) for p in service.ports}
    ports = tuple(p.port for p in service.ports)
    return ServiceInfo(service=service, fqdn=service.host, members=members, ports=ports)


def _entry_info(
    entry: ServiceEntry,
    host: str,
    workloads: list[WorkloadEntry],
    dns: Mapping[str, tuple[str, ...]],
    names: set[str],
) -> ServiceInfo:
    """One ServiceEntry host: its endpoints per port, by the entry's ``resolution``.

    STATIC: ``endpoints`` (or the WorkloadEntries ``workloadSelector`` selects in its
    namespace). DNS: every address each endpoint (or, without endpoints, the host) resolved to;
    DNS_ROUND_ROBIN: the first. A name not resolved yet has no endpoint (503 UH) until the
    resolver has it. NONE: none (its WorkloadEntries' if it selects any): its clusters are
    ORIGINAL_DST, forwarding to the request's own destination, and a Gateway, which has none,
    falls back to these endpoints, as istiod's ``convertResolution`` does. An endpoint's port
    is its own port of the port's name, else the port's ``targetPort``, else its number.
    """
    label = f"{entry.meta.namespace}/{entry.meta.name}"

    def addresses(name: str) -> tuple[str, ...]:
        if entry.resolution == "STATIC" or validate_ip(name):
            return (name,)
        if name.startswith("*"):
            return ()
        names.add(name)
        found = dns.get(name, ())
        return found[:1] if entry.resolution == "DNS_ROUND_ROBIN" else found

    sources: list[tuple[str, Mapping[str, int], Mapping[str, str], str, int]] = []
    if entry.workload_selector is not None:
        for w in workloads:
            if w.meta.namespace == entry.meta.namespace and _superset(
                w.labels, entry.workload_selector
            ):
                origin = f"{w.meta.namespace}/{w.meta.name}"
                sources.append((w.address, w.ports, w.labels, origin, w.weight or 1))
    elif entry.endpoints:
        # Istio names an inline endpoint as a WorkloadEntry ``<entry>-<index>`` (its metrics'
        # destination_workload; serviceentry/conversion.go).
        sources = [
            (e.address, e.ports, e.labels, f"{label}-{i}", e.weight or 1)
            for i, e in enumerate(entry.endpoints)
        ]
    elif entry.resolution not in ("STATIC", "NONE"):
        sources = [(host, {}, {}, label, 1)]
    members: dict[int, tuple[Member, ...]] = {}
    for port in entry.ports:
        found: list[Member] = []
        seen: set[Endpoint] = set()
        for address, own_ports, labels, origin, weight in sources:
            if not address:
                continue  # in another network, behind its gateway (model/workload.py)
            number = own_ports.get(port.name) or port.target_port or port.number
            for ip in addresses(address):
                endpoint = Endpoint(ip, number)
                if endpoint not in seen:
                    seen.add(endpoint)
                    found.append(Member(endpoint, labels, origin, weight))
        members[port.number] = tuple(found)
    ports = tuple(p.number for p in entry.ports)
    return ServiceInfo(service=entry, fqdn=host, members=members, ports=ports)


def validate_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _members(port: ServicePort, workloads: list[WorkloadEntry]) -> tuple[Member, ...]:
    found: list[Member] = []
    seen: set[Endpoint] = set()
    for w in workloads:
        number = endpoint_port(port, w)
        if number is None or not w.address:  # no address: behind a network gateway
            continue
        endpoint = Endpoint(w.address, number)
        # Two entries on one address:port are one socket: count it once.
        if endpoint in seen:
            continue
        seen.add(endpoint)
        found.append(Member(endpoint, w.labels, f"{w.meta.namespace}/{w.meta.name}", w.weight or 1))
    return tuple(found)


def endpoint_port(port: ServicePort, workload: WorkloadEntry) -> int | None:
    """Where ``workload`` listens for ``port``; None when a named targetPort is missing.

    Istio: a WorkloadEntry port named like the Service port wins; then targetPort, a number
    or the name of a WorkloadEntry port; then the Service port number itself.
    """
    if port.name and port.name in workload.ports:
        return workload.ports[port.name]
    target = port.target_port
    if isinstance(target, int):
        return target
    if isinstance(target, str):
        return workload.ports.get(target)
    return port.port


def applicable_rules(
    rules: list[DestinationRule], hosts: Iterable[str]
) -> dict[str, DestinationRule]:
    """Per host, the one DestinationRule that applies to it, by Istio's precedence.

    A rule's host may be a wildcard (``*.local``, ``*.ns.svc.cluster.local``): it covers every
    host under it, and the most specific host wins (an exact host, then the longest wildcard),
    as ``MostSpecificHostMatch`` picks. Istio looks in the client's namespace first, then the
    service's, then the root namespace; shadowmesh has no client namespace, so rules in the
    host's own namespace come first, then the others, first by namespace/name. A rule whose
    ``exportTo`` hides it from the host's namespace (the clients' stand-in) does not apply.
    """
    chosen: dict[str, DestinationRule] = {}
    for host in hosts:
        best: tuple[int, int, int] | None = None
        for index, rule in enumerate(rules):
            specificity = host_match(rule_host(rule), host)
            if specificity is None or not rule.visible_in(
                host_namespace(host) or rule.meta.namespace
            ):
                continue
            rank = (0 if rule.meta.namespace == host_namespace(host) else 1, -specificity, index)
            if best is None or rank < best:
                best = rank
                chosen[host] = rule
    return chosen


def host_match(pattern: str, host: str) -> int | None:
    """How specifically ``pattern`` (a host or ``*.suffix``) names ``host``; None if not.

    An exact name outranks every wildcard; a longer wildcard outranks a shorter one.
    """
    if pattern == host:
        return 1 << 16
    if pattern.startswith("*") and host.endswith(pattern[1:]):
        return len(pattern)
    return None
