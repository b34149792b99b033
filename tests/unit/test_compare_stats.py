"""McNemar's test (exact and chi-square), Benjamini-Hochberg, Diffy's figures, reservoir
sampling, the latency sketch, and the paired latency test: against published and
hand-computed values; the field verdicts' and the latency test's error rates and power over
seeded simulations."""

from __future__ import annotations

import math
import random

import pytest

from shadowmesh.compare.diff import KINDS
from shadowmesh.compare.latency import LatencyLimits, Sketch, latency_verdict, paired_test
from shadowmesh.compare.report import Report, build_report
from shadowmesh.compare.stats import (
    WILCOXON_EXACT_UP_TO,
    benjamini_hochberg,
    binomial_tail,
    diffy_figures,
    mcnemar,
    median_interval,
    reservoir_slot,
    signed_rank,
)
from shadowmesh.compare.store import ComparisonRow, Snapshot


def test_exact_test_below_25_discordant_pairs() -> None:
    # 7 requests where only the candidate differs, none where only the baseline does:
    # P[X >= 7], X ~ Bin(7, 1/2) = 1/128.
    result = mcnemar(7, 0)
    assert result.method == "exact"
    assert result.p_value == 1 / 128
    # (66 + 12 + 1) / 4096 for 10 of 12.
    assert mcnemar(10, 2).p_value == pytest.approx(79 / 4096, abs=1e-15)
    assert mcnemar(6, 0).p_value == 1 / 64  # not below 0.01: six requests prove nothing
    assert mcnemar(12, 12).method == "exact"


def test_chi_square_with_continuity_correction_from_25() -> None:
    result = mcnemar(30, 10)
    assert result.method == "chi2"
    assert result.statistic == pytest.approx((20 - 1) ** 2 / 40)  # 9.025
    # One-sided: the upper normal tail at sqrt(9.025) = 3.00416; from the table,
    # Phi(-3.00) = 0.0013499 and the density there 0.004432: 0.0013499 - 0.00416 * 0.004432.
    assert result.p_value == pytest.approx(0.0013315, rel=2e-3)


def test_the_test_is_one_sided() -> None:
    assert mcnemar(0, 7).p_value == 1.0  # P[X >= 0]
    assert mcnemar(10, 30).p_value > 0.99  # the baseline is the noisier: no regression
    assert mcnemar(20, 20).p_value == pytest.approx(0.5)
    assert mcnemar(0, 0).p_value == 1.0


def test_binomial_tail_edges() -> None:
    assert binomial_tail(0, 5) == 1.0
    assert binomial_tail(6, 5) == 0.0
    assert binomial_tail(5, 5) == 1 / 32
    assert binomial_tail(1, 1) == 0.5


def test_benjamini_hochberg_by_hand() -> None:
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    assert q == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert benjamini_hochberg([]) == []
    assert benjamini_hochberg([0.9, 0.9]) == [0.9, 0.9]


def test_diffy_worked_examples() -> None:
    # From the reference: R=100, S=90 of 1000 is noise (5.3 % relative).
    figures = diffy_figures(100, 90, 1000)
    assert figures.relative == pytest.approx(100 * 10 / 190)
    assert figures.absolute == pytest.approx(1.0)
    assert diffy_figures(100, 0, 1000).relative == 100.0
    assert diffy_figures(2, 0, 10_000).absolute == pytest.approx(0.02)
    assert diffy_figures(0, 0, 0).relative == 0.0


def test_reservoir_keeps_a_uniform_sample() -> None:
    rng = random.Random(1234)
    k, n, trials = 5, 50, 4000
    kept = [0] * n
    for _ in range(trials):
        reservoir: list[int | None] = [None] * k
        for item in range(n):
            slot = reservoir_slot(item + 1, k, rng)
            if slot is not None:
                reservoir[slot] = item
        for item in reservoir:
            assert item is not None
            kept[item] += 1
    expected = trials * k / n  # 400: every item equally likely, the last as the first
    chi2 = sum((o - expected) ** 2 / expected for o in kept)
    assert chi2 < 85.4  # the 99.9th percentile of chi-square with 49 degrees of freedom
    # First-N would keep none of the last ten; a uniform sample keeps about 4000 of them.
    assert 3600 < sum(kept[-10:]) < 4400


def test_reservoir_fills_first() -> None:
    rng = random.Random(0)
    assert [reservoir_slot(i, 5, rng) for i in range(1, 6)] == [0, 1, 2, 3, 4]


def test_sketch_quantiles_within_its_accuracy() -> None:
    sketch = Sketch()
    for ms in range(1, 1001):
        sketch.add(float(ms))
    assert sketch.count == 1000
    assert sketch.quantile(0.5) == pytest.approx(500.5, rel=0.02)
    assert sketch.quantile(0.99) == pytest.approx(990, rel=0.02)
    assert sketch.quantile(0.0) == pytest.approx(1, rel=0.02)
    assert Sketch().quantile(0.5) is None
    restored = Sketch.from_json(sketch.to_json())
    assert restored == sketch
    merged = Sketch()
    merged.merge(sketch)
    merged.merge(sketch)
    assert merged.count == 2000 and merged.quantile(0.5) == sketch.quantile(0.5)


def simulated_pairs(
    rng: random.Random,
    n: int,
    *,
    ms: float = 20.0,
    effect: float = 1.0,
    side_sigma: float = 0.05,
    load_sigma: float = 0.1,
    jitter_ms: float = 0.5,
) -> list[tuple[float, float]]:
    """(candidate ms, baseline ms) of ``n`` requests to one endpoint: a load factor both shadows
    share (they are sent together), each side's own noise, and a queueing delay each."""
    out = []
    for _ in range(n):
        load = rng.lognormvariate(0, load_sigma)
        candidate = ms * effect * load * rng.lognormvariate(0, side_sigma)
        baseline = ms * load * rng.lognormvariate(0, side_sigma)
        out.append(
            (
                candidate + rng.expovariate(1 / jitter_ms),
                baseline + rng.expovariate(1 / jitter_ms),
            )
        )
    return out


LIGHT = {"side_sigma": 0.05, "load_sigma": 0.1, "jitter_ms": 0.5}
# Shadows queued behind live traffic on two busy cores: 8-40 ms of their own on a 20 ms call.
HEAVY = {"side_sigma": 0.4, "load_sigma": 0.8, "jitter_ms": 15.0}


def regression(pairs: list[tuple[float, float]], limits: LatencyLimits | None = None) -> bool:
    test = paired_test(pairs)
    return latency_verdict(test, test.p_value, limits or LatencyLimits()) == "regression"


def test_signed_rank_against_a_published_value() -> None:
    # Darwin's Zea mays height differences (Fisher 1935), the example of scipy's wilcoxon:
    # one-sided exact p = 0.0206...; W+ = 96.
    d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    test = signed_rank([float(x) for x in d])
    assert (test.method, test.statistic, test.pairs) == ("exact", 96.0, 15)
    assert test.p_value == pytest.approx(0.020629882, rel=1e-6)
    assert signed_rank([]).p_value == 1.0 and signed_rank([0.0, 0.0]).pairs == 0
    assert signed_rank([-x for x in map(float, d)]).p_value > 0.97


def test_signed_rank_exact_and_normal_agree_where_they_meet() -> None:
    rng = random.Random(3)
    d = [rng.gauss(0.2, 1) for _ in range(WILCOXON_EXACT_UP_TO)]
    exact = signed_rank(d)
    assert signed_rank([*d, 0.0]).pairs == len(d)  # zeros are dropped
    more = signed_rank([*d, d[0] * 1.0001])  # one more pair: the normal approximation
    assert exact.method == "exact" and more.method == "normal"
    assert more.p_value == pytest.approx(exact.p_value, rel=0.35, abs=0.005)


def test_median_interval_covers_the_median() -> None:
    rng = random.Random(5)
    misses = 0
    for _ in range(200):
        values = [rng.gauss(0, 1) for _ in range(101)]
        low, high = median_interval(values)
        misses += not low <= 0.0 <= high
    assert misses <= 200 * 0.05 + 3 * math.sqrt(200 * 0.05 * 0.95)


@pytest.mark.parametrize("load", [LIGHT, HEAVY], ids=["light", "heavy"])
def test_latency_false_positive_rate_is_at_most_alpha_in_a_a_runs(load: dict[str, float]) -> None:
    """400 seeded A/A simulations (candidate = baseline's code) of 200 requests each: the test
    rejects at most alpha of them (within three binomial deviations) at 0.05 and at the default
    0.01; with the minimum effect too (the verdict), at most 1 % of them at the default level
    (and, Benjamini-Hochberg over endpoints, at most 1 % of A/A reports have any flag)."""
    runs = 400
    rejected = {0.05: 0, 0.01: 0}
    flagged = 0
    for seed in range(runs):
        pairs = simulated_pairs(random.Random(seed), 200, **load)
        test = paired_test(pairs)
        assert test.p_value is not None
        for alpha in rejected:
            rejected[alpha] += test.p_value < alpha
        flagged += regression(pairs)
    for alpha, count in rejected.items():
        assert count <= runs * alpha + 3 * math.sqrt(runs * alpha * (1 - alpha)), (alpha, count)
    assert flagged <= rejected[0.01] and flagged <= runs * 0.01, flagged


@pytest.mark.parametrize(
    ("load", "requests", "power"), [(LIGHT, 100, 0.99), (HEAVY, 500, 0.7)], ids=["light", "heavy"]
)
def test_latency_finds_25_percent_on_a_20_ms_endpoint(
    load: dict[str, float], requests: int, power: float
) -> None:
    """The stated effect: +25 % on a 20 ms endpoint, at the default level and minimum effect.
    Light load: found in 100 requests nearly always; heavy (shadows queued 15 ms on average,
    each side 40 % noisy): in 500 requests, 80 of 100 times here."""
    runs = 100
    found = sum(
        regression(simulated_pairs(random.Random(seed), requests, effect=1.25, **load))
        for seed in range(runs)
    )
    assert found >= runs * power, found


def test_latency_needs_pairs_and_the_minimum_effect() -> None:
    rng = random.Random(11)
    assert latency_verdict(paired_test([]), None, LatencyLimits()) == "insufficient data"
    few = simulated_pairs(rng, 20, effect=2.0)
    assert latency_verdict(paired_test(few), 0.0, LatencyLimits()) == "insufficient data"
    # Significant but small: +5 % is below the default minimum of +10 %.
    small = simulated_pairs(rng, 2000, effect=1.05, side_sigma=0.01, load_sigma=0.01)
    test = paired_test(small)
    assert test.p_value is not None and test.p_value < 1e-6
    assert latency_verdict(test, test.p_value, LatencyLimits()) == "ok"
    assert latency_verdict(test, test.p_value, LatencyLimits(min_relative=0.02)) == "regression"
    # +50 % of 1 ms is 0.5 ms: below the 1 ms absolute minimum.
    tiny = simulated_pairs(rng, 300, ms=1.0, effect=1.5, jitter_ms=0.01)
    test = paired_test(tiny)
    assert test.ratio is not None and test.ratio > 1.4
    assert latency_verdict(test, test.p_value, LatencyLimits()) == "ok"
    faster = simulated_pairs(rng, 300, effect=0.7)
    assert not regression(faster)


def test_a_shadow_starved_for_a_while_is_not_a_regression() -> None:
    """A third of the window the candidate's process was 3x slower (CPU starved), otherwise
    the same: the overall test sees it, the verdict does not call it the code's."""
    rng = random.Random(2)
    pairs = simulated_pairs(rng, 60) + simulated_pairs(rng, 30, effect=3.0)
    pairs += simulated_pairs(rng, 60)
    test = paired_test(pairs)
    assert test.p_value is not None and test.p_value < 0.001 and test.ratio is not None
    assert min(test.thirds) < 1.05 < max(test.thirds)
    limits = LatencyLimits(min_relative=0.01)  # even with a small minimum effect
    assert latency_verdict(test, test.p_value, limits) == "ok"
    slower = simulated_pairs(random.Random(2), 150, effect=1.25)
    assert regression(slower, limits)


# --- the field verdicts over seeded A/A and A/B simulations ------------------------------------

# Per field, how often a side differs from the primary on its own: never (most fields), rarely,
# often, nearly always. Half of that noise both shadows see (the primary's own value was odd).
FIELD_NOISE = (0.0, 0.0, 0.01, 0.05, 0.2, 0.5, 0.9)
SHARED_NOISE = 0.5


def simulated_fields(
    rng: random.Random, requests: int, planted: tuple[int, float] | None = None
) -> list[tuple[str, int, int, int]]:
    """(field, n10, n01, n11) over ``requests`` to one endpoint; ``planted``: (the field's index,
    the share of requests where the candidate, and only it, differs there too)."""
    out = []
    for index, p in enumerate(FIELD_NOISE):
        n10 = n01 = n11 = 0
        for _ in range(requests):
            if rng.random() < p * SHARED_NOISE:
                candidate = baseline = True
            else:
                own = p * (1 - SHARED_NOISE)
                candidate, baseline = rng.random() < own, rng.random() < own
            if planted is not None and planted[0] == index and rng.random() < planted[1]:
                candidate = True
            n10 += candidate and not baseline
            n01 += baseline and not candidate
            n11 += candidate and baseline
        out.append((f"body.f{index}", n10, n01, n11))
    return out


def field_report(fields: list[tuple[str, int, int, int]], requests: int) -> Report:
    """The report's own verdicts (McNemar, Benjamini-Hochberg, the minimum effect) on them."""
    rows = []
    for name, n10, n01, n11 in fields:
        if n10 + n01 + n11 == 0:
            continue
        row: dict[str, object] = {f"{kind}_n": 0 for kind in KINDS}
        row.update(
            endpoint="GET /e",
            field=name,
            raw=n10 + n11,
            noise=n01 + n11,
            n10=n10,
            n01=n01,
            n11=n11,
            volatile=0,
            weight=n10 + n11,
            with_status=0,
            primary_varies=0,
            value_n=n10 + n11,
        )
        rows.append(row)
    comparison = ComparisonRow(1, "default", "sim", "d", {"baseline": "v1b"}, 0, 1, requests, 0, 0)
    endpoint = {"endpoint": "GET /e", "requests": requests, "differing": 0, "noisy": 0}
    snapshot = Snapshot(comparison, endpoints=[endpoint], fields=rows)
    return build_report(snapshot, configured=True, dropped=0)


@pytest.mark.parametrize("requests", [200, 2000])
def test_field_false_positive_rate_is_at_most_alpha_in_a_a_runs(requests: int) -> None:
    """400 seeded A/A reports of seven fields from never to nearly always noisy: McNemar's
    test rejects at most 5 % of the fields at 0.05, and at most 1 % of the reports (the
    default alpha, a false discovery rate) have any field regression (within three binomial
    deviations)."""
    runs = 400
    flagged = rejected = tested = 0
    for seed in range(runs):
        fields = simulated_fields(random.Random(seed), requests)
        for _, n10, n01, _ in fields:
            if n10 + n01:
                tested += 1
                rejected += mcnemar(n10, n01).p_value < 0.05
        flagged += field_report(fields, requests).regressions > 0
    assert rejected <= tested * 0.05 + 3 * math.sqrt(tested * 0.05 * 0.95), (rejected, tested)
    assert flagged <= runs * 0.01 + 3 * math.sqrt(runs * 0.01 * 0.99), flagged


@pytest.mark.parametrize(
    ("field", "extra", "requests", "power"),
    [(0, 0.03, 500, 0.8), (3, 0.05, 500, 0.7), (4, 0.10, 1000, 0.95)],
    ids=["3%-on-a-quiet-field", "5%-on-a-5%-noisy-field", "10%-on-a-20%-noisy-field"],
)
def test_the_field_verdict_finds_stated_effects(
    field: int, extra: float, requests: int, power: float
) -> None:
    """Stated effects, at the default level and minimum effect, beside the six other fields: a
    change in 3 % of the requests on a field that never differs (an error rate of 3 %) is found
    in 500 requests 88 of 100 times here; 5 % on a field 5 % noisy on each side, in 500, 82;
    10 % on one 20 % noisy, in 1,000, all of them."""
    runs = 100
    found = 0
    for seed in range(runs):
        fields = simulated_fields(random.Random(seed), requests, planted=(field, extra))
        report = field_report(fields, requests)
        verdicts = {f.field: f.verdict for e in report.endpoints for f in e.fields}
        found += verdicts.get(f"body.f{field}") == "regression"
    assert found >= runs * power, found
