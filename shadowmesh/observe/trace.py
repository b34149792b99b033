"""Request ids and B3 trace ids, as Envoy's HCM and tracer add them to upstream requests."""

from __future__ import annotations

import os
import uuid


def new_request_id() -> bytes:
    """A UUID v4, the form Envoy generates for ``x-request-id``."""
    return str(uuid.UUID(bytes=os.urandom(16), version=4)).encode()


def new_trace_id() -> bytes:
    """128-bit B3 trace id, 32 lower-case hex digits (the scenario's X-B3-Traceid)."""
    return os.urandom(16).hex().encode()


def new_span_id() -> bytes:
    """64-bit B3 span id, 16 hex digits."""
    return os.urandom(8).hex().encode()
