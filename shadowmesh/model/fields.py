"""Reading a parsed YAML document field by field, with paths, strict unknown-field checks and types.

Rule 1: every field a document may hold is declared before it is read; any other key is an
error (``unknown field "mirrorPercentge"``), as ``kubectl apply --validate=strict`` does.
Rule 2: Istio kinds are protobuf messages, so each field may be spelled with its JSON name
(``mirrorPercentage``) or its proto name (``mirror_percentage``), as protojson accepts; fields
are declared by proto name. Kubernetes kinds have one spelling only (``targetPort``).
Rule 3: a field set to ``null`` counts as absent, as in protojson and Kubernetes.
Rule 4: reading never raises: a wrong type records an error naming the field and the expected
type, and the reader answers ``None`` so parsing goes on and reports every problem at once.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@functools.cache
def json_name(proto_name: str) -> str:
    """protoc's JSON name: ``consecutive_5xx_errors`` -> ``consecutive5xxErrors``."""
    first, *rest = proto_name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def child(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def describe(value: object) -> str:
    """How a value is named in a type error: ``a string ("v1")``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value:g})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'a string ("{shown}")'
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def is_int(value: object) -> bool:
    # YAML's true/false are ints to Python; in every schema we read they are not numbers.
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(float(value))  # type: ignore[arg-type]


@dataclass
class Issues:
    """Errors (field path, message) and warnings of one document, in the order found."""

    kind: str
    namespace: str = ""
    name: str = ""
    # How a not-acted-on warning ends: what still works without the field.
    tail: str = "the resource works without it"
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def error(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def note(self, path: str, message: str) -> None:
        """A warning about one field, prefixed with the resource it is in."""
        self.warn(f"{self.label}: {path} {message}")

    def not_acted_on(self, path: str, tail: str = "") -> None:
        self.note(path, f"is not acted on by shadowmesh yet; {tail or self.tail}")


def type_error(issues: Issues, path: str, expected: str, value: object) -> None:
    issues.error(path, f"must be {expected}, got {describe(value)}")


@functools.cache
def _spellings(fields: tuple[str, ...], proto: bool) -> Mapping[str, str]:
    """Each accepted spelling of ``fields`` -> its JSON name; made once per field list (a
    stored config of 10,000 documents is read at every start)."""
    spellings: dict[str, str] = {}
    for name in fields:
        canonical = json_name(name) if proto else name
        spellings[canonical] = canonical
        spellings[name] = canonical
    return spellings


class Obj:
    """One mapping of a document, its keys checked against the declared fields.

    Fields are read by their JSON name (``obj.number("mirrorPercentage")``); ``path(name)`` gives
    the field path with the spelling the user wrote, for messages.
    """

    def __init__(self, data: Mapping[Any, Any], path: str, issues: Issues, keys: dict[str, str]):
        self.data = data
        self.at = path
        self.issues = issues
        self._keys = keys  # JSON name -> key as written

    @classmethod
    def of(
        cls,
        value: object,
        path: str,
        issues: Issues,
        fields: Iterable[str],
        *,
        proto: bool,
    ) -> Obj | None:
        if not isinstance(value, Mapping):
            type_error(issues, path, "a mapping", value)
            return None
        spellings = _spellings(tuple(fields), proto)
        keys: dict[str, str] = {}
        for key in value:
            known = spellings.get(key) if isinstance(key, str) else None
            if known is None:
                issues.error(child(path, key), _unknown(key, spellings))
            elif known in keys:
                issues.error(
                    child(path, key),
                    f'field "{known}" is set twice (as "{keys[known]}" and "{key}")',
                )
            else:
                keys[known] = key
        return cls(value, path, issues, keys)

    def path(self, name: str) -> str:
        return child(self.at, self._keys.get(name, name))

    def has(self, name: str) -> bool:
        return self.get(name) is not None

    def get(self, name: str) -> Any:
        key = self._keys.get(name)
        return None if key is None else self.data[key]

    def present(self) -> list[str]:
        """JSON names of the fields that are set, in document order."""
        return [name for name in self._keys if self.get(name) is not None]

    def _typed(self, name: str, ok: bool, expected: str) -> bool:
        if not ok:
            type_error(self.issues, self.path(name), expected, self.get(name))
        return ok

    def text(self, name: str) -> str | None:
        value = self.get(name)
        if value is None or not self._typed(name, isinstance(value, str), "a string"):
            return None
        return str(value)

    def required_text(
        self, name: str, check: Callable[[str], str | None], issues: Issues
    ) -> str | None:
        """A required string field that ``check`` accepts (it returns a problem, or None).

        Absent, not a string, or refused: the error is recorded and None returned.
        """
        value = self.text(name)
        if value is None:
            if not self.has(name):
                issues.error(self.path(name), f"{name} is required")
            return None
        problem = check(value)
        if problem:
            issues.error(self.path(name), problem)
            return None
        return value

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        if value is None or not self._typed(name, is_int(value), "an integer"):
            return None
        return int(value)

    def number(self, name: str) -> float | None:
        value = self.get(name)
        if value is None or not self._typed(name, is_number(value), "a finite number"):
            return None
        return float(value)

    def flag(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None or not self._typed(name, isinstance(value, bool), "true or false"):
            return None
        return bool(value)

    def items(self, name: str) -> Iterator[tuple[str, Any]]:
        """(path, value) of each list element; nothing if absent or not a list."""
        value = self.get(name)
        if value is None or not self._typed(name, isinstance(value, list), "a list"):
            return
        base = self.path(name)
        for index, element in enumerate(value):
            yield item(base, index), element

    def texts(self, name: str) -> tuple[str, ...]:
        out = []
        for path, value in self.items(name):
            if isinstance(value, str):
                out.append(value)
            else:
                type_error(self.issues, path, "a string", value)
        return tuple(out)

    def mapping(self, name: str) -> Mapping[Any, Any] | None:
        value = self.get(name)
        if value is None or not self._typed(name, isinstance(value, Mapping), "a mapping"):
            return None
        return value  # type: ignore[no-any-return]

    def string_map(self, name: str) -> dict[str, str]:
        """A string-to-string map (labels, selectors); bad entries are reported and left out."""
        value = self.mapping(name)
        out: dict[str, str] = {}
        for key, val in (value or {}).items():
            path = child(self.path(name), key)
            if not isinstance(key, str):
                type_error(self.issues, path, "a string key", key)
            elif not isinstance(val, str):
                type_error(self.issues, path, "a string", val)
            else:
                out[key] = val
        return out

    def sub(self, name: str, fields: Iterable[str], *, proto: bool = True) -> Obj | None:
        value = self.get(name)
        if value is None:
            return None
        return Obj.of(value, self.path(name), self.issues, fields, proto=proto)


def _unknown(key: object, spellings: Mapping[str, str]) -> str:
    message = f'unknown field "{key}"'
    if isinstance(key, str):
        close = difflib.get_close_matches(key, list(spellings.values()), n=1, cutoff=0.75)
        if close:
            message += f' (did you mean "{close[0]}"?)'
    return message
