"""Response framing against real sockets: raw upstreams that frame their answers oddly, real
clients (curl, raw sockets) on the other side."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

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
