"""Metrics: Stats' counters, their Prometheus text, and ``shadowmesh stats`` for a person."""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadowmesh.cli.stats import format_stats, quantile
from shadowmesh.observe import metrics
from shadowmesh.observe.stats import LATENCY_BOUNDS, Histogram, Stats, status_class

PACKAGE = Path(__file__).resolve().parents[2] / "shadowmesh"
V1 = "outbound|8000|v1|app.default.svc.cluster.local"
V2 = "outbound|8000|v2|app.default.svc.cluster.local"


def busy_stats() -> Stats:
    stats = Stats()
    for _ in range(3):
        stats.count_request(V1, 200, "")
    stats.count_request(V1, 503, "UF")
    stats.count_request(V2, 504, "UT")
    stats.count_request("", 404, "NR")
    stats.count_request(V1, 0, "DC")
    stats.requests["rejected"] += 2  # the data plane counts framing refusals here
    for seconds in (0.0004, 0.0005, 0.003, 0.2, 120.0):
        stats.observe(V1, seconds)
    stats.observe(V2, 0.02)
    stats.shadows.update(sent=5, completed=3)
    stats.shadow_failed.update(timeout=1)
    stats.shadow_dropped.update(overflow=1, body_too_large=2)
    stats.downstream_active = 4
    return stats


def scrape(snapshot: dict[str, Any]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value} of every sample in the Prometheus text."""
    text = metrics.render(metrics.registry(lambda: snapshot)).decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


# --- Stats --------------------------------------------------------------------------------------


def test_status_classes() -> None:
    assert [status_class(s) for s in (0, 101, 200, 302, 404, 503, 999, -1)] == [
        "0xx",
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "0xx",
        "0xx",
    ]


def test_histogram_buckets_include_their_upper_bound() -> None:
    h = Histogram()
    for seconds in (0.0, 0.0005, 0.00050001, 1.0, 60.0, 60.1, math.inf):
        h.observe(seconds)
    first, second = 0, 1
    at_one, at_sixty, overflow = LATENCY_BOUNDS.index(1.0), len(LATENCY_BOUNDS) - 1, -1
    assert h.counts[first] == 2  # 0 and exactly 0.5 ms: Prometheus' le is inclusive
    assert h.counts[second] == 1
    assert h.counts[at_one] == 1 and h.counts[at_sixty] == 1
    assert h.counts[overflow] == 2  # past the last bound, +Inf included
    assert h.count == 7


def test_snapshot_folds_requests_by_into_the_old_totals() -> None:
    snap = busy_stats().snapshot()
    assert snap["requests"] == {
        "rejected": 2,
        "total": 7,
        "2xx": 3,
        "5xx": 2,
        "4xx": 1,
        "0xx": 1,
        "UF": 1,
        "UT": 1,
        "NR": 1,
        "DC": 1,
    }
    assert {"cluster": V1, "status_class": "2xx", "flag": "", "count": 3} in snap["requests_by"]
    latency = snap["upstream_latency"]
    assert latency["bounds_seconds"] == list(LATENCY_BOUNDS)
    v1 = latency["clusters"][V1]
    assert v1["count"] == 5 and v1["sum"] == pytest.approx(120.2039)
    assert len(v1["counts"]) == len(LATENCY_BOUNDS) + 1


# --- the Prometheus text ------------------------------------------------------------------------


def test_prometheus_text_carries_every_counter() -> None:
    snapshot = busy_stats().snapshot()
    snapshot.update(shadow_in_flight=1, shadow_held_bytes=4096, shadow_skipped={"no_endpoint": 6})
    samples = scrape(snapshot)
    requests = samples["shadowmesh_requests_total"]
    assert requests[(("cluster", V1), ("response_flags", "-"), ("status_class", "2xx"))] == 3
    assert requests[(("cluster", V1), ("response_flags", "UF"), ("status_class", "5xx"))] == 1
    assert requests[(("cluster", "-"), ("response_flags", "NR"), ("status_class", "4xx"))] == 1
    assert sum(requests.values()) == 7
    assert samples["shadowmesh_requests_rejected_total"] == {(): 2}
    assert samples["shadowmesh_dropped_headers_with_underscores_total"] == {(): 0}
    assert samples["shadowmesh_shadows_sent_total"] == {(): 5}
    assert samples["shadowmesh_shadows_completed_total"] == {(): 3}
    assert samples["shadowmesh_shadows_failed_total"] == {(("reason", "timeout"),): 1}
    assert samples["shadowmesh_shadows_dropped_total"] == {
        (("reason", "body_too_large"),): 2,
        (("reason", "overflow"),): 1,
    }
    assert samples["shadowmesh_shadows_skipped_total"] == {(("reason", "no_endpoint"),): 6}
    assert samples["shadowmesh_downstream_connections_active"] == {(): 4}
    assert samples["shadowmesh_shadows_in_flight"] == {(): 1}
    assert samples["shadowmesh_shadow_held_bytes"] == {(): 4096}
    assert samples["process_open_fds"][()] > 0  # the process' own, for leak hunting


def test_latency_is_a_cumulative_histogram_per_cluster() -> None:
    samples = scrape(busy_stats().snapshot())
    name = "shadowmesh_upstream_request_duration_seconds"
    buckets = {
        labels[1][1]: value
        for labels, value in samples[f"{name}_bucket"].items()
        if labels[0] == ("cluster", V1)
    }
    assert buckets["0.0005"] == 2  # 0.4 ms and 0.5 ms
    assert buckets["0.005"] == 3
    assert buckets["0.25"] == 4
    assert buckets["60.0"] == 4
    assert buckets["+Inf"] == 5  # the two-minute one
    values = [buckets[b] for b in [*map(repr, LATENCY_BOUNDS), "+Inf"]]
    assert values == sorted(values)
    assert samples[f"{name}_count"][(("cluster", V1),)] == 5
    assert samples[f"{name}_sum"][(("cluster", V1),)] == pytest.approx(120.2039)
    assert samples[f"{name}_count"][(("cluster", V2),)] == 1


def test_an_empty_or_odd_snapshot_still_scrapes() -> None:
    samples = scrape({})
    assert samples["shadowmesh_shadows_sent_total"] == {(): 0}
    assert "shadowmesh_downstream_connections_active" not in samples
    odd = {
        "requests_by": ["not a row", {"cluster": V1, "count": "many"}],
        "upstream_latency": {"bounds_seconds": [1.0], "clusters": {V1: {"counts": [1]}}},
        "shadow_failed": ["x"],
    }
    samples = scrape(odd)
    assert "shadowmesh_upstream_request_duration_seconds_bucket" not in samples


def test_hot_path_modules_never_touch_prometheus_client() -> None:
    """The request path bumps Stats' plain counters; only the admin API renders them. Nor does
    it import OpenTelemetry (an extra, which mypyc would have to find to compile it)."""
    for package in ("dataplane", "upstream", "mirror", "routing"):
        for path in (PACKAGE / package).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                for name in names:
                    assert "prometheus" not in name and "observe.metrics" not in name, path
                    assert "opentelemetry" not in name and "observe.otlp" not in name, path


# --- shadowmesh stats ---------------------------------------------------------------------------


def test_quantiles_as_histogram_quantile() -> None:
    bounds = [0.1, 0.2, 0.4]
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
    assert quantile(0.5, bounds, [10, 0, 0, 0]) == pytest.approx(0.05)
    assert quantile(0.5, bounds, [0, 10, 0, 0]) == pytest.approx(0.15)
    assert quantile(0.75, bounds, [5, 0, 5, 0]) == pytest.approx(0.3)
    assert quantile(0.99, bounds, [1, 0, 0, 99]) == 0.4  # in +Inf: the highest finite bound


def test_stats_table_for_a_person() -> None:
    snapshot = busy_stats().snapshot()
    snapshot.update(shadow_in_flight=1, shadow_held_bytes=0)
    text = format_stats(snapshot)
    lines = text.splitlines()
    assert "requests: 7 total, 2 rejected" in lines
    header = next(line for line in lines if line.startswith("CLUSTER") and "FLAG" in line)
    assert header.split() == ["CLUSTER", "STATUS", "FLAG", "REQUESTS"]
    assert any(line.split() == [V1, "2xx", "-", "3"] for line in lines)
    assert any(line.split() == ["-", "4xx", "NR", "1"] for line in lines)
    assert "shadows: 5 sent, 3 completed, 1 in flight" in lines
    assert any(line.split() == ["dropped", "body_too_large", "2"] for line in lines)
    assert any(line.split() == ["failed", "timeout", "1"] for line in lines)
    latency = [line.split() for line in lines if line.startswith(V2)][-1]  # its latency row
    assert latency[:2] == [V2, "1"] and latency[2] == "20.0"  # mean 20 ms
    assert "connections: 4 downstream active; 0 bytes held for shadows" in lines


def test_stats_table_of_an_idle_proxy() -> None:
    text = format_stats(Stats().snapshot())
    assert "requests: 0 total, 0 rejected" in text and "none yet" in text
