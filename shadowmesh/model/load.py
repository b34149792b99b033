"""YAML text to validated resources: the one door config comes in by.

``load_text`` reads a multi-document file and reports every error of every document at once
(``ConfigErrors``), so one ``apply`` shows all that is wrong and applies nothing. Kubernetes
workload kinds (Deployment, Pod, ...) are skipped with a file-level warning: the scenario's
files hold them, and shadowmesh runs no workloads. ``load_raw`` reads one already-parsed
document, as the store does when it reloads what was applied.

Never raises anything but ``ConfigError``/``ConfigErrors``, whatever the input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from shadowmesh.errors import ConfigError, ConfigErrors
from shadowmesh.model import (
    comparison,
    destinationrule,
    service,
    validate,
    virtualservice,
    workload,
)
from shadowmesh.model.fields import Issues, Obj, child, describe, item
from shadowmesh.model.meta import read_meta
from shadowmesh.model.resources import Document, Meta, Resource

ISTIO_VERSIONS = (
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
)
WORKLOAD_KINDS = frozenset(
    {
        "Deployment",
        "ServiceAccount",
        "Pod",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ConfigMap",
        "Secret",
        "Namespace",
    }
)
_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
# Bounds on one document once YAML aliases are expanded: a few "billion laughs" lines must not
# become gigabytes in the store.
_MAX_NODES = 200_000
_MAX_DEPTH = 64


@dataclass(frozen=True)
class LoadResult:
    documents: list[Document]
    # File-level warnings (skipped workload kinds), without the "Warning: " the CLI adds.
    warnings: list[str]


@dataclass(frozen=True)
class _Kind:
    versions: tuple[str, ...]
    spec_fields: tuple[str, ...]
    proto: bool
    parse: Callable[[Obj, Meta | None, Issues], Resource | None]
    name_rule: Callable[[str], str | None] = validate.k8s_subdomain


_KINDS: dict[str, _Kind] = {
    "Service": _Kind(
        ("v1",), service.SPEC_FIELDS, False, service.parse_service, validate.dns1035_label
    ),
    "WorkloadEntry": _Kind(
        ISTIO_VERSIONS, workload.SPEC_FIELDS, True, workload.parse_workload_entry
    ),
    "VirtualService": _Kind(
        ISTIO_VERSIONS, virtualservice.SPEC_FIELDS, True, virtualservice.parse_virtual_service
    ),
    "DestinationRule": _Kind(
        ISTIO_VERSIONS, destinationrule.SPEC_FIELDS, True, destinationrule.parse_destination_rule
    ),
    "Comparison": _Kind(
        (comparison.API_VERSION,), comparison.SPEC_FIELDS, False, comparison.parse_comparison
    ),
}


def load_text(text: str, source: str, default_namespace: str = "default") -> LoadResult:
    """Every resource of a multi-document YAML text, or ConfigErrors listing every problem."""
    raws, yaml_error = _parse_yaml(text, source)
    documents: list[Document] = []
    warnings: list[str] = []
    errors: list[ConfigError] = []
    for index, raw in enumerate(raws):
        if raw is None:
            continue
        skipped = _skipped_kind(raw)
        if skipped:
            warnings.append(skipped)
            continue
        document, found = _read(raw, source, index, default_namespace)
        errors.extend(found)
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
    skipped = _skipped_kind(raw)
    if skipped:
        raise ConfigError(skipped, source=source, document=index, field="kind")
    document, errors = _read(raw, source, index, default_namespace)
    if errors:
        raise errors[0]
    assert document is not None  # _read returns a document whenever it finds no error
    return document


def _skipped_kind(raw: object) -> str | None:
    if not isinstance(raw, Mapping):
        return None
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in WORKLOAD_KINDS:
        return None
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return (
        f'{kind} "{name if isinstance(name, str) else ""}" skipped: shadowmesh runs no '
        "workloads; declare the running process as a WorkloadEntry (networking.istio.io/v1)"
    )


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
    spec = _KINDS.get(kind)
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
    if issues.errors or resource is None:
        errors = [
            ConfigError(message, source=source, document=index, kind=kind, name=name, field=path)
            for path, message in issues.errors
        ]
        return None, errors or fail("invalid resource", kind=kind, name=name)
    resource = dataclasses.replace(resource, raw=plain, api_version=api_version)
    return Document(resource, source, index, tuple(issues.warnings)), []


def _parse(raw: dict[str, Any], kind: _Kind, issues: Issues, namespace: str) -> Resource | None:
    top = Obj.of(raw, "", issues, _TOP_FIELDS, proto=False)
    assert top is not None  # raw is a mapping
    meta = read_meta(top, issues, namespace, kind.name_rule)
    spec = top.sub("spec", kind.spec_fields, proto=kind.proto)
    if spec is None:
        if not top.has("spec"):
            issues.error("spec", "spec is required")
        return None
    return kind.parse(spec, meta, issues)


def _peek_name(raw: Mapping[Any, Any]) -> str:
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) else ""


def _unknown_kind(kind: str) -> str:
    return (
        f'kind "{kind}" is not supported by shadowmesh; it reads Service (v1), and WorkloadEntry, '
        "VirtualService and DestinationRule (networking.istio.io/v1, v1beta1 or v1alpha3), and "
        f"Comparison ({comparison.API_VERSION})"
    )


class _Unsupported(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _plain(value: Any, path: str, depth: int, nodes: list[int]) -> Any:
    """A deep copy of dicts, lists and JSON scalars: what ``raw`` keeps and the store writes."""
    nodes[0] += 1
    if nodes[0] > _MAX_NODES or depth > _MAX_DEPTH:
        raise _Unsupported(path, "document too large or too deeply nested (check YAML aliases)")
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise _Unsupported(child(path, key), f"keys must be strings, got {describe(key)}")
        return {key: _plain(val, child(path, key), depth + 1, nodes) for key, val in value.items()}
    if isinstance(value, list):
        return [_plain(val, item(path, i), depth + 1, nodes) for i, val in enumerate(value)]
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
        return documents, ConfigError(_yaml_message(exc), source=source, document=len(documents))
    # PyYAML's constructors raise plain built-in errors on malformed explicit tags
    # (``!!int x``, ``!!timestamp``); deep nesting raises RecursionError.
    except Exception as exc:  # noqa: BLE001
        message = " ".join(f"invalid YAML: {exc.__class__.__name__}: {exc}".split())
        return documents, ConfigError(message, source=source, document=len(documents))
    return documents, None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = "; ".join(part for part in (exc.context, exc.problem) if part)
    return f"invalid YAML{where}: {what or exc}"
