"""Endpoint names: the method and a path template, ``GET /users/{id}/orders``.

Raw paths as endpoint keys give every user its own endpoint with one request; one endpoint for
everything hides where a difference is. Segments that look like identifiers (numbers, UUIDs,
hex of 8 characters or more, opaque tokens of 16 or more) become ``{id}``, and the number of
endpoints per comparison is capped: past the cap, new ones are counted as ``OTHER``.
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


def is_id(segment: str) -> bool:
    if _NUMBER.fullmatch(segment) or _UUID.fullmatch(segment):
        return True
    has_digit = any(c.isdigit() for c in segment)
    if _HEX.fullmatch(segment):
        return has_digit  # "deadbeef" or "facade00"? only with a digit, words stay words
    return bool(_TOKEN.fullmatch(segment)) and has_digit and any(c.isalpha() for c in segment)


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


class EndpointNamer:
    """Endpoint names for one comparison, at most ``limit`` distinct ones (then ``OTHER``)."""

    def __init__(self, known: set[str] | None = None, limit: int = DEFAULT_MAX_ENDPOINTS) -> None:
        self._known: set[str] = set(known or ())
        self._known.discard(OTHER)
        self._limit = limit

    def name(self, method: str, target: str) -> str:
        name = endpoint_name(method, target)
        if name in self._known:
            return name
        if len(self._known) >= self._limit:
            return OTHER
        self._known.add(name)
        return name
