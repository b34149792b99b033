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

from shadowmesh.routing.decision import Endpoint

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

# Envoy's default histogram bounds, which Istio's standard metrics use unchanged (its bootstrap
# sets no ``histogram_bucket_settings``): milliseconds for the duration, bytes for the sizes.
ISTIO_BOUNDS: tuple[float, ...] = (
    0.5,
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
    60000.0,
    300000.0,
    600000.0,
    1800000.0,
    3600000.0,
)
# Distinct Host values kept for requests that reached no cluster (Istio's Host-header fallback
# for destination_service); past this, a client sending random Hosts gets "" (unknown) instead
# of growing the table without bound.
MAX_FALLBACK_HOSTS = 256

# Who a finished request went to: the endpoint picked, or, when none was, the Host it asked for.
Peer = Endpoint | str
# (cluster or "", peer, status or 0, response flag or ""): what Istio's labels are expanded from
# at scrape time (``observe.istio``), and what ``requests_by`` is folded from.
CellKey = tuple[str, Peer, int, str]


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


class RequestCell:
    """Finished requests of one ``CellKey``: their count and Istio's three histograms, as counts
    per ``ISTIO_BOUNDS`` bucket (the last slot is +Inf) and sums."""

    __slots__ = (
        "count",
        "duration",
        "duration_sum",
        "request_bytes",
        "request_bytes_sum",
        "response_bytes",
        "response_bytes_sum",
    )

    def __init__(self) -> None:
        self.count = 0
        size = len(ISTIO_BOUNDS) + 1
        self.duration = [0] * size
        self.duration_sum = 0
        self.request_bytes = [0] * size
        self.request_bytes_sum = 0
        self.response_bytes = [0] * size
        self.response_bytes_sum = 0


def status_class(status: int) -> str:
    index = status // 100
    return _STATUS_CLASS[index] if 0 <= index < len(_STATUS_CLASS) else "0xx"


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)  # "total", "2xx", flag names
    shadows: Counter[str] = field(default_factory=Counter)  # sent, completed, failed, ...
    shadow_dropped: Counter[str] = field(default_factory=Counter)  # by reason
    shadow_failed: Counter[str] = field(default_factory=Counter)  # by reason
    # Envoy's retry stats (upstream_rq_retry, _success, _limit_exceeded, _per_try_timeout,
    # retry_or_shadow_abandoned), for every cluster together.
    retries: Counter[str] = field(default_factory=Counter)
    downstream_active: int = 0
    # Finished primary requests by (cluster, peer, status, flag); see ``count_request``.
    cells: dict[CellKey, RequestCell] = field(default_factory=dict)
    fallback_hosts: set[str] = field(default_factory=set)
    # Upstream request duration per cluster; see ``observe``.
    latency: dict[str, Histogram] = field(default_factory=dict)

    # --- the request path ---------------------------------------------------------------------

    def count_request(
        self,
        cluster: str,
        status: int,
        flag: str,
        endpoint: Endpoint | None = None,
        authority: str = "",
        milliseconds: int = 0,
        received: int = 0,
        sent: int = 0,
    ) -> None:
        """One finished primary request: one dict look-up and three bisects. ``snapshot`` derives
        "total", "2xx"..., the per-flag totals and ``requests_by`` from the cells, and
        ``observe.istio`` Istio's labelled metrics; ``authority`` matters only without an
        endpoint (Istio then names the destination service by the Host header)."""
        peer: Peer
        if endpoint is not None:
            peer = endpoint
        elif authority in self.fallback_hosts:
            peer = authority
        elif len(self.fallback_hosts) < MAX_FALLBACK_HOSTS:
            self.fallback_hosts.add(authority)
            peer = authority
        else:
            peer = ""
        key = (cluster, peer, status, flag)
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = RequestCell()
        cell.count += 1
        cell.duration[bisect_left(ISTIO_BOUNDS, milliseconds)] += 1
        cell.duration_sum += milliseconds
        cell.request_bytes[bisect_left(ISTIO_BOUNDS, received)] += 1
        cell.request_bytes_sum += received
        cell.response_bytes[bisect_left(ISTIO_BOUNDS, sent)] += 1
        cell.response_bytes_sum += sent

    def observe(self, cluster: str, seconds: float) -> None:
        """How long one upstream request took, from sending the head to the last response byte."""
        histogram = self.latency.get(cluster)
        if histogram is None:
            histogram = self.latency[cluster] = Histogram()
        histogram.observe(seconds)

    # --- read at scrape time --------------------------------------------------------------------

    def requests_by(self) -> Counter[RequestKey]:
        """Finished requests by (cluster, status class, flag), folded from the cells."""
        folded: Counter[RequestKey] = Counter()
        for (cluster, _, status, flag), cell in self.cells.items():
            folded[(cluster, status_class(status), flag)] += cell.count
        return folded

    def request_totals(self) -> Counter[str]:
        """``requests`` as it has always read ("total", "2xx", "UF"...), with ``requests_by``
        folded in."""
        totals = Counter(self.requests)
        for (_, klass, flag), count in self.requests_by().items():
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
                for (cluster, klass, flag), count in sorted(self.requests_by().items())
            ],
            "shadows": dict(self.shadows),
            "shadow_dropped": dict(self.shadow_dropped),
            "shadow_failed": dict(self.shadow_failed),
            "retries": dict(self.retries),
            "downstream_active": self.downstream_active,
            # Envoy's fault filter stats (fault.delays_injected, fault.aborts_injected and the
            # active_faults gauge), kept in ``requests`` so workers' reports add them up.
            "faults": {
                "delays_injected": self.requests["fault_delays_injected"],
                "aborts_injected": self.requests["fault_aborts_injected"],
                "active": self.requests["fault_active"],
            },
            "upstream_latency": {
                "bounds_seconds": list(LATENCY_BOUNDS),
                "clusters": {
                    cluster: {"counts": list(h.counts), "sum": h.total, "count": h.count}
                    for cluster, h in sorted(self.latency.items())
                },
            },
        }
