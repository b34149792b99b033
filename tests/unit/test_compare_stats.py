"""McNemar's test (exact and chi-square), Benjamini-Hochberg, Diffy's figures, reservoir
sampling, and the latency sketch and verdict, against hand-computed values."""

from __future__ import annotations

import random

import pytest

from shadowmesh.compare.latency import Sketch, judge
from shadowmesh.compare.stats import (
    benjamini_hochberg,
    binomial_tail,
    diffy_figures,
    mcnemar,
    reservoir_slot,
)


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


def sketch_of(ms: float, n: int = 100) -> Sketch:
    sketch = Sketch()
    for i in range(n):
        sketch.add(ms + (i % 5) * 0.1)
    return sketch


def test_latency_flagged_against_the_primary_without_baseline() -> None:
    verdict = judge(sketch_of(10), sketch_of(40), None)
    assert verdict.flagged
    assert "p50" in verdict.reason and "over primary" in verdict.reason
    assert verdict.ratio["p50"] == pytest.approx(4.0, rel=0.03)
    assert verdict.baseline_ratio["p50"] is None


def test_latency_not_flagged_when_the_baseline_is_as_slow() -> None:
    # Shadows run beside the primary: if the baseline is slowed as much, the code is not slower.
    verdict = judge(sketch_of(10), sketch_of(40), sketch_of(38))
    assert not verdict.flagged
    assert judge(sketch_of(10), sketch_of(70), sketch_of(38)).flagged


def test_latency_needs_a_margin_a_delta_and_samples() -> None:
    assert not judge(sketch_of(10), sketch_of(11), None).flagged  # x1.1 < x1.2
    assert not judge(sketch_of(1), sketch_of(3), None).flagged  # x3 but only 2 ms
    assert not judge(sketch_of(10, 5), sketch_of(40, 5), None).flagged  # 5 samples
    assert not judge(None, sketch_of(40), None).flagged
