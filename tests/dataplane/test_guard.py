"""What the proxy refuses to do to itself and to what it logs: loops, hostile heads, leaks.

Real ``shadowmesh serve`` processes and the recording upstreams of tests/support/upstreams.py.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.support.serve import Served, mesh_yaml, raw_request
from tests.support.upstreams import RecordingUpstream


def loop_mesh(v1: int, v2: int, route: str, mirror: str) -> str:
    """Service ``app`` with subsets v1 and v2 (recording upstreams) and ``self``, whose
    endpoint is the Service's own listener: the proxy itself."""
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-v1}}
spec: {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{app: app, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-v2}}
spec: {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{app: app, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-self}}
spec: {{address: 127.0.0.1, ports: {{http: SERVICE_PORT}}, labels: {{app: app, version: self}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  selector: {{app: app}}
  ports: [{{name: http, port: SERVICE_PORT, targetPort: 80}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app}}
spec:
  host: app
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: self, labels: {{version: self}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app}}
spec:
  hosts: [app]
  http:
  - route:
    - destination: {{host: app, subset: {route}}}
    mirror: {{host: app, subset: {mirror}}}
"""


def records(s: Served) -> list[dict[str, object]]:
    lines = s.log.read_text().splitlines() if s.log.exists() else []
    return [json.loads(line) for line in lines]


def settle(s: Served, count: int) -> list[dict[str, object]]:
    """The access log once it holds ``count`` lines (or after 3 s), and a little more."""
    end = time.monotonic() + 3
    while len(records(s)) < count and time.monotonic() < end:
        time.sleep(0.02)
    time.sleep(0.3)  # a loop, if there is one, has time to show itself
    return records(s)


def test_a_mirror_to_the_proxys_own_listener_is_sent_once_and_refused_508(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(
        loop_mesh(v1.port, v2.port, route="v1", mirror="self"),
        "--access-log-format",
        "json",
        # Bounds what the loop costs when the guard is missing (the test then fails).
        "--shadow-max-in-flight",
        "20",
    )
    request = b"POST /post HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\nConnection: close\r\n"
    out = raw_request(s.port, request + b"\r\nhi")
    assert out.startswith(b"HTTP/1.1 200 "), out
    logged = settle(s, 3)
    assert len(v1.requests) == 1, len(v1.requests)
    assert v1.requests[0].body == b"hi"
    pseudonym = (s.log.parent / "state" / "pseudonym").read_text().strip()
    assert v1.requests[0].headers["via"] == f"1.1 {pseudonym}"
    # Three lines: the client's request, its copy as sent, and the copy as it arrived back.
    looped = [r for r in logged if r["response_flags"] == "LD"]
    assert [(r["status"], r["shadow"], r["upstream_host"]) for r in looped] == [(508, False, "")]
    copies = [r for r in logged if r["shadow"]]
    assert [(r["status"], r["upstream_host"]) for r in copies] == [(508, f"127.0.0.1:{s.port}")]
    assert len(logged) == 3
    assert s.stats()["requests"]["LD"] == 1


def test_a_route_to_the_proxys_own_listener_ends_at_the_second_hop(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(
        loop_mesh(v1.port, v2.port, route="self", mirror="v2"),
        "--access-log-format",
        "json",
        "--max-connections",
        "40",  # bounds the loop when the guard is missing (the test then fails)
    )
    out = raw_request(s.port, b"GET /get HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 508 Loop Detected\r\n"), out
    logged = settle(s, 3)
    # The first hop mirrors to v2 once; the second answers 508 before routing, so no copy.
    assert len(v2.wait_for(1)) == 1
    time.sleep(0.2)
    assert len(v2.requests) == 1 and v1.requests == []
    primaries = sorted((r["status"], r["response_flags"]) for r in logged if not r["shadow"])
    assert primaries == [(508, "-"), (508, "LD")]


def test_refused_requests_are_logged_with_dpe_and_escaped(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(mesh_yaml(v1.port, v2.port), "--request-header-timeout", "1")
    many = b"".join(b"x-h%d: 1\r\n" % i for i in range(101))
    cases = [
        # (bytes sent, status expected, the log line's request and what follows its status)
        (
            b'GET /a"b\\c HTTP/1.1\r\nHost: app\r\nUser-Agent: \xff"x\r\n' + many + b"\r\n",
            431,
            '"GET /a\\"b\\\\c HTTP/1.1" 431 DPE 0 0 0 "-" "\\xff\\"x" "-" "app" "-" - -',
        ),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, '"GET - -" 414 DPE'),
        (b"\x01garbage\r\n\r\n", 400, '"- - -" 400 DPE'),
        (
            b"POST /te HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            '"POST /te HTTP/1.1" 400 DPE',
        ),
        (
            b"POST /chunk HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            '"POST /chunk HTTP/1.1" 400 DPE',
        ),
        (b"GET /slow HTTP/1.1\r\nHost: app\r\n", 408, '"GET /slow HTTP/1.1" 408 DPE'),
        (b"GET /old\r\n", 400, '"GET /old HTTP/0.9" 400 DPE'),
    ]
    for sent, status, _ in cases:
        out = raw_request(s.port, sent, timeout=3)
        assert out.startswith(b"HTTP/1.1 %d " % status), (sent[:40], out)
    lines = settle_text(s, len(cases))
    assert len(lines) == len(cases), lines
    for (_, _, expected), line in zip(cases, lines, strict=True):
        assert line.split("] ", 1)[1].startswith(expected), line
    assert v1.raw == b""  # (the chunked one's head was good: a connection, but no byte)
    assert s.stats()["requests"]["DPE"] == len(cases)


def test_an_http09_request_is_answered_400_at_once(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """Not after the head timeout: the client of an HTTP/0.9 request waits meanwhile."""
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(mesh_yaml(v1.port, v2.port), "--request-header-timeout", "30")
    for sent in (b"GET /\r\n", b"GET /\n", b"GET /x?a=1\r\nHost: app\r\n\r\n"):
        out = raw_request(s.port, sent, timeout=5)
        assert out.startswith(b"HTTP/1.1 400 "), (sent, out)
    assert v1.connections == 0


def settle_text(s: Served, count: int) -> list[str]:
    end = time.monotonic() + 3
    while time.monotonic() < end:
        lines = s.log.read_text().splitlines() if s.log.exists() else []
        if len(lines) >= count:
            break
        time.sleep(0.02)
    time.sleep(0.2)
    return s.log.read_text().splitlines() if s.log.exists() else []


def test_paths_are_normalised_hosts_checked_underscores_dropped_credentials_kept_from_log(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    mirror = "    mirror: {host: app, subset: v2}\n"
    s = serve(
        mesh_yaml(v1.port, v2.port, mirror),
        "--shadow-strip-header",
        "Authorization",
        "--shadow-strip-header",
        "cookie",
    )
    out = raw_request(
        s.port,
        b"GET /public/./../admin/%7Eme%2f%zz?api_key=s3cret&q=/../&X-Amz-Signature=abc HTTP/1.1\r\n"
        b"Host: app\r\nAuthorization: Bearer t0ken\r\nCookie: session=c00kie\r\n"
        b"Content_Length: 5\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 200 "), out
    (primary,) = v1.wait_for(1)
    (shadow,) = v2.wait_for(1)
    target = "/admin/~me%2F%zz?api_key=s3cret&q=/../&X-Amz-Signature=abc"
    assert primary.request_line == f"GET {target} HTTP/1.1"
    assert shadow.request_line == primary.request_line
    assert primary.headers["authorization"] == "Bearer t0ken"
    assert primary.headers["cookie"] == "session=c00kie"
    assert "authorization" not in shadow.headers and "cookie" not in shadow.headers
    for got in (primary, shadow):
        assert "content_length" not in got.headers and "x_forwarded_for" not in got.headers
        assert got.headers["x-forwarded-for"] == "127.0.0.1"
    lines = settle_text(s, 2)
    assert len(lines) == 2
    for line in lines:
        assert '"GET /admin/~me%2F%zz?api_key=REDACTED&q=/../&X-Amz-Signature=REDACTED ' in line
        assert "s3cret" not in line and "abc" not in line.split('"')[1]
    assert s.stats()["requests"]["dropped_headers_with_underscores"] == 2
    url = f"http://127.0.0.1:{s.admin}/stats/prometheus"
    with urllib.request.urlopen(url, timeout=5) as r:
        assert "shadowmesh_dropped_headers_with_underscores_total 2.0" in r.read().decode()

    for host in (b"a b", b"app/x", b"app@evil", b"app:8x", b"[::1"):
        out = raw_request(s.port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 "), (host, out)
    out = raw_request(s.port, b"GET http://a b/ HTTP/1.1\r\nHost: app\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    # A valid Host first, then an invalid one on the same connection: each one is checked.
    out = raw_request(
        s.port, b"GET /1 HTTP/1.1\r\nHost: app\r\n\r\nGET /2 HTTP/1.1\r\nHost: a b\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 400 " in out, out
    time.sleep(0.2)
    assert [r.request_line for r in v1.requests][1:] == ["GET /1 HTTP/1.1"]


def test_underscores_in_header_names_pass_when_allowed_and_redaction_can_be_changed(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(
        mesh_yaml(v1.port, v2.port),
        "--allow-underscores-in-headers",
        "--redact-query-param",
        "session",
    )
    out = raw_request(
        s.port,
        b"GET /x?session=abc&token=kept HTTP/1.1\r\nHost: app\r\nX_Y: 1\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 200 "), out
    (got,) = v1.wait_for(1)
    assert got.headers["x_y"] == "1"
    (line,) = settle_text(s, 1)
    assert '"GET /x?session=REDACTED&token=kept HTTP/1.1"' in line


def test_every_worker_knows_a_loop_through_any_other(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """One pseudonym per state directory: a copy that comes back on another worker is
    recognised there too."""
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(
        loop_mesh(v1.port, v2.port, route="v1", mirror="self"),
        "--access-log-format",
        "json",
        "--workers",
        "2",
        "--shadow-max-in-flight",
        "20",
    )
    time.sleep(1.0)  # the worker's own start

    def get(i: int) -> bytes:
        request = b"GET /get?i=%d HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n" % i
        return raw_request(s.port, request)

    # At once, so each process opens several connections for its copies and the kernel
    # spreads them over both (one at a time, a process's copies reuse one connection).
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(get, range(40)))
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
    logged = settle(s, 120)
    assert len(v1.requests) == 40
    looped = [r for r in logged if r["response_flags"] == "LD"]
    assert len(looped) == 40 and len(logged) == 120
