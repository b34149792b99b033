"""The response head we write to the client, and the answers the proxy gives itself (pure)."""

from __future__ import annotations

from http import HTTPStatus

from shadowmesh.http.request import HOP_BY_HOP, tokens
from shadowmesh.http.wire import Headers

# Envoy's local reply bodies, so scripts written against Istio see the same text.
NO_HEALTHY_UPSTREAM = b"no healthy upstream"
CONNECT_FAILURE = (
    b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)
CONNECTION_TERMINATION = (
    b"upstream connect error or disconnect/reset before headers. "
    b"reset reason: connection termination"
)
UPSTREAM_TIMEOUT = b"upstream request timeout"
PROTOCOL_ERROR = b"upstream sent an invalid response"
STREAM_TIMEOUT = b"stream timeout"  # Envoy's, for its stream idle timeout
LOOP_DETECTED = b"loop detected: this request has been through this proxy already"


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def local_reply(
    status: int,
    body: bytes,
    keep_alive: bool,
    head_only: bool = False,
    location: bytes = b"",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A complete response the proxy answers itself (404 NR, 503 UH, 504 UT, 400, 301...).

    ``headers`` (a route's Location and response header ops) are written as given; with a body,
    ``content-type: text/plain`` unless they set one (Envoy's ``sendLocalReply``)."""
    typed = False
    extra = b""
    for name, value in headers:
        if name == b"content-type":
            if not body:
                continue  # no body: Envoy removes content-type and content-length
            typed = True
        elif name == b"content-length":
            continue
        extra += b"%s: %s\r\n" % (name, value)
    parts = [
        b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status)),
        b"location: %s\r\n" % location if location else b"",
        extra,
        b"content-length: %d\r\n" % len(body),
        b"content-type: text/plain\r\n" if body and not typed else b"",
        b"server: shadowmesh\r\n",
        b"" if keep_alive else b"connection: close\r\n",
        b"\r\n",
    ]
    if not head_only:
        parts.append(body)
    return b"".join(parts)


_RESPONSE_SPECIAL = HOP_BY_HOP | {b"content-length"}


def response_headers(headers: Headers) -> tuple[Headers, bytes | None, bytes | None]:
    """The upstream's end-to-end response headers (hop-by-hop and framing removed), with its
    Content-Length value and its transfer codings, in one pass. The codings are None without
    Transfer-Encoding, else those other than a final chunked (``b""`` for chunked alone): the
    proxy re-chunks the body, and a coding such as gzip must still reach the client."""
    out: Headers = []
    length = None
    coding: bytes | None = None
    listed: frozenset[bytes] = frozenset()
    for pair in headers:
        name = pair[0]
        if name not in _RESPONSE_SPECIAL:
            out.append(pair)
        elif name == b"content-length":
            length = pair[1]
        elif name == b"transfer-encoding":
            coding = pair[1] if coding is None else coding + b", " + pair[1]
        elif name == b"connection":
            listed |= tokens(pair[1])
    if listed:
        out = [pair for pair in out if pair[0] not in listed]
    if coding is not None:
        codings = [c.strip() for c in coding.split(b",") if c.strip()]
        if codings and codings[-1].lower() == b"chunked":
            codings.pop()
        coding = b", ".join(codings)
    return out, length, coding


def serialize_response(
    status: int,
    reason: bytes,
    headers: Headers,
    framing: tuple[bytes, bytes] | None,
    connection: bytes | None,
) -> bytes:
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason or reason_phrase(status))]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if framing is not None:
        parts += (framing[0], b": ", framing[1], b"\r\n")
    if connection is not None:
        parts += (b"connection: ", connection, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
