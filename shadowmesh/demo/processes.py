"""Starting, probing and stopping the processes the demo and the end-to-end tests run.

Every process is started in its own session, so a Ctrl-C in the terminal reaches only the
demo, which then stops each child by its PID, in order, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOCALHOST = "127.0.0.1"

# What the scenario's workloads log: gunicorn's usual line plus the Host and x-request-id that
# httpbin saw, so a shadow copy (Host httpbin-shadow:8000) and its primary can be told apart
# and matched.
HTTPBIN_ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s host=%({host}i)s rid=%({x-request-id}i)s'


class ProcessError(RuntimeError):
    """A process did not start, did not become ready, or died."""


@dataclass
class Managed:
    """A child process with the files its output goes to."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    _files: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr_tail(self, lines: int = 20) -> str:
        return tail(self.stderr_path, lines)


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True if a server could listen on host:port now.

    SO_REUSEADDR as servers set it, so a port left in TIME_WAIT by a previous run counts as free
    and only a listening socket counts as busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOCALHOST) -> int:
    """A port the kernel says is free now (bind to 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


def start(
    name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None
) -> Managed:
    """Start argv with stdout and stderr to files in log_dir, named after name."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path = log_dir / f"{name}.out"
    stderr_path = log_dir / f"{name}.err"
    out = stdout_path.open("wb")
    err = stderr_path.open("wb")
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    except BaseException:
        out.close()
        err.close()
        raise
    return Managed(name, list(argv), popen, stdout_path, stderr_path, [out, err])


def httpbin_argv(port: int, host: str = LOCALHOST) -> list[str]:
    """The scenario's workload: ``gunicorn --access-logfile - -b HOST:PORT httpbin:app``.

    No control socket: gunicorn's default one is a single path shared by every instance.
    """
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--access-logfile",
        "-",
        "--access-logformat",
        HTTPBIN_ACCESS_LOG_FORMAT,
        "--no-control-socket",
        "-b",
        f"{host}:{port}",
        "httpbin:app",
    ]


def start_httpbin(name: str, port: int, log_dir: Path) -> Managed:
    """Start httpbin on 127.0.0.1:port; its access log is ``log_dir/NAME.out``."""
    return start(name, httpbin_argv(port), log_dir)


def serve_argv(
    state_dir: Path,
    admin_port: int,
    outbound_port: int,
    access_log: Path,
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "shadowmesh",
        "serve",
        "--state",
        str(state_dir),
        "--admin",
        f"{LOCALHOST}:{admin_port}",
        "--bind",
        LOCALHOST,
        "--outbound",
        f"{LOCALHOST}:{outbound_port}",
        "--access-log",
        str(access_log),
        *extra,
    ]


def wait_http_ok(proc: Managed, url: str, timeout: float = 15.0) -> None:
    """Poll url until it answers 200; fail early, with the process's stderr, if it dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ProcessError(
                f"{proc.name} exited with code {proc.popen.returncode} before it was ready:\n"
                f"{proc.stderr_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"status {resp.status}"
        except urllib.error.HTTPError as e:
            last = f"status {e.code}"
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.05)
    raise ProcessError(
        f"{proc.name} was not ready at {url} after {timeout:.0f}s ({last}):\n{proc.stderr_tail()}"
    )


def stop(proc: Managed, timeout: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL after timeout; returns the exit code (None if it could not be reaped).

    Signals go to the PID we started, never to a name or a group.
    """
    try:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                # A stopped process (SIGSTOP) would never see the SIGTERM.
                os.kill(proc.pid, signal.SIGCONT)
                proc.popen.send_signal(signal.SIGTERM)
            try:
                return proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                try:
                    return proc.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    return None
        return proc.popen.returncode
    finally:
        for f in proc._files:
            f.close()
