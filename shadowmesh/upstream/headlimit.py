"""The size limit of an HTTP/1 head (and of a chunked body's trailer section), held as bytes
arrive, for the request codec and the response codec alike.

llhttp hands a header to httptools in pieces, and httptools joins them by concatenation before
it calls ``on_header``: a 60 MiB header line sent in 64 KiB pieces was buffered whole, at a
quadratic cost (seconds of a frozen loop, hundreds of MB), before any limit could look at it.
So the bytes of a head are counted before they are fed: while a head is in progress, at most
what is left of the limit is fed, and a head still unfinished there is refused.

A head that begins in the middle of a read (a pipelined request, the next response) is counted
from the end of the last CRLFCRLF of that read: exact when nothing but heads and chunked framing
came before it in the read, an upper bound otherwise. When a body came before it in the read,
that bound could be far too high, so it starts from zero and the limit holds one read later.
"""

from __future__ import annotations

import httptools

MAX_HEAD_BYTES = 60 * 1024  # nginx's and Envoy's default is 60 KiB
MAX_HEADERS = 100  # Envoy's max_headers_count


class HeadLimit:
    """Driven by its codec's parser callbacks: ``begin`` (message begin, or a chunk header,
    which may open the trailer section), ``body`` and ``end`` (head complete)."""

    __slots__ = ("in_head", "fed", "entered", "body_seen", "limit")

    def __init__(self, limit: int = MAX_HEAD_BYTES) -> None:
        self.limit = limit
        self.in_head = False
        self.fed = 0  # bytes of the head in progress fed so far (an upper bound)
        self.entered = 0  # heads (or chunk headers) begun so far
        self.body_seen = False  # body bytes were parsed in the current piece

    def begin(self) -> None:
        self.in_head = True
        self.entered += 1

    def body(self) -> None:
        self.in_head = False
        self.body_seen = True

    def end(self) -> None:
        self.in_head = False

    def feed(
        self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser, data: bytes
    ) -> bool:
        """Feed ``data`` to ``parser``; False when a head passed the limit (the bytes past it
        were not fed). Parser exceptions pass through; an Upgrade's offset is into ``data``."""
        offset = 0
        while True:
            piece = data
            room = self.limit - self.fed
            if self.in_head and len(data) - offset > room:
                if room <= 0:
                    return False
                piece = data[offset : offset + room]
            elif offset:
                piece = data[offset:]
            was_in_head = self.in_head
            entered = self.entered
            self.body_seen = False
            try:
                parser.feed_data(piece)
            except httptools.HttpParserUpgrade as upgrade:
                if offset:
                    raise httptools.HttpParserUpgrade(offset + upgrade.args[0]) from None
                raise
            if self.in_head:
                if entered == self.entered and was_in_head:
                    self.fed += len(piece)
                elif self.body_seen:
                    self.fed = 0
                else:
                    last = piece.rfind(b"\r\n\r\n")
                    self.fed = len(piece) - (last + 4 if last >= 0 else 0)
                if self.fed > self.limit:
                    return False
            offset += len(piece)
            if offset >= len(data):
                return True
