"""Istio's standard metrics: the data plane's request cells expanded to Istio's 25 labels."""

from __future__ import annotations

import random

from prometheus_client.parser import text_string_to_metric_families

from shadowmesh.model.resources import Meta, WorkloadEntry
from shadowmesh.observe import metrics
from shadowmesh.observe.istio import LABELS
from shadowmesh.observe.stats import ISTIO_BOUNDS, MAX_FALLBACK_HOSTS, Stats
from shadowmesh.routing.decision import Endpoint, Forward
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import (
    V1_PORT,
    SimpleRequest,
    seed_resources,
)

V1 = "outbound|8000|v1|httpbin.default.svc.cluster.local"
V2 = "outbound|8000|v2|httpbin.default.svc.cluster.local"
# Istio's label set (istio/proxy istio_stats.cc, all_tags_), every one on every sample.
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

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(stats: Stats, table: RouteTable | None) -> Samples:
    registry = metrics.registry(stats.snapshot, lambda: (stats.cells, table))
    text = metrics.render(registry).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def only(samples: Samples, name: str, **labels: str) -> float:
    found = [v for ls, v in samples[name] if all(ls.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def seed_table() -> RouteTable:
    return RouteTable.compile(seed_resources(), rng=random.Random(1))


def v1_endpoint(table: RouteTable) -> Endpoint:
    decision = table.route(8000, SimpleRequest())
    assert isinstance(decision, Forward)
    decision.primary.release()
    return decision.primary.endpoint


def test_a_routed_request_carries_istios_labels_from_the_config() -> None:
    table = seed_table()
    stats = Stats()
    endpoint = v1_endpoint(table)
    stats.count_request(V1, 200, "", endpoint, "", 3, 10, 321)
    stats.count_request(V1, 200, "", endpoint, "", 70, 0, 5)
    samples = scrape(stats, table)
    [(labels, value)] = samples["istio_requests_total"]
    assert set(labels) == ISTIO_LABELS == set(LABELS)
    assert value == 2
    assert labels == {
        "reporter": "source",
        "source_workload": "unknown",
        "source_workload_namespace": "unknown",
        "source_principal": "unknown",
        "source_app": "unknown",
        "source_version": "unknown",
        "source_canonical_service": "unknown",
        "source_canonical_revision": "latest",
        "source_cluster": "unknown",
        "destination_workload": "httpbin-v1",
        "destination_workload_namespace": "default",
        "destination_principal": "unknown",
        "destination_app": "httpbin",
        "destination_version": "v1",
        "destination_service": "httpbin.default.svc.cluster.local",
        "destination_service_name": "httpbin",
        "destination_service_namespace": "default",
        "destination_canonical_service": "httpbin",
        "destination_canonical_revision": "v1",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "unknown",
    }
    for name in ("istio_request_duration_milliseconds", "istio_request_bytes"):
        assert {set(ls) - {"le"} == ISTIO_LABELS for ls, _ in samples[f"{name}_bucket"]} == {True}
    duration = {ls["le"]: v for ls, v in samples["istio_request_duration_milliseconds_bucket"]}
    # Envoy's default bounds, as Envoy prints them; a histogram is cumulative.
    assert list(duration) == [f"{b:g}" for b in ISTIO_BOUNDS] + ["+Inf"]
    assert "1.8e+06" in duration and "300000" in duration
    assert duration["1"] == 0 and duration["5"] == 1 and duration["50"] == 1
    assert duration["100"] == 2 and duration["+Inf"] == 2
    assert only(samples, "istio_request_duration_milliseconds_sum") == 73
    assert only(samples, "istio_request_duration_milliseconds_count") == 2
    response = {ls["le"]: v for ls, v in samples["istio_response_bytes_bucket"]}
    assert response["5"] == 1 and response["250"] == 1 and response["500"] == 2
    assert only(samples, "istio_response_bytes_sum") == 326
    assert only(samples, "istio_request_bytes_sum") == 10
    request = {ls["le"]: v for ls, v in samples["istio_request_bytes_bucket"]}
    assert request["0.5"] == 1  # no body: 0 bytes


def test_labels_come_from_the_workload_entrys_istio_labels() -> None:
    """Istio's label fallbacks: workload-name and canonical-name/-revision labels win."""
    resources = seed_resources()
    resources[0] = WorkloadEntry(
        meta=Meta("vm-17", "default"),
        address="127.0.0.1",
        ports={"http": V1_PORT},
        labels={
            "app": "httpbin",
            "version": "v1",
            "service.istio.io/workload-name": "httpbin-vms",
            "service.istio.io/canonical-name": "bin",
            "service.istio.io/canonical-revision": "r7",
        },
    )
    table = RouteTable.compile(resources, rng=random.Random(1))
    stats = Stats()
    stats.count_request(V1, 200, "", v1_endpoint(table), "", 1, 0, 0)
    [(labels, _)] = scrape(stats, table)["istio_requests_total"]
    assert labels["destination_workload"] == "httpbin-vms"
    assert labels["destination_canonical_service"] == "bin"
    assert labels["destination_canonical_revision"] == "r7"
    assert labels["destination_app"] == "httpbin" and labels["destination_version"] == "v1"


def test_failures_as_envoy_labels_them() -> None:
    """No route or no cluster: the Host header names the destination service; no endpoint:
    the cluster's service, with the workload unknown; no status (client gone): code 0."""
    table = seed_table()
    stats = Stats()
    stats.count_request("", 404, "NR", None, "nowhere:8000", 0, 0, 0)
    stats.count_request("outbound|8000|v9|httpbin.default.svc.cluster.local", 503, "NC", None,
                        "httpbin:8000", 0, 0, 0)  # fmt: skip
    stats.count_request(V2, 503, "UH", None, "httpbin:8000", 0, 0, 19)
    stats.count_request(V1, 0, "DC", v1_endpoint(table), "", 0, 0, 0)
    samples = scrape(stats, table)
    nr = only(samples, "istio_requests_total", response_flags="NR")
    assert nr == 1
    [(labels, _)] = [s for s in samples["istio_requests_total"] if s[0]["response_flags"] == "NR"]
    assert labels["destination_service"] == "nowhere:8000"
    assert labels["destination_service_name"] == "nowhere:8000"
    assert labels["destination_workload"] == "unknown"
    assert labels["destination_canonical_revision"] == "latest"
    assert labels["response_code"] == "404"
    nc = only(samples, "istio_requests_total", response_flags="NC", response_code="503",
              destination_service="httpbin:8000")  # fmt: skip
    assert nc == 1
    uh = only(samples, "istio_requests_total", response_flags="UH",
              destination_service="httpbin.default.svc.cluster.local",
              destination_service_name="httpbin", destination_workload="unknown",
              destination_service_namespace="unknown")  # fmt: skip
    assert uh == 1
    dc = only(samples, "istio_requests_total", response_flags="DC", response_code="0",
              destination_workload="httpbin-v1")  # fmt: skip
    assert dc == 1


def test_a_removed_cluster_keeps_the_labels_it_was_scraped_with() -> None:
    table = seed_table()
    stats = Stats()
    endpoint = v1_endpoint(table)
    stats.count_request(V1, 200, "", endpoint, "", 1, 0, 0)
    registry = metrics.registry(stats.snapshot, lambda: (stats.cells, current[0]))
    current = [table]
    metrics.render(registry)
    current[0] = RouteTable.compile([])  # everything deleted
    text = metrics.render(registry).decode()
    assert 'destination_workload="httpbin-v1"' in text
    # Never seen with a table: what the cluster name tells.
    fresh = Stats()
    fresh.count_request(V2, 200, "", Endpoint("127.0.0.1", 1), "", 1, 0, 0)
    [(labels, _)] = scrape(fresh, RouteTable.compile([]))["istio_requests_total"]
    assert labels["destination_service"] == "httpbin.default.svc.cluster.local"
    assert labels["destination_workload"] == "unknown"


def test_random_hosts_cannot_grow_the_table_without_bound() -> None:
    stats = Stats()
    for i in range(MAX_FALLBACK_HOSTS + 50):
        stats.count_request("", 404, "NR", None, f"h{i}.example", 0, 0, 0)
    assert len(stats.cells) == MAX_FALLBACK_HOSTS + 1  # the rest share one "unknown" cell
    samples = scrape(stats, None)
    assert only(samples, "istio_requests_total", destination_service="unknown") == 50


def test_shadowmeshs_own_counters_are_still_folded_from_the_cells() -> None:
    table = seed_table()
    stats = Stats()
    stats.count_request(V1, 200, "", v1_endpoint(table), "", 1, 0, 0)
    stats.count_request(V1, 201, "", v1_endpoint(table), "", 1, 0, 0)
    snap = stats.snapshot()
    assert snap["requests"]["2xx"] == 2 and snap["requests"]["total"] == 2
    assert snap["requests_by"] == [{"cluster": V1, "status_class": "2xx", "flag": "", "count": 2}]


SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: staging}
spec:
  hosts: [staging.example.com]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18091}, labels: {app: staging, version: v2}}
  - {address: 127.0.0.2, ports: {http: 18091}, labels: {app: staging, version: v2}}
"""


def test_a_service_entrys_endpoints_are_named_as_istio_names_them() -> None:
    """An inline endpoint is the workload ``<entry>-<index>`` (serviceentry/conversion.go); the
    destination service is the host as written, its own name."""
    from shadowmesh.model.load import load_text

    resources = [d.resource for d in load_text(SERVICE_ENTRY, "se.yaml").documents]
    table = RouteTable.compile(resources, rng=random.Random(1))
    stats = Stats()
    for _ in range(4):
        decision = table.route(80, SimpleRequest(authority="staging.example.com"))
        assert isinstance(decision, Forward), decision
        decision.primary.release()
        cluster, endpoint = decision.primary.cluster, decision.primary.endpoint
        stats.count_request(cluster, 200, "", endpoint, "", 1, 0, 0)
    samples = scrape(stats, table)
    workloads = {labels["destination_workload"] for labels, _ in samples["istio_requests_total"]}
    assert workloads <= {"staging-0", "staging-1"} and workloads
    labels = samples["istio_requests_total"][0][0]
    assert labels["destination_service"] == "staging.example.com"
    assert labels["destination_service_name"] == "staging.example.com"
    assert labels["destination_app"] == "staging" and labels["destination_version"] == "v2"
    assert labels["destination_workload_namespace"] == "default"
