"""wrk: the load generator, run once per measurement, and the parsing of what it prints."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def errors(self) -> int:
        return (
            self.non_2xx
            + self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
        )


def post_script(path: Path, body_bytes: int) -> Path:
    """A wrk Lua script that POSTs a body of this size on every request."""
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("a", {body_bytes})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    return path


def milliseconds(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def _int(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else 0


def parse(text: str) -> WrkResult:
    """What wrk --latency printed, as numbers; raises ValueError when it printed no result."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    mean = re.search(r"Latency\s+([\d.]+\w+)", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+\w+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+\w+)", text, re.M)
    if not (done and rps and mean and p50 and p99):
        raise ValueError(f"wrk printed no result:\n{text}")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errs = [int(g) for g in sockets.groups()] if sockets else [0, 0, 0, 0]
    return WrkResult(
        requests=int(done.group(1)),
        seconds=milliseconds(done.group(2) + done.group(3)) / 1e3,
        rps=float(rps.group(1)),
        mean_ms=milliseconds(mean.group(1)),
        p50_ms=milliseconds(p50.group(1)),
        p99_ms=milliseconds(p99.group(1)),
        non_2xx=_int(r"Non-2xx or 3xx responses: (\d+)", text),
        connect_errors=errs[0],
        read_errors=errs[1],
        write_errors=errs[2],
        timeouts=errs[3],
    )


def run(
    port: int,
    host: str,
    connections: int,
    seconds: int,
    cpus: Sequence[int],
    script: Path | None = None,
    timeout_s: float = 5.0,
) -> WrkResult:
    """One wrk run against 127.0.0.1:port with this Host, pinned to ``cpus``, one thread per CPU.

    wrk's timeout is counted as an error, not a latency: keep it above the shadow timeout so a
    proxy that waits for its shadow shows its real (slow) latency.
    """
    threads = min(len(cpus), connections)
    argv = [
        "taskset", "-c", ",".join(map(str, cpus)),
        "wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
        f"--timeout={timeout_s:g}s", "-H", f"Host: {host}",
    ]  # fmt: skip
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse(out.stdout)


def version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    first = (out.stdout + out.stderr).strip().splitlines()
    return first[0] if first else "unknown"
