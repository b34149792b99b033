"""The control plane: apply, delete and get, each all-or-nothing, then one swap of the table.

The order of an apply is the whole point of this module:

1. parse every file (all errors of all files are reported together; any error aborts);
2. refuse two documents naming the same resource;
3. compile a candidate RouteTable from the stored resources with the new ones in place;
4. write the documents in one store transaction;
5. hand the new table to the data plane (``on_table``), which swaps it in one assignment,
   while that transaction is still open, then commit.

A failure anywhere, the data plane refusing the table included, leaves both the store and the
running table as they were. A change that changes nothing (every document ``unchanged``) does
not call ``on_table``.

Every method runs under one lock, so the admin API may call it from any thread; ``on_table`` is
called on the caller's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from shadowmesh.control.dns import Resolver
from shadowmesh.control.kinds import (
    KindInfo,
    applied_line,
    deleted_line,
    not_found_error,
    resolve_kind,
)
from shadowmesh.control.store import BeforeCommit, Key, Store, StoredResource
from shadowmesh.errors import ConfigError, ConfigErrors, ShadowmeshError
from shadowmesh.model.comparison import comparison_conflicts, comparison_warnings
from shadowmesh.model.load import LoadResult, load_text
from shadowmesh.model.resources import Document, Resource, resource_key
from shadowmesh.routing.analyze import Message, OwnListeners, analyze_messages
from shadowmesh.routing.compiler import RouteCompiler
from shadowmesh.routing.table import RouteTable

SourceFile = tuple[str, str]  # (source name, text)
T = TypeVar("T")

log = logging.getLogger("shadowmesh.error")


class NotFound(ShadowmeshError):
    """``get`` of a named resource that does not exist; the message is kubectl's error line."""


class DataPlaneError(ShadowmeshError):
    """The data plane refused a new table; nothing was stored."""


@dataclass(frozen=True)
class ApplyOutcome:
    lines: list[str]  # kubectl's lines, in document order
    warnings: list[str]  # without the "Warning: " prefix


@dataclass(frozen=True)
class DeleteOutcome:
    lines: list[str]
    errors: list[str]  # kubectl's NotFound lines
    warnings: list[str]


@dataclass(frozen=True)
class GetOutcome:
    kind: KindInfo
    items: list[dict[str, Any]]  # stored documents, with kubectl's server-set metadata


class Controller:
    def __init__(
        self,
        store: Store,
        on_table: Callable[[RouteTable], None],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """``labels``: the proxy's workload labels (``serve --workload-labels``), which the
        routes' ``sourceLabels`` select at compile time."""
        self._store = store
        self._on_table = on_table
        # Where the proxy listens, so an apply can warn of an endpoint that is the proxy itself;
        # set by serve once it knows (None: not checked).
        self.own_listeners: OwnListeners | None = None
        # ServiceEntry names resolved off the request path (serve sets it): the table is
        # compiled from its last answers, and ``refresh()`` recompiles when they change.
        self.dns: Resolver | None = None
        self._lock = threading.RLock()
        self._resources: dict[Key, Resource] = {}
        self._versions: dict[Key, int] = {}  # the stored revision of each row last read
        self._loaded = False
        self._compiler = RouteCompiler(labels=labels or {})
        self._table: RouteTable | None = None

    @property
    def table(self) -> RouteTable | None:
        """The table the data plane runs; None until ``start()``."""
        return self._table

    @property
    def revision(self) -> int:
        with self._lock:
            return self._store.revision

    def start(self) -> list[str]:
        """Compile the stored config and hand it to the data plane; returns warnings.

        Stored documents that no longer parse are left out (and named in the warnings) rather
        than keeping the proxy from starting; ``delete`` still removes them. Called again (a
        worker following the store), it re-reads only the rows whose revision changed, and
        recompiles only what they change.
        """
        with self._lock:
            warnings = self._load()
            self._swap(self._compile(self._resources))
            return warnings

    def apply_files(self, files: Sequence[SourceFile], namespace: str = "default") -> ApplyOutcome:
        """Apply every document of ``files`` as one change. Raises ConfigErrors on any error."""
        with self._lock:
            documents, file_warnings, candidate = _plan(files, namespace, self._stored())
            table = self._compile(candidate)
            applied = self._commit(table, lambda hook: self._store.apply(documents, hook))
            self._resources = candidate
            lines = [applied_line(kind, name, outcome) for (kind, _, name), outcome in applied]
            warnings = _apply_warnings(documents, file_warnings, candidate, self.own_listeners)
            return ApplyOutcome(lines, warnings)

    def analyze_files(self, files: Sequence[SourceFile], namespace: str = "default") -> Analysis:
        """What ``apply_files`` would warn of, against the stored config, without applying
        (``istioctl analyze``). Raises ConfigErrors on what apply would refuse."""
        with self._lock:
            return analyze_files(files, namespace, self._stored(), self.own_listeners)

    def delete_files(
        self, files: Sequence[SourceFile], namespace: str = "default"
    ) -> DeleteOutcome:
        """Delete the resources the documents of ``files`` name (their content is not compared)."""
        with self._lock:
            results = _load_all(files, namespace)
            sources: dict[Key, str] = {}
            for doc in (d for r in results for d in r.documents):
                sources.setdefault(resource_key(doc.resource), doc.source)
            outcome = self._delete(list(sources), sources)
            file_warnings = [w for r in results for w in r.warnings]
            return DeleteOutcome(outcome.lines, outcome.errors, _unique(file_warnings))

    def delete(self, kind: str, names: Sequence[str], namespace: str = "default") -> DeleteOutcome:
        """``kubectl delete KIND NAME...``. Raises UnknownKind for a kind that is none of ours."""
        info = resolve_kind(kind)
        with self._lock:
            return self._delete([(info.kind, namespace, name) for name in names], {})

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> GetOutcome:
        """Stored documents of one kind; ``namespace=None`` means all namespaces.

        Raises UnknownKind, or NotFound when ``name`` is given and does not exist.
        """
        info = resolve_kind(kind)
        with self._lock:
            rows = self._store.get(info.kind, namespace, name)
        if name is not None and not rows:
            raise NotFound(not_found_error(info.kind, name))
        return GetOutcome(info, [_with_server_metadata(row) for row in rows])

    def refresh(self) -> None:
        """Recompile the stored config with the resolver's new answers, and swap it in."""
        with self._lock:
            if self._table is not None:
                self._swap(self._compile(self._stored()), self._table)

    def _load(self) -> list[str]:
        versions = self._store.versions()
        if self._loaded:
            stale = {k for k, rev in versions.items() if self._versions.get(k) != rev}
            loaded = self._store.load(sorted(stale))
        else:
            stale = set(versions)
            loaded = self._store.load(None)
        resources = {k: r for k, r in self._resources.items() if k in versions and k not in stale}
        resources.update((resource_key(r), r) for r in loaded.resources)
        self._resources, self._versions, self._loaded = resources, versions, True
        return [f"ignoring stored resource: {e}" for e in loaded.errors]

    def _stored(self) -> dict[Key, Resource]:
        """The stored resources; loaded on first use, so an apply before ``start()`` (serve's
        ``-f``) still compiles against what is stored."""
        if not self._loaded:
            self._load()
        return self._resources

    def _delete(self, keys: list[Key], sources: Mapping[Key, str]) -> DeleteOutcome:
        gone = set(keys)
        candidate = {k: r for k, r in self._stored().items() if k not in gone}
        table = self._compile(candidate)
        deleted = self._commit(table, lambda hook: self._store.delete(keys, hook))
        self._resources = candidate
        lines: list[str] = []
        errors: list[str] = []
        for key, found in deleted:
            kind, _, name = key
            if found:
                lines.append(deleted_line(kind, name))
            else:
                errors.append(not_found_error(kind, name, sources.get(key, "")))
        return DeleteOutcome(lines, errors, [])

    def _compile(self, resources: Mapping[Key, Resource]) -> RouteTable:
        dns = self.dns
        table = self._compiler.compile(
            [resources[k] for k in sorted(resources)], dns.snapshot() if dns is not None else None
        )
        if dns is not None:
            dns.want(table.dns_names)
        return table

    def _commit(self, table: RouteTable, write: Callable[[BeforeCommit], T]) -> T:
        """Run a store write whose transaction swaps ``table`` in just before it commits.

        The data plane may refuse a table (a Service port already taken by another process):
        then the transaction rolls back, so the store never holds config the proxy does not
        run. If the commit itself fails after the swap, the previous table is put back.
        """
        previous = self._table

        def swap(changed: bool) -> None:
            if changed:
                self._swap(table, previous)

        try:
            return write(swap)
        except BaseException:
            if self._table is not previous and previous is not None:
                self._restore(previous)
            raise

    def _swap(self, table: RouteTable, previous: RouteTable | None = None) -> None:
        try:
            self._on_table(table)
        except Exception as exc:
            if previous is not None:
                self._restore(previous)
            raise DataPlaneError(f"the data plane refused the new configuration: {exc}") from exc
        self._table = table

    def _restore(self, previous: RouteTable) -> None:
        # A data plane that refused a table may have taken part of it (some listeners opened):
        # handing it the previous table again brings it back to where it was.
        try:
            self._on_table(previous)
        except Exception:
            log.exception("the data plane did not take the previous route table back")
        self._table = previous


@dataclass(frozen=True)
class Analysis:
    """``istioctl analyze``'s findings about some documents, and their own warnings (deprecated
    or ignored fields, kinds skipped: what apply prints as ``Warning:``)."""

    messages: list[Message]
    warnings: list[str]


def analyze_files(
    files: Sequence[SourceFile],
    namespace: str,
    stored: Mapping[Key, Resource],
    own: OwnListeners | None = None,
) -> Analysis:
    """The findings of an apply of ``files`` over ``stored``, which is left as it is."""
    documents, file_warnings, candidate = _plan(files, namespace, stored)
    _compile(candidate)
    warnings = _document_warnings(documents, file_warnings) + _comparison_warnings(
        documents, candidate
    )
    return Analysis(_messages(documents, candidate, own), _unique(warnings))


def _plan(
    files: Sequence[SourceFile], namespace: str, stored: Mapping[Key, Resource]
) -> tuple[list[Document], list[str], dict[Key, Resource]]:
    """(documents, file warnings, the config with them in place); raises ConfigErrors."""
    results = _load_all(files, namespace)
    documents = [d for r in results for d in r.documents]
    file_warnings = [w for r in results for w in r.warnings]
    _reject_duplicates(documents)
    if not documents and not file_warnings:
        raise ConfigErrors([ConfigError("no objects passed to apply")])
    candidate = dict(stored)
    candidate.update((resource_key(d.resource), d.resource) for d in documents)
    _reject_comparison_conflicts(documents, candidate)
    return documents, file_warnings, candidate


def _reject_comparison_conflicts(
    documents: Sequence[Document], config: Mapping[Key, Resource]
) -> None:
    applied = {resource_key(d.resource): d for d in documents}
    errors = []
    for (namespace, name), text in comparison_conflicts(config.values()):
        doc = applied.get(("Comparison", namespace, name))
        if doc is not None:
            errors.append(ConfigError(text, source=doc.source, document=doc.index))
    if errors:
        raise ConfigErrors(errors)


def _load_all(files: Sequence[SourceFile], namespace: str) -> list[LoadResult]:
    """Parse every file, gathering the errors of all of them before giving up."""
    results: list[LoadResult] = []
    errors: list[ConfigError] = []
    for source, text in files:
        try:
            results.append(load_text(text, source, namespace))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigErrors(errors)
    return results


def _reject_duplicates(documents: Iterable[Document]) -> None:
    # kubectl would apply both in turn and keep the last; in one atomic apply that silently
    # drops a document, which is more likely a copy-paste slip than an intent.
    first: dict[Key, Document] = {}
    errors: list[ConfigError] = []
    for doc in documents:
        key = resource_key(doc.resource)
        if key not in first:
            first[key] = doc
            continue
        seen = first[key]
        errors.append(
            ConfigError(
                f"{key[0]} {key[1]}/{key[2]} is also defined in {seen.source} document "
                f"{seen.index + 1}; one apply may name a resource only once",
                source=doc.source,
                document=doc.index,
            )
        )
    if errors:
        raise ConfigErrors(errors)


def _apply_warnings(
    documents: Sequence[Document],
    file_warnings: list[str],
    resources: Mapping[Key, Resource],
    own: OwnListeners | None = None,
) -> list[str]:
    """The documents' own warnings, the files', then istioctl analyze's about these documents.

    Analysis runs over the whole new config (a route's subset may be defined by a rule stored
    earlier) but reports only on what this apply touched.
    """
    warnings = _document_warnings(documents, file_warnings)
    warnings += [
        f"({m.key[0]} {m.key[1]}/{m.key[2]}) {m.text}" for m in _messages(documents, resources, own)
    ]
    warnings += _comparison_warnings(documents, resources)
    return _unique(warnings)


def _document_warnings(documents: Sequence[Document], file_warnings: list[str]) -> list[str]:
    return [w for d in documents for w in d.warnings] + file_warnings


def _messages(
    documents: Sequence[Document], resources: Mapping[Key, Resource], own: OwnListeners | None
) -> list[Message]:
    keys = {resource_key(d.resource) for d in documents}
    return [
        m
        for m in analyze_messages(list(resources.values()), own)
        if m.key in keys or any(k in keys for k in m.related)
    ]


def _comparison_warnings(
    documents: Sequence[Document], resources: Mapping[Key, Resource]
) -> list[str]:
    keys = {resource_key(d.resource) for d in documents}
    return [text for key, text in comparison_warnings(resources.values()) if key in keys]


def _compile(resources: Mapping[Key, Resource]) -> RouteTable:
    """A whole compile, for a dry run (analyze) that must not touch the controller's cache;
    by a compiler of its own, whose interpreted loop lets the serving loop have the GIL."""
    return RouteCompiler().compile([resources[k] for k in sorted(resources)])


def _with_server_metadata(row: StoredResource) -> dict[str, Any]:
    """The document as ``kubectl get -o yaml`` shows it: with the fields the server sets."""
    document = dict(row.document)
    metadata = dict(document.get("metadata") or {})
    metadata["creationTimestamp"] = row.created_at
    metadata["generation"] = row.generation
    metadata["resourceVersion"] = str(row.revision)
    document["metadata"] = metadata
    return document


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
