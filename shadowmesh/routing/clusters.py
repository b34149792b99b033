"""Envoy-style clusters: one per Service port and subset, with its endpoints and balancer.

Names follow Istio: ``outbound|<port>|<subset>|<host FQDN>``, subset empty when none, as in
``outbound|8000||httpbin.default.svc.cluster.local``. A route destination becomes a Target:
which cluster it means depends on the request's port only when neither the destination nor the
service fixes one.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass

from shadowmesh.model.resources import (
    Destination,
    DestinationRule,
    ServiceEntry,
    export_rank,
    fqdn,
)
from shadowmesh.routing.balance import ClusterBalancer, make_balancer, make_hash_balancer
from shadowmesh.routing.inventory import Inventory, Member, ServiceInfo
from shadowmesh.routing.outlier import OutlierDetector
from shadowmesh.routing.upstreampolicy import NO_UPSTREAM_POLICY, UpstreamPolicy, upstream_policy

# Envoy's cluster type per ServiceEntry resolution, as istiod builds them (a Service's: EDS).
DISCOVERY = {
    "STATIC": "EDS",
    "DNS": "STRICT_DNS",
    "DNS_ROUND_ROBIN": "LOGICAL_DNS",
    "NONE": "ORIGINAL_DST",
}


def cluster_name(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


@dataclass(frozen=True, slots=True, eq=False)
class Cluster:
    name: str
    host: str
    port: int
    subset: str
    members: tuple[Member, ...]
    balancer: ClusterBalancer
    rule: str = ""  # the DestinationRule that shapes it, "name.namespace" as istioctl shows it
    discovery: str = "EDS"  # Envoy's cluster type, as istioctl shows it (``DISCOVERY``)
    # ORIGINAL_DST (a ServiceEntry's resolution NONE): a mesh request goes where it was going,
    # the host and port it names, the port replaced by ``target_port`` when set (Envoy's
    # ``upstream_port_override``, which istiod sets from the entry port's targetPort).
    original_dst: bool = False
    target_port: int = 0
    # The rule's traffic policy that applies to it (``routing.upstreampolicy``), compiled.
    policy: UpstreamPolicy = NO_UPSTREAM_POLICY

    @property
    def outlier(self) -> OutlierDetector | None:
        return self.balancer.outlier


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    """A destination resolved at compile time, as far as the config alone allows."""

    host: str  # FQDN
    subset: str
    port: int | None  # None: the port the request came on
    clusters: Mapping[int, Cluster]  # this host+subset's clusters, by port

    def resolve(self, request_port: int) -> tuple[str, Cluster | None]:
        port = self.port if self.port is not None else request_port
        cluster = self.clusters.get(port)
        if cluster is not None:
            return cluster.name, cluster
        return cluster_name(port, self.subset, self.host), None


class ClusterSet:
    """Every cluster of an inventory, and the Targets that point into them."""

    def __init__(self, inventory: Inventory, rng: random.Random) -> None:
        self._inventory = inventory
        self._rng = rng
        self.by_name: dict[str, Cluster] = {}
        self._by_host_subset: dict[tuple[str, str], dict[int, Cluster]] = {}
        # The clusters of a ServiceEntry that is not its host's first (``entry_choices``):
        # by (entry namespace, entry name, host, subset). Envoy names them as the first's,
        # so ``by_name`` (the config dump) shows the first's only.
        self._by_entry: dict[tuple[str, str, str, str], dict[int, Cluster]] = {}
        for info in inventory.services.values():
            self._add_service(info)
        for infos in inventory.entry_choices.values():
            for info in infos[1:]:
                meta = info.service.meta
                self._add_service(info, (meta.namespace, meta.name))

    def target(self, destination: Destination, namespace: str) -> Target:
        """Where a route of a VirtualService in ``namespace`` sends ``destination``.

        A ServiceEntry whose ``exportTo`` hides it from that namespace is not there for it:
        the route finds no cluster (503 NC), as in Istio.
        """
        host = fqdn(destination.host, namespace)
        info = self._inventory.services.get(host)
        if info is None or not isinstance(info.service, ServiceEntry):
            return self.target_for(host, destination.subset, destination.port)
        choice = _visible_entry(self._inventory.entry_choices.get(host, (info,)), namespace)
        if choice is None:
            return Target(host, destination.subset, destination.port, {})
        if choice is info:
            return self.target_for(host, destination.subset, destination.port)
        port = destination.port if destination.port is not None else choice.only_port
        meta = choice.service.meta
        clusters = self._by_entry.get((meta.namespace, meta.name, host, destination.subset), {})
        return Target(host, destination.subset, port, clusters)

    def target_for(self, host: str, subset: str, port: int | None) -> Target:
        info = self._inventory.services.get(host)
        if port is None and info is not None:
            port = info.only_port
        return Target(host=host, subset=subset, port=port, clusters=self.clusters_of(host, subset))

    def clusters_of(self, host: str, subset: str) -> Mapping[int, Cluster]:
        return self._by_host_subset.get((host, subset), {})

    def _add_service(self, info: ServiceInfo, entry: tuple[str, str] | None = None) -> None:
        rule = self._inventory.rules.get(info.fqdn)
        service = info.service
        kind = DISCOVERY[service.resolution] if isinstance(service, ServiceEntry) else "EDS"
        overrides: dict[int, int] = {}
        if kind == "ORIGINAL_DST" and isinstance(service, ServiceEntry):
            overrides = {p.number: p.target_port or 0 for p in service.ports}
        for port in info.ports:
            members = info.members.get(port, ())
            override = overrides.get(port)
            self._add(info.fqdn, port, "", members, rule, kind, entry, override)
            for subset in rule.subsets if rule is not None else ():
                members = info.subset_members(port, subset.labels)
                self._add(info.fqdn, port, subset.name, members, rule, kind, entry, override)

    def _add(
        self,
        host: str,
        port: int,
        subset: str,
        members: tuple[Member, ...],
        rule: DestinationRule | None,
        discovery: str = "EDS",
        entry: tuple[str, str] | None = None,
        original_dst: int | None = None,  # ORIGINAL_DST: its port override, 0 for none
    ) -> None:
        name = cluster_name(port, subset, host)
        if entry is None:
            by_port = self._by_host_subset.setdefault((host, subset), {})
        else:
            by_port = self._by_entry.setdefault((*entry, host, subset), {})
        if port in by_port:
            return  # a subset name repeated in one rule: the first one defines it
        policy = upstream_policy(rule, subset, port)
        balancer = _balancer(policy, members, self._rng)
        by = f"{rule.meta.name}.{rule.meta.namespace}" if rule is not None else ""
        cluster = Cluster(
            name, host, port, subset, members, balancer, by, discovery,
            original_dst is not None, original_dst or 0, policy,
        )  # fmt: skip
        by_port[port] = cluster
        if entry is None:
            self.by_name[name] = cluster


def _balancer(
    policy: UpstreamPolicy, members: tuple[Member, ...], rng: random.Random
) -> ClusterBalancer:
    """The cluster's balancer, with its own outlier detector (each cluster, subsets included,
    has its own state in Envoy)."""
    endpoints = tuple(m.endpoint for m in members)
    weights = tuple(m.weight for m in members)
    config = policy.outlier
    outlier = OutlierDetector(config, len(endpoints)) if config is not None else None
    if policy.hashing is not None:
        balancer = make_hash_balancer(
            policy.maglev, policy.table_size, endpoints, rng, weights, outlier
        )
    else:
        balancer = make_balancer(policy.lb, endpoints, rng, weights, outlier)
    balancer.traffic = policy
    return balancer


def _visible_entry(infos: tuple[ServiceInfo, ...], namespace: str) -> ServiceInfo | None:
    """The ServiceEntry a proxy in ``namespace`` sees for a host: of those exported to it, the
    first in Istio's order (private to it, then exported to it by name, then public), then by
    namespace/name (Istio: by creation time)."""
    best: tuple[int, int] | None = None
    chosen: ServiceInfo | None = None
    for index, info in enumerate(infos):
        entry = info.service
        if not isinstance(entry, ServiceEntry):
            continue
        rank = export_rank(entry.export_to, entry.meta.namespace, namespace)
        if rank is not None and (best is None or (rank, index) < best):
            best, chosen = (rank, index), info
    return chosen


class WeightedTargets:
    """Route destinations with relative weights, as Envoy's weighted_clusters.

    A lone destination gets every request whatever its weight. With several, weight 0 gets
    none; if all are 0 (which validation refuses), they share equally rather than fail.
    """

    __slots__ = ("entries", "single", "_effective", "_targets", "_cumulative", "_total")

    def __init__(self, entries: tuple[tuple[Target, int], ...]) -> None:
        self.entries = entries
        self.single = len(entries) == 1  # one destination: the only kind Istio hashes for
        self._effective = _effective_weights(tuple(w for _, w in entries))
        live = [(t, w) for (t, _), w in zip(entries, self._effective, strict=True) if w > 0]
        self._targets = tuple(t for t, _ in live)
        cumulative: list[int] = []
        total = 0
        for _, weight in live:
            total += weight
            cumulative.append(total)
        self._cumulative = tuple(cumulative)
        self._total = total

    def share(self, index: int) -> float:
        """The percentage of requests entry ``index`` receives."""
        return 100.0 * self._effective[index] / self._total if self._total else 0.0

    def pick(self, rng: random.Random) -> Target | None:
        targets = self._targets
        if len(targets) <= 1:
            return targets[0] if targets else None
        i = bisect_right(self._cumulative, rng.random() * self._total)
        return targets[min(i, len(targets) - 1)]


def _effective_weights(weights: tuple[int, ...]) -> tuple[int, ...]:
    if len(weights) == 1:
        return (1,)
    if any(w > 0 for w in weights):
        return tuple(max(w, 0) for w in weights)
    return (1,) * len(weights)
