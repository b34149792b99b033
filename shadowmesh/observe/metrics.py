"""``/stats/prometheus``: shadowmesh's counters in Prometheus' text format, built at scrape time.

The data plane never calls prometheus-client: it bumps plain counters in ``Stats``, and the
collector here reads the same JSON-ready snapshot that ``GET /stats`` answers, once per scrape.
So the hot path pays nothing for the export, and the JSON, the Prometheus text and the
``shadowmesh stats`` table can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from shadowmesh.observe import istio, upstreamstats

Snapshot = Mapping[str, Any]
CONTENT_TYPE = CONTENT_TYPE_LATEST
NONE = "-"  # the access log's word for "no flag" or "no cluster"


class StatsCollector(Collector):
    """Reads a ``Stats.snapshot()``-shaped mapping (plus serve's gauges) on every scrape."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        yield _requests(snapshot)
        yield _counter(
            "shadowmesh_requests_rejected",
            "Requests refused before routing (bad framing, limits), answered 4xx and closed.",
            _mapping(snapshot.get("requests")).get("rejected", 0),
        )
        yield _counter(
            "shadowmesh_dropped_headers_with_underscores",
            "Request headers dropped because their names contain '_' (Envoy's stat of the "
            "same name; serve --allow-underscores-in-headers keeps them).",
            _mapping(snapshot.get("requests")).get("dropped_headers_with_underscores", 0),
        )
        shadows = _mapping(snapshot.get("shadows"))
        for outcome, text in (
            ("sent", "Shadow requests sent to a mirror upstream."),
            ("completed", "Shadow requests that got a whole response."),
        ):
            yield _counter(f"shadowmesh_shadows_{outcome}", text, shadows.get(outcome, 0))
        yield _by_reason(
            "shadowmesh_shadows_failed",
            "Shadow requests sent that got no whole response, by reason.",
            snapshot.get("shadow_failed"),
        )
        yield _by_reason(
            "shadowmesh_shadows_dropped",
            "Shadow copies never sent (limits, client gone...), by reason.",
            snapshot.get("shadow_dropped"),
        )
        yield _by_reason(
            "shadowmesh_shadows_skipped",
            "Mirrors the route table could not resolve, by reason; restarts at each apply.",
            snapshot.get("shadow_skipped"),
        )
        faults = _mapping(snapshot.get("faults"))
        for kind, text in (
            ("delays_injected", "Requests held by a route's fault delay (flag DI)."),
            ("aborts_injected", "Requests answered by a route's fault abort (flag FI)."),
        ):
            yield _counter(f"shadowmesh_fault_{kind}", text, faults.get(kind, 0))
        yield _gauge(
            "shadowmesh_fault_active",
            "Requests being delayed by a fault now.",
            faults.get("active"),
        )
        yield _by_reason(
            "shadowmesh_upstream_rq_retries",
            "Retries of primary requests by Envoy's stat name: upstream_rq_retry (made), "
            "upstream_rq_retry_success, upstream_rq_retry_limit_exceeded, "
            "upstream_rq_per_try_timeout, retry_or_shadow_abandoned (body past the buffer).",
            snapshot.get("retries"),
        )
        yield from _latency(snapshot.get("upstream_latency"))
        yield from upstreamstats.families(snapshot.get(upstreamstats.KEY))
        otlp = snapshot.get("otlp")
        if isinstance(otlp, Mapping):
            family = CounterMetricFamily(
                "shadowmesh_otlp_spans",
                "Spans for the OTLP exporter by outcome: exported, dropped (queue full), failed "
                "(the collector refused or was unreachable).",
                labels=("outcome",),
            )
            for outcome in ("exported", "dropped", "failed"):
                family.add_metric([outcome], _number(otlp.get(outcome)))
            yield family
            yield _gauge(
                "shadowmesh_otlp_spans_queued", "Spans waiting for export.", otlp.get("queued")
            )
        for name, key, text in _GAUGES:
            if key in snapshot:
                yield _gauge(name, text, snapshot[key])


_GAUGES = (
    (
        "shadowmesh_downstream_connections_active",
        "downstream_active",
        "Client connections open now.",
    ),
    ("shadowmesh_shadows_in_flight", "shadow_in_flight", "Shadow requests not finished yet."),
    (
        "shadowmesh_shadow_held_bytes",
        "shadow_held_bytes",
        "Request body bytes held for shadows not sent yet.",
    ),
)


def registry(
    source: Callable[[], Snapshot], requests: istio.Source | None = None
) -> CollectorRegistry:
    """A registry of shadowmesh's counters, Istio's standard metrics when ``requests`` gives
    the data plane's request cells, and the process' own (open fds, memory, CPU)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StatsCollector(source))
    if requests is not None:
        reg.register(istio.IstioCollector(requests))
    ProcessCollector(registry=reg)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)


def _requests(snapshot: Snapshot) -> Metric:
    family = CounterMetricFamily(
        "shadowmesh_requests",
        "Finished requests by upstream cluster, status class and Envoy response flag.",
        labels=("cluster", "status_class", "response_flags"),
    )
    for row in _rows(snapshot.get("requests_by")):
        labels = [str(row.get("cluster") or NONE), str(row.get("status_class", ""))]
        family.add_metric([*labels, str(row.get("flag") or NONE)], _number(row.get("count")))
    return family


def _latency(data: Any) -> Iterable[Metric]:
    latency = _mapping(data)
    bounds = [float(b) for b in latency.get("bounds_seconds", [])]
    family = HistogramMetricFamily(
        "shadowmesh_upstream_request_duration_seconds",
        "Upstream request time, head sent to last response byte, by cluster.",
        labels=("cluster",),
    )
    for cluster, histogram in sorted(_mapping(latency.get("clusters")).items()):
        counts = [int(c) for c in _mapping(histogram).get("counts", [])]
        if len(counts) != len(bounds) + 1:
            continue  # not the shape Stats writes; nothing sensible to export
        cumulative, buckets = 0, []
        for bound, count in zip([*map(_le, bounds), "+Inf"], counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_metric([cluster], buckets, _number(_mapping(histogram).get("sum")))
    yield family


def _by_reason(name: str, documentation: str, data: Any) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=("reason",))
    for reason, count in sorted(_mapping(data).items()):
        family.add_metric([str(reason)], _number(count))
    return family


def _counter(name: str, documentation: str, value: Any) -> Metric:
    return CounterMetricFamily(name, documentation, value=_number(value))


def _gauge(name: str, documentation: str, value: Any) -> Metric:
    return GaugeMetricFamily(name, documentation, value=_number(value))


def _le(bound: float) -> str:
    return repr(bound)  # 0.0005, 1.0, 60.0: what prometheus-client writes for its own buckets


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []
