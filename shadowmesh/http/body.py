"""One request body, kept so it can be sent again: by shadows now, by retries, later by
recording. Bounded: past ``limit`` bytes it keeps nothing more and says so (``over``), and
whoever needed the whole body gives up on it (a shadow is dropped, a retry not made), counted
by its owner. One buffer per request, shared by every reader, so a body is held once however
many copies read it.
"""

from __future__ import annotations

from typing import Final


class BodyBuffer:
    __slots__ = ("limit", "chunks", "size", "over", "ended")

    def __init__(self, limit: int) -> None:
        self.limit: Final = limit
        self.chunks: list[bytes] = []  # the body from its first byte, while not ``over``
        self.size = 0  # bytes seen, kept or not
        self.over = False  # the body went past ``limit``: ``chunks`` was let go
        self.ended = False  # the body is complete

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``. True the one time the body goes past the bound (its owner counts
        that); from then on nothing is kept."""
        self.size += len(chunk)
        if self.over:
            return False
        if self.size > self.limit:
            self.over = True
            self.chunks = []
            return True
        self.chunks.append(chunk)
        return False

    def end(self) -> None:
        self.ended = True

    def replayable(self) -> bool:
        """The whole body received so far is here: it can be sent again from its start."""
        return not self.over

    def data(self) -> bytes:
        return b"".join(self.chunks)
