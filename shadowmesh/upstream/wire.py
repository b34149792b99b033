"""Bytes on the wire to an upstream: the request head we write."""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


def serialize_request(
    method: bytes,
    path: bytes,
    authority: bytes,
    headers: Headers,
    framing: tuple[bytes, bytes] | None,
) -> bytes:
    """An HTTP/1.1 request head. ``framing`` is the Content-Length or Transfer-Encoding header."""
    parts = [method, b" ", path, b" HTTP/1.1\r\nhost: ", authority, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if framing is not None:
        parts += (framing[0], b": ", framing[1], b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
