"""The resource store: every applied document, persisted in SQLite in the state directory.

Rules this module keeps:

1. One apply or one delete is one transaction. SQLite in WAL mode with ``synchronous=FULL``
   makes a committed transaction durable and an interrupted one invisible, so a crash (or an
   exception) half way through leaves the last committed state, never a mix. A caller's
   ``before_commit`` hook runs inside the transaction, so it can still veto the change.
2. A resource is identified by (kind, namespace, name), as in Kubernetes. Its ``generation``
   starts at 1 and grows by one each time its document changes; an identical re-apply changes
   nothing (kubectl's ``unchanged``).
3. The store-wide ``revision`` grows by one per transaction that changed anything: the
   ``resourceVersion`` of the whole config.

The stored document is the one the user applied, with ``metadata.namespace`` filled in, so that
``get -o yaml`` shows where it lives and re-parsing it does not depend on the ``-n`` it came with,
and without the fields the server sets (generation, resourceVersion...), which live in columns.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from shadowmesh.errors import ConfigError, ShadowmeshError
from shadowmesh.model.load import load_raw
from shadowmesh.model.resources import Document, Resource, resource_key

Key = tuple[str, str, str]  # (kind, namespace, name)
ApplyResult = Literal["created", "configured", "unchanged"]
BeforeCommit = Callable[[bool], None]  # called with "did anything change"

DB_NAME = "config.db"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind        TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    api_version TEXT    NOT NULL,
    document    TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS config (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO config (id, revision) VALUES (1, 0);
"""


class StoreError(ShadowmeshError):
    """The store cannot be read or written; the message names the file and what to do."""


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """SQLite's errors as StoreError: one line naming the file, the problem and the remedy."""

    def guarded(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(_problem(self.path, exc)) from exc

    guarded.__doc__ = method.__doc__
    return guarded


def _problem(path: Path, exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return (
            f"{path} is damaged ({exc}): restore it from a backup, or move it away to start "
            "with an empty config"
        )
    if name.startswith("SQLITE_FULL"):
        return f"{path}: the disk is full ({exc}); nothing was changed: free some space and retry"
    if name.startswith("SQLITE_CANTOPEN"):
        return f"{path} cannot be opened ({exc}): it must be a file this user can read and write"
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
        return f"{path} cannot be written ({exc}): give this user write access to it"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"{path} is locked ({exc}): another process holds it; retry when it is done"
    if name.startswith("SQLITE_IOERR"):
        return f"{path}: the disk failed a read or write ({exc}): check the disk, then retry"
    return f"{path}: {exc}"


@dataclass(frozen=True)
class StoredResource:
    """One row: the applied document and what the store knows about it."""

    key: Key
    api_version: str
    document: Mapping[str, Any]
    generation: int
    revision: int  # the config revision that last changed it
    created_at: str  # RFC 3339, UTC, seconds: kubectl's creationTimestamp
    updated_at: str


@dataclass(frozen=True)
class LoadedResources:
    """What ``Store.all()`` could re-parse, and the errors of rows that no longer parse."""

    resources: list[Resource]
    errors: list[ConfigError]


class Store:
    """The SQLite-backed resource store. Not thread-safe: one owner (the Controller)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = _prepare_dir(Path(state_dir)) / DB_NAME
        try:
            if not os.path.lexists(self.path):
                _create(self.path)
            elif self.path.is_file() and self.path.stat().st_size == 0:
                # A new store is made whole and then renamed into place, so an empty file is
                # not one of ours: a truncated store, and starting empty would lose the config.
                raise StoreError(
                    f"{self.path} is empty (0 bytes) where a config store was expected: restore "
                    "it from a backup, or delete it to start with an empty config"
                )
            self._db = _connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(_problem(self.path, exc)) from exc
        except OSError as exc:
            raise StoreError(f"{self.path} cannot be opened: {exc.strerror or exc}") from exc
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    @_guarded
    def revision(self) -> int:
        row = self._db.execute("SELECT revision FROM config WHERE id = 1").fetchone()
        return int(row[0])

    @_guarded
    def apply(
        self, documents: Sequence[Document], before_commit: BeforeCommit | None = None
    ) -> list[tuple[Key, ApplyResult]]:
        """Create or replace each document's resource, all in one transaction.

        ``before_commit(changed)`` runs inside the transaction, after the writes: if it raises,
        nothing is committed. The Controller swaps the data plane's table there.
        """
        results: list[tuple[Key, ApplyResult]] = []
        with self._transaction() as revision:
            for doc in documents:
                results.append(self._apply_one(doc, revision))
            self._finish(
                any(outcome != "unchanged" for _, outcome in results), revision, before_commit
            )
        return results

    @_guarded
    def delete(
        self, keys: Iterable[Key], before_commit: BeforeCommit | None = None
    ) -> list[tuple[Key, bool]]:
        """Delete each key that exists, in one transaction; False marks a key not found.

        As ``kubectl delete``: the found ones are deleted even when others are missing.
        ``before_commit`` as in ``apply``.
        """
        results: list[tuple[Key, bool]] = []
        with self._transaction() as revision:
            for key in keys:
                cur = self._db.execute(
                    "DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?", key
                )
                results.append((key, cur.rowcount > 0))
            self._finish(any(found for _, found in results), revision, before_commit)
        return results

    @_guarded
    def get(
        self, kind: str, namespace: str | None = None, name: str | None = None
    ) -> list[StoredResource]:
        """Rows of ``kind``, in one namespace or all (None), optionally one name, sorted."""
        sql = "SELECT * FROM resources WHERE kind = ?"
        args: list[str] = [kind]
        if namespace is not None:
            sql += " AND namespace = ?"
            args.append(namespace)
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        sql += " ORDER BY namespace, name"
        return [_row(r, self.path) for r in self._db.execute(sql, args)]

    @_guarded
    def rows(self) -> list[StoredResource]:
        """Every row, sorted by key."""
        sql = "SELECT * FROM resources ORDER BY kind, namespace, name"
        return [_row(r, self.path) for r in self._db.execute(sql)]

    def all(self) -> LoadedResources:
        """Every stored resource, re-parsed into the model.

        A row that no longer validates (a document stored by an older, more lenient
        shadowmesh) is reported, not raised: the proxy starts without it, and ``delete`` still
        removes it. A row that is not even JSON is damage, not age: StoreError, which names it
        and the command that removes it.
        """
        return self.load(None)

    @_guarded
    def versions(self) -> dict[Key, int]:
        """Every key with the revision that last changed it: what a follower compares with
        what it holds, to re-read only the rows that changed."""
        sql = "SELECT kind, namespace, name, revision FROM resources"
        return {(k, ns, n): rev for k, ns, n, rev in self._db.execute(sql)}

    @_guarded
    def load(self, keys: Iterable[Key] | None) -> LoadedResources:
        """The rows of ``keys`` (every row for None), re-parsed as ``all()`` does."""
        if keys is None:
            rows = self.rows()
        else:
            sql = "SELECT * FROM resources WHERE kind = ? AND namespace = ? AND name = ?"
            rows = [_row(r, self.path) for key in keys for r in self._db.execute(sql, key)]
        resources: list[Resource] = []
        errors: list[ConfigError] = []
        for row in rows:
            kind, namespace, name = row.key
            try:
                doc = load_raw(row.document, f"stored {kind} {namespace}/{name}", 0, namespace)
            except ConfigError as exc:
                errors.append(exc)
                continue
            resources.append(doc.resource)
        return LoadedResources(resources, errors)

    # -- internals -------------------------------------------------------------------------

    def _apply_one(self, doc: Document, revision: int) -> tuple[Key, ApplyResult]:
        key = resource_key(doc.resource)
        text = _encode(_with_namespace(doc.resource.raw, key[1]))
        old = self._db.execute(
            "SELECT document, generation FROM resources "
            "WHERE kind = ? AND namespace = ? AND name = ?",
            key,
        ).fetchone()
        now = _now()
        if old is None:
            self._db.execute(
                "INSERT INTO resources VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (*key, doc.resource.api_version, text, revision, now, now),
            )
            return key, "created"
        if old[0] == text:
            return key, "unchanged"
        self._db.execute(
            "UPDATE resources SET api_version = ?, document = ?, generation = ?, revision = ?, "
            "updated_at = ? WHERE kind = ? AND namespace = ? AND name = ?",
            (doc.resource.api_version, text, old[1] + 1, revision, now, *key),
        )
        return key, "configured"

    @contextmanager
    def _transaction(self) -> Iterator[int]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception; yields the next revision.

        IMMEDIATE takes the write lock up front, so two processes sharing a state dir never
        both compute the same next revision.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self.revision + 1
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk, an I/O error).
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _finish(self, changed: bool, revision: int, before_commit: BeforeCommit | None) -> None:
        if changed:
            self._db.execute("UPDATE config SET revision = ? WHERE id = 1", (revision,))
        if before_commit is not None:
            before_commit(changed)

    @_guarded
    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer shadowmesh (schema {version}, this one "
                f"reads {_SCHEMA_VERSION}): run that version, or restore a backup made for this one"
            )
        self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are begun and ended here, explicitly, not by the
    # sqlite3 module's implicit BEGIN before DML (which does not cover every statement).
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except BaseException:
        db.close()
        raise
    return db


def _create(path: Path) -> None:
    """A new, empty store, made beside ``path`` and renamed into place: a crash part way leaves
    no file, never an empty one (which the next start would refuse)."""
    temporary = path.with_name(path.name + ".new")
    for leftover in (temporary, temporary.with_name(temporary.name + "-wal")):
        leftover.unlink(missing_ok=True)
    db = _connect(temporary)
    try:
        db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")
    finally:
        db.close()
    os.replace(temporary, path)


def _prepare_dir(state_dir: Path) -> Path:
    # 0700: the store is the proxy's whole config; other local users have no business in it.
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"{state_dir} cannot be the state directory ({exc.strerror or exc}): give --state a "
            "directory this user can create or write"
        ) from exc
    return state_dir


# Set by the server, shown by ``get -o yaml``; a document fed back from there must not differ
# from the stored one by these alone (kubectl then says "unchanged").
SERVER_FIELDS = ("creationTimestamp", "generation", "resourceVersion", "uid", "managedFields")


def _with_namespace(raw: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    document = dict(raw)
    metadata = document.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
    for name in SERVER_FIELDS:
        metadata.pop(name, None)
    metadata["namespace"] = namespace
    document["metadata"] = metadata
    return document


def _encode(document: Mapping[str, Any]) -> str:
    # sort_keys: the same document always encodes to the same text, which is how "unchanged"
    # is decided. default=str: YAML timestamps become strings, as they do in Kubernetes' JSON.
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)


def _row(r: tuple[Any, ...], path: Path) -> StoredResource:
    kind, namespace, name, api_version, text, generation, revision, created, updated = r
    try:
        document = json.loads(text)
    except (TypeError, ValueError) as exc:
        where = " AND ".join(
            f"{column} = '{str(value).replace(chr(39), chr(39) * 2)}'"
            for column, value in (("kind", kind), ("namespace", namespace), ("name", name))
        )
        raise StoreError(
            f"{path}: the stored {kind} {namespace}/{name} does not decode ({exc}): restore the "
            f'store from a backup, or remove that resource: sqlite3 {path} "DELETE FROM '
            f'resources WHERE {where}"'
        ) from exc
    return StoredResource(
        (kind, namespace, name),
        api_version,
        document,
        generation,
        revision,
        created,
        updated,
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
