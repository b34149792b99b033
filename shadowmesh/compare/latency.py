"""Latency per endpoint and side, in bounded memory, and when the candidate is slower.

A log-bucketed sketch (DDSketch's idea): a value lands in bucket ``ceil(log_gamma(x))``, so any
quantile is known within 1 % of its value, whatever the number of requests, and two sketches
merge by adding counts. A candidate is flagged slower when, at p50 or p90, its ratio to the
primary exceeds the baseline's ratio (1.0 without a baseline) by the margin and by at least a
few milliseconds: shadows run beside the primary, so some slowdown is the setup's, not the code's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_MIN_MS = 0.001  # below a microsecond is zero
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
DEFAULT_MARGIN = 1.2
DEFAULT_MIN_DELTA_MS = 5.0
MIN_SAMPLES = 10
FLAGGED_AT = ("p50", "p90")  # p99 of a few hundred requests is one or two of them


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
class LatencyVerdict:
    ratio: dict[str, float | None]  # candidate / primary, per quantile
    baseline_ratio: dict[str, float | None]  # baseline / primary; None without a baseline
    flagged: bool
    reason: str


def judge(
    primary: Sketch | None,
    candidate: Sketch | None,
    baseline: Sketch | None,
    margin: float = DEFAULT_MARGIN,
    min_delta_ms: float = DEFAULT_MIN_DELTA_MS,
) -> LatencyVerdict:
    prim, cand, base = quantiles(primary), quantiles(candidate), quantiles(baseline)
    ratio = {name: _ratio(cand[name], prim[name]) for name, _ in QUANTILES}
    base_ratio = {name: _ratio(base[name], prim[name]) for name, _ in QUANTILES}
    if primary is None or candidate is None or min(primary.count, candidate.count) < MIN_SAMPLES:
        return LatencyVerdict(ratio, base_ratio, False, "")
    reasons = []
    for name in FLAGGED_AT:
        p, c = prim[name], cand[name]
        if p is None or c is None:
            continue
        expected_ratio = base_ratio[name] if baseline is not None else 1.0
        expected = p * max(expected_ratio or 1.0, 1.0)
        if c > expected * margin and c - expected >= min_delta_ms:
            against = f"baseline x{expected_ratio:.2f}" if baseline is not None else "primary"
            reasons.append(
                f"{name} {c:.1f} ms vs {p:.1f} ms (x{c / p if p else math.inf:.2f}, "
                f"+{c - expected:.1f} ms over {against})"
            )
    return LatencyVerdict(ratio, base_ratio, bool(reasons), "; ".join(reasons))


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference
