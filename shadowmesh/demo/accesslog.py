"""Reading what the httpbin workloads logged (``HTTPBIN_ACCESS_LOG_FORMAT``).

A log only grows, so "what this step logged" is every line past a mark taken before the step.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(
    r'^(?P<client>\S+) "(?P<method>\S+) (?P<target>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) '
    r"host=(?P<host>\S+) rid=(?P<rid>\S+)$"
)


@dataclass(frozen=True)
class Entry:
    """One request as a workload saw it."""

    line: str
    method: str
    target: str
    status: int
    host: str
    request_id: str


def parse(line: str) -> Entry | None:
    m = _LINE.match(line)
    if m is None:
        return None
    return Entry(
        line=line,
        method=m["method"],
        target=m["target"],
        status=int(m["status"]),
        host=m["host"],
        request_id=m["rid"],
    )


class WorkloadLog:
    """The access log of one httpbin, read as parsed entries from a mark onwards."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[Entry]:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        # A line still being written has no newline yet; it is read on the next call.
        complete = text[: text.rfind("\n") + 1]
        return [e for e in map(parse, complete.splitlines()) if e is not None]

    def mark(self) -> int:
        return len(self.entries())

    def since(self, mark: int) -> list[Entry]:
        return self.entries()[mark:]

    def wait_since(self, mark: int, count: int, timeout: float) -> list[Entry]:
        """Entries past mark once there are count of them, or whatever came before timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.since(mark)
            if len(got) >= count or time.monotonic() >= deadline:
                return got
            time.sleep(0.02)

    def settle_since(self, mark: int, quiet: float, timeout: float) -> list[Entry]:
        """Entries past mark once none has arrived for ``quiet`` seconds (shadows are async)."""
        deadline = time.monotonic() + timeout
        got = self.since(mark)
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)
            now = self.since(mark)
            if len(now) != len(got):
                got, last_change = now, time.monotonic()
            elif time.monotonic() - last_change >= quiet:
                break
        return got
