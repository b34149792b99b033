"""Incremental compiles of the route table: recompile what changed, not everything.

A config of 10,000 VirtualServices takes more than a second to compile whole, and one apply
usually changes one document of it. A ``RouteCompiler`` keeps, from its last compile:

1. the ClusterSet (clusters, endpoints, balancers), reused while every resource that is not a
   VirtualService is the one compiled last time: the clusters depend on those alone;
2. per VirtualService, its compiled host unit (``table.host_unit``), reused while that
   VirtualService, the delegates its routes name and the ClusterSet are the ones it was
   compiled with.

What is left, merging the units into the host maps and aliases, is one pass over dicts. The
table is the one ``RouteTable.compile()`` makes of the same resources
(tests/unit/test_routing_compiler.py checks it over many random changes). A reused ClusterSet
keeps its balancers, so least-request counts survive an apply that touched only routes.

This module is not compiled with mypyc on purpose: it runs on the config thread beside the
serving loop, and a compiled loop over 10,000 units would hold the GIL from start to end, where
an interpreted one lets the serving loop in every few milliseconds.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from shadowmesh.model.resources import Resource, VirtualService, resource_key
from shadowmesh.routing.clusters import ClusterSet
from shadowmesh.routing.inventory import build_inventory
from shadowmesh.routing.table import (
    MESH,
    NO_LABELS,
    HostUnit,
    RouteTable,
    delegates_of,
    host_unit,
)

Key = tuple[str, str, str]


class RouteCompiler:
    """Compiles whole configs, reusing what the previous compile made of unchanged resources.

    Not thread-safe: one owner (the Controller, under its lock).
    """

    def __init__(
        self, rng: random.Random | None = None, labels: Mapping[str, str] = NO_LABELS
    ) -> None:
        """``labels``: the proxy's workload labels (``sourceLabels`` select them), fixed for
        the compiler's life, so a unit compiled once stays right."""
        self._rng = rng if rng is not None else random.Random()
        self._labels = dict(labels)
        self._others: dict[Key, Resource] = {}
        self._clusters: ClusterSet | None = None
        self._units: dict[UnitKey, _Unit] = {}
        self._dns: Mapping[str, tuple[str, ...]] = {}
        self.reused = 0  # units taken from the previous compile, by the last compile()

    def compile(
        self, resources: Iterable[Resource], dns: Mapping[str, tuple[str, ...]] | None = None
    ) -> RouteTable:
        """``dns``: the ServiceEntry names' last answers; a changed answer rebuilds clusters."""
        resources = list(resources)
        dns = dict(dns or {})
        inventory = build_inventory(resources, dns)
        others: dict[Key, Resource] = {
            resource_key(r): r for r in resources if not isinstance(r, VirtualService)
        }
        clusters = self._clusters
        if clusters is None or not _same(self._others, others) or dns != self._dns:
            clusters = ClusterSet(inventory, self._rng)
            self._units = {}
        delegates = delegates_of(inventory)
        previous = self._units
        units: dict[UnitKey, _Unit] = {}
        reused = 0

        def unit_for(vs: VirtualService, gateway: str) -> HostUnit:
            """The unit of ``vs`` for ``gateway`` (the mesh, or a Gateway's key): the previous
            compile's while nothing it was compiled from changed."""
            nonlocal reused
            key = (resource_key(vs), gateway)
            named = _named_delegates(vs, delegates)
            cached = previous.get(key)
            if cached is not None and _same_vs(cached.vs, vs) and _same_deps(cached.named, named):
                unit = cached.unit
                reused += 1
            else:
                unit = host_unit(vs, clusters, delegates, gateway, self._labels)
            units[key] = _Unit(vs, named, unit)
            return unit

        mesh = [unit_for(vs, MESH) for vs in inventory.virtual_services]
        table = RouteTable.assemble(resources, inventory, clusters, mesh, self._rng, unit_for)
        table.workload_labels = self._labels
        self._others, self._clusters, self._units, self.reused = others, clusters, units, reused
        self._dns = dns
        return table


DelegateKey = tuple[str, str]  # (namespace, name)
UnitKey = tuple[Key, str]  # (VirtualService, the mesh or a Gateway's key)


class _Unit:
    """One VirtualService's compiled unit, with the delegates it was compiled against."""

    __slots__ = ("vs", "named", "unit")

    def __init__(
        self,
        vs: VirtualService,
        named: tuple[tuple[DelegateKey, VirtualService | None], ...],
        unit: HostUnit,
    ) -> None:
        self.vs = vs
        self.named = named
        self.unit = unit


def _named_delegates(
    vs: VirtualService, delegates: Mapping[DelegateKey, VirtualService]
) -> tuple[tuple[DelegateKey, VirtualService | None], ...]:
    """The delegates ``vs``'s routes name, as they are now (None: not found)."""
    keys = [
        (r.delegate[1] or vs.meta.namespace, r.delegate[0])
        for r in vs.http
        if r.delegate is not None
    ]
    return tuple((k, delegates.get(k)) for k in keys)


def _same_vs(old: Resource | None, new: Resource | None) -> bool:
    # The same object when the controller kept it; equal (raw aside) when it was parsed again.
    return old is new or old == new


def _same_deps(
    old: tuple[tuple[DelegateKey, VirtualService | None], ...],
    new: tuple[tuple[DelegateKey, VirtualService | None], ...],
) -> bool:
    return len(old) == len(new) and all(
        a[0] == b[0] and _same_vs(a[1], b[1]) for a, b in zip(old, new, strict=True)
    )


def _same(old: Mapping[Key, Resource], new: Mapping[Key, Resource]) -> bool:
    if old.keys() != new.keys():
        return False
    return all(_same_vs(old[k], r) for k, r in new.items())
