"""YAML text to validated resources: the one door config comes in by.

``load_text`` reads a multi-document file and reports every error of every document at once
(``ConfigErrors``), so one ``apply`` shows all that is wrong and applies nothing. Kubernetes
kinds shadowmesh does not act on (Deployment, PeerAuthentication, ...) are skipped with a
file-level warning (``model/kinds.py`` says which and why); a ``v1 List`` applies its items.
``load_raw`` reads one already-parsed
document, as the store does when it reloads what was applied.

Never raises anything but ``ConfigError``/``ConfigErrors``, whatever the input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from shadowmesh.errors import ConfigError, ConfigErrors, ParseError
from shadowmesh.model import kinds, schema
from shadowmesh.model.fields import Issues, Obj, child, describe, item
from shadowmesh.model.meta import check_istio_annotations, read_meta
from shadowmesh.model.resources import Document, Resource

_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
_LIST_FIELDS = ("apiVersion", "kind", "metadata", "items")
# Bounds on one document once YAML aliases are expanded: a few "billion laughs" lines must not
# become gigabytes in the store.
_MAX_NODES = 200_000
_MAX_DEPTH = 64


@dataclass(frozen=True)
class LoadResult:
    documents: list[Document]
    # File-level warnings (skipped kinds), without the "Warning: " the CLI adds.
    warnings: list[str]


def load_text(text: str, source: str, default_namespace: str = "default") -> LoadResult:
    """Every resource of a multi-document YAML text, or ConfigErrors listing every problem."""
    raws, yaml_error = _parse_yaml(text, source)
    documents: list[Document] = []
    warnings: list[str] = []
    errors: list[ConfigError] = []
    for index, raw in enumerate(raws):
        for at, entry in _entries(raw, source, index, errors):
            verdict = _verdict(entry)
            if verdict is not None and verdict.warning:
                warnings.append(verdict.warning)
                continue
            document, found = _read(entry, source, index, default_namespace)
            errors.extend(_under(error, at) for error in found)
            if document is not None:
                documents.append(document)
    if yaml_error is not None:
        errors.append(yaml_error)
    if errors:
        raise ConfigErrors(errors)
    return LoadResult(documents=documents, warnings=warnings)


def load_raw(
    raw: Mapping[str, Any], source: str, index: int, default_namespace: str = "default"
) -> Document:
    """One already-parsed document; raises the first ConfigError (``load_text`` gives all)."""
    verdict = _verdict(raw)
    if verdict is not None and verdict.warning:
        raise ConfigError(verdict.warning, source=source, document=index, field="kind")
    document, errors = _read(raw, source, index, default_namespace)
    if errors:
        raise errors[0]
    assert document is not None  # _read returns a document whenever it finds no error
    return document


def _entries(
    raw: object, source: str, index: int, errors: list[ConfigError]
) -> Iterator[tuple[str, object]]:
    """The resources of one YAML document: itself, or the items of a ``v1 List``.

    ``kubectl get -o yaml`` prints several resources as one List; kubectl applies its items.
    """
    if raw is None:
        return
    if not (isinstance(raw, Mapping) and raw.get("kind") == "List"):
        yield "", raw
        return

    def fail(message: str, field: str) -> None:
        errors.append(ConfigError(message, source=source, document=index, kind="List", field=field))

    issues = Issues(kind="List")
    Obj.of(raw, "", issues, _LIST_FIELDS, proto=False)
    for path, message in issues.errors:
        fail(message, path)
    if raw.get("apiVersion") != "v1":
        fail('no matches for kind "List"; use apiVersion v1', "apiVersion")
        return
    entries = raw.get("items")
    if not isinstance(entries, list):
        if entries is not None:
            fail(f"must be a list, got {describe(entries)}", "items")
        return
    for position, entry in enumerate(entries):
        path = item("items", position)
        if isinstance(entry, Mapping) and entry.get("kind") == "List":
            fail("a List may not hold a List", path)
        elif entry is not None:
            yield path, entry


def _under(error: ConfigError, at: str) -> ConfigError:
    """An error found in a List's item, its field path taken from the List."""
    if not at:
        return error
    return ConfigError(
        error.message,
        source=error.source,
        document=error.document,
        kind=error.kind,
        name=error.name,
        field=f"{at}.{error.field}" if error.field else at,
    )


def _verdict(raw: object) -> kinds.Verdict | None:
    if not isinstance(raw, Mapping):
        return None
    kind, api_version = raw.get("kind"), raw.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, (str, type(None))):
        return None
    return kinds.skipped(kind, api_version or "", _peek_name(raw))


def _read(
    raw: object, source: str, index: int, default_namespace: str
) -> tuple[Document | None, list[ConfigError]]:
    def fail(message: str, field: str = "", kind: str = "", name: str = "") -> list[ConfigError]:
        return [
            ConfigError(message, source=source, document=index, kind=kind, name=name, field=field)
        ]

    if not isinstance(raw, Mapping):
        return None, fail(
            f"a resource must be a mapping with apiVersion and kind, got {describe(raw)}"
        )
    kind, api_version, name = raw.get("kind"), raw.get("apiVersion"), _peek_name(raw)
    if not isinstance(kind, str) or not kind:
        message = "kind is required" if kind is None else f"must be a string, got {describe(kind)}"
        return None, fail(message, "kind", name=name)
    verdict = _verdict(raw)
    if verdict is not None and verdict.error:
        return None, fail(verdict.error, verdict.field, kind, name)
    spec = kinds.acted_on(kind)
    if spec is None:
        return None, fail(_unknown_kind(kind), "kind", kind, name)
    if api_version is None:
        return None, fail(
            f"apiVersion is required; use {spec.versions[0]}", "apiVersion", kind, name
        )
    if not isinstance(api_version, str):
        message = f"must be a string, got {describe(api_version)}"
        return None, fail(message, "apiVersion", kind, name)
    if api_version not in spec.versions:
        message = f'no matches for kind "{kind}" in version "{api_version}"'
        return None, fail(f"{message}; use apiVersion {spec.versions[0]}", "apiVersion", kind, name)
    try:
        plain = _plain(raw, "", 0, [0])
    except _Unsupported as exc:
        return None, fail(exc.message, exc.path, kind, name)
    issues = Issues(kind=kind, namespace=default_namespace, name=name)
    resource = _parse(plain, spec, issues, default_namespace)
    _structural_first(plain, kind, issues)
    if issues.errors or resource is None:
        errors = [
            ConfigError(message, source=source, document=index, kind=kind, name=name, field=path)
            for path, message in issues.errors
        ]
        return None, errors or fail("invalid resource", kind=kind, name=name)
    resource = dataclasses.replace(resource, raw=plain, api_version=api_version)
    return Document(resource, source, index, tuple(issues.warnings)), []


def _parse(
    raw: dict[str, Any], kind: kinds.KindInfo, issues: Issues, namespace: str
) -> Resource | None:
    top = Obj.of(raw, "", issues, _TOP_FIELDS, proto=False)
    assert top is not None  # raw is a mapping
    meta = read_meta(top, issues, namespace, kind.name_rule)
    if kind.group == kinds.ISTIO_NETWORKING:
        check_istio_annotations(top, issues)
    spec = top.sub("spec", kind.spec_fields, proto=kind.proto)
    if spec is None:
        if not top.has("spec"):
            issues.error("spec", "spec is required")
        return None
    return kind.parse(spec, meta, issues)


def _structural_first(raw: dict[str, Any], kind: str, issues: Issues) -> None:
    """The CRD's structural errors first, as the API server reports them before the webhook.

    A reader's error at a path the schema already refused is dropped (a cluster never gets to
    say it), and inside a value of the wrong type too; its other errors stay, so one apply
    still shows every problem.
    """
    found = Issues(kind=issues.kind, namespace=issues.namespace, name=issues.name)
    if raw.get("spec") is None and kind in schema.SPEC_REQUIRED:
        found.error("spec", "Required value")
    schema.check_spec(kind, raw.get("spec"), found)
    if not found.errors:
        return
    refused = {path for path, _ in found.errors}
    unreadable = [path for path, message in found.errors if message.startswith("must be ")]
    issues.errors[:] = found.errors + [
        (path, message)
        for path, message in issues.errors
        if path not in refused and not any(_within(path, at) for at in unreadable)
    ]


def _within(path: str, at: str) -> bool:
    return path.startswith(at) and path[len(at) : len(at) + 1] in (".", "[")


def _peek_name(raw: Mapping[Any, Any]) -> str:
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) else ""


def _unknown_kind(kind: str) -> str:
    return f'kind "{kind}" is not supported by shadowmesh; it reads {kinds.supported_kinds_text()}'


class _Unsupported(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _plain(value: Any, path: str, depth: int, nodes: list[int]) -> Any:
    """A deep copy of dicts, lists and JSON scalars: what ``raw`` keeps and the store writes.

    Copied without paths first (a stored config of 10,000 documents is read at every start);
    only a document that fails is walked again, with paths, for the message.
    """
    try:
        return _plain_copy(value, depth, nodes)
    except _Unsupported:
        nodes[0] = 0
        return _plain_checked(value, path, depth, nodes)


def _plain_copy(value: Any, depth: int, nodes: list[int]) -> Any:
    # Exact types only (what YAML and JSON decoders make), tested the cheap way; anything else,
    # a subclass included, goes to _plain_checked, which says what is wrong or copies it.
    nodes[0] += 1
    if nodes[0] > _MAX_NODES or depth > _MAX_DEPTH:
        raise _Unsupported("", "")
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        copy: dict[str, Any] = {}
        for key, val in value.items():
            if type(key) is not str:
                raise _Unsupported("", "")
            copy[key] = _plain_copy(val, depth + 1, nodes)
        return copy
    if kind is list:
        return [_plain_copy(val, depth + 1, nodes) for val in value]
    if kind is float and math.isfinite(value):
        return value
    raise _Unsupported("", "")


def _plain_checked(value: Any, path: str, depth: int, nodes: list[int]) -> Any:
    nodes[0] += 1
    if nodes[0] > _MAX_NODES or depth > _MAX_DEPTH:
        raise _Unsupported(path, "document too large or too deeply nested (check YAML aliases)")
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise _Unsupported(child(path, key), f"keys must be strings, got {describe(key)}")
        return {
            key: _plain_checked(val, child(path, key), depth + 1, nodes)
            for key, val in value.items()
        }
    if isinstance(value, list):
        return [_plain_checked(val, item(path, i), depth + 1, nodes) for i, val in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unsupported(path, f"must be a finite number, got {describe(value)}")
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise _Unsupported(path, f"unsupported YAML value: {describe(value)}")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter where Kubernetes is: no duplicate keys, no timestamps."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, Any]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f'found duplicate key "{key_node.value}"',
                        key_node.start_mark,
                    )
                seen.add(identity)
        return super().construct_mapping(node, deep)


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # Kubernetes keeps creationTimestamp and friends as strings; datetime is not JSON.
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _parse_yaml(text: str, source: str) -> tuple[list[Any], ConfigError | None]:
    """The documents before any syntax error, and that error (with line and column)."""
    documents: list[Any] = []
    try:
        for document in yaml.load_all(text, Loader=_StrictLoader):
            documents.append(document)
    except yaml.MarkedYAMLError as exc:
        return documents, ParseError(_yaml_message(exc), source=source, document=len(documents))
    # PyYAML's constructors raise plain built-in errors on malformed explicit tags
    # (``!!int x``, ``!!timestamp``); deep nesting raises RecursionError.
    except Exception as exc:  # noqa: BLE001
        message = " ".join(f"invalid YAML: {exc.__class__.__name__}: {exc}".split())
        return documents, ParseError(message, source=source, document=len(documents))
    return documents, None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = "; ".join(part for part in (exc.context, exc.problem) if part)
    return f"invalid YAML{where}: {what or exc}"
