"""The shadow dispatcher: copies of live requests, sent fire-and-forget, bounded, counted.

Rules this module owns, so the shadow can never affect the live request:

1. A shadow is buffered while the primary's body streams, and sent once that body is complete
   (Envoy's behaviour before 1.33). The primary is never paused for the shadow: there is no
   back-pressure path from here to the client.
2. Shadows have their own connection pool and their own timeout.
3. Shadows in flight and shadow body bytes held are bounded. Past a bound, the shadow is
   dropped and the drop counted by reason; the primary carries on unaware.
4. The response is read to the end (so the connection can be reused) and thrown away.
"""

from __future__ import annotations

import asyncio
import time

from shadowmesh.mirror.pairing import BodyCopy, Pairing, response
from shadowmesh.observe.accesslog import AccessLog, AccessRecord
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.decision import Endpoint, Upstream
from shadowmesh.upstream.connection import Pool, UpstreamConnection
from shadowmesh.upstream.wire import Headers, serialize_request


class ShadowProtocolError(Exception):
    """The shadow answered something that is not HTTP/1.1 we can frame."""


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


class ShadowCopy:
    """One shadow request being assembled while the primary's body streams in."""

    __slots__ = (
        "dispatcher",
        "upstream",
        "head",
        "method",
        "path",
        "authority",
        "body",
        "size",
        "held",
        "done",
        "user_agent",
        "request_id",
        "xff",
        "pairing",
        "role",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        upstream: Upstream,
        method: bytes,
        path: bytes,
        authority: bytes,
        headers: Headers,
    ) -> None:
        self.dispatcher = dispatcher
        self.upstream = upstream
        # Set when a Comparison wants this shadow's response: its role is candidate/baseline.
        self.pairing: Pairing | None = None
        self.role = ""
        self.method = method
        self.path = path
        self.authority = authority
        self.head = headers
        self.body: list[bytes] = []
        self.size = 0
        self.held = 0
        self.done = False
        self.user_agent = self.request_id = self.xff = ""
        for name, value in headers:
            if name == b"user-agent":
                self.user_agent = value.decode("latin-1")
            elif name == b"x-request-id":
                self.request_id = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                self.xff = value.decode("latin-1")

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
            self.body.append(chunk)
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
        self.body = []


class _Discard:
    """Reads a shadow response to its end and keeps only its status and size."""

    __slots__ = ("future", "status", "size", "keep_alive", "headers", "copy")

    def __init__(self, future: asyncio.Future[None], copy_limit: int | None) -> None:
        self.future = future
        self.status = 0
        self.size = 0
        self.keep_alive = False
        self.headers: Headers = []
        # Only a compared shadow keeps (the first bytes of) its body.
        self.copy = BodyCopy(copy_limit) if copy_limit is not None else None

    def response_head(self, status: int, reason: bytes, headers: Headers, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive
        if self.copy is not None:
            self.headers = headers

    def response_body(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.copy is not None:
            self.copy.add(chunk)

    def response_complete(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def upstream_failed(self, reason: str, protocol_error: bool = False) -> None:
        if not self.future.done():
            error = ShadowProtocolError if protocol_error else ConnectionError
            self.future.set_exception(error(reason))

    def upstream_writable(self, writable: bool) -> None:
        # A shadow that cannot take its request fast enough just waits; its timeout bounds it.
        pass

    def flush(self) -> None:
        pass

    def tunnel_data(self, data: bytes) -> None:
        pass  # shadows never ask for an Upgrade


class Dispatcher:
    def __init__(
        self,
        limits: ShadowLimits,
        stats: Stats,
        access_log: AccessLog,
        host_suffix: bool = True,
    ) -> None:
        self.limits = limits
        self.stats = stats
        self.access_log = access_log
        self.host_suffix = host_suffix
        self.pool = Pool(connect_timeout=min(limits.timeout, 10.0))
        self.held_bytes = 0
        self.in_flight = 0
        self.per_endpoint: dict[Endpoint, int] = {}
        self.ejected: dict[Endpoint, float] = {}  # endpoint -> when to try it again
        self._tasks: set[asyncio.Task[None]] = set()

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
        self, upstream: Upstream, method: bytes, path: bytes, authority: bytes, headers: Headers
    ) -> ShadowCopy:
        """A new copy, for a shadow that ``refuses`` nothing."""
        endpoint = upstream.endpoint
        self.in_flight += 1
        self.per_endpoint[endpoint] = self.per_endpoint.get(endpoint, 0) + 1
        return ShadowCopy(self, upstream, method, path, authority, headers)

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
        task = asyncio.get_running_loop().create_task(self._send(copy))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, copy: ShadowCopy) -> None:
        started = time.time()
        clock = time.monotonic()
        status, flag, received = 0, "", 0
        sink: _Discard | None = None
        pairing = copy.pairing
        limit = pairing.comparison.max_body_bytes if pairing is not None else None
        conn: UpstreamConnection | None = None
        self.stats.shadows["sent"] += 1
        try:
            async with asyncio.timeout(self.limits.timeout):
                framing = (b"content-length", str(copy.size).encode())
                has_body = copy.size or copy.method in (b"POST", b"PUT", b"PATCH")
                payload = serialize_request(
                    copy.method,
                    copy.path,
                    copy.authority,
                    copy.head,
                    framing if has_body else None,
                ) + b"".join(copy.body)
                copy.release_body()
                for attempt in (1, 2):
                    conn = self.pool.take(copy.upstream.endpoint) if attempt == 1 else None
                    reused = conn is not None
                    if conn is None:
                        try:
                            conn = await self.pool.connect(copy.upstream.endpoint)
                        except OSError:
                            flag = "UF"
                            # Outlier ejection, as Envoy's for a refusing host: skip it a while.
                            self.ejected[copy.upstream.endpoint] = (
                                time.monotonic() + self.limits.ejection_seconds
                            )
                            raise
                    sink = _Discard(asyncio.get_running_loop().create_future(), limit)
                    conn.begin(sink, head_only=copy.method == b"HEAD")
                    conn.write(payload)
                    try:
                        await sink.future
                    except ConnectionError:
                        if reused and sink.status == 0:
                            # The shadow closed this idle connection as we reused it (gunicorn
                            # does after 2 s): nothing was processed, so once more on a new one.
                            conn = None
                            continue
                        raise
                    break
                assert sink is not None and conn is not None  # the loop ends on an answer
                status, received = sink.status, sink.size
                if sink.keep_alive:
                    self.pool.put(conn)
                else:
                    conn.close()
                conn = None
            self.stats.shadows["completed"] += 1
        except TimeoutError:
            flag = flag or "UT"
            self.stats.shadow_failed["timeout"] += 1
        except ShadowProtocolError:
            flag = "UPE"
            self.stats.shadow_failed["protocol"] += 1
        except OSError:
            flag = flag or "UC"
            self.stats.shadow_failed["connect" if flag == "UF" else "reset"] += 1
        finally:
            if conn is not None:
                conn.detach()
            copy.release_body()
            copy.upstream.release()
            self.done_with(copy.upstream.endpoint)
            self._log(copy, started, status, flag, received)
            if pairing is not None:
                headers = sink.headers if sink is not None else []
                body = sink.copy if sink is not None else None
                error = {"UT": "timeout", "UF": "connect"}.get(flag, "reset" if flag else "")
                pairing.add(copy.role, response(status, headers, body, clock, error))

    def _log(self, copy: ShadowCopy, started: float, status: int, flag: str, sent: int) -> None:
        if not self.access_log.enabled:
            return
        self.access_log.log(
            AccessRecord(
                start_time=started,
                method=copy.method.decode("latin-1"),
                path=copy.path.decode("latin-1"),
                protocol="HTTP/1.1",
                status=status,
                response_flags=flag,
                bytes_received=copy.size,
                bytes_sent=sent,
                duration_ms=int((time.time() - started) * 1000),
                x_forwarded_for=copy.xff,
                user_agent=copy.user_agent,
                request_id=copy.request_id,
                authority=copy.authority.decode("latin-1"),
                upstream_host=str(copy.upstream.endpoint),
                upstream_cluster=copy.upstream.cluster,
                shadow=True,
            )
        )

    async def drain(self, deadline: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=deadline)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.pool.close()
