"""The process around a data plane: its event loop and its signals."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop (design.md: the data plane was measured on it), or on asyncio's
    own loop where uvloop is not installed. Only the import falls back: an ImportError raised
    by ``main`` itself is not taken for a missing uvloop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def on_signals(hangup: Callable[[], None]) -> asyncio.Event:
    """SIGTERM and SIGINT set the event returned (a drain follows); SIGHUP calls ``hangup``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hangup)
    return stop
