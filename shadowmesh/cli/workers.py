"""``serve --workers N``: more data-plane processes on the same ports (SO_REUSEPORT).

The first process owns the store's writes, the admin API and ``-f``; it starts N-1 workers that
each run their own event loop and data plane, read the same store, and swap in a new route table
when its revision changes. A config change reaches every worker within ``POLL`` seconds, as an
Envoy fleet converges on a new xDS push. Workers are stopped by PID with the parent, and stop by
themselves if it dies; SIGHUP reaches them through it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

from shadowmesh.control.controller import Controller
from shadowmesh.control.offload import ConfigThread
from shadowmesh.errors import ShadowmeshError

POLL = 0.1
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Workers:
    """The extra workers of the first process: started, restarted if one dies, and stopped.

    A worker never outlives this process: each holds the read end of a pipe whose write end
    only this process has, and stops when it reads end-of-file (whatever ended this process,
    SIGKILL included); on Linux the kernel also sends it SIGTERM then (``die_with_parent``).
    """

    def __init__(self, argv: Sequence[str], count: int) -> None:
        self.argv = list(argv)
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopping = False  # once set, no worker is started again

    def _spawn(self) -> subprocess.Popen[bytes]:
        # close_fds (the default) keeps each worker's pipe out of every other child.
        return subprocess.Popen(self.argv, stdin=subprocess.PIPE)

    def start(self) -> None:
        for _ in range(self.count):
            self.procs.append(self._spawn())

    async def watch(self) -> None:
        """Start a worker again if one dies, so the port keeps its share of processes."""
        while not self.stopping:
            await asyncio.sleep(1.0)
            for i, proc in enumerate(self.procs):
                if self.stopping:
                    return
                if proc.poll() is not None:
                    print(
                        f"shadowmesh: worker {proc.pid} exited ({proc.returncode}); restarting",
                        file=sys.stderr,
                    )
                    _close_pipe(proc)
                    self.procs[i] = self._spawn()

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
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            _close_pipe(proc)


def _close_pipe(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass


def die_with_parent() -> None:
    """In a worker, on Linux: have the kernel send SIGTERM when the first process dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the pipe (``watch_parent``) still stops the worker


def watch_parent(stop: asyncio.Event) -> None:
    """In a worker: set ``stop`` when the first process's end of the stdin pipe closes."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


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
