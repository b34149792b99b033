"""Config work runs on one thread beside the serving loop, never on it.

Parsing 10,000 VirtualServices, validating, compiling, committing to SQLite and serialising
``/config_dump`` take seconds at that size; on the event loop every proxied request would wait
for them. On this thread the loop keeps serving: the thread's Python code gives the GIL up every
millisecond while a job runs (``JOB_SWITCH_INTERVAL``), SQLite releases it while it works, and the
compiler (``routing.compiler``) is interpreted on purpose so that it does too.

The cyclic garbage collector is paused while a job runs, and what survives a config change is
then frozen (``gc.freeze``): otherwise the hundreds of thousands of objects a large config is
made of trigger full collections over and over, each holding the GIL for hundreds of
milliseconds, on whichever thread allocates. Config work leaves no cyclic garbage (its objects
die by reference count), so nothing is lost by not scanning them; the price is that an object
alive at that moment that later dies in a reference cycle is never collected: for the rare
config change, a small one. Jobs that only read (a config dump, a get, a worker's look at the
store's revision) leave nothing behind to freeze, and do not: frozen every few seconds (the
/ui page polls), the collector would soon see nothing at all.

The finished table still has to reach the data plane on the loop's own thread (listeners are
opened there): ``on_loop`` wraps the data plane's swap so that it runs there, while the config
thread waits for it with the store's transaction open, as ``Controller`` requires. One thread,
so config changes are applied in the order they arrive, as the Controller's lock alone would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from shadowmesh.errors import ShadowmeshError

A = TypeVar("A")
R = TypeVar("R")

# How long the config thread waits for the loop to take a table: the loop is never busy that
# long unless it is gone (a shutdown under way).
SWAP_TIMEOUT = 30.0
# While a job runs, the loop waits this long at most for the GIL each time it wants it back
# (after each poll for I/O), instead of the default 5 ms: a proxied request wants it a few times.
JOB_SWITCH_INTERVAL = 0.001


class ConfigThread:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()  # made on the loop's thread
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="shadowmesh-config"
        )

    async def run(self, func: Callable[..., R], *args: object) -> R:
        """``func(*args)``, a config change, on the config thread; the loop serves meanwhile."""
        return await self._loop.run_in_executor(self._executor, _paused_gc, func, args, True)

    async def read(self, func: Callable[..., R], *args: object) -> R:
        """``func(*args)``, which changes no config, on the config thread."""
        return await self._loop.run_in_executor(self._executor, _paused_gc, func, args, False)

    def on_loop(self, func: Callable[[A], None]) -> Callable[[A], None]:
        """``func`` made callable from the config thread: it runs on the loop, the caller
        waits for it and gets its exception. Called on the loop itself, it just runs."""

        def call(arg: A) -> None:
            if threading.get_ident() == self._loop_thread:
                func(arg)
                return
            done: concurrent.futures.Future[None] = concurrent.futures.Future()

            def run() -> None:
                try:
                    func(arg)
                except BaseException as exc:  # handed to the waiting thread
                    done.set_exception(exc)
                else:
                    done.set_result(None)

            self._loop.call_soon_threadsafe(run)
            try:
                done.result(SWAP_TIMEOUT)
            except concurrent.futures.TimeoutError:
                raise ShadowmeshError("the data plane did not take the new table in time") from None

        return call

    async def close(self) -> None:
        """Wait for the change under way, if any (its swap needs this loop), then stop."""
        await self._loop.run_in_executor(self._executor, _nothing)
        self._executor.shutdown(wait=False)


def _nothing() -> None:
    return None


def _paused_gc(func: Callable[..., R], args: tuple[object, ...], freeze: bool) -> R:
    gc.disable()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(JOB_SWITCH_INTERVAL)
    try:
        return func(*args)
    finally:
        sys.setswitchinterval(switch)
        gc.enable()
        if freeze:
            gc.freeze()
