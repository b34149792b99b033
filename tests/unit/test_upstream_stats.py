"""Per-cluster ejection and overflow counters in /stats' shape and in Prometheus' text."""

from __future__ import annotations

import random
import textwrap

from prometheus_client.parser import text_string_to_metric_families

from shadowmesh.model.load import load_text
from shadowmesh.observe.metrics import registry, render
from shadowmesh.observe.upstreamstats import KEY, cluster_stats
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import seed_workloads

RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 100}
"""
ALL = "outbound|8000||httpbin.default.svc.cluster.local"


def test_ejections_and_overflows_reach_stats_and_prometheus() -> None:
    docs = load_text(textwrap.dedent(RULE), "t.yaml").documents
    table = RouteTable.compile(
        [*seed_workloads(), *(d.resource for d in docs)], rng=random.Random(1)
    )
    cluster = table.cluster(ALL)
    assert cluster is not None
    endpoint = cluster.members[0].endpoint
    cluster.balancer.release(endpoint, 503)  # one 5xx: ejected
    pools = {ALL: {"upstream_rq_pending_overflow": 4, "upstream_cx_overflow": 9}}
    stats = cluster_stats(table.clusters(), pools)
    assert stats[ALL]["outlier_detection"]["ejections_enforced_consecutive_5xx"] == 1
    assert stats[ALL]["outlier_detection"]["ejections_active"] == 1
    assert stats[ALL]["circuit_breakers"]["upstream_rq_pending_overflow"] == 4
    text = render(registry(lambda: {KEY: stats})).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert (
        samples[
            (
                "shadowmesh_outlier_ejections_enforced_total",
                (("cluster", ALL), ("kind", "consecutive_5xx")),
            )
        ]
        == 1
    )
    assert samples[("shadowmesh_outlier_ejections_active", (("cluster", ALL),))] == 1
    assert samples[("shadowmesh_upstream_rq_pending_overflow_total", (("cluster", ALL),))] == 4
    assert samples[("shadowmesh_upstream_cx_overflow_total", (("cluster", ALL),))] == 9
