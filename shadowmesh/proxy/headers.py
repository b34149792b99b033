"""The header rewriting a proxy owes a request (pure, no I/O), protocol-neutral.

What goes upstream follows Envoy's HCM and router: hop-by-hop headers (RFC 9110 7.6.1 and those
named in ``Connection``) are removed; ``x-request-id`` is kept or generated; a B3 span is
started; ``x-envoy-attempt-count``, ``x-forwarded-for`` and ``x-forwarded-proto`` are set,
and ``Via`` gets this proxy's pseudonym appended (RFC 9110 7.6.3), which is how a request that
comes back to us is recognised (``http.request.via_names``).
In Envoy the connection manager sets the request id and the forwarding headers before the
router's header ops, so a route's ops see them and may set or remove them
(traffic-policy.md section 0): for such a route the stream takes ``connection_headers`` first,
applies the ops to them, and ``upstream_headers(..., mutated=True)`` sends those three as the
ops left them. The span, the attempt count and ``Via`` are the proxy's, after any ops.
The shadow gets exactly these headers, with its own span and its Host suffixed. The lines are
serialized here, once per request, and shared by the primary and its shadows.
"""

from __future__ import annotations

from typing import Final

from shadowmesh.http.request import HOP_BY_HOP, RequestHead, tokens
from shadowmesh.http.wire import Header
from shadowmesh.mirror.host import shadow_authority
from shadowmesh.observe.trace import new_request_id, new_span_id, new_trace_id

# Set by us on every upstream request; a client's copies are replaced, not forwarded.
_REPLACED = frozenset(
    {
        b"host",
        b"content-length",
        b"x-envoy-attempt-count",
        b"x-b3-spanid",
        b"x-b3-parentspanid",
        b"x-b3-sampled",
        b"x-forwarded-proto",
    }
)


class Outgoing:
    """What the upstream request carries beyond the client's head, as header lines ready to go.

    The primary and its shadows share every line but the span's three, so those are kept apart
    and the rest is serialized once: ``passed`` (the client's end-to-end headers, the request id
    and the trace id) and ``tail`` (attempt count, forwarding headers, a WebSocket's Upgrade).
    """

    __slots__ = (
        "passed",
        "tail",
        "request_id",
        "trace_id",
        "span_id",
        "parent_span",
        "sampled",
        "forwarded_for",
        "expect",
    )

    def __init__(
        self,
        passed: bytes,
        tail: bytes,
        request_id: bytes,
        trace_id: bytes,
        span_id: bytes,
        parent_span: bytes,
        sampled: bytes,
        forwarded_for: bytes,  # the x-forwarded-for value sent
        expect: bool,  # the client sent Expect (answered by us, not forwarded)
    ) -> None:
        self.passed: Final = passed
        self.tail: Final = tail
        self.request_id: Final = request_id
        self.trace_id: Final = trace_id
        self.span_id: Final = span_id
        self.parent_span: Final = parent_span
        self.sampled: Final = sampled
        self.forwarded_for: Final = forwarded_for
        self.expect: Final = expect

    def primary_lines(self) -> bytes:
        """The header lines of the primary's request (without Host and framing)."""
        return _with_span(self, self.span_id, self.parent_span, self.sampled)

    def shadow_lines(self, span: bytes = b"") -> bytes:
        """The shadow's: a child span of the primary's (``span``, else a new one), unsampled,
        as Istio sets."""
        return _with_span(self, span or new_span_id(), self.span_id, b"0")


def _with_span(out: Outgoing, span: bytes, parent: bytes, sampled: bytes) -> bytes:
    return b"".join(
        (
            out.passed,
            b"x-b3-spanid: ",
            span,
            b"\r\nx-b3-parentspanid: ",
            parent,
            b"\r\nx-b3-sampled: ",
            sampled,
            b"\r\n",
            out.tail,
        )
    )


# Headers that need more than a copy: dropped, replaced, or read for what we add.
_SPECIAL = (
    HOP_BY_HOP
    | _REPLACED
    | {
        b"x-request-id",
        b"x-b3-traceid",
        b"x-forwarded-for",
        b"expect",
        b"via",
    }
)
# After a route's request ops (``mutated``), what the connection manager set is copied as the
# ops left it.
_FORWARDING: Final = frozenset({b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto"})
_SPECIAL_AFTER_OPS: Final = _SPECIAL - _FORWARDING


def connection_headers(head: RequestHead, client_ip: bytes) -> list[Header]:
    """The client's headers as Envoy's connection manager hands them to the router
    (``mutateRequestHeaders``), for a route's request ops to run on: ``x-request-id`` kept
    (the first) or generated, ``client_ip`` appended to ``x-forwarded-for``,
    ``x-forwarded-proto`` set, one line each, with the values ``upstream_headers`` gives.
    ``upstream_headers(..., mutated=True)`` then sends the head the ops left.
    """
    headers: list[Header] = []
    has_id = False
    forwarded_for: bytes | None = None
    for pair in head.headers:
        name = pair[0]
        if name not in _FORWARDING:
            headers.append(pair)
        elif name == b"x-request-id":
            if not has_id:
                has_id = True
                headers.append(pair)
        elif name == b"x-forwarded-for":
            forwarded_for = pair[1]  # the last, as upstream_headers reads it
    if not has_id:
        headers.append((b"x-request-id", new_request_id()))
    headers.append((b"x-forwarded-for", _forwarded(forwarded_for, client_ip)))
    headers.append((b"x-forwarded-proto", b"https" if head.scheme == "https" else b"http"))
    return headers


def _forwarded(forwarded_for: bytes | None, client_ip: bytes) -> bytes:
    return forwarded_for + b", " + client_ip if forwarded_for else client_ip


def upstream_headers(
    head: RequestHead,
    client_ip: bytes,
    pseudonym: bytes,
    new_sampled: bytes = b"1",
    mutated: bool = False,
) -> Outgoing:
    """The end-to-end headers the upstream gets, with what Envoy adds, serialized.

    One pass: most headers are copied as they are; the few in ``_SPECIAL`` are looked at.
    ``pseudonym``: this proxy's name in ``Via`` (``control/identity.py``); ``new_sampled``: the
    ``x-b3-sampled`` of a trace the client did not decide (the tracer's sampling).
    ``mutated``: ``head.headers`` began as ``connection_headers`` and a route's request ops ran
    on them: ``x-request-id``, ``x-forwarded-for`` and ``x-forwarded-proto`` are copied as
    they are, or not sent if removed (``request_id`` and ``forwarded_for`` are then ``b""``).
    """
    special = _SPECIAL_AFTER_OPS if mutated else _SPECIAL
    parts: list[bytes] = []
    request_id = trace_id = parent = sampled = forwarded_for = upgrade = via = None
    expect = False
    listed: frozenset[bytes] = frozenset()
    for pair in head.headers:
        name = pair[0]
        if name not in special:
            parts += (name, b": ", pair[1], b"\r\n")
        elif name == b"x-request-id":
            if request_id is None:
                request_id = pair[1]
        elif name == b"x-b3-traceid":
            trace_id = pair[1]
        elif name == b"x-b3-spanid":
            parent = pair[1]
        elif name == b"x-b3-sampled":
            sampled = pair[1]
        elif name == b"x-forwarded-for":
            forwarded_for = pair[1]
        elif name == b"connection":
            listed |= tokens(pair[1])
        elif name == b"expect":
            expect = True
        elif name == b"upgrade":
            upgrade = pair[1]
        elif name == b"via":
            via = pair[1] if via is None else via + b", " + pair[1]
    if listed:  # rare: headers the client named in Connection are hop-by-hop too
        if mutated:
            listed -= _FORWARDING  # ours now (connection_headers), as they are without ops
        parts = []
        for name, value in head.headers:
            if name not in special and name not in listed:
                parts += (name, b": ", value, b"\r\n")
    if trace_id is None:
        trace_id = new_trace_id()
    if parent is None:
        # A new trace: the proxy's own server span is the parent of the upstream call's span.
        parent = new_span_id()
    if mutated:
        # Already among the lines copied: only their values are wanted, for the access log
        # and the shadows (connection_headers leaves one line of each, the ops no more).
        request_id = forwarded_for = b""
        for name, value in head.headers:
            if name == b"x-request-id":
                request_id = value
            elif name == b"x-forwarded-for":
                forwarded_for = value
        xff = forwarded_for
        parts += (b"x-b3-traceid: ", trace_id, b"\r\n")
        forwarding, sent_xff, proto = b"x-envoy-attempt-count: 1\r\n", b"", b""
    else:
        if request_id is None:
            request_id = new_request_id()
        xff = sent_xff = _forwarded(forwarded_for, client_ip)
        parts += (b"x-request-id: ", request_id, b"\r\nx-b3-traceid: ", trace_id, b"\r\n")
        forwarding = b"x-envoy-attempt-count: 1\r\nx-forwarded-for: "
        proto = (
            b"\r\nx-forwarded-proto: https\r\n"
            if head.scheme == "https"
            else b"\r\nx-forwarded-proto: http\r\n"
        )
    tail = [
        forwarding,
        sent_xff,
        proto,
        # Appended to what the client's Via said, one line for all: the primary and every
        # shadow carry it, so a copy mirrored back to one of our own listeners is refused too.
        b"via: ",
        via + b", " if via else b"",
        b"1.1 " if head.version == "1.1" else b"1.0 ",
        pseudonym,
        b"\r\n",
    ]
    if head.upgrade and upgrade is not None:
        # The one hop-by-hop header a proxy passes on, so WebSocket works through it.
        tail += (b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n")
    return Outgoing(
        b"".join(parts),
        b"".join(tail),
        request_id,
        trace_id,
        new_span_id(),
        parent,
        sampled if sampled is not None else new_sampled,
        xff,
        expect,
    )


def shadow_host(authority: bytes, suffix: bool) -> bytes:
    return shadow_authority(authority) if suffix else authority
