"""The bench's exact-count client reads one keep-alive response at a time, whatever pieces it
arrives in, and says when the connection closed before the response was whole."""

from __future__ import annotations

import socket
import threading

import pytest

from bench.client import read_answer


def feed(pieces: list[bytes], close: bool) -> socket.socket:
    ours, theirs = socket.socketpair()

    def write() -> None:
        for piece in pieces:
            theirs.sendall(piece)
        if close:
            theirs.close()

    threading.Thread(target=write, daemon=True).start()
    return ours


def test_responses_in_pieces_are_read_one_at_a_time() -> None:
    """One request in flight per connection (the bench's load): each answer, whatever pieces
    it comes in, is read whole and no further."""
    ours, theirs = socket.socketpair()
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

    def write() -> None:
        for i in range(0, len(first), 7):
            theirs.sendall(first[i : i + 7])

    writer = threading.Thread(target=write)
    writer.start()
    assert read_answer(ours) == b"HTTP/1.1 200 OK\r\nContent-Length: 5"
    writer.join()
    theirs.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    assert read_answer(ours) == b"HTTP/1.1 404 Not Found\r\ncontent-length: 0"
    ours.close()
    theirs.close()


@pytest.mark.parametrize(
    "wire", [b"HTTP/1.1 200 OK\r\nContent", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"]
)
def test_a_connection_closed_before_the_response_is_whole(wire: bytes) -> None:
    sock = feed([wire], close=True)
    with pytest.raises(ConnectionError):
        read_answer(sock)
    sock.close()
