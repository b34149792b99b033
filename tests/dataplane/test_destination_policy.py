"""DestinationRule traffic policy and endpoint weights against real sockets, curl as client."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from shadowmesh.routing.testing import within_binomial
from tests.support import serve as serve_support
from tests.support.certs import Authority, make_ca
from tests.support.serve import Served
from tests.support.tlsupstream import TlsUpstream
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


TWO_ENDPOINTS = (
    serve_support.TWO_ENDPOINTS
    + """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app}}
spec:
  host: app
  trafficPolicy:
{policy}
"""
)

OUTLIER = """\
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"""


def _statuses(port: int, count: int, *headers: str) -> list[str]:
    urls = [f"http://127.0.0.1:{port}/get?n={i}" for i in range(count)]
    args = [a for url in urls for a in ("-o", "/dev/null", url)]
    extra = [a for h in ("Host: app", *headers) for a in ("-H", h)]
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-w", "%{http_code}\n", *extra, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.split()


def test_outlier_detection_ejects_the_endpoint_that_answers_5xx(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    bad = RecordingUpstream(
        response=b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
    )
    good = RecordingUpstream()
    upstreams.extend((bad, good))
    s = serve(TWO_ENDPOINTS.format(a=bad.port, b=good.port, policy=OUTLIER))
    statuses = _statuses(s.port, 60)
    # Two 503s in a row from the bad one eject it for 3 minutes: after that, all 200.
    assert statuses.count("503") == 2, statuses
    assert len(bad.requests) == 2 and len(good.requests) == 58
    stats = s.stats()["upstream_clusters"]  # type: ignore[index]
    cluster = f"outbound|{s.port}||app.default.svc.cluster.local"
    od = stats[cluster]["outlier_detection"]
    assert od["ejections_enforced_consecutive_5xx"] == 1 and od["ejections_active"] == 1


def test_consistent_hash_sticks_a_header_to_one_endpoint(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    a, b = RecordingUpstream(), RecordingUpstream()
    upstreams.extend((a, b))
    policy = "    loadBalancer:\n      consistentHash: {httpHeaderName: x-user}\n"
    s = serve(TWO_ENDPOINTS.format(a=a.port, b=b.port, policy=policy))
    seen = []
    for user in range(16):
        before = (len(a.requests), len(b.requests))
        assert _statuses(s.port, 5, f"x-user: user-{user}") == ["200"] * 5
        after = (len(a.requests), len(b.requests))
        got = (after[0] - before[0], after[1] - before[1])
        assert got in ((5, 0), (0, 5)), (user, got)  # all five on one endpoint
        seen.append(got)
    assert len(set(seen)) == 2  # and the users spread over both (all on one: p = 2^-15)


ONE_ENDPOINT = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: api}}
spec: {{address: 127.0.0.1, ports: {{https: {port}}}, labels: {{app: api}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: api}}
spec:
  selector: {{app: api}}
  ports: [{{name: https, port: SERVICE_PORT, targetPort: 443}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api}}
spec:
  host: api
  trafficPolicy:
    tls: {tls}
"""


def _tls_upstream(tmp_path: Path, authority: Authority) -> TlsUpstream:
    issued = authority.issue(tmp_path / "srv", "server", "api")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    context.load_verify_locations(cafile=authority.cert)
    context.verify_mode = ssl.CERT_OPTIONAL
    return TlsUpstream(context)


def _get(port: int, host: str = "api") -> tuple[str, str]:
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-H", f"Host: {host}", "-w", " %{http_code}",
         f"http://127.0.0.1:{port}/get"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    body, _, status = done.stdout.rpartition(" ")
    return body, status


def test_tls_simple_and_mutual_originate_to_a_tls_upstream(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    authority = make_ca(tmp_path / "ca")
    upstream = _tls_upstream(tmp_path, authority)
    client = authority.issue(tmp_path / "cli", "client", "sleep.default", client=True)
    try:
        simple = f"{{mode: SIMPLE, caCertificates: {authority.cert}}}"
        s = serve(ONE_ENDPOINT.format(port=upstream.port, tls=simple))
        assert _get(s.port) == ("tls", "200")
        assert upstream.sni[-1] == "api"  # auto SNI: the request's host
        s.stop()
        mutual = (
            f"{{mode: MUTUAL, caCertificates: {authority.cert}, "
            f"clientCertificate: {client.cert}, privateKey: {client.key}}}"
        )
        s = serve(ONE_ENDPOINT.format(port=upstream.port, tls=mutual))
        assert _get(s.port) == ("tls", "200")
        assert "sleep.default" in str(upstream.client_certs[-1])
        s.stop()
        # Another CA: the handshake fails, a connect failure as Envoy's (503 UF).
        stranger = make_ca(tmp_path / "other", "other")
        s = serve(
            ONE_ENDPOINT.format(
                port=upstream.port, tls=f"{{mode: SIMPLE, caCertificates: {stranger.cert}}}"
            )
        )
        body, status = _get(s.port)
        assert status == "503" and "upstream connect error" in body
        for _ in range(100):  # the access log line is written after the answer
            if s.log.exists() and s.log.read_text():
                break
            time.sleep(0.05)
        # A failed handshake is a connect failure: Istio's default policy retried it twice.
        assert " UF,URX " in s.log.read_text()
    finally:
        upstream.close()


def test_a_generated_cookie_is_set_and_then_sticks(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], tmp_path: Path
) -> None:
    a, b = RecordingUpstream(), RecordingUpstream()
    upstreams.extend((a, b))
    policy = (
        "    loadBalancer:\n      consistentHash:\n"
        "        httpCookie: {name: sticky, ttl: 300s, path: /}\n"
    )
    s = serve(TWO_ENDPOINTS.format(a=a.port, b=b.port, policy=policy))
    jar = tmp_path / "jar"
    for _ in range(12):
        done = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-D", "-", "-b", str(jar), "-c", str(jar),
             "-H", "Host: app", f"http://127.0.0.1:{s.port}/get"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert " 200" in done.stdout.splitlines()[0]
    first = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-D", "-", "-H", "Host: app",
         f"http://127.0.0.1:{s.port}/get"],
        capture_output=True, text=True, timeout=20,
    ).stdout.lower()  # fmt: skip
    assert 'set-cookie: sticky="' in first and "max-age=300; path=/; httponly" in first
    # Twelve requests with the cookie the first answer set: all on one endpoint.
    assert sorted((len(a.requests), len(b.requests))) in ([0, 13], [1, 12])


MIRRORED = (
    """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app}}
spec: {{address: 127.0.0.1, ports: {{http: {app}}}, labels: {{app: app}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  selector: {{app: app}}
  ports: [{{name: http, port: SERVICE_PORT, targetPort: 80}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app}}
spec:
  hosts: [app]
  http:
  - route:
    - destination: {{host: app}}
    mirror: {{host: api, port: {{number: SERVICE_PORT}}}}
---"""
    + ONE_ENDPOINT
)


def test_a_mirror_to_a_tls_cluster_is_originated_too(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], tmp_path: Path
) -> None:
    authority = make_ca(tmp_path / "ca")
    tls_upstream = _tls_upstream(tmp_path, authority)
    app = RecordingUpstream()
    upstreams.append(app)
    try:
        simple = f"{{mode: SIMPLE, caCertificates: {authority.cert}, sni: api}}"
        s = serve(MIRRORED.format(app=app.port, port=tls_upstream.port, tls=simple))
        assert _get(s.port, "app")[1] == "200"
        for _ in range(100):
            if tls_upstream.requests:
                break
            time.sleep(0.05)
        assert tls_upstream.requests == 1 and tls_upstream.sni[-1] == "api"
    finally:
        tls_upstream.close()
