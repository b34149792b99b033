"""The HTTP/1.1 upstream codec: one keep-alive connection to an upstream, and the pool that
keeps them per endpoint.

The connection is the ``UpstreamPort`` of the request it serves (``http.ports``): it writes the
request from the stream's calls (``send_head``, ``send_data``, ``send_end``), parses the
response with httptools (llhttp) and hands each event to that request's ``Stream``; between
requests it sits idle in the pool. Its per-message state (the response's head, trailers and
framing; the request's chunking) is reset at each message. Whoever owns the connection decides
whether it can be reused; a connection the upstream closed, or one whose response was not read
to the end, never goes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools

from shadowmesh.http.ports import NO_LENGTH, STREAMED, Stream, UpstreamPort
from shadowmesh.http.wire import CHUNKED, Headers, content_length, serialize_request
from shadowmesh.routing.decision import Endpoint, socket_address
from shadowmesh.upstream.headlimit import MAX_HEADERS, HeadLimit


def unframed(headers: Headers) -> bool:
    """Neither Content-Length nor a final chunked coding: the body ends at the close."""
    for name, value in headers:
        if name == b"content-length":
            return False
        if name == b"transfer-encoding" and value.rsplit(b",", 1)[-1].strip().lower() == b"chunked":
            return False
    return True


class UpstreamConnection(UpstreamPort):
    __slots__ = (
        "endpoint",
        "transport",
        "sink",
        "_parser",
        "_status_reason",
        "_headers",
        "trailers",
        "_in_head",
        "_in_message",
        "_until_close",
        "head_limit",
        "_head_only",
        "idle_lost",
        "paused",
        "_chunked",
        "_corked",
        "upgrade",
        "tunnel",
        "_local",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.sink: Stream | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._status_reason = b""
        self._headers: Headers = []
        # A chunked response's trailer section: never part of any head (Envoy drops HTTP/1
        # trailers by default; so do we), and gone with the message it ended.
        self.trailers: Headers = []
        self._in_head = False  # between message begin and the end of its head
        self._in_message = False  # between message begin and its end: never pooled then
        self._until_close = False  # the response in flight is delimited by the close
        # A response head past 60 KiB or 100 headers is refused (502 UPE, or a shadow's
        # failure), as Envoy refuses one over its limits, before more of it is buffered.
        self.head_limit = HeadLimit()
        self._head_only = False
        self.idle_lost: Callable[[UpstreamConnection], None] | None = None
        self.paused = False
        self._chunked = False  # the request in flight is sent chunked
        self._corked: list[bytes] | None = None  # writes held (``cork``)
        self.upgrade = False  # the request in flight asked for an Upgrade
        self.tunnel = False  # the upstream said 101: bytes now flow raw both ways
        self._local = ""

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def local_address(self) -> str:
        """This connection's own address, ``127.0.0.1:54321`` (Envoy's UPSTREAM_LOCAL_ADDRESS),
        looked up once and only when a log format prints it."""
        if not self._local and self.transport is not None:
            self._local = socket_address(self.transport.get_extra_info("sockname"))
        return self._local

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself (a plain class: no asyncio.Protocol default)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink, self.sink = self.sink, None
        if sink is not None:
            if self._until_close and exc is None:
                # RFC 9112 6.3: a response with neither length nor chunked ends at the close.
                self._in_message = False
                sink.response_end()
            else:
                sink.upstream_failed("connection termination")
        elif self.idle_lost is not None:
            self.idle_lost(self)

    def data_received(self, data: bytes) -> None:
        if self.sink is None:
            # Bytes from an idle connection: the upstream broke framing. Never reuse it.
            self.close()
            return
        sink = self.sink
        if self.tunnel:
            sink.tunnel_data(data)
            return
        try:
            if not self.head_limit.feed(self._parser, data):
                self._fail("response head too large", protocol_error=True)
                return
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops at the end of a 101's head: what follows is the tunnel's.
            sink.upstream_read_done()
            rest = data[exc.args[0] :] if exc.args else b""
            if self.tunnel and rest:
                sink.tunnel_data(rest)
            return
        except httptools.HttpParserError as exc:
            self._fail(f"protocol error: {exc}", protocol_error=True)
            return
        sink.upstream_read_done()

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_writable(True)

    # httptools callbacks

    def on_message_begin(self) -> None:
        # All state of one response is reset here, at its first byte: nothing of a message
        # (its trailers above all) can reach the next one on this connection, which may serve
        # another client.
        if self.sink is None:
            # A response with no request in flight, in the same read as the last one: the
            # upstream broke framing. Stop parsing; the connection is never reused.
            raise httptools.HttpParserError("response without a request")
        self._status_reason = b""
        self._headers = []
        self.trailers = []
        self._in_head = True
        self._in_message = True
        self._until_close = False
        self.head_limit.begin()

    def on_status(self, reason: bytes) -> None:
        self._status_reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp reports a chunked body's trailers here too, after on_headers_complete.
        fields = self._headers if self._in_head else self.trailers
        fields.append((name.lower(), value))
        if len(fields) > MAX_HEADERS:
            raise httptools.HttpParserError("too many response headers")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.head_limit.end()
        status = self._parser.get_status_code()
        if status < 100 or status > 599:
            # RFC 9110 15: "values outside the range 100..599 are invalid". llhttp takes any
            # three digits, and would read a status below 100 as interim, then relay the rest.
            raise httptools.HttpParserError("invalid status code")
        if status == 101 and not self.upgrade:
            raise httptools.HttpParserError("101 to a request that asked for no upgrade")
        if status == 101 and self.sink is not None:
            headers, self._headers = self._headers, []
            reason, self._status_reason = self._status_reason, b""
            self.tunnel = True
            self.sink.response_head(status, reason, headers, False)
            return
        if status < 200:
            # Interim responses (100 Continue, 103) are not relayed: the proxy answers
            # Expect itself.
            self._headers = []
            self._status_reason = b""
            return
        headers, self._headers = self._headers, []
        reason, self._status_reason = self._status_reason, b""
        keep_alive = self._parser.should_keep_alive()
        self._until_close = not self._head_only and status not in (204, 304) and unframed(headers)
        if self.sink is not None:
            self.sink.response_head(status, reason, headers, keep_alive)
        if self._head_only and self.sink is not None:
            # llhttp cannot be told a response answers HEAD, so it would wait for the body its
            # Content-Length announces. End the message here and start a fresh parser.
            self._parser = httptools.HttpResponseParser(self)
            self._in_message = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        self.head_limit.body()
        if self.sink is None:
            # Body with no request in flight: the rest of a read after a HEAD's answer (its
            # old parser still counts the announced length) or after the sink let go.
            raise httptools.HttpParserError("response bytes without a request")
        self.sink.response_data(body)

    def on_chunk_header(self) -> None:
        self.head_limit.begin()  # the last chunk's is followed by the trailer section

    def on_chunk_complete(self) -> None:
        self.head_limit.end()

    def on_message_complete(self) -> None:
        self.head_limit.end()
        self._in_message = False
        if self.sink is not None and self._parser.get_status_code() >= 200:
            if self.trailers:
                self.sink.response_trailers(self.trailers)
            self._finish()

    # used by the owner

    def begin(self, sink: Stream, head_only: bool, upgrade: bool = False) -> None:
        self.sink = sink
        self._head_only = head_only
        self.upgrade = upgrade
        self.requests += 1

    def send_head(
        self,
        stream: Stream,
        method: bytes,
        path: bytes,
        authority: bytes,
        lines: bytes,
        length: int,
        upgrade: bool,
    ) -> None:
        self.begin(stream, method == b"HEAD", upgrade)
        self._chunked = length == STREAMED
        if length == NO_LENGTH:
            framing = b""
        elif self._chunked:
            framing = CHUNKED
        else:
            framing = content_length(length)
        self.write(serialize_request(method, path, authority, lines, framing))

    def send_data(self, data: bytes) -> None:
        if self.tunnel or not self._chunked:
            self.write(data)
        elif data:
            self.write(b"%x\r\n%s\r\n" % (len(data), data))

    def send_trailers(self, trailers: Headers) -> None:
        if not self._chunked:
            return  # only a chunked body carries trailers in HTTP/1
        self._chunked = False  # the last chunk is written here, not by ``send_end``
        lines = b"".join([b"%s: %s\r\n" % pair for pair in trailers])
        self.write(b"0\r\n" + lines + b"\r\n")

    def send_end(self) -> None:
        if self._chunked:
            self._chunked = False
            self.write(b"0\r\n\r\n")

    def reset(self) -> None:
        self._corked = None
        self.detach()

    def cork(self) -> None:
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        data, self._corked = self._corked, None
        if data:
            self.write(data[0] if len(data) == 1 else b"".join(data))

    def at_boundary(self) -> bool:
        """Between two messages, and served by no one: the only state a pool may keep."""
        return not self._in_message and self.sink is None and not self.tunnel and not self.closed

    def write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        elif self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
            self.paused = True

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self.paused = False

    def detach(self) -> None:
        """The owner is done with this connection and will not read the rest of a response."""
        self.sink = None
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def _finish(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_end()

    def _fail(self, reason: str, protocol_error: bool = False) -> None:
        sink, self.sink = self.sink, None
        self.close()
        if sink is not None:
            sink.upstream_failed(reason, protocol_error)


class Pool:
    """Idle keep-alive connections per endpoint. One pool for primaries, another for shadows,
    so a shadow can never take or hold a connection the live traffic needs.

    Up to 1,024 idle per endpoint (Envoy's default circuit breaker allows as many connections):
    with 256, 1,000 busy clients made three requests in four open a new upstream connection,
    and the proxy served 2.5x fewer requests a second (``python -m bench --scenarios c1000``).
    """

    def __init__(self, connect_timeout: float = 10.0, max_idle_per_endpoint: int = 1024) -> None:
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle_per_endpoint
        self._idle: dict[Endpoint, list[UpstreamConnection]] = {}

    def take(self, endpoint: Endpoint) -> UpstreamConnection | None:
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.idle_lost = None
                return conn
        return None

    async def connect(self, endpoint: Endpoint, authority: bytes = b"") -> UpstreamConnection:
        """A new connection; raises OSError (refused, unreachable) or TimeoutError.
        ``authority``: the request's, for a cluster pool's TLS (``upstream.clusterpool``)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            # A plain class with asyncio.Protocol's methods (its one base is the port).
            _, conn = await loop.create_connection(
                lambda: cast(asyncio.Protocol, UpstreamConnection(endpoint)),
                endpoint.address,
                endpoint.port,
            )
        return cast(UpstreamConnection, conn)

    def put(self, conn: UpstreamConnection) -> None:
        if not conn.at_boundary():
            # In the middle of a message, its rest would be read as the next one's answer.
            conn.close()
            return
        idle = self._idle.setdefault(conn.endpoint, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        # Flow control may have paused it for a slow client; an idle connection must read,
        # or it would neither notice the upstream closing nor serve the next request.
        conn.resume_reading()
        conn.idle_lost = self._forget
        idle.append(conn)

    def _forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.idle_lost = None
                conn.close()
        self._idle.clear()
