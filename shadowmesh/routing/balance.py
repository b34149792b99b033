"""Load balancers, one per cluster: the only mutable state of a route table.

Each counts requests in flight per endpoint: ``pick()`` adds one to the endpoint it returns,
``release()`` takes it back. LEAST_REQUEST reads the counts; the others keep them so the config
dump can show them. All run on one event loop thread, so plain ints suffice.

- LEAST_REQUEST (Istio's default): Envoy's "power of two choices": sample two endpoints at
  random and take the one with fewer requests in flight. shadowmesh samples two *distinct*
  endpoints (Envoy samples with replacement), so with two endpoints the idle one always wins.
- ROUND_ROBIN: in order, starting at a random endpoint so that several worker processes do not
  all send their first request to the same one.
- RANDOM: uniform.
"""

from __future__ import annotations

import random
from typing import ClassVar

from shadowmesh.model.resources import LbPolicy
from shadowmesh.routing.decision import Endpoint


class _Counted:
    """Endpoints with their in-flight counts."""

    __slots__ = ("endpoints", "_active", "_index", "_rng")
    policy: ClassVar[LbPolicy]

    def __init__(self, endpoints: tuple[Endpoint, ...], rng: random.Random) -> None:
        self.endpoints = endpoints
        self._active = [0] * len(endpoints)
        self._index = {e: i for i, e in enumerate(endpoints)}
        self._rng = rng

    def in_flight(self, endpoint: Endpoint) -> int:
        i = self._index.get(endpoint)
        return 0 if i is None else self._active[i]

    def release(self, endpoint: Endpoint) -> None:
        i = self._index.get(endpoint)
        # An endpoint of another table (after a config swap) or a double release: ignore.
        if i is not None and self._active[i] > 0:
            self._active[i] -= 1

    def _take(self, i: int) -> Endpoint:
        self._active[i] += 1
        return self.endpoints[i]


class LeastRequestBalancer(_Counted):
    __slots__ = ()
    policy: ClassVar[LbPolicy] = "LEAST_REQUEST"

    def pick(self) -> Endpoint | None:
        n = len(self.endpoints)
        if n <= 1:
            return self._take(0) if n else None
        a, b = self._rng.sample(range(n), 2)
        return self._take(b if self._active[b] < self._active[a] else a)


class RoundRobinBalancer(_Counted):
    __slots__ = ("_next",)
    policy: ClassVar[LbPolicy] = "ROUND_ROBIN"

    def __init__(self, endpoints: tuple[Endpoint, ...], rng: random.Random) -> None:
        super().__init__(endpoints, rng)
        self._next = rng.randrange(len(endpoints)) if endpoints else 0

    def pick(self) -> Endpoint | None:
        n = len(self.endpoints)
        if not n:
            return None
        i = self._next
        self._next = (i + 1) % n
        return self._take(i)


class RandomBalancer(_Counted):
    __slots__ = ()
    policy: ClassVar[LbPolicy] = "RANDOM"

    def pick(self) -> Endpoint | None:
        n = len(self.endpoints)
        return self._take(self._rng.randrange(n)) if n else None


ClusterBalancer = LeastRequestBalancer | RoundRobinBalancer | RandomBalancer

_BALANCERS: dict[LbPolicy, type[ClusterBalancer]] = {
    "LEAST_REQUEST": LeastRequestBalancer,
    "ROUND_ROBIN": RoundRobinBalancer,
    "RANDOM": RandomBalancer,
}


def make_balancer(
    policy: LbPolicy | None, endpoints: tuple[Endpoint, ...], rng: random.Random
) -> ClusterBalancer:
    return _BALANCERS[policy or "LEAST_REQUEST"](endpoints, rng)
