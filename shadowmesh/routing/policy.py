"""An HTTPRoute's policy, compiled: what the stream does for one request besides forwarding it.

Pure and built once per route-table compile (``routing.compile_policy`` makes them from the
model); the stream only reads them. Each object is a slotted plain class with ``Final``
attributes (made or read per request, and compiled by mypyc; see ``_hotpath.py``). A policy
that is not configured is ``None`` on the ``RoutePolicy``: the stream tests ``is not None`` and
builds nothing for it, so an unset policy costs nothing per request.

Semantics are Envoy's, as istiod configures it; ``shared/reference/traffic-policy.md`` section 1
gives the sources (Envoy ``header_parser.cc``, ``retry_state_impl.cc``, ``fault_filter.cc``,
``cors_filter.cc``, ``config_impl.cc``; Istio ``route.go``, ``retry.go``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Final

Header = tuple[bytes, bytes]

# Envoy's O(1) ("inline") headers (envoy/http/header_map.h: INLINE_REQ_*, INLINE_REQ_RESP_*,
# INLINE_RESP_*). ``addReferenceKey`` on one of these appends to its value with ","; any other
# header gets a second entry (envoy/config/core/v3/base.proto, APPEND_IF_EXISTS_OR_ADD).
_INLINE_BOTH = (
    b"connection content-type x-envoy-decorator-operation keep-alive proxy-connection "
    b"proxy-status x-request-id transfer-encoding upgrade via content-length "
    b"x-envoy-attempt-count"
).split()
INLINE_REQUEST: Final = frozenset(
    _INLINE_BOTH
    + (
        b"x-client-trace-id x-envoy-downstream-service-cluster x-envoy-downstream-service-node "
        b"x-envoy-external-address x-envoy-force-trace x-envoy-hedge-on-per-try-timeout "
        b"x-envoy-internal x-envoy-ip-tags x-envoy-retry-on x-envoy-retry-grpc-on "
        b"x-envoy-retriable-status-codes x-envoy-retriable-header-names x-envoy-original-path "
        b"x-envoy-original-url x-envoy-upstream-alt-stat-name "
        b"x-envoy-upstream-rq-timeout-alt-response expect x-forwarded-client-cert "
        b"x-forwarded-for x-forwarded-host x-forwarded-proto grpc-timeout te user-agent "
        b"x-envoy-expected-rq-timeout-ms x-envoy-max-retries x-envoy-upstream-rq-timeout-ms "
        b"x-envoy-upstream-rq-per-try-timeout-ms x-envoy-upstream-stream-duration-ms"
    ).split()
)
INLINE_RESPONSE: Final = frozenset(
    _INLINE_BOTH
    + (
        b"date x-envoy-degraded x-envoy-immediate-health-check-fail x-envoy-ratelimited "
        b"x-envoy-upstream-canary x-envoy-upstream-healthchecked-cluster location server "
        b"x-envoy-upstream-service-time grpc-message"
    ).split()
)


class HeaderOps:
    """One Envoy ``HeaderParser``: removes, then sets (overwrite or add), then adds, each in
    list order (``HeaderParser::evaluateHeaders``); ``then`` is a parser evaluated after it
    (a weighted destination's ops come first, the route's after: "later evaluated wins").

    Names are lower-case bytes. Values are never empty: Envoy drops an empty value
    (``keep_empty_value`` false), so the compile leaves such entries out.
    """

    __slots__ = ("set", "add", "remove", "then", "_comma", "_names", "_sets")

    def __init__(
        self,
        set: tuple[Header, ...] = (),
        add: tuple[Header, ...] = (),
        remove: tuple[bytes, ...] = (),
        *,
        inline: frozenset[bytes] = INLINE_REQUEST,
        then: HeaderOps | None = None,
    ) -> None:
        self.set: Final = set
        self.add: Final = add
        self.remove: Final = remove
        self.then: Final = then
        self._comma: Final = inline
        # Every name a set or remove clears, tested once per header of the request.
        self._names: Final = frozenset(remove) | frozenset(name for name, _ in set)
        # setReferenceKey removes every entry of the name and adds the new one last, so of sets
        # of one name only the last stays, at its place: what one pass over the headers gives.
        last = {name: index for index, (name, _) in enumerate(set)}
        self._sets: Final = tuple(pair for index, pair in enumerate(set) if last[pair[0]] == index)

    def apply(self, headers: list[Header]) -> list[Header]:
        """The headers after these ops; ``headers`` itself may be changed and returned."""
        names = self._names
        if names:
            headers = [h for h in headers if h[0] not in names]
            headers.extend(self._sets)
        for name, value in self.add:
            _append(headers, name, value, self._comma)
        if self.then is not None:
            headers = self.then.apply(headers)
        return headers

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, pairs in (("set", self.set), ("add", self.add)):
            if pairs:
                out[key] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in pairs]
        if self.remove:
            out["remove"] = [n.decode("latin-1") for n in self.remove]
        if self.then is not None:
            out["then"] = self.then.describe()
        return out


def _append(headers: list[Header], name: bytes, value: bytes, inline: frozenset[bytes]) -> None:
    if name in inline:
        for index, (key, old) in enumerate(headers):
            if key == name:
                headers[index] = (key, old + b"," + value)
                return
    headers.append((name, value))


class Rewrite:
    """``rewrite``: the path's matched portion replaced (``prefix_rewrite``) or a regex
    replaced in the path without its query (``regex_rewrite``), and ``authority``.

    ``matched`` is how many leading bytes of the path the route's match covered: the prefix's or
    exact path's length; -1 for a regex uri match (the whole path without the query), as
    Envoy's ``currentUrlPathAfterRewriteWithMatchedPath`` is given it.
    """

    __slots__ = ("prefix", "matched", "pattern", "substitution", "authority")

    def __init__(
        self,
        prefix: bytes | None = None,
        matched: int = 1,
        pattern: re.Pattern[bytes] | None = None,
        substitution: bytes = b"",
        authority: bytes = b"",
    ) -> None:
        self.prefix: Final = prefix
        self.matched: Final = matched
        self.pattern: Final = pattern
        self.substitution: Final = substitution  # a Python template: \g<1>, \\ (from RE2's \1)
        self.authority: Final = authority  # b"": keep the request's

    @property
    def rewrites_path(self) -> bool:
        return self.prefix is not None or self.pattern is not None

    def path(self, path: bytes) -> bytes:
        """The origin-form target (path and query) after the rewrite."""
        prefix = self.prefix
        if prefix is not None:
            matched = self.matched
            if matched < 0:
                query = path.find(b"?")
                return prefix if query < 0 else prefix + path[query:]
            return prefix + path[matched:]
        pattern = self.pattern
        if pattern is None:
            return path
        query = path.find(b"?")
        if query < 0:
            return pattern.sub(self.substitution, path)
        return pattern.sub(self.substitution, path[:query]) + path[query:]

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.prefix is not None:
            out["uri"] = self.prefix.decode("latin-1")
            out["matchedLength"] = self.matched
        if self.pattern is not None:
            out["uriRegexRewrite"] = {
                "match": self.pattern.pattern.decode("latin-1"),
                "rewrite": self.substitution.decode("latin-1"),
            }
        if self.authority:
            out["authority"] = self.authority.decode("latin-1")
        return out


# Envoy's retry_on tokens (router_filter.rst; RetryStateImpl::parseRetryOn and
# parseRetryGrpcOn), besides plain status codes, which Istio moves to retriable_status_codes.
RETRY_ON_HTTP: Final = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
    }
)
# grpc-status in the response headers (trailers-only) that each gRPC token retries on.
RETRY_ON_GRPC: Final = {
    "cancelled": 1,
    "deadline-exceeded": 4,
    "resource-exhausted": 8,
    "internal": 13,
    "unavailable": 14,
}
# What an attempt can fail with before a response, as ``on_failure`` is told it.
FAILURE_KINDS: Final = frozenset(
    {
        "connect-failure",  # TCP connect failed or timed out: nothing of the request was sent
        "reset-before-request",  # the connection ended before any request byte was written
        "reset",  # the connection ended or was reset after the request (or part) was sent
        "refused-stream",  # an HTTP/2 REFUSED_STREAM reset
        "per-try-timeout",  # the attempt's perTryTimeout expired (the router resets it)
        "overflow",  # a circuit breaker refused the attempt
    }
)
_GATEWAY_ERRORS = frozenset({502, 503, 504})
BACKOFF_BASE: Final = 0.025  # upstream.base_retry_backoff_ms
DEFAULT_HOST_PICKS: Final = 5  # Istio's host_selection_retry_max_attempts


class RetryPolicy:
    """``retries`` as Envoy's ``RetryPolicy``: ``attempts`` retries after the first try."""

    __slots__ = (
        "attempts",
        "per_try_timeout",
        "retry_on",
        "statuses",
        "remote_localities",
        "previous_hosts",
        "base",
        "max",
        "_5xx",
        "_gateway",
        "_reset",
        "_connect",
        "_before_request",
        "_refused",
        "_409",
        "_codes",
        "_ratelimited",
        "_grpc",
    )

    def __init__(
        self,
        attempts: int,
        retry_on: frozenset[str],
        statuses: frozenset[int] = frozenset(),
        per_try_timeout: float = 0.0,
        remote_localities: bool = False,
        previous_hosts: bool = True,
        backoff: float = BACKOFF_BASE,
    ) -> None:
        self.attempts: Final = attempts
        self.per_try_timeout: Final = per_try_timeout  # seconds; 0: none
        self.retry_on: Final = retry_on  # tokens (no status codes)
        self.statuses: Final = statuses  # retriable_status_codes
        self.remote_localities: Final = remote_localities  # previous_priorities
        self.previous_hosts: Final = previous_hosts  # retry_host_predicate previous_hosts
        self.base: Final = backoff
        self.max: Final = 10 * backoff  # Envoy: the cap is 10x the base when only it is set
        self._5xx: Final = "5xx" in retry_on
        self._gateway: Final = "gateway-error" in retry_on
        # RETRY_ON_5XX | RETRY_ON_GATEWAY_ERROR | RETRY_ON_RESET retry every reset.
        self._reset: Final = self._5xx or self._gateway or "reset" in retry_on
        self._connect: Final = "connect-failure" in retry_on
        self._before_request: Final = "reset-before-request" in retry_on
        self._refused: Final = "refused-stream" in retry_on
        self._409: Final = "retriable-4xx" in retry_on
        self._codes: Final = statuses if "retriable-status-codes" in retry_on else frozenset()
        self._ratelimited: Final = "envoy-ratelimited" in retry_on
        self._grpc: Final = frozenset(RETRY_ON_GRPC[t] for t in retry_on if t in RETRY_ON_GRPC)

    def on_status(self, status: int) -> bool:
        """Whether a response with this status is retried (``wouldRetryFromHeaders``)."""
        if self._5xx and status >= 500:
            return True
        if self._gateway and status in _GATEWAY_ERRORS:
            return True
        if self._409 and status == 409:
            return True
        return status in self._codes

    def on_response(self, status: int, headers: list[Header]) -> bool:
        """``on_status`` with what the headers add: ``x-envoy-ratelimited`` (retried only with
        ``envoy-ratelimited``, else never) and a ``grpc-status`` in the headers."""
        grpc: bytes | None = None
        for name, value in headers:
            if name == b"x-envoy-ratelimited":
                return self._ratelimited
            if name == b"grpc-status" and grpc is None:
                grpc = value
        if self.on_status(status):
            return True
        if grpc is not None and self._grpc:
            try:
                return int(grpc) in self._grpc
            except ValueError:
                return False
        return False

    def on_failure(self, kind: str) -> bool:
        """Whether an attempt that failed before a response is retried (``wouldRetryFromReset``;
        a per-try timeout takes the reset path as a local reset)."""
        if kind == "overflow":
            return False  # Envoy never retries an overflow
        if self._before_request and (kind == "connect-failure" or kind == "reset-before-request"):
            return True
        if self._reset:
            return True
        if kind == "per-try-timeout":
            return False
        if kind == "refused-stream":
            return self._refused
        if kind == "connect-failure":
            return self._connect
        return False

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first): Envoy's fully
        jittered exponential back-off, uniform in [0, (2^retry - 1) * base), at most ``max``."""
        ceiling = ((1 << min(retry, 30)) - 1) * self.base
        return min(rng.random() * ceiling, self.max)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "attempts": self.attempts,
            "retryOn": sorted(self.retry_on),
        }
        if self.statuses:
            out["retriableStatusCodes"] = sorted(self.statuses)
        if self.per_try_timeout:
            out["perTryTimeout"] = self.per_try_timeout
        if self.remote_localities:
            out["retryRemoteLocalities"] = True
        if not self.previous_hosts:
            out["retryIgnorePreviousHosts"] = False
        out["backoff"] = {"base": self.base, "max": self.max}
        return out


# Istio's built-in default when a route has no ``retries`` (retry.go: DefaultPolicy).
DEFAULT_RETRY: Final = RetryPolicy(
    2,
    frozenset(
        {"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"}
    ),
)

# gRPC status names Istio accepts in ``abort.grpcStatus`` (pkg/util/grpc/codes.go).
GRPC_CODES: Final = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
FAULT_ABORT_BODY: Final = b"fault filter abort"  # Envoy's local reply text for an abort
# The response flags Envoy prints before DI (its CoreResponseFlag order, which toShortString
# follows); every other comes after it.
_BEFORE_DI = frozenset({"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR"})


def with_delay_flag(flag: str) -> str:
    """A request's response flags with ``DI`` (a fault delay held it) in Envoy's order:
    ``DI``, ``DI,FI``, ``UF,DI``, ``DI,DC``."""
    if not flag or flag == "-":
        return "DI"
    parts = flag.split(",")
    index = 0
    while index < len(parts) and parts[index] in _BEFORE_DI:
        index += 1
    parts.insert(index, "DI")
    return ",".join(parts)


class FaultPolicy:
    """``fault``: a delay and an abort, each with its own chance, drawn independently per
    request (the delay first). Chances are Envoy's ``FractionalPercent``: ``numerator`` out of
    ``denominator`` (Istio: ``percentage`` as value*10000 of a MILLION, truncated; the
    deprecated ``percent`` of a HUNDRED); a numerator of 0 never fires."""

    __slots__ = (
        "delay_seconds",
        "delay_numerator",
        "delay_denominator",
        "abort_status",
        "grpc_status",
        "http2_error",
        "abort_numerator",
        "abort_denominator",
    )

    def __init__(
        self,
        delay_seconds: float = 0.0,
        delay_numerator: int = 0,
        delay_denominator: int = 1_000_000,
        abort_status: int = 0,
        abort_numerator: int = 0,
        abort_denominator: int = 1_000_000,
        grpc_status: int = -1,
        http2_error: str = "",
    ) -> None:
        self.delay_seconds: Final = delay_seconds
        self.delay_numerator: Final = delay_numerator if delay_seconds > 0 else 0
        self.delay_denominator: Final = delay_denominator
        # An HTTP status; a gRPC abort answers 200 (its grpc-status framing needs HTTP/2).
        self.abort_status: Final = abort_status
        self.grpc_status: Final = grpc_status  # -1: an httpStatus abort
        self.http2_error: Final = http2_error  # parsed, refused by validation (as Istio)
        self.abort_numerator: Final = abort_numerator if abort_status else 0
        self.abort_denominator: Final = abort_denominator

    def delay(self, rng: random.Random) -> float:
        """Seconds to hold this request; 0.0: not delayed this time."""
        numerator = self.delay_numerator
        if numerator == 0:
            return 0.0
        if numerator >= self.delay_denominator:
            return self.delay_seconds
        if rng.random() * self.delay_denominator < numerator:
            return self.delay_seconds
        return 0.0

    def abort(self, rng: random.Random) -> int:
        """The status to abort this request with; 0: not aborted this time."""
        numerator = self.abort_numerator
        if numerator == 0:
            return 0
        if numerator >= self.abort_denominator:
            return self.abort_status
        if rng.random() * self.abort_denominator < numerator:
            return self.abort_status
        return 0

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.delay_numerator:
            out["delay"] = {
                "fixedDelay": self.delay_seconds,
                "percent": 100.0 * self.delay_numerator / self.delay_denominator,
            }
        if self.abort_numerator:
            abort: dict[str, object] = {"httpStatus": self.abort_status}
            if self.grpc_status >= 0:
                abort = {"grpcStatus": self.grpc_status, "httpStatus": 200}
            abort["percent"] = 100.0 * self.abort_numerator / self.abort_denominator
            out["abort"] = abort
        return out


def overwrite(headers: list[Header], pairs: list[Header]) -> list[Header]:
    """``headers`` with each of ``pairs`` set (every entry of its name replaced), as Envoy's
    ``setInline`` does for the CORS response headers."""
    if not pairs:
        return headers
    names = frozenset(name for name, _ in pairs)
    kept = [h for h in headers if h[0] not in names]
    kept.extend(pairs)
    return kept


OriginMatch = Callable[[bytes], bool]


class CorsPolicy:
    """``corsPolicy`` as Envoy's CORS filter (current ``cors_filter.cc``) answers it.

    The stream calls ``preflight`` for an ``OPTIONS`` request with a non-empty ``Origin`` and a
    non-empty ``Access-Control-Request-Method``, and ``decorate`` for any other request with a
    non-empty ``Origin``.
    """

    __slots__ = (
        "origins",
        "methods",
        "headers",
        "expose",
        "max_age",
        "credentials",
        "forward_unmatched",
        "_describe",
    )

    def __init__(
        self,
        origins: tuple[OriginMatch, ...],
        methods: bytes = b"",
        headers: bytes = b"",
        expose: bytes = b"",
        max_age: bytes = b"",
        credentials: bool = False,
        forward_unmatched: bool = True,
        describe: dict[str, object] | None = None,
    ) -> None:
        self.origins: Final = origins
        self.methods: Final = methods  # joined with "," as istiod joins them; b"*": echo
        self.headers: Final = headers
        self.expose: Final = expose
        self.max_age: Final = max_age  # whole seconds as text; b"": not sent
        self.credentials: Final = credentials
        # unmatchedPreflights: FORWARD and UNSPECIFIED forward, IGNORE answers without origin.
        self.forward_unmatched: Final = forward_unmatched
        self._describe: Final = describe or {}

    def allows(self, origin: bytes) -> bool:
        """An origin is allowed when a matcher matches it, or matches the literal ``*``."""
        for match in self.origins:
            if match(origin) or match(b"*"):
                return True
        return False

    def preflight(
        self, origin: bytes, method: bytes, request_headers: bytes
    ) -> list[Header] | None:
        """The headers of the 200 that answers this preflight; None: forward it upstream.

        ``method`` and ``request_headers`` are the request's ``Access-Control-Request-Method``
        and ``-Headers`` values, echoed for a configured ``*``."""
        allowed = self.allows(origin)
        if not allowed and self.forward_unmatched:
            return None
        out: list[Header] = []
        if allowed:
            out.append((b"access-control-allow-origin", origin))
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        if self.methods:
            value = method if self.methods == b"*" else self.methods
            out.append((b"access-control-allow-methods", value))
        if self.headers:
            # "*" echoes the request's list, even an empty one (setInline of "").
            value = request_headers if self.headers == b"*" else self.headers
            out.append((b"access-control-allow-headers", value))
        if self.max_age:
            out.append((b"access-control-max-age", self.max_age))
        return out

    def decorate(self, origin: bytes) -> list[Header]:
        """The headers set on the response to a request from ``origin`` (none if not allowed)."""
        if not self.allows(origin):
            return []
        out: list[Header] = [(b"access-control-allow-origin", origin)]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        if self.expose:
            out.append((b"access-control-expose-headers", self.expose))
        return out

    def describe(self) -> dict[str, object]:
        return dict(self._describe)


def _set_one(headers: list[Header], name: bytes, value: bytes) -> list[Header]:
    """``headers`` with ``name`` set to ``value`` (a client's copies replaced), appended last;
    the list is copied only when the client sent the name."""
    for key, _ in headers:
        if key == name:
            headers = [h for h in headers if h[0] != name]
            break
    headers.append((name, value))
    return headers


# Where Envoy keeps what a rewrite replaced (its router's headers, not suppressed by Istio).
ORIGINAL_PATH: Final = b"x-envoy-original-path"
ORIGINAL_HOST: Final = b"x-envoy-original-host"


class RoutePolicy:
    """Everything a route (and the destination chosen for this request) asks of the stream.

    ``request_ops`` and ``response_ops`` already hold the route's and the destination's ops in
    Envoy's order. ``retry`` None means no retries at all (``attempts: 0``).
    """

    __slots__ = (
        "timeout",
        "retry",
        "fault",
        "request_ops",
        "response_ops",
        "rewrite",
        "cors",
        "local_headers",
    )

    def __init__(
        self,
        timeout: float = 0.0,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        fault: FaultPolicy | None = None,
        request_ops: HeaderOps | None = None,
        response_ops: HeaderOps | None = None,
        rewrite: Rewrite | None = None,
        cors: CorsPolicy | None = None,
    ) -> None:
        self.timeout: Final = timeout  # seconds; 0: none (Istio's default)
        self.retry: Final = retry
        self.fault: Final = fault
        self.request_ops: Final = request_ops
        self.response_ops: Final = response_ops
        self.rewrite: Final = rewrite
        self.cors: Final = cors
        # The response ops' result on a local reply (timeouts, 503s, fault aborts): Envoy's
        # filter manager applies the route's response ops to those too. Made once here.
        self.local_headers: Final = (
            tuple(response_ops.apply([])) if response_ops is not None else ()
        )

    def finalize_request(
        self, path: bytes, authority: bytes, headers: list[Header]
    ) -> tuple[bytes, bytes, list[Header]]:
        """The request the upstream (and a shadow) gets: Envoy's ``finalizeRequestHeaders``,
        in its order: the header ops, then the host rewrite (the old value kept in
        ``x-envoy-original-host``), then the path rewrite (the old path and query kept in
        ``x-envoy-original-path``). Call it only when ``request_ops`` or ``rewrite`` is set."""
        ops = self.request_ops
        if ops is not None:
            headers = ops.apply(headers)
        rewrite = self.rewrite
        if rewrite is not None:
            if rewrite.authority:
                headers = _set_one(headers, ORIGINAL_HOST, authority)
                authority = rewrite.authority
            if rewrite.rewrites_path:
                headers = _set_one(headers, ORIGINAL_PATH, path)
                path = rewrite.path(path)
        return path, authority, headers

    def describe(self) -> dict[str, object]:
        """The compiled policy as ``/config_dump`` shows it."""
        out: dict[str, object] = {"timeout": self.timeout or None}
        out["retries"] = self.retry.describe() if self.retry is not None else {"attempts": 0}
        if self.fault is not None:
            out["fault"] = self.fault.describe()
        headers: dict[str, object] = {}
        if self.request_ops is not None:
            headers["request"] = self.request_ops.describe()
        if self.response_ops is not None:
            headers["response"] = self.response_ops.describe()
        if headers:
            out["headers"] = headers
        if self.rewrite is not None:
            out["rewrite"] = self.rewrite.describe()
        if self.cors is not None:
            out["corsPolicy"] = self.cors.describe()
        return out

    def __repr__(self) -> str:
        return f"RoutePolicy({self.describe()!r})"


# What a route that configures no policy carries: no timeout and Istio's default retry policy
# (which applies to every route without ``retries``), nothing else.
NO_POLICY: Final = RoutePolicy()
# Everything off, retries too: what ``attempts: 0`` alone gives, and Istio's passthrough routes.
POLICY_OFF: Final = RoutePolicy(retry=None)
