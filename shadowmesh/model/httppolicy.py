"""An HTTPRoute's policy fields read and validated: headers, retries, fault, rewrite, redirect,
directResponse and corsPolicy.

Two layers of checks, as a cluster applies them: first the CRD's structural schema
(``shapes.check``: unknown fields, types, durations of at least 1ms, enums, with Kubernetes'
wording), then Istio's webhook (``pkg/config/validation``: ``ValidateHTTPRetry``,
``validateHTTPFaultInjection``, ``validateHTTPRewrite``, ``validateAuthorityRewrite``,
``validateHTTPRedirect``, ``validateHTTPDirectResponse``, ``validateCORSPolicy``, the header
operation checks), with Istio's wording. The values are read here without reporting their
types again (the first layer did). What istiod's translation drops (an exponential delay, an
abort with no error type) is dropped here too, with its log line as a warning.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from shadowmesh.model import shapes, validate
from shadowmesh.model.fields import Issues, Obj
from shadowmesh.model.matches import string_match
from shadowmesh.model.resources import (
    CorsPolicy,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPFault,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    Percent,
    StringMatch,
)

MILLION = 1_000_000
_UINT32 = 2**32

# Envoy's retry_on and retry_grpc_on tokens, as Istio's validation lists them
# (pkg/config/validation/agent/validation.go: supportedRetryOnPolicies).
RETRY_ON_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
# The codes Go's net/http.StatusText knows: a retryOn part that is one of them is a status code.
GO_STATUS_CODES = frozenset(
    [100, 101, 102, 103, 226, 300, 301, 302, 303, 304, 305, 307, 308, 421, 422, 423, 424, 425]
    + [426, 428, 429, 431, 451, 506, 507, 508, 510, 511]
    + list(range(200, 209))
    + list(range(400, 419))
    + list(range(500, 506))
)
_GO_ATOI = re.compile(r"[+-]?\d+")
# pkg/util/grpc/codes.go: SupportedGRPCStatus.
GRPC_STATUS_NAMES = (
    "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS "
    "PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE "
    "UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED"
).split()
CORS_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"}
)
_TCHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile("[^\u0000-\u0008\u000a-\u001f\u007f]*")
_KIB = 1024
_MIB = 1024 * _KIB

RETRIES_FIELDS = (
    "attempts",
    "per_try_timeout",
    "retry_on",
    "retry_remote_localities",
    "retry_ignore_previous_hosts",
    "backoff",
)
_HEADER_OPS_FIELDS = ("set", "add", "remove")


def _quiet(issues: Issues) -> Issues:
    """Where a re-read records its type errors: the structural check reported them already."""
    return Issues(issues.kind, issues.namespace, issues.name)


def _read(value: Any, path: str, issues: Issues, fields: tuple[str, ...]) -> Obj | None:
    return Obj.of(value, path, _quiet(issues), fields, proto=True) if value is not None else None


def _warn(issues: Issues, path: str, message: str) -> None:
    """A warning in Istio's words about one field."""
    issues.warn(f"{issues.label}: {path}: {message}")


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string, near enough: double-quoted with JSON's escapes."""
    return json.dumps(text, ensure_ascii=False)


def go_float(value: float) -> str:
    """Go's ``%v`` of a float64: ``150``, ``0.5``, ``1e-05``."""
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _seconds(obj: Obj, name: str, issues: Issues) -> float | None:
    """A Duration field in seconds; the CRD rule reported one under 1ms, Istio's
    ``ValidateDuration`` adds whole milliseconds."""
    value = obj.get(name)
    if not isinstance(value, str):
        return None
    try:
        seconds = validate.parse_duration(value)
    except ValueError:
        return None
    if seconds < Fraction(1, 1000):
        return None
    if (seconds * 1000).denominator != 1:
        issues.error(obj.path(name), "only durations to ms precision are supported")
    return float(seconds)


# --- headers ----------------------------------------------------------------------------------


def parse_headers(value: Any, path: str, issues: Issues) -> Headers | None:
    """``headers`` of a route or destination, checked as ``validateHTTPRoute`` checks them."""
    shapes.check(value, shapes.HEADERS, path, issues)
    obj = _read(value, path, issues, ("request", "response"))
    if obj is None:
        return None
    request = _operations(obj, "request", issues)
    response = _operations(obj, "response", issues)
    return Headers(request=request, response=response)


def _operations(headers: Obj, side: str, issues: Issues) -> HeaderOperations:
    obj = _read(headers.get(side), headers.path(side), issues, _HEADER_OPS_FIELDS)
    if obj is None:
        return HeaderOperations()
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for op in ("set", "add"):
        pairs = []
        for name, val in _string_map(obj.get(op)).items():
            where = f"{obj.path(op)}.{name}"
            problem = (
                _request_write_name(name) if side == "request" else _operation_name(name)
            ) or _header_value(val)
            if problem:
                issues.error(where, problem)
            elif "%" in val.replace("%%", ""):
                _warn(
                    issues, where, "Envoy's %VARIABLE% formatters are not evaluated by shadowmesh"
                )
            pairs.append((name, val))
        out[op] = tuple(pairs)
    removes = []
    raw = obj.get("remove")
    for index, name in enumerate(raw if isinstance(raw, list) else ()):
        if not isinstance(name, str):
            continue
        problem = _operation_name(name)
        if problem:
            issues.error(f"{obj.path('remove')}[{index}]", problem)
        removes.append(name)
    return HeaderOperations(set=out["set"], add=out["add"], remove=tuple(removes))


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def is_authority(name: str) -> bool:
    return name.lower() in (":authority", "host")


def is_internal(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def _request_write_name(name: str) -> str | None:
    """``ValidateHTTPHeaderWithAuthorityOperationName``: request ``set`` / ``add``."""
    if not name:
        return "header name cannot be empty"
    if is_internal(name) and not is_authority(name):
        return f'invalid header {go_quote(name)}: header cannot have ":" prefix'
    return None


def _operation_name(name: str) -> str | None:
    """``ValidateHTTPHeaderOperationName``: request ``remove``, every response op."""
    if not name:
        return "header name cannot be empty"
    if name.lower() == "host":
        return f"invalid header {go_quote(name)}: cannot set Host header"
    if is_internal(name):
        return f'invalid header {go_quote(name)}: header cannot have ":" prefix'
    return None


def _header_value(value: str) -> str | None:
    """``ValidateHTTPHeaderValue``: no control characters, and Envoy's formatter syntax."""
    if not _HEADER_VALUE.fullmatch(value):
        return f"header value configuration {value} is invalid"
    problem = _formatter_problem(value)
    return f"header value configuration: {problem}" if problem else None


def _formatter_problem(value: str) -> str | None:
    """Istio's ``validateHeaderValue``, a port of Envoy's header formatter parser."""
    state, pos = "literal", 0
    while pos < len(value):
        ch = value[pos]
        more = pos + 1 < len(value)
        if state == "literal":
            if ch == "%":
                if not more:
                    return "invalid header configuration. Un-escaped %"
                if value[pos + 1] == "%":
                    pos += 1
                else:
                    state = "name"
        elif state == "name":
            if ch == "%":
                state = "literal"
            elif ch == "(":
                state = "array"
        elif state == "array":
            if ch == "[":
                state = "string_start"
            elif ch != " ":
                state = "string"
        elif state == "delimiter":
            if ch == ",":
                state = "string_start"
            elif ch == "]":
                state = "args_end"
            elif ch != " ":
                return "invalid header configuration. Expecting ',', ']', or whitespace"
        elif state == "string_start":
            if ch == '"':
                state = "string"
            elif ch != " ":
                return "invalid header configuration. Expecting '\"'"
        elif state == "string":
            if ch == "\\":
                if not more:
                    return "invalid header configuration. Un-terminated backslash in JSON string"
                pos += 1
            elif ch == ")":
                state = "variable_end"
            elif ch == '"':
                state = "delimiter"
        elif state == "args_end":
            if ch == ")":
                state = "variable_end"
            elif ch != " ":
                return (
                    "invalid header configuration. Expecting ')' or whitespace after '{}', "
                    "but found '{}'"
                )
        elif state == "variable_end":
            if ch == "%":
                state = "literal"
            elif ch != " ":
                return "invalid header configuration. Expecting '%' or whitespace after"
        pos += 1
    if state != "literal":
        return f"invalid header configuration. Un-terminated variable expression '{value}'"
    return None


def check_authority_rewrite(
    rewrite: HTTPRewrite | None, headers: Headers | None, path: str, issues: Issues
) -> None:
    """``validateAuthorityRewrite``: the authority is rewritten in one place only."""
    current = rewrite.authority if rewrite is not None else ""
    if headers is None:
        return
    for name, value in (*headers.request.set, *headers.request.add):
        if not is_authority(name):
            continue
        if current:
            issues.error(
                path,
                f"authority header cannot be set multiple times: have {go_quote(current)}, "
                f"attempting to set {go_quote(value)}",
            )
            return
        current = value


# --- retries ----------------------------------------------------------------------------------


def parse_retries(value: Any, path: str, issues: Issues) -> HTTPRetry | None:
    """``retries``, checked as ``ValidateHTTPRetry``."""
    shapes.check(value, shapes.RETRIES, path, issues)
    obj = _read(value, path, issues, RETRIES_FIELDS)
    if obj is None:
        return None
    attempts = obj.get("attempts")
    attempts = attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0
    if attempts < 0:
        issues.error(obj.path("attempts"), "attempts cannot be negative")
    retry_on = obj.get("retryOn")
    retry_on = retry_on if isinstance(retry_on, str) else ""
    localities = obj.get("retryRemoteLocalities")
    if attempts == 0 and (obj.has("perTryTimeout") or retry_on or localities is not None):
        issues.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    if retry_on:
        for part in retry_on.split(","):  # Istio's validation does not trim, its translation does
            if not is_status_code(part) and part not in RETRY_ON_POLICIES:
                issues.error(obj.path("retryOn"), f"{go_quote(part)} is not a valid retryOn policy")
    if localities is True and attempts > 0:
        # Envoy's previous_priorities moves retries to the next locality priority; shadowmesh
        # has no locality load balancing, so every endpoint is of one priority.
        issues.not_acted_on(
            obj.path("retryRemoteLocalities"),
            "shadowmesh has no locality priorities: a retry goes to another endpoint of the "
            "same cluster",
        )
    if attempts > 0 and "retriable-headers" in (t.strip() for t in retry_on.split(",")):
        # Istio sets no retriable_headers; Envoy would still read the client's
        # x-envoy-retriable-header-names, which shadowmesh does not.
        issues.not_acted_on(
            obj.path("retryOn"),
            "retriable-headers retries no response: the x-envoy-retriable-header-names "
            "request header is not read",
        )
    ignore = obj.get("retryIgnorePreviousHosts")
    return HTTPRetry(
        attempts=attempts,
        per_try_timeout=_seconds(obj, "perTryTimeout", issues),
        retry_on=retry_on,
        retry_remote_localities=localities if isinstance(localities, bool) else None,
        retry_ignore_previous_hosts=ignore if isinstance(ignore, bool) else None,
        backoff=_seconds(obj, "backoff", issues),
    )


def is_status_code(part: str) -> bool:
    """Go's ``http.StatusText(strconv.Atoi(part)) != ""``."""
    return _GO_ATOI.fullmatch(part) is not None and int(part) in GO_STATUS_CODES


def parse_retry_on(retry_on: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """istiod's ``parseRetryOn``: parts trimmed, empties skipped; status codes apart, and
    ``retriable-status-codes`` added when there are codes and the text does not hold it."""
    tokens: list[str] = []
    codes: list[int] = []
    for raw in retry_on.split(","):
        part = raw.strip()
        if not part:
            continue
        if is_status_code(part):
            codes.append(int(part))
        else:
            tokens.append(part)
    if codes and "retriable-status-codes" not in ",".join(tokens):
        tokens.append("retriable-status-codes")
    return tuple(tokens), tuple(codes)


# --- fault ------------------------------------------------------------------------------------

_DELAY_FIELDS = ("fixed_delay", "exponential_delay", "percentage", "percent")
_ABORT_FIELDS = ("http_status", "grpc_status", "http2_error", "percentage")


def parse_fault(value: Any, path: str, issues: Issues) -> HTTPFault | None:
    """``fault``, checked as ``validateHTTPFaultInjection``, resolved as ``TranslateFault``."""
    shapes.check(value, shapes.FAULT, path, issues)
    obj = _read(value, path, issues, ("delay", "abort"))
    if obj is None:
        return None
    if not obj.has("delay") and not obj.has("abort"):
        issues.error(path, "HTTP fault injection must have an abort and/or a delay")
        return None
    delay, delay_chance = _delay(obj, issues)
    status, grpc, abort_chance = _abort(obj, issues)
    if delay is None and status is None:
        return None
    return HTTPFault(
        delay=delay,
        delay_chance=delay_chance,
        abort_status=status,
        abort_grpc=grpc,
        abort_chance=abort_chance,
    )


def _chance(parent: Obj, issues: Issues) -> Percent | None:
    """``percentage`` as ``validatePercentage`` checks it and ``translatePercentToFractional
    Percent`` turns it: value*10000 of a MILLION, truncated as Go's uint32() does."""
    percentage = _read(parent.get("percentage"), parent.path("percentage"), issues, ("value",))
    if percentage is None:
        return None
    value = percentage.get("value")
    value = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
    if value < 0.0 or value > 100.0 or 0.0 < value < 0.0001:
        issues.error(
            parent.path("percentage"),
            f"percentage {go_float(value)} is neither 0.0, nor in range [0.0001, 100.0]",
        )
        return Percent(0, MILLION)
    return Percent(int(value * 10000), MILLION)


def _delay(fault: Obj, issues: Issues) -> tuple[float | None, Percent]:
    delay = _read(fault.get("delay"), fault.path("delay"), issues, _DELAY_FIELDS)
    if delay is None:
        return None, Percent(0, 100)
    chance = _chance(delay, issues)
    if chance is None:
        percent = delay.get("percent")
        percent = percent if isinstance(percent, int) and not isinstance(percent, bool) else 0
        chance = Percent(percent % _UINT32, 100)  # the deprecated integer percent, uint32()
    if delay.has("fixedDelay") and delay.has("exponentialDelay"):
        issues.error(
            delay.at, _oneof("exponentialDelay", "HTTPFaultInjection.Delay.http_delay_type")
        )
    if delay.has("exponentialDelay"):
        issues.error(delay.path("exponentialDelay"), "exponentialDelay not supported yet")
        return None, chance
    seconds = _seconds(delay, "fixedDelay", issues)
    if seconds is None:
        if not delay.has("fixedDelay"):
            _warn(issues, delay.at, "Exponential faults are not yet supported")
        return None, chance
    return seconds, chance


def _abort(fault: Obj, issues: Issues) -> tuple[int | None, str | None, Percent]:
    abort = _read(fault.get("abort"), fault.path("abort"), issues, _ABORT_FIELDS)
    if abort is None:
        return None, None, Percent(0, 100)
    # Unset, Envoy's FaultAbort.percentage is the proto default 0/HUNDRED: never.
    chance = _chance(abort, issues) or Percent(0, 100)
    kinds = [k for k in ("httpStatus", "grpcStatus", "http2Error") if abort.has(k)]
    if len(kinds) > 1:
        issues.error(abort.at, _oneof(kinds[1], "HTTPFaultInjection.Abort.error_type"))
    kind = kinds[0] if kinds else ""
    if kind == "grpcStatus":
        name = abort.get("grpcStatus")
        if isinstance(name, str) and name in GRPC_STATUS_NAMES:
            return 200, name, chance  # a gRPC abort on HTTP/1 answers 200 (Envoy's abortStatus)
        issues.error(
            abort.path("grpcStatus"),
            f"gRPC status {go_quote(str(name))} is not supported. See "
            "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported "
            "codes, for example 'NOT_FOUND'",
        )
    elif kind == "http2Error":
        issues.error(abort.path("http2Error"), "HTTP/2 abort fault injection not supported yet")
    elif kind == "httpStatus":
        status = abort.get("httpStatus")
        if isinstance(status, int) and not isinstance(status, bool):
            problem = http_status(status)
            if problem:
                issues.error(abort.path("httpStatus"), problem)
            else:
                return status, None, chance
    else:
        _warn(issues, abort.at, "abort configured, but error type not set")
    return None, None, Percent(0, 100)  # dropped, as istiod drops it


def http_status(status: int) -> str | None:
    """``validateHTTPStatus`` (which lets 600 through, its message notwithstanding)."""
    if status < 200 or status > 600:
        return f"HTTP status {status} is not in range 200-599"
    return None


def _oneof(name: str, field: str) -> str:
    """protojson's refusal of a second member of a oneof."""
    return f'error parsing "{name}", oneof istio.networking.v1alpha3.{field} is already set'


# --- rewrite ----------------------------------------------------------------------------------


def parse_rewrite(value: Any, path: str, issues: Issues) -> HTTPRewrite | None:
    """``rewrite``, checked as ``validateHTTPRewrite``."""
    shapes.check(value, shapes.REWRITE, path, issues)
    obj = _read(value, path, issues, ("uri", "authority", "uri_regex_rewrite"))
    if obj is None:
        return None
    uri = _text(obj, "uri")
    authority = _text(obj, "authority")
    regex = _read(
        obj.get("uriRegexRewrite"), obj.path("uriRegexRewrite"), issues, ("match", "rewrite")
    )
    if uri and regex is not None:
        issues.error(path, "rewrite may only contain one of URI or UriRegexRewrite")
        return None
    if not uri and regex is None and not authority:
        issues.error(
            path,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of "
            "URI or UriRegexRewrite may be specified",
        )
        return None
    pair = None
    if regex is not None:
        match, replacement = _text(regex, "match"), _text(regex, "rewrite")
        where = obj.path("uriRegexRewrite")
        if not match or not replacement:
            issues.error(where, "UriRegexRewrite has errors")
            issues.error(
                where, "UriRegexRewrite requires both Rewrite and Match fields to be specified"
            )
            return None
        problem = validate.regex(match, "HTTPRewrite.UriRegexRewrite.Match") or _re2_rewrite(
            replacement, match
        )
        if problem:
            issues.error(where, "UriRegexRewrite has errors")
            issues.error(regex.path("match"), problem)
            return None
        pair = (match, replacement)
    return HTTPRewrite(uri=uri, uri_regex=pair, authority=authority)


def _text(obj: Obj, name: str) -> str:
    value = obj.get(name)
    return value if isinstance(value, str) else ""


def _re2_rewrite(rewrite: str, pattern: str) -> str | None:
    """RE2's ``CheckRewriteString``, which Envoy runs on the substitution: only ``\\0``-``\\9``
    and ``\\\\`` escapes, and no group the pattern does not have."""
    groups = re.compile(pattern).groups
    index = 0
    while index < len(rewrite):
        if rewrite[index] == "\\":
            following = rewrite[index + 1 : index + 2]
            if following.isdigit():
                if int(following) > groups:
                    return (
                        f"Rewrite schema requests {following} matches, but the regexp only has "
                        f"{groups} parenthesized subexpressions"
                    )
            elif following != "\\":
                return "invalid rewrite pattern"
            index += 2
            continue
        index += 1
    return None


# --- redirect ---------------------------------------------------------------------------------

_REDIRECT_FIELDS = (
    "uri",
    "authority",
    "port",
    "derive_port",
    "scheme",
    "redirect_code",
    "prefix_rewrite",
)
SUPPORTED_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


def parse_redirect(
    value: Any, path: str, matches: tuple[HTTPMatchRequest, ...], issues: Issues
) -> HTTPRedirect | None:
    """``redirect``, checked as ``validateHTTPRedirect`` (its first problem only, as it returns)."""
    shapes.check(value, shapes.REDIRECT, path, issues)
    obj = _read(value, path, issues, _REDIRECT_FIELDS)
    if obj is None:
        return None
    uri, prefix = _text(obj, "uri"), _text(obj, "prefixRewrite")
    authority, scheme = _text(obj, "authority"), _text(obj, "scheme")
    port = obj.get("port")
    port = port if isinstance(port, int) and not isinstance(port, bool) else None
    derive = _text(obj, "derivePort")
    code = obj.get("redirectCode")
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    has_port = obj.has("port") or obj.has("derivePort")
    problem = None
    if obj.has("port") and obj.has("derivePort"):
        problem = _oneof("derivePort", "HTTPRedirect.redirect_port")
    elif uri and prefix:
        problem = "redirect may only specify one of uri or prefix_rewrite"
    elif prefix and any(m.uri is not None and m.uri.kind != "prefix" for m in matches):
        problem = "redirect prefix_rewrite requires all URI matches to use prefix match type"
    elif not (uri or prefix or authority or has_port or scheme):
        problem = "redirect must specify URI, authority, scheme, or port"
    elif code != 0 and not 300 <= code <= 399:
        problem = f"{code} is not a valid redirect code, must be 3xx"
    elif scheme and scheme not in ("http", "https"):
        problem = 'invalid redirect scheme, must be "http" or "https"'
    elif port is not None and port > 0:
        problem = validate.port_number(port)
    if problem:
        issues.error(path, problem)
        return None
    if code not in SUPPORTED_REDIRECT_CODES and code != 0:
        _warn(
            issues,
            obj.path("redirectCode"),
            f"Redirect Code {code} is not yet supported (istiod leaves the route without an "
            "action; shadowmesh answers it 404 NR)",
        )
    return HTTPRedirect(
        uri=uri,
        authority=authority,
        port=port,
        derive_port=derive,
        scheme=scheme,
        code=code or 301,
        prefix_rewrite=prefix,
    )


# --- directResponse ---------------------------------------------------------------------------


def parse_direct_response(value: Any, path: str, issues: Issues) -> HTTPDirectResponse | None:
    """``directResponse``, checked as ``validateHTTPDirectResponse``."""
    shapes.check(value, shapes.DIRECT_RESPONSE, path, issues)
    obj = _read(value, path, issues, ("status", "body"))
    if obj is None:
        return None
    status = obj.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) else 0
    body = _body(obj, issues)
    if body is not None:
        if len(body) > _MIB:
            issues.error(
                obj.path("body"),
                "large direct_responses may impact control plane performance, must be less than "
                "1MB",
            )
        elif len(body) > 100 * _KIB:
            _warn(
                issues,
                obj.path("body"),
                "large direct_responses may impact control plane performance",
            )
    problem = http_status(status)
    if problem:
        issues.error(obj.path("status"), problem)
        return None
    return HTTPDirectResponse(status=status, body=body)


def _body(response: Obj, issues: Issues) -> bytes | None:
    body = _read(response.get("body"), response.path("body"), issues, ("string", "bytes"))
    if body is None:
        return None
    if body.has("string") and body.has("bytes"):
        issues.error(body.at, _oneof("bytes", "HTTPBody.specifier"))
    if body.has("string"):
        return _text(body, "string").encode()
    encoded = _text(body, "bytes")
    if not body.has("bytes"):
        return None
    # protojson accepts standard and URL-safe base64, padded or not.
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        if "-" in encoded or "_" in encoded:
            return base64.urlsafe_b64decode(padded.encode())
        return base64.b64decode(padded.encode(), validate=True)
    except (binascii.Error, ValueError):
        issues.error(
            body.path("bytes"), f"invalid value for bytes field bytes: {go_quote(encoded)}"
        )
        return None


# --- corsPolicy -------------------------------------------------------------------------------

_CORS_FIELDS = (
    "allow_origins",
    "allow_origin",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "max_age",
    "allow_credentials",
    "unmatched_preflights",
)


def parse_cors(value: Any, path: str, issues: Issues) -> CorsPolicy | None:
    """``corsPolicy``, checked as ``validateCORSPolicy``, resolved as ``TranslateCORSPolicy``."""
    shapes.check(value, shapes.CORS_POLICY, path, issues)
    obj = _read(value, path, issues, _CORS_FIELDS)
    if obj is None:
        return None
    origins = _origins(obj, issues)
    methods = _strings(obj, "allowMethods")
    for method in methods:
        if method not in CORS_METHODS:
            issues.error(
                obj.path("allowMethods"), f"{go_quote(method)} is not a supported HTTP method"
            )
    for name in ("allowHeaders", "exposeHeaders"):
        for header in _strings(obj, name):
            problem = cors_header_name(header)
            if problem:
                issues.error(obj.path(name), problem)
    max_age = None
    seconds = _seconds(obj, "maxAge", issues)
    if seconds is not None:
        if seconds != int(seconds):
            issues.error(
                obj.path("maxAge"), "max_age duration is accurate only to seconds precision"
            )
        max_age = int(seconds)
    credentials = obj.get("allowCredentials")
    unmatched = _text(obj, "unmatchedPreflights") or "UNSPECIFIED"
    return CorsPolicy(
        allow_origins=origins,
        allow_methods=methods,
        allow_headers=_strings(obj, "allowHeaders"),
        expose_headers=_strings(obj, "exposeHeaders"),
        max_age=max_age,
        allow_credentials=credentials if isinstance(credentials, bool) else None,
        unmatched_preflights=unmatched,
    )


def _strings(obj: Obj, name: str) -> tuple[str, ...]:
    value = obj.get(name)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _origins(cors: Obj, issues: Issues) -> tuple[StringMatch, ...]:
    """``allowOrigins``; without it the deprecated ``allowOrigin``, as exact matches."""
    entries = cors.get("allowOrigins")
    if isinstance(entries, list) and entries:
        out = []
        for index, entry in enumerate(entries):
            where = f"{cors.path('allowOrigins')}[{index}]"
            match = string_match(
                entry, where, "corsPolicy.allowOrigins", _quiet(issues), presence=True
            )
            if match is None or not match.value:
                issues.error(where, "'' is not a valid match type for CORS allow origins")
                continue
            if match.kind == "regex":
                problem = validate.regex(match.value, "corsPolicy.allowOrigins")
                if problem:
                    issues.error(where, problem)
                    continue
            out.append(match)
        return tuple(out)
    return tuple(StringMatch("exact", origin) for origin in _strings(cors, "allowOrigin"))


def cors_header_name(name: str) -> str | None:
    """``ValidateCORSHTTPHeaderName``."""
    if not name:
        return "header name cannot be empty"
    if name == "*":
        return None
    if not _TCHARS.fullmatch(name):
        return f"header name {name} is not a valid header name"
    return None
