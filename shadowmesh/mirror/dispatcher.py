"""The shadow dispatcher: copies of live requests, sent fire-and-forget, bounded, counted.

Rules this module owns, so the shadow can never affect the live request:

1. A shadow is buffered while the primary's body streams, and sent once that body is complete
   (Envoy's behaviour before 1.33). The body is the request's one ``http.body.BodyBuffer``,
   shared with every copy (and the primary's retries); each copy still counts its bytes
   against the per-copy and total bounds, as if it held its own: the bounds mean what they
   did. The primary is never paused for the shadow: there is no
   back-pressure path from here to the client.
2. Shadows have their own connection pool and their own timeout.
3. Shadows in flight and shadow body bytes held are bounded. Past a bound, the shadow is
   dropped and the drop counted by reason; the primary carries on unaware.
4. The response is read to the end (so the connection can be reused) and thrown away.

A copy is sent by callbacks, like the primary (the copy is its connection's response sink), not
by a task per copy: a task, its coroutine, a timeout context and a future cost more than the
rest of the copy together. Timeouts come from one sweep over the copies in flight (in the order
they were sent, so it stops at the first that still has time), not from a timer per copy.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable

from shadowmesh.http.body import BodyBuffer
from shadowmesh.http.ports import NO_LENGTH, STREAMED, Stream
from shadowmesh.http.wire import IDEMPOTENT, Headers
from shadowmesh.mirror.pairing import BodyCopy, Pairing, error_of, response
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.spans import Spans
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.decision import Endpoint, Upstream
from shadowmesh.upstream.clusterpool import CountedConnection, Overflow, UpstreamPools
from shadowmesh.upstream.connection import Pool, UpstreamConnection


class ShadowLimits:
    def __init__(
        self,
        timeout: float = 5.0,
        max_in_flight: int = 1024,
        max_body_bytes: int = 8 * 1024 * 1024,
        max_total_body_bytes: int = 64 * 1024 * 1024,
        max_in_flight_per_endpoint: int = 128,
        ejection_seconds: float = 1.0,
    ) -> None:
        self.timeout = timeout
        self.max_in_flight_per_endpoint = max_in_flight_per_endpoint
        self.ejection_seconds = ejection_seconds
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.max_total_body_bytes = max_total_body_bytes


class ShadowCopy(Stream):
    """One shadow request being assembled while the primary's body streams in."""

    __slots__ = (
        "dispatcher",
        "upstream",
        "lines",
        "method",
        "path",
        "authority",
        "source",
        "size",
        "held",
        "done",
        "user_agent",
        "request_id",
        "xff",
        "pairing",
        "role",
        "chunked",
        "sized",
        # sending: set by the dispatcher's launch
        "body",
        "length",
        "conn",
        "reused",
        "started",
        "clock",
        "deadline",
        "finished",
        # the shadow's answer
        "status",
        "received",
        "keep_alive",
        "answer_headers",
        "answer_body",
        "trace",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        upstream: Upstream,
        method: bytes,
        path: bytes,
        authority: bytes,
        lines: bytes,
        request_id: bytes,
        xff: bytes,
        user_agent: bytes,
        chunked: bool,
        sized: bool,
    ) -> None:
        self.dispatcher = dispatcher
        self.upstream = upstream
        # Set when a Comparison wants this shadow's response: its role is candidate/baseline.
        self.pairing: Pairing | None = None
        self.role = ""
        self.method = method
        self.path = path
        self.authority = authority
        self.lines = lines  # its header lines but Host and framing, serialized
        # The primary's framing, which the copy keeps: chunked, Content-Length, or no body.
        self.chunked = chunked
        self.sized = sized
        self.source: BodyBuffer | None = None  # the request's body, shared (set by the stream)
        self.size = 0
        self.held = 0
        self.done = False
        self.user_agent = user_agent  # for its access log line
        self.request_id = request_id
        self.xff = xff
        self.body = b""  # the whole body, once the request is complete (``launch``)
        self.length = NO_LENGTH  # its framing, for the upstream port: the primary's
        self.conn: UpstreamConnection | None = None
        self.reused = False
        self.started = self.clock = self.deadline = 0.0
        self.finished = False
        self.status = self.received = 0
        self.keep_alive = False
        self.answer_headers: Headers = []
        # Only a compared shadow keeps (the first bytes of) its body.
        self.answer_body: BodyCopy | None = None
        # (trace id, span id, parent span id) when its span is exported (``observe.otlp``).
        self.trace: tuple[bytes, bytes, bytes] | None = None

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        d = self.dispatcher
        n = len(chunk)
        if self.size + n > d.limits.max_body_bytes:
            self.abandon("body_too_large")
        elif d.held_bytes + n > d.limits.max_total_body_bytes:
            self.abandon("buffer_full")
        else:
            self.size += n
            self.held += n
            d.held_bytes += n

    def finish(self) -> None:
        """The primary's request is complete: send the copy."""
        if self.done:
            return
        self.done = True
        self.dispatcher.launch(self)

    def abandon(self, reason: str) -> None:
        """Drop this copy (client aborted, a bound was hit); count it, free what it held."""
        if self.done:
            return
        self.done = True
        self.dispatcher.dropped(self, reason)

    def release_body(self) -> None:
        self.dispatcher.held_bytes -= self.held
        self.held = 0
        self.source = None

    # --- the Stream events its upstream connection delivers --------------------------------

    def response_head(self, status: int, reason: bytes, headers: Headers, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive
        if self.answer_body is not None:
            self.answer_headers = headers

    def response_data(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.answer_body is not None:
            self.answer_body.add(chunk)

    def response_end(self) -> None:
        self.dispatcher.answered(self)

    def upstream_failed(self, reason: str, protocol_error: bool = False) -> None:
        self.dispatcher.broke(self, protocol_error)

    def upstream_writable(self, writable: bool) -> None:
        # A shadow that cannot take its request fast enough just waits; its timeout bounds it.
        pass

    def upstream_read_done(self) -> None:
        pass  # nothing goes to a client

    def tunnel_data(self, data: bytes) -> None:
        pass  # shadows never ask for an Upgrade


class Dispatcher:
    def __init__(
        self,
        limits: ShadowLimits,
        stats: Stats,
        access_log: AccessLog,
        host_suffix: bool = True,
        strip_headers: Iterable[str] = (),
    ) -> None:
        self.limits = limits
        self.stats = stats
        self.access_log = access_log
        self.spans: Spans | None = None  # set by serve when traces are exported (OTLP)
        self.host_suffix = host_suffix
        # Request headers removed from the copies only (``serve --shadow-strip-header``): a
        # copy otherwise carries the primary's Authorization and cookies, as Envoy's does.
        self.strip_headers = frozenset(n.strip().lower().encode("latin-1") for n in strip_headers)
        self.pool = Pool(connect_timeout=min(limits.timeout, 10.0))
        # A mirror cluster with a DestinationRule connectionPool or tls gets a pool of its own
        # (its TLS origination above all), apart from the primaries' as every shadow pool is.
        self.pools = UpstreamPools(self.pool)
        self.held_bytes = 0
        self.in_flight = 0
        self.per_endpoint: dict[Endpoint, int] = {}
        self.ejected: dict[Endpoint, float] = {}  # endpoint -> when to try it again
        # Copies sent and not yet answered, in the order sent (so by deadline: one timeout).
        self._sending: dict[ShadowCopy, None] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = max(0.05, min(limits.timeout / 10, 0.5))
        self._tasks: set[asyncio.Task[None]] = set()  # connecting
        self._rng = random.Random()  # the order of compared copies (``order``)

    def order(self, shadows: tuple[Upstream, ...]) -> tuple[Upstream, ...]:
        """The order in which a compared request's copies go out, drawn anew per request.

        Sent in ``mirrors:`` order, the last copy left last and reached its server closest to
        the primary (sent after the shadows): its clock-derived values matched the primary's
        more often, and its queueing differed, so one of candidate and baseline was favoured
        and swapping the list flipped the verdicts. A random order per request makes the two
        exchangeable: whatever the order does, it does to each half the time.
        """
        if len(shadows) < 2:
            return shadows
        if len(shadows) == 2:
            return shadows if self._rng.random() < 0.5 else (shadows[1], shadows[0])
        shuffled = list(shadows)
        self._rng.shuffle(shuffled)
        return tuple(shuffled)

    def refuses(self, upstream: Upstream) -> str:
        """Why the shadow cannot take a copy now ("" if it can); a refusal is counted as a drop.

        Asked before the copy is built, so a drop costs the primary a few dictionary lookups,
        where sending to a shadow that is frozen or refusing would cost it a task, a socket
        and a timeout each time.
        """
        endpoint = upstream.endpoint
        reason = ""
        if self.in_flight >= self.limits.max_in_flight:
            reason = "overflow"
        elif self.per_endpoint.get(endpoint, 0) >= self.limits.max_in_flight_per_endpoint:
            reason = "overflow"
        elif endpoint in self.ejected:
            if time.monotonic() < self.ejected[endpoint]:
                reason = "unhealthy"
            else:
                del self.ejected[endpoint]  # the back-off is over: try it again
        if reason:
            upstream.release()
            self.stats.shadow_dropped[reason] += 1
        return reason

    def begin(
        self,
        upstream: Upstream,
        method: bytes,
        path: bytes,
        authority: bytes,
        lines: bytes,
        request_id: bytes,
        xff: bytes,
        user_agent: bytes,
        chunked: bool,
        sized: bool,
    ) -> ShadowCopy:
        """A new copy, for a shadow that ``refuses`` nothing. ``lines``: its header lines;
        the next three are for its access log line; ``chunked`` and ``sized`` (Content-Length)
        are the primary request's framing."""
        endpoint = upstream.endpoint
        self.in_flight += 1
        self.per_endpoint[endpoint] = self.per_endpoint.get(endpoint, 0) + 1
        return ShadowCopy(
            self,
            upstream,
            method,
            path,
            authority,
            lines,
            request_id,
            xff,
            user_agent,
            chunked,
            sized,
        )

    def done_with(self, endpoint: Endpoint) -> None:
        self.in_flight -= 1
        left = self.per_endpoint[endpoint] - 1
        if left:
            self.per_endpoint[endpoint] = left
        else:
            del self.per_endpoint[endpoint]

    def dropped(self, copy: ShadowCopy, reason: str) -> None:
        if copy.pairing is not None:
            copy.pairing.lost(copy.role, reason)
        copy.release_body()
        copy.upstream.release()
        self.done_with(copy.upstream.endpoint)
        self.stats.shadow_dropped[reason] += 1

    def launch(self, copy: ShadowCopy) -> None:
        """The copy's request is complete: send it, on a pooled connection if there is one."""
        copy.started = time.time()
        copy.clock = now = time.monotonic()
        copy.deadline = now + self.limits.timeout
        self.stats.shadows["sent"] += 1
        # The whole body is held, but its framing is the primary's, never guessed: a request
        # without one has no body, and a server may treat Content-Length: 0 otherwise.
        source = copy.source
        body = source.data() if source is not None and copy.size else b""
        if body and copy.pairing is not None:
            copy.pairing.keep_body(body)  # for the report's drill-down: curl can replay it
        copy.body = body
        copy.length = STREAMED if copy.chunked else copy.size if copy.sized else NO_LENGTH
        copy.release_body()
        if copy.pairing is not None:
            copy.answer_body = BodyCopy(copy.pairing.comparison.max_body_bytes)
        self._sending[copy] = None
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)
        conn = self.pools.pool_for(copy.upstream).take(copy.upstream.endpoint)
        if conn is None:
            self._connect(copy)
        else:
            copy.reused = True
            self._send_on(copy, conn)

    def _connect(self, copy: ShadowCopy) -> None:
        copy.reused = False
        task = asyncio.get_running_loop().create_task(self._connected(copy))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connected(self, copy: ShadowCopy) -> None:
        endpoint = copy.upstream.endpoint
        try:
            conn = await self.pools.pool_for(copy.upstream).connect(endpoint, copy.authority)
        except Overflow:  # the mirror cluster's circuit breaker
            if not copy.finished:
                self._end(copy, "UO")
            return
        except TimeoutError:
            if not copy.finished:
                self._end(copy, "UT")
            return
        except OSError:
            # Outlier ejection, as Envoy's for a refusing host: skip it a while.
            self.ejected[endpoint] = time.monotonic() + self.limits.ejection_seconds
            if not copy.finished:
                self._end(copy, "UF")
            return
        if copy.finished:  # timed out while connecting: the connection may serve another
            _owner(conn, self.pool).put(conn)
            return
        self._send_on(copy, conn)

    def _send_on(self, copy: ShadowCopy, conn: UpstreamConnection) -> None:
        """Through the upstream codec's port, as the primary is sent (an HTTP/2 codec would
        take the same calls), corked: the whole copy goes in one write."""
        copy.conn = conn
        conn.cork()
        conn.send_head(copy, copy.method, copy.path, copy.authority, copy.lines, copy.length, False)
        if copy.body:
            conn.send_data(copy.body)
        conn.send_end()
        conn.uncork()

    def answered(self, copy: ShadowCopy) -> None:
        conn, copy.conn = copy.conn, None
        if conn is not None:
            if copy.keep_alive:
                _owner(conn, self.pool).put(conn)
            else:
                conn.close()
        if not copy.finished:
            self._end(copy, "")

    def broke(self, copy: ShadowCopy, protocol_error: bool) -> None:
        """The copy's connection closed or answered what we cannot frame."""
        copy.conn = None
        if copy.finished:
            return
        if protocol_error:
            self._end(copy, "UPE")
        elif copy.reused and copy.status == 0 and copy.method in IDEMPOTENT:
            # The shadow closed this idle connection as we reused it (gunicorn does after 2 s):
            # most likely unread, and an idempotent request may be repeated anyway, so once
            # more, on a new connection.
            self._connect(copy)
        else:
            if copy.reused and copy.status == 0:
                # It may have read the request and acted on it: never twice (RFC 9110 9.2.2).
                self.stats.shadows["not_resent"] += 1
            self._end(copy, "UC")

    def _sweep(self) -> None:
        """Time out the copies past their deadline; they are in deadline order."""
        self._sweeper = None
        now = time.monotonic()
        expired = []
        for copy in self._sending:
            if copy.deadline > now:
                break
            expired.append(copy)
        for copy in expired:
            conn, copy.conn = copy.conn, None
            if conn is not None:
                conn.detach()
            self._end(copy, "UT")
        if self._sending:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    def _end(self, copy: ShadowCopy, flag: str, counted: bool = True) -> None:
        """The copy's outcome is known (``flag``: its Envoy response flag, "" when answered):
        free what it holds, count it, log it, hand it to its pairing."""
        copy.finished = True
        copy.body = b""
        self._sending.pop(copy, None)
        copy.release_body()
        copy.upstream.release()
        self.done_with(copy.upstream.endpoint)
        if not counted:
            return
        if flag:
            self.stats.shadow_failed[error_of(flag)] += 1
        else:
            self.stats.shadows["completed"] += 1
        if self.access_log.enabled:
            self.access_log.request(
                copy.started,
                copy.method,
                copy.path,
                "1.1",
                copy.status,
                flag,
                copy.size,
                copy.received,
                copy.xff,
                copy.user_agent,
                copy.request_id,
                copy.authority,
                str(copy.upstream.endpoint),
                copy.upstream.cluster,
                shadow=True,
            )
        trace, spans = copy.trace, self.spans
        if trace is not None and spans is not None:
            spans.add(
                (
                    True,
                    trace[0],
                    trace[1],
                    trace[2],
                    copy.started,
                    time.time(),
                    copy.method,
                    copy.path,
                    copy.authority,
                    "1.1",
                    copy.status,
                    flag,
                    copy.upstream.cluster,
                    str(copy.upstream.endpoint),
                    copy.request_id,
                    copy.user_agent,
                    copy.size,
                    copy.received,
                    b"",
                )
            )
        pairing = copy.pairing
        if pairing is not None:
            error = error_of(flag)
            answer = response(copy.status, copy.answer_headers, copy.answer_body, copy.clock, error)
            pairing.add(copy.role, answer)

    async def drain(self, deadline: float) -> None:
        """Wait up to ``deadline`` seconds for the copies in flight to be answered."""
        end = time.monotonic() + deadline
        while self._sending and time.monotonic() < end:
            await asyncio.sleep(0.02)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for copy in list(self._sending):
            conn, copy.conn = copy.conn, None
            if conn is not None:
                conn.detach()
            self._end(copy, "", counted=False)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.pools.close()


def _owner(conn: UpstreamConnection, shared: Pool) -> Pool:
    """The pool a connection goes back to: its cluster's own, or the shared one."""
    return conn.owner if isinstance(conn, CountedConnection) else shared
