"""Values that differ on every call by design: timestamps, UUIDs, request ids, tokens.

Without a baseline there is no measured noise, so such a field is compared by its *kind* of
value only: a UUID against another UUID is noise; a UUID against null or a number is a real
difference. A class is recognised from the value itself, or from a field name that says it is
a per-request id (``x-request-id``, ``traceId``...).
"""

from __future__ import annotations

import re
from typing import Any

from shadowmesh.model.comparison import Path

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("uuid", re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")),
    ("ulid", re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")),
    (
        "timestamp",
        re.compile(
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
            r"(?:Z|[+-]\d{2}(?::?\d{2})?)?"
        ),
    ),
    (
        "http-date",
        re.compile(
            r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
            r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT"
        ),
    ),
    ("trace-id", re.compile(r"(?:Self=[^;]+;)?Root=1-[0-9a-f]{8}-[0-9a-f]{24}(?:;.*)?")),
    ("jwt", re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")),
    ("epoch", re.compile(r"1[0-9]{9}(?:[0-9]{3})?(?:\.[0-9]+)?")),
    ("hex", re.compile(r"[0-9a-fA-F]{16,}")),
    ("token", re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")),
)
# Field names (lower-cased, without separators) that hold one value per request.
_ID_NAMES = frozenset(
    {
        "requestid",
        "xrequestid",
        "traceid",
        "xamzntraceid",
        "xb3traceid",
        "xb3spanid",
        "spanid",
        "traceparent",
        "tracestate",
        "correlationid",
        "xcorrelationid",
        "nonce",
    }
)
_SEPARATORS = re.compile(r"[-_.\s]")


def value_class(value: Any) -> str | None:
    """The volatile class of one value (``uuid``, ``timestamp``, ``epoch``...), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        # Epoch seconds (2001..2103) and milliseconds: a number in that range is a time.
        return "epoch" if 1e9 <= value < 4.2e9 or 1e12 <= value < 4.2e12 else None
    if not isinstance(value, str) or len(value) > 4096:
        return None
    for name, pattern in _PATTERNS:
        if pattern.fullmatch(value) and _plausible(name, value):
            return name
    return None


def _plausible(name: str, value: str) -> bool:
    # A hex or base64 token mixes letters and digits; a long word or number is not a token.
    if name in ("hex", "token"):
        return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
    return True


def is_volatile(path: Path, left: Any, right: Any) -> bool:
    """Whether a value difference is explained by both values being of one volatile class."""
    if _id_field(path) and type(left) is type(right) and isinstance(left, (str, int)):
        return True
    left_class = value_class(left)
    return left_class is not None and left_class == value_class(right)


def _id_field(path: Path) -> bool:
    names = [s for s in path if isinstance(s, str)]
    return bool(names) and _SEPARATORS.sub("", names[-1].lower()) in _ID_NAMES
