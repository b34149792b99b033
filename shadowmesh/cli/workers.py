"""``serve --workers N``: more data-plane processes on the same ports (SO_REUSEPORT).

The first process owns the store's writes, the admin API and ``-f``; it starts N-1 workers that
each run their own event loop and data plane, read the same store, and swap in a new route table
when its revision changes. A config change reaches every worker within ``POLL`` seconds, as an
Envoy fleet converges on a new xDS push. Workers are stopped by PID with the parent, and stop by
themselves if it dies; SIGHUP reaches them through it.

A worker's stdin is its end of a socket pair with the first process: end-of-file there means
the first process is gone, and the worker's counters go the other way, in frames (a 4-byte
length, then ``observe.fleet``'s JSON), so that ``/stats`` and ``/stats/prometheus`` count the
requests every worker served. The first process asks for a fresh frame with one byte.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence

from shadowmesh.cli.process import on_signals
from shadowmesh.control.controller import Controller
from shadowmesh.control.offload import ConfigThread
from shadowmesh.dataplane.server import DataPlane
from shadowmesh.errors import ShadowmeshError
from shadowmesh.observe.fleet import PUSH, Fleet, Report, decode, encode

POLL = 0.1
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
FRAME = struct.Struct("!I")
ASK = b"?"  # the first process asks a worker for a frame now
MAX_FRAME = 64 << 20
FRESH_WAIT = 0.5  # seconds a scrape waits for the workers' fresh frames, then uses the last


class Worker:
    """One extra worker: its process and the first process's end of its socket."""

    def __init__(self, ident: int, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.ident = ident
        self.proc = proc
        self.sock = sock
        self.writer: asyncio.StreamWriter | None = None
        self.asked = 0  # frames asked for
        self.answered = 0  # asks the last frame answered
        self.frame = asyncio.Event()
        self.done = asyncio.Event()  # its socket is closed and its last frame counted


class Workers:
    """The extra workers of the first process: started, restarted if one dies, and stopped;
    their counters gathered into ``fleet``.

    A worker never outlives this process: it stops when it reads end-of-file from its socket
    (whatever ended this process, SIGKILL included); on Linux the kernel also sends it SIGTERM
    then (``die_with_parent``).
    """

    def __init__(self, argv: Sequence[str], count: int, fleet: Fleet | None = None) -> None:
        self.argv = list(argv)
        self.count = count
        self.fleet = fleet if fleet is not None else Fleet()
        self.workers: list[Worker] = []
        self.stopping = False  # once set, no worker is started again
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [w.proc for w in self.workers]

    def _spawn(self) -> Worker:
        mine, theirs = socket.socketpair()
        try:
            # close_fds (the default) keeps each worker's socket out of every other child.
            proc = subprocess.Popen(self.argv, stdin=theirs.fileno())
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self._next += 1
        worker = Worker(self._next, proc, mine)
        task = asyncio.get_running_loop().create_task(self._read(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return worker

    async def _read(self, worker: Worker) -> None:
        """Keep the worker's last frame until its socket closes, then count it as gone."""
        try:
            reader, worker.writer = await asyncio.open_unix_connection(sock=worker.sock)
            while True:
                (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
                if size > MAX_FRAME:
                    raise ValueError(f"a frame of {size} bytes")
                report = decode(await reader.readexactly(size))
                worker.answered = max(worker.answered, report.answered)
                self.fleet.update(worker.ident, report)
                worker.frame.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker ended
        except (ValueError, KeyError, TypeError) as exc:
            print(f"shadowmesh: worker {worker.proc.pid} sent a bad frame: {exc}", file=sys.stderr)
        finally:
            self.fleet.retire(worker.ident)
            if worker.writer is not None:
                worker.writer.close()
            else:
                worker.sock.close()
            worker.done.set()

    async def fresh(self) -> None:
        """Ask every worker for a frame and wait for them (``FRESH_WAIT`` at most): what a
        scrape reads then counts every request answered before it."""
        waiting = []
        for worker in self.workers:
            if worker.writer is None or worker.done.is_set():
                continue
            worker.asked += 1
            worker.frame.clear()
            try:
                worker.writer.write(ASK)
            except (ConnectionError, RuntimeError):
                continue
            waiting.append(worker)
        loop = asyncio.get_running_loop()
        end = loop.time() + FRESH_WAIT
        for worker in waiting:
            while worker.answered < worker.asked and not worker.done.is_set():
                left = end - loop.time()
                if left <= 0:
                    return
                try:
                    await asyncio.wait_for(worker.frame.wait(), left)
                except TimeoutError:
                    return
                worker.frame.clear()

    def start(self) -> None:
        for _ in range(self.count):
            self.workers.append(self._spawn())

    async def watch(self) -> None:
        """Start a worker again if one dies, so the port keeps its share of processes."""
        while not self.stopping:
            await asyncio.sleep(1.0)
            for i, worker in enumerate(self.workers):
                if self.stopping:
                    return
                proc = worker.proc
                if proc.poll() is not None:
                    print(
                        f"shadowmesh: worker {proc.pid} exited ({proc.returncode}); restarting",
                        file=sys.stderr,
                    )
                    # Its socket closes by itself once its last frame is read (``_read``).
                    self.workers[i] = self._spawn()

    def send_signal(self, sig: signal.Signals) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, sig)

    async def stop(self, deadline: float) -> None:
        """Drain the workers (SIGTERM), then kill what is left after ``deadline`` seconds."""
        self.stopping = True
        self.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while any(p.poll() is None for p in self.procs) and loop.time() < end:
            await asyncio.sleep(0.05)
        for worker in self.workers:
            if worker.proc.poll() is None:
                os.kill(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait()
        # Their last frames, read before the sockets close.
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.done.wait(), 1.0)
            except TimeoutError:
                worker.sock.close()


def die_with_parent() -> None:
    """In a worker, on Linux: have the kernel send SIGTERM when the first process dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the pipe (``watch_parent``) still stops the worker


def process_report(plane: DataPlane, answered: int = 0) -> Report:
    """This process's counters and gauges, as a worker sends them up."""
    dispatcher = plane.dispatcher
    gauges = {
        "shadow_in_flight": dispatcher.in_flight,
        "shadow_held_bytes": dispatcher.held_bytes,
        # Idle keep-alive connections held by the pools (bounded per endpoint): not leaks.
        "upstream_idle": plane.pool.idle_count(),
        "shadow_idle": dispatcher.pool.idle_count(),
    }
    otlp = plane.spans.snapshot() if plane.spans is not None else None
    skipped = dict(getattr(plane.table, "shadow_skipped", {}))
    return Report(os.getpid(), plane.stats, gauges, otlp, answered, skipped)


class ParentLink:
    """In a worker: its socket to the first process (stdin). End-of-file sets ``stop``; every
    ``PUSH`` seconds, when asked, and at ``close``, a frame of ``report()`` goes up."""

    def __init__(self, report: Callable[[int], bytes]) -> None:
        self.report = report
        self.asked = 0
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, stop: asyncio.Event) -> None:
        try:
            sock = socket.socket(fileno=os.dup(sys.stdin.fileno()))
        except OSError:
            raise ShadowmeshError("--worker is started by serve --workers, with a socket") from None
        reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen(reader, stop)), loop.create_task(self._push())]

    async def _listen(self, reader: asyncio.StreamReader, stop: asyncio.Event) -> None:
        try:
            while data := await reader.read(4096):
                self.asked += data.count(ASK)
                self.send()
        except ConnectionError:
            pass
        stop.set()

    async def _push(self) -> None:
        while True:
            await asyncio.sleep(PUSH)
            self.send()

    def send(self) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > MAX_FRAME:
            return  # the first process reads nothing (stopped?): hold no more than a frame
        frame = self.report(self.asked)
        writer.write(FRAME.pack(len(frame)) + frame)

    async def close(self) -> None:
        """The last frame (after the drain), sent before the socket closes."""
        for task in self._tasks:
            task.cancel()
        self.send()
        writer = self._writer
        if writer is not None:
            try:
                await writer.drain()
            except ConnectionError:
                pass
            writer.close()


async def follow_store(
    config: ConfigThread, controller: Controller, warn: Callable[[str], None]
) -> None:
    """In a worker: catch up whenever another process commits a new revision.

    The revision is read and the change loaded and compiled on the config thread, as an
    apply is in the main process; the controller re-reads only the rows that changed. A store
    that fails (a full disk, a damaged row) is said once, and the worker keeps the table it
    has, trying again at the next poll.
    """
    seen = await config.read(lambda: controller.revision)
    failed = ""
    while True:
        await asyncio.sleep(POLL)
        try:
            revision = await config.read(lambda: controller.revision)
            if revision != seen:
                for warning in await config.run(controller.start):
                    warn(warning)
                seen = revision
            failed = ""
        except ShadowmeshError as exc:
            if str(exc) != failed:
                failed = str(exc)
                warn(f"keeping the current config: {exc}")


async def serve_as_worker(
    plane: DataPlane,
    config: ConfigThread,
    controller: Controller,
    outbound: tuple[str, int] | None,
    drain_timeout: float,
    reopen_log: Callable[[], None],
    warn: Callable[[str], None],
) -> None:
    """An extra worker's life: its own outbound listener, the store followed, the first
    process watched (its end, or SIGTERM, drains this one), SIGHUP reopening the log."""
    stop = on_signals(reopen_log)
    link = ParentLink(lambda answered: encode(process_report(plane, answered)))
    await link.open(stop)
    if outbound is not None:
        await plane.start_outbound(*outbound)
    plane.spawn(follow_store(config, controller, warn))
    await stop.wait()
    await plane.shutdown(drain_timeout)
    await link.close()
