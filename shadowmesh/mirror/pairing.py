"""Capture for Comparisons: which requests are compared, and joining their responses.

Nothing here may slow the client: the primary's response is copied (up to the Comparison's
cap) as it streams past, the shadows' as they are read and discarded anyway, and the joined
result goes to the analyzer's bounded queue, which drops (and counts) rather than waits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from shadowmesh.compare.capture import CapturedExchange, CapturedResponse
from shadowmesh.http.wire import Headers
from shadowmesh.routing.comparing import CompareRule

# The one table of Envoy response flags that mean "no upstream answer", and the word each is
# known by: the comparison's ``CapturedResponse.error`` for a primary and a shadow alike, and the
# reason a failed shadow is counted under in ``shadow_failed``.
UPSTREAM_ERRORS = {"UT": "timeout", "UF": "connect", "UC": "reset", "UPE": "protocol"}


def error_of(flag: str) -> str:
    """The error word of a response flag; "" for an answer (no flag) or a flag of another kind.
    Of flags joined after retries ("UF,URX"), the first says what went wrong."""
    return UPSTREAM_ERRORS.get(flag.partition(",")[0], "")


class Sink(Protocol):
    def submit(self, exchange: CapturedExchange) -> bool: ...


class BodyCopy:
    """The first ``limit`` bytes of a body, and whether there was more."""

    __slots__ = ("limit", "chunks", "size", "truncated")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - self.size
        if room <= 0:
            self.truncated = self.truncated or bool(chunk)
            return
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        self.chunks.append(chunk)
        self.size += len(chunk)

    def bytes(self) -> bytes:
        return b"".join(self.chunks)


def response(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],  # an exchange's default is an empty tuple
    body: BodyCopy | None,
    started: float,
    error: str = "",
) -> CapturedResponse:
    return CapturedResponse(
        status=status,
        headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers),
        body=body.bytes() if body is not None else b"",
        truncated=body.truncated if body is not None else False,
        duration_ms=(time.monotonic() - started) * 1000,
        error=error,
    )


class Pairing:
    """One compared request: waits for the primary and each shadow, then submits them joined."""

    __slots__ = ("sink", "comparison", "request", "parts", "expected", "submitted", "body")

    def __init__(
        self,
        sink: Sink,
        comparison: CompareRule,
        request_id: str,
        method: str,
        path: str,
        request_headers: Headers,
        roles: set[str],
    ) -> None:
        self.sink = sink
        self.comparison = comparison
        self.request = (
            request_id,
            time.time(),
            method,
            path,
            tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request_headers),
        )
        self.parts: dict[str, CapturedResponse] = {}
        self.expected = {"primary", *roles}
        self.submitted = False
        self.body = b""  # the request's body, kept by the first shadow copy sent

    def keep_body(self, body: bytes) -> None:
        if not self.body:
            self.body = body[: self.comparison.max_body_bytes]

    def add(self, role: str, captured: CapturedResponse) -> None:
        if self.submitted or role in self.parts:
            return
        self.parts[role] = captured
        if self.expected <= self.parts.keys():
            self.submitted = True
            request_id, started, method, path, headers = self.request
            self.sink.submit(
                CapturedExchange(
                    comparison=self.comparison.key,
                    request_id=request_id,
                    started=started,
                    method=method,
                    path=path,
                    request_headers=headers,
                    primary=self.parts["primary"],
                    candidate=self.parts.get("candidate"),
                    baseline=self.parts.get("baseline"),
                    request_body=self.body,
                )
            )

    def lost(self, role: str, error: str) -> None:
        """A part that will never come (a dropped shadow, a client gone): say why."""
        self.add(role, CapturedResponse(0, (), b"", False, 0.0, error))
