"""The shadow's Host: Envoy's ``shadowAppendedHost``, IPv6-aware."""

from __future__ import annotations

SUFFIX = b"-shadow"


def port_start(authority: bytes) -> int:
    """Index of the ``:port`` part of an authority, or -1 when it has none.

    An IPv6 literal is bracketed (``[::1]:80``): only a colon after the closing bracket
    starts a port.
    """
    colon = authority.rfind(b":")
    if colon < 0:
        return -1
    bracket = authority.rfind(b"]")
    if bracket > colon:
        return -1
    if authority.startswith(b"[") and bracket < 0:
        return -1
    return colon


def shadow_authority(authority: bytes) -> bytes:
    """``httpbin:8000`` -> ``httpbin-shadow:8000``; ``[::1]:80`` -> ``[::1]-shadow:80``."""
    at = port_start(authority)
    if at < 0:
        return authority + SUFFIX
    return authority[:at] + SUFFIX + authority[at:]
