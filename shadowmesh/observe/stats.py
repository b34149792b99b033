"""Counters the data plane keeps: requests by response flag, shadows by outcome and drop reason.

The request path only increments plain Python counters here (one dict update, one bisect); the
admin API turns them into JSON (``snapshot``) and Prometheus text (``observe.metrics``) when it
is asked, so exporting costs nothing per request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Upper bounds of the upstream latency buckets, in seconds: Envoy's histogram bounds from 1 ms to
# one minute, plus 0.5 ms because a proxy on loopback answers that fast. The last bucket (+Inf)
# is implicit: ``counts`` has one more slot than there are bounds.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# status // 100 -> class label; index 0 is a request that got no status at all (client gone).
_STATUS_CLASS = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")

RequestKey = tuple[str, str, str]  # (cluster, status class, response flag or "")


class Histogram:
    """Counts per fixed bucket and their sum; ``counts[i]`` holds values <= LATENCY_BOUNDS[i]."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


def status_class(status: int) -> str:
    index = status // 100
    return _STATUS_CLASS[index] if 0 <= index < len(_STATUS_CLASS) else "0xx"


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)  # "total", "2xx", flag names
    shadows: Counter[str] = field(default_factory=Counter)  # sent, completed, failed, ...
    shadow_dropped: Counter[str] = field(default_factory=Counter)  # by reason
    shadow_failed: Counter[str] = field(default_factory=Counter)  # by reason
    downstream_active: int = 0
    # Finished primary requests by (cluster, status class, flag); see ``count_request``.
    requests_by: Counter[RequestKey] = field(default_factory=Counter)
    # Upstream request duration per cluster; see ``observe``.
    latency: dict[str, Histogram] = field(default_factory=dict)

    # --- the request path ---------------------------------------------------------------------

    def count_request(self, cluster: str, status: int, flag: str) -> None:
        """One finished primary request. Replaces the data plane's three ``requests[...]`` bumps:
        ``snapshot`` derives "total", "2xx"... and the per-flag totals from these keys."""
        self.requests_by[(cluster, status_class(status), flag)] += 1

    def observe(self, cluster: str, seconds: float) -> None:
        """How long one upstream request took, from sending the head to the last response byte."""
        histogram = self.latency.get(cluster)
        if histogram is None:
            histogram = self.latency[cluster] = Histogram()
        histogram.observe(seconds)

    # --- read at scrape time --------------------------------------------------------------------

    def request_totals(self) -> Counter[str]:
        """``requests`` as it has always read ("total", "2xx", "UF"...), with ``requests_by``
        folded in."""
        totals = Counter(self.requests)
        for (_, klass, flag), count in self.requests_by.items():
            totals["total"] += count
            totals[klass] += count
            if flag:
                totals[flag] += count
        return totals

    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-ready data: what ``GET /stats`` answers and ``shadowmesh stats``
        and ``/stats/prometheus`` read."""
        return {
            "requests": dict(self.request_totals()),
            "requests_by": [
                {"cluster": cluster, "status_class": klass, "flag": flag, "count": count}
                for (cluster, klass, flag), count in sorted(self.requests_by.items())
            ],
            "shadows": dict(self.shadows),
            "shadow_dropped": dict(self.shadow_dropped),
            "shadow_failed": dict(self.shadow_failed),
            "downstream_active": self.downstream_active,
            "upstream_latency": {
                "bounds_seconds": list(LATENCY_BOUNDS),
                "clusters": {
                    cluster: {"counts": list(h.counts), "sum": h.total, "count": h.count}
                    for cluster, h in sorted(self.latency.items())
                },
            },
        }
