"""Two normalised trees in, the list of their differences out, each at a field path.

Kinds of difference, from the primary's side (left) to the candidate's (right):

- ``status``: the status codes differ;
- ``value``: same JSON type, different value;
- ``type``: different JSON types (``"3"`` against ``3``, an object against null);
- ``missing``: the primary has the field, the candidate does not;
- ``extra``: the candidate has a field the primary does not;
- ``order``: an array holds the same elements in another order (reported once, at the array).

Arrays are compared by position; equal arrays, in equal order, are no difference at all.
``array_diff`` aligns two arrays for the report instead: which elements moved, which changed
in their place, which were added or removed.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Literal

from shadowmesh.model.comparison import Path

Kind = Literal["status", "value", "type", "missing", "extra", "order"]
KINDS: tuple[Kind, ...] = ("status", "value", "type", "missing", "extra", "order")
# Deeper than this, a subtree is compared whole, as one value: recursion stays bounded.
MAX_DEPTH = 64
# A response unlike the primary's in every field stops being described after this many.
MAX_DIFFERENCES = 1_000
# Longer arrays are not aligned for an array diff (the alignment is quadratic at worst).
MAX_ARRAY_ITEMS = 2_000


class _Absent:
    """The value on the side that lacks a field."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True, slots=True)
class Difference:
    path: Path
    kind: Kind
    left: Any  # the primary's value, or ABSENT
    right: Any  # the other side's value, or ABSENT


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def diff(left: dict[str, Any], right: dict[str, Any]) -> list[Difference]:
    """Differences between two normalised responses (``{"status", "header", "body"}``)."""
    out = _Collector()
    if left.get("status") != right.get("status"):
        out.add(("status",), "status", left.get("status"), right.get("status"))
    _compare(left.get("header", {}), right.get("header", {}), ("header",), out, 1)
    _compare(left.get("body"), right.get("body"), ("body",), out, 1)
    return out.found


def diff_values(left: Any, right: Any, path: Path = ()) -> list[Difference]:
    """Differences between two JSON-like values, paths relative to ``path``."""
    out = _Collector()
    _compare(left, right, path, out, len(path))
    return out.found


class _Collector:
    def __init__(self) -> None:
        self.found: list[Difference] = []

    @property
    def full(self) -> bool:
        return len(self.found) >= MAX_DIFFERENCES

    def add(self, path: Path, kind: Kind, left: Any, right: Any) -> None:
        if not self.full:
            self.found.append(Difference(path, kind, left, right))


def _compare(left: Any, right: Any, path: Path, out: _Collector, depth: int) -> None:
    if out.full:
        return
    left_type, right_type = type_name(left), type_name(right)
    if left_type != right_type:
        out.add(path, "type", left, right)
    elif depth > MAX_DEPTH:
        if canonical(left) != canonical(right):
            out.add(path, "value", left, right)
    elif left_type == "object":
        _compare_objects(left, right, path, out, depth)
    elif left_type == "array":
        _compare_arrays(left, right, path, out, depth)
    elif left != right:
        out.add(path, "value", left, right)


def _compare_objects(
    left: dict[str, Any], right: dict[str, Any], path: Path, out: _Collector, depth: int
) -> None:
    for key, value in left.items():
        if key in right:
            _compare(value, right[key], (*path, key), out, depth + 1)
        else:
            out.add((*path, key), "missing", value, ABSENT)
    for key, value in right.items():
        if key not in left:
            out.add((*path, key), "extra", ABSENT, value)


def _compare_arrays(
    left: list[Any], right: list[Any], path: Path, out: _Collector, depth: int
) -> None:
    mark = len(out.found)
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        _compare(a, b, (*path, index), out, depth + 1)
    for index in range(len(right), len(left)):
        out.add((*path, index), "missing", left[index], ABSENT)
    for index in range(len(left), len(right)):
        out.add((*path, index), "extra", ABSENT, right[index])
    if len(out.found) > mark and _same_elements(left, right):
        del out.found[mark:]
        out.add(path, "order", left, right)


def _same_elements(left: list[Any], right: list[Any]) -> bool:
    if len(left) != len(right):
        return False
    return sorted(map(canonical, left)) == sorted(map(canonical, right))


@dataclass(frozen=True, slots=True)
class ArrayDiff:
    """Two arrays aligned, element by element (equal means equal canonical JSON).

    ``kept`` elements are in the same relative order on both sides (an insertion before them
    shifts their index, it does not move them); ``moved``: (index in the primary, index in the
    candidate) of an element found elsewhere; ``changed``: (primary index, candidate index) of
    an element replaced by another in its place; ``removed``: primary indices with no
    counterpart; ``added``: candidate indices with none."""

    lengths: tuple[int, int]
    kept: int
    moved: tuple[tuple[int, int], ...]
    changed: tuple[tuple[int, int], ...]
    removed: tuple[int, ...]
    added: tuple[int, ...]

    def to_json(self, shown: int) -> dict[str, Any]:
        """As the report keeps it: at most ``shown`` entries of each kind, with their counts."""
        lists = {
            "moved": self.moved,
            "changed": self.changed,
            "removed": self.removed,
            "added": self.added,
        }
        out: dict[str, Any] = {"lengths": list(self.lengths), "kept": self.kept}
        for name, entries in lists.items():
            out[name] = [list(e) if isinstance(e, tuple) else e for e in entries[:shown]]
        out["counts"] = {name: len(entries) for name, entries in lists.items()}
        return out


def array_diff(left: list[Any], right: list[Any]) -> ArrayDiff | None:
    """The alignment of two arrays (None when one is longer than ``MAX_ARRAY_ITEMS``).

    The longest common subsequence (difflib's, junk heuristics off) is what stayed in order;
    of the rest, an element of the primary equal to one of the candidate has moved (paired
    first to first among duplicates), and what is left of each replaced stretch pairs up, in
    order, as changed, the surplus being removed or added."""
    if len(left) > MAX_ARRAY_ITEMS or len(right) > MAX_ARRAY_ITEMS:
        return None
    a, b = [canonical(x) for x in left], [canonical(x) for x in right]
    stretches: list[tuple[range, range]] = []
    kept = 0
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            kept += i2 - i1
        else:
            stretches.append((range(i1, i2), range(j1, j2)))
    free: dict[str, deque[int]] = {}
    for _, js in stretches:
        for j in js:
            free.setdefault(b[j], deque()).append(j)
    moved: dict[int, int] = {}
    for is_, _ in stretches:
        for i in is_:
            waiting = free.get(a[i])
            if waiting:
                moved[i] = waiting.popleft()
    taken = set(moved.values())
    changed: list[tuple[int, int]] = []
    removed: list[int] = []
    added: list[int] = []
    for is_, js in stretches:
        rest_left = [i for i in is_ if i not in moved]
        rest_right = [j for j in js if j not in taken]
        changed += zip(rest_left, rest_right, strict=False)
        removed += rest_left[len(rest_right) :]
        added += rest_right[len(rest_left) :]
    return ArrayDiff(
        (len(left), len(right)),
        kept,
        tuple(sorted(moved.items())),
        tuple(changed),
        tuple(removed),
        tuple(sorted(added)),
    )


def array_of(d: Difference) -> Path | None:
    """The array whose alignment explains a difference: the array itself for an ``order``
    difference, else the innermost array on its path (None: no array on it)."""
    if d.kind == "order":
        return d.path
    for n in range(len(d.path) - 1, -1, -1):
        if isinstance(d.path[n], int):
            return d.path[:n]
    return None


def canonical(value: Any) -> str:
    """One text per JSON value: key order does not matter, ``true`` is not ``1``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def flatten(tree: Any, path: Path = ()) -> dict[Path, Any]:
    """Every leaf of a tree by its path; empty objects and arrays are leaves too."""
    return dict(_leaves(tree, path))


def _leaves(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list) and value:
        for index, child in enumerate(value):
            yield from _leaves(child, (*path, index))
    else:
        yield path, value
