"""The compiled route table: from a request's port and Host to a Forward or a Failure.

Everything that depends only on config is done in ``RouteTable.compile()``: host forms are
expanded into dicts, matches are compiled, destinations are resolved to clusters, balancers are
created. ``route()`` does dict look-ups, match evaluation and random draws, nothing more.

Host look-up, for a request on a Service port (or the outbound port, where the port comes from
the authority):
1. the Host, lower-cased without its port, in any form a client may use (short name, ``name.ns``,
   ``name.ns.svc``, FQDN) names a VirtualService host: that VirtualService;
2. it names a Service with that port: the Service's own route (a wildcard VirtualService host
   covering the Service's FQDN takes precedence), all endpoints, LEAST_REQUEST by default;
3. a wildcard VirtualService host (``*.example.com``) covers it: that VirtualService;
4. on a Service port only: the port's only Service, if exactly one Service has that port (as
   Istio's passthrough sends it to the original destination, which the listener stands for);
5. else 404 NR.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shadowmesh.model.comparison import Comparison, comparisons_for
from shadowmesh.model.resources import (
    HTTPRoute,
    Resource,
    Service,
    ServiceEntry,
    VirtualService,
    fqdn,
)
from shadowmesh.routing.answers import Answer
from shadowmesh.routing.clusters import Cluster, ClusterSet, Target, WeightedTargets
from shadowmesh.routing.comparing import CompareRule, compare_rules
from shadowmesh.routing.compile_policy import answer, block_lengths, route_policy
from shadowmesh.routing.decision import (
    NO_PEER,
    Decision,
    Endpoint,
    Failure,
    Forward,
    Peer,
    RequestView,
    Upstream,
)
from shadowmesh.routing.delegate import expand
from shadowmesh.routing.hosts import build_aliases, default_port, split_authority, wildcard_keys
from shadowmesh.routing.ingress import (
    GATEWAY_KEY,
    IngressPlan,
    admits,
    bound_to,
    ingress_ports,
)
from shadowmesh.routing.inventory import Inventory, ServiceInfo, build_inventory, host_namespace
from shadowmesh.routing.match import RequestFacts, RouteMatch, describe_match, selects
from shadowmesh.routing.policy import NO_POLICY, RoutePolicy

NO_ROUTE = Failure(404, "NR")
MESH = "mesh"
# A proxy's workload labels when it is given none (``serve --workload-labels``): a match with
# ``sourceLabels`` then applies nowhere.
NO_LABELS: Mapping[str, str] = {}
NO_HEALTHY_UPSTREAM = b"no healthy upstream"


@dataclass(frozen=True, slots=True, eq=False)
class Mirror:
    target: Target
    percentage: float


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRoute:
    name: str
    match: RouteMatch
    destinations: WeightedTargets
    mirrors: tuple[Mirror, ...]
    timeout: float | None
    # The compiled policy (routing.policy) when every destination and match block gets the
    # same one, the common case; else ``policies``: per match block (only when a prefix
    # rewrite's matched portion differs between blocks), each destination's.
    policy: RoutePolicy = NO_POLICY
    policies: tuple[Mapping[Target, RoutePolicy], ...] | None = None
    # A redirect or directResponse, answered here (per match block as ``policies``).
    answers: tuple[Answer, ...] | None = None
    per_block: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class VirtualHost:
    name: str  # the host it was declared for, FQDN or wildcard
    source: str  # "VirtualService default/httpbin" or "Service default/httpbin"
    routes: tuple[CompiledRoute, ...]


_NO_HOSTS: Mapping[str, VirtualHost] = {}
# The virtual host of an ingress port whose servers ask for ``tls.httpsRedirect``.
HTTPS_REDIRECT = VirtualHost("*", "httpsRedirect", ())


def _redirect(request: RequestView) -> Failure:
    """Envoy's ``require_tls: ALL``: 301 to ``https://`` + the Host as sent + the path
    (``createSslRedirectPath``: a port in the Host stays)."""
    return Failure(301, "-", cluster="", location=f"https://{request.authority}{request.path}")


@dataclass(frozen=True, eq=False)
class IngressHosts:
    plan: IngressPlan
    exact: Mapping[str, VirtualHost]
    wildcards: Mapping[str, VirtualHost]


# Compiles and describe() run on the config thread beside the serving loop. Compiled, a loop
# over 10,000 VirtualServices or virtual hosts would hold the GIL from its start to its end
# (mypyc code never offers it to another thread: 130 ms for describe() at that size), so the
# long loops let go of it every so many.
_GIL_EVERY = 256


def _ingress_hosts(
    inventory: Inventory, clusters: ClusterSet, unit_for: GatewayUnit | None = None
) -> dict[int, IngressHosts]:
    """Per ingress port, the hosts of the VirtualServices bound to its servers' Gateways."""
    delegates = delegates_of(inventory)
    compile_unit: GatewayUnit = (
        unit_for if unit_for is not None else lambda v, g: host_unit(v, clusters, delegates, g)
    )
    out: dict[int, IngressHosts] = {}
    for port, ingress in ingress_ports(inventory.gateways).items():
        exact: dict[str, VirtualHost] = {}
        wildcards: dict[str, VirtualHost] = {}
        units: dict[tuple[str, str, str], HostUnit] = {}  # one compile per VS and Gateway
        for i, vs in enumerate(inventory.virtual_services):
            if i % _GIL_EVERY == _GIL_EVERY - 1:
                time.sleep(0)  # releases the GIL (see _GIL_EVERY)
            for gateway, server in ingress.servers:
                if not bound_to(vs, gateway):
                    continue
                key = (vs.meta.namespace, vs.meta.name, gateway.key)
                if key not in units:
                    units[key] = compile_unit(vs, gateway.key)
                for host, vhost in units[key]:
                    name = admits(gateway, server, vs, host)
                    if name is not None:
                        found = wildcards if name.startswith("*") else exact
                        found.setdefault(name, vhost)
        out[port] = IngressHosts(ingress.plan, exact, wildcards)
    return out


_HOST_CACHE_SIZE = 4096


class RouteTable:
    """Immutable routing config plus per-cluster balancers; swap a whole table to change it."""

    def __init__(
        self,
        *,
        rng: random.Random,
        clusters: ClusterSet,
        aliases: Mapping[str, str],
        exact: Mapping[str, VirtualHost],
        wildcards: Mapping[str, VirtualHost],
        by_port: Mapping[int, Mapping[str, VirtualHost]],
        fallback: Mapping[int, VirtualHost],
        ports: frozenset[int] | None = None,
    ) -> None:
        self._rng = rng
        self._clusters = clusters
        self._aliases = aliases
        self._exact = exact
        self._wildcards = wildcards
        self._by_port = by_port
        self._fallback = fallback
        self._ports = frozenset(by_port) if ports is None else ports
        self.dns_names: frozenset[str] = frozenset()  # what the DNS resolver must look up
        # Whose sidecar this proxy is, as compiled for (``sourceLabels`` selected these).
        self.workload_labels: Mapping[str, str] = NO_LABELS
        # Ingress ports (Istio Gateways' servers): what each listener must be, and its hosts.
        self.ingress: Mapping[int, IngressPlan] = {}
        self._ingress: Mapping[int, IngressHosts] = {}
        self.shadow_skipped: Counter[str] = Counter()
        self.comparisons: tuple[Comparison, ...] = ()  # what the data plane captures for
        self.compare_rules: dict[str, CompareRule] = {}  # ... by primary cluster (the stream)
        # (listener port, authority as sent) -> (virtual host, service port). Clients send few
        # distinct authorities, so parsing and the alias lookups happen once per table, not
        # per request. Bounded: past the cap, lookups still work, uncached.
        self._hosts: dict[tuple[int | None, str, str], tuple[VirtualHost | None, int, str]] = {}

    @classmethod
    def compile(
        cls,
        resources: Iterable[Resource],
        *,
        rng: random.Random | None = None,
        dns: Mapping[str, tuple[str, ...]] | None = None,
        labels: Mapping[str, str] = NO_LABELS,
    ) -> RouteTable:
        """``dns``: each name a ServiceEntry resolves, to the addresses it resolved to last;
        ``labels``: the proxy's workload labels, which ``sourceLabels`` select."""
        rng = rng if rng is not None else random.Random()
        resources = list(resources)
        inventory = build_inventory(resources, dns)
        clusters = ClusterSet(inventory, rng)
        delegates = delegates_of(inventory)
        units = [
            host_unit(vs, clusters, delegates, MESH, labels) for vs in inventory.virtual_services
        ]

        def gateway_unit(vs: VirtualService, gateway: str) -> HostUnit:
            return host_unit(vs, clusters, delegates, gateway, labels)

        table = cls.assemble(resources, inventory, clusters, units, rng, gateway_unit)
        table.workload_labels = labels
        return table

    @classmethod
    def assemble(
        cls,
        resources: Iterable[Resource],
        inventory: Inventory,
        clusters: ClusterSet,
        units: Iterable[HostUnit],
        rng: random.Random,
        gateway_unit: GatewayUnit | None = None,
    ) -> RouteTable:
        """The table of ``inventory`` from the host units of its VirtualServices, in
        ``inventory.virtual_services`` order: ``compile()`` and the incremental compiler
        (``routing.compiler``, which keeps the units of what did not change) both end here."""
        exact, wildcards = _merge_units(units)
        aliases = build_aliases([*inventory.services, *exact])
        aliases.update(_entry_addresses(inventory, aliases))
        by_port = _service_hosts(inventory, clusters, exact, wildcards)
        table = cls(
            rng=rng,
            clusters=clusters,
            aliases=aliases,
            exact=exact,
            wildcards=wildcards,
            by_port=by_port,
            fallback=_fallbacks(inventory, by_port),
            # Listeners open for Service ports; ServiceEntry hosts are reached by the outbound
            # port (their hosts name other machines, and their ports are often 80 and 443).
            ports=frozenset(_listener_ports(inventory)),
        )
        table.dns_names = inventory.dns_names
        table.comparisons = tuple(comparisons_for(resources))
        table.compare_rules = compare_rules(table.comparisons, clusters)
        table._ingress = _ingress_hosts(inventory, clusters, gateway_unit)
        table.ingress = {port: i.plan for port, i in table._ingress.items()}
        return table

    @property
    def ports(self) -> frozenset[int]:
        return self._ports

    def route(
        self, listener_port: int | None, request: RequestView, peer: Peer = NO_PEER
    ) -> Decision:
        key = (listener_port, request.authority, request.scheme)
        found = self._hosts.get(key)
        if found is None:
            found = self._lookup(listener_port, key[1], key[2])
            if len(self._hosts) < _HOST_CACHE_SIZE:
                self._hosts[key] = found
        vhost, port, origin = found
        if vhost is None:
            return NO_ROUTE
        if vhost is HTTPS_REDIRECT:
            return _redirect(request)
        routes = vhost.routes
        if routes and not routes[0].match.blocks:
            route = routes[0]  # the common case: a route that fits all
            if route.answers is not None:
                return route.answers[0].answer(request, port)
            return self._forward(route, port, 0, origin, request, peer)
        facts = RequestFacts(request, port)
        for route in routes:
            if route.match.fits(facts):
                block = _block(route, facts) if route.per_block else 0
                if route.answers is not None:
                    return route.answers[block].answer(request, port)
                return self._forward(route, port, block, origin, request, peer)
        return NO_ROUTE

    def _lookup(
        self, listener_port: int | None, authority: str, scheme: str
    ) -> tuple[VirtualHost | None, int, str]:
        """The virtual host, the port routed on, and the host the request is going to (its
        original destination, for ORIGINAL_DST clusters; "" on a Gateway, which has none)."""
        host, authority_port = split_authority(authority)
        if listener_port is not None and listener_port >= GATEWAY_KEY:
            port = listener_port - GATEWAY_KEY
            return self._ingress_host(port, host), port, ""
        if listener_port is None:
            port = authority_port or default_port(scheme)
        else:
            port = listener_port
        vhost = self._virtual_host(host, port, listener_port is not None)
        return vhost, port, host.strip("[]")

    def _ingress_host(self, port: int, host: str) -> VirtualHost | None:
        ingress = self._ingress.get(port)
        if ingress is None:
            return None
        if ingress.plan.https_redirect:
            return HTTPS_REDIRECT
        vhost = ingress.exact.get(host) or ingress.exact.get(self._aliases.get(host, host))
        if vhost is None and ingress.wildcards:
            vhost = _wildcard_for(host, ingress.wildcards)
        return vhost

    def _virtual_host(self, host: str, port: int, on_listener: bool) -> VirtualHost | None:
        name = self._aliases.get(host, host)
        vhost = self._exact.get(name) or self._by_port.get(port, _NO_HOSTS).get(name)
        if vhost is None and self._wildcards:
            vhost = _wildcard_for(name, self._wildcards)
        if vhost is None and on_listener:
            vhost = self._fallback.get(port)
        return vhost

    def _forward(
        self,
        route: CompiledRoute,
        port: int,
        block: int,
        origin: str,
        request: RequestView,
        peer: Peer,
    ) -> Decision:
        target = route.destinations.pick(self._rng)
        if target is None:  # a route with no destination: validation refuses it, Envoy 404s
            return NO_ROUTE
        policies = route.policies
        policy = route.policy if policies is None else policies[block][target]
        name, cluster = target.resolve(port)
        if cluster is None:
            return Failure(
                503,
                "NC",
                cluster=name,
                headers=policy.local_headers,
                route_name=route.name,
                policy=_before_router(policy),
            )
        endpoint = _original_dst(cluster, origin, port)
        cookie = b""
        if endpoint is None:
            # consistentHash: Istio sets a route hash policy on single-destination routes only.
            hashing = cluster.policy.hashing
            if hashing is None or not route.destinations.single:
                endpoint = cluster.balancer.pick()
            else:
                key, cookie = hashing.hash_of(request, peer)
                endpoint = cluster.balancer.pick_hashed(key)
        if endpoint is None:
            return Failure(
                503,
                "UH",
                NO_HEALTHY_UPSTREAM,
                cluster=name,
                headers=policy.local_headers,
                route_name=route.name,
                policy=_before_router(policy),
            )
        primary = Upstream(name, endpoint, cluster.balancer)
        shadows = self._shadows(route.mirrors, port, origin) if route.mirrors else ()
        return Forward(primary, shadows, route.timeout, route.name, policy, cookie)

    def _shadows(self, mirrors: tuple[Mirror, ...], port: int, origin: str) -> tuple[Upstream, ...]:
        chosen: list[Upstream] = []
        for mirror in mirrors:
            # One independent draw per policy and request, as Envoy's runtime_fraction.
            if mirror.percentage < 100.0 and self._rng.random() * 100.0 >= mirror.percentage:
                continue
            name, cluster = mirror.target.resolve(port)
            if cluster is None:
                self.shadow_skipped["no_cluster"] += 1
                continue
            endpoint = _original_dst(cluster, origin, port)
            if endpoint is None:
                endpoint = cluster.balancer.pick()
            if endpoint is None:
                self.shadow_skipped["no_endpoint"] += 1
                continue
            chosen.append(Upstream(name, endpoint, cluster.balancer))
        return tuple(chosen)

    def clusters(self) -> Iterable[Cluster]:
        """Every cluster by its Envoy name (their outlier detectors: ``observe.upstreamstats``)."""
        return self._clusters.by_name.values()

    def cluster(self, name: str) -> Cluster | None:
        """The cluster of that name, with its members: telemetry's labels, not the request path."""
        return self._clusters.by_name.get(name)

    def describe(self) -> dict[str, Any]:
        """A JSON-able dump in the spirit of Envoy's config_dump."""
        return {**self.describe_routes(), **self.describe_state()}

    def describe_routes(self) -> dict[str, Any]:
        """The part of ``describe()`` that depends on the config alone: the same for the whole
        life of a table (so ``/config_dump`` encodes it once per table)."""
        return {
            "listeners": [self._describe_listener(p) for p in sorted(self._ports)],
            "virtualHosts": _describe_vhosts(self._vhost_domains()),
            "ingress": [_describe_ingress(i) for _, i in sorted(self._ingress.items())],
            # Envoy's bootstrap node labels: what the routes' sourceLabels were matched with.
            "node": {"labels": dict(self.workload_labels)},
        }

    def describe_state(self) -> dict[str, Any]:
        """The rest of ``describe()``: clusters with their requests in flight, shadows skipped."""
        return {
            "clusters": [_describe_cluster(c) for c in self._clusters.by_name.values()],
            "shadowSkipped": dict(self.shadow_skipped),
        }

    def _describe_listener(self, port: int) -> dict[str, Any]:
        fallback = self._fallback.get(port)
        return {
            "port": port,
            "services": sorted(self._by_port[port]),
            "fallback": fallback.name if fallback is not None else None,
        }

    def _vhost_domains(self) -> list[tuple[VirtualHost, list[str]]]:
        """Each virtual host with the host forms that reach it (insertion-ordered, deduplicated)."""
        domains: dict[VirtualHost, dict[str, None]] = {}
        for alias, name in sorted(self._aliases.items()):
            vhost = self._exact.get(name)
            reached = [vhost] if vhost is not None else []
            reached += [hosts[name] for hosts in self._by_port.values() if name in hosts]
            for v in reached:
                domains.setdefault(v, {})[alias] = None
        for pattern, v in sorted(self._wildcards.items()):
            domains.setdefault(v, {})[pattern] = None
        return [(v, list(d)) for v, d in domains.items()]


# What one VirtualService contributes to the host maps: (host, its virtual host) per host,
# a wildcard host starting with "*".
HostUnit = tuple[tuple[str, VirtualHost], ...]

# How a VirtualService bound to a Gateway (by key) is compiled: ``host_unit``, or the
# incremental compiler's cache of it (routing.compiler).
GatewayUnit = Callable[[VirtualService, str], HostUnit]


def delegates_of(inventory: Inventory) -> dict[tuple[str, str], VirtualService]:
    """The delegate VirtualServices (no hosts) by (namespace, name): what roots merge in."""
    return {(v.meta.namespace, v.meta.name): v for v in inventory.virtual_services if v.is_delegate}


def host_unit(
    vs: VirtualService,
    clusters: ClusterSet,
    delegates: Mapping[tuple[str, str], VirtualService],
    gateway: str = MESH,
    labels: Mapping[str, str] = NO_LABELS,
) -> HostUnit:
    """The hosts of one VirtualService bound to ``gateway`` -> its compiled routes.

    It depends on ``vs``, ``clusters`` and the delegates its routes name, nothing else. A
    VirtualService whose ``exportTo`` hides it from the namespace of the host it names is not
    applied there (shadowmesh's clients stand in that namespace, having none of their own).
    """
    if vs.is_delegate or gateway not in vs.bound_gateways():
        return ()
    routes: tuple[CompiledRoute, ...] | None = None
    unit: list[tuple[str, VirtualHost]] = []
    for host in vs.hosts:
        name = host.lower() if host.startswith("*") else fqdn(host, vs.meta.namespace)
        if not vs.visible_in(host_namespace(name) or vs.meta.namespace):
            continue
        if routes is None:
            routes = _compile_routes(vs, clusters, gateway, delegates, labels)
        source = f"VirtualService {vs.meta.namespace}/{vs.meta.name}"
        unit.append((name, VirtualHost(name, source, routes)))
    return tuple(unit)


def _merge_units(
    units: Iterable[HostUnit],
) -> tuple[dict[str, VirtualHost], dict[str, VirtualHost]]:
    """The host maps: the first VirtualService by namespace/name wins a host."""
    exact: dict[str, VirtualHost] = {}
    wildcards: dict[str, VirtualHost] = {}
    for unit in units:
        for name, vhost in unit:
            found = wildcards if name.startswith("*") else exact
            found.setdefault(name, vhost)
    return exact, wildcards


def applies_to_mesh(vs: VirtualService) -> bool:
    """A VirtualService bound to gateways only does not route sidecar (mesh) traffic."""
    return not vs.is_delegate and MESH in vs.bound_gateways()


def _compile_routes(
    vs: VirtualService,
    clusters: ClusterSet,
    gateway: str,
    delegates: Mapping[tuple[str, str], VirtualService],
    labels: Mapping[str, str],
) -> tuple[CompiledRoute, ...]:
    """Routes with delegates merged; a match bound to other gateways or for other workloads
    is left out, and a route whose every match is, too (``match.gateways`` and
    ``sourceLabels`` select at config time, as in Istio: ``routing.match.selects``)."""
    ns = vs.meta.namespace
    out = []
    for route in expand(vs, delegates, []):
        if route.match:
            kept = tuple(m for m in route.match if selects(m, gateway, ns, labels))
            if not kept:
                continue
            route = dataclasses.replace(route, match=kept)
        out.append(_compile_route(route, ns, clusters))
    return tuple(out)


def _compile_route(route: HTTPRoute, namespace: str, clusters: ClusterSet) -> CompiledRoute:
    destinations = WeightedTargets(
        tuple((clusters.target(d.destination, namespace), d.weight) for d in route.route)
    )
    mirrors = tuple(
        Mirror(clusters.target(m.destination, namespace), m.percentage)
        for m in route.mirrors
        if m.percentage > 0
    )
    match = RouteMatch(route.match)
    lengths = block_lengths(route)
    prefixed = (route.rewrite is not None and bool(route.rewrite.uri)) or (
        route.redirect is not None and bool(route.redirect.prefix_rewrite)
    )
    per_block = prefixed and len(set(lengths)) > 1
    blocks = lengths if per_block else lengths[:1]
    if route.redirect is not None or route.direct_response is not None:
        answers = tuple(answer(route, length) for length in blocks)
        return CompiledRoute(
            route.name,
            match,
            destinations,
            mirrors,
            route.timeout,
            answers=answers,
            per_block=per_block,
        )
    weighted = len(route.route) > 1
    if not per_block and not (weighted and any(d.headers for d in route.route)):
        single = route.route[0] if len(route.route) == 1 else None
        policy = route_policy(route, single, weighted, lengths[0])
        return CompiledRoute(route.name, match, destinations, mirrors, route.timeout, policy)
    policies = tuple(
        {
            target: route_policy(route, d, weighted, length)
            for (target, _), d in zip(destinations.entries, route.route, strict=True)
        }
        for length in blocks
    )
    first = next(iter(policies[0].values()), NO_POLICY)
    return CompiledRoute(
        route.name, match, destinations, mirrors, route.timeout, first, policies, None, per_block
    )


def _block(route: CompiledRoute, facts: RequestFacts) -> int:
    """The index of the first match block that fits (the route fits, so one does)."""
    for index, block in enumerate(route.match.blocks):
        if block.fits(facts):
            return index
    return 0


def _service_hosts(
    inventory: Inventory,
    clusters: ClusterSet,
    exact: dict[str, VirtualHost],
    wildcards: dict[str, VirtualHost],
) -> dict[int, dict[str, VirtualHost]]:
    """Per port: the hosts of the Services and ServiceEntries that have it -> their route.

    A VirtualService host that is a Service answers on that Service's ports only: its entry
    leaves ``exact`` (which answers on any port) for ``by_port``. A wildcard ServiceEntry host
    (``*.example.com``) without a VirtualService joins the wildcards.
    """
    by_port: dict[int, dict[str, VirtualHost]] = {}
    for info in inventory.services.values():
        if info.fqdn.startswith("*"):
            if info.fqdn not in wildcards:
                wildcards[info.fqdn] = _default_vhost(info, clusters)
            continue
        vhost = exact.pop(info.fqdn, None) or _wildcard_for(info.fqdn, wildcards)
        if vhost is None:
            vhost = _default_vhost(info, clusters)
        for port in info.ports:
            by_port.setdefault(port, {})[info.fqdn] = vhost
    return by_port


def _original_dst(cluster: Cluster, origin: str, port: int) -> Endpoint | None:
    """An ORIGINAL_DST cluster's endpoint for a mesh request: where the request was going.

    Envoy forwards to the address the client dialed (traffic-policy.md 3.1: NONE); a client of
    the outbound port dials nothing, it names the host and port, so that is where this goes,
    the name looked up as the connection opens, as the client would have looked it up. On a
    Gateway (``origin`` "") there is no original destination: istiod falls back to EDS.
    """
    if not cluster.original_dst or not origin:
        return None
    return Endpoint(origin, cluster.target_port or port)


def _wildcard_for(host: str, wildcards: Mapping[str, VirtualHost]) -> VirtualHost | None:
    return next((wildcards[k] for k in wildcard_keys(host) if k in wildcards), None)


def _default_vhost(info: ServiceInfo, clusters: ClusterSet) -> VirtualHost:
    """No VirtualService: every endpoint of the Service, on the port the request came on."""
    # The port the request came on, even for a one-port Service: it is the port asked for.
    target = Target(info.fqdn, "", None, clusters.clusters_of(info.fqdn, ""))
    route = CompiledRoute("default", RouteMatch(()), WeightedTargets(((target, 100),)), (), None)
    service = info.service
    source = f"{service.kind} {service.meta.namespace}/{service.meta.name}"
    return VirtualHost(info.fqdn, source, (route,))


def _entry_addresses(inventory: Inventory, taken: Mapping[str, str]) -> dict[str, str]:
    """A ServiceEntry's ``addresses`` (not CIDRs) name its first host, as Istio lists them
    among the domains of the entry's virtual host: a request to ``10.0.0.5`` reaches it."""
    out: dict[str, str] = {}
    for info in inventory.services.values():
        entry = info.service
        if isinstance(entry, ServiceEntry) and info.fqdn == entry.hosts[0]:
            for address in entry.addresses:
                # An IPv6 address is written bracketed in a Host header.
                form = f"[{address.lower()}]" if ":" in address else address
                if "/" not in address and form not in taken:
                    out.setdefault(form, info.fqdn)
    return out


def _listener_ports(inventory: Inventory) -> set[int]:
    return {
        port
        for info in inventory.services.values()
        if isinstance(info.service, Service)
        for port in info.ports
    }


def _fallbacks(
    inventory: Inventory, by_port: Mapping[int, Mapping[str, VirtualHost]]
) -> dict[int, VirtualHost]:
    """Per listener port, the route of its only Service (ServiceEntry hosts open no listener)."""
    services: dict[int, list[str]] = {}
    for info in inventory.services.values():
        if isinstance(info.service, Service):
            for port in info.ports:
                services.setdefault(port, []).append(info.fqdn)
    return {port: by_port[port][hosts[0]] for port, hosts in services.items() if len(hosts) == 1}


def _describe_ingress(ingress: IngressHosts) -> dict[str, Any]:
    plan = ingress.plan
    hosts = {**ingress.exact, **ingress.wildcards}
    return {
        "port": plan.port,
        "tls": [
            {"hosts": list(s.hosts), "mode": s.tls.mode, "gateway": s.gateway} for s in plan.tls
        ],
        "httpsRedirect": plan.https_redirect,
        "virtualHosts": [_describe_vhost(v, [name]) for name, v in sorted(hosts.items())],
    }


def _describe_vhosts(pairs: list[tuple[VirtualHost, list[str]]]) -> list[dict[str, Any]]:
    described: list[dict[str, Any]] = []
    for i, (vhost, domains) in enumerate(pairs):
        if i % _GIL_EVERY == _GIL_EVERY - 1:
            time.sleep(0)  # releases the GIL: a thread waiting for it runs
        described.append(_describe_vhost(vhost, domains))
    return described


def _describe_vhost(vhost: VirtualHost, domains: list[str]) -> dict[str, Any]:
    return {
        "name": vhost.name,
        "source": vhost.source,
        "domains": domains,
        "routes": [_describe_route(r) for r in vhost.routes],
    }


def _describe_route(route: CompiledRoute) -> dict[str, Any]:
    weighted = route.destinations
    return {
        "name": route.name,
        "match": [describe_match(b.source) for b in route.match.blocks],
        "route": [
            {**_describe_target(t), "weight": w, "percent": weighted.share(i)}
            for i, (t, w) in enumerate(weighted.entries)
        ],
        "mirrors": [
            {**_describe_target(m.target), "percentage": m.percentage} for m in route.mirrors
        ],
        "timeout": route.timeout,
        **_describe_policy(route),
    }


def _describe_policy(route: CompiledRoute) -> dict[str, Any]:
    """The compiled policy: one for the route, or each destination's (per match block)."""
    if route.answers is not None:
        return {"answer": [a.describe() for a in route.answers]}
    if route.policies is None:
        return {"policy": route.policy.describe()}
    return {
        "policies": [
            [{"cluster": _describe_target(t)["cluster"], **p.describe()} for t, p in by.items()]
            for by in route.policies
        ]
    }


def _describe_target(target: Target) -> dict[str, Any]:
    cluster = target.resolve(target.port)[0] if target.port is not None else None
    known = target.port in target.clusters if target.port is not None else bool(target.clusters)
    return {
        "host": target.host,
        "subset": target.subset,
        "port": target.port,  # None: the port the request came on
        "cluster": cluster,
        # False: requests to it get 503 NC (for a mirror: no copy is sent).
        "known": known,
    }


def _describe_cluster(cluster: Cluster) -> dict[str, Any]:
    balancer = cluster.balancer
    return {
        "name": cluster.name,
        "host": cluster.host,
        "port": cluster.port,
        "subset": cluster.subset,
        "destinationRule": cluster.rule,
        "type": cluster.discovery,
        "lbPolicy": balancer.policy,
        "trafficPolicy": cluster.policy.describe(),
        "endpoints": [
            {
                "address": m.endpoint.address,
                "port": m.endpoint.port,
                "workload": m.workload,
                "weight": m.weight,
                "activeRequests": balancer.in_flight(m.endpoint),
                "ejected": balancer.ejected(m.endpoint),
            }
            for m in cluster.members
        ],
        **({"outlierStats": outlier.stats()} if (outlier := cluster.outlier) is not None else {}),
    }


def _before_router(policy: RoutePolicy) -> RoutePolicy | None:
    """The policy a router's own answer (NC, UH) still goes through: the fault and CORS
    filters run before the router (Envoy's filter order)."""
    return policy if policy.fault is not None or policy.cors is not None else None
