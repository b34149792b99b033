"""Endpoint names: the method and a path template, ``GET /users/{id}/orders``.

Raw paths as endpoint keys give every user its own endpoint with one request; one endpoint for
everything hides where a difference is. In order:

1. the user's patterns (the Comparison's ``endpoints``: ``/skus/{sku}``, ``{name}`` is one
   segment, ``*`` any rest), first match wins;
2. segments that look like identifiers become ``{id}``: numbers, UUIDs, hex of 8 or more,
   opaque tokens of 16 or more, and any segment with a digit that is not a word with a version
   or a short number at its end (``SKU-0189``, ``A7F3``, ``2024-05-01`` are ids; ``v2``,
   ``oauth2``, ``sha256`` are words);
3. a position whose values vary: once ``MAX_DISTINCT`` different values were seen at one
   position after the same prefix, further ones there are ``{id}`` too.

The number of endpoints per comparison is capped: past the cap, new ones count as ``OTHER``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

DEFAULT_MAX_ENDPOINTS = 200
OTHER = "OTHER"
ID = "{id}"
_MAX_SEGMENTS = 16
_MAX_SEGMENT_LENGTH = 64

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_TOKEN = re.compile(r"[A-Za-z0-9_~+=-]{16,}")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:~+=-]*")
# A word with a version or a short number at its end is a name, not an id: v2, oauth2, sha256.
_WORD_WITH_NUMBER = re.compile(r"(?:[vV][0-9]+(?:\.[0-9]+)*|[a-z]{2,}[0-9]{1,3})")
MAX_DISTINCT = 20


def is_id(segment: str) -> bool:
    if _NUMBER.fullmatch(segment) or _UUID.fullmatch(segment):
        return True
    has_digit = any(c.isdigit() for c in segment)
    if not has_digit:
        return False  # "deadbeef" or "facade00"? only with a digit, words stay words
    if _HEX.fullmatch(segment) or _TOKEN.fullmatch(segment):
        return True
    return bool(_CODE.fullmatch(segment)) and not _WORD_WITH_NUMBER.fullmatch(segment)


def template(target: str) -> str:
    """``/users/42/orders?x=1`` -> ``/users/{id}/orders``."""
    path = urlsplit(target).path or "/"
    segments = path.split("/")
    out = [ID if is_id(s) else s[:_MAX_SEGMENT_LENGTH] for s in segments[: _MAX_SEGMENTS + 1]]
    if len(segments) > _MAX_SEGMENTS + 1:
        out.append("...")
    return "/".join(out) or "/"


def endpoint_name(method: str, target: str) -> str:
    return f"{method.upper()} {template(target)}"


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``/skus/{sku}/reviews`` -> a regex on the path: ``{name}`` one segment, ``*`` any rest."""
    parts = []
    for piece in re.split(r"(\{[^/{}]*\}|\*)", pattern):
        if piece == "*":
            parts.append(".*")
        elif piece.startswith("{") and piece.endswith("}"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


class EndpointNamer:
    """Endpoint names for one comparison, at most ``limit`` distinct ones (then ``OTHER``)."""

    def __init__(
        self,
        known: set[str] | None = None,
        limit: int = DEFAULT_MAX_ENDPOINTS,
        patterns: tuple[str, ...] = (),
    ) -> None:
        self._known: set[str] = set(known or ())
        self._known.discard(OTHER)
        self._limit = limit
        self._patterns = [(p, compile_pattern(p)) for p in patterns]
        # (method, the template before the position) -> the values seen there, up to the cap.
        self._values: dict[tuple[str, str], set[str]] = {}

    def name(self, method: str, target: str) -> str:
        name = self._name(method.upper(), urlsplit(target).path or "/")
        if name in self._known:
            return name
        if len(self._known) >= self._limit:
            return OTHER
        self._known.add(name)
        return name

    def _name(self, method: str, path: str) -> str:
        for pattern, regex in self._patterns:
            if regex.fullmatch(path):
                return f"{method} {pattern}"
        segments = template(path).split("/")
        for index in range(1, len(segments)):
            segment = segments[index]
            if segment in (ID, "", "..."):
                continue
            key = (method, "/".join(segments[:index]))
            seen = self._values.setdefault(key, set())
            if segment in seen:
                continue
            if len(seen) >= MAX_DISTINCT:
                segments[index] = ID  # this position varies: an id, whatever it looks like
            else:
                seen.add(segment)
        return f"{method} {'/'.join(segments) or '/'}"
