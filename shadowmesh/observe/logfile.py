"""The access log's file, by the name ``serve --access-log`` gives: opened at start, opened
again on SIGHUP (after a logrotate moved it away, as nginx does on USR1)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO

from shadowmesh.observe.accesslog import AccessLog

STDOUT = "-"
OFF = "off"


def open_log(target: str) -> IO[str] | None:
    """The stream for ``target``: ``-`` is stdout, ``off`` none; a file is appended to.
    Raises OSError when the file cannot be opened."""
    if target == OFF:
        return None
    if target == STDOUT:
        return sys.stdout
    return open(target, "a", encoding="utf-8")  # lives as long as the process


def reopen_log(target: str, access_log: AccessLog, warn: Callable[[str], None]) -> None:
    """Open ``target`` again by its name, so that a logrotate that moved it away gets a new
    file; if it cannot be opened, the old one is kept (and ``warn`` says why)."""
    if target in (STDOUT, OFF):
        return
    try:
        stream = open(target, "a", encoding="utf-8")  # the old one is closed then
    except OSError as exc:
        warn(f"cannot reopen access log {target}: {exc}")
        return
    access_log.reopen(stream)
