"""Request ids and B3 trace ids, as Envoy's HCM and tracer add them to upstream requests.

Ids come from the ``random`` module's generator, not ``os.urandom``: they must be unique, not
secret, and a syscall per id cost a third of the proxy's time per request (measured with
py-spy under wrk). Envoy, likewise, draws them from a fast PRNG. Random hex digits are drawn
4 KiB at a time and sliced per id: one call into the generator per hundred requests instead of
four per request (measured: 0.88 -> 0.61 us per request id, 0.22 -> 0.17 us per span id).
"""

from __future__ import annotations

import os
from random import randbytes
from typing import Final

_BATCH: Final = 2048  # random bytes per draw: 4,096 hex digits
# The UUID variant digit (RFC 4122: binary 10xx) from a random hex digit's two low bits.
_VARIANT: Final = {c: b"89ab"[i % 4 : i % 4 + 1] for i, c in enumerate(b"0123456789abcdef")}


class _Digits:
    """Lower-case random hex digits, handed out in slices, never twice."""

    __slots__ = ("_hex", "_at")

    def __init__(self) -> None:
        self._hex = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        at = self._at
        if at + n > len(self._hex):
            self._hex = randbytes(_BATCH).hex().encode()
            at = 0
        self._at = at + n
        return self._hex[at : at + n]

    def forget(self) -> None:
        self._hex = b""
        self._at = 0


_digits: Final = _Digits()
# A forked child would hand out the digits its parent has not used yet: the same ids. (random
# reseeds itself in a forked child; this buffer must be dropped with it.)
os.register_at_fork(after_in_child=_digits.forget)


def new_request_id() -> bytes:
    """A UUID v4, the form Envoy generates for ``x-request-id``."""
    d = _digits.take(31)
    return b"".join(
        (d[:8], b"-", d[8:12], b"-4", d[12:15], b"-", _VARIANT[d[15]], d[16:19], b"-", d[19:31])
    )


def new_trace_id() -> bytes:
    """128-bit B3 trace id, 32 lower-case hex digits (the scenario's X-B3-Traceid)."""
    return _digits.take(32)


def new_span_id() -> bytes:
    """64-bit B3 span id, 16 hex digits."""
    return _digits.take(16)
