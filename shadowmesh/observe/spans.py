"""The spans the data plane hands to the OTLP exporter: a bounded queue and its counts.

Kept apart from ``observe.otlp`` (the exporter, which needs opentelemetry-proto) so that the
compiled hot path, which calls ``Spans.add``, never imports the OpenTelemetry packages: they are
an extra (``shadowmesh[otlp]``), and mypyc follows every import of what it compiles.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from typing import Final

QUEUE_LIMIT: Final = 8192  # spans waiting for the exporter; more are dropped (counted)
BATCH: Final = 512

# One finished request or shadow, as the data plane has it (no formatting on the loop):
# (shadow, trace id, span id, parent span id or b"", start, end (epoch seconds), method, path,
#  authority, HTTP version, status, response flag, cluster, upstream host, request id,
#  user agent, bytes received, bytes sent, client address)
SpanRecord = tuple[
    bool, bytes, bytes, bytes, float, float, bytes, bytes, bytes, str, int, str, str, str, bytes,
    bytes, int, int, bytes,
]  # fmt: skip


class Spans:
    """The bounded queue between the data plane and the exporter's thread, and its counts."""

    def __init__(self, sampling: float = 1.0, shadows: bool = True) -> None:
        self.queue: deque[SpanRecord] = deque()
        self.sampling = sampling  # percent of new traces sampled
        self.shadows = shadows  # report shadows' spans
        self.dropped = 0
        self.exported = 0
        self.failed = 0
        self.wake = threading.Event()
        self._random = random.Random()

    def sample(self) -> bool:
        """Whether a new trace (the client sent no ``x-b3-sampled``) is sampled."""
        return self.sampling >= 100.0 or self._random.random() * 100.0 < self.sampling

    def add(self, record: SpanRecord) -> None:
        queue = self.queue
        if len(queue) >= QUEUE_LIMIT:
            self.dropped += 1
            return
        queue.append(record)
        if len(queue) == BATCH:
            self.wake.set()

    def take(self, limit: int = BATCH) -> list[SpanRecord]:
        """Up to ``limit`` records, oldest first (the exporter's thread; deque pops are atomic)."""
        out: list[SpanRecord] = []
        queue = self.queue
        while queue and len(out) < limit:
            out.append(queue.popleft())
        return out

    def snapshot(self) -> dict[str, int]:
        return {
            "queued": len(self.queue),
            "exported": self.exported,
            "dropped": self.dropped,
            "failed": self.failed,
        }


def sampled(flag: bytes) -> bool:
    """B3's ``x-b3-sampled``: ``1`` (or ``true``) and ``d`` (debug) are sampled."""
    return flag in (b"1", b"d", b"true")
