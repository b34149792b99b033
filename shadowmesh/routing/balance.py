"""Load balancers, one per cluster: with the outlier detector, the mutable state of a route table.

Each counts requests in flight per endpoint: ``pick()`` adds one to the endpoint it returns,
``release()`` takes it back (with the attempt's outcome, for outlier detection). LEAST_REQUEST
reads the counts; the others keep them so the config dump can show them. All run on one event
loop thread, so plain ints suffice.

Endpoint weights (WorkloadEntry / ServiceEntry endpoint ``weight``; unset or 0 is 1, as
Istio's ``GetLoadBalancingWeight``) count as Envoy counts them
(envoyproxy/envoy ``source/extensions/load_balancing_policies``):

- LEAST_REQUEST (Istio's default). Equal weights: Envoy's "power of two choices": sample two
  endpoints at random and take the one with fewer requests in flight. shadowmesh samples two
  *distinct* endpoints (Envoy samples with replacement), so with two endpoints the idle one
  always wins. Unequal weights: Envoy's EDF schedule, each endpoint's weight divided by
  ``(in flight + 1) ^ active_request_bias`` (bias 1.0) when it is put back in the schedule.
- ROUND_ROBIN: in order, starting at a random endpoint so that several worker processes do
  not all send their first request to the same one. Unequal weights: Envoy's EDF schedule
  (earliest deadline first; deadline = last + 1/weight), started a random number of picks in.
- RANDOM: uniform. Envoy's RandomLoadBalancer ignores weights (``hosts[random % size]``), so
  shadowmesh's does too.

Consistent hashing (``routing.hashring``): RING_HASH and MAGLEV look the request's hash key up
in a table over the usable endpoints, rebuilt when that set changes; without a key they pick
at random, as Envoy does. The other balancers ignore a key.

Outlier detection (``routing.outlier``) takes ejected endpoints out of the set a balancer
picks from; in panic (too few healthy ones) all are used again, as Envoy does.
"""

from __future__ import annotations

import heapq
import random
from typing import ClassVar

from shadowmesh.model.resources import LbPolicy
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.hashring import (
    DEFAULT_MAGLEV_SIZE,
    DEFAULT_RING_SIZE,
    NO_HASH,
    Maglev,
    RingHash,
)
from shadowmesh.routing.outlier import NO_OUTCOME, OutlierDetector
from shadowmesh.routing.upstreampolicy import NO_UPSTREAM_POLICY, UpstreamPolicy

# Envoy randomises where an EDF schedule starts by that many picks (lb-edf init fix, #32233);
# bounded here so a huge total weight costs no more than this at compile time.
_EDF_START_PICKS = 1 << 12


class _Edf:
    """Envoy's EdfScheduler: pick the entry with the earliest deadline, put it back at
    deadline + 1/weight. Ties go to the entry added first (Envoy's order offset)."""

    __slots__ = ("_heap", "_order", "_now")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._order = 0
        self._now = 0.0

    def add(self, weight: float, index: int) -> None:
        self._order += 1
        heapq.heappush(self._heap, (self._now + 1.0 / weight, self._order, index))

    def pick(self) -> int:
        """The next index; the caller adds it back with ``add`` (its weight may have changed)."""
        deadline, _, index = heapq.heappop(self._heap)
        self._now = deadline
        return index


class _Counted:
    """Endpoints with their weights, in-flight counts and the subset of them in use."""

    __slots__ = (
        "endpoints",
        "weights",
        "_active",
        "_index",
        "_rng",
        "_live",
        "_weighted",
        "_edf",
        "outlier",
        "traffic",
    )
    policy: ClassVar[str]  # as Envoy's lb_policy names it
    weighs: ClassVar[bool] = True  # whether endpoint weights change what it picks

    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        rng: random.Random,
        weights: tuple[int, ...] = (),
        outlier: OutlierDetector | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.weights = weights if weights else (1,) * len(endpoints)
        self._active = [0] * len(endpoints)
        self._index = {e: i for i, e in enumerate(endpoints)}
        self._rng = rng
        self._live: tuple[int, ...] = tuple(range(len(endpoints)))
        self._weighted = False
        self._edf = _Edf()
        self.outlier = outlier
        # The cluster's compiled DestinationRule policy, for the upstream pool (clusters.py).
        self.traffic: UpstreamPolicy = NO_UPSTREAM_POLICY
        if outlier is not None:
            outlier.attach(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild what the balancer picks from (the endpoints not ejected, or all of them in
        panic), as Envoy rebuilds its schedulers when the healthy host set changes."""
        outlier = self.outlier
        n = len(self.endpoints)
        self._live = tuple(range(n)) if outlier is None else outlier.usable()
        weights = self.weights
        live = self._live
        self._weighted = self.weighs and any(weights[i] != weights[live[0]] for i in live)
        self._edf = _Edf()
        if self._weighted:
            for i in live:
                self._edf.add(self._weight(i), i)
            self._start_schedule()

    def _start_schedule(self) -> None:
        pass

    def _weight(self, i: int) -> float:
        return float(self.weights[i])

    def in_flight(self, endpoint: Endpoint) -> int:
        i = self._index.get(endpoint)
        return 0 if i is None else self._active[i]

    def ejected(self, endpoint: Endpoint) -> bool:
        i = self._index.get(endpoint)
        return i is not None and self.outlier is not None and self.outlier.is_ejected(i)

    def release(self, endpoint: Endpoint, outcome: int = NO_OUTCOME) -> None:
        """The attempt to ``endpoint`` ended with ``outcome`` (``routing.outlier``: a status,
        a local-origin failure, or NO_OUTCOME)."""
        i = self._index.get(endpoint)
        # An endpoint of another table (after a config swap) or a double release: ignore.
        if i is None:
            return
        if self._active[i] > 0:
            self._active[i] -= 1
        if self.outlier is not None and outcome != NO_OUTCOME:
            self.outlier.report(i, outcome)

    def pick(self) -> Endpoint | None:
        raise NotImplementedError

    def pick_hashed(self, key: int) -> Endpoint | None:
        """A pick for a request with hash ``key`` (NO_HASH: none): only the hash balancers
        read it; Envoy's other balancers ignore a route's hash policy too."""
        return self.pick()

    def _take(self, i: int) -> Endpoint:
        self._active[i] += 1
        return self.endpoints[i]

    def _before_pick(self) -> tuple[int, ...]:
        if self.outlier is not None:
            self.outlier.advance()  # unejects whose time is up; may call refresh()
        return self._live


class LeastRequestBalancer(_Counted):
    __slots__ = ()
    policy: ClassVar[str] = "LEAST_REQUEST"

    def _weight(self, i: int) -> float:
        # Envoy's hostWeight: weight / (active + 1) ^ active_request_bias (1.0).
        return self.weights[i] / (self._active[i] + 1)

    def pick(self) -> Endpoint | None:
        live = self._before_pick()
        n = len(live)
        if n <= 1:
            return self._take(live[0]) if n else None
        if self._weighted:
            i = self._edf.pick()
            self._edf.add(self._weight(i), i)
            return self._take(i)
        a, b = self._rng.sample(live, 2)
        return self._take(b if self._active[b] < self._active[a] else a)


class RoundRobinBalancer(_Counted):
    __slots__ = ("_next",)
    policy: ClassVar[str] = "ROUND_ROBIN"

    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        rng: random.Random,
        weights: tuple[int, ...] = (),
        outlier: OutlierDetector | None = None,
    ) -> None:
        self._next = rng.randrange(len(endpoints)) if endpoints else 0
        super().__init__(endpoints, rng, weights, outlier)

    def _start_schedule(self) -> None:
        total = sum(self.weights[i] for i in self._live)
        for _ in range(self._rng.randrange(min(total, _EDF_START_PICKS))):
            i = self._edf.pick()
            self._edf.add(self._weight(i), i)

    def pick(self) -> Endpoint | None:
        live = self._before_pick()
        n = len(live)
        if not n:
            return None
        if self._weighted:
            i = self._edf.pick()
            self._edf.add(self._weight(i), i)
            return self._take(i)
        k = self._next % n
        self._next = (k + 1) % n
        return self._take(live[k])


class RandomBalancer(_Counted):
    __slots__ = ()
    policy: ClassVar[str] = "RANDOM"
    weighs: ClassVar[bool] = False

    def pick(self) -> Endpoint | None:
        live = self._before_pick()
        n = len(live)
        return self._take(live[self._rng.randrange(n)]) if n else None


class _HashBalancer(_Counted):
    """RING_HASH or MAGLEV: the hash key picks, through a table over the usable endpoints."""

    __slots__ = ("_table", "table_size")
    weighs: ClassVar[bool] = False  # the table carries the weights

    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        rng: random.Random,
        weights: tuple[int, ...] = (),
        outlier: OutlierDetector | None = None,
        table_size: int = 0,
    ) -> None:
        self.table_size = table_size
        self._table: RingHash | Maglev | None = None
        super().__init__(endpoints, rng, weights, outlier)

    def refresh(self) -> None:
        super().refresh()
        keys = [str(e) for e in self.endpoints]
        self._table = self._build(keys, self._live)

    def _build(self, keys: list[str], live: tuple[int, ...]) -> RingHash | Maglev:
        raise NotImplementedError

    def pick(self) -> Endpoint | None:
        return self.pick_hashed(NO_HASH)

    def pick_hashed(self, key: int) -> Endpoint | None:
        live = self._before_pick()
        if not live:
            return None
        table = self._table
        if key == NO_HASH or table is None:
            return self._take(live[self._rng.randrange(len(live))])
        return self._take(table.lookup(key))


class RingHashBalancer(_HashBalancer):
    __slots__ = ()
    policy: ClassVar[str] = "RING_HASH"

    def _build(self, keys: list[str], live: tuple[int, ...]) -> RingHash | Maglev:
        return RingHash(keys, self.weights, live, self.table_size or DEFAULT_RING_SIZE)


class MaglevBalancer(_HashBalancer):
    __slots__ = ()
    policy: ClassVar[str] = "MAGLEV"

    def _build(self, keys: list[str], live: tuple[int, ...]) -> RingHash | Maglev:
        return Maglev(keys, self.weights, live, self.table_size or DEFAULT_MAGLEV_SIZE)


ClusterBalancer = (
    LeastRequestBalancer | RoundRobinBalancer | RandomBalancer | RingHashBalancer | MaglevBalancer
)

_BALANCERS: dict[LbPolicy, type[ClusterBalancer]] = {
    "LEAST_REQUEST": LeastRequestBalancer,
    "ROUND_ROBIN": RoundRobinBalancer,
    "RANDOM": RandomBalancer,
}


def make_balancer(
    policy: LbPolicy | None,
    endpoints: tuple[Endpoint, ...],
    rng: random.Random,
    weights: tuple[int, ...] = (),
    outlier: OutlierDetector | None = None,
) -> ClusterBalancer:
    """``weights``: one per endpoint (empty: all 1)."""
    return _BALANCERS[policy or "LEAST_REQUEST"](endpoints, rng, weights, outlier)


def make_hash_balancer(
    maglev: bool,
    table_size: int,
    endpoints: tuple[Endpoint, ...],
    rng: random.Random,
    weights: tuple[int, ...] = (),
    outlier: OutlierDetector | None = None,
) -> ClusterBalancer:
    """``table_size``: Maglev's table size or the ring's minimum size (0: Envoy's default)."""
    kind = MaglevBalancer if maglev else RingHashBalancer
    return kind(endpoints, rng, weights, outlier, table_size)
