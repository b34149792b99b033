"""Response framing against real sockets: raw upstreams that frame their answers oddly, real
clients (curl, raw sockets) on the other side."""

from __future__ import annotations

import gzip
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.serve import Served, mesh_yaml, raw_request
from tests.support.upstreams import RecordingUpstream


def raw_mesh(
    upstreams: list[RecordingUpstream],
    serve: Callable[..., Served],
    *responses: bytes,
    close_after: bool = False,
) -> tuple[Served, RecordingUpstream]:
    """The primary answers ``responses`` in turn, as they are."""
    v1 = RecordingUpstream(responses=list(responses), close_after=close_after)
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    return serve(mesh_yaml(v1.port, v2.port)), v1


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20
    )


def test_a_trailer_of_one_response_never_reaches_another_client(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, v1 = raw_mesh(
        upstreams,
        serve,
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: set-cookie\r\n\r\n"
        b"5\r\nfirst\r\n0\r\nset-cookie: session=X\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond",
    )
    first = raw_request(s.port, b"GET /a HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    second = raw_request(s.port, b"GET /b HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ") and b"first" in first
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"second")
    assert b"session=X" not in second
    assert v1.connections == 1  # the second client was served on the pooled connection


CLOSE_DELIMITED_BODY = bytes(range(256)) * 1200  # 300 KiB: many reads


def test_a_response_delimited_by_the_close_reaches_http_1_1_clients_whole_and_chunked(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], tmp_path: Path
) -> None:
    s, v1 = raw_mesh(
        upstreams,
        serve,
        b"HTTP/1.0 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n" + CLOSE_DELIMITED_BODY,
        close_after=True,
    )
    url = f"http://127.0.0.1:{s.port}/get"
    out = tmp_path / "body"
    for _ in range(2):
        r = curl("-H", "Host: app", "-D", "-", "-o", str(out), url)
        assert r.returncode == 0, r.stderr  # curl's 18 when truncated
        assert "transfer-encoding: chunked" in r.stdout.lower()
        assert out.read_bytes() == CLOSE_DELIMITED_BODY
    assert v1.connections == 2  # such a connection never goes back to the pool
    time.sleep(0.2)
    lines = s.log.read_text().splitlines()
    assert len(lines) == 2 and all(" 200 - " in line for line in lines), lines


def test_a_response_delimited_by_the_close_reaches_http_1_0_clients_with_connection_close(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    s, _ = raw_mesh(
        upstreams, serve, b"HTTP/1.0 200 OK\r\n\r\n" + CLOSE_DELIMITED_BODY, close_after=True
    )
    out = raw_request(s.port, b"GET / HTTP/1.0\r\nHost: app\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"connection: close" in head.lower()
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert body == CLOSE_DELIMITED_BODY


@pytest.mark.parametrize(
    "status_line", [b"HTTP/1.1 099 Odd", b"HTTP/1.1 000 Zero", b"HTTP/1.1 600 Odd"]
)
def test_an_invalid_status_is_a_502_upe_and_nothing_raw_reaches_the_client(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], status_line: bytes
) -> None:
    s, _ = raw_mesh(upstreams, serve, status_line + b"\r\n\r\nRAW-UPSTREAM-BYTES", close_after=True)
    out = raw_request(s.port, b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 502 Bad Gateway"), out[:100]
    assert b"RAW-UPSTREAM-BYTES" not in out
    time.sleep(0.2)
    assert " 502 UPE " in s.log.read_text()


def test_a_connection_is_never_reused_in_the_middle_of_a_message(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    # The first answer comes with the start of an unasked-for second one in the same write.
    s, v1 = raw_mesh(
        upstreams,
        serve,
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst"
        b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nstale",
        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond",
    )
    first = raw_request(s.port, b"GET /a HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    second = raw_request(s.port, b"GET /b HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    assert first.endswith(b"first")
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"\r\n\r\nsecond")
    assert v1.connections == 2


@pytest.mark.parametrize("status", [204, 304])
def test_content_length_is_dropped_on_204_and_304(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], status: int
) -> None:
    s, _ = raw_mesh(
        upstreams, serve, b'HTTP/1.1 %d X\r\ncontent-length: 5\r\netag: "e"\r\n\r\n' % status
    )
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        for _ in range(2):  # and the connection stays usable: nothing was left unread
            c.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
            head = c.recv(65536)
            assert head.startswith(b"HTTP/1.1 %d " % status), head
            assert head.endswith(b"\r\n\r\n") and b'etag: "e"' in head
            assert b"content-length" not in head.lower()


def dechunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


def test_transfer_codings_other_than_chunked_reach_the_client(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    coded = gzip.compress(b"hello, coded world" * 100)
    s, _ = raw_mesh(
        upstreams,
        serve,
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(coded), coded),
    )
    out = raw_request(s.port, b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding: gzip, chunked" in head.lower(), head
    assert gzip.decompress(dechunk(body)) == b"hello, coded world" * 100
    # HTTP/1.0 has no Transfer-Encoding: the coded body cannot be relayed readably.
    old = raw_request(s.port, b"GET / HTTP/1.0\r\nHost: app\r\n\r\n")
    assert old.startswith(b"HTTP/1.1 502 "), old[:100]
