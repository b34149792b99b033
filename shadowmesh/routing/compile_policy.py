"""An HTTPRoute's policy compiled from the model into ``routing.policy`` objects, once per
route-table compile, as istiod translates it for Envoy (``pilot/pkg/networking/core/route``:
``TranslateRoute``, ``applyHTTPRouteDestination``, ``processDestination``,
``processWeightedDestination``, ``TranslateHeadersOperations``, ``TranslateFault``,
``TranslateCORSPolicy``, ``ApplyRedirect``; ``retry.ConvertPolicy``).

One ``RoutePolicy`` per (route, destination, and match block where a prefix rewrite makes the
matched portion differ), so the request path picks one and builds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from shadowmesh.model.httppolicy import (
    SUPPORTED_REDIRECT_CODES,
    is_authority,
    is_internal,
    parse_retry_on,
)
from shadowmesh.model.resources import (
    CorsPolicy as CorsSpec,
)
from shadowmesh.model.resources import (
    HeaderOperations,
    HTTPFault,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
    RouteDestination,
    StringMatch,
)
from shadowmesh.routing.answers import Answer, DirectResponse, NoAction, Redirect
from shadowmesh.routing.policy import (
    BACKOFF_BASE,
    DEFAULT_RETRY,
    GRPC_CODES,
    INLINE_REQUEST,
    INLINE_RESPONSE,
    NO_POLICY,
    CorsPolicy,
    FaultPolicy,
    Header,
    HeaderOps,
    RetryPolicy,
    Rewrite,
    RoutePolicy,
)


def matched_length(match: HTTPMatchRequest | None) -> int:
    """How much of the path a match block covers, as Envoy gives ``prefix_rewrite`` it: the
    prefix's or exact path's length, -1 for a regex (the whole path), and "/" for no uri (istiod
    gives such a route ``prefix: /``)."""
    uri = match.uri if match is not None else None
    if uri is None:
        return 1
    if uri.kind == "regex":
        return -1
    return len(uri.value.encode())


def block_lengths(route: HTTPRoute) -> tuple[int, ...]:
    """The matched length of each match block (one for a route without matches)."""
    return tuple(matched_length(m) for m in route.match) or (1,)


def route_policy(
    route: HTTPRoute, destination: RouteDestination | None, weighted: bool, matched: int
) -> RoutePolicy:
    """The policy a request gets on ``route`` when ``destination`` was picked."""
    request_ops, authority = _request_ops(route, destination, weighted)
    rewrite = _rewrite(route, matched, authority)
    retry = retry_policy(route.retries)
    timeout = route.timeout or 0.0
    response_ops = _response_ops(route, destination, weighted)
    fault = fault_policy(route.fault) if route.fault is not None else None
    cors = cors_policy(route.cors_policy) if route.cors_policy is not None else None
    if (
        timeout == 0.0
        and retry is DEFAULT_RETRY
        and request_ops is None
        and response_ops is None
        and rewrite is None
        and fault is None
        and cors is None
    ):
        return NO_POLICY  # one object for every route that configures nothing
    return RoutePolicy(timeout, retry, fault, request_ops, response_ops, rewrite, cors)


# --- retries ------------------------------------------------------------------------------------


def retry_policy(retries: HTTPRetry | None) -> RetryPolicy | None:
    """``retry.ConvertPolicy``: unset is Istio's default; ``attempts <= 0`` none at all."""
    if retries is None:
        return DEFAULT_RETRY
    if retries.attempts <= 0:
        return None
    if retries.retry_on:
        tokens, codes = parse_retry_on(retries.retry_on)
    else:
        tokens, codes = tuple(DEFAULT_RETRY.retry_on), ()
    previous = retries.retry_ignore_previous_hosts
    return RetryPolicy(
        retries.attempts,
        frozenset(tokens),
        frozenset(codes),
        per_try_timeout=retries.per_try_timeout or 0.0,
        remote_localities=bool(retries.retry_remote_localities),
        previous_hosts=True if previous is None else previous,
        backoff=retries.backoff or BACKOFF_BASE,
    )


# --- fault --------------------------------------------------------------------------------------


def fault_policy(fault: HTTPFault) -> FaultPolicy | None:
    status = fault.abort_status or 0
    grpc = GRPC_CODES[fault.abort_grpc] if fault.abort_grpc is not None else -1
    policy = FaultPolicy(
        delay_seconds=fault.delay or 0.0,
        delay_numerator=fault.delay_chance.numerator if fault.delay else 0,
        delay_denominator=fault.delay_chance.denominator,
        abort_status=status,
        abort_numerator=fault.abort_chance.numerator if status else 0,
        abort_denominator=fault.abort_chance.denominator,
        grpc_status=grpc,
    )
    return policy if policy.delay_numerator or policy.abort_numerator else None


# --- headers ------------------------------------------------------------------------------------


def _sorted_ops(pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """``translateAppendHeaders``: ``:``-prefixed and ``host`` keys left out, sorted by key."""
    return tuple(sorted((p for p in pairs if not is_internal(p[0])), key=lambda p: p[0]))


def _header(name: str, value: str) -> Header | None:
    """A name lower-cased (Envoy's LowerCaseString) and a value with ``%%`` unescaped; None
    for an empty value, which Envoy drops."""
    text = value.replace("%%", "%")
    if not text:
        return None
    return (name.lower().encode("latin-1"), text.encode())


def _parser(
    lists: list[HeaderOperations], inline: frozenset[bytes], then: HeaderOps | None = None
) -> HeaderOps | None:
    """One Envoy HeaderParser from the lists appended in order."""
    sets: list[Header] = []
    adds: list[Header] = []
    removes: list[bytes] = []
    for ops in lists:
        sets += [h for h in (_header(n, v) for n, v in _sorted_ops(ops.set)) if h is not None]
        adds += [h for h in (_header(n, v) for n, v in _sorted_ops(ops.add)) if h is not None]
        removes += [n.lower().encode("latin-1") for n in ops.remove if not is_internal(n)]
    if not (sets or adds or removes):
        return then
    return HeaderOps(tuple(sets), tuple(adds), tuple(removes), inline=inline, then=then)


def _authority(ops: HeaderOperations) -> str:
    """A request ``set`` or ``add`` of host/:authority: a host rewrite; ``set`` beats ``add``."""
    found = ""
    for name, value in ops.add:
        if is_authority(name):
            found = value
    for name, value in ops.set:
        if is_authority(name):
            found = value
    return found


def _request_ops(
    route: HTTPRoute, destination: RouteDestination | None, weighted: bool
) -> tuple[HeaderOps | None, str]:
    """The request ops and the authority they set. A single destination's lists are appended to
    the route's (evaluated later); a weighted one's run first, the route's after them."""
    mine = route.headers.request if route.headers is not None else HeaderOperations()
    dest_headers = destination.headers if destination is not None else None
    theirs = dest_headers.request if dest_headers is not None else HeaderOperations()
    # The route's authority (from its headers or rewrite) wins; the destination's fills in.
    authority = _authority(mine) or _authority(theirs)
    if weighted:
        ops = _parser([theirs], INLINE_REQUEST, then=_parser([mine], INLINE_REQUEST))
    else:
        ops = _parser([mine, theirs], INLINE_REQUEST)
    return ops, authority


def _response_ops(
    route: HTTPRoute, destination: RouteDestination | None, weighted: bool
) -> HeaderOps | None:
    mine = route.headers.response if route.headers is not None else HeaderOperations()
    dest_headers = destination.headers if destination is not None else None
    theirs = dest_headers.response if dest_headers is not None else HeaderOperations()
    if weighted:
        return _parser([theirs], INLINE_RESPONSE, then=_parser([mine], INLINE_RESPONSE))
    return _parser([mine, theirs], INLINE_RESPONSE)


def route_response_ops(route: HTTPRoute) -> HeaderOps | None:
    """The route's own response ops: what its redirect or direct response gets."""
    return _response_ops(route, None, False)


# --- rewrite ------------------------------------------------------------------------------------


def _rewrite(route: HTTPRoute, matched: int, header_authority: str) -> Rewrite | None:
    rewrite = route.rewrite
    authority = (rewrite.authority if rewrite is not None else "") or header_authority
    prefix: bytes | None = None
    pattern: re.Pattern[bytes] | None = None
    substitution = b""
    if rewrite is not None and rewrite.uri_regex is not None:
        pattern = re.compile(rewrite.uri_regex[0].encode())
        substitution = re2_substitution(rewrite.uri_regex[1]).encode()
    elif rewrite is not None and rewrite.uri:
        prefix = rewrite.uri.encode()
    if prefix is None and pattern is None and not authority:
        return None
    return Rewrite(prefix, matched, pattern, substitution, authority.encode())


def re2_substitution(rewrite: str) -> str:
    """RE2's rewrite string (``\\1``, ``\\\\``) as a Python ``re`` template."""
    out: list[str] = []
    index = 0
    while index < len(rewrite):
        char = rewrite[index]
        if char == "\\" and index + 1 < len(rewrite):
            following = rewrite[index + 1]
            out.append(f"\\g<{following}>" if following.isdigit() else "\\\\")
            index += 2
            continue
        out.append("\\\\" if char == "\\" else char)
        index += 1
    return "".join(out)


# --- CORS ---------------------------------------------------------------------------------------


def _origin_match(match: StringMatch) -> Callable[[bytes], bool]:
    value = match.value.encode()
    if match.kind == "exact":
        return lambda origin: origin == value
    if match.kind == "prefix":
        return lambda origin: origin.startswith(value)
    pattern = re.compile(value)
    return lambda origin: pattern.fullmatch(origin) is not None


def cors_policy(spec: CorsSpec) -> CorsPolicy:
    """``TranslateCORSPolicy``: lists joined with "," and ``max_age`` in whole seconds."""
    described: dict[str, object] = {
        "allowOrigins": [{m.kind: m.value} for m in spec.allow_origins],
        "allowMethods": ",".join(spec.allow_methods),
        "allowHeaders": ",".join(spec.allow_headers),
        "exposeHeaders": ",".join(spec.expose_headers),
        "maxAge": str(spec.max_age) if spec.max_age is not None else "",
        "allowCredentials": bool(spec.allow_credentials),
        "forwardNotMatchingPreflights": spec.unmatched_preflights != "IGNORE",
    }
    return CorsPolicy(
        tuple(_origin_match(m) for m in spec.allow_origins),
        methods=",".join(spec.allow_methods).encode(),
        headers=",".join(spec.allow_headers).encode(),
        expose=",".join(spec.expose_headers).encode(),
        max_age=str(spec.max_age).encode() if spec.max_age is not None else b"",
        credentials=bool(spec.allow_credentials),
        forward_unmatched=spec.unmatched_preflights != "IGNORE",
        describe=described,
    )


# --- redirect and directResponse ----------------------------------------------------------------


def answer(route: HTTPRoute, matched: int) -> Answer:
    """The route's redirect or direct response (it has one of them)."""
    ops = route_response_ops(route)
    before = before_router(route, ops)
    direct = route.direct_response
    if direct is not None:
        return DirectResponse(direct.status, direct.body or b"", ops, route.name, before)
    redirect = route.redirect
    if redirect is None:
        raise ValueError(f"route {route.name!r} neither redirects nor answers directly")
    if redirect.code not in SUPPORTED_REDIRECT_CODES:
        return NoAction(route.name)
    return Redirect(
        redirect.code,
        scheme=redirect.scheme,
        host=redirect.authority,
        port=redirect.port or 0,
        port_selector=redirect.port is not None or bool(redirect.derive_port),
        from_request_port=redirect.derive_port == "FROM_REQUEST_PORT",
        path=redirect.uri,
        prefix=redirect.prefix_rewrite or None,
        matched=matched,
        ops=ops,
        route_name=route.name,
        before=before,
    )


def before_router(route: HTTPRoute, response_ops: HeaderOps | None) -> RoutePolicy | None:
    """What of a redirect or direct-response route acts before the router answers: istiod
    gives such a route its fault and CORS filter configs too (``TypedPerFilterConfig``)."""
    fault = fault_policy(route.fault) if route.fault is not None else None
    cors = cors_policy(route.cors_policy) if route.cors_policy is not None else None
    if fault is None and cors is None:
        return None
    return RoutePolicy(0.0, None, fault, None, response_ops, None, cors)
