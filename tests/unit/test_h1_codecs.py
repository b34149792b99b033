"""The HTTP/1 codecs in memory: bytes in, the events a stream gets out; a stream's calls in,
the bytes on the wire out (http.ports is the interface between them)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from shadowmesh.dataplane.downstream import ClientConnection, H1Message
from shadowmesh.dataplane.server import DataPlane
from shadowmesh.http.ports import NO_LENGTH, STREAMED, DownstreamPort, Stream, StreamOpener
from shadowmesh.http.request import RequestHead
from shadowmesh.http.wire import Headers
from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.table import RouteTable
from shadowmesh.upstream.connection import Pool, UpstreamConnection


class Wire(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def take(self) -> bytes:
        out, self.data = bytes(self.data), bytearray()
        return out


class Recorder(Stream):
    """Records what the downstream codec tells a stream."""

    def __init__(self, port: DownstreamPort, head: RequestHead, log: list[tuple[object, ...]]):
        self.port = port
        self.head = head
        self.log = log

    def start(self) -> None:
        self.log.append(("start", self.head.path))
        self.log.append(("hold", self.port.hold(self)))

    def request_data(self, data: bytes) -> None:
        self.log.append(("data", self.head.path, data))

    def request_end(self) -> None:
        self.log.append(("end", self.head.path))

    def downstream_failed(self, status: int, flag: str) -> None:
        self.log.append(("failed", self.head.path, status, flag))

    def downstream_read_done(self) -> None:
        self.log.append(("read_done", self.head.path))


class Opener(StreamOpener):
    def __init__(self) -> None:
        self.log: list[tuple[object, ...]] = []
        self.ports: list[H1Message] = []

    def open(self, port: DownstreamPort, head: RequestHead) -> Stream:
        assert isinstance(port, H1Message)
        self.ports.append(port)
        return Recorder(port, head, self.log)


def plane() -> DataPlane:
    stats = Stats()
    log = AccessLog(None)
    dispatcher = Dispatcher(ShadowLimits(), stats, log)
    table = RouteTable.compile([], rng=random.Random(1))
    return DataPlane(table, "127.0.0.1", Pool(), dispatcher, log, stats)


def client() -> tuple[ClientConnection, Opener, Wire]:
    opener = Opener()
    conn = ClientConnection(plane(), 8000, opener)
    wire = Wire()
    conn.connection_made(wire)
    return conn, opener, wire


# --- downstream: bytes in, events out ------------------------------------------------------


def test_a_body_in_pieces_reaches_the_stream_as_data_then_end() -> None:
    conn, opener, _ = client()
    conn.data_received(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel")
    conn.data_received(b"lo")
    assert opener.log == [
        ("start", b"/a"),
        ("hold", True),  # mid-read: its upstream writes wait for the read's end
        ("data", b"/a", b"hel"),
        ("read_done", b"/a"),
        ("data", b"/a", b"lo"),
        ("end", b"/a"),
    ]
    assert opener.ports[0].request_complete


def test_a_chunked_body_is_dechunked_and_its_trailers_dropped() -> None:
    conn, opener, _ = client()
    conn.data_received(
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    data = [e[2] for e in opener.log if e[0] == "data"]
    assert data == [b"abc", b"de"]
    assert opener.log[-2:] == [("end", b"/c"), ("read_done", b"/c")]
    assert opener.ports[0].head.headers == [(b"host", b"h"), (b"transfer-encoding", b"chunked")]


def test_a_pipelined_request_starts_only_once_the_one_before_is_answered() -> None:
    conn, opener, wire = client()
    conn.data_received(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [e for e in opener.log if e[0] == "start"] == [("start", b"/1")]
    first = opener.ports[0]
    first.send_local(404, b"nope", b"")
    first.finished()
    assert [e for e in opener.log if e[0] == "start"] == [("start", b"/1"), ("start", b"/2")]
    assert wire.take().startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_a_bad_chunk_after_a_good_head_fails_the_stream_as_dpe() -> None:
    conn, opener, wire = client()
    conn.data_received(
        b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
    )
    assert ("failed", b"/b", 400, "DPE") in opener.log
    assert wire.closed


def test_the_client_going_away_fails_every_stream_it_has_as_dc() -> None:
    conn, opener, _ = client()
    conn.data_received(b"POST /g HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc")
    conn.connection_lost(None)
    assert opener.log[-1] == ("failed", b"/g", 0, "DC")


# --- downstream: calls in, bytes out -------------------------------------------------------


def one_message(request: bytes) -> tuple[H1Message, Wire]:
    conn, opener, wire = client()
    conn.data_received(request)
    return opener.ports[0], wire


def test_a_body_of_unknown_length_is_chunked_to_an_http11_client() -> None:
    port, wire = one_message(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert port.send_head(200, b"OK", [(b"x-a", b"1")], None, None)
    port.send_data(b"abc")
    assert wire.take() == b""  # gathered until the upstream read ends
    port.send_end()
    assert wire.take() == (
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert port.committed


def test_a_sized_body_keeps_its_length_and_trailers_are_not_written() -> None:
    port, wire = one_message(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    port.send_head(200, b"OK", [], b"2", None)
    port.send_data(b"ok")
    port.send_trailers([(b"x-t", b"1")])
    port.send_end()
    assert wire.take() == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_an_http10_client_gets_no_transfer_coding_and_keep_alive_said() -> None:
    port, wire = one_message(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert not port.send_head(200, b"OK", [], None, b"gzip")  # cannot be relayed: refused
    assert port.send_head(200, b"OK", [], b"0", None)
    port.send_end()
    assert wire.take() == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"


def test_a_discarded_head_is_never_written() -> None:
    port, wire = one_message(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    port.send_head(200, b"OK", [], b"2", None)
    port.discard()
    port.send_local(503, b"gone", b"")
    assert wire.take().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")


def test_a_head_request_gets_its_length_and_no_body() -> None:
    port, wire = one_message(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    port.send_local(404, b"not here", b"")
    out = wire.take()
    assert b"content-length: 8\r\n" in out and out.endswith(b"\r\n\r\n")


# --- upstream: calls in, bytes out; bytes in, events out -----------------------------------


class Events(Stream):
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def response_head(self, status: int, reason: bytes, headers: Headers, keep_alive: bool) -> None:
        self.events.append(("head", status))

    def response_data(self, data: bytes) -> None:
        self.events.append(("data", data))

    def response_trailers(self, trailers: Headers) -> None:
        self.events.append(("trailers", trailers))

    def response_end(self) -> None:
        self.events.append(("end",))

    def upstream_failed(self, reason: str, protocol_error: bool = False) -> None:
        self.events.append(("failed", protocol_error))


def upstream() -> tuple[UpstreamConnection, Wire]:
    conn = UpstreamConnection(Endpoint("127.0.0.1", 1))
    wire = Wire()
    conn.connection_made(wire)
    return conn, wire


def test_a_streamed_request_body_is_chunked_on_the_wire() -> None:
    conn, wire = upstream()
    stream = Events()
    conn.send_head(stream, b"POST", b"/p", b"h:1", b"x-a: 1\r\n", STREAMED, False)
    conn.send_data(b"abc")
    conn.send_data(b"")  # an empty piece is not the last chunk
    conn.send_end()
    assert wire.take() == (
        b"POST /p HTTP/1.1\r\nhost: h:1\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    assert conn.sink is stream and conn.requests == 1


def test_a_sized_or_bodiless_request_is_written_as_it_comes() -> None:
    conn, wire = upstream()
    conn.send_head(Events(), b"PUT", b"/", b"h", b"", 3, False)
    conn.send_data(b"abc")
    conn.send_end()
    assert wire.take() == b"PUT / HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\nabc"
    conn, wire = upstream()
    conn.send_head(Events(), b"GET", b"/", b"h", b"", NO_LENGTH, False)
    conn.send_end()
    assert wire.take() == b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"


def test_corked_writes_go_in_one_write_or_not_at_all() -> None:
    conn, wire = upstream()
    conn.cork()
    conn.send_head(Events(), b"POST", b"/", b"h", b"", 2, False)
    conn.send_data(b"ok")
    assert wire.take() == b""
    conn.uncork()
    assert wire.take() == b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nok"
    conn, wire = upstream()
    conn.cork()
    conn.send_head(Events(), b"GET", b"/", b"h", b"", NO_LENGTH, False)
    conn.reset()  # the read turned out malformed: nothing of it goes
    assert wire.take() == b"" and wire.closed and conn.closed


def test_the_response_arrives_as_head_data_trailers_end() -> None:
    conn, _ = upstream()
    stream = Events()
    conn.send_head(stream, b"GET", b"/", b"h", b"", NO_LENGTH, False)
    conn.data_received(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nx-t: 1\r\n\r\n"
    )
    assert stream.events == [
        ("head", 200),
        ("data", b"hi"),
        ("trailers", [(b"x-t", b"1")]),
        ("end",),
    ]
    assert conn.sink is None and conn.at_boundary()
