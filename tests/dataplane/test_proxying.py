"""The data plane against real sockets: bodies, framing, reuse, pipelining, failures, shadows."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.serve import Served, free_port, mesh_yaml, raw_request
from tests.support.upstreams import RecordingUpstream

MIRROR_V2 = "    mirror: {host: app, subset: v2}\n"


def make(
    upstreams: list[RecordingUpstream], *modes: str, delay: float = 0.0
) -> list[RecordingUpstream]:
    made = [RecordingUpstream(mode=m, delay=delay) for m in modes]
    upstreams.extend(made)
    return made


def plain_mesh(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> tuple[Served, RecordingUpstream, RecordingUpstream]:
    """The usual setup: two answering upstreams, v1 routed, no mirror."""
    v1, v2 = make(upstreams, "ok", "ok")
    return serve(mesh_yaml(v1.port, v2.port)), v1, v2


def discard(urls: list[str]) -> list[str]:
    """curl's ``-o`` applies to one URL: give each its own."""
    return [a for url in urls for a in ("-o", "/dev/null", url)]


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20
    )


def test_post_bodies_reach_primary_and_shadow_whole(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], tmp_path: Any
) -> None:
    v1, v2 = make(upstreams, "ok", "ok")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    (tmp_path / "body.bin").write_bytes(body)
    url = f"http://127.0.0.1:{s.port}/post"
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        r = curl(
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: app",
            "--data-binary",
            f"@{tmp_path / 'body.bin'}",
            *extra,
            url,
        )
        assert r.stdout == "200", r.stderr
    primary = v1.wait_for(2)
    shadows = v2.wait_for(2)
    assert [r.body == body for r in primary] == [True, True]
    assert [r.body == body for r in shadows] == [True, True]
    assert {r.headers["host"] for r in shadows} == {"app-shadow"}
    assert {r.headers["host"] for r in primary} == {"app"}
    # Each shadow carries its primary's request id.
    assert sorted(r.headers["x-request-id"] for r in primary) == sorted(
        r.headers["x-request-id"] for r in shadows
    )


def test_upstream_connections_are_reused(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    urls = [f"http://127.0.0.1:{s.port}/get?i={i}" for i in range(10)]
    r = curl("-H", "Host: app", "-w", "%{http_code}\n", *discard(urls))
    assert r.stdout.split() == ["200"] * 10
    assert len(v1.wait_for(10)) == 10
    assert v1.connections == 1


def test_pipelined_requests_are_answered_in_order(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    pipeline = (
        b"GET /a HTTP/1.1\r\nHost: app\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello"
        b"HEAD /c HTTP/1.1\r\nHost: app\r\n\r\n"
        b"GET /d HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
    )
    out = raw_request(s.port, pipeline)
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert out.endswith(b'{"ok": true}')
    # HEAD's answer carries the length but no body: 3 bodies for 4 answers.
    assert out.count(b'{"ok": true}') == 3
    got = v1.wait_for(4)
    assert [r.request_line for r in got] == [
        "GET /a HTTP/1.1",
        "POST /b HTTP/1.1",
        "HEAD /c HTTP/1.1",
        "GET /d HTTP/1.1",
    ]
    assert got[1].body == b"hello"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app\r\nHost: other\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app\r\nX: a\r\n folded\r\n\r\n",
    ],
    ids=[
        "cl-and-te",
        "two-cl",
        "te-not-chunked",
        "two-hosts",
        "no-host",
        "space-in-name",
        "obs-fold",
    ],
)
def test_ambiguous_framing_is_refused_and_never_forwarded(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], request_bytes: bytes
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    out = raw_request(s.port, request_bytes)
    assert out.startswith(b"HTTP/1.1 400 "), out
    assert b"connection: close" in out.lower()
    time.sleep(0.2)
    assert v1.raw == b"" and v1.connections == 0


def test_frozen_shadow_leaves_primary_fast_and_connections_reused(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "ok", "frozen")
    s = serve(
        mesh_yaml(v1.port, v2.port, MIRROR_V2),
        "--shadow-timeout",
        "1",
    )
    urls = [f"http://127.0.0.1:{s.port}/get?i={i}" for i in range(20)]
    r = curl("-H", "Host: app", "-w", "%{http_code} %{num_connects}\n", *discard(urls))
    lines = r.stdout.split("\n")[:20]
    assert [line.split()[0] for line in lines] == ["200"] * 20
    # One client connection for all twenty: the shadow never holds the primary's connection.
    assert sum(int(line.split()[1]) for line in lines) == 1
    assert v1.connections == 1
    assert len(v2.wait_for(20)) == 20  # every copy was sent...
    time.sleep(1.5)
    stats = s.stats()
    assert stats["shadow_failed"] == {"timeout": 20}  # ...and each abandoned at its timeout


def test_dead_shadow_counts_failures_and_primary_is_untouched(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    (v1,) = make(upstreams, "ok")
    dead = free_port()  # nothing listens there
    s = serve(mesh_yaml(v1.port, dead, MIRROR_V2))
    urls = [f"http://127.0.0.1:{s.port}/get?i={i}" for i in range(5)]
    r = curl("-H", "Host: app", "-w", "%{http_code}\n", *discard(urls))
    assert r.stdout.split() == ["200"] * 5
    time.sleep(0.3)
    stats = s.stats()
    # The first copy finds the shadow refusing; it is then skipped for a second (Envoy's
    # outlier ejection), so the next copies are dropped before costing a connect each.
    assert stats["shadow_failed"] == {"connect": 1}
    assert stats["shadow_dropped"] == {"unhealthy": 4}
    time.sleep(1.0)  # the back-off is over: the next copy tries again
    r = curl("-H", "Host: app", "-w", "%{http_code}", "-o", "/dev/null", urls[0])
    assert r.stdout == "200"
    time.sleep(0.3)
    assert s.stats()["shadow_failed"] == {"connect": 2}


def test_upstream_reset_mid_response_closes_the_client_connection(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "reset", "ok")
    s = serve(mesh_yaml(v1.port, v2.port))
    r = curl("-H", "Host: app", f"http://127.0.0.1:{s.port}/get")
    # Never a silent truncation: curl sees the response end early.
    assert r.returncode != 0
    assert r.stdout.startswith("partial")


def test_route_timeout_answers_504_ut(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "slow", "ok", delay=2.0)
    s = serve(mesh_yaml(v1.port, v2.port, timeout="    timeout: 0.3s\n"))
    r = curl("-H", "Host: app", "-w", " %{http_code}", f"http://127.0.0.1:{s.port}/get")
    assert r.stdout == "upstream request timeout 504"
    time.sleep(0.2)
    assert " 504 UT " in s.log.read_text()


def test_apply_of_a_service_on_a_taken_port_is_refused_whole(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], tmp_path: Any
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    taken = RecordingUpstream()  # a listening socket another process could hold
    upstreams.append(taken)
    doc = tmp_path / "busy.yaml"
    doc.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: busy}\n"
        f"spec: {{selector: {{app: app}}, ports: [{{name: http, port: {taken.port}}}]}}\n"
    )
    env = {"SHADOWMESH_ADMIN": f"127.0.0.1:{s.admin}", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "shadowmesh"]
    r = subprocess.run([*cmd, "apply", "-f", str(doc)], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{taken.port}" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([*cmd, "get", "svc", "busy"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "not found" in r.stderr
    # What ran before still runs.
    assert (
        curl(
            "-H",
            "Host: app",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:{s.port}/",
        ).stdout
        == "200"
    )


def test_a_reused_connection_closed_by_the_upstream_is_retried_once(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "one-per-conn", "ok")
    s = serve(mesh_yaml(v1.port, v2.port))
    for _ in range(3):
        r = curl(
            "-H",
            "Host: app",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:{s.port}/get",
        )
        assert r.stdout == "200"
    # Requests 2 and 3 each found their pooled connection closed under them, and were sent
    # again on a new one: 5 requests seen upstream on 3 connections, 3 answers to the client.
    assert len(v1.requests) == 5 and v1.connections == 3


def test_only_idempotent_requests_are_resent_on_a_reused_connection_closed_under_them(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """RFC 9110 9.2.2: the upstream may have acted on a request its connection closed under, so
    a POST or PATCH is never sent again (Envoy's 503 UC); a GET is (it is idempotent)."""
    v1, v2 = make(upstreams, "one-per-conn", "ok")
    s = serve(mesh_yaml(v1.port, v2.port))
    url = f"http://127.0.0.1:{s.port}"

    def status(*args: str) -> str:
        return curl("-H", "Host: app", "-o", "/dev/null", "-w", "%{http_code}", *args).stdout

    assert status(f"{url}/warm1") == "200"
    assert status("-X", "POST", "-d", "", f"{url}/post") == "503"  # Content-Length: 0
    assert status(f"{url}/warm2") == "200"
    assert status("-X", "PATCH", f"{url}/patch") == "503"  # no body at all
    assert status(f"{url}/warm3") == "200"
    assert status(f"{url}/get") == "200"
    lines = [r.request_line for r in v1.wait_for(7)]
    assert lines.count("POST /post HTTP/1.1") == 1
    assert lines.count("PATCH /patch HTTP/1.1") == 1
    assert lines.count("GET /get HTTP/1.1") == 2  # sent again, on a new connection
    assert len(lines) == 7
    log = s.log.read_text()
    assert '"POST /post HTTP/1.1" 503 UC ' in log and '"PATCH /patch HTTP/1.1" 503 UC ' in log
    assert s.stats()["requests"]["upstream_rq_not_resent"] == 2


def test_a_connection_paused_for_a_slow_client_is_not_pooled_paused(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    (v1,) = make(upstreams, "ok")
    v1.body = b"x" * (4 * 1024 * 1024)
    s = serve(mesh_yaml(v1.port, v1.port))
    with socket.create_connection(("127.0.0.1", s.port)) as slow:
        slow.sendall(b"GET /big HTTP/1.1\r\nHost: app\r\n\r\n")
        time.sleep(0.5)  # not reading: the proxy's send buffer fills and it pauses the upstream
        got = 0
        while got < len(v1.body):
            got += len(slow.recv(1 << 20))
    r = curl(
        "-H",
        "Host: app",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "3",
        f"http://127.0.0.1:{s.port}/next",
    )
    assert r.stdout == "200"


def test_an_early_answer_keeps_the_body_flowing_to_the_shadow(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], tmp_path: Any
) -> None:
    v1, v2 = make(upstreams, "early", "ok")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    body = b"b" * (2 * 1024 * 1024)
    (tmp_path / "body.bin").write_bytes(body)
    url = f"http://127.0.0.1:{s.port}/post"
    # One --data-binary serves both URLs (curl joins repeated ones with "&").
    r = curl(
        "-H",
        "Host: app",
        "-w",
        "%{http_code} %{num_connects}\n",
        "--data-binary",
        f"@{tmp_path / 'body.bin'}",
        *discard([url, url]),
    )
    assert r.stdout.split("\n")[:2] == ["200 1", "200 0"], r.stderr
    assert [len(x.body) for x in v2.wait_for(2)] == [len(body)] * 2
    time.sleep(0.3)
    stats = s.stats()
    assert stats["shadow_in_flight"] == 0 and stats["shadow_held_bytes"] == 0
    assert stats["shadows"] == {"sent": 2, "completed": 2}


def test_a_client_gone_mid_body_drops_its_shadow_and_frees_it(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "early", "ok")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"POST /p HTTP/1.1\r\nHost: app\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        assert c.recv(1000).startswith(b"HTTP/1.1 200")
    time.sleep(0.3)
    stats = s.stats()
    assert stats["shadow_in_flight"] == 0 and stats["shadow_held_bytes"] == 0
    assert stats["shadow_dropped"] == {"client_aborted": 1}
    assert v2.requests == []


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(150)) + b"\r\n",
    ],
    ids=["bad-status", "bad-version", "two-lengths", "cl-and-te", "too-many-headers"],
)
def test_an_invalid_upstream_response_is_a_502_upe_and_never_relayed(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], response: bytes
) -> None:
    v1, v2 = make(upstreams, "ok", "ok")
    v1.response = response
    s = serve(mesh_yaml(v1.port, v2.port))
    r = curl("-H", "Host: app", "-i", f"http://127.0.0.1:{s.port}/get")
    assert r.stdout.startswith("HTTP/1.1 502 Bad Gateway"), r.stdout
    assert "x-h1:" not in r.stdout and "abc" not in r.stdout
    time.sleep(0.2)
    assert " 502 UPE " in s.log.read_text()


def test_transfer_encoding_on_http_1_0_is_refused(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    out = raw_request(
        s.port,
        b"POST / HTTP/1.0\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 400 ")
    assert v1.raw == b""


def test_slow_heads_get_408_and_idle_connections_are_closed(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "ok", "ok")
    s = serve(mesh_yaml(v1.port, v2.port), "--request-header-timeout", "0.5", "--idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n")  # and never the end of the head
        started = time.monotonic()
        answer = slow.recv(1000)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert slow.recv(1000) == b""  # closed
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
        assert idle.recv(1000).startswith(b"HTTP/1.1 200 ")
        assert idle.recv(1000) == b""  # closed after the idle timeout, without an answer
    assert time.monotonic() - started < 4.5
    assert v1.raw.count(b"GET / HTTP/1.1") == 1


def test_connections_past_the_cap_are_closed_on_accept(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "ok", "ok")
    s = serve(mesh_yaml(v1.port, v2.port), "--max-connections", "2")
    held = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)
        try:
            out = raw_request(s.port, b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
        except ConnectionResetError:
            out = b""  # closed with the request unread: the kernel may answer with a reset
        assert out == b""
        held[0].sendall(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        assert held[0].recv(1000).startswith(b"HTTP/1.1 200 ")
    finally:
        for c in held:
            c.close()
    assert s.stats()["requests"]["downstream_cx_overflow"] == 1


def test_upgrade_is_tunnelled_both_ways_and_never_mirrored(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "upgrade", "ok")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as ws:
        ws.sendall(
            b"GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\nearly-bytes"
        )
        got = b""
        while not got.endswith(b"early-bytes"):
            got += ws.recv(65536)
        head, _, rest = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: websocket" in head.lower() and b"connection: upgrade" in head.lower()
        assert rest == b"early-bytes"
        for message in (b"hello", b"x" * 300_000):
            ws.sendall(message)
            echoed = b""
            while len(echoed) < len(message):
                echoed += ws.recv(65536)
            assert echoed == message
    seen = v1.wait_for(1)[0]
    assert seen.headers["upgrade"] == "websocket" and seen.headers["connection"] == "upgrade"
    time.sleep(0.3)
    assert v2.requests == []  # Envoy: "Shadowing doesn't support HTTP CONNECT and upgrades."
    assert '"GET /chat HTTP/1.1" 101 ' in s.log.read_text()


def test_upgrade_on_a_warm_pool_reaches_the_upstream(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """Under traffic the pool holds an idle connection: an Upgrade request taken onto it must be
    written out, not left waiting for the end of a read that ended at the Upgrade."""
    v1, v2 = make(upstreams, "upgrade", "ok")
    s = serve(mesh_yaml(v1.port, v2.port))
    warm = curl(
        "-H", "Host: app", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{s.port}/"
    )
    assert warm.stdout == "200"
    with socket.create_connection(("127.0.0.1", s.port), timeout=3) as ws:
        ws.sendall(
            b"GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        got = b""
        while b"\r\n\r\n" not in got:
            got += ws.recv(65536)
        assert got.startswith(b"HTTP/1.1 101 ")
        ws.sendall(b"ping")
        echoed = b""
        while len(echoed) < 4:
            echoed += ws.recv(65536)
        assert echoed == b"ping"
    # The Upgrade went on the connection the plain request left in the pool.
    assert v1.connections == 1 and len(v1.requests) == 2


def test_chunked_trailers_are_dropped_and_the_next_request_is_clean(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    out = raw_request(
        s.port,
        b"POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
    )
    assert out.count(b"HTTP/1.1 200 OK") == 2
    first, second = v1.wait_for(2)
    assert first.body == b"hello"
    assert "x-trailer" not in first.headers and "x-trailer" not in second.headers


def test_http_1_0_with_and_without_keep_alive(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    out = raw_request(s.port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in out
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        for _ in range(2):
            c.sendall(b"GET / HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n")
            answer = c.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK")
            assert b"connection: keep-alive" in answer and answer.endswith(b'{"ok": true}')


def test_expect_100_continue_is_answered_by_the_proxy(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(
            b"POST / HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert c.recv(1000) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.sendall(b"body")
        assert c.recv(65536).startswith(b"HTTP/1.1 200 OK")
    (seen,) = v1.wait_for(1)
    assert seen.body == b"body" and "expect" not in seen.headers


def test_a_client_aborting_mid_body_frees_the_upstream_connection(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, v1, v2 = plain_mesh(upstreams, serve)
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: app\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
        time.sleep(0.3)
    # The half-sent request's upstream connection is not reused: the next request opens anew
    # and is answered.
    r = curl(
        "-H", "Host: app", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{s.port}/"
    )
    assert r.stdout == "200"
    assert v1.connections == 2


def test_shadow_faults_never_touch_the_primary_and_are_counted(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    cases = {
        "reset": RecordingUpstream(mode="reset"),
        "garbage": RecordingUpstream(response=b"NOT HTTP AT ALL\r\n\r\n"),
        "big": RecordingUpstream(body=b"z" * (10 * 1024 * 1024)),
    }
    upstreams.extend(cases.values())
    (v1,) = make(upstreams, "ok")
    for name, shadow in cases.items():
        s = serve(mesh_yaml(v1.port, shadow.port, MIRROR_V2))
        urls = [f"http://127.0.0.1:{s.port}/get?i={i}" for i in range(5)]
        r = curl("-H", "Host: app", "-w", "%{http_code} %{size_download}\n", *discard(urls))
        assert r.stdout.split("\n")[:5] == ["200 12"] * 5, name
        time.sleep(0.5)
        stats = s.stats()
        outcome = {**stats["shadow_failed"], **stats["shadows"]}  # type: ignore[dict-item]
        assert outcome["sent"] == 5, (name, stats)
        expected = {"big": "completed", "reset": "reset", "garbage": "protocol"}[name]
        assert outcome[expected] == 5, (name, stats)
        s.stop()


def test_a_1_gib_upload_streams_through_with_bounded_memory(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "count", "count")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    size = 1 << 30
    block = b"\0" * (1 << 20)
    with socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
        c.sendall(b"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            c.sendall(block)
        assert c.recv(65536).startswith(b"HTTP/1.1 200 OK")
    (seen,) = v1.wait_for(1)
    assert int(seen.body) == size
    status = open(f"/proc/{s.proc.pid}/status").read()
    peak_mib = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(f"1 GiB upload: proxy peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < 120, peak_mib  # the body was streamed, never held
    time.sleep(0.2)
    # Too big to mirror (the shadow's cap is 8 MiB): dropped and counted, not half-sent.
    assert s.stats()["shadow_dropped"] == {"body_too_large": 1}
    assert v2.requests == []


def test_shadows_past_the_in_flight_bound_are_dropped_and_counted(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "ok", "frozen")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2), "--shadow-max-in-flight", "3")
    urls = [f"http://127.0.0.1:{s.port}/get?i={i}" for i in range(10)]
    r = curl("-H", "Host: app", "-w", "%{http_code}\n", *discard(urls))
    assert r.stdout.split() == ["200"] * 10
    stats = s.stats()
    assert stats["shadow_in_flight"] == 3
    assert stats["shadow_dropped"] == {"overflow": 7}
    assert len(v2.wait_for(3)) == 3


def test_copies_to_one_shadow_endpoint_are_bounded(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "ok", "frozen")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2), "--shadow-max-in-flight-per-endpoint", "2")
    urls = [f"http://127.0.0.1:{s.port}/get?i={i}" for i in range(6)]
    r = curl("-H", "Host: app", "-w", "%{http_code}\n", *discard(urls))
    assert r.stdout.split() == ["200"] * 6
    stats = s.stats()
    assert stats["shadow_in_flight"] == 2 and stats["shadow_dropped"] == {"overflow": 4}


def test_a_shadow_on_a_pooled_connection_closed_under_it_is_sent_again(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "ok", "one-per-conn")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    for i in range(3):
        r = curl(
            "-H",
            "Host: app",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:{s.port}/get?i={i}",
        )
        assert r.stdout == "200"
        time.sleep(0.1)  # the copy is back in the shadow pool before the next one
    time.sleep(0.3)
    stats = s.stats()
    assert stats["shadows"] == {"sent": 3, "completed": 3}, stats
    assert stats["shadow_failed"] == {}


def test_a_shadow_copy_is_sent_again_only_if_idempotent(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "ok", "one-per-conn")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    url = f"http://127.0.0.1:{s.port}"
    for args in (
        [f"{url}/warm"],
        ["-X", "POST", "--data-binary", "abc", f"{url}/post"],
        [f"{url}/warm2"],
        ["-X", "PUT", "--data-binary", "xyz", f"{url}/put"],
    ):
        r = curl("-H", "Host: app", "-o", "/dev/null", "-w", "%{http_code}", *args)
        assert r.stdout == "200"
        time.sleep(0.2)  # the copy is back in the shadow pool before the next one
    time.sleep(0.2)
    seen = v2.wait_for(6)
    posts = [r for r in seen if r.request_line == "POST /post HTTP/1.1"]
    puts = [r for r in seen if r.request_line == "PUT /put HTTP/1.1"]
    assert len(posts) == 1 and posts[0].body == b"abc"  # closed under it, never sent again
    assert len(puts) == 2 and puts[1].body == b"xyz"  # idempotent: sent again, body and all
    stats = s.stats()
    assert stats["shadow_failed"] == {"reset": 1}, stats
    assert stats["shadows"]["not_resent"] == 1, stats


def test_a_shadow_copy_has_the_primary_s_framing(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = make(upstreams, "ok", "ok")
    s = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2))
    out = raw_request(
        s.port,
        b"POST /chunked HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        b"POST /none HTTP/1.1\r\nHost: app\r\n\r\n"
        b"GET /length HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /zero HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert out.count(b"HTTP/1.1 200 OK") == 4
    primary = {r.request_line.split()[1]: r for r in v1.wait_for(4)}
    shadow = {r.request_line.split()[1]: r for r in v2.wait_for(4)}
    assert set(shadow) == {"/chunked", "/none", "/length", "/zero"}
    for path, copy in shadow.items():
        framing = {
            k: v for k, v in copy.headers.items() if k in ("content-length", "transfer-encoding")
        }
        expected = {
            k: v
            for k, v in primary[path].headers.items()
            if k in ("content-length", "transfer-encoding")
        }
        assert framing == expected, path
        assert copy.body == primary[path].body, path
    assert shadow["/chunked"].body == b"abcde"


def test_a_burst_of_connections_is_queued_not_dropped(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    """300 clients connecting at once, while the proxy cannot accept (stopped), all complete
    their handshake: the listen backlog is 1024 as bound, not asyncio's default of 100, past
    which Linux drops SYNs and a client waits a second for its retransmission."""
    import select
    import signal

    served, _, _ = plain_mesh(upstreams, serve)
    clients: list[socket.socket] = []
    os.kill(served.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(300):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", served.port))
            clients.append(client)
        pending = list(clients)
        end = time.monotonic() + 0.5  # a dropped SYN is retried after 1 s: not in this window
        while pending and time.monotonic() < end:
            _, writable, _ = select.select([], pending, [], 0.05)
            pending = [c for c in pending if c not in writable]
        connected = [
            c
            for c in clients
            if c not in pending and not c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        ]
        assert len(connected) == 300
    finally:
        os.kill(served.proc.pid, signal.SIGCONT)
        for client in clients:
            client.close()
