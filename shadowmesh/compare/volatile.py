"""Values that differ on every call by design: timestamps, UUIDs, request ids, tokens.

Such a value is compared by its class and shape, not by its value (``volatile_match``): a UUID
against another UUID is the same; a UUID against null, a number or an upper-case UUID is a real
difference; two timestamps are the same when they have one format (``2024-05-01T12:30:45.123Z``
is not ``2024-05-01T12:30:45Z``: a precision change) and lie within the tolerance. A class is
recognised from the value itself, or from a field name that says it is a per-request id
(``x-request-id``, ``traceId``...).

With a baseline every class below is volatile (the baseline still measures whatever noise the
classes miss). Without one there is no measured noise to fall back on, so only the strict
shapes are (``STRICT``): a plan name, an API path or a business date that happens to look like
a token stays a value, and a change of it a difference. The report lists these assumptions.
"""

from __future__ import annotations

import datetime
import email.utils
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
STRICT = frozenset({"uuid", "ulid", "timestamp", "http-date", "trace-id", "jwt"})
_CLOCKS = frozenset({"timestamp", "http-date", "epoch"})
_DIGIT = re.compile(r"[0-9]")


_QUOTED = re.compile(r'(?:W/)?"([^"]*)"')


def value_class(value: Any) -> str | None:
    """The volatile class of one value (``uuid``, ``timestamp``, ``epoch``...), or None.

    An entity tag (``"5d41402abc4b2a76"``, ``W/"..."``) is the class of what it quotes: a hash
    of a body that holds a timestamp changes with the clock, and its body is compared anyway."""
    if isinstance(value, str):
        quoted = _QUOTED.fullmatch(value)
        if quoted is not None:
            value = quoted.group(1)
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


def alike(left: Any, right: Any) -> bool:
    """Two values of one type and one volatile class (or none): what a field that varies on
    the primary itself may change to without it being a difference (a UUID for "n/a" is one)."""
    return type(left) is type(right) and value_class(left) == value_class(right)


def _id_field(path: Path) -> bool:
    names = [s for s in path if isinstance(s, str)]
    return bool(names) and _SEPARATORS.sub("", names[-1].lower()) in _ID_NAMES


def volatile_match(
    path: Path, left: Any, right: Any, *, baseline: bool, tolerance_s: float
) -> bool:
    """Whether two different values are the same as far as a volatile field goes: the same
    class (strict classes only without a baseline), the same shape, clocks within
    ``tolerance_s`` of each other."""
    if _id_field(path) and type(left) is type(right) and isinstance(left, (str, int)):
        return True
    cls = value_class(left)
    if cls is None or cls != value_class(right) or not (baseline or cls in STRICT):
        return False
    if shape(left) != shape(right):
        return False
    if cls in _CLOCKS:
        a, b = seconds(left), seconds(right)
        return a is not None and b is not None and abs(a - b) <= tolerance_s
    return True


def shape(value: Any) -> str:
    """A value with its digits as 0 and its letters' case kept: its format, not its content.
    Hex and tokens keep only their length and alphabet (their letters are content)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return type(value).__name__
    if isinstance(value, (int, float)):
        return f"{type(value).__name__}:{len(str(int(value)))}"
    cls = value_class(value)
    if cls in ("hex", "token", "jwt", "ulid"):
        lower = any(c.islower() for c in value)
        upper = any(c.isupper() for c in value)
        return f"{cls}:{len(value) if cls != 'jwt' else 0}:{lower}:{upper}"
    if cls == "uuid":
        return "uuid:" + (
            "lower" if value == value.lower() else "upper" if value == value.upper() else "mixed"
        )
    return _DIGIT.sub("0", value)


def seconds(value: Any) -> float | None:
    """A clock value as epoch seconds, or None if it does not parse."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000 if value >= 1e12 else float(value)
    if not isinstance(value, str):
        return None
    cls = value_class(value)
    try:
        if cls == "epoch":
            number = float(value)
            return number / 1000 if number >= 1e12 else number
        if cls == "http-date":
            return email.utils.parsedate_to_datetime(value).timestamp()
        if cls == "timestamp":
            text = value.replace(" ", "T", 1).replace(",", ".")
            if text.endswith("Z"):
                text = text[:-1] + "+00:00"
            moment = datetime.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            return moment.timestamp()
    except (ValueError, TypeError, OverflowError):
        return None
    return None
