"""One client stream must not hold the proxy: pipelining without reading, stalled bodies.

Against a real ``shadowmesh serve`` and the raw upstreams of tests/support/upstreams.py.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

from tests.support.serve import Served, mesh_yaml
from tests.support.upstreams import RecordingUpstream


def make(upstreams: list[RecordingUpstream], *modes: str) -> list[RecordingUpstream]:
    made = [RecordingUpstream(mode=m) for m in modes]
    upstreams.extend(made)
    return made


def rss_mib(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def get(port: int, path: str = "/", host: str = "app") -> str:
    """curl's status code for one GET ('000' if it got none in time)."""
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "5", "-H", f"Host: {host}", "-o", "/dev/null"]
        + ["-w", "%{http_code}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return r.stdout


def test_a_client_that_pipelines_and_never_reads_is_paused_not_buffered(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """Its answers pile up unsent: past the transport's high-water mark the proxy stops reading
    and parsing from it, so its memory stays flat, and other clients are served meanwhile."""
    v1, v2 = make(upstreams, "ok", "ok")
    v1.body = b"x" * 16384
    s = serve(mesh_yaml(v1.port, v2.port))
    assert get(s.port, "/warm") == "200"
    before = rss_mib(s.proc.pid)
    burst = b"GET /p HTTP/1.1\r\nHost: app\r\n\r\n" * 1000
    sent = 0
    with socket.create_connection(("127.0.0.1", s.port)) as hog:
        hog.setblocking(False)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                sent += hog.send(burst)
            except BlockingIOError:
                time.sleep(0.01)  # the proxy stopped reading: the kernel's buffers are full
        assert get(s.port, "/other") == "200"
        answered = len(v1.requests)
        time.sleep(0.5)
        stalled = len(v1.requests) - answered
        grown = rss_mib(s.proc.pid) - before
    print(f"pipelined {sent * 1000 // len(burst)} requests, never read: proxy RSS +{grown:.1f} MiB")
    assert stalled <= 1, stalled  # nothing more is forwarded for a client that does not read
    assert grown < 30, grown


def test_a_long_pipeline_behind_a_slow_request_is_answered_whole_and_in_order(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """Thousands of requests in one write, behind a slow one: they are parsed a bounded number
    at a time, and answered in order (local 404s one after another, not one nested in another)."""
    v1, v2 = make(upstreams, "slow", "ok")
    v1.delay = 0.5
    only_slow = "  - match: [{uri: {prefix: /slow}}]\n    route:\n"
    s = serve(mesh_yaml(v1.port, v2.port).replace("  - route:\n", only_slow))  # others: 404 NR
    count = 3000
    pipeline = b"GET /slow HTTP/1.1\r\nHost: app\r\n\r\n" + b"".join(
        b"GET /%d HTTP/1.1\r\nHost: app\r\n\r\n" % i for i in range(count)
    )
    pipeline += b"GET /last HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
    got = b""
    with socket.create_connection(("127.0.0.1", s.port), timeout=1) as c:
        c.sendall(pipeline)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                chunk = c.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                break
            got += chunk
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert got.count(b"HTTP/1.1 404 ") == count + 1
    assert get(s.port, "/slow/after") == "200"


# Three upstreams behind one Service: /frozen never answers, /stall sends half an answer and
# stops, anything else is answered at once.
THREE_WAYS = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ok}
spec: {address: 127.0.0.1, ports: {http: OK_PORT}, labels: {app: app, version: ok}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: frozen}
spec: {address: 127.0.0.1, ports: {http: FROZEN_PORT}, labels: {app: app, version: frozen}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: stall}
spec: {address: 127.0.0.1, ports: {http: STALL_PORT}, labels: {app: app, version: stall}}
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  selector: {app: app}
  ports: [{name: http, port: SERVICE_PORT, targetPort: 80}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  subsets:
  - {name: ok, labels: {version: ok}}
  - {name: frozen, labels: {version: frozen}}
  - {name: stall, labels: {version: stall}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - match: [{uri: {prefix: /frozen}}]
    route: [{destination: {host: app, subset: frozen}}]
  - match: [{uri: {prefix: /stall}}]
    route: [{destination: {host: app, subset: stall}}]
  - route: [{destination: {host: app, subset: ok}}]
"""


def read_all(sock: socket.socket, seconds: float = 8.0) -> tuple[bytes, bool]:
    """What the proxy sends until it closes (True) or ``seconds`` pass (False)."""
    sock.settimeout(0.2)
    got = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


def test_stalled_streams_time_out_and_free_both_connections(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """Envoy's stream idle timeout (flag SI): 408 to a client that stopped in its body, 504 when
    the upstream stopped before its answer, a reset once part of the answer is out."""
    ok, frozen, stall = make(upstreams, "ok", "frozen", "ok")
    stall.response = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\npartial"
    config = (
        THREE_WAYS.replace("OK_PORT", str(ok.port))
        .replace("FROZEN_PORT", str(frozen.port))
        .replace("STALL_PORT", str(stall.port))
    )
    s = serve(config, "--stream-idle-timeout", "1")

    # A client that stops in the middle of its body.
    with socket.create_connection(("127.0.0.1", s.port)) as client:
        client.sendall(b"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\nabc")
        got, closed = read_all(client)
    assert got.startswith(b"HTTP/1.1 408 ") and got.endswith(b"stream timeout"), got
    assert closed  # the rest of its body would be taken for a request: closed
    (upload,) = ok.wait_for(1)
    assert upload.body == b"abc"  # the upstream saw its connection closed after the 3 bytes

    # An upstream that never answers a complete request.
    with socket.create_connection(("127.0.0.1", s.port)) as client:
        client.sendall(b"GET /frozen HTTP/1.1\r\nHost: app\r\n\r\n")
        client.settimeout(8)
        answer = client.recv(65536)
        assert answer.startswith(b"HTTP/1.1 504 ") and answer.endswith(b"stream timeout")
        client.sendall(b"GET /next HTTP/1.1\r\nHost: app\r\n\r\n")  # the connection still serves
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")

    # An upstream that stops in the middle of its answer.
    with socket.create_connection(("127.0.0.1", s.port)) as client:
        client.sendall(b"GET /stall HTTP/1.1\r\nHost: app\r\n\r\n")
        got, closed = read_all(client)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"partial") and closed

    # Idle, not total: an upload slower than the timeout, never silent as long, goes through.
    with socket.create_connection(("127.0.0.1", s.port), timeout=8) as client:
        client.sendall(b"POST /slow HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\n")
        for byte in b"hello":
            time.sleep(0.35)
            client.sendall(bytes([byte]))
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert [r.body for r in ok.wait_for(3)][-1] == b"hello"

    log = s.log.read_text()
    assert '"POST /upload HTTP/1.1" 408 SI ' in log
    assert '"GET /frozen HTTP/1.1" 504 SI ' in log
    assert '"GET /stall HTTP/1.1" 200 SI ' in log
    assert s.stats()["requests"]["downstream_rq_idle_timeout"] == 3


def test_an_answered_request_whose_body_stalls_is_closed(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """The upstream answered before the body ended (nginx's `return 200` does); the client then
    stops in its body: the connection cannot serve another request, so it is closed."""
    early, other = make(upstreams, "early", "ok")
    s = serve(mesh_yaml(early.port, other.port), "--stream-idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.port)) as client:
        client.sendall(b"POST /early HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\nabc")
        got, closed = read_all(client)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"early") and closed
    assert s.stats()["requests"]["downstream_rq_idle_timeout"] == 1


def test_a_silent_tunnel_is_closed_and_a_busy_one_is_not(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """A WebSocket is a stream too (nginx's proxy_read_timeout and Envoy's stream idle timeout
    close a silent one): bytes either way keep it open, silence past the timeout ends it."""
    v1, v2 = make(upstreams, "upgrade", "ok")
    s = serve(mesh_yaml(v1.port, v2.port), "--stream-idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as ws:
        ws.sendall(
            b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += ws.recv(65536)
        assert head.startswith(b"HTTP/1.1 101 ")
        for _ in range(5):  # 1.75 s in all, never 1 s silent
            time.sleep(0.35)
            ws.sendall(b"ping")
            echoed = b""
            while len(echoed) < 4:
                echoed += ws.recv(65536)
            assert echoed == b"ping"
        rest, closed = read_all(ws)
    assert rest == b"" and closed
    assert '"GET /ws HTTP/1.1" 101 SI ' in s.log.read_text()
