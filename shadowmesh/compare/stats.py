"""The statistics of the report: McNemar's test for paired differences, Diffy's noise figures,
Benjamini-Hochberg over the fields tested, Wilcoxon's signed-rank test for paired latencies, and
reservoir sampling for examples.

For one field, each request is a pair of booleans: did the candidate differ from the primary,
did the baseline (the primary's own version, run again) differ. ``n10`` counts requests where
only the candidate differed, ``n01`` only the baseline, ``n11`` both. Diffy's ``R - S`` is
exactly ``n10 - n01``, McNemar's discordance; the test asks whether ``n10`` is larger than
chance would make it if candidate and baseline were equally noisy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

EXACT_BELOW = 25  # discordant pairs; from there on the chi-square approximation is good
# Signed-rank test: the exact (conditional) distribution up to this many non-zero pairs, the
# normal approximation with tie correction from there on (its error is then far below alpha).
WILCOXON_EXACT_UP_TO = 60


@dataclass(frozen=True)
class McNemar:
    p_value: float  # one-sided: the candidate differs more often than the baseline
    method: str  # "exact" or "chi2"
    statistic: float | None = None  # chi-square with continuity correction, when used


def mcnemar(n10: int, n01: int) -> McNemar:
    discordant = n10 + n01
    if discordant == 0:
        return McNemar(1.0, "exact")
    if discordant < EXACT_BELOW:
        return McNemar(binomial_tail(n10, discordant), "exact")
    statistic = (abs(n10 - n01) - 1) ** 2 / discordant
    # The signed root of the corrected statistic is a standard normal under the null; the
    # one-sided p is its upper tail (at least one half when the candidate is not the worse).
    z = math.copysign(math.sqrt(statistic), n10 - n01) if n10 != n01 else 0.0
    return McNemar(0.5 * math.erfc(z / math.sqrt(2)), "chi2", statistic)


def binomial_tail(k: int, n: int) -> float:
    """P[X >= k] for X ~ Binomial(n, 1/2), exactly."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n)


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """q-values, in the order given: controls the false discovery rate over all fields."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    q = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        index = order[rank - 1]
        running = min(running, p_values[index] * m / rank)
        q[index] = min(1.0, running)
    return q


@dataclass(frozen=True)
class NoiseFigures:
    """Diffy's figures, in percent: shown beside the test for those who know them."""

    relative: float  # |R - S| / (R + S)
    absolute: float  # |R - S| / N


def diffy_figures(raw: int, noise: int, requests: int) -> NoiseFigures:
    excess = abs(raw - noise)
    relative = 100.0 * excess / (raw + noise) if raw + noise else 0.0
    absolute = 100.0 * excess / requests if requests else 0.0
    return NoiseFigures(relative, absolute)


def reservoir_slot(seen: int, k: int, rng: random.Random) -> int | None:
    """Algorithm R: where the ``seen``-th item (1-based) goes in a reservoir of ``k``, or None.

    Every item seen so far stays in the reservoir with the same probability, ``k / seen``, so
    later examples are as likely to be shown as the first ones.
    """
    if seen <= k:
        return seen - 1
    slot = rng.randrange(seen)
    return slot if slot < k else None


@dataclass(frozen=True)
class SignedRank:
    """Wilcoxon's signed-rank test of paired differences, one-sided: are they mostly positive?"""

    p_value: float
    pairs: int  # the non-zero differences the test used
    statistic: float  # W+, the sum of the ranks of the positive differences
    method: str  # "exact" or "normal"


def signed_rank(differences: Sequence[float]) -> SignedRank:
    """One-sided Wilcoxon signed-rank test of H0 "the differences are symmetric about zero"
    against "they lean positive". Zero differences are dropped (Wilcoxon's own rule); ties get
    their average rank. Written here rather than taken from scipy: it is thirty lines, and the
    proxy should not carry a 40 MB dependency for them.

    Up to ``WILCOXON_EXACT_UP_TO`` pairs the p-value is exact: the distribution of W+ over every
    flip of signs of the observed ranks (the test's own null: under it each sign is a fair coin,
    whatever the ranks), counted by dynamic programming on doubled ranks (ties make halves).
    """
    nonzero = [d for d in differences if d != 0.0 and not math.isnan(d)]
    n = len(nonzero)
    if n == 0:
        return SignedRank(1.0, 0, 0.0, "exact")
    ranks = _average_ranks([abs(d) for d in nonzero])
    w_plus = sum(r for r, d in zip(ranks, nonzero, strict=True) if d > 0)
    if n <= WILCOXON_EXACT_UP_TO:
        return SignedRank(_exact_upper_tail(ranks, w_plus), n, w_plus, "exact")
    mean = n * (n + 1) / 4
    ties = _tie_sizes(ranks)
    variance = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in ties) / 48
    if variance <= 0:
        return SignedRank(1.0, n, w_plus, "normal")
    z = (w_plus - mean - 0.5) / math.sqrt(variance)  # continuity correction, one-sided
    return SignedRank(0.5 * math.erfc(z / math.sqrt(2)), n, w_plus, "normal")


def _average_ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end) / 2 + 1
        for k in range(start, end + 1):
            ranks[order[k]] = rank
        start = end + 1
    return ranks


def _tie_sizes(ranks: Sequence[float]) -> list[int]:
    counts: dict[float, int] = {}
    for r in ranks:
        counts[r] = counts.get(r, 0) + 1
    return [c for c in counts.values() if c > 1]


def _exact_upper_tail(ranks: Sequence[float], w_plus: float) -> float:
    """P[W+ >= w_plus] over the 2^n equally likely sign patterns."""
    doubled = [round(2 * r) for r in ranks]
    total = sum(doubled)
    ways = [0] * (total + 1)
    ways[0] = 1
    reach = 0
    for r in doubled:
        for s in range(reach, -1, -1):
            if ways[s]:
                ways[s + r] += ways[s]
        reach += r
    threshold = round(2 * w_plus)
    return float(sum(ways[threshold:]) / 2 ** len(doubled))


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("the median of nothing")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: order statistics whose ranks the binomial
    (normal approximation) puts around n/2. Needs no assumption beyond independent draws."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("the median of nothing")
    z = _normal_quantile(0.5 + confidence / 2)
    half = z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half))
    high = min(n - 1, math.ceil(n / 2 + half) - 1)
    return ordered[low], ordered[max(low, high)]


def _normal_quantile(p: float) -> float:
    """The standard normal's quantile, by bisection on erfc: exact enough, and rarely called."""
    low, high = -10.0, 10.0
    for _ in range(80):
        mid = (low + high) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2
