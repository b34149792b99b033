"""Latency per endpoint and side, in bounded memory, and when the candidate is slower.

A log-bucketed sketch (DDSketch's idea) per side shows the distributions: a value lands in
bucket ``ceil(log_gamma(x))``, so any quantile is known within 1 % of its value, whatever the
number of requests, and two sketches merge by adding counts.

The verdict is a paired test of the candidate against the baseline, request by request
(``paired_test``), never against the primary: shadows queue behind live traffic, so comparing
a shadow with the primary measures the setup, not the code. Without a baseline latency is not
judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shadowmesh.compare.stats import median, median_interval, signed_rank
from shadowmesh.model.comparison import DEFAULT_THRESHOLDS

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_MIN_MS = 0.001  # below a microsecond is zero
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


@dataclass
class Sketch:
    zero: int = 0
    bins: dict[int, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return self.zero + sum(self.bins.values())

    def add(self, ms: float) -> None:
        if ms < _MIN_MS:
            self.zero += 1
            return
        index = math.ceil(math.log(ms) / _LOG_GAMMA)
        self.bins[index] = self.bins.get(index, 0) + 1

    def merge(self, other: Sketch) -> None:
        self.zero += other.zero
        for index, count in other.bins.items():
            self.bins[index] = self.bins.get(index, 0) + count

    def quantile(self, q: float) -> float | None:
        total = self.count
        if total == 0:
            return None
        rank = q * (total - 1)
        seen = self.zero
        if rank < seen:
            return 0.0
        for index in sorted(self.bins):
            seen += self.bins[index]
            if rank < seen:
                return 2 * _GAMMA**index / (_GAMMA + 1)
        return 2 * _GAMMA ** max(self.bins) / (_GAMMA + 1)

    def to_json(self) -> dict[str, object]:
        return {"zero": self.zero, "bins": {str(k): v for k, v in self.bins.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Sketch:
        bins = data.get("bins")
        zero = data.get("zero")
        parsed = {int(k): int(v) for k, v in bins.items()} if isinstance(bins, dict) else {}
        return cls(zero if isinstance(zero, int) else 0, parsed)


def quantiles(sketch: Sketch | None) -> dict[str, float | None]:
    return {name: (sketch.quantile(q) if sketch else None) for name, q in QUANTILES}


@dataclass(frozen=True)
class LatencyLimits:
    """When a candidate is called slower: the test's level and the smallest effect that counts.

    Both are needed: with thousands of pairs a test finds a 1 % difference that nobody cares
    about, and a large ratio on a few pairs can be chance."""

    alpha: float = DEFAULT_THRESHOLDS.alpha
    min_pairs: int = DEFAULT_THRESHOLDS.min_pairs
    # The median ratio must be at least 1 + this, and the median difference this many ms.
    min_relative: float = DEFAULT_THRESHOLDS.latency_min_relative
    min_absolute_ms: float = DEFAULT_THRESHOLDS.latency_min_absolute_ms
    # The pairs must span this many seconds: a shadow process starved for a second must not
    # fill a whole window.
    min_seconds: float = DEFAULT_THRESHOLDS.latency_min_seconds


@dataclass
class LatencyTest:
    """The paired test of one endpoint, before the correction over endpoints."""

    pairs: int
    p_value: float | None  # None: not tested (no baseline, too few pairs)
    ratio: float | None  # median of candidate/baseline over the pairs
    interval: tuple[float, float] | None  # 95 % interval of that median ratio
    delta_ms: float | None  # median of candidate - baseline
    p90_ratio: float | None  # candidate's p90 over the baseline's, on the same pairs
    # The median ratio in each third of the window (of its time when the pairs' times are
    # known and each third has some, else of its pairs): a slower candidate is slower all
    # along, a shadow process starved of CPU for a few seconds is not.
    thirds: tuple[float, ...] = ()
    span_s: float | None = None  # from the first pair to the last; None: times not known


BLOCKS = 3


def paired_test(
    pairs: Sequence[tuple[float, float]], times: Sequence[float] | None = None
) -> LatencyTest:
    """Wilcoxon's signed-rank test on the log ratios candidate/baseline of each request.

    Candidate and baseline are both shadows of the same request, sent in an order drawn at
    random per request, on the same pool: whatever the load does to one it does to the other,
    so under "no change" each log ratio is as likely positive as negative, which is the test's
    null. The primary is never in it: it is served first, on another pool, under other load.
    Log ratios, so one slow burst (a 5x moment) weighs as a rank, not as milliseconds.

    The test takes requests as independent; they are not quite: on a busy machine one shadow's
    process can be starved for seconds, and every request in that time leans one way. So the
    verdict also wants the effect in each third of the window (``thirds``). ``pairs`` are in
    time order (either way round: the thirds are only compared with each other).
    """
    kept = [i for i, (c, b) in enumerate(pairs) if c > 0 and b > 0]
    usable = [pairs[i] for i in kept]
    if not usable:
        return LatencyTest(0, None, None, None, None, None)
    logs = [math.log(c / b) for c, b in usable]
    at = [times[i] for i in kept] if times is not None else None
    test = signed_rank(logs)
    low, high = median_interval(logs)
    candidates = sorted(c for c, _ in usable)
    baselines = sorted(b for _, b in usable)
    at90 = min(len(usable) - 1, int(0.9 * len(usable)))
    return LatencyTest(
        pairs=len(usable),
        p_value=test.p_value,
        ratio=math.exp(median(logs)),
        interval=(math.exp(low), math.exp(high)),
        delta_ms=median([c - b for c, b in usable]),
        p90_ratio=candidates[at90] / baselines[at90] if baselines[at90] > 0 else None,
        thirds=_thirds(logs) if at is None else _time_thirds(logs, at),
        span_s=None if at is None else max(at) - min(at),
    )


def _time_thirds(logs: Sequence[float], times: Sequence[float]) -> tuple[float, ...]:
    start, end = min(times), max(times)
    width = (end - start) / BLOCKS or 1.0
    groups: list[list[float]] = [[] for _ in range(BLOCKS)]
    for value, t in zip(logs, times, strict=True):
        groups[min(BLOCKS - 1, int((t - start) / width))].append(value)
    if not all(groups):
        return _thirds(logs)  # bursts with pauses between them: thirds of the pairs instead
    return tuple(math.exp(median(g)) for g in groups)


def _thirds(logs: Sequence[float]) -> tuple[float, ...]:
    if len(logs) < BLOCKS:
        return ()
    size = len(logs) / BLOCKS
    return tuple(
        math.exp(median(logs[round(i * size) : round((i + 1) * size)])) for i in range(BLOCKS)
    )


def latency_verdict(test: LatencyTest, q_value: float | None, limits: LatencyLimits) -> str:
    """``regression``, ``ok`` or ``insufficient data``; the reason is the report's to word."""
    if test.pairs < limits.min_pairs or test.p_value is None:
        return "insufficient data"
    if test.span_s is not None and test.span_s < limits.min_seconds:
        return "insufficient data"
    if q_value is None or test.ratio is None or test.delta_ms is None:
        return "ok"
    if (
        q_value < limits.alpha
        and test.ratio >= 1 + limits.min_relative
        and test.delta_ms >= limits.min_absolute_ms
        and all(third >= 1 + limits.min_relative / 2 for third in test.thirds)
    ):
        return "regression"
    return "ok"
