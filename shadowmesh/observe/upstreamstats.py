"""Per-cluster upstream counters: outlier ejections (the route table's detectors) and circuit
breaker overflows (the guarded pools), for ``/stats`` and ``/stats/prometheus``.

Envoy's names (``docs/root/configuration/upstream/cluster_manager/cluster_stats.rst``):
``outlier_detection.ejections_*`` and ``upstream_rq_pending_overflow``,
``upstream_cx_overflow``. Only clusters with an ``outlierDetection`` or a pool of their own
appear. Each process of ``serve --workers`` detects and limits on its own (as each Envoy
would); these are the first process's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from shadowmesh.routing.clusters import Cluster
from shadowmesh.routing.outlier import KINDS

KEY = "upstream_clusters"  # where the snapshot keeps them


def cluster_stats(
    clusters: Iterable[Cluster], pools: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """``pools``: ``UpstreamPools.stats()``, the guarded pools' counters by cluster."""
    out: dict[str, dict[str, Any]] = {}
    for cluster in clusters:
        outlier = cluster.outlier
        if outlier is not None:
            out.setdefault(cluster.name, {})["outlier_detection"] = outlier.stats()
    for name, pool in pools.items():
        out.setdefault(name, {})["circuit_breakers"] = dict(pool)
    return dict(sorted(out.items()))


def families(data: Any) -> Iterator[Metric]:
    clusters: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    enforced = CounterMetricFamily(
        "shadowmesh_outlier_ejections_enforced",
        "Endpoints ejected by outlier detection, by cluster and kind (Envoy's "
        "outlier_detection.ejections_enforced_<kind>).",
        labels=("cluster", "kind"),
    )
    overflow = CounterMetricFamily(
        "shadowmesh_outlier_ejections_overflow",
        "Ejections skipped because maxEjectionPercent would be exceeded.",
        labels=("cluster",),
    )
    active = GaugeMetricFamily(
        "shadowmesh_outlier_ejections_active", "Endpoints ejected now.", labels=("cluster",)
    )
    pending = CounterMetricFamily(
        "shadowmesh_upstream_rq_pending_overflow",
        "Requests answered 503 UO: http1MaxPendingRequests were pending already.",
        labels=("cluster",),
    )
    connections = CounterMetricFamily(
        "shadowmesh_upstream_cx_overflow",
        "Times a request had to wait because the cluster had maxConnections open.",
        labels=("cluster",),
    )
    for name, entry in clusters.items():
        od = entry.get("outlier_detection") if isinstance(entry, Mapping) else None
        if isinstance(od, Mapping):
            for kind in KINDS:
                enforced.add_metric([name, kind], float(od.get(f"ejections_enforced_{kind}", 0)))
            overflow.add_metric([name], float(od.get("ejections_overflow", 0)))
            active.add_metric([name], float(od.get("ejections_active", 0)))
        cb = entry.get("circuit_breakers") if isinstance(entry, Mapping) else None
        if isinstance(cb, Mapping):
            pending.add_metric([name], float(cb.get("upstream_rq_pending_overflow", 0)))
            connections.add_metric([name], float(cb.get("upstream_cx_overflow", 0)))
    yield from (enforced, overflow, active, pending, connections)
