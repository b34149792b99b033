"""A parsed request head, and the header rewriting a proxy owes it (pure, no I/O).

What goes upstream follows Envoy's HCM and router: hop-by-hop headers (RFC 9110 7.6.1 and those
named in ``Connection``) are removed; ``x-request-id`` is kept or generated; a B3 span is
started; ``x-envoy-attempt-count: 1``, ``x-forwarded-for`` and ``x-forwarded-proto`` are set,
and ``Via`` gets this proxy's pseudonym appended (RFC 9110 7.6.3), which is how a request that
comes back to us is recognised (see ``via_names``).
The shadow gets exactly these headers, with its own span and its Host suffixed. The lines are
serialized here, once per request, and shared by the primary and its shadows.
"""

from __future__ import annotations

from typing import Final

from shadowmesh.mirror.host import shadow_authority
from shadowmesh.observe.trace import new_request_id, new_span_id, new_trace_id
from shadowmesh.upstream.wire import Headers

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
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


# --- the target and the Host, checked and normalised as Envoy's HCM does -------------------

# RFC 3986 3.2.2: a reg-name's unreserved, sub-delims and pct-encoded, an IP literal's
# brackets and colons, and the port's colon. Anything else in a Host (a space, "/", "@", a
# control byte) is refused with 400, as Envoy refuses it.
_AUTHORITY_CHARS = (
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:[]"
)


def valid_authority(value: bytes) -> bool:
    """A Host value (or an absolute-form target's authority): host, then ``:port`` if any."""
    if value.translate(None, _AUTHORITY_CHARS):
        return False  # a byte outside the allowed set
    if value[:1] == b"[":  # an IP literal: [v6]:port
        close = value.find(b"]")
        if close < 0 or b"[" in value[1:] or b"]" in value[close + 1 :]:
            return False
        port = value[close + 1 :]
        return not port or (port[:1] == b":" and port[1:].isdigit())
    if b"[" in value or b"]" in value:
        return False
    host, colon, port = value.partition(b":")
    return bool(host) and (not port or port.isdigit())


_UNRESERVED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def normalize_path(target: bytes) -> bytes:
    """An origin-form target with its path normalised as Envoy's ``normalize_path`` does
    (RFC 3986 6.2.2): percent-encoded unreserved bytes decoded (other escapes upper-cased),
    then dot segments removed (5.2.4). Slashes are not merged (Envoy's ``merge_slashes`` is
    off by default), the query is left as sent.

    Routing and the upstream see the same path, so ``/public/../admin`` cannot match a
    ``/public`` prefix route and reach ``/admin`` behind it.
    """
    if b"%" not in target and b"/." not in target:
        return target  # nearly every request: nothing to do, and nothing copied to know it
    query = target.find(b"?")
    path = target if query < 0 else target[:query]
    if b"%" not in path and b"/." not in path:
        return target  # only the query has them
    if b"%" in path:
        path = _decode_unreserved(path)
    if b"/." in path:
        path = _remove_dot_segments(path)
    return path if query < 0 else path + target[query:]


def _decode_unreserved(path: bytes) -> bytes:
    pieces = path.split(b"%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if len(piece) >= 2 and piece[0] in _HEX and piece[1] in _HEX:
            byte = int(piece[:2], 16)
            if byte in _UNRESERVED:
                out.append(bytes((byte,)) + piece[2:])
            else:
                out.append(b"%" + piece[:2].upper() + piece[2:])
        else:
            out.append(b"%" + piece)  # not an escape: left as it is
    return b"".join(out)


def _remove_dot_segments(path: bytes) -> bytes:
    segments = path.split(b"/")
    out: list[bytes] = []
    last = len(segments) - 1
    for i in range(1, len(segments)):
        segment = segments[i]
        if segment == b"..":
            if out:
                out.pop()
        elif segment != b".":
            out.append(segment)
            continue
        if i == last:
            out.append(b"")  # "/a/.." is "/", "/a/b/." is "/a/b/": the trailing slash stays
    return b"/" + b"/".join(out)


class RequestHead:
    """One request as received. Names are lower-cased bytes; values as sent.

    A plain class with __slots__, not a dataclass: one is made per request, and a dataclass's
    generated __init__ stays interpreted Python under mypyc (see routing/decision.py).
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "authority",
        "path",
        "scheme",
        "content_length",
        "chunked",
        "keep_alive",
        "upgrade",
        "looped",
        "_index",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: str,  # "1.1" or "1.0"
        headers: Headers,
        authority: bytes,  # Host header or the absolute-form target's authority
        path: bytes,  # origin-form: path and query
        scheme: str = "http",
        content_length: int | None = None,
        chunked: bool = False,
        keep_alive: bool = True,
        upgrade: bool = False,
        looped: bool = False,  # its Via names this proxy: it has been through us already
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.authority = authority
        self.path = path
        self.scheme = scheme
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.looped = looped
        self._index: dict[str, str] | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: str) -> str | None:
        """First value of a header by lower-case name (the routing ``RequestView``)."""
        if self._index is None:
            index: dict[str, str] = {}
            for key, value in self.headers:
                index.setdefault(key.decode("latin-1"), value.decode("latin-1"))
            self._index = index
        return self._index.get(name)

    def first(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class RouteView:
    """The ``RequestView`` routing reads: str properties over a ``RequestHead``."""

    __slots__ = ("_head",)

    def __init__(self, head: RequestHead) -> None:
        self._head = head

    @property
    def method(self) -> str:
        return self._head.method.decode("latin-1")

    @property
    def path(self) -> str:
        return self._head.path.decode("latin-1")

    @property
    def authority(self) -> str:
        return self._head.authority.decode("latin-1")

    @property
    def scheme(self) -> str:
        return self._head.scheme

    def header(self, name: str) -> str | None:
        return self._head.header(name)


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


_NO_TOKENS: frozenset[bytes] = frozenset()
# Nearly every Connection header says only this; neither names a header still to remove.
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})


def tokens(value: bytes) -> frozenset[bytes]:
    """The lower-cased names listed in a ``Connection`` header value, but the two plain ones."""
    if value in _PLAIN_CONNECTION:
        return _NO_TOKENS
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


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


def via_names(value: bytes, pseudonym: bytes) -> bool:
    """Whether a ``Via`` value lists ``pseudonym`` as one of its received-by (RFC 9110 7.6.3:
    ``1.1 name [comment], 1.0 other``). A plain substring test first: nearly always false."""
    if pseudonym not in value:
        return False
    for element in value.split(b","):
        parts = element.split()
        if len(parts) >= 2 and parts[1] == pseudonym:
            return True
    return False


def upstream_headers(
    head: RequestHead, client_ip: bytes, pseudonym: bytes, new_sampled: bytes = b"1"
) -> Outgoing:
    """The end-to-end headers the upstream gets, with what Envoy adds, serialized.

    One pass: most headers are copied as they are; the few in ``_SPECIAL`` are looked at.
    ``pseudonym``: this proxy's name in ``Via`` (``control/identity.py``); ``new_sampled``: the
    ``x-b3-sampled`` of a trace the client did not decide (the tracer's sampling).
    """
    parts: list[bytes] = []
    request_id = trace_id = parent = sampled = forwarded_for = upgrade = via = None
    expect = False
    listed: frozenset[bytes] = frozenset()
    for pair in head.headers:
        name = pair[0]
        if name not in _SPECIAL:
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
        parts = []
        for name, value in head.headers:
            if name not in _SPECIAL and name not in listed:
                parts += (name, b": ", value, b"\r\n")
    if request_id is None:
        request_id = new_request_id()
    if trace_id is None:
        trace_id = new_trace_id()
    if parent is None:
        # A new trace: the proxy's own server span is the parent of the upstream call's span.
        parent = new_span_id()
    xff = forwarded_for + b", " + client_ip if forwarded_for else client_ip
    parts += (b"x-request-id: ", request_id, b"\r\nx-b3-traceid: ", trace_id, b"\r\n")
    tail = [
        b"x-envoy-attempt-count: 1\r\nx-forwarded-for: ",
        xff,
        b"\r\nx-forwarded-proto: https\r\n"
        if head.scheme == "https"
        else b"\r\nx-forwarded-proto: http\r\n",
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


def strip_lines(lines: bytes, names: frozenset[bytes]) -> bytes:
    """Serialized header lines without those named in ``names`` (lower case, as every name in
    them is). A line is one header: values never hold CR or LF (the parser refuses them)."""
    kept = [line for line in lines.split(b"\r\n") if line and line[: line.find(b":")] not in names]
    return b"\r\n".join(kept) + b"\r\n" if kept else b""


def shadow_host(authority: bytes, suffix: bool) -> bytes:
    return shadow_authority(authority) if suffix else authority
