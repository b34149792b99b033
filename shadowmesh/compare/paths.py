"""Matching field paths against the patterns of ignore and redact rules, and field keys.

A pattern matches a path and everything below it: ``header`` ignores every header, ``body.items``
every element of ``items``. Counting is per *field*, the path with its array indices folded to
``[*]``, so ``body.items[0].id`` and ``body.items[7].id`` are one field and the number of
counters stays bounded; examples keep the concrete path.
"""

from __future__ import annotations

import re
from functools import lru_cache

from shadowmesh.model.comparison import (
    ANY_DEPTH,
    ANY_INDEX,
    ANY_KEY,
    Path,
    Pattern,
    PatternSegment,
    Segment,
    format_path,
)


def field_of(path: Path) -> str:
    """``body.items[3].id`` -> ``body.items[*].id``; a key that looks like an id is any key:
    ``body.stock["SKU-0189"].qty`` -> ``body.stock.*.qty`` (a dictionary keyed by ids is one
    field, not one per id, as Diffy's map/struct rule has it)."""
    return _field_text(path)


@lru_cache(maxsize=65_536)
def _field_text(path: Path) -> str:
    body = bool(path) and path[0] == "body"  # header names are names, never ids
    return format_path(
        ANY_INDEX if isinstance(s, int) else ANY_KEY if body and i and _id_key(s) else s
        for i, s in enumerate(path)
    )


_NOT_IDENTIFIER = re.compile(r"^[0-9]|[^_A-Za-z0-9]")


def _id_key(key: str) -> bool:
    """A dictionary key, not a struct's field: it has a digit and is no identifier (starts with
    one, or holds a character outside ``[_A-Za-z0-9]``: ``SKU-0189``, ``2024-05-01``, ``42``).
    Diffy's rule, with the digit so that ``first-name`` stays a field."""
    return any(c.isdigit() for c in key) and _NOT_IDENTIFIER.search(key) is not None


def matches(pattern: Pattern, path: Path, *, fold_case: bool = False) -> bool:
    """Whether ``pattern`` names ``path`` or one of its ancestors."""
    return _match(pattern, 0, path, 0, fold_case)


def _match(pattern: Pattern, p: int, path: Path, i: int, fold: bool) -> bool:
    if p == len(pattern):
        return True  # the pattern names an ancestor (or the path itself)
    segment = pattern[p]
    if segment is ANY_DEPTH or segment == ANY_DEPTH:
        return any(_match(pattern, p + 1, path, j, fold) for j in range(i, len(path) + 1))
    if i == len(path):
        return False
    if not _segment_matches(segment, path[i], fold):
        return False
    return _match(pattern, p + 1, path, i + 1, fold)


def _segment_matches(segment: PatternSegment, actual: Segment, fold: bool) -> bool:
    if segment == ANY_INDEX:
        return isinstance(actual, int)
    if segment == ANY_KEY:
        return isinstance(actual, str)
    if isinstance(segment, int) or isinstance(actual, int):
        return segment == actual
    if isinstance(segment, str):
        return segment.lower() == actual.lower() if fold else segment == actual
    return False


def any_matches(patterns: tuple[Pattern, ...], path: Path, *, fold_case: bool = False) -> bool:
    return any(matches(p, path, fold_case=fold_case) for p in patterns)


def names(pattern: Pattern, path: Path) -> bool:
    """Whether ``pattern`` names ``path`` itself (not only one of its ancestors)."""
    return _exact(pattern, 0, path, 0)


def _exact(pattern: Pattern, p: int, path: Path, i: int) -> bool:
    if p == len(pattern):
        return i == len(path)
    segment = pattern[p]
    if segment is ANY_DEPTH or segment == ANY_DEPTH:
        return any(_exact(pattern, p + 1, path, j) for j in range(i, len(path) + 1))
    if i == len(path) or not _segment_matches(segment, path[i], False):
        return False
    return _exact(pattern, p + 1, path, i + 1)
