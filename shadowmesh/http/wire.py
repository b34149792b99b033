"""Bytes on the wire to an upstream: the request head we write."""

from __future__ import annotations

Header = tuple[bytes, bytes]
Headers = list[Header]

# RFC 9110 9.2.2: the methods a client may repeat, so a proxy may send one again when the
# connection closed under it before an answer. The upstream may have acted on any other request
# it read, and a proxy must not retry those automatically (Envoy answers 503 UC).
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


def serialize_request(
    method: bytes, path: bytes, authority: bytes, lines: bytes, framing: bytes
) -> bytes:
    """An HTTP/1.1 request head. ``lines`` are its header lines but Host (each ending in CRLF);
    ``framing`` is the Content-Length or Transfer-Encoding line, or empty."""
    return b"".join(
        (method, b" ", path, b" HTTP/1.1\r\nhost: ", authority, b"\r\n", lines, framing, b"\r\n")
    )


def content_length(n: int) -> bytes:
    return b"content-length: %d\r\n" % n


CHUNKED = b"transfer-encoding: chunked\r\n"
