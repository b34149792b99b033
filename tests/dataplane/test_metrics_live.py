"""/stats/prometheus and ``shadowmesh stats`` of a real ``shadowmesh serve`` after traffic."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.serve import Served, mesh_yaml, raw_request, scrape
from tests.support.upstreams import RecordingUpstream

MIRROR_V2 = "    mirror: {host: app, subset: v2}\n"
V1 = "outbound|{port}|v1|app.default.svc.cluster.local"
REQUESTS = 10


def traffic(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> tuple[Served, RecordingUpstream, RecordingUpstream]:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    served = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    for _ in range(REQUESTS):
        answer = raw_request(
            served.port, b"GET /x HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 200 ")
    assert len(v2.wait_for(REQUESTS)) == REQUESTS
    return served, v1, v2


def test_shadows_and_connections_are_exported(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    served, _, _ = traffic(upstreams, serve)
    samples = scrape(served)
    assert samples["shadowmesh_shadows_sent_total"] == {(): REQUESTS}
    assert samples["shadowmesh_shadows_in_flight"] == {(): 0}
    assert samples["shadowmesh_downstream_connections_active"] == {(): 0}
    assert samples["process_open_fds"][()] > 0
    shown = subprocess.run(
        [sys.executable, "-m", "shadowmesh", "stats", "--admin", f"127.0.0.1:{served.admin}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"shadows: {REQUESTS} sent" in shown.stdout
    assert "connections: 0 downstream active" in shown.stdout


def test_requests_and_latency_by_cluster_are_exported(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    served, _, _ = traffic(upstreams, serve)
    samples = scrape(served)
    cluster = V1.format(port=served.port)
    key = (("cluster", cluster), ("response_flags", "-"), ("status_class", "2xx"))
    assert samples["shadowmesh_requests_total"][key] == REQUESTS
    name = "shadowmesh_upstream_request_duration_seconds"
    assert samples[f"{name}_count"][(("cluster", cluster),)] == REQUESTS


# Istio's label set (istio/proxy istio_stats.cc), on every sample of its standard metrics.
ISTIO_LABELS = {
    "reporter", "source_workload", "source_workload_namespace", "source_principal",
    "source_app", "source_version", "source_canonical_service", "source_canonical_revision",
    "source_cluster", "destination_workload", "destination_workload_namespace",
    "destination_principal", "destination_app", "destination_version", "destination_service",
    "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags",
    "connection_security_policy",
}  # fmt: skip


def test_istio_standard_metrics_after_real_requests(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    served, _, _ = traffic(upstreams, serve)
    samples = scrape(served)
    requests = samples["istio_requests_total"]
    for name in ("istio_request_duration_milliseconds", "istio_request_bytes",
                 "istio_response_bytes"):  # fmt: skip
        for labels in samples[f"{name}_bucket"]:
            assert {k for k, _ in labels} == ISTIO_LABELS | {"le"}
        assert sum(samples[f"{name}_count"].values()) == REQUESTS
    assert all({k for k, _ in labels} == ISTIO_LABELS for labels in requests)
    routed = {
        dict(labels)["response_code"]: (dict(labels), value) for labels, value in requests.items()
    }
    labels, value = routed["200"]
    assert value == REQUESTS  # shadows are not counted, as Istio's client sidecar
    assert labels["reporter"] == "source"
    assert labels["destination_workload"] == "app-v1"
    assert labels["destination_workload_namespace"] == "default"
    assert labels["destination_app"] == "app" and labels["destination_version"] == "v1"
    assert labels["destination_service"] == "app.default.svc.cluster.local"
    assert labels["destination_service_name"] == "app"
    assert labels["destination_canonical_service"] == "app"
    assert labels["destination_canonical_revision"] == "v1"
    assert labels["response_flags"] == "-" and labels["request_protocol"] == "http"
    assert labels["source_workload"] == "unknown"
    assert labels["connection_security_policy"] == "unknown"
    # Beside them, shadowmesh's own shadow counters.
    assert samples["shadowmesh_shadows_sent_total"] == {(): REQUESTS}


# --- the Grafana dashboard ----------------------------------------------------------------------

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "shadowmesh.json"
# What a PromQL expression may name besides metrics and their labels.
PROMQL = {
    "sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "label_values",
    "avg", "max", "min", "count", "topk", "on", "ignoring", "and", "or", "unless",
}  # fmt: skip
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
}


def served_names(served: Served) -> dict[str, set[str]]:
    """Every sample name /stats/prometheus serves (empty families too) -> its label names."""
    url = f"http://127.0.0.1:{served.admin}/stats/prometheus"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.setdefault(family.name + suffix, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_the_grafana_dashboard_asks_only_for_what_is_served(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    served, _, v2 = traffic(upstreams, serve)
    v2.close()  # one shadow fails, so the by-reason counters have a sample and a label
    raw_request(served.port, b"GET /x HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    end = time.monotonic() + 5
    while not served.stats().get("shadow_failed") and time.monotonic() < end:
        time.sleep(0.05)
    names = served_names(served)
    labels = set().union(*names.values()) | {"le"}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = expressions(dashboard)
    assert len(exprs) > 20
    used: set[str] = set()
    for expr in exprs:
        bare = re.sub(r'"[^"]*"', '""', expr)  # label values
        bare = re.sub(r"\$\w+|\[[^\]]*\]", "", bare)  # Grafana's variables, range selectors
        for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
            assert word in PROMQL or word in names or word in labels, (word, expr)
            used.update({word} & names.keys())
        for metric, selector in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}", bare):
            for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", selector):
                assert label in names[metric], (metric, label, expr)
    # Istio's four standard metrics and the shadow counters are all on it.
    for name in ("istio_requests_total", "istio_request_duration_milliseconds_bucket",
                 "istio_request_bytes_bucket", "istio_response_bytes_bucket",
                 "shadowmesh_shadows_sent_total", "shadowmesh_shadows_dropped_total",
                 "shadowmesh_shadows_failed_total"):  # fmt: skip
        assert name in used, name
