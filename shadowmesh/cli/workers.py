"""``serve --workers N``: more data-plane processes on the same ports (SO_REUSEPORT).

The first process owns the store's writes, the admin API and ``-f``; it starts N-1 workers that
each run their own event loop and data plane, read the same store, and swap in a new route table
when its revision changes. A config change reaches every worker within ``POLL`` seconds, as an
Envoy fleet converges on a new xDS push. Workers are stopped by PID with the parent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

from shadowmesh.control.controller import Controller
from shadowmesh.control.offload import ConfigThread

POLL = 0.1


class Workers:
    def __init__(self, argv: Sequence[str], count: int) -> None:
        self.argv = list(argv)
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for _ in range(self.count):
            self.procs.append(subprocess.Popen(self.argv, stdin=subprocess.DEVNULL))

    async def watch(self) -> None:
        """Start a worker again if one dies, so the port keeps its share of processes."""
        while True:
            await asyncio.sleep(1.0)
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    print(
                        f"shadowmesh: worker {proc.pid} exited ({proc.returncode}); restarting",
                        file=sys.stderr,
                    )
                    self.procs[i] = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)

    async def stop(self, deadline: float) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while any(p.poll() is None for p in self.procs) and loop.time() < end:
            await asyncio.sleep(0.05)
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


async def follow_store(
    config: ConfigThread, controller: Controller, warn: Callable[[str], None]
) -> None:
    """In a worker: catch up whenever another process commits a new revision.

    The revision is read and the change loaded and compiled on the config thread, as an
    apply is in the main process; the controller re-reads only the rows that changed.
    """
    seen = await config.run(lambda: controller.revision)
    while True:
        await asyncio.sleep(POLL)
        revision = await config.run(lambda: controller.revision)
        if revision != seen:
            seen = revision
            for warning in await config.run(controller.start):
                warn(warning)
