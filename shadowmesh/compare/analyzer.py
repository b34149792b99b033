"""The analysis, off the request path: a bounded queue and a worker process.

The data plane calls ``submit`` from its event loop for each captured exchange; ``submit`` never
blocks and never raises: when the queue is full the exchange is dropped and counted, so a slow
disk or a burst of huge bodies costs comparisons, never client latency. The work (decompress,
parse, diff, SQLite) is CPU and disk bound. On a thread it held the proxy's GIL against the
event loop (measured: 40% fewer requests per second with a Comparison on), so it runs in a
process of its own, started with "spawn" (the proxy runs uvloop: never fork it), on its own
connection to the same SQLite file (WAL: the proxy reads reports while the worker writes).

The proxy's side of a submit is a ``put_nowait`` on a ``multiprocessing`` queue: the exchange is
pickled and written by the queue's feeder thread, not by the event loop. The worker counts what
it did in shared memory, which ``stats`` and ``wait_idle`` read. A worker that dies costs what it
had not analysed (counted as dropped) and is restarted once.

``comparisons_provider`` is called on every submit (in this process), so it must be cheap: it
returns the Comparisons in force (``comparisons_for(resources)`` after each config change). When
they change, they go to the worker ahead of the next exchange, so each exchange is analysed under
the Comparisons in force when it was submitted; one for a Comparison not in force is skipped.

``process=False`` keeps the work on a thread of this process (tests, and a given ``store``);
there the Comparisons are read when a batch is analysed.
"""

from __future__ import annotations

import bisect
import logging
import math
import multiprocessing
import multiprocessing.queues
import os
import queue
import random
import signal
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

from shadowmesh.compare.analysis import Rules, Skipped, analyse
from shadowmesh.compare.capture import CapturedExchange
from shadowmesh.compare.repeats import PrimaryRepeats
from shadowmesh.compare.report import Report, Thresholds, build_report, empty_report
from shadowmesh.compare.store import CompareStore
from shadowmesh.model.comparison import Comparison

log = logging.getLogger("shadowmesh.error")

DEFAULT_QUEUE_SIZE = 1_000
_BATCH = 100
_STOP = object()
# Messages to the worker process besides exchanges; strings, so they survive pickling as equal.
_CHILD_STOP = "stop"
_CHILD_COMPARISONS = "comparisons"
_CHILD_RESET = "reset"
_CHILD_BATCH = "batch"
# Exchanges go to the worker in batches: one pickle and one wake-up of the queue's feeder
# thread per batch, not per request (each wake-up took the GIL from the event loop: with a
# Comparison at 100 % the proxy answered half the requests it did without). A batch waits at
# most _SUBMIT_WAIT for more (a flusher thread sends what waited that long).
_SUBMIT_BATCH = 64
_SUBMIT_WAIT = 0.02
_COUNTS = ("analysed", "skipped", "errors")
_CHECK_EVERY = 0.25  # seconds between checks, on submit, that the worker process lives
_RESTARTS = 1
_POLL = 0.005  # wait_idle's poll of the worker's counters
_PARENT_CHECK = 1.0  # how often an idle worker looks for its parent

Provider = Callable[[], Sequence[Comparison]]
# Seconds with a drop that a comparison's drop log keeps (a day of drops every second); a
# ``since`` window further back than that counts only the drops it still has.
DROP_SECONDS_KEPT = 86_400


class DropLog:
    """One comparison's dropped exchanges: the total, and how many in each second with any
    (two flat arrays, appended to), so a report's ``since`` window counts only its own."""

    def __init__(self, kept: int = DROP_SECONDS_KEPT) -> None:
        self.total = 0
        self._kept = kept
        self._seconds = array("q")
        self._counts = array("q")

    def add(self, when: float) -> None:
        self.total += 1
        second = math.floor(when)
        if self._seconds and self._seconds[-1] >= second:
            self._counts[-1] += 1  # this second, or a clock stepped back: the newest bucket
            return
        self._seconds.append(second)
        self._counts.append(1)
        if len(self._seconds) > 2 * self._kept:  # trimmed in halves: O(1) per drop overall
            del self._seconds[: self._kept]
            del self._counts[: self._kept]

    def since(self, when: float | None) -> int:
        """Drops from ``when`` on (to the second); all of them for None."""
        if when is None:
            return self.total
        start = bisect.bisect_left(self._seconds, math.floor(when))
        return sum(self._counts[start:])


class Analyzer:
    def __init__(
        self,
        state_dir: str | Path,
        comparisons_provider: Provider,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        thresholds: Thresholds | None = None,
        store: CompareStore | None = None,
        rng: random.Random | None = None,
        start: bool = True,
        process: bool | None = None,
    ) -> None:
        """``process``: analyse in a worker process (the default) or on a thread. None means a
        process unless ``store`` is given (an open store cannot move to another process) or
        ``start`` is False (tests that start the thread themselves)."""
        self._provider = comparisons_provider
        self._store = store or CompareStore(state_dir, rng=rng)
        self._thresholds = thresholds  # None: each Comparison's own
        self._rules = _RulesCache()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dropped: dict[tuple[str, str], DropLog] = {}
        self._closed = False
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._queue_size = queue_size
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="shadowmesh-compare", daemon=True)
        self._child: _Child | None = None
        self._restarts = 0
        self._next_check = 0.0
        self._child_args = (str(state_dir), rng)
        self._in_process = process if process is not None else (store is None and start)
        self._outbox: list[CapturedExchange] = []  # the batch being gathered for the worker
        self._outbox_since = 0.0
        if self._in_process:
            self._child = _Child(queue_size, *self._child_args)
            if start:
                self._child.start()
                flusher = threading.Thread(
                    target=self._flush_loop, name="shadowmesh-compare-flush", daemon=True
                )
                flusher.start()
        elif start:
            self._thread.start()

    # -- the data plane's side -------------------------------------------------------------

    def submit(self, exchange: CapturedExchange) -> bool:
        """Queue one exchange for analysis; False (and counted) if it was dropped."""
        with self._lock:
            if self._closed:
                return self._drop(exchange)
            if self._in_process:
                return self._submit_to_child(exchange)
            try:
                self._queue.put_nowait(exchange)
            except queue.Full:
                return self._drop(exchange)
            self._counts["submitted"] += 1
            self._pending += 1
            return True

    def _submit_to_child(self, exchange: CapturedExchange) -> bool:
        now = time.monotonic()
        child = self._child
        if now >= self._next_check:
            self._next_check = now + _CHECK_EVERY
            child = self._check_child()
        if child is None:
            return self._drop(exchange)
        try:
            current = tuple(self._provider())
            if current != child.sent:
                self._flush(child)  # what came before goes under the rules it came with
                child.queue.put_nowait((_CHILD_COMPARISONS, current))
                child.sent = current
        except queue.Full:
            return self._drop(exchange)
        except Exception:
            log.exception("comparison: submitting %s failed", exchange.request_id)
            return self._drop(exchange)
        if child.submitted - child.done() + len(self._outbox) >= self._queue_size:
            return self._drop(exchange)
        if not self._outbox:
            self._outbox_since = now
        self._outbox.append(exchange)
        self._counts["submitted"] += 1
        if len(self._outbox) >= _SUBMIT_BATCH:
            self._flush(child)
        return True

    def _flush(self, child: _Child | None) -> None:
        """Send the gathered batch to the worker. Call with the lock held."""
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        try:
            if child is None:
                raise queue.Full
            child.queue.put_nowait((_CHILD_BATCH, batch))
        except Exception as exc:
            if not isinstance(exc, queue.Full):
                log.exception("comparison: submitting %d exchanges failed", len(batch))
            self._counts["submitted"] -= len(batch)
            for exchange in batch:
                self._drop(exchange)
            return
        child.submitted += len(batch)

    def _flush_loop(self) -> None:
        while True:
            time.sleep(_SUBMIT_WAIT)
            with self._lock:
                if self._closed:
                    return
                if self._outbox and time.monotonic() - self._outbox_since >= _SUBMIT_WAIT:
                    self._flush(self._child)

    def _drop(self, exchange: CapturedExchange) -> bool:
        self._counts["dropped"] += 1
        drops = self._dropped.get(exchange.comparison)
        if drops is None:
            drops = self._dropped[exchange.comparison] = DropLog()
        drops.add(exchange.started)
        return False

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self, deadline: float = 5.0) -> None:
        """Stop taking exchanges, analyse what is queued for up to ``deadline`` seconds, stop.

        What is still queued after the deadline is counted as dropped.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._in_process:
            self._close_child(deadline)
        else:
            self._close_thread(deadline)

    def _close_thread(self, deadline: float) -> None:
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

    def _close_child(self, deadline: float) -> None:
        with self._lock:
            self._flush(self._child)
        child = self._child
        if child is not None:
            child.stop(deadline)
            with self._lock:
                self._retire(child)
                self._child = None
        self._store.close()

    def _abandon(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, CapturedExchange) or _is_reset(item):
                with self._idle:
                    if isinstance(item, CapturedExchange):
                        self._drop(item)
                    self._pending -= 1
                    self._idle.notify_all()

    def _check_child(self) -> _Child | None:
        """The worker process, restarted once if it died; None if it is gone for good.
        Call with the lock held."""
        child = self._child
        if child is None or not child.dead():
            return child
        self._retire(child)
        self._child = None
        if self._restarts < _RESTARTS and not self._closed:
            self._restarts += 1
            log.error("comparison worker exited (%s): restarting it", child.process.exitcode)
            self._child = _Child(self._queue_size, *self._child_args)
            self._child.start()
        else:
            log.error(
                "comparison worker exited (%s): comparisons are dropped from now on",
                child.process.exitcode,
            )
        return self._child

    def _retire(self, child: _Child) -> None:
        """Keep a stopped worker's counts; what it did not analyse was dropped."""
        counts = child.counts()
        self._counts.update(counts)
        self._counts["dropped"] += max(0, child.submitted - sum(counts.values()))
        child.release()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued exchange is analysed (tests and the CLI's one-shot runs)."""
        end = time.monotonic() + timeout
        if self._in_process:
            return self._wait_child(end)
        with self._idle:
            while self._pending:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _wait_child(self, end: float) -> bool:
        while True:
            with self._lock:
                child = self._check_child()
                self._flush(child)
                pending = 0 if child is None else child.submitted - child.done()
            if pending <= 0:
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(_POLL)

    def stats(self) -> dict[str, int]:
        with self._lock:
            counts = Counter(self._counts)
            queued = self._queue.qsize()
            if self._in_process:
                child = self._check_child()
                queued = 0
                if child is not None:
                    counts.update(child.counts())
                    queued = max(0, child.submitted - child.done()) + len(self._outbox)
            return {
                "queued": queued,
                "capacity": self._queue_size,
                "submitted": counts["submitted"],
                "analysed": counts["analysed"],
                "skipped": counts["skipped"],
                "dropped": counts["dropped"],
                "errors": counts["errors"],
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
                    "insufficient": report.insufficient,
                    "differences": report.differences,
                    "dropped": report.dropped,
                }
            )
        return out

    def report(
        self,
        namespace: str,
        name: str,
        overrides: Mapping[str, float] | None = None,
        since: float | None = None,
    ) -> Report | None:
        """The report under the Comparison's current rules and thresholds (``overrides``
        change some, for this report only); None if it is neither configured nor has any
        data. ``since``: only what was compared from then on (epoch seconds)."""
        comparison = next((c for c in self._provider() if c.key == (namespace, name)), None)
        rules = self._rules.of(comparison) if comparison is not None else None
        with self._lock:
            drops = self._dropped.get((namespace, name))
            dropped = drops.since(since) if drops is not None else 0
        snapshot = self._store.snapshot(namespace, name, rules.digest if rules else None, since)
        if snapshot is None:
            if comparison is None or rules is None:
                return None
            return empty_report(namespace, name, rules.spec, rules.digest, dropped)
        configured = comparison is not None
        thresholds = self._thresholds or Thresholds.from_spec(snapshot.row.spec)
        if overrides:
            thresholds = Thresholds.override(thresholds, overrides)
        report = build_report(
            snapshot, configured=configured, dropped=dropped, thresholds=thresholds
        )
        report.since = since
        return report

    def reset(self, namespace: str, name: str, timeout: float = 10.0) -> bool:
        """Forget what the comparison counted (every rules digest): its report starts over.

        The writer (the worker, or the thread) does it, in its turn: it holds the counters'
        caches, and what was queued before the reset is forgotten with the rest. True once
        done, False if the writer did not get to it within ``timeout`` (it still will)."""
        key = (namespace, name)
        with self._lock:
            self._dropped.pop(key, None)
            if self._in_process:
                child = self._check_child()
                if child is None:
                    return False
                self._flush(child)
                try:
                    child.queue.put((_CHILD_RESET, key), timeout=timeout)
                except queue.Full:
                    return False
                child.submitted += 1
            else:
                try:
                    self._queue.put((_CHILD_RESET, key), timeout=timeout)
                except queue.Full:
                    return False
                self._pending += 1
        return self.wait_idle(timeout)

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
            exchanges: list[CapturedExchange] = []
            for item in [*items, None]:
                if isinstance(item, CapturedExchange):
                    exchanges.append(item)
                    continue
                counts = _analyse_batch(self._store, self._rules, exchanges, self._provider)
                done = len(exchanges)
                exchanges = []
                if _is_reset(item):
                    _reset(self._store, item[1])
                    done += 1
                with self._idle:
                    self._counts.update(counts)
                    self._pending -= done
                    self._idle.notify_all()
            if stop and self._queue.empty():
                return
            if stop:
                self._queue.put(_STOP)  # more arrived behind it: drain those first


# -- the analysis, on the thread or in the worker process ----------------------------------------


class _RulesCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[tuple[str, str], Rules] = {}
        self._repeats: dict[tuple[str, str], PrimaryRepeats] = {}

    def of(self, comparison: Comparison) -> Rules:
        with self._lock:
            rules = self._rules.get(comparison.key)
            if rules is None or rules.comparison != comparison:
                rules = self._rules[comparison.key] = Rules.of(comparison)
                self._repeats[comparison.key] = PrimaryRepeats()  # new rules learn anew
            return rules

    def repeats(self, comparison: Comparison) -> PrimaryRepeats | None:
        """What repeated requests taught of the primary; only without a baseline (with one,
        the baseline measures the noise)."""
        if comparison.baseline is not None:
            return None
        with self._lock:
            return self._repeats.setdefault(comparison.key, PrimaryRepeats())


def _analyse_batch(
    store: CompareStore,
    rules: _RulesCache,
    exchanges: list[CapturedExchange],
    provider: Provider,
) -> Counter[str]:
    """Analyse and store a batch in one transaction; counts by outcome, never raises."""
    counts: Counter[str] = Counter()
    if not exchanges:
        return counts
    try:
        current = {c.key: c for c in provider()}
        with store.batch():
            for exchange in exchanges:
                counts[_analyse_one(store, rules, exchange, current)] += 1
        store.prune()
    except Exception:
        log.exception("comparison analysis failed for %d exchanges", len(exchanges))
        counts = Counter({"errors": len(exchanges)})
    return counts


def _analyse_one(
    store: CompareStore,
    cache: _RulesCache,
    exchange: CapturedExchange,
    current: dict[tuple[str, str], Comparison],
) -> str:
    comparison = current.get(exchange.comparison)
    if comparison is None:
        return "skipped"
    rules = cache.of(comparison)
    repeats = cache.repeats(comparison)
    key = (*comparison.key, rules.digest)
    try:
        if repeats is None:
            outcome = analyse(exchange, rules)
        else:
            request = (exchange.method, exchange.path)
            outcome = analyse(exchange, rules, repeats.varying(*request))
            if repeats.learn(*request, exchange.request_body, outcome, rules):
                outcome = analyse(exchange, rules, repeats.varying(*request))
    except Skipped as skip:
        store.skip(key, rules.spec, skip.reason, exchange.started)
        return "skipped"
    except Exception:
        # A response this code cannot take apart costs that one comparison, not the batch.
        log.exception("comparison %s/%s: analysing %s failed", *key[:2], exchange.request_id)
        return "errors"
    store.record(key, rules.spec, outcome)
    return "analysed"


# -- the worker process ----------------------------------------------------------------------------


class _Queue(multiprocessing.queues.Queue):  # type: ignore[type-arg]
    """A queue whose feeder thread counts what it could not send, so ``pending`` still ends."""

    def __init__(self, maxsize: int, *, ctx: SpawnContext) -> None:
        super().__init__(maxsize, ctx=ctx)
        self.unsent = 0

    def _on_queue_feeder_error(self, e: Exception, obj: object) -> None:
        # The feeder thread's: an exchange that does not pickle is lost, not left pending.
        self.unsent += 1
        log.error("comparison: an exchange could not be sent to the worker: %r", e)


class _Child:
    """One worker process, its queue, and the counters it writes (analysed, skipped, errors,
    then their sum: in that order, so the sum never runs ahead of the parts)."""

    def __init__(self, queue_size: int, state_dir: str, rng: random.Random | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.queue = _Queue(queue_size, ctx=ctx)
        # No lock: a worker killed while holding one would hang every reader; each counter is
        # one aligned word with one writer.
        self.counters = ctx.RawArray("q", len(_COUNTS) + 1)
        self.submitted = 0
        self.sent: tuple[Comparison, ...] | None = None
        self.process: SpawnProcess = ctx.Process(
            target=_child_main,
            # The proxy's pid, from here: read in the child, getppid() would already be 1 if
            # the proxy died while the child started, and the child would never see it go.
            args=(self.queue, self.counters, state_dir, rng, os.getpid()),
            name="shadowmesh-compare",
            daemon=True,
        )

    def start(self) -> None:
        self.process.start()

    def dead(self) -> bool:
        return self.process.pid is not None and not self.process.is_alive()

    def counts(self) -> dict[str, int]:
        return dict(zip(_COUNTS, self.counters[: len(_COUNTS)], strict=True))

    def done(self) -> int:
        return int(self.counters[len(_COUNTS)]) + self.queue.unsent

    def queued(self) -> int:
        try:
            return self.queue.qsize()
        except NotImplementedError:  # macOS has no sem_getvalue
            return 0

    def stop(self, deadline: float) -> None:
        """Let the worker finish what is queued until the deadline, then end it."""
        end = time.monotonic() + deadline
        if self.process.is_alive():
            try:
                self.queue.put(_CHILD_STOP, timeout=max(0.0, deadline))
            except queue.Full:
                pass
            self.process.join(max(0.0, end - time.monotonic()))
        for end_it in (self.process.terminate, self.process.kill):
            if not self.process.is_alive():
                break
            end_it()
            self.process.join(1.0)

    def release(self) -> None:
        # A worker that did not read everything leaves the feeder thread blocked on a full
        # pipe: the proxy's exit must not wait for it.
        self.queue.cancel_join_thread()
        self.queue.close()


def _child_main(
    inbox: _Queue, counters: Any, state_dir: str, rng: random.Random | None, parent: int
) -> None:
    """The worker process: analyse exchanges as they come, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the proxy decides when the worker stops
    _use_every_cpu()
    store = CompareStore(state_dir, rng=rng)
    cache = _RulesCache()
    current: tuple[Comparison, ...] = ()
    try:
        while True:
            try:
                items = [inbox.get(timeout=_PARENT_CHECK)]
            except queue.Empty:
                if os.getppid() != parent:
                    return  # the proxy died without stopping us
                continue
            while len(items) < _BATCH:
                try:
                    items.append(inbox.get_nowait())
                except queue.Empty:
                    break
            current, stop = _child_batch(store, cache, items, current, counters)
            if stop:
                return
    finally:
        store.close()


def _child_batch(
    store: CompareStore,
    cache: _RulesCache,
    items: list[Any],
    current: tuple[Comparison, ...],
    counters: Any,
) -> tuple[tuple[Comparison, ...], bool]:
    exchanges: list[CapturedExchange] = []
    stop = False

    def flush() -> None:
        snapshot = current
        counts = _analyse_batch(store, cache, exchanges, lambda: snapshot)
        for i, name in enumerate(_COUNTS):
            counters[i] += counts[name]
        counters[len(_COUNTS)] += len(exchanges)
        exchanges.clear()

    for item in items:
        if isinstance(item, CapturedExchange):
            exchanges.append(item)
        elif isinstance(item, tuple) and item[:1] == (_CHILD_BATCH,):
            exchanges.extend(item[1])
        elif item == _CHILD_STOP:
            stop = True
        elif isinstance(item, tuple) and item[:1] == (_CHILD_COMPARISONS,):
            flush()  # what came before the change is analysed under the rules it came with
            current = item[1]
        elif _is_reset(item):
            flush()
            _reset(store, item[1])
            counters[len(_COUNTS)] += 1
    flush()
    return current, stop


def _is_reset(item: Any) -> bool:
    return isinstance(item, tuple) and item[:1] == (_CHILD_RESET,)


def _reset(store: CompareStore, key: tuple[str, str]) -> None:
    try:
        store.reset(*key)
    except Exception:
        log.exception("comparison %s/%s: reset failed", *key)


def _use_every_cpu() -> None:
    """A proxy pinned to a core (taskset) pins its children too: the worker is there to use
    another core."""
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except (AttributeError, OSError):
        pass  # not Linux, or a cpuset forbids it: share the proxy's cores
