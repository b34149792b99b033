"""Failure answers as Envoy gives them, with its response flags in the access log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from shadowmesh.demo import processes

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e


def _route_to(subset: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: {subset}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
"""


def _only_record(mesh: Mesh) -> tuple[int, str]:
    records = mesh.proxy.records_settled(1)
    assert len(records) == 1, records
    return records[0].status, records[0].response_flags


def test_unknown_subset_is_503_nc(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    run = mesh.apply(mesh.write("route-v9.yaml", _route_to("v9")))
    assert "v9" in run.stderr  # a cross-reference warning, not an error: apply order is free

    assert mesh.statuses("/get") == [503]
    assert _only_record(mesh) == (503, "NC")


def test_subset_without_endpoints_is_503_uh(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    mesh.apply(mesh.write("route-v3.yaml", _route_to("v3")))

    assert mesh.curl_body("/get") == "no healthy upstream"
    assert _only_record(mesh) == (503, "UH")


def test_connect_failure_is_503_uf(mesh: Mesh) -> None:
    # v1's WorkloadEntry points at a port nothing listens on.
    mesh.ports[18081] = processes.free_port()
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    mesh.apply(mesh.write("route-v1.yaml", _route_to("v1")))

    assert mesh.statuses("/get") == [503]
    # Istio's default retry policy retries a connect failure twice: then URX too.
    assert _only_record(mesh) == (503, "UF,URX")
    assert mesh.v1.settled() == []


def test_no_matching_route_is_404_nr(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    mesh.apply(mesh.write("only-status.yaml", ONLY_STATUS))

    assert mesh.statuses("/get") == [404]
    assert _only_record(mesh) == (404, "NR")
    assert mesh.v1.settled() == [] and mesh.v2.settled() == []


def test_unknown_host_on_the_outbound_port_is_404_nr(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")

    status = mesh.curl_body(
        "/get", args=["-o", "/dev/null", "-w", "%{http_code}"], authority="nowhere:1"
    )

    assert status == "404"
    assert _only_record(mesh) == (404, "NR")


ONLY_STATUS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - match:
    - uri:
        prefix: /status/
    route:
    - destination:
        host: httpbin
"""
