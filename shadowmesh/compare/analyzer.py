"""The analysis, off the request path: a bounded queue and one background thread.

The data plane calls ``submit`` from its event loop for each captured exchange; ``submit`` never
blocks and never raises: when the queue is full the exchange is dropped and counted, so a slow
disk or a burst of huge bodies costs comparisons, never client latency. The work (decompress,
parse, diff, SQLite) is CPU and disk bound, so it runs in a thread, not on the event loop.

``comparisons_provider`` is called for every batch, so it must be cheap: it returns the
Comparisons in force (``comparisons_for(resources)`` after each config change). An exchange
for a Comparison no longer in force is skipped.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shadowmesh.compare.analysis import Rules, Skipped, analyse
from shadowmesh.compare.capture import CapturedExchange
from shadowmesh.compare.report import Report, Thresholds, build_report, empty_report
from shadowmesh.compare.store import CompareStore
from shadowmesh.model.comparison import Comparison

log = logging.getLogger("shadowmesh.error")

DEFAULT_QUEUE_SIZE = 1_000
_BATCH = 100
_STOP = object()


class Analyzer:
    def __init__(
        self,
        state_dir: str | Path,
        comparisons_provider: Callable[[], Sequence[Comparison]],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        thresholds: Thresholds | None = None,
        store: CompareStore | None = None,
        rng: random.Random | None = None,
        start: bool = True,
    ) -> None:
        self._provider = comparisons_provider
        self._store = store or CompareStore(state_dir, rng=rng)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thresholds = thresholds or Thresholds()
        self._rules: dict[tuple[str, str], Rules] = {}
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[tuple[str, str]] = Counter()
        self._closed = False
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="shadowmesh-compare", daemon=True)
        if start:
            self._thread.start()

    # -- the data plane's side -------------------------------------------------------------

    def submit(self, exchange: CapturedExchange) -> bool:
        """Queue one exchange for analysis; False (and counted) if it was dropped."""
        with self._lock:
            if self._closed:
                self._drop(exchange)
                return False
            try:
                self._queue.put_nowait(exchange)
            except queue.Full:
                self._drop(exchange)
                return False
            self._counts["submitted"] += 1
            self._pending += 1
            return True

    def _drop(self, exchange: CapturedExchange) -> None:
        self._counts["dropped"] += 1
        self._dropped[exchange.comparison] += 1

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self, deadline: float = 5.0) -> None:
        """Stop taking exchanges, analyse what is queued for up to ``deadline`` seconds, stop.

        What is still queued after the deadline is counted as dropped.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        end = time.monotonic() + deadline
        if self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=deadline)
            except queue.Full:
                pass  # still busy at the deadline: what is queued is abandoned below
            self._thread.join(max(0.0, end - time.monotonic()))
        self._abandon()
        if self._thread.is_alive():
            self._queue.put(_STOP)  # the queue was just emptied: this cannot block
            self._thread.join(deadline)
        if not self._thread.is_alive():
            self._store.close()

    def _abandon(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, CapturedExchange):
                with self._idle:
                    self._drop(item)
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued exchange is analysed (tests and the CLI's one-shot runs)."""
        end = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "queued": self._queue.qsize(),
                "capacity": self._queue.maxsize,
                "submitted": self._counts["submitted"],
                "analysed": self._counts["analysed"],
                "skipped": self._counts["skipped"],
                "dropped": self._counts["dropped"],
                "errors": self._counts["errors"],
            }

    # -- reports --------------------------------------------------------------------------------

    def comparisons(self) -> list[dict[str, Any]]:
        """Every configured Comparison, and every one with stored data, with its headline."""
        configured = {c.key: c for c in self._provider()}
        stored = {(r.namespace, r.name) for r in self._store.comparisons()}
        out = []
        for key in sorted(configured.keys() | stored):
            report = self.report(*key)
            assert report is not None
            out.append(
                {
                    "namespace": key[0],
                    "name": key[1],
                    "configured": key in configured,
                    "host": report.spec.get("host"),
                    "compared": report.compared,
                    "differing": report.differing,
                    "verdict": report.verdict,
                    "regressions": report.regressions,
                    "latencyFlags": report.latency_flags,
                    "differences": report.differences,
                    "dropped": report.dropped,
                }
            )
        return out

    def report(self, namespace: str, name: str) -> Report | None:
        """The report under the Comparison's current rules; None if it is neither configured
        nor has any data."""
        comparison = next((c for c in self._provider() if c.key == (namespace, name)), None)
        rules = self._rules_for(comparison) if comparison is not None else None
        with self._lock:
            dropped = self._dropped[(namespace, name)]
        snapshot = self._store.snapshot(namespace, name, rules.digest if rules else None)
        if snapshot is None:
            if comparison is None or rules is None:
                return None
            return empty_report(namespace, name, rules.spec, rules.digest, dropped)
        configured = comparison is not None
        return build_report(
            snapshot, configured=configured, dropped=dropped, thresholds=self._thresholds
        )

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < _BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in items)
            exchanges = [i for i in items if isinstance(i, CapturedExchange)]
            self._process(exchanges)
            if stop and self._queue.empty():
                return
            if stop:
                self._queue.put(_STOP)  # more arrived behind it: drain those first

    def _process(self, exchanges: list[CapturedExchange]) -> None:
        counts: Counter[str] = Counter()
        try:
            current = {c.key: c for c in self._provider()}
            with self._store.batch():
                for exchange in exchanges:
                    counts[self._one(exchange, current)] += 1
            self._store.prune()
        except Exception:
            log.exception("comparison analysis failed for %d exchanges", len(exchanges))
            counts = Counter({"errors": len(exchanges)})
        with self._idle:
            self._counts.update(counts)
            self._pending -= len(exchanges)
            self._idle.notify_all()

    def _one(self, exchange: CapturedExchange, current: dict[tuple[str, str], Comparison]) -> str:
        comparison = current.get(exchange.comparison)
        if comparison is None:
            return "skipped"
        rules = self._rules_for(comparison)
        key = (*comparison.key, rules.digest)
        try:
            outcome = analyse(exchange, rules)
        except Skipped as skip:
            self._store.skip(key, rules.spec, skip.reason, exchange.started)
            return "skipped"
        except Exception:
            # A response this code cannot take apart costs that one comparison, not the batch.
            log.exception("comparison %s/%s: analysing %s failed", *key[:2], exchange.request_id)
            return "errors"
        self._store.record(key, rules.spec, outcome)
        return "analysed"

    def _rules_for(self, comparison: Comparison) -> Rules:
        with self._lock:
            rules = self._rules.get(comparison.key)
            if rules is None or rules.comparison != comparison:
                rules = self._rules[comparison.key] = Rules.of(comparison)
            return rules
