"""The comparison's storage: ``compare.db`` in the state directory, apart from the config store.

What is kept, per comparison and its rules' digest (new rules start new counters):

- aggregated counters per endpoint and per field (n10, n01, n11, kinds, weight), so a report
  reads a few hundred rows whatever the traffic was;
- per endpoint, the status transitions and one latency sketch per side;
- per field, up to ``EXAMPLES`` examples chosen by reservoir sampling over all its differences;
- one row per compared request (its differing fields), bounded by count and by age;
- skipped requests by reason, in total and per second (what a ``since`` window counts).

Bounds: requests and examples older than ``max_age`` are deleted, and so is a comparison (with
its counters) that saw no request for that long; at most ``max_exchanges`` request rows, at
most ``max_fields`` fields per endpoint (then ``(other fields)``) and the endpoint cap of
``endpoints.py``. Values are redacted before they get here.

One writer (the analyzer's worker process, or its thread) and any number of readers, in that
process or another (the proxy's): SQLite in WAL mode, with a busy timeout, lets a report
read a consistent snapshot while the writer goes on.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shadowmesh.compare.analysis import FieldOutcome, Outcome
from shadowmesh.compare.diff import KINDS
from shadowmesh.compare.endpoints import DEFAULT_MAX_ENDPOINTS, EndpointNamer
from shadowmesh.compare.latency import Sketch
from shadowmesh.compare.stats import reservoir_slot

DB_NAME = "compare.db"
EXAMPLES = 5
DEFAULT_MAX_EXCHANGES = 100_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
DEFAULT_MAX_FIELDS = 500
OTHER_FIELDS = "(other fields)"
SIDES = ("primary", "candidate", "baseline")
_PRUNE_EVERY = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS comparisons (
    id         INTEGER PRIMARY KEY,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    spec       TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    compared   INTEGER NOT NULL DEFAULT 0,
    differing  INTEGER NOT NULL DEFAULT 0,
    noisy      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (namespace, name, digest)
);
CREATE TABLE IF NOT EXISTS skipped (
    cid INTEGER NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (cid, reason)
);
CREATE TABLE IF NOT EXISTS skipped_seconds (
    cid INTEGER NOT NULL, reason TEXT NOT NULL, second INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (cid, reason, second)
);
CREATE TABLE IF NOT EXISTS endpoints (
    cid INTEGER NOT NULL, endpoint TEXT NOT NULL,
    requests INTEGER NOT NULL, differing INTEGER NOT NULL, noisy INTEGER NOT NULL,
    PRIMARY KEY (cid, endpoint)
);
CREATE TABLE IF NOT EXISTS transitions (
    cid INTEGER NOT NULL, endpoint TEXT NOT NULL,
    primary_status INTEGER NOT NULL, candidate_status INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (cid, endpoint, primary_status, candidate_status)
);
CREATE TABLE IF NOT EXISTS latency (
    cid INTEGER NOT NULL, endpoint TEXT NOT NULL, side TEXT NOT NULL, sketch TEXT NOT NULL,
    PRIMARY KEY (cid, endpoint, side)
);
CREATE TABLE IF NOT EXISTS fields (
    cid INTEGER NOT NULL, endpoint TEXT NOT NULL, field TEXT NOT NULL,
    raw INTEGER NOT NULL, noise INTEGER NOT NULL,
    n10 INTEGER NOT NULL, n01 INTEGER NOT NULL, n11 INTEGER NOT NULL,
    volatile INTEGER NOT NULL, weight INTEGER NOT NULL,
    status_n INTEGER NOT NULL, value_n INTEGER NOT NULL, type_n INTEGER NOT NULL,
    missing_n INTEGER NOT NULL, extra_n INTEGER NOT NULL, order_n INTEGER NOT NULL,
    with_status INTEGER NOT NULL DEFAULT 0,
    primary_varies INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (cid, endpoint, field)
);
CREATE TABLE IF NOT EXISTS examples (
    cid INTEGER NOT NULL, endpoint TEXT NOT NULL, field TEXT NOT NULL, slot INTEGER NOT NULL,
    started REAL NOT NULL, request_id TEXT NOT NULL, method TEXT NOT NULL, target TEXT NOT NULL,
    path TEXT NOT NULL, kind TEXT NOT NULL,
    primary_value TEXT, candidate_value TEXT, baseline_value TEXT, sample TEXT,
    PRIMARY KEY (cid, endpoint, field, slot)
);
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL, endpoint TEXT NOT NULL, started REAL NOT NULL,
    request_id TEXT NOT NULL, method TEXT NOT NULL, target TEXT NOT NULL,
    primary_status INTEGER NOT NULL, candidate_status INTEGER NOT NULL, baseline_status INTEGER,
    differing INTEGER NOT NULL, fields TEXT NOT NULL,
    primary_ms REAL, candidate_ms REAL, baseline_ms REAL, detail TEXT
);
CREATE INDEX IF NOT EXISTS exchanges_started ON exchanges (started);
CREATE INDEX IF NOT EXISTS exchanges_cid ON exchanges (cid, id);
"""
_PER_COMPARISON = (
    "skipped",
    "skipped_seconds",
    "endpoints",
    "transitions",
    "latency",
    "fields",
    "examples",
)
# Columns added since the first schema: a compare.db from before gets them on open.
_ADDED_COLUMNS = (
    ("exchanges", "primary_ms REAL"),
    ("exchanges", "candidate_ms REAL"),
    ("exchanges", "baseline_ms REAL"),
    ("exchanges", "detail TEXT"),
    ("fields", "with_status INTEGER NOT NULL DEFAULT 0"),
    ("fields", "primary_varies INTEGER NOT NULL DEFAULT 0"),
    ("examples", "sample TEXT"),
)
# The latency test reads each endpoint's most recent pairs, at most this many: the test has all
# the power it needs long before, and a report stays a few milliseconds of SQLite.
MAX_LATENCY_PAIRS = 5_000


@dataclass(frozen=True)
class ComparisonRow:
    cid: int
    namespace: str
    name: str
    digest: str
    spec: dict[str, Any]
    first_seen: float
    last_seen: float
    compared: int
    differing: int
    noisy: int


@dataclass
class Snapshot:
    """Everything a report needs about one comparison, read in one transaction."""

    row: ComparisonRow
    skipped: dict[str, int] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[tuple[str, str], Sketch] = field(default_factory=dict)
    fields: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    # Per endpoint, (candidate ms, baseline ms, started) of the most recent requests both
    # answered.
    pairs: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    # Per endpoint, (bucket start, requests, differing) over the kept requests' time.
    timeline: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)
    # Per endpoint, (the fields that differed together in a request, how many requests), the
    # most frequent signatures first.
    signatures: dict[str, list[tuple[list[str], int]]] = field(default_factory=dict)


class CompareStore:
    def __init__(
        self,
        state_dir: str | Path,
        *,
        max_exchanges: int = DEFAULT_MAX_EXCHANGES,
        max_age: float = DEFAULT_MAX_AGE,
        max_fields: int = DEFAULT_MAX_FIELDS,
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
        rng: random.Random | None = None,
    ) -> None:
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / DB_NAME
        self._db = _connect(self.path)
        self._db.executescript(_SCHEMA)
        _add_columns(self._db)
        self._reader = _connect(self.path)
        self._read_lock = threading.Lock()
        self._max_exchanges = max_exchanges
        self._max_age = max_age
        self._max_fields = max_fields
        self._max_endpoints = max_endpoints
        self._rng = rng or random.Random()
        self._cids: dict[tuple[str, str, str], int] = {}
        self._namers: dict[int, EndpointNamer] = {}
        self._fields: dict[tuple[int, str], set[str]] = {}
        self._sketches: dict[tuple[int, str, str], Sketch] = {}
        self._dirty: set[tuple[int, str, str]] = set()
        self._pruned_at = 0.0
        self._last_sample: tuple[Outcome | None, str] = (None, "")

    def close(self) -> None:
        self._db.close()
        self._reader.close()

    # -- writing (one thread) ----------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for several records: one commit per batch of requests, not each."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._flush_sketches()
        except BaseException:
            self._db.execute("ROLLBACK")
            self._forget_cache()
            raise
        self._db.execute("COMMIT")

    def record(self, key: tuple[str, str, str], spec: dict[str, Any], outcome: Outcome) -> str:
        """Add one compared request; returns its endpoint name. Call inside ``batch()``."""
        cid = self._cid(key, spec, outcome.started)
        endpoint = self._namer(cid, spec).name(outcome.method, outcome.endpoint_target)
        fields = self._capped_fields(cid, endpoint, outcome.fields)
        differing, noisy = int(outcome.differing), int(outcome.noisy)
        self._db.execute(
            "UPDATE comparisons SET compared = compared + 1, differing = differing + ?, "
            "noisy = noisy + ?, last_seen = MAX(last_seen, ?) WHERE id = ?",
            (differing, noisy, outcome.started, cid),
        )
        self._db.execute(
            "INSERT INTO endpoints VALUES (?, ?, 1, ?, ?) ON CONFLICT DO UPDATE SET "
            "requests = requests + 1, differing = differing + excluded.differing, "
            "noisy = noisy + excluded.noisy",
            (cid, endpoint, differing, noisy),
        )
        primary, candidate, baseline = outcome.statuses
        self._db.execute(
            "INSERT INTO transitions VALUES (?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET "
            "count = count + 1",
            (cid, endpoint, primary, candidate),
        )
        for side, duration in zip(SIDES, outcome.durations, strict=True):
            if duration is not None:
                self._sketch(cid, endpoint, side).add(duration)
        weight = sum(1 for f in fields.values() if f.raw)
        for name, result in fields.items():
            self._record_field(cid, endpoint, name, result, weight, outcome)
        self._db.execute(
            "INSERT INTO exchanges (cid, endpoint, started, request_id, method, target, "
            "primary_status, candidate_status, baseline_status, differing, fields, "
            "primary_ms, candidate_ms, baseline_ms, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cid,
                endpoint,
                outcome.started,
                outcome.request_id,
                outcome.method,
                outcome.endpoint_target,
                primary,
                candidate,
                baseline,
                differing,
                json.dumps(sorted(n for n, f in fields.items() if f.raw)),
                *outcome.durations,
                json.dumps({n: _detail(f) for n, f in fields.items()}, separators=(",", ":")),
            ),
        )
        return endpoint

    def skip(
        self, key: tuple[str, str, str], spec: dict[str, Any], reason: str, when: float
    ) -> None:
        cid = self._cid(key, spec, when)
        self._db.execute(
            "INSERT INTO skipped VALUES (?, ?, 1) ON CONFLICT DO UPDATE SET count = count + 1",
            (cid, reason),
        )
        # By the second too, so a ``since`` window counts its own skips, not those since start.
        self._db.execute(
            "INSERT INTO skipped_seconds VALUES (?, ?, ?, 1) "
            "ON CONFLICT DO UPDATE SET count = count + 1",
            (cid, reason, math.floor(when)),
        )

    def prune(self, now: float | None = None, *, force: bool = False) -> None:
        """Apply the bounds; cheap to call often (it acts at most once a minute)."""
        now = time.time() if now is None else now
        if not force and now - self._pruned_at < _PRUNE_EVERY:
            return
        self._pruned_at = now
        cutoff = now - self._max_age
        with self.batch():
            self._db.execute("DELETE FROM exchanges WHERE started < ?", (cutoff,))
            self._db.execute(
                "DELETE FROM exchanges WHERE id <= (SELECT MAX(id) FROM exchanges) - ?",
                (self._max_exchanges,),
            )
            self._db.execute("DELETE FROM examples WHERE started < ?", (cutoff,))
            self._db.execute("DELETE FROM skipped_seconds WHERE second < ?", (cutoff,))
            self._db.execute(
                "DELETE FROM skipped_seconds WHERE rowid <= "
                "(SELECT MAX(rowid) FROM skipped_seconds) - ?",
                (self._max_exchanges,),
            )
            stale = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM comparisons WHERE last_seen < ?", (cutoff,)
                )
            ]
            for cid in stale:
                self._delete_comparison(cid)
        if stale:
            self._forget_cache()

    def reset(self, namespace: str, name: str) -> int:
        """Forget everything the comparison counted, under every rules digest: its report starts
        from nothing. Returns how many compared requests were forgotten."""
        with self.batch():
            rows = self._db.execute(
                "SELECT id, compared FROM comparisons WHERE namespace = ? AND name = ?",
                (namespace, name),
            ).fetchall()
            for row in rows:
                self._delete_comparison(int(row[0]))
        self._forget_cache()
        return sum(int(r[1]) for r in rows)

    def _delete_comparison(self, cid: int) -> None:
        for table in _PER_COMPARISON:
            self._db.execute(f"DELETE FROM {table} WHERE cid = ?", (cid,))
        self._db.execute("DELETE FROM exchanges WHERE cid = ?", (cid,))
        self._db.execute("DELETE FROM comparisons WHERE id = ?", (cid,))

    def _forget_cache(self) -> None:
        self._cids.clear()
        self._namers.clear()
        self._fields.clear()
        self._sketches.clear()
        self._dirty.clear()

    def _cid(self, key: tuple[str, str, str], spec: dict[str, Any], when: float) -> int:
        cid = self._cids.get(key)
        if cid is not None:
            return cid
        namespace, name, digest = key
        self._db.execute(
            "INSERT INTO comparisons (namespace, name, digest, spec, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (namespace, name, digest, json.dumps(spec), when, when),
        )
        row = self._db.execute(
            "SELECT id FROM comparisons WHERE namespace = ? AND name = ? AND digest = ?", key
        ).fetchone()
        self._cids[key] = int(row[0])
        return self._cids[key]

    def _namer(self, cid: int, spec: dict[str, Any]) -> EndpointNamer:
        namer = self._namers.get(cid)
        if namer is None:
            known = {
                r[0]
                for r in self._db.execute("SELECT endpoint FROM endpoints WHERE cid = ?", (cid,))
            }
            patterns = tuple(str(p) for p in spec.get("endpoints") or ())
            namer = self._namers[cid] = EndpointNamer(known, self._max_endpoints, patterns)
        return namer

    def _capped_fields(
        self, cid: int, endpoint: str, fields: dict[str, FieldOutcome]
    ) -> dict[str, FieldOutcome]:
        known = self._fields.get((cid, endpoint))
        if known is None:
            rows = self._db.execute(
                "SELECT field FROM fields WHERE cid = ? AND endpoint = ?", (cid, endpoint)
            )
            known = self._fields[(cid, endpoint)] = {r[0] for r in rows}
        out: dict[str, FieldOutcome] = {}
        for name, result in fields.items():
            if name not in known and len(known) >= self._max_fields:
                name = OTHER_FIELDS
            known.add(name)
            merged = out.get(name)
            out[name] = result if merged is None else _merge(merged, result)
        return out

    def _record_field(
        self, cid: int, endpoint: str, name: str, f: FieldOutcome, weight: int, outcome: Outcome
    ) -> None:
        counts = [int(f.raw), int(f.noise)]
        counts += [int(f.raw and not f.noise), int(f.noise and not f.raw), int(f.raw and f.noise)]
        counts += [int(f.volatile), weight if f.raw else 0]
        counts += [int(kind in f.kinds) for kind in KINDS]
        counts += [int(f.with_status), int(f.primary_varies)]
        row = self._db.execute(
            "INSERT INTO fields VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET raw = raw + excluded.raw, noise = noise + excluded.noise, "
            "n10 = n10 + excluded.n10, n01 = n01 + excluded.n01, n11 = n11 + excluded.n11, "
            "volatile = volatile + excluded.volatile, weight = weight + excluded.weight, "
            "status_n = status_n + excluded.status_n, value_n = value_n + excluded.value_n, "
            "type_n = type_n + excluded.type_n, missing_n = missing_n + excluded.missing_n, "
            "extra_n = extra_n + excluded.extra_n, order_n = order_n + excluded.order_n, "
            "with_status = with_status + excluded.with_status, "
            "primary_varies = MAX(primary_varies, excluded.primary_varies) "
            "RETURNING raw + with_status",
            (cid, endpoint, name, *counts),
        ).fetchone()
        if (f.raw or f.with_status) and f.example is not None:
            slot = reservoir_slot(int(row[0]), EXAMPLES, self._rng)
            if slot is not None:
                self._example(cid, endpoint, name, slot, f, outcome)

    def _example(
        self, cid: int, endpoint: str, name: str, slot: int, f: FieldOutcome, outcome: Outcome
    ) -> None:
        example = f.example
        assert example is not None
        self._db.execute(
            "INSERT OR REPLACE INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cid,
                endpoint,
                name,
                slot,
                outcome.started,
                outcome.request_id,
                outcome.method,
                outcome.endpoint_target,
                example.path,
                example.kind,
                example.primary,
                example.candidate,
                example.baseline,
                self._sample_text(outcome),
            ),
        )

    def _sample_text(self, outcome: Outcome) -> str:
        # One request often gives examples to several fields: its sample is made once.
        if self._last_sample[0] is not outcome:
            self._last_sample = (outcome, json.dumps(outcome.sample(), ensure_ascii=False))
        return self._last_sample[1]

    def _sketch(self, cid: int, endpoint: str, side: str) -> Sketch:
        key = (cid, endpoint, side)
        sketch = self._sketches.get(key)
        if sketch is None:
            row = self._db.execute(
                "SELECT sketch FROM latency WHERE cid = ? AND endpoint = ? AND side = ?", key
            ).fetchone()
            sketch = Sketch.from_json(json.loads(row[0])) if row else Sketch()
            self._sketches[key] = sketch
        self._dirty.add(key)
        return sketch

    def _flush_sketches(self) -> None:
        for key in self._dirty:
            self._db.execute(
                "INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?)",
                (*key, json.dumps(self._sketches[key].to_json())),
            )
        self._dirty.clear()

    # -- reading (any thread) ------------------------------------------------------------------

    def comparisons(self) -> list[ComparisonRow]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM comparisons ORDER BY namespace, name, last_seen")
            return [_comparison_row(r) for r in rows]

    def snapshot(
        self,
        namespace: str,
        name: str,
        digest: str | None = None,
        since: float | None = None,
    ) -> Snapshot | None:
        """The comparison's data under ``digest``, or under its most recent rules if None;
        with ``since`` (epoch seconds), only the requests compared from then on, recounted
        from the per-request rows (so within their retention)."""
        with self._read() as db:
            query = "SELECT * FROM comparisons WHERE namespace = ? AND name = ?"
            args: tuple[Any, ...] = (namespace, name)
            if digest is not None:
                query, args = query + " AND digest = ?", (*args, digest)
            row = db.execute(query + " ORDER BY last_seen DESC LIMIT 1", args).fetchone()
            if row is None:
                return None
            snapshot = Snapshot(_comparison_row(row))
            cid = (snapshot.row.cid,)
            snapshot.skipped = {
                r["reason"]: r["count"]
                for r in db.execute("SELECT reason, count FROM skipped WHERE cid = ?", cid)
            }
            snapshot.endpoints = _dicts(db, "SELECT * FROM endpoints WHERE cid = ?", cid)
            snapshot.transitions = _dicts(db, "SELECT * FROM transitions WHERE cid = ?", cid)
            snapshot.fields = _dicts(db, "SELECT * FROM fields WHERE cid = ?", cid)
            snapshot.examples = _dicts(
                db, "SELECT * FROM examples WHERE cid = ? ORDER BY started", cid
            )
            for r in db.execute("SELECT * FROM latency WHERE cid = ?", cid):
                snapshot.latency[(r["endpoint"], r["side"])] = Sketch.from_json(
                    json.loads(r["sketch"])
                )
            snapshot.pairs = _pairs(db, snapshot.row.cid)
            if since is not None:
                _window(db, snapshot, since)
            snapshot.timeline = _timeline(db, snapshot.row.cid, since or 0.0)
            snapshot.signatures = _signatures(db, snapshot.row.cid, since or 0.0)
            return snapshot

    def exchange_count(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0])

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            self._reader.execute("BEGIN")
            try:
                yield self._reader
            finally:
                self._reader.execute("COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    # Analysis data, not config: losing the last second of it in a power cut is acceptable.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _add_columns(db: sqlite3.Connection) -> None:
    for table, column in _ADDED_COLUMNS:
        present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column.split()[0] not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


TIMELINE_BUCKETS = 30
SIGNATURES = 5


def _signatures(
    db: sqlite3.Connection, cid: int, since: float
) -> dict[str, list[tuple[list[str], int]]]:
    """The sets of fields that differed together, per endpoint, over the kept requests."""
    rows = db.execute(
        "SELECT endpoint, fields, COUNT(*) AS n FROM exchanges WHERE cid = ? AND started >= ? "
        "AND differing = 1 GROUP BY endpoint, fields ORDER BY n DESC",
        (cid, since),
    )
    out: dict[str, list[tuple[list[str], int]]] = {}
    for endpoint, fields, count in rows:
        kept = out.setdefault(endpoint, [])
        if len(kept) < SIGNATURES:
            kept.append((list(json.loads(fields)), int(count)))
    return out


def _timeline(
    db: sqlite3.Connection, cid: int, since: float
) -> dict[str, list[tuple[float, int, int]]]:
    """Requests and differing ones per endpoint in up to 30 equal slices of the kept time."""
    first, last = db.execute(
        "SELECT MIN(started), MAX(started) FROM exchanges WHERE cid = ? AND started >= ?",
        (cid, since),
    ).fetchone()
    if first is None:
        return {}
    width = max(1.0, (last - first) / TIMELINE_BUCKETS)
    rows = db.execute(
        "SELECT endpoint, MIN(CAST((started - ?) / ? AS INTEGER), ?) AS b, COUNT(*), "
        "SUM(differing) FROM exchanges WHERE cid = ? AND started >= ? "
        "GROUP BY endpoint, b ORDER BY b",
        (first, width, TIMELINE_BUCKETS - 1, cid, since),
    )
    out: dict[str, list[tuple[float, int, int]]] = {}
    for endpoint, bucket, requests, differing in rows:
        out.setdefault(endpoint, []).append((first + bucket * width, requests, differing or 0))
    return out


def _detail(f: FieldOutcome) -> list[int]:
    """One field of one request, as the windowed report recounts it: raw, noise, volatile,
    one flag per kind of difference (``KINDS``' order), with a status change, varies on the
    primary."""
    kinds = [int(k in f.kinds) for k in KINDS]
    flags = [int(f.with_status), int(f.primary_varies)]
    return [int(f.raw), int(f.noise), int(f.volatile), *kinds, *flags]


def _window(db: sqlite3.Connection, snapshot: Snapshot, since: float) -> None:
    """Replace the snapshot's counters with those of the requests compared since ``since``."""
    cid = snapshot.row.cid
    rows = db.execute(
        "SELECT * FROM exchanges WHERE cid = ? AND started >= ? ORDER BY id", (cid, since)
    ).fetchall()
    endpoints: dict[str, dict[str, Any]] = {}
    transitions: dict[tuple[str, int, int], int] = {}
    fields: dict[tuple[str, str], dict[str, Any]] = {}
    latency: dict[tuple[str, str], Sketch] = {}
    noisy_total = 0
    for r in rows:
        name = r["endpoint"]
        detail = json.loads(r["detail"]) if r["detail"] else {}
        noisy = int(any(d[1] for d in detail.values()))
        noisy_total += noisy
        e = endpoints.setdefault(
            name, {"endpoint": name, "requests": 0, "differing": 0, "noisy": 0}
        )
        e["requests"] += 1
        e["differing"] += r["differing"]
        e["noisy"] += noisy
        key = (name, r["primary_status"], r["candidate_status"])
        transitions[key] = transitions.get(key, 0) + 1
        for side in SIDES:
            ms = r[f"{side}_ms"]
            if ms is not None:
                latency.setdefault((name, side), Sketch()).add(float(ms))
        weight = sum(d[0] for d in detail.values())
        for field_name, d in detail.items():
            f = fields.setdefault((name, field_name), _empty_field(name, field_name))
            raw, noise, volatile = d[0], d[1], d[2]
            f["raw"] += raw
            f["noise"] += noise
            f["n10"] += raw and not noise
            f["n01"] += noise and not raw
            f["n11"] += raw and noise
            f["volatile"] += volatile
            f["weight"] += weight if raw else 0
            for kind, flag in zip(KINDS, d[3:], strict=False):
                f[f"{kind}_n"] += flag
            f["with_status"] += d[3 + len(KINDS)] if len(d) > 3 + len(KINDS) else 0
            if len(d) > 4 + len(KINDS):
                f["primary_varies"] = max(f["primary_varies"], d[4 + len(KINDS)])
    row = snapshot.row
    snapshot.row = ComparisonRow(
        cid=row.cid,
        namespace=row.namespace,
        name=row.name,
        digest=row.digest,
        spec=row.spec,
        first_seen=rows[0]["started"] if rows else since,
        last_seen=rows[-1]["started"] if rows else since,
        compared=len(rows),
        differing=sum(r["differing"] for r in rows),
        noisy=noisy_total,
    )
    snapshot.endpoints = list(endpoints.values())
    snapshot.transitions = [
        {"endpoint": e, "primary_status": p, "candidate_status": c, "count": n}
        for (e, p, c), n in transitions.items()
    ]
    snapshot.fields = list(fields.values())
    snapshot.latency = latency
    snapshot.examples = [e for e in snapshot.examples if e["started"] >= since]
    snapshot.pairs = _pairs(db, cid, since)
    snapshot.skipped = {
        r["reason"]: r["total"]
        for r in db.execute(
            "SELECT reason, SUM(count) AS total FROM skipped_seconds WHERE cid = ? AND "
            "second >= ? GROUP BY reason",
            (cid, math.floor(since)),
        )
    }


def _empty_field(endpoint: str, name: str) -> dict[str, Any]:
    counts = (
        "raw",
        "noise",
        "n10",
        "n01",
        "n11",
        "volatile",
        "weight",
        "with_status",
        "primary_varies",
    )
    return {
        "endpoint": endpoint,
        "field": name,
        **dict.fromkeys(counts, 0),
        **{f"{k}_n": 0 for k in KINDS},
    }


def _pairs(
    db: sqlite3.Connection, cid: int, since: float = 0.0
) -> dict[str, list[tuple[float, float, float]]]:
    """The latency pairs per endpoint, most recent first; a side that did not answer (status 0)
    has no latency to compare."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    rows = db.execute(
        "SELECT endpoint, candidate_ms, baseline_ms, started FROM exchanges WHERE cid = ? AND "
        "started >= ? AND candidate_status > 0 AND baseline_status > 0 AND "
        "candidate_ms IS NOT NULL AND baseline_ms IS NOT NULL ORDER BY id DESC",
        (cid, since),
    )
    for endpoint, candidate, baseline, started in rows:
        kept = out.setdefault(endpoint, [])
        if len(kept) < MAX_LATENCY_PAIRS:
            kept.append((float(candidate), float(baseline), float(started)))
    return out


def _comparison_row(r: sqlite3.Row) -> ComparisonRow:
    return ComparisonRow(
        cid=r["id"],
        namespace=r["namespace"],
        name=r["name"],
        digest=r["digest"],
        spec=json.loads(r["spec"]),
        first_seen=r["first_seen"],
        last_seen=r["last_seen"],
        compared=r["compared"],
        differing=r["differing"],
        noisy=r["noisy"],
    )


def _dicts(db: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(query, args)]


def _merge(a: FieldOutcome, b: FieldOutcome) -> FieldOutcome:
    return FieldOutcome(
        field=OTHER_FIELDS,
        kinds=a.kinds | b.kinds,
        raw=a.raw or b.raw,
        noise=a.noise or b.noise,
        volatile=(a.volatile or b.volatile) and not (a.raw or b.raw),
        with_status=a.with_status or b.with_status,
        primary_varies=a.primary_varies or b.primary_varies,
        example=a.example or b.example,
    )
