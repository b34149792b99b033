"""The upstream response codec in memory: bytes in, the events its sink receives out."""

from __future__ import annotations

from shadowmesh.http.ports import Stream
from shadowmesh.http.wire import Headers
from shadowmesh.routing.decision import Endpoint
from shadowmesh.upstream.connection import Pool, UpstreamConnection


class Sink(Stream):
    """Records what an UpstreamConnection tells the exchange (or shadow) it serves."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []
        self.heads: list[tuple[int, Headers]] = []
        self.body = b""

    def response_head(self, status: int, reason: bytes, headers: Headers, keep_alive: bool) -> None:
        self.heads.append((status, headers))
        self.events.append(("head", status, keep_alive))

    def response_data(self, chunk: bytes) -> None:
        self.body += chunk

    def response_end(self) -> None:
        self.events.append(("complete",))

    def upstream_failed(self, reason: str, protocol_error: bool = False) -> None:
        self.events.append(("failed", protocol_error))

    def upstream_writable(self, writable: bool) -> None:
        pass

    def tunnel_data(self, data: bytes) -> None:
        self.events.append(("tunnel", data))

    def upstream_read_done(self) -> None:
        pass


def connection() -> UpstreamConnection:
    return UpstreamConnection(Endpoint("127.0.0.1", 1))


def names(headers: Headers) -> list[bytes]:
    return [n for n, _ in headers]


CHUNKED_WITH_TRAILER = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-first: 1\r\n\r\n"
    b"3\r\nabc\r\n0\r\nset-cookie: session=X\r\n\r\n"
)
PLAIN = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-second: 2\r\n\r\nok"


def test_a_trailer_never_reaches_the_next_response_head() -> None:
    conn = connection()
    first, second = Sink(), Sink()
    conn.begin(first, head_only=False)
    conn.data_received(CHUNKED_WITH_TRAILER)
    assert first.events == [("head", 200, True), ("complete",)]
    assert b"set-cookie" not in names(first.heads[0][1])  # not merged into its own head either
    assert conn.trailers == [(b"set-cookie", b"session=X")]  # kept apart, as trailers
    conn.begin(second, head_only=False)
    conn.data_received(PLAIN)
    assert second.events == [("head", 200, True), ("complete",)]
    assert names(second.heads[0][1]) == [b"content-length", b"x-second"]
    assert conn.trailers == []  # the trailers went with their message


def test_per_message_state_is_reset_when_a_message_begins_mid_read() -> None:
    # The next response's head split across reads, its first bytes in the trailer's read.
    conn = connection()
    first, second = Sink(), Sink()
    conn.begin(first, head_only=False)
    conn.data_received(CHUNKED_WITH_TRAILER[:-7])
    conn.data_received(CHUNKED_WITH_TRAILER[-7:])
    conn.begin(second, head_only=False)
    conn.data_received(PLAIN[:20])
    conn.data_received(PLAIN[20:])
    assert names(second.heads[0][1]) == [b"content-length", b"x-second"]
    assert second.body == b"ok"


def test_interim_responses_leave_nothing_in_the_final_head() -> None:
    conn = connection()
    sink = Sink()
    conn.begin(sink, head_only=False)
    conn.data_received(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n" + PLAIN)
    assert sink.events == [("head", 200, True), ("complete",)]
    assert names(sink.heads[0][1]) == [b"content-length", b"x-second"]


def test_bytes_after_a_complete_response_in_the_same_read_close_the_connection() -> None:
    conn = connection()
    sink = Sink()
    conn.begin(sink, head_only=False)
    conn.data_received(PLAIN + b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
    assert sink.events == [("head", 200, True), ("complete",)]
    assert conn.closed  # an unasked-for response: the connection is never reused


def test_bytes_after_an_answer_to_head_close_the_connection() -> None:
    conn = connection()
    sink = Sink()
    conn.begin(sink, head_only=True)
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
    assert sink.events == [("head", 200, True), ("complete",)]
    assert conn.closed


def test_a_status_outside_100_to_599_is_a_protocol_error() -> None:
    for raw in (
        b"HTTP/1.1 099 Odd\r\n\r\nraw bytes",
        b"HTTP/1.1 600 Odd\r\ncontent-length: 0\r\n\r\n",
    ):
        conn = connection()
        sink = Sink()
        conn.begin(sink, head_only=False)
        conn.data_received(raw)
        assert sink.events == [("failed", True)] and sink.body == b""
        assert conn.closed


def test_a_101_to_a_request_without_upgrade_is_a_protocol_error() -> None:
    conn = connection()
    sink = Sink()
    conn.begin(sink, head_only=False)
    conn.data_received(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\nraw")
    assert sink.events == [("failed", True)]


def test_a_response_delimited_by_the_close_completes_at_a_clean_close_only() -> None:
    for exc, ending in ((None, ("complete",)), (ConnectionResetError(), ("failed", False))):
        conn = connection()
        sink = Sink()
        conn.begin(sink, head_only=False)
        conn.data_received(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of ")
        conn.data_received(b"it")
        conn.connection_lost(exc)
        assert sink.events == [("head", 200, False), ending]
        assert sink.body == b"all of it"


def test_a_pool_never_keeps_a_connection_in_the_middle_of_a_message() -> None:
    pool = Pool()
    conn = connection()
    sink = Sink()
    conn.begin(sink, head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
    conn.sink = None  # as if its owner let go without detaching
    pool.put(conn)
    assert conn.closed and pool.idle_count() == 0
    done = connection()
    done.begin(Sink(), head_only=False)
    done.data_received(PLAIN)
    pool.put(done)
    assert pool.idle_count() == 1
