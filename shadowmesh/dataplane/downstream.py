"""The HTTP/1 downstream codec: a client connection that parses requests with httptools and
answers them in order, one ``H1Message`` per request (its per-message state, and the
``DownstreamPort`` its stream writes the response through; see ``http.ports``).

Pipelined requests are parsed as they come but answered one at a time, in order: while one is
in flight the next waits with its body buffered, and reading from the socket is paused so a
client cannot make us hold more than one read's worth; within one read, parsing stops once
``MAX_PIPELINED`` requests wait, and the rest of the read is held unparsed until they drain.
A client that does not read its answers is not read either: past the transport's high-water
mark (``pause_writing``) no more of its requests is read, parsed or started, until its unsent
answers fall under the low mark.

llhttp is lenient in places a proxy must not be (see the issue on hardening): checks it lacks
are made here, and a request that fails them never reaches an upstream.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
import time
from collections import deque
from typing import TYPE_CHECKING, Final, cast

import httptools

from shadowmesh.dataplane.tls import requested_server_name
from shadowmesh.http import response as resp
from shadowmesh.http.ports import DownstreamPort, Stream, StreamOpener, UpstreamPort
from shadowmesh.http.request import (
    RequestHead,
    normalize_path,
    valid_authority,
    via_names,
)
from shadowmesh.http.wire import Header, Headers
from shadowmesh.proxy.stream import ProxyOpener
from shadowmesh.routing.decision import NO_PEER, Peer, socket_address
from shadowmesh.upstream.headlimit import MAX_HEAD_BYTES, MAX_HEADERS, HeadLimit

if TYPE_CHECKING:
    from shadowmesh.dataplane.server import DataPlane

MAX_TARGET_BYTES = 8 * 1024
# Parsed requests waiting behind the one in flight, past which the rest of a read is held
# unparsed (aiohttp's bound is 32 too). A read is parsed in slices of ``FEED_SLICE`` bytes
# between checks (a body's known length in one), so at most a slice's worth more are parsed:
# a pipelining client pins a bounded number of requests whatever it sends in one go.
MAX_PIPELINED = 32
FEED_SLICE = 2048


# While draining, how long a connection must have been idle before it is closed: a keep-alive
# client that got its response just before the drain began has that long to send its next
# request, answered with Connection: close. A connection idle longer is closed at once.
DRAIN_IDLE = 0.5


def unread_bytes(transport: asyncio.Transport | None) -> int:
    """Bytes the kernel holds for us on this connection, not yet read (-1: cannot tell)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return -1
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return -1
    count: int = struct.unpack("i", raw)[0]
    return count


class H1Message(DownstreamPort):
    """One request of an HTTP/1 connection: what was parsed of it, and the writer of its
    response (framing, Connection, HTTP/1.0's rules), which its stream drives."""

    # No __slots__: most of this state keeps its class default (as ``ProxyStream``'s).
    received = 0  # body bytes parsed
    request_complete = False
    answered = False  # the stream is done with it (answered, or given up)
    chunked_out = False

    def __init__(self, conn: ClientConnection, head: RequestHead) -> None:
        super().__init__(conn.peer_ip, conn.peer)
        self.conn = conn
        self.head = head
        self.stream: Stream = _NO_STREAM  # the stream the opener made for it, set at once
        self.out: list[bytes] = []  # response bytes gathered during one upstream read

    def send_head(
        self,
        status: int,
        reason: bytes,
        headers: Headers,
        length: bytes | None,
        coding: bytes | None,
    ) -> bool:
        conn, head = self.conn, self.head
        if status == 101:
            self.out = [resp.serialize_response(101, reason, headers, None, b"upgrade")]
            return True
        framing: tuple[bytes, bytes] | None = None
        if status in (204, 304):
            # No body, and no Content-Length (RFC 9110 8.6 forbids it on a 204; nginx and
            # Envoy drop it on both).
            pass
        elif head.method == b"HEAD":
            if length is not None:
                framing = (b"content-length", length)
        elif length is not None and coding is None:
            framing = (b"content-length", length)
        elif head.version == "1.1":
            # Chunked, delimited by the close, or coded (gzip, chunked): re-chunked, codings
            # other than chunked kept in front of it.
            framing = (b"transfer-encoding", coding + b", chunked" if coding else b"chunked")
            self.chunked_out = True
        elif coding:
            # RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client (the stream refuses).
            return False
        else:
            # HTTP/1.0 client and a body of unknown length: the end of it is the close.
            conn.keep_alive = False
        connection = None
        if conn.last_answer(self):
            connection = b"close"
        elif head.version == "1.0":
            connection = b"keep-alive"
        self.out = [resp.serialize_response(status, reason, headers, framing, connection)]
        return True

    def send_data(self, data: bytes) -> None:
        self.out.append(resp.chunk(data) if self.chunked_out else data)

    def send_trailers(self, trailers: Headers) -> None:
        pass  # HTTP/1 trailers are dropped, as Envoy drops them unless told otherwise

    def send_end(self) -> None:
        if self.chunked_out:
            self.out.append(resp.LAST_CHUNK)
        self.flush()

    def flush(self) -> None:
        conn = self.conn
        conn.progress += 1  # an upstream read: the stream is not idle
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            self.out = []
            self.committed = True
            conn.write(data)

    def discard(self) -> None:
        self.out = []

    def send_local(
        self, status: int, body: bytes, location: bytes, headers: tuple[Header, ...] = ()
    ) -> None:
        conn, head = self.conn, self.head
        if not self.request_complete and head.has_body and self.received == 0:
            # The client may be waiting for 100 Continue and never send the body.
            conn.keep_alive = False
        self.committed = True
        keep_alive = not conn.last_answer(self)
        head_only = head.method == b"HEAD"
        conn.write(resp.local_reply(status, body, keep_alive, head_only, location, headers))

    def send_continue(self) -> None:
        if self.head.version == "1.1":
            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def reset(self) -> None:
        self.conn.close()

    def last(self) -> None:
        self.conn.keep_alive = False

    def finished(self) -> None:
        self.answered = True
        if self.request_complete or not self.conn.keep_alive:
            self.conn.exchange_finished(self)

    def pause(self, reason: str) -> None:
        self.conn.pause(reason)

    def resume(self, reason: str) -> None:
        self.conn.resume(reason)

    def hold(self, stream: Stream) -> bool:
        conn = self.conn
        if not conn.parsing_read:
            return False
        conn.flush_later.append(stream)
        return True

    def start_tunnel(self, upstream: UpstreamPort) -> None:
        self.conn.start_tunnel(upstream)

    def send_raw(self, data: bytes) -> None:
        self.conn.progress += 1
        self.conn.write(data)

    def addresses(self) -> tuple[str, str, str]:
        return self.conn.addresses()


_NO_STREAM: Final = Stream()


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientConnection(asyncio.Protocol):
    def __init__(
        self, plane: DataPlane, listener_port: int | None, opener: StreamOpener | None = None
    ) -> None:
        self.plane = plane
        self.listener_port = listener_port
        # Makes each request's stream (a test's opener records what the codec delivers).
        self.opener = opener if opener is not None else ProxyOpener(plane, listener_port)
        self.scheme = "http"  # "https" on an ingress port that terminates TLS
        self.transport: asyncio.Transport | None = None
        self.peer_ip = b"127.0.0.1"
        self.peer = NO_PEER  # for consistent hashing: made once the address is known
        self.parser = httptools.HttpRequestParser(self)
        self.head_limit = HeadLimit()  # holds MAX_HEAD_BYTES as the bytes of a head arrive
        self.keep_alive = True
        self.closing = False
        self.active: H1Message | None = None
        self.parsing: H1Message | None = None
        self.waiting: deque[H1Message] = deque()
        self._paused: set[str] = set()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        # Since when this connection has waited for a request (idle) or for the rest of a head
        # (``in_head``); the data plane's sweep closes those past their timeout.
        self.since = 0.0
        self.in_head = False
        # An Upgrade request's bytes after its head wait here for the upstream's 101; then
        # ``tunnel`` carries everything raw.
        self.upgrade_rest = b""
        self.tunnel: UpstreamPort | None = None
        # While one read is parsed, upstream writes wait in the streams on ``flush_later``.
        self.parsing_read = False
        self.flush_later: list[Stream] = []
        self.refusal = b""  # a 400 owed once the requests before the bad one are answered
        self.line_read = False  # an HTTP/0.9 request line ended (llhttp does not say it did)
        self.valid_host = b""  # the last Host this connection sent that was found valid
        self._fragment = b""  # the part of the target the current read held
        self._addresses: tuple[str, str, str] | None = None
        self.held = b""  # the rest of a read, not parsed while MAX_PIPELINED requests wait
        self.feed_soon = False  # held bytes will be parsed on the next loop turn
        self.write_paused = False  # the client is not reading its answers: nothing new starts
        self.advancing = False  # the loop of ``advance`` runs: a nested call leaves it to it
        # Bytes moved for this connection's streams, either way: a counter, bumped per read,
        # so the hot path reads no clock; the sweep notes when it last changed (``active_at``).
        self.progress = 0
        self.progress_seen = 0
        self.active_at = 0.0
        # The data plane is shutting down: the last response says Connection: close, and an idle
        # connection is closed (``drain``).
        self.draining = plane.draining

    # --- asyncio ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.since = self.plane.clock()
        if not self.plane.connection_opened(self):
            self.closing = True
            self.transport.close()
            return
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = str(peer[0]).encode()
            self.peer = Peer(str(peer[0]), self.addresses)

    def addresses(self) -> tuple[str, str, str]:
        """(local, remote address, SNI name) of this connection as the access log writes them,
        looked up once per connection and only when a log format prints them."""
        if self._addresses is None:
            transport = self.transport
            if transport is None:
                return ("", "", "")
            local = socket_address(transport.get_extra_info("sockname"))
            remote = socket_address(transport.get_extra_info("peername"))
            sni = requested_server_name(transport.get_extra_info("ssl_object"))
            self._addresses = (local, remote, sni)
        return self._addresses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        # The exchange being parsed may already be answered (and no longer active) while its
        # body still streams to a shadow: it is aborted too.
        for message in {self.active, self.parsing, *self.waiting}:
            if message is not None:
                message.stream.downstream_failed(0, "DC")
                message.stream = _NO_STREAM
        self.active = self.parsing = None
        self.waiting.clear()
        self.held = b""
        self.plane.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.refusal:
            return  # after a refused request, nothing more on this connection is read
        self.progress += 1
        if self.tunnel is not None:
            self.received_in_tunnel(data)
            return
        if self.upgrade_rest or (self.active is not None and self.active.head.upgrade):
            self.upgrade_rest += data  # bytes for the tunnel, before the upstream's answer
            self.pause("upgrade")
            return
        if self.held:
            self.held += data  # after what is held, in order; reading is paused already
            return
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """Parse one read; past MAX_PIPELINED waiting requests, hold the rest of it unparsed."""
        self.parsing_read = True
        self._fragment = b""
        start = 0  # where the slice being parsed begins in ``data``
        try:
            if len(data) <= FEED_SLICE:
                # Nearly every read: one request head, or less.
                if not self.head_limit.feed(self.parser, data):
                    raise BadRequest(431, "request header fields too large")
            else:
                size = len(data)
                while start < size:
                    end = start + self.slice_size(size - start)
                    piece = data[start:end] if start or end < size else data
                    if not self.head_limit.feed(self.parser, piece):
                        raise BadRequest(431, "request header fields too large")
                    start = end
                    if start < size and len(self.waiting) >= MAX_PIPELINED:
                        self.held = data[start:]
                        self.pause("held")
                        data = data[:start]
                        break
            if self.in_head and self._url and self.parser.get_http_version()[0] == "0":
                self.refuse_http09(data)
            self.flush_upstream_writes()
        # Not ``exc``: mypyc gives all the clauses one variable, typed by the first (mypyc#620).
        except BadRequest as bad:
            self.reject(bad.status, bad.message)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops at the end of an Upgrade request's head (or at a CONNECT's). The head
            # is good: what the read held for upstreams goes now (on a pooled connection, the
            # Upgrade's own head is among it).
            self.flush_upstream_writes()
            rest = data[start + exc.args[0] :] if exc.args else b""
            if self.tunnel is not None:
                self.received_in_tunnel(rest)
            elif rest:
                self.upgrade_rest += rest
                self.pause("upgrade")
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__ or exc.__cause__
            if isinstance(cause, BadRequest):
                self.reject(cause.status, cause.message)
            else:
                raise
        except httptools.HttpParserError as exc:
            self.reject(400, f"malformed request: {exc}")
        finally:
            self.parsing_read = False

    def slice_size(self, left: int) -> int:
        """How much of a long read to parse before looking at the queue again."""
        message = self.parsing
        if message is None:
            return FEED_SLICE  # between messages or in a head
        length = message.head.content_length
        if length is None:
            return left  # a chunked body: its end is not known before it is parsed
        # The rest of a body in one go (it makes no request wait), then slices again.
        return max(1, min(left, length - message.received))

    def feed_held(self) -> None:
        """The queue drained: parse what was held of the last read."""
        self.feed_soon = False
        if self.closing or self.refusal or not self.held:
            return
        data, self.held = self.held, b""
        self.feed(data)
        if not self.held:
            self.resume("held")

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading (and parsing) its requests, and
        # start no new one, or unsent answers would pile up without bound.
        self.write_paused = True
        self.pause("writing")
        if self.active is not None:
            self.active.stream.downstream_writable(False)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.progress += 1  # the client read some of its answers
        self.resume("writing")
        if self.active is not None:
            self.active.stream.downstream_writable(True)
        elif not self.closing:
            self.advance()

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.head_limit.begin()
        self._url = b""
        self.line_read = False
        self._headers = []
        self._head_bytes = 0
        self.in_head = True
        self.since = self.plane.clock()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._fragment = url
        if len(self._url) > MAX_TARGET_BYTES:
            raise BadRequest(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES or len(self._headers) >= MAX_HEADERS:
            raise BadRequest(431, "request header fields too large")
        if b"_" in name and not self.plane.limits.allow_underscores:
            self.plane.stats.requests["dropped_headers_with_underscores"] += 1
            return
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head_limit.end()
        self.in_head = False
        head = self.build_head()
        self._url = b""  # what a refusal before the next head logs is that one's, not this one's
        # Trailers of a chunked body come through on_header too: they land in a list of their
        # own and are dropped (as Envoy does for HTTP/1 unless told otherwise), never in the head.
        self._headers = []
        message = H1Message(self, head)
        message.stream = self.opener.open(message, head)
        self.parsing = message
        if self.active is None and not self.waiting and not self.write_paused:
            self.active = message
            message.stream.start()
        else:
            self.waiting.append(message)
            self.pause("pipeline")

    def on_body(self, body: bytes) -> None:
        self.head_limit.body()
        message = self.parsing
        if message is not None:
            message.received += len(body)
            message.stream.request_data(body)

    def on_chunk_header(self) -> None:
        self.head_limit.begin()  # the last chunk's is followed by the trailer section

    def on_chunk_complete(self) -> None:
        self.head_limit.end()

    def on_message_complete(self) -> None:
        self.head_limit.end()
        message, self.parsing = self.parsing, None
        if message is not None:
            message.request_complete = True
            message.stream.request_end()
            if message.answered:
                # A local reply was written before the request body ended: now the next may go.
                self.exchange_finished(message)

    # --- request head -------------------------------------------------------------------

    def refuse_http09(self, data: bytes) -> None:
        """An HTTP/0.9 request (``GET /`` and a line end, no version): 400 at once.

        llhttp takes it for a head whose headers are still to come, and would wait for them
        until the head timeout; a 0.9 client waits for its answer meanwhile. llhttp reports
        version 0.9 once a byte follows the line end, 0.0 until then: the line ended if this
        read holds a line end after the target's last part.
        """
        if self.parser.get_http_version() != "0.9":
            fragment = self._fragment
            rest = data[data.rfind(fragment) + len(fragment) :] if fragment else data
            if b"\n" not in rest:
                return  # the request line is still coming
        self.line_read = True
        raise BadRequest(400, "HTTP/0.9 requests are not supported")

    def build_head(self) -> RequestHead:
        parser = self.parser
        version = parser.get_http_version()
        if version == "0.9":
            raise BadRequest(400, "HTTP/0.9 requests are not supported")
        if version not in ("1.1", "1.0"):
            raise BadRequest(505, "HTTP version not supported")
        method = parser.get_method()
        headers = self._headers
        host = None
        content_length: int | None = None
        chunked = False
        looped = False
        for name, value in headers:
            if name == b"host":
                if host is not None:
                    raise BadRequest(400, "multiple Host headers")
                host = value
            elif name == b"content-length":
                if content_length is not None or not value.strip().isdigit():
                    raise BadRequest(400, "invalid or repeated Content-Length")
                content_length = int(value)
            elif name == b"transfer-encoding":
                if value.strip().lower() != b"chunked" or chunked:
                    raise BadRequest(400, "unsupported Transfer-Encoding")
                chunked = True
            elif name == b"via":
                looped = looped or via_names(value, self.plane.pseudonym)
        if chunked and content_length is not None:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        if chunked and version == "1.0":
            # RFC 9112 6.1: chunked is an HTTP/1.1 coding; nginx and Envoy refuse it on 1.0.
            raise BadRequest(400, "Transfer-Encoding on an HTTP/1.0 request")
        target = self._url
        path = target
        authority = host or b""
        scheme = self.scheme
        if target[:7].lower() == b"http://":
            rest = target[7:]
            slash = rest.find(b"/")
            authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
            query = path.find(b"?")
            if slash < 0 and query >= 0:
                authority, path = rest[: rest.find(b"?")], b"/" + rest[rest.find(b"?") :]
        elif not target.startswith(b"/") and not (method == b"OPTIONS" and target == b"*"):
            raise BadRequest(400, "request target must be a path or an http:// URL")
        if authority and authority != self.valid_host:
            # Checked once per connection for the Host it keeps sending, not per request.
            if not valid_authority(authority):
                raise BadRequest(400, "invalid Host")
            self.valid_host = authority
        if path[:1] == b"/":
            path = normalize_path(path)
        if not authority:
            if version == "1.1":
                raise BadRequest(400, "missing Host header")
        upgrade = parser.should_upgrade()
        keep_alive = parser.should_keep_alive() and not upgrade
        return RequestHead(
            method=method,
            target=target,
            version=version,
            headers=headers,
            authority=authority,
            path=path,
            scheme=scheme,
            content_length=content_length,
            chunked=chunked,
            keep_alive=keep_alive,
            upgrade=upgrade,
            looped=looped,
        )

    # --- used by its messages ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def start_tunnel(self, upstream: UpstreamPort) -> None:
        self.tunnel = upstream
        rest, self.upgrade_rest = self.upgrade_rest, b""
        if rest:
            upstream.send_data(rest)
        self.resume("upgrade")

    def received_in_tunnel(self, data: bytes) -> None:
        if self.active is not None:
            self.active.stream.request_data(data)  # counted, and on to the tunnel
        elif self.tunnel is not None:
            self.tunnel.send_data(data)

    def pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def last_answer(self, exchange: H1Message) -> bool:
        """Whether ``exchange``'s response is this connection's last: then it says
        Connection: close and the connection closes after it. While draining, that is the
        response of a whole request with nothing more received behind it (a pipelined request
        or the start of one is answered first)."""
        if (
            self.draining
            and exchange.request_complete
            and not self.waiting
            and not self.in_head
            and not self.held
            and (self.parsing is None or self.parsing is exchange)
        ):
            self.keep_alive = False
        return not self.keep_alive or not exchange.head.keep_alive

    def exchange_finished(self, exchange: H1Message) -> None:
        if exchange is not self.active:
            return
        self.active = None
        if exchange.request_complete:
            # Done with both ways: the message lets go of its stream, so the two are freed by
            # reference counting at once. Left as a cycle (stream.down <-> message.stream), ten
            # objects a request waited for the cycle collector, whose passes cost pass-through
            # about a fifth of its requests a second (issue 10's bench).
            exchange.stream = _NO_STREAM
        self.since = self.plane.clock()
        self.progress += 1  # the next waiting stream starts now, not when the last one did
        if not self.keep_alive or not exchange.head.keep_alive:
            self.close()
            return
        self.advance()

    def advance(self) -> None:
        """Start the waiting exchanges in order, while the client reads its answers.

        A loop, not a recursion: an exchange answered at once (a local 404) finishes inside its
        own ``start``, and its nested call of this method returns to this loop.
        """
        if self.advancing:
            return
        self.advancing = True
        try:
            while self.active is None and not self.closing and not self.write_paused:
                if not self.waiting:
                    if self.refusal:
                        self.write(self.refusal)
                        self.close()
                    else:
                        self.resume("pipeline")
                    return
                exchange = self.active = self.waiting.popleft()
                if not self.waiting:
                    self.resume("pipeline")
                if self.held and not self.feed_soon and len(self.waiting) <= MAX_PIPELINED // 2:
                    # Parsed on the next turn: never inside a parser callback or this loop.
                    self.feed_soon = True
                    asyncio.get_running_loop().call_soon(self.feed_held)
                exchange.stream.start()
        finally:
            self.advancing = False

    def expire(
        self, now: float, idle_timeout: float, head_timeout: float, stream_idle_timeout: float
    ) -> None:
        """Called by the data plane's sweep: close a connection that waited too long, end a
        stream that went silent both ways."""
        if self.closing:
            return
        if self.progress != self.progress_seen:
            self.progress_seen = self.progress
            self.active_at = now
        if self.active is not None or self.parsing is not None or self.waiting:
            # Tunnels too, as Envoy's and nginx's (proxy_read_timeout) do for a WebSocket.
            if now - self.active_at > stream_idle_timeout:
                self.stream_idle()
            return
        if self.in_head:
            if now - self.since > head_timeout:
                # Slowloris: a head trickling in. nginx answers 408 and closes.
                self.plane.stats.requests["header_timeout"] += 1
                self.reject(408, "request header read timeout")
        elif now - self.since > idle_timeout:
            self.close()

    def stream_idle(self) -> None:
        """Nothing moved either way for the stream idle timeout (Envoy's, flag SI)."""
        self.plane.stats.requests["downstream_rq_idle_timeout"] += 1
        message = self.active
        if message is not None and not message.answered:
            # A client that reads nothing cannot be answered: it is reset, as after a head.
            # After a 504 the connection goes on with the requests pipelined behind.
            message.stream.stream_idle(self.write_paused)
            return
        # Answered, but its body stalled (the next request would start in it), or answers to a
        # client that does not read them: only closing ends it.
        for waiting in self.waiting:
            waiting.stream.downstream_failed(0, "SI")
        self.keep_alive = False
        self.close()

    def drain(self, now: float) -> None:
        """Called by the data plane while it shuts down: close this connection if it is idle.

        Idle: no request in progress or begun, idle for ``DRAIN_IDLE`` (so a keep-alive client
        that got a response as the drain began can send its next request and have it answered
        with Connection: close), and no byte waiting unread in the socket. A request its client
        writes at the very moment of the close is lost to a close that reads as an idle timeout;
        clients resend those on a new connection (RFC 9112 section 9.3.1).
        """
        self.draining = True
        if (
            self.closing
            or self.active is not None
            or self.parsing is not None
            or self.in_head
            or self.waiting
            or self.held
            or self.tunnel is not None
            or self.upgrade_rest
            or now - self.since < DRAIN_IDLE
            or unread_bytes(self.transport) > 0
        ):
            return
        self.close()

    def flush_upstream_writes(self) -> None:
        """The read parsed (or its bad request was dropped): send what it held for upstreams."""
        self.parsing_read = False
        for stream in self.flush_later:
            stream.downstream_read_done()
        self.flush_later.clear()

    def reject(self, status: int, message: str) -> None:
        """A request we will not forward: answer it, and close, since framing is in doubt.

        Nothing of the read that held it reaches an upstream (see ``ProxyStream.guard``). If
        requests before it are still being answered, the refusal waits for them, in order.
        """
        self.plane.stats.requests["rejected"] += 1
        reply = resp.local_reply(status, message.encode(), keep_alive=False)
        bad = self.parsing
        self.parsing = None
        if bad is not None:
            if bad in self.waiting:
                self.waiting.remove(bad)
            bad.stream.downstream_failed(status, "DPE")  # drops what it held upstream, logs it
        else:
            self.log_refused(status)
        # Good requests earlier in the same read still go: they will be answered first.
        self.flush_upstream_writes()
        if bad is not None and bad is self.active:
            # The body of the request in flight is broken: it cannot be answered honestly.
            if not bad.committed:
                self.write(reply)
            self.close()
        elif self.active is not None:
            self.refusal = reply
            self.pause("refused")
        else:
            self.write(reply)
            self.close()

    def log_refused(self, status: int) -> None:
        """Log a request refused before its head was whole, with what was read of it (Envoy's
        ``DPE``): the method once its target began, the target once the request line ended."""
        plane = self.plane
        plane.stats.count_request("", status, "DPE")
        if not plane.access_log.enabled:
            return
        parser = self.parser
        version = "0.9" if self.line_read else parser.get_http_version()
        line_read = version != "0.0"
        headers = self._headers
        now = plane.clock()
        local, remote, sni = self.addresses() if plane.access_log.istio else ("", "", "")
        plane.access_log.request(
            time.time() - (now - self.since),
            parser.get_method() if self._url else b"",
            self._url if line_read else b"",
            version if line_read else "",
            status,
            "DPE",
            0,
            0,
            b"",
            next((v for n, v in headers if n == b"user-agent"), b""),
            next((v for n, v in headers if n == b"x-request-id"), b""),
            next((v for n, v in headers if n == b"host"), b""),
            "",
            "",
            False,
            -1,
            "",
            local,
            remote,
            "",
            sni,
        )

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.transport is not None:
            self.transport.close()
