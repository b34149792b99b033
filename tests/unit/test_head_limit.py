"""The head size limit on partial data, in memory: a request parser fed through HeadLimit."""

from __future__ import annotations

import httptools

from shadowmesh.upstream.headlimit import MAX_HEAD_BYTES, HeadLimit


class Requests:
    """A request codec's callbacks, driving the limit as ClientConnection does."""

    def __init__(self) -> None:
        self.limit = HeadLimit()
        self.parser = httptools.HttpRequestParser(self)
        self.fed = 0  # bytes the parser was given
        self.heads = 0
        self.body = b""
        feed = self.parser.feed_data

        class Counting:
            def feed_data(inner, data: bytes) -> None:  # noqa: N805
                self.fed += len(data)
                feed(data)

        self.counting = Counting()

    def feed(self, data: bytes) -> bool:
        return self.limit.feed(self.counting, data)  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        self.limit.begin()

    def on_headers_complete(self) -> None:
        self.limit.end()
        self.heads += 1

    def on_body(self, body: bytes) -> None:
        self.limit.body()
        self.body += body

    def on_chunk_header(self) -> None:
        self.limit.begin()

    def on_chunk_complete(self) -> None:
        self.limit.end()

    def on_message_complete(self) -> None:
        self.limit.end()


def test_a_huge_header_line_in_pieces_is_refused_at_the_limit() -> None:
    r = Requests()
    assert r.feed(b"GET / HTTP/1.1\r\nHost: a\r\nx-big: ")
    refused = False
    for _ in range(1000):  # 4 MiB, if it were all taken
        if not r.feed(b"a" * 4096):
            refused = True
            break
    assert refused
    assert r.fed <= MAX_HEAD_BYTES  # never more than the limit reached the parser
    assert r.heads == 0


def test_a_huge_first_read_is_refused_after_that_read() -> None:
    r = Requests()
    assert not r.feed(b"GET / HTTP/1.1\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 1))


def test_heads_under_the_limit_pass_whole_or_in_pieces() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nx-big: " + b"a" * (MAX_HEAD_BYTES - 100) + b"\r\n\r\n"
    whole = Requests()
    assert whole.feed(head) and whole.heads == 1
    pieces = Requests()
    assert all(pieces.feed(head[i : i + 1000]) for i in range(0, len(head), 1000))
    assert pieces.heads == 1


def test_the_count_starts_again_with_each_pipelined_head() -> None:
    near = b"GET / HTTP/1.1\r\nHost: a\r\nx-big: " + b"a" * (MAX_HEAD_BYTES - 100) + b"\r\n\r\n"
    r = Requests()
    # Three heads each near the limit in one read, then the fourth's start: all accepted.
    assert r.feed(near * 3 + near[:30000])
    assert r.feed(near[30000:])
    assert r.heads == 4


def test_a_large_body_before_a_partial_head_in_one_read_is_not_counted_as_head() -> None:
    body = b"b" * 200_000
    post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    r = Requests()
    assert r.feed(post + b"GET / HTTP/1.1\r\nHo")
    assert r.feed(b"st: a\r\n\r\n")
    assert r.heads == 2 and r.body == body


def test_a_huge_trailer_section_is_refused_at_the_limit() -> None:
    r = Requests()
    assert r.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert r.feed(b"3\r\nabc\r\n0\r\nx-trailer: ")
    results = [r.feed(b"t" * 4096) for _ in range(100)]
    assert False in results
    assert r.fed <= 2 * MAX_HEAD_BYTES
    assert r.body == b"abc"


def test_chunked_bodies_in_pieces_are_not_limited() -> None:
    r = Requests()
    assert r.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(50):
        assert r.feed(b"10000\r\n")  # a read ending after a chunk's size line
        assert r.feed(b"c" * 0x10000 + b"\r\n")
    assert r.feed(b"0\r\n\r\n")
    assert len(r.body) == 50 * 0x10000
