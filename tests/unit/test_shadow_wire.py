"""A shadow copy on the wire, in memory: the primary's stream tees it to the dispatcher, which
sends it through the upstream codec's port (as the primary is sent) in one write, with the
primary's framing, its Host suffixed, attempt count 1; and its answer is read and thrown away,
the connection back in the pool."""

from __future__ import annotations

import asyncio
import random

import pytest

from shadowmesh.dataplane.server import DataPlane
from shadowmesh.http.request import RequestHead
from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.proxy.stream import ProxyStream
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import V1_PORT, V2_PORT, seed_resources
from shadowmesh.upstream.connection import Pool, UpstreamConnection
from tests.unit.test_h1_codecs import Wire
from tests.unit.test_proxy_stream import Client


class CountingWire(Wire):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        super().write(data)


def mirrored() -> tuple[DataPlane, CountingWire, CountingWire, UpstreamConnection]:
    stats = Stats()
    log = AccessLog(None)
    table = RouteTable.compile(seed_resources(mirror_percentage=100.0), rng=random.Random(1))
    dispatcher = Dispatcher(ShadowLimits(), stats, log)
    plane = DataPlane(table, "127.0.0.1", Pool(), dispatcher, log, stats)
    wires = []
    shadow_conn = None
    for pool, port in ((plane.pool, V1_PORT), (dispatcher.pool, V2_PORT)):
        conn = UpstreamConnection(Endpoint("127.0.0.1", port))
        wire = CountingWire()
        conn.connection_made(wire)
        pool.put(conn)
        wires.append(wire)
        shadow_conn = conn
    assert shadow_conn is not None
    return plane, wires[0], wires[1], shadow_conn


@pytest.mark.parametrize(
    ("method", "framing", "pieces", "expected_body"),
    [
        (b"GET", [], [], b""),
        (b"HEAD", [], [], b""),
        (b"POST", [(b"content-length", b"10")], [b"hello", b"world"], b"helloworld"),
        (
            b"POST",
            [(b"transfer-encoding", b"chunked")],
            [b"hello", b"world"],
            b"a\r\nhelloworld\r\n0\r\n\r\n",
        ),
        (b"POST", [(b"transfer-encoding", b"chunked")], [], b"0\r\n\r\n"),
    ],
    ids=["get", "head", "sized", "chunked", "chunked-empty"],
)
def test_a_shadow_copy_goes_in_one_write_with_the_primary_s_framing(
    method: bytes, framing: list[tuple[bytes, bytes]], pieces: list[bytes], expected_body: bytes
) -> None:
    plane, primary_wire, shadow_wire, shadow_conn = mirrored()
    chunked = bool(framing) and framing[0][0] == b"transfer-encoding"
    length = None if chunked or not framing else int(framing[0][1])
    head = RequestHead(
        method,
        b"/anything",
        "1.1",
        [(b"host", b"httpbin:8000"), *framing],
        b"httpbin:8000",
        b"/anything",
        content_length=length,
        chunked=chunked,
    )
    stream = ProxyStream(plane, Client(), head, 8000)

    async def run() -> None:
        stream.start()
        for piece in pieces:
            stream.request_data(piece)
        stream.request_end()
        assert shadow_wire.writes == 1  # the whole copy, head and body, in one write
        sent = shadow_wire.take()
        head_bytes, _, body = sent.partition(b"\r\n\r\n")
        assert head_bytes.startswith(method + b" /anything HTTP/1.1\r\n")
        assert b"\r\nhost: httpbin-shadow:8000" in head_bytes.lower()
        assert b"\r\nx-envoy-attempt-count: 1" in head_bytes
        if chunked:
            assert b"\r\ntransfer-encoding: chunked" in head_bytes.lower()
        elif length is not None:
            assert b"\r\ncontent-length: 10" in head_bytes.lower()
        else:
            assert b"content-length" not in head_bytes.lower()
        assert body == expected_body
        # The shadow's answer is read to its end and the connection is pooled again.
        answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
        shadow_conn.data_received(answer if method == b"HEAD" else answer + b"ok")
        assert plane.dispatcher.pool.idle_count() == 1

    asyncio.run(run())
    assert plane.stats.shadows["sent"] == 1
    assert primary_wire.data.startswith(method + b" /anything HTTP/1.1\r\n")
