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
