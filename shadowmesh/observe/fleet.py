"""``serve --workers N``: every worker's counters summed in the first process, each once.

Each process counts in its own ``Stats`` (the request path is unchanged: plain counters, no
lock, no shared memory). A worker sends all of them, cumulative, as one frame (``encode``) to
the first process every ``PUSH`` seconds, when the admin API asks before answering ``/stats``
or ``/stats/prometheus``, and once more when it has drained. The first process keeps each
worker's last frame, a newer one replacing it (so a frame lost or late never counts twice),
and when a worker ends adds its last frame, once, to the counts of the workers gone. A scrape
reads ``Fleet.total``: its own ``Stats``, every live worker's last frame and those.

Envoy does the same between its worker threads: each keeps its histograms thread-local and
the main thread merges them at every stats flush (``stats_flush_interval``, 5 s). A worker
killed (SIGKILL) loses what it counted after its last frame: at most ``PUSH`` seconds.

Measured (``SHADOWMESH_PURE=1 python -m bench.fleet``, pure Python): the request path pays
nothing more, and a frame of 100 cells takes 0.4 ms to encode (1,000 cells: 4.6 ms), once a
second. prometheus-client's multiprocess mode was measured and left out: it writes every
sample into a memory-mapped file on the request path, 13.2 us of the GIL for one request's
four Istio metrics against 0.8 us for ``Stats.count_request`` (compiled: 10.3 us against
0.6 us, ``python -m bench.fleet`` in the compiled venv), and it cannot run
``observe.istio``'s collector, which builds the 25 labels at scrape time, not per request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shadowmesh.observe.stats import Histogram, RequestCell, Stats
from shadowmesh.routing.decision import Endpoint

PUSH = 1.0  # seconds between a worker's frames
# The gauges of a process that are summed over all of them, beside Stats' own.
GAUGES = ("shadow_in_flight", "shadow_held_bytes", "upstream_idle", "shadow_idle")


@dataclass
class Report:
    """One process's counters as its last frame had them."""

    pid: int
    stats: Stats
    gauges: dict[str, int] = field(default_factory=dict)
    otlp: dict[str, int] | None = None
    answered: int = 0  # how many of the first process's asks this frame answers
    # Mirrors its route table could not resolve, by reason: counted per table, so, as gauges,
    # they go with a worker that ends.
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class Totals:
    """Every process's counts summed, and their gauges, OTLP counts (None without OTLP) and
    skipped mirrors."""

    stats: Stats
    gauges: dict[str, int]
    otlp: dict[str, int] | None
    skipped: dict[str, int]


def encode(report: Report) -> bytes:
    """A process's counters as JSON: the cells as rows, an endpoint as [address, port]."""
    stats = report.stats
    cells = [
        [
            cluster,
            [peer.address, peer.port] if isinstance(peer, Endpoint) else peer,
            status,
            flag,
            c.count,
            c.duration,
            c.duration_sum,
            c.request_bytes,
            c.request_bytes_sum,
            c.response_bytes,
            c.response_bytes_sum,
        ]
        for (cluster, peer, status, flag), c in list(stats.cells.items())
    ]
    return json.dumps(
        {
            "pid": report.pid,
            "answered": report.answered,
            "requests": stats.requests,
            "shadows": stats.shadows,
            "shadow_dropped": stats.shadow_dropped,
            "shadow_failed": stats.shadow_failed,
            "retries": stats.retries,
            "downstream_active": stats.downstream_active,
            "cells": cells,
            "latency": {k: [h.counts, h.total] for k, h in list(stats.latency.items())},
            "gauges": report.gauges,
            "otlp": report.otlp,
            "skipped": report.skipped,
        },
        separators=(",", ":"),
    ).encode()


def decode(data: bytes) -> Report:
    """``encode``'s frame back; ValueError (or KeyError, TypeError) if it is not one."""
    raw: dict[str, Any] = json.loads(data)
    stats = Stats()
    stats.requests.update(raw["requests"])
    stats.shadows.update(raw["shadows"])
    stats.shadow_dropped.update(raw["shadow_dropped"])
    stats.shadow_failed.update(raw["shadow_failed"])
    stats.retries.update(raw.get("retries", {}))
    stats.downstream_active = int(raw["downstream_active"])
    for cluster, peer, status, flag, count, *histograms in raw["cells"]:
        cell = RequestCell()
        cell.count = int(count)
        (cell.duration, cell.duration_sum, cell.request_bytes, cell.request_bytes_sum,
         cell.response_bytes, cell.response_bytes_sum) = histograms  # fmt: skip
        endpoint = Endpoint(peer[0], peer[1]) if isinstance(peer, list) else peer
        stats.cells[(cluster, endpoint, status, flag)] = cell
    for cluster, (counts, total) in raw["latency"].items():
        histogram = stats.latency[cluster] = Histogram()
        histogram.counts, histogram.total = [int(c) for c in counts], float(total)
    otlp = raw.get("otlp")
    gauges = dict(raw["gauges"])
    otlp_counts = dict(otlp) if otlp else None
    skipped = dict(raw["skipped"])
    return Report(int(raw["pid"]), stats, gauges, otlp_counts, raw["answered"], skipped)


def add(into: Stats, other: Stats) -> None:
    """``other``'s counts added to ``into``'s."""
    into.requests.update(other.requests)
    into.shadows.update(other.shadows)
    into.shadow_dropped.update(other.shadow_dropped)
    into.shadow_failed.update(other.shadow_failed)
    into.retries.update(other.retries)
    into.downstream_active += other.downstream_active
    for key, cell in list(other.cells.items()):
        mine = into.cells.get(key)
        if mine is None:
            mine = into.cells[key] = RequestCell()
        mine.count += cell.count
        mine.duration = _sum(mine.duration, cell.duration)
        mine.duration_sum += cell.duration_sum
        mine.request_bytes = _sum(mine.request_bytes, cell.request_bytes)
        mine.request_bytes_sum += cell.request_bytes_sum
        mine.response_bytes = _sum(mine.response_bytes, cell.response_bytes)
        mine.response_bytes_sum += cell.response_bytes_sum
    for cluster, histogram in list(other.latency.items()):
        total = into.latency.get(cluster)
        if total is None:
            total = into.latency[cluster] = Histogram()
        total.counts = _sum(total.counts, histogram.counts)
        total.total += histogram.total


def _sum(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


class Fleet:
    """The first process's view of every worker: the last frame of each one alive, and the
    counts of those gone."""

    def __init__(self) -> None:
        self.live: dict[int, Report] = {}  # by worker id (not pid: a pid can be reused)
        self.gone = Stats()
        self.gone_otlp: dict[str, int] = {}

    def update(self, worker: int, report: Report) -> None:
        self.live[worker] = report

    def retire(self, worker: int) -> None:
        """The worker ended: its last counts stay, once; its gauges go with it."""
        report = self.live.pop(worker, None)
        if report is None:
            return
        add(self.gone, report.stats)
        self.gone.downstream_active = 0
        summed({k: v for k, v in (report.otlp or {}).items() if k != "queued"}, self.gone_otlp)

    def total(self, own: Report) -> Totals:
        """Every process's counts summed, ``own`` being the first process's."""
        stats = Stats()
        add(stats, own.stats)
        add(stats, self.gone)
        gauges = dict(own.gauges)
        skipped = dict(own.skipped)
        otlp = None if own.otlp is None else {**own.otlp}
        if otlp is not None:
            summed(self.gone_otlp, otlp)
        for report in list(self.live.values()):
            add(stats, report.stats)
            summed(report.gauges, gauges)
            summed(report.skipped, skipped)
            if otlp is not None and report.otlp is not None:
                summed(report.otlp, otlp)
        return Totals(stats, gauges, otlp, skipped)

    def processes(self, own: Report) -> list[dict[str, int]]:
        """Each serving process's pid, requests and open connections: the first one first."""
        return [
            {
                "pid": r.pid,
                "requests": sum(c.count for c in list(r.stats.cells.values())),
                "downstream_active": r.stats.downstream_active,
            }
            for r in [own, *self.live.values()]
        ]


def summed(counts: Mapping[str, int], into: dict[str, int]) -> None:
    """``counts`` added to ``into``, key by key."""
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value
