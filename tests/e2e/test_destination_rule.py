"""DestinationRule traffic policy end to end: httpbin under gunicorn, curl as the client."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from shadowmesh.demo.processes import LOCALHOST

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e

# Istio's circuit-breaking task (istio.io tasks/traffic-management/circuit-breaking), on v1.
CIRCUIT_BREAKER = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
  subsets:
  - name: v1
    labels:
      version: v1
---
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
        subset: v1
"""


def test_circuit_breaking_task_gives_some_503_uo_under_concurrency(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    mesh.apply(mesh.write("breaker.yaml", CIRCUIT_BREAKER))
    # The task's fortio -c 3 -n 30: three requests at a time on a cluster that allows one
    # connection and one pending request.
    urls = [f"http://{LOCALHOST}:{mesh.service_port}/get?i={i}" for i in range(30)]
    argv = ["curl", "-s", "--noproxy", "*", "-Z", "--parallel-max", "3", "--parallel-immediate"]
    argv += ["-H", f"Host: {mesh.authority}", "-w", "%{http_code} %header{x-envoy-overloaded}\n"]
    for url in urls:
        argv += ["-o", "/dev/null", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
    answers = Counter(line.strip() for line in out.splitlines())
    assert sum(answers.values()) == 30, out
    overloaded = answers["503 true"]
    assert overloaded > 0, answers  # some trip the breaker ...
    assert answers["200"] > 0, answers  # ... and some get through
    assert answers["200"] + overloaded == 30, answers
    records = mesh.proxy.records_settled(30)
    flags = Counter((r.status, r.response_flags) for r in records)
    assert flags[(503, "UO")] == overloaded and flags[(200, "-")] == answers["200"]
    # Overflows are never outlier reports: v1 was not ejected by those 503s.
    with urllib.request.urlopen(f"http://{mesh.proxy.admin}/stats", timeout=5) as r:
        stats = json.loads(r.read())
    cluster = f"outbound|{mesh.service_port}|v1|httpbin.default.svc.cluster.local"
    entry = stats["upstream_clusters"][cluster]
    assert entry["circuit_breakers"]["upstream_rq_pending_overflow"] == overloaded
    assert entry["outlier_detection"]["ejections_active"] == 0
