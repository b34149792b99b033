"""A parsed request head, and the checks and rules of its wire form (pure, no I/O).

What goes upstream follows Envoy's HCM and router: hop-by-hop headers (RFC 9110 7.6.1 and those
named in ``Connection``) are removed; ``x-request-id`` is kept or generated; a B3 span is
started; ``x-envoy-attempt-count: 1``, ``x-forwarded-for`` and ``x-forwarded-proto`` are set,
and ``Via`` gets this proxy's pseudonym appended (RFC 9110 7.6.3), which is how a request that
comes back to us is recognised (see ``via_names``).
The shadow gets exactly these headers, with its own span and its Host suffixed. The lines are
serialized here, once per request, and shared by the primary and its shadows.
"""

from __future__ import annotations

from shadowmesh.http.wire import Headers

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


_NO_TOKENS: frozenset[bytes] = frozenset()
# Nearly every Connection header says only this; neither names a header still to remove.
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})


def tokens(value: bytes) -> frozenset[bytes]:
    """The lower-cased names listed in a ``Connection`` header value, but the two plain ones."""
    if value in _PLAIN_CONNECTION:
        return _NO_TOKENS
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


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


def strip_lines(lines: bytes, names: frozenset[bytes]) -> bytes:
    """Serialized header lines without those named in ``names`` (lower case, as every name in
    them is). A line is one header: values never hold CR or LF (the parser refuses them)."""
    kept = [line for line in lines.split(b"\r\n") if line and line[: line.find(b":")] not in names]
    return b"\r\n".join(kept) + b"\r\n" if kept else b""
