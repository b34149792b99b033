"""The per-request stream in memory: a fake downstream port records what the stream asks of
the client's side; the upstream side is the HTTP/1 codec on a transport that keeps its bytes.
And the request body's bounded, replayable buffer."""

from __future__ import annotations

import random

import pytest

from shadowmesh.dataplane.server import DataPlane
from shadowmesh.http.body import BodyBuffer
from shadowmesh.http.ports import DownstreamPort, Stream, UpstreamPort
from shadowmesh.http.request import RequestHead
from shadowmesh.http.wire import Header, Headers
from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.proxy.stream import DONE, ROUTING, SENT, ProxyStream
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import V1_PORT, seed_resources
from shadowmesh.upstream.connection import Pool, UpstreamConnection
from tests.unit.test_h1_codecs import Wire


class Client(DownstreamPort):
    """Records the stream's calls on the client's side."""

    def __init__(self) -> None:
        super().__init__(b"10.0.0.7")
        self.calls: list[tuple[object, ...]] = []
        self.holding = False
        self.held: list[Stream] = []

    def send_head(
        self,
        status: int,
        reason: bytes,
        headers: Headers,
        length: bytes | None,
        coding: bytes | None,
    ) -> bool:
        self.calls.append(("head", status, [n for n, _ in headers], length))
        return True

    def send_data(self, data: bytes) -> None:
        self.calls.append(("data", data))

    def send_trailers(self, trailers: Headers) -> None:
        self.calls.append(("trailers",))

    def send_end(self) -> None:
        self.calls.append(("end",))
        self.committed = True

    def flush(self) -> None:
        pass

    def discard(self) -> None:
        self.calls.append(("discard",))

    def send_local(
        self, status: int, body: bytes, location: bytes, headers: tuple[Header, ...] = ()
    ) -> None:
        self.calls.append(("local", status, body))
        self.committed = True

    def send_continue(self) -> None:
        self.calls.append(("continue",))

    def reset(self) -> None:
        self.calls.append(("reset",))

    def last(self) -> None:
        self.calls.append(("last",))

    def finished(self) -> None:
        self.calls.append(("finished",))

    def pause(self, reason: str) -> None:
        self.calls.append(("pause", reason))

    def resume(self, reason: str) -> None:
        pass

    def hold(self, stream: Stream) -> bool:
        if self.holding:
            self.held.append(stream)
        return self.holding

    def start_tunnel(self, upstream: UpstreamPort) -> None:
        self.calls.append(("tunnel",))

    def send_raw(self, data: bytes) -> None:
        self.calls.append(("raw", data))

    def addresses(self) -> tuple[str, str, str]:
        return ("", "", "")


def plane() -> DataPlane:
    stats = Stats()
    log = AccessLog(None)
    table = RouteTable.compile(seed_resources(mirror_percentage=0.0), rng=random.Random(1))
    return DataPlane(table, "127.0.0.1", Pool(), Dispatcher(ShadowLimits(), stats, log), log, stats)


def pooled(dataplane: DataPlane) -> tuple[UpstreamConnection, Wire]:
    """An idle connection to httpbin v1 in the pool, so the stream needs no event loop."""
    conn = UpstreamConnection(Endpoint("127.0.0.1", V1_PORT))
    wire = Wire()
    conn.connection_made(wire)
    dataplane.pool.put(conn)
    return conn, wire


def head(method: bytes = b"GET", authority: bytes = b"httpbin:8000", **kw: object) -> RequestHead:
    return RequestHead(method, b"/get", "1.1", [(b"host", authority)], authority, b"/get", **kw)  # type: ignore[arg-type]


def test_a_forwarded_request_and_its_answer() -> None:
    dataplane = plane()
    conn, wire = pooled(dataplane)
    client = Client()
    stream = ProxyStream(dataplane, client, head(), 8000)
    stream.start()
    stream.request_end()
    assert stream.state == SENT
    sent = wire.take()
    assert sent.startswith(b"GET /get HTTP/1.1\r\nhost: httpbin:8000\r\n")
    assert b"x-envoy-attempt-count: 1\r\n" in sent and b"x-forwarded-for: 10.0.0.7\r\n" in sent
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")
    assert client.calls == [
        ("head", 200, [b"x-envoy-upstream-service-time"], b"2"),
        ("data", b"ok"),
        ("end",),
        ("finished",),
    ]
    assert stream.state == DONE and stream.status == 200 and stream.sent == 2
    assert dataplane.pool.take(conn.endpoint) is conn  # answered whole: back in the pool
    assert stream.timer is None and stream.body is None  # no timeout, no shadow: nothing built


def test_a_request_no_route_matches_is_answered_locally() -> None:
    client = Client()
    stream = ProxyStream(plane(), client, head(authority=b"nowhere:1"), None)
    stream.start()
    assert client.calls[0][:2] == ("local", 404)
    assert stream.state == DONE and stream.flag == "NR"


def test_an_upstream_closing_before_the_head_gets_503_uc() -> None:
    dataplane = plane()
    conn, _ = pooled(dataplane)
    client = Client()
    stream = ProxyStream(dataplane, client, head(), 8000)
    stream.start()
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
    conn.connection_lost(None)  # a head gathered, never flushed: dropped, and a clean 503
    assert client.calls[-3:] == [
        ("discard",),
        ("local", 503, client.calls[-2][2]),
        ("finished",),
    ]
    assert stream.flag == "UC"


def test_writes_upstream_wait_for_the_clients_read_to_be_parsed() -> None:
    dataplane = plane()
    _, wire = pooled(dataplane)
    client = Client()
    client.holding = True
    stream = ProxyStream(dataplane, client, head(b"POST", content_length=2), 8000)
    stream.start()
    stream.request_data(b"ok")
    stream.request_end()
    assert wire.take() == b"" and client.held == [stream]
    stream.downstream_read_done()
    assert wire.take().endswith(b"content-length: 2\r\n\r\nok")


def test_a_client_gone_mid_body_drops_the_upstream_request() -> None:
    dataplane = plane()
    conn, _ = pooled(dataplane)
    stream = ProxyStream(dataplane, Client(), head(b"POST", content_length=9), 8000)
    stream.start()
    stream.request_data(b"abc")
    stream.downstream_failed(0, "DC")
    assert stream.flag == "DC" and conn.closed
    stream.downstream_failed(0, "DC")  # a second report changes nothing


def test_a_move_the_state_diagram_has_not_is_refused() -> None:
    stream = ProxyStream(plane(), Client(), head(authority=b"nowhere:1"), 8000)
    with pytest.raises(AssertionError, match="waiting -> sent"):
        stream._to(SENT)
    stream._to(ROUTING)
    stream._to(DONE)
    with pytest.raises(AssertionError, match="done -> routing"):
        stream._to(ROUTING)


def test_the_body_buffer_keeps_a_body_up_to_its_bound_and_says_once_it_went_past() -> None:
    body = BodyBuffer(5)
    assert not body.add(b"abc") and not body.add(b"de")
    assert body.replayable() and body.data() == b"abcde"
    assert body.add(b"f")  # past the bound: said once, so its owner counts it once
    assert not body.add(b"g")
    assert not body.replayable() and body.data() == b"" and body.size == 7
    body.end()
    assert body.ended


def test_a_body_past_the_buffer_is_counted() -> None:
    dataplane = plane()
    pooled(dataplane)
    stream = ProxyStream(dataplane, Client(), head(b"POST", content_length=10), 8000)
    stream.body = BodyBuffer(4)
    stream.start()
    stream.request_data(b"abcdef")
    stream.request_data(b"gh")
    assert dataplane.stats.requests["request_body_over_buffer"] == 1
