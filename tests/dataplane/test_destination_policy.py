"""DestinationRule traffic policy and endpoint weights against real sockets, curl as client."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from shadowmesh.routing.testing import within_binomial
from tests.support.serve import Served
from tests.support.upstreams import RecordingUpstream

WEIGHTED = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-a}}
spec: {{address: 127.0.0.1, ports: {{http: {a}}}, labels: {{app: app}}, weight: 3}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-b}}
spec: {{address: 127.0.0.1, ports: {{http: {b}}}, labels: {{app: app}}, weight: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  selector: {{app: app}}
  ports: [{{name: http, port: SERVICE_PORT, targetPort: 80}}]
{rule}"""

ROUND_ROBIN = """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
"""


def _curl_many(port: int, count: int) -> None:
    urls = [f"http://127.0.0.1:{port}/get?n={i}" for i in range(count)]
    args = [a for url in urls for a in ("-o", "/dev/null", url)]
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-H", "Host: app", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_workload_entry_weights_split_requests_3_to_1(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    # Istio's default LEAST_REQUEST, then ROUND_ROBIN: both weigh endpoints as Envoy does.
    for rule in ("", ROUND_ROBIN):
        a, b = RecordingUpstream(), RecordingUpstream()
        upstreams.extend((a, b))
        s = serve(WEIGHTED.format(a=a.port, b=b.port, rule=rule))
        _curl_many(s.port, 400)
        got_a, got_b = len(a.requests), len(b.requests)
        assert got_a + got_b == 400
        assert within_binomial(got_a, 400, 0.75), (rule, got_a, got_b)
        s.stop()
