"""What the data plane hands to the comparison: one request's responses, joined on x-request-id.

This module is the contract between the data plane (which captures bytes without delaying the
client) and the analysis (which runs off the request path). Plain data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

# The ``error`` of a side the proxy itself gave up on (the dispatcher's drop reasons, and the
# client leaving): the shadow never had the request, so there is no answer of its to compare.
# Its timeouts, refused connections and resets are its own answers, and are compared.
NOT_SENT = frozenset({"overflow", "unhealthy", "buffer_full", "body_too_large", "client_aborted"})


@dataclass(frozen=True, slots=True)
class CapturedResponse:
    """One response as captured: headers lower-cased, body cut at the Comparison's cap."""

    status: int  # 0 when there was no response (timeout, reset, connect failure)
    headers: tuple[tuple[str, str], ...]
    body: bytes
    truncated: bool  # the body was longer than maxBodyBytes
    duration_ms: float  # request sent to last byte received
    error: str = ""  # when status is 0: a word of mirror.pairing.UPSTREAM_ERRORS


@dataclass(frozen=True, slots=True)
class CapturedExchange:
    """The primary's response and its shadows' for one request, ready for the analysis.

    ``comparison`` is the Comparison's (namespace, name). Redaction is not yet applied: the
    analysis applies the Comparison's ``redact`` rules before anything is stored.
    """

    comparison: tuple[str, str]
    request_id: str
    started: float  # epoch seconds
    method: str
    path: str  # origin-form, with the query
    request_headers: tuple[tuple[str, str], ...]
    primary: CapturedResponse
    candidate: CapturedResponse | None
    baseline: CapturedResponse | None
    request_body: bytes = b""  # the first maxBodyBytes of it, for the report's drill-down
