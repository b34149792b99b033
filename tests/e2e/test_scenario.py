"""The tutorial's steps, through the CLI, against real httpbin v1 and v2."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e

DEPRECATION_WARNING = (
    'Warning: using deprecated setting "mirrorPercent", use "mirrorPercentage" instead'
)


def test_without_virtualservice_traffic_spreads_over_both_versions(mesh: Mesh) -> None:
    run = mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    assert "service/httpbin created" in run.out_lines

    assert mesh.statuses("/headers", 20) == [200] * 20

    v1, v2 = mesh.v1.settled(), mesh.v2.settled()
    assert len(v1) + len(v2) == 20
    assert v1 and v2, f"v1 got {len(v1)}, v2 got {len(v2)}"


def test_route_to_v1_only(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    run = mesh.apply_examples("02-route-v1.yaml")
    assert run.out_lines == [
        "virtualservice.networking.istio.io/httpbin created",
        "destinationrule.networking.istio.io/httpbin created",
    ]

    assert mesh.statuses("/headers", 20) == [200] * 20

    assert len(mesh.v1.settled(at_least=20)) == 20
    assert mesh.v2.settled() == []


def test_upstream_sees_the_headers_envoy_adds(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")

    body = json.loads(mesh.curl_body("/headers?show_env=1"))
    headers = {k.lower(): v for k, v in body["headers"].items()}

    assert headers["host"] == mesh.authority
    assert headers["x-envoy-attempt-count"] == "1"
    assert headers["x-forwarded-proto"] == "http"
    for name in ("x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-forwarded-for"):
        assert headers.get(name), f"{name} missing from {sorted(headers)}"


def test_reapplying_the_same_file_is_unchanged(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")

    run = mesh.apply_examples("02-route-v1.yaml")

    assert run.out_lines == [
        "virtualservice.networking.istio.io/httpbin unchanged",
        "destinationrule.networking.istio.io/httpbin unchanged",
    ]


def test_mirror_percent_warns_and_v2_sees_every_request_once_as_shadow(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    run = mesh.apply_examples("03-mirror.yaml")
    assert DEPRECATION_WARNING in run.err_lines
    assert run.out_lines == ["virtualservice.networking.istio.io/httpbin configured"]

    assert mesh.statuses("/headers", 20, via="direct") == [200] * 20

    v1 = mesh.v1.settled(at_least=20)
    v2 = mesh.v2.settled(at_least=20)
    assert len(v1) == 20 and len(v2) == 20
    assert {e.host for e in v1} == {mesh.authority}
    assert {e.host for e in v2} == {mesh.shadow_authority}
    # Each shadow is the copy of one primary: same x-request-id, each id exactly once.
    v1_ids = [e.request_id for e in v1]
    assert len(set(v1_ids)) == 20 and "-" not in v1_ids
    assert sorted(e.request_id for e in v2) == sorted(v1_ids)


def test_proxy_access_log_has_one_line_per_request_and_per_shadow(mesh: Mesh) -> None:
    mesh.apply_examples(
        "00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml", "03-mirror.yaml"
    )

    assert mesh.statuses("/status/201", 5) == [201] * 5

    records = mesh.proxy.records_settled(10)
    primaries = [r for r in records if not r.shadow]
    shadows = [r for r in records if r.shadow]
    assert len(primaries) == 5 and len(shadows) == 5
    assert {(r.method, r.path, r.status, r.response_flags) for r in primaries} == {
        ("GET", "/status/201", 201, "-")
    }
    assert {r.upstream_host for r in primaries} == {f"127.0.0.1:{mesh.v1.port}"}
    assert {r.upstream_host for r in shadows} == {f"127.0.0.1:{mesh.v2.port}"}
    assert {r.upstream_cluster for r in shadows} == {mesh.cluster_v2}
    assert {r.authority for r in shadows} == {mesh.shadow_authority}
    assert sorted(r.request_id for r in shadows) == sorted(r.request_id for r in primaries)


def test_delete_brings_both_versions_back(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    assert mesh.statuses("/headers", 5) == [200] * 5
    assert mesh.v2.settled() == []

    vs = mesh.cli("delete", "virtualservice", "httpbin")
    dr = mesh.cli("delete", "destinationrule", "httpbin")
    assert (vs.code, vs.out_lines) == (0, ['virtualservice.networking.istio.io "httpbin" deleted'])
    assert (dr.code, dr.out_lines) == (0, ['destinationrule.networking.istio.io "httpbin" deleted'])

    v1_mark, v2_mark = mesh.v1.log.mark(), mesh.v2.log.mark()
    assert mesh.statuses("/headers", 20) == [200] * 20
    v1, v2 = mesh.v1.settled(v1_mark), mesh.v2.settled(v2_mark)
    assert len(v1) + len(v2) == 20
    assert v1 and v2, f"v1 got {len(v1)}, v2 got {len(v2)}"


@pytest.mark.parametrize("proxy_args", [["--access-log-format", "json"]])
def test_json_access_log_marks_the_shadow(mesh: Mesh) -> None:
    mesh.apply_examples(
        "00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml", "03-mirror.yaml"
    )

    assert mesh.statuses("/get", 3) == [200] * 3

    mesh.proxy.settle(6)
    records = mesh.proxy.json_records()
    assert sorted(r["shadow"] for r in records) == [False] * 3 + [True] * 3
    for r in records:
        assert (r["method"], r["path"], r["status"], r["response_flags"]) == (
            "GET",
            "/get",
            200,
            "-",
        )
    shadows = [r for r in records if r["shadow"]]
    assert {r["authority"] for r in shadows} == {mesh.shadow_authority}
    assert {r["upstream_cluster"] for r in shadows} == {mesh.cluster_v2}
