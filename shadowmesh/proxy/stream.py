"""One request and its response, as proxy policy: protocol-neutral, no byte of the wire.

A ``ProxyStream`` is opened by the downstream codec for each request head and talks to it and
to the upstream codec only through the ports of ``http.ports`` (so an HTTP/2 codec would
drive the same stream). Routing decided where (``Decision``, with its compiled ``RoutePolicy``
and the comparison rules, all resolved at compile time); the pool gives an upstream port; the
dispatcher takes the shadow copies. What the stream owns: the route decision, the timeouts,
the shadow and capture tees, the request body's one ``BodyBuffer``, the access log and
counters, and the hook points of the route policy (Envoy's order, traffic-policy.md section 0):

    fault (delay, abort)  ->  CORS  ->  request header ops, rewrite  ->  shadows (the final
    headers, never re-sent)  ->  attempts (retries)  ->  response header ops  ->  client

Its states, in order, changed only by ``_to`` (``_ALLOWED`` is the whole diagram):

    WAITING -> ROUTING -> CONNECTING -> SENT -> RESPONDING -> DONE
                  |           |  ^        |          |
                  +-> DONE    +--+ (a new connection, a retry)   +-> TUNNEL -> DONE
    and from any state before DONE: ABORTED (the client went away)

A request body that arrives before the upstream port is ready is held (``pending``), and
reading from the client is paused past a mark, so memory stays bounded. Once sent, body pieces
go straight through; flow control pauses the slower side.

Retries are Envoy's router's (traffic-policy.md 1.2, 1.3; ``envoy/source/common/router/
router.cc``, ``retry_state_impl.cc``): the route's ``RetryPolicy`` (Istio's default on a route
without ``retries``; none with ``attempts: 0``) decides from the response status and headers
(``on_response``) or the failure's kind (``on_failure``: ``connect-failure``, ``reset``,
``per-try-timeout``); a retry waits a jittered back-off, goes to another host of the same
cluster where there is one, carries ``x-envoy-attempt-count`` N, and replays the body from the
request's ``BodyBuffer`` (a body past its bound is never retried: ``retry_or_shadow_abandoned``).
Nothing is retried once a byte of the answer went to the client, and shadows never are (they
were sent once, before the first attempt). The route timeout starts when the request is
complete and spans every attempt and back-off; the per-try timeout (ignored when not shorter
than the route's) bounds one attempt until its response head. Exhausted: a retriable response
passes through as it came, flag ``URX``; a failure gets its local reply, flags ``UF,URX`` /
``UC,URX`` / ``UT,URX``.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Final

from shadowmesh.http import response as resp
from shadowmesh.http.body import BodyBuffer
from shadowmesh.http.ports import (
    NO_LENGTH,
    STREAMED,
    DownstreamPort,
    Stream,
    StreamOpener,
    UpstreamPort,
)
from shadowmesh.http.request import RequestHead, RouteView, strip_lines
from shadowmesh.http.wire import IDEMPOTENT, Headers
from shadowmesh.mirror.dispatcher import ShadowCopy
from shadowmesh.mirror.pairing import BodyCopy, Pairing, error_of, response
from shadowmesh.observe.spans import sampled as b3_sampled
from shadowmesh.observe.trace import new_span_id
from shadowmesh.proxy.context import ProxyContext
from shadowmesh.proxy.headers import Outgoing, connection_headers, shadow_host
from shadowmesh.proxy.headers import upstream_headers as build_upstream_headers
from shadowmesh.routing.decision import Endpoint, Failure, Forward, Upstream
from shadowmesh.routing.outlier import NO_OUTCOME, outcome_of
from shadowmesh.routing.policy import (
    DEFAULT_HOST_PICKS,
    FAULT_ABORT_BODY,
    NO_POLICY,
    Header,
    RetryPolicy,
    RoutePolicy,
    overwrite,
    with_delay_flag,
)
from shadowmesh.upstream.clusterpool import OVERFLOW_BODY, OVERFLOW_HEADER, Overflow
from shadowmesh.upstream.connection import Pool, UpstreamConnection

BUFFER_MARK = 256 * 1024
# What a request body may hold for its retries: Envoy's per_connection_buffer_limit_bytes
# default (1 MiB), which Istio does not set on sidecars (traffic-policy.md 1.3).
RETRY_BUFFER: Final = 1024 * 1024
ATTEMPT_ONE: Final = b"x-envoy-attempt-count: 1\r\n"  # as proxy.headers writes it
RETRY_RNG: Final = random.Random()  # the back-off's jitter
# The response flag each kind of failed attempt would end with (what outlier detection reads).
_FAILED_WITH: Final = {"connect-failure": "UF", "reset": "UC", "per-try-timeout": "UT", "": ""}
# Draws the fault chances, one each per request (Envoy's runtime random; seeded by tests).
FAULT_RNG: Final = random.Random()

WAITING: Final = 0  # opened; behind another request of its connection
ROUTING: Final = 1  # started: routing and the policy before the router run
CONNECTING: Final = 2  # forwarded: waiting for an upstream port
SENT: Final = 3  # the head went upstream: the response is awaited
RESPONDING: Final = 4  # the response head came: its body streams to the client
TUNNEL: Final = 5  # after a 101: bytes both ways, raw
DONE: Final = 6  # answered, or given up; logged
ABORTED: Final = 7  # the client went away; logged

# Per state, the states it may go to: a byte per state, a bit per state it may go to, all in
# one int (a Final literal: mypyc inlines it, so a check is two shifts and an and).
_ALLOWED: Final = (
    (1 << ROUTING | 1 << ABORTED | 1 << DONE) << 8 * WAITING  # DONE: refused while waiting
    | (1 << CONNECTING | 1 << DONE | 1 << ABORTED) << 8 * ROUTING
    | (1 << SENT | 1 << CONNECTING | 1 << DONE | 1 << ABORTED) << 8 * CONNECTING
    | (1 << RESPONDING | 1 << CONNECTING | 1 << DONE | 1 << ABORTED) << 8 * SENT
    | (1 << DONE | 1 << TUNNEL | 1 << ABORTED) << 8 * RESPONDING
    | (1 << DONE | 1 << ABORTED) << 8 * TUNNEL
)  # DONE and ABORTED go nowhere
STATE_NAMES: Final = (
    "waiting",
    "routing",
    "connecting",
    "sent",
    "responding",
    "tunnel",
    "done",
    "aborted",
)


class ProxyStream(Stream):
    # No __slots__: most of this state keeps its class default for a request, so a stream is
    # created by setting a few attributes instead of thirty (measured: ~1.5 us less).
    state = WAITING
    pending: list[bytes] | tuple[()] = ()  # body received before the upstream port is ready
    pending_size = 0
    request_done = False
    received = 0
    upstream: Upstream | None = None
    up: UpstreamPort | None = None  # the upstream port of the attempt in flight
    used_up: UpstreamPort | None = None  # the last one this stream wrote to
    shadows: list[ShadowCopy] | tuple[()] = ()
    body: BodyBuffer | None = None  # the request body, kept for the shadows (and retries)
    timer: asyncio.TimerHandle | None = None  # the route timeout
    retry: RetryPolicy | None = None  # the route's (None: no retries)
    tries = 0  # attempts started; the one in flight's x-envoy-attempt-count
    try_timer: asyncio.TimerHandle | None = None  # the per-try timeout, or a back-off wait
    tried: list[Endpoint] | tuple[()] = ()  # hosts an attempt failed on (previous_hosts)
    retry_flag = ""  # "URX" once a retriable attempt found no retry left ("UO": maxRetries)
    retrying: Upstream | None = None  # a retry in flight, counted by its cluster's maxRetries
    status = 0
    flag = ""
    sent = 0
    request_id = b""
    xff = b""
    upstream_start = 0.0
    upstream_clock = 0.0  # monotonic twin of upstream_start, for the latency histogram
    keep_upstream = False
    cluster = ""  # for the access log when the answer is local
    retried = False
    corked = False  # upstream writes held until the client's read is parsed (``hold``)
    pairing: Pairing | None = None  # this request is compared: its response is copied
    copy: BodyCopy | None = None
    primary_headers: Headers | tuple[()] = ()  # replaced per stream, never mutated
    route_name = ""
    policy: RoutePolicy = NO_POLICY
    faulted = False  # the fault filter ran for this request (it runs once, delayed or not)
    delay: asyncio.TimerHandle | None = None  # a fault delay holding the request now
    delayed = False  # a fault delay held it: flag DI
    cors_headers: list[Header] | tuple[()] = ()  # set on the response (allowed Origin)
    original_path = b""  # the client's path when a rewrite changed it (for the access log)
    lines = b""  # the upstream request's header lines (the router's, after header ops)
    traced: Outgoing | None = None  # its span is exported (OTLP, sampled): the ids it went with
    service_time = -1  # ms from sending the head to the upstream's response head; -1: none
    pool: Pool | None = None  # the attempt's pool: the shared one, or its cluster's own
    upstream_status = 0  # the status the upstream answered (0: no head), for outlier detection
    set_cookie = b""  # a consistent-hash cookie the response must set (Forward.set_cookie)

    def __init__(
        self,
        plane: ProxyContext,
        down: DownstreamPort,
        head: RequestHead,
        listener_port: int | None,
    ) -> None:
        self.plane = plane
        self.down = down
        self.head = head
        self.listener_port = listener_port
        self.started = time.time()
        self.clock = time.monotonic()

    def _to(self, state: int) -> None:
        """The one place the state changes; a move the diagram has not is a bug."""
        if not _ALLOWED >> (8 * self.state + state) & 1:
            raise AssertionError(f"stream: {STATE_NAMES[self.state]} -> {STATE_NAMES[state]}")
        self.state = state

    def finished(self) -> bool:
        return self.state >= DONE

    # --- request side, from the downstream codec -----------------------------------------

    def request_data(self, data: bytes) -> None:
        self.received += len(data)
        body = self.body
        if body is not None and body.add(data):
            self.plane.stats.requests["request_body_over_buffer"] += 1
        for shadow in self.shadows:
            shadow.feed(data)
        up = self.up
        if up is not None:
            self.guard(up)
            up.send_data(data)
        elif self.state < DONE:
            if not self.pending:
                self.pending = []
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > BUFFER_MARK:
                self.down.pause("buffer")

    def request_trailers(self, trailers: Headers) -> None:
        if self.up is not None:
            self.guard(self.up)
            self.up.send_trailers(trailers)

    def request_end(self) -> None:
        self.request_done = True
        if self.body is not None:
            self.body.end()
        for shadow in self.shadows:
            shadow.finish()
        up = self.up
        if up is not None:
            self.guard(up)
            up.send_end()
        if CONNECTING <= self.state <= SENT:
            # Envoy arms its timeouts once the request is complete (onRequestComplete).
            self.arm_route_timeout()
            self.arm_try_timeout()

    def guard(self, up: UpstreamPort) -> None:
        """Hold writes to ``up`` while the client's read is being parsed: a read that turns out
        malformed further on (a bad chunk size after a good head) is then refused whole, and
        the upstream never gets a byte of it."""
        if not self.corked and self.down.hold(self):
            self.corked = True
            up.cork()

    def downstream_read_done(self) -> None:
        self.corked = False
        if self.up is not None:
            self.up.uncork()

    def downstream_writable(self, writable: bool) -> None:
        up = self.up
        if up is None:
            return
        if writable:
            up.resume_reading()
        else:
            up.pause_reading()

    # --- routing and connecting ----------------------------------------------------------

    def start(self) -> None:
        """Called once this stream may answer (HTTP/1: at the front of its pipeline)."""
        self._to(ROUTING)
        if self.head.looped:
            # It came back through one of our own listeners (a mirror or a route to ourselves):
            # forwarding it again would feed the loop, so it ends here, answered and counted.
            # The connection is closed too: a pool of ours would keep it, and an idle connection
            # from the proxy to itself holds a descriptor at both ends.
            self.down.last()
            self.fail(508, "LD", resp.LOOP_DETECTED)
            return
        decision = self.plane.table.route(self.listener_port, RouteView(self.head), self.down.peer)
        if isinstance(decision, Failure):
            self.route_name = decision.route_name
            policy = decision.policy
            if policy is not None:
                # A route's answer or a missing cluster or host is the router's: the fault and
                # CORS filters before it still run, as on a forward.
                self.policy = policy
                if self.before_router(policy, decision):
                    return
            self.answer(decision)
            return
        self.forward(decision)

    def answer(self, decision: Failure) -> None:
        location = decision.location.encode() if decision.location else b""
        self.fail(
            decision.status,
            decision.flag,
            decision.body,
            decision.cluster,
            location,
            decision.headers,
        )

    def forward(self, decision: Forward) -> None:
        plane = self.plane
        head = self.head
        self.upstream = decision.primary
        self.route_name = decision.route_name
        policy = self.policy = decision.policy
        self.set_cookie = decision.set_cookie
        if self.before_router(policy, decision):
            return
        mutated = False
        if policy.request_ops is not None or policy.rewrite is not None:
            mutated = self.finalize_request(policy)
        spans = plane.spans
        if spans is None:
            out = build_upstream_headers(head, self.down.peer_ip, plane.pseudonym, b"1", mutated)
        else:
            decided = b"1" if spans.sample() else b"0"
            out = build_upstream_headers(head, self.down.peer_ip, plane.pseudonym, decided, mutated)
            if b3_sampled(out.sampled):
                self.traced = out
        self.request_id = out.request_id
        self.xff = out.forwarded_for
        # The shadows are taken from the router's final request (header ops and rewrites).
        if decision.shadows:
            if plane.table.compare_rules:
                self.compare(decision, out)
            self.start_shadows(decision, out)
        retry = self.policy.retry
        if retry is not None and retry.attempts > 0:
            self.retry = retry
            if head.has_body and self.body is None:
                # The body is kept for a retry to replay, up to Envoy's buffer limit.
                self.body = self.new_body(RETRY_BUFFER)
        if self.request_done:
            self.arm_route_timeout()
        if out.expect and not self.request_done:
            # Answer Expect ourselves (as nginx does), so the client sends its body at once.
            self.down.send_continue()
        self.lines = out.primary_lines()
        self.attempt()

    # --- the route policy before the router: fault, CORS, header ops and rewrites ----------

    def before_router(self, policy: RoutePolicy, decision: Forward | Failure) -> bool:
        """Envoy's filter order (traffic-policy.md section 0): the fault filter (delay, then
        abort: no shadow, no retry), then CORS, then the router. True when one of them holds
        or answers the request."""
        if policy.fault is not None and not self.faulted and self.inject_fault(decision):
            return True
        return policy.cors is not None and self.cors_preflight(decision)

    def inject_fault(self, decision: Forward | Failure) -> bool:
        """Envoy's fault filter: a delay (the request held, then routed as usual), then an
        abort (answered here: never sent, mirrored or retried). True when it holds or answers
        the request."""
        fault = self.policy.fault
        assert fault is not None
        self.faulted = True
        seconds = fault.delay(FAULT_RNG)
        if seconds > 0.0:
            self.delayed = True
            requests = self.plane.stats.requests
            requests["fault_delays_injected"] += 1
            requests["fault_active"] += 1
            loop = asyncio.get_running_loop()
            self.delay = loop.call_later(seconds, self.delay_over, decision)
            return True
        return self.fault_abort(decision)

    def delay_over(self, decision: Forward | Failure) -> None:
        self.end_delay()
        if self.state < DONE and not self.fault_abort(decision):
            if isinstance(decision, Failure):
                self.answer(decision)
            else:
                self.forward(decision)

    def end_delay(self) -> None:
        """The delay is over, or the request ended during it."""
        delay, self.delay = self.delay, None
        if delay is not None:
            delay.cancel()
            self.plane.stats.requests["fault_active"] -= 1

    def fault_abort(self, decision: Forward | Failure) -> bool:
        fault = self.policy.fault
        assert fault is not None
        status = fault.abort(FAULT_RNG)
        if not status:
            return False
        self.plane.stats.requests["fault_aborts_injected"] += 1
        self.fail(status, "FI", FAULT_ABORT_BODY, self.release_shadows(decision))
        return True

    def release_shadows(self, decision: Forward | Failure) -> str:
        """The decision answered before the router: its shadows are let go (never sent);
        the cluster it named, for the access log."""
        if isinstance(decision, Failure):
            return decision.cluster
        for shadow in decision.shadows:
            shadow.release()
        return decision.primary.cluster

    def cors_preflight(self, decision: Forward | Failure) -> bool:
        """Envoy's CORS filter: a preflight answered here (True), or the headers an allowed
        Origin's response gets."""
        cors = self.policy.cors
        assert cors is not None
        head = self.head
        origin = head.first(b"origin")
        if not origin:
            return False
        if head.method == b"OPTIONS":
            method = head.first(b"access-control-request-method")
            if method:
                wanted = head.first(b"access-control-request-headers") or b""
                answer = cors.preflight(origin, method, wanted)
                if answer is not None:
                    cluster = self.release_shadows(decision)
                    # The CORS filter answers itself: no route response ops (encodeHeaders).
                    self.fail(200, "", b"", cluster, b"", tuple(answer), False)
                    return True
        self.cors_headers = cors.decorate(origin)
        return False

    def finalize_request(self, policy: RoutePolicy) -> bool:
        """The router's header ops and rewrites, on the head the upstream and the shadows get;
        the access log keeps the client's path, as Istio's prints x-envoy-original-path.

        Header ops run after Envoy's connection manager set x-request-id, x-forwarded-for and
        x-forwarded-proto (traffic-policy.md section 0), so they see those and may replace or
        remove them: True when they ran on ``connection_headers`` (upstream_headers' mutated).
        """
        head = self.head
        mutated = policy.request_ops is not None
        if mutated:
            headers = connection_headers(head, self.down.peer_ip)
        else:
            headers = list(head.headers)
        path, authority, headers = policy.finalize_request(head.path, head.authority, headers)
        if path != head.path:
            self.original_path = head.path
        head.path, head.authority, head.headers = path, authority, headers
        return mutated

    def new_body(self, limit: int) -> BodyBuffer:
        """The request's one body buffer, with what arrived of the body so far."""
        body = BodyBuffer(limit)
        for chunk in self.pending:
            body.add(chunk)
        if self.request_done:
            body.end()
        return body

    def arm_route_timeout(self) -> None:
        timeout = self.policy.timeout
        if timeout and self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(timeout, self.timed_out)

    def arm_try_timeout(self) -> None:
        """The per-try timeout of the attempt in flight, once the request is complete: only
        before its response head, and ignored when not shorter than the route's (Envoy)."""
        retry = self.retry
        if retry is None or self.try_timer is not None or not self.request_done:
            return
        per_try = retry.per_try_timeout
        timeout = self.policy.timeout
        if per_try and (not timeout or per_try < timeout):
            self.try_timer = asyncio.get_running_loop().call_later(per_try, self.try_timed_out)

    def stop_try_timer(self) -> None:
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None

    def attempt(self) -> None:
        """Send the request to the chosen upstream, on a pooled port if one is idle."""
        upstream = self.upstream
        assert upstream is not None
        self._to(CONNECTING)
        self.tries += 1
        self.upstream_status = 0
        self.upstream_start = time.time()
        self.upstream_clock = time.monotonic()
        self.arm_try_timeout()
        pool = self.pool = self.plane.pools.pool_for(upstream)
        conn = pool.take(upstream.endpoint)
        if conn is not None:
            self.attach(conn)
        else:
            self.plane.spawn(self.connect())

    def compare(self, decision: Forward, out: Outgoing) -> None:
        """Set up capture when a Comparison covers this route and samples this request."""
        plane = self.plane
        rule = plane.table.compare_rules.get(decision.primary.cluster)
        if rule is None or plane.analyzer is None:
            return
        present = {rule.role(s.cluster) for s in decision.shadows}
        present.discard("")
        if "candidate" not in present:
            return  # the candidate's copy was not sampled by the route's mirror percentage
        if not rule.sampled(out.request_id):
            return
        head = self.head
        self.pairing = Pairing(
            plane.analyzer,
            rule,
            out.request_id.decode("latin-1"),
            head.method.decode("latin-1"),
            head.path.decode("latin-1"),
            head.headers,
            present,
        )
        self.copy = BodyCopy(rule.max_body_bytes)

    def start_shadows(self, decision: Forward, out: Outgoing) -> None:
        if self.head.method == b"CONNECT" or self.head.upgrade:
            # Envoy: "Shadowing doesn't support HTTP CONNECT and upgrades."
            for shadow in decision.shadows:
                shadow.release()
            return
        dispatcher = self.plane.dispatcher
        admitted = []
        # A compared request's copies go out in an order drawn per request (Dispatcher.order).
        shadows = decision.shadows if self.pairing is None else dispatcher.order(decision.shadows)
        for target in shadows:
            role = self.role_of(target.cluster)
            reason = dispatcher.refuses(target)
            if not reason:
                admitted.append((target, role))
            elif role and self.pairing is not None:
                self.pairing.lost(role, reason)
        if not admitted:
            return  # all dropped: no copy of the headers was made for nothing
        head = self.head
        if head.has_body:
            # The copies read the body from the one buffer (http.body), bounded by theirs,
            # or by the retries' if that is larger.
            self.body = self.new_body(max(dispatcher.limits.max_body_bytes, RETRY_BUFFER))
        lines = out.shadow_lines()
        if dispatcher.strip_headers:
            lines = strip_lines(lines, dispatcher.strip_headers)
        authority = shadow_host(head.authority, dispatcher.host_suffix)
        user_agent = head.first(b"user-agent") or b""
        self.shadows = []
        traced = self.traced if dispatcher.spans is not None and dispatcher.spans.shadows else None
        for target, role in admitted:
            span = b""
            if traced is not None:
                # Each copy its own span, in its own header lines (tracing only).
                span = new_span_id()
                lines = out.shadow_lines(span)
                if dispatcher.strip_headers:
                    lines = strip_lines(lines, dispatcher.strip_headers)
            copy = dispatcher.begin(
                target,
                head.method,
                head.path,
                authority,
                lines,
                out.request_id,
                out.forwarded_for,
                user_agent,
                head.chunked,
                head.content_length is not None,
            )
            copy.source = self.body
            if role:
                copy.pairing, copy.role = self.pairing, role
            if traced is not None:
                copy.trace = (traced.trace_id, span, traced.span_id)
            for chunk in self.pending:
                copy.feed(chunk)
            if self.request_done:
                copy.finish()
            self.shadows.append(copy)

    def role_of(self, cluster: str) -> str:
        if self.pairing is None:
            return ""
        return self.pairing.comparison.role(cluster)

    async def connect(self) -> None:
        upstream, pool = self.upstream, self.pool
        assert upstream is not None and pool is not None
        try:
            conn = await pool.connect(upstream.endpoint, self.head.authority)
        except Overflow:
            # A circuit breaker (DestinationRule connectionPool): Envoy's 503 UO, never
            # retried and not an outlier report.
            if self.upstream is not upstream:
                return  # an attempt given up on (its per-try timeout) while it waited
            if self.state < DONE:
                self.fail(503, "UO", OVERFLOW_BODY, upstream.cluster, headers=(OVERFLOW_HEADER,))
            return
        except (OSError, TimeoutError):
            if self.upstream is not upstream:
                return  # an attempt given up on (its per-try timeout) while it connected
            if self.state < DONE:
                if not self.retried_after("connect-failure"):
                    self.fail(503, "UF", self.failure_body(resp.CONNECT_FAILURE), upstream.cluster)
            return
        if self.state >= DONE or self.upstream is not upstream or self.up is not None:
            pool.put(conn)  # not needed any more: it may serve another request
            return
        self.attach(conn)

    def attach(self, up: UpstreamConnection) -> None:
        self.up = self.used_up = up
        self._to(SENT)
        head = self.head
        if head.chunked:
            length = STREAMED
        elif head.content_length is not None:
            length = head.content_length
        else:
            length = NO_LENGTH
        self.corked = False
        self.guard(up)
        lines = self.lines
        if self.tries > 1:
            lines = lines.replace(ATTEMPT_ONE, b"x-envoy-attempt-count: %d\r\n" % self.tries, 1)
        up.send_head(self, head.method, head.path, head.authority, lines, length, head.upgrade)
        if self.tries > 1 and self.body is not None:
            pending: list[bytes] | tuple[()] = self.body.chunks  # the body again, from its start
        else:
            pending = self.pending
        self.pending = ()
        self.pending_size = 0
        for chunk in pending:
            up.send_data(chunk)
        if self.request_done:
            up.send_end()
        self.down.resume("buffer")

    # --- response side, from the upstream codec ------------------------------------------

    def response_head(self, status: int, reason: bytes, headers: Headers, keep_alive: bool) -> None:
        if self.state >= DONE:
            return
        self.stop_try_timer()  # the per-try timeout ends at the response head
        self.upstream_status = status
        retry = self.retry
        if retry is not None and status != 101 and retry.on_response(status, headers):
            up, self.up = self.up, None
            if self.retried_after(""):
                if up is not None:
                    up.reset()  # the rest of this answer is never read
                return
            self.up = up  # not retried (or none left): this answer passes through as it came
        self.status = status
        self._to(RESPONDING)
        if status == 101:
            self.switch_protocols(reason, headers)
            return
        self.keep_upstream = keep_alive
        if self.pairing is not None:
            self.primary_headers = headers
        out, length, coding = resp.response_headers(headers)
        elapsed = int((time.time() - self.upstream_start) * 1000)
        out.append((b"x-envoy-upstream-service-time", str(elapsed).encode()))
        # The router's response ops, then the CORS filter's headers (encoders run backwards).
        ops = self.policy.response_ops
        if ops is not None:
            out = ops.apply(out)
        if self.set_cookie:  # consistentHash's generated cookie, added by Envoy's router
            out.append((b"set-cookie", self.set_cookie))
        if self.cors_headers:
            out = overwrite(out, self.cors_headers)
        # Gathered until the end of this upstream read (``upstream_read_done``): head and body
        # then leave in one write, and a failure before that can still be answered with a 503.
        if not self.down.send_head(status, reason, out, length, coding):
            self.refuse_unrelayable()
            return
        self.service_time = elapsed

    def refuse_unrelayable(self) -> None:
        """RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client, and without it the body
        cannot be decoded: refused rather than relay bytes the client cannot read."""
        up, self.up = self.up, None
        if up is not None:
            up.reset()
        cluster = self.upstream.cluster if self.upstream else ""
        self.fail(502, "UPE", resp.PROTOCOL_ERROR, cluster)

    def response_data(self, data: bytes) -> None:
        if self.state >= DONE:
            return
        self.sent += len(data)
        self.down.send_data(data)
        if self.copy is not None:
            self.copy.add(data)

    def response_trailers(self, trailers: Headers) -> None:
        if self.state < DONE:
            self.down.send_trailers(trailers)

    def response_end(self) -> None:
        if self.state >= DONE:
            return
        self.down.send_end()
        if self.upstream is not None:
            self.plane.stats.observe(self.upstream.cluster, time.monotonic() - self.upstream_clock)
        up, self.up = self.up, None
        if up is not None:
            if (
                self.request_done
                and self.keep_upstream
                and not up.closed
                and isinstance(up, UpstreamConnection)
                and self.pool is not None
            ):
                self.pool.put(up)
            else:
                up.reset()
        # If the upstream answered before the body ended (nginx's `return 200` does), the rest
        # of the body is still read: the codec knows where it ends, shadows still get it, and
        # the connection can serve the next request once it has.
        self.finish()

    def switch_protocols(self, reason: bytes, headers: Headers) -> None:
        """The upstream accepted the Upgrade: relay its 101, then bytes both ways, raw."""
        out, _, _ = resp.response_headers(headers)
        upgrade = next((v for n, v in headers if n == b"upgrade"), b"")
        out += ((b"upgrade", upgrade),)
        self.down.send_head(101, reason, out, None, None)
        self.down.flush()
        self._to(TUNNEL)
        assert self.up is not None
        self.down.start_tunnel(self.up)

    def tunnel_data(self, data: bytes) -> None:
        self.sent += len(data)
        self.down.send_raw(data)

    def upstream_read_done(self) -> None:
        self.down.flush()

    def upstream_failed(self, reason: str, protocol_error: bool = False) -> None:
        if self.state >= DONE:
            return
        self.down.discard()  # a head not yet written is dropped: the client gets a clean 5xx
        up, self.up = self.up, None
        if self.state == TUNNEL:
            self.reset_client()  # the tunnel's upstream side closed: so does the client's
            return
        committed = self.down.committed
        if protocol_error and not committed:
            # An answer we cannot frame is never relayed: Envoy's 502 with flag UPE.
            cluster = self.upstream.cluster if self.upstream else ""
            self.fail(502, "UPE", resp.PROTOCOL_ERROR, cluster)
            return
        if not protocol_error and self.closed_under_reuse(up):
            # A pooled connection the upstream closed just as we reused it. Most likely it
            # closed it idle, unread; but it may have read the request and acted on it, so only
            # an idempotent one without a body (nothing of it is kept) is sent once more, on a
            # new connection. Any other gets Envoy's 503 UC below.
            if self.head.method in IDEMPOTENT and not self.head.has_body:
                self.retried = True
                self._to(CONNECTING)
                self.plane.spawn(self.connect())
                return
            self.plane.stats.requests["upstream_rq_not_resent"] += 1
        if not committed:
            if self.status == 0 and self.retried_after("reset"):
                return
            cluster = self.upstream.cluster if self.upstream else ""
            self.fail(503, "UC", self.failure_body(resp.CONNECTION_TERMINATION), cluster)
        else:
            # Part of the response is out: closing is the only honest way to say it broke.
            self.flag = "UPE" if protocol_error else "UC"
            self.reset_client()

    def closed_under_reuse(self, up: UpstreamPort | None) -> bool:
        """The connection closed before any answer, on a request that was not its first."""
        return (
            up is not None
            and up.requests > 1
            and not self.retried
            and self.status == 0
            and not self.down.committed
        )

    def upstream_writable(self, writable: bool) -> None:
        if writable:
            self.down.resume("upstream")
        else:
            self.down.pause("upstream")

    # --- endings -------------------------------------------------------------------------

    def timed_out(self) -> None:
        """The route's timeout (Envoy's, flag UT): it spans every attempt, never retried."""
        self.timer = None
        self.give_up(504, "UT", resp.UPSTREAM_TIMEOUT, reset=False)

    def try_timed_out(self) -> None:
        """The attempt's per-try timeout: reset it; retried only on ``5xx``, ``gateway-error``
        or ``reset`` (Envoy's reset path), else 504 ``UT``."""
        self.try_timer = None
        if self.state >= DONE:
            return
        self.plane.stats.retries["upstream_rq_per_try_timeout"] += 1
        up, self.up = self.up, None
        if up is not None:
            up.reset()
        if not self.retried_after("per-try-timeout"):
            self.give_up(504, "UT", resp.UPSTREAM_TIMEOUT, reset=False)

    def retried_after(self, kind: str) -> bool:
        """The attempt in flight failed (``kind``; "" for a retriable response already
        judged): start a retry if the policy, the attempts left and the body allow one, and
        say whether one is under way."""
        retry = self.retry
        if retry is None or (kind and not retry.on_failure(kind)):
            return False
        stats = self.plane.stats.retries
        if self.down.committed or self.state >= DONE:
            return False
        if self.tries > retry.attempts:
            stats["upstream_rq_retry_limit_exceeded"] += 1
            self.retry_flag = "URX"
            return False
        body = self.body
        if self.head.has_body and (body is None or not body.replayable()):
            stats["retry_or_shadow_abandoned"] += 1  # past its bound: never sent again
            return False
        upstream = self.upstream
        assert upstream is not None
        self.end_retry()
        if not self.plane.pools.begin_retry(upstream):
            # The cluster's maxRetries circuit breaker: the current answer goes back, flag UO.
            self.retry_flag = "UO"
            return False
        endpoint = self.another_host(upstream, retry)
        if endpoint is None:
            self.plane.pools.end_retry(upstream)
            return False
        self.retrying = upstream
        up, self.up = self.up, None
        if up is not None:
            up.reset()
        stats["upstream_rq_retry"] += 1
        upstream.release(outcome_of(self.upstream_status, _FAILED_WITH[kind]))
        self.upstream = Upstream(upstream.cluster, endpoint, upstream.balancer)
        self.stop_try_timer()
        self.status = self.upstream_status = 0
        self._to(CONNECTING)
        delay = retry.backoff(self.tries, RETRY_RNG)
        self.try_timer = asyncio.get_running_loop().call_later(delay, self.retry_now)
        return True

    def end_retry(self) -> None:
        retrying, self.retrying = self.retrying, None
        if retrying is not None:
            self.plane.pools.end_retry(retrying)

    def another_host(self, upstream: Upstream, retry: RetryPolicy) -> Endpoint | None:
        """The retry's host: a new pick of the same cluster, another than those that failed
        where there is one (Envoy's previous_hosts predicate: up to 5 picks, then the last)."""
        tried = self.tried
        if not tried:
            tried = self.tried = []
        tried.append(upstream.endpoint)
        balancer = upstream.balancer
        picked: Endpoint | None = None
        for _ in range(DEFAULT_HOST_PICKS):
            endpoint = balancer.pick()
            if endpoint is None:
                break
            if picked is not None:
                balancer.release(picked, NO_OUTCOME)  # an earlier pick, not used
            picked = endpoint
            if not retry.previous_hosts or endpoint not in tried:
                break
        return picked

    def retry_now(self) -> None:
        """The back-off is over: the next attempt."""
        self.try_timer = None
        if self.state == CONNECTING:
            self.attempt()

    def failure_body(self, body: bytes) -> bytes:
        """Envoy's local reply after retries: ``... retried and the latest reset reason: ...``."""
        if self.tries > 1:
            return body.replace(b"reset reason:", b"retried and the latest reset reason:", 1)
        return body

    def stream_idle(self, reset: bool) -> None:
        """The stream idle timeout: nothing moved either way. Answered as Envoy answers it,
        flag SI: 408 if the client still owes its body, 504 if the upstream owes its answer;
        once part of the answer is out (or when ``reset``), both connections are closed."""
        if self.request_done:
            self.give_up(504, "SI", resp.STREAM_TIMEOUT, reset)
        else:
            self.down.last()  # the rest of its body would be read as requests
            self.give_up(408, "SI", resp.STREAM_TIMEOUT, reset)

    def give_up(self, status: int, flag: str, body: bytes, reset: bool) -> None:
        """A timeout: drop the upstream port; answer ``status`` if nothing of the answer is out
        yet, else (or when ``reset``) reset the client's side too."""
        if self.state >= DONE:
            return
        self.down.discard()
        up, self.up = self.up, None
        if up is not None:
            up.reset()
        cluster = self.upstream.cluster if self.upstream else ""
        if not self.down.committed and not reset:
            self.fail(status, flag, body, cluster)
            return
        self.flag = flag
        self.cluster = cluster
        self.reset_client()

    def reset_client(self) -> None:
        """End here, logged, and reset the client's side (HTTP/1: close its connection)."""
        self.down.last()
        self.finish()
        self.down.reset()

    def fail(
        self,
        status: int,
        flag: str,
        body: bytes,
        cluster: str = "",
        location: bytes = b"",
        headers: tuple[tuple[bytes, bytes], ...] = (),
        route_ops: bool = True,
    ) -> None:
        """Answer locally, as Envoy does when there is no route, cluster or upstream. The
        route's response ops apply (Envoy's filter manager), unless ``headers`` has them
        already or, ``route_ops`` False, the answer is the CORS filter's."""
        self.status = status
        self.flag = flag
        self.sent = len(body)
        if route_ops and not headers:
            headers = self.policy.local_headers
        if self.cors_headers:
            # A local reply passes the CORS filter's encoder too (Envoy's local replies go
            # through the encoder filters): an allowed Origin's 503 or direct response says so.
            headers = tuple(overwrite(list(headers), self.cors_headers))
        self.down.send_local(status, body, location, headers)
        self.cluster = cluster
        self.finish()

    def finish(self) -> None:
        if self.state >= DONE:
            return
        self._to(DONE)
        outcome = outcome_of(self.upstream_status, self.flag)  # before URX joins the flag
        if self.retrying is not None:
            self.end_retry()
        if self.retry_flag:
            self.flag = self.flag + "," + self.retry_flag if self.flag else self.retry_flag
        if self.tries > 1 and self.status and self.status < 500:
            self.plane.stats.retries["upstream_rq_retry_success"] += 1
        if self.pairing is not None:
            self.pairing.add(
                "primary",
                response(
                    self.status,
                    self.primary_headers,
                    self.copy,
                    self.clock,
                    error_of(self.flag),
                ),
            )
        if self.timer is not None:
            self.timer.cancel()
        if self.delay is not None:
            self.end_delay()
        self.stop_try_timer()
        if self.upstream is not None:
            # Once per attempt, with its outcome for outlier detection (routing.outlier).
            self.upstream.release(outcome)
        self.pending = ()
        self.log()
        self.down.finished()

    def downstream_failed(self, status: int, flag: str) -> None:
        """The client went away (``DC``), or its bytes for this request turned out malformed
        (``DPE``, logged with ``status``), or it idled behind another (``SI``): drop
        everything this stream holds."""
        for shadow in self.shadows:
            # A copy whose request never ended is dropped; one already sent is not touched.
            shadow.abandon("client_aborted")
        if self.state >= DONE:
            return
        if status and not self.down.committed:
            self.status = status
        if flag != "DC" or not self.flag:
            self.flag = flag
        up, self.up = self.up, None
        if up is not None:
            up.reset()
        self._to(ABORTED)
        if self.pairing is not None:
            self.pairing.lost("primary", "client_aborted")
        if self.timer is not None:
            self.timer.cancel()
        if self.delay is not None:
            self.end_delay()
        self.stop_try_timer()
        if self.retrying is not None:
            self.end_retry()
        if self.upstream is not None:
            # The client left: only a status the upstream already answered is reported.
            self.upstream.release(outcome_of(self.upstream_status, ""))
        self.log()

    def log(self) -> None:
        plane = self.plane
        upstream = self.upstream
        cluster = upstream.cluster if upstream else self.cluster
        head = self.head
        milliseconds = int((time.monotonic() - self.clock) * 1000)
        flag = with_delay_flag(self.flag) if self.delayed else self.flag
        plane.stats.count_request(
            cluster,
            self.status,
            flag,
            upstream.endpoint if upstream else None,
            "" if upstream else head.authority.decode("latin-1"),
            milliseconds,
            self.received,
            self.sent,
        )
        if self.traced is not None:
            self.trace(cluster)
        access_log = plane.access_log
        if not access_log.enabled:
            return
        # What only Istio's formats print; the addresses are looked up only for them.
        local = remote = upstream_local = sni = ""
        if access_log.istio:
            local, remote, sni = self.down.addresses()
            up = self.used_up
            upstream_local = up.local_address() if up is not None else ""
        access_log.request(
            self.started,
            head.method,
            self.original_path or head.path,
            head.version,
            self.status,
            flag,
            self.received,
            self.sent,
            self.xff,
            head.first(b"user-agent") or b"",
            self.request_id or head.first(b"x-request-id") or b"",
            head.authority,
            str(self.upstream.endpoint) if self.upstream else "",
            cluster,
            False,
            self.service_time,
            upstream_local,
            local,
            remote,
            self.route_name,
            sni,
        )

    def trace(self, cluster: str) -> None:
        """Queue this request's span for the OTLP exporter (``observe.otlp``)."""
        spans, out, head = self.plane.spans, self.traced, self.head
        if spans is None or out is None:
            return
        upstream = self.upstream
        spans.add(
            (
                False,
                out.trace_id,
                out.span_id,
                head.first(b"x-b3-spanid") or b"",  # the client's span, if it sent one
                self.started,
                time.time(),
                head.method,
                head.path,
                head.authority,
                head.version,
                self.status,
                self.flag,
                cluster,
                str(upstream.endpoint) if upstream is not None else "",
                out.request_id,
                head.first(b"user-agent") or b"",
                self.received,
                self.sent,
                self.down.peer_ip,
            )
        )


class ProxyOpener(StreamOpener):
    """Opens a ``ProxyStream`` per request head, for the codecs of one listener."""

    def __init__(self, plane: ProxyContext, listener_port: int | None) -> None:
        self.plane = plane
        self.listener_port = listener_port

    def open(self, port: DownstreamPort, head: RequestHead) -> Stream:
        return ProxyStream(self.plane, port, head, self.listener_port)
