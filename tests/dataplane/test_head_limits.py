"""Head limits on partial data, against real sockets: a client trickling a huge header line,
an upstream and a shadow answering with huge heads."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

from tests.support.serve import Served, mesh_yaml
from tests.support.upstreams import RecordingUpstream

MIRROR_V2 = "    mirror: {host: app, subset: v2}\n"
HUGE_HEAD = b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (1 << 20) + b"\r\ncontent-length: 2\r\n\r\nok"


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20
    )


def test_a_header_line_past_the_limit_is_refused_before_it_ends(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend((v1, v2))
    s = serve(mesh_yaml(v1.port, v2.port), "--request-header-timeout", "3")
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nx-big: ")
        answer = b""
        for _ in range(64):  # up to 1 MiB of one line, never ended
            try:
                c.sendall(b"a" * 16384)
            except OSError:
                break  # closed by the proxy with our bytes unread
            time.sleep(0.005)
        try:
            answer = c.recv(1000)
        except OSError:
            pass
    # Answered while the line was still arriving (not with 408 once the head timed out).
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert v1.raw == b""


def test_a_response_head_past_the_limit_is_a_502_upe(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(response=HUGE_HEAD), RecordingUpstream()
    upstreams.extend((v1, v2))
    s = serve(mesh_yaml(v1.port, v2.port))
    r = curl("-H", "Host: app", "-i", f"http://127.0.0.1:{s.port}/get")
    assert r.stdout.startswith("HTTP/1.1 502 Bad Gateway"), r.stdout[:200]
    assert "x-big" not in r.stdout
    time.sleep(0.2)
    assert " 502 UPE " in s.log.read_text()


def test_a_shadow_head_past_the_limit_drops_the_shadow_and_counts_it(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream(response=HUGE_HEAD)
    upstreams.extend((v1, v2))
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    r = curl(
        "-H", "Host: app", "-w", "%{http_code}", "-o", "/dev/null", f"http://127.0.0.1:{s.port}/"
    )
    assert r.stdout == "200"
    v2.wait_for(1)
    time.sleep(0.3)
    assert s.stats()["shadow_failed"] == {"protocol": 1}
