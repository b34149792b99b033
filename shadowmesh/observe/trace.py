"""Request ids and B3 trace ids, as Envoy's HCM and tracer add them to upstream requests.

Ids come from the ``random`` module's generator, not ``os.urandom``: they must be unique, not
secret, and a syscall per id cost a third of the proxy's time per request (measured with
py-spy under wrk). Envoy, likewise, draws them from a fast PRNG.
"""

from __future__ import annotations

from random import getrandbits

_VERSION_4 = 0x4000_0000_0000_0000_0000  # the UUID version nibble, in bits 76-79
_VARIANT = 0x8000_0000_0000_0000  # the RFC 4122 variant, in bits 62-63
_CLEAR = ~((0xF << 76) | (0x3 << 62))


def new_request_id() -> bytes:
    """A UUID v4, the form Envoy generates for ``x-request-id``."""
    n = (getrandbits(128) & _CLEAR) | _VERSION_4 | _VARIANT
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()


def new_trace_id() -> bytes:
    """128-bit B3 trace id, 32 lower-case hex digits (the scenario's X-B3-Traceid)."""
    return b"%032x" % getrandbits(128)


def new_span_id() -> bytes:
    """64-bit B3 span id, 16 hex digits."""
    return b"%016x" % getrandbits(64)
