"""Processes the bench starts, stopped by PID, and what /proc says about them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


class Procs:
    """Every process the bench starts, so that each is stopped by its PID, whatever happens.

    Children get their own session: a Ctrl-C in the terminal reaches only the bench, which then
    stops them in order (the proxy before its upstreams) instead of all dying at once.
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cpus: Sequence[int],
        stdout: int | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` under ``taskset -c`` (exec'd, so the PID is the program's own)."""
        # The child holds its own copy of the log's descriptor: ours can close at once.
        with open(self.logdir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                ["taskset", "-c", cpu_list(cpus), *argv],
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log,
                stderr=log,
                cwd=cwd,
                start_new_session=True,
            )
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL for it and any child it left behind (nginx's workers)."""
        if proc in self.running:
            self.running.remove(proc)
        family = descendants(proc.pid)
        if proc.poll() is None:
            _signal(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in family:
            if alive(pid):
                _signal(pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop_all(self) -> None:
        # Newest first: proxies stop before the upstreams they hold connections to.
        for proc in reversed(list(self.running)):
            self.stop(proc)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def family(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def cpu_seconds(pids: Sequence[int]) -> float:
    """user + system CPU time of these processes (utime and stime of /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def peak_rss_mib(pids: Sequence[int]) -> float:
    """The largest VmHWM among these processes: the peak of the busiest worker."""
    return max((status_kib(pid, "VmHWM") for pid in pids), default=0) / 1024


def rss_mib(pids: Sequence[int]) -> float:
    return max((status_kib(pid, "VmRSS") for pid in pids), default=0) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")
