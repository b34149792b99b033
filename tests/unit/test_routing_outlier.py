"""Outlier detection as Envoy's consecutive-error detector, stepped with a hand-driven clock."""

from __future__ import annotations

import random

from shadowmesh.routing.balance import RoundRobinBalancer
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.outlier import CONNECT_FAILURE, TIMEOUT, OutlierConfig, OutlierDetector

A = Endpoint("127.0.0.1", 18081)
B = Endpoint("127.0.0.1", 18082)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def detector(size: int = 2, **config: object) -> tuple[OutlierDetector, Clock]:
    clock = Clock()
    settings = {"max_ejection_percent": 100, **config}
    return OutlierDetector(OutlierConfig(**settings), size, clock), clock  # type: ignore[arg-type]


def test_five_consecutive_5xx_eject_by_default_and_a_success_resets_the_count() -> None:
    od, _ = detector()
    for _ in range(4):
        od.report(0, 500)
    od.report(0, 200)
    for _ in range(4):
        od.report(0, 503)
    assert not od.is_ejected(0)
    od.report(0, 500)
    assert od.is_ejected(0)
    assert od.usable() == (1,)
    assert od.stats()["ejections_enforced_consecutive_5xx"] == 1
    assert od.stats()["ejections_active"] == 1


def test_zero_disables_and_gateway_errors_count_only_when_set() -> None:
    od, _ = detector(consecutive_5xx=0)
    for _ in range(20):
        od.report(0, 502)
    # Gateway errors unset: Envoy's 5 detected, enforcing 0: counted, never ejected.
    assert not od.is_ejected(0)
    assert od.stats()["ejections_detected_consecutive_gateway_failure"] == 1
    od, _ = detector(consecutive_5xx=0, consecutive_gateway=2)
    od.report(0, 500)  # a 500 is not a gateway error: resets the gateway count
    od.report(0, 502)
    assert not od.is_ejected(0)
    od.report(0, 504)
    assert od.is_ejected(0)
    assert od.stats()["ejections_enforced_consecutive_gateway_failure"] == 1


def test_local_origin_failures_count_as_503_and_504_without_split() -> None:
    od, _ = detector(consecutive_5xx=0, consecutive_gateway=3)
    od.report(0, CONNECT_FAILURE)
    od.report(0, TIMEOUT)
    od.report(0, 503)
    assert od.is_ejected(0)


def test_split_mode_counts_local_origin_failures_apart() -> None:
    od, _ = detector(consecutive_5xx=2, split=True, consecutive_local=3)
    od.report(0, CONNECT_FAILURE)
    od.report(0, CONNECT_FAILURE)
    od.report(0, 500)  # the connection worked: local count back to 0; 5xx count 1
    od.report(0, CONNECT_FAILURE)
    od.report(0, TIMEOUT)
    assert not od.is_ejected(0)
    od.report(0, TIMEOUT)
    assert od.is_ejected(0)
    assert od.stats()["ejections_enforced_consecutive_local_origin_failure"] == 1


def test_max_ejection_percent_defaults_to_envoys_10_percent() -> None:
    od = OutlierDetector(OutlierConfig(), 2, Clock())
    for _ in range(5):
        od.report(0, 500)
    # Ejecting one of two would be 50% > 10%: skipped, counted as overflow.
    assert not od.is_ejected(0)
    assert od.stats()["ejections_overflow"] == 1
    od, _ = detector(size=2, max_ejection_percent=50)
    for i in (0, 1):
        for _ in range(5):
            od.report(i, 500)
    assert od.is_ejected(0) and not od.is_ejected(1)


def test_ejection_time_grows_per_ejection_and_decays_per_healthy_interval() -> None:
    od, clock = detector(interval=10.0, base_ejection=30.0)

    def eject() -> None:
        for _ in range(5):
            od.report(0, 500)
        assert od.is_ejected(0)

    def ejected_after(seconds: float) -> bool:
        clock.now += seconds
        od.advance()
        return od.is_ejected(0)

    start = clock.now
    eject()
    # Unejection is checked at the interval ticks: 30 s after the ejection, at the third tick.
    assert ejected_after(29.0)
    assert not ejected_after(1.0)
    assert clock.now - start == 30.0
    eject()  # the second in a row: 60 s
    assert ejected_after(50.0)
    assert not ejected_after(10.0)
    # Healthy for a while: the multiplier decays by one per tick an interval after unejection.
    clock.now += 30.0
    od.advance()
    eject()  # back to 30 s
    assert ejected_after(20.0)
    assert not ejected_after(10.0)


def test_an_unejected_endpoint_starts_its_counts_afresh() -> None:
    od, clock = detector(interval=1.0, base_ejection=1.0)
    for _ in range(5):
        od.report(0, 500)
    for _ in range(4):
        od.report(0, 500)  # while ejected: counted, but no second ejection
    clock.now += 1.0
    od.advance()
    assert not od.is_ejected(0)
    od.report(0, 500)
    assert not od.is_ejected(0)


def test_all_ejected_leaves_none_unless_in_panic() -> None:
    od, _ = detector()
    for i in (0, 1):
        for _ in range(5):
            od.report(i, 500)
    assert od.usable() == ()  # Istio's minHealthPercent 0: no panic, 503 UH
    od, _ = detector(min_health_percent=60)
    for _ in range(5):
        od.report(0, 500)
    assert od.is_ejected(0)
    assert od.in_panic()
    assert od.usable() == (0, 1)  # 50% healthy < 60%: Envoy balances over all hosts


def test_the_balancer_skips_ejected_endpoints_and_takes_them_back() -> None:
    clock = Clock()
    od = OutlierDetector(OutlierConfig(max_ejection_percent=100, interval=5.0), 2, clock)
    balancer = RoundRobinBalancer((A, B), random.Random(1), outlier=od)
    for _ in range(5):
        picked = balancer.pick()
        assert picked is not None
        balancer.release(A if picked == A else picked, 500 if picked == A else 200)
    while not balancer.ejected(A):
        picked = balancer.pick()
        assert picked is not None
        balancer.release(picked, 500 if picked == A else 200)
    assert {balancer.pick() for _ in range(10)} == {B}
    clock.now += 30.0
    assert {balancer.pick() for _ in range(10)} == {A, B}


def test_an_attempts_outcome_from_its_status_and_flag() -> None:
    from shadowmesh.routing.outlier import NO_OUTCOME, outcome_of

    assert outcome_of(503, "-") == 503  # the upstream's own 503
    assert outcome_of(200, "UC") == 200  # broke after the head: the head's status counts
    assert outcome_of(0, "UF") == CONNECT_FAILURE
    assert outcome_of(0, "UC") == CONNECT_FAILURE
    assert outcome_of(0, "UT") == TIMEOUT
    for flag in ("UO", "DC", "FI", "DI", "-", ""):
        assert outcome_of(0, flag) == NO_OUTCOME
