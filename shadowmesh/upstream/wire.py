"""Bytes on the wire to an upstream: the request head we write."""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


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
