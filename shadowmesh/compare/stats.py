"""The statistics of the report: McNemar's test for paired differences, Diffy's noise figures,
Benjamini-Hochberg over the fields tested, and reservoir sampling for examples.

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
