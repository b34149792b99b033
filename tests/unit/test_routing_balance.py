"""Per-cluster load balancers and their in-flight counts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shadowmesh.routing.balance import (
    LeastRequestBalancer,
    RandomBalancer,
    RoundRobinBalancer,
    make_balancer,
)
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.testing import within_binomial

A = Endpoint("127.0.0.1", 18081)
B = Endpoint("127.0.0.1", 18082)
C = Endpoint("127.0.0.1", 18083)


def test_default_policy_is_least_request() -> None:
    assert isinstance(make_balancer(None, (A, B), random.Random(1)), LeastRequestBalancer)
    assert make_balancer("ROUND_ROBIN", (A,), random.Random(1)).policy == "ROUND_ROBIN"
    assert make_balancer("RANDOM", (A,), random.Random(1)).policy == "RANDOM"


def test_least_request_prefers_the_endpoint_with_fewer_in_flight() -> None:
    balancer = LeastRequestBalancer((A, B), random.Random(3))
    busy = [balancer.pick() for _ in range(2)]  # one on each, whichever order
    assert sorted(e.port for e in busy if e) == [A.port, B.port]
    balancer.release(A)  # A now has 0 in flight, B has 1
    for _ in range(50):
        assert balancer.pick() == A
        balancer.release(A)
    assert balancer.in_flight(B) == 1


def test_least_request_with_many_endpoints_avoids_the_busiest() -> None:
    endpoints = tuple(Endpoint("127.0.0.1", 20000 + i) for i in range(4))
    balancer = LeastRequestBalancer(endpoints, random.Random(4))
    for _ in range(10):  # endpoint 0 holds 10 requests that never finish
        while balancer.pick() != endpoints[0]:
            pass
    for e in endpoints[1:]:
        while balancer.in_flight(e):
            balancer.release(e)
    picks: Counter[Endpoint] = Counter()
    for _ in range(3000):
        picked = balancer.pick()
        assert picked is not None
        picks[picked] += 1
        balancer.release(picked)
    # Two distinct samples: endpoint 0 can only win when sampled against no one, i.e. never.
    assert picks[endpoints[0]] == 0
    assert all(within_binomial(picks[e], 3000, 1 / 3) for e in endpoints[1:])


def test_least_request_spreads_when_idle() -> None:
    balancer = LeastRequestBalancer((A, B), random.Random(5))
    picks: Counter[Endpoint] = Counter()
    for _ in range(2000):
        e = balancer.pick()
        assert e is not None
        picks[e] += 1
        balancer.release(e)
    assert within_binomial(picks[A], 2000, 0.5)


def test_round_robin_alternates() -> None:
    balancer = RoundRobinBalancer((A, B, C), random.Random(6))
    picks = [balancer.pick() for _ in range(9)]
    first = picks[0]
    assert first is not None
    start = (A, B, C).index(first)
    assert picks == [(A, B, C)[(start + i) % 3] for i in range(9)]
    assert [balancer.in_flight(e) for e in (A, B, C)] == [3, 3, 3]


def test_random_is_uniform() -> None:
    balancer = RandomBalancer((A, B, C), random.Random(7))
    picks = Counter(balancer.pick() for _ in range(3000))
    assert all(within_binomial(picks[e], 3000, 1 / 3) for e in (A, B, C))


@pytest.mark.parametrize("policy", ["LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"])
def test_no_endpoints_picks_none(policy: str) -> None:
    balancer = make_balancer(policy, (), random.Random(8))  # type: ignore[arg-type]
    assert balancer.pick() is None


def test_release_never_goes_below_zero_and_ignores_strangers() -> None:
    balancer = LeastRequestBalancer((A,), random.Random(9))
    assert balancer.pick() == A
    balancer.release(A)
    balancer.release(A)
    balancer.release(B)
    assert balancer.in_flight(A) == 0
    assert balancer.pick() == A
    assert balancer.in_flight(A) == 1


# Endpoint weights, as Envoy's balancers use them.


def _shares(balancer: object, picks: int, hold: bool = False) -> Counter[Endpoint]:
    counts: Counter[Endpoint] = Counter()
    for _ in range(picks):
        e = balancer.pick()  # type: ignore[attr-defined]
        assert e is not None
        counts[e] += 1
        if not hold:
            balancer.release(e)  # type: ignore[attr-defined]
    return counts


@pytest.mark.parametrize("policy", ["LEAST_REQUEST", "ROUND_ROBIN"])
def test_weighted_balancers_share_by_weight(policy: str) -> None:
    balancer = make_balancer(policy, (A, B, C), random.Random(11), (3, 1, 1))  # type: ignore[arg-type]
    counts = _shares(balancer, 5000)
    assert within_binomial(counts[A], 5000, 3 / 5)
    assert within_binomial(counts[B], 5000, 1 / 5)
    assert within_binomial(counts[C], 5000, 1 / 5)


def test_weighted_round_robin_is_a_fixed_schedule() -> None:
    # Envoy's EDF: with weights 3:1, every window of 4 picks holds 3 A and 1 B.
    balancer = RoundRobinBalancer((A, B), random.Random(12), (3, 1))
    picks = [balancer.pick() for _ in range(40)]
    for start in range(0, 40, 4):
        assert Counter(picks[start : start + 4]) == {A: 3, B: 1}


def test_weighted_least_request_divides_the_weight_by_what_is_in_flight() -> None:
    # Requests never finish: A (weight 3) holding n is put back at deadline + (n+1)/3, B at
    # + (m+1)/1. After k picks of A its deadline is about k^2/6, after m of B m^2/2: the EDF
    # keeps them level, so A holds sqrt(3) times as many as B (not 3: in-flight requests weigh
    # on both), and B is never starved.
    balancer = LeastRequestBalancer((A, B), random.Random(13), (3, 1))
    counts = _shares(balancer, 400, hold=True)
    assert 1.6 <= counts[A] / counts[B] <= 1.9
    assert balancer.in_flight(A) == counts[A]


def test_random_ignores_weights_as_envoy_does() -> None:
    balancer = RandomBalancer((A, B), random.Random(14), (9, 1))
    counts = _shares(balancer, 4000)
    assert within_binomial(counts[A], 4000, 0.5)


def test_equal_weights_keep_the_unweighted_algorithms() -> None:
    balancer = LeastRequestBalancer((A, B), random.Random(15), (5, 5))
    assert balancer.pick() is not None  # one in flight somewhere
    busy = A if balancer.in_flight(A) else B
    idle = B if busy is A else A
    for _ in range(50):  # P2C over two distinct endpoints: the idle one always wins
        assert balancer.pick() == idle
        balancer.release(idle)
