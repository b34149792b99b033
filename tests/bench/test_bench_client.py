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


def test_two_responses_in_pieces_are_read_one_at_a_time() -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    wire += b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    sock = feed([wire[i : i + 7] for i in range(0, len(wire), 7)], close=False)
    assert read_answer(sock) == b"HTTP/1.1 200 OK\r\nContent-Length: 5"
    assert read_answer(sock) == b"HTTP/1.1 404 Not Found\r\ncontent-length: 0"
    sock.close()


@pytest.mark.parametrize(
    "wire", [b"HTTP/1.1 200 OK\r\nContent", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"]
)
def test_a_connection_closed_before_the_response_is_whole(wire: bytes) -> None:
    sock = feed([wire], close=True)
    with pytest.raises(ConnectionError):
        read_answer(sock)
    sock.close()
