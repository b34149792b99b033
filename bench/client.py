"""The bench's own HTTP/1.1 client side, for loads that count requests exactly (wrk counts
by time): one keep-alive response read off a socket, framed by its Content-Length."""

from __future__ import annotations

import socket


def read_answer(sock: socket.socket) -> bytes:
    """Read one response (head and Content-Length body) and return its head; a connection
    closed before it is whole raises ``ConnectionError``. One request in flight per
    connection: bytes past this response would be dropped."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return head
