"""What a SIGTERM costs under keep-alive load: requests left unanswered, and how long it drains.

    .venv/bin/python -m bench.drain                       # 1 and 2 workers, 3 runs each
    .venv/bin/python -m bench.drain --workers 2 --clients 64 --runs 5 --json out.json

Per run: an upstream (``bench.shadow``, answering after ``--delay-ms`` so that requests are in
flight), ``shadowmesh serve --workers N`` in front of it, and ``--clients`` keep-alive clients
(threads on raw sockets) sending GETs back to back. After ``--load-seconds`` serve gets SIGTERM.
Each client carries on until the proxy refuses its connection, opening a new one after a response
that says ``Connection: close``. Counted, per run:

- ``answered``: complete responses (``answered_200`` of them 200, the upstream's answer);
- ``unanswered``: requests written with no complete answer. Of them: ``lost_forwarded``,
  forwarded whole to the upstream (it counts them) and not answered; ``cut``, a response cut
  short; ``retry_case``, written on a reused connection the proxy closed without any response
  and without an earlier ``Connection: close`` (a client may resend it, RFC 9112 section 9.3.1,
  but the proxy is to say ``Connection: close`` before it closes a connection that has served,
  so only a close at the very moment the request is written excuses it); ``reset_new``, a new
  connection the kernel reset before any response: made as the listening socket closed, never
  accepted by any process, so never seen by the proxy; ``closed_new``, a new connection
  closed before any response;
- ``lost``: ``unanswered`` but for ``reset_new``: the figure that must be zero;
- ``drain_s``: seconds from the SIGTERM to serve's exit (``--drain-timeout`` is the bound).

Everything is on 127.0.0.1; the processes it starts are stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench.mesh import HOST, MeshConfig, mesh_yaml
from bench.procs import Procs, free_port

REPO = Path(__file__).resolve().parents[1]


class Cut(Exception):
    """A response began and did not end: the connection closed or stalled in it."""


class Closed(Exception):
    """The connection ended before any byte of the response: reset, or closed (FIN)."""

    def __init__(self, reset: bool) -> None:
        super().__init__("reset" if reset else "closed")
        self.reset = reset


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    answered_200: int = 0
    announced_close: int = 0  # responses that said Connection: close
    retry_case: int = 0  # a reused connection ended under the request, no byte answered
    reset_new: int = 0  # a new connection reset before any byte: never accepted by the proxy
    closed_new: int = 0  # a new connection closed (FIN) before any byte: accepted, then dropped
    cut: int = 0

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def lost(self) -> int:
        """Requests written and never answered, but for those the kernel reset on a connection
        no process had accepted yet (the proxy never saw them)."""
        return self.sent - self.answered - self.reset_new


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except TimeoutError:
        raise Cut("stalled") from None
    except ConnectionResetError:
        raise Closed(reset=True) from None


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bool]:
    """(status, says close) of the next response; raises Closed if the connection ended before
    any byte of it, Cut if in the middle.

    ``buf`` holds what was read past the response (nothing, as the clients do not pipeline).
    """
    while b"\r\n\r\n" not in buf:
        try:
            data = _recv(sock)
        except Closed:
            if buf:
                raise Cut("reset in the head") from None
            raise
        if not data:
            if buf:
                raise Cut("closed in the head")
            raise Closed(reset=False)
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    lines = bytes(buf[: end - 4]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {
        k.strip().lower(): v.strip().lower() for k, _, v in (x.partition(":") for x in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    while len(buf) < end + length:
        try:
            data = _recv(sock)
        except Closed:
            data = b""
        if not data:
            raise Cut("closed in the body")
        buf += data
    del buf[: end + length]
    return status, headers.get("connection") == "close"


def client(port: int, tally: Tally, limit: int = 1_000_000) -> None:
    """Send GETs back to back on keep-alive connections until the proxy refuses a new one."""
    request = b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode()
    sock: socket.socket | None = None
    served = 0  # responses on the current connection
    buf = bytearray()
    for _ in range(limit):
        if sock is None:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                return  # refused: the proxy has stopped listening
            served, buf = 0, bytearray()
        try:
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                raise Closed(reset=True) from None
            finally:
                tally.sent += 1  # written, or as good as: the close came under it
            status, close = read_response(sock, buf)
        except Cut:
            tally.cut += 1
            sock.close()
            sock = None
            continue
        except Closed as closed:
            if served:
                tally.retry_case += 1
            elif closed.reset:
                tally.reset_new += 1
            else:
                tally.closed_new += 1
            sock.close()
            sock = None
            continue
        served += 1
        tally.answered += 1
        tally.answered_200 += status == 200
        if close:
            tally.announced_close += 1
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def hammer(port: int, clients: int, load_seconds: float, stop: Callable[[], None]) -> Tally:
    """``clients`` clients on ``port``; ``stop()`` (the SIGTERM) after ``load_seconds``."""
    tallies = [Tally() for _ in range(clients)]
    threads = [threading.Thread(target=client, args=(port, t), daemon=True) for t in tallies]
    for thread in threads:
        thread.start()
    time.sleep(load_seconds)
    stop()
    for thread in threads:
        thread.join(60)
    total = Tally()
    for tally in tallies:
        total.add(tally)
    return total


def upstream_complete(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__bench__/counts", timeout=5) as r:
        complete: int = json.loads(r.read())["complete"]
        return complete


def wait_ready(admin: int, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("serve did not become ready")


def one_run(
    workdir: Path, workers: int, clients: int, load_seconds: float, delay_ms: float,
    drain_timeout: float,
) -> dict[str, Any]:  # fmt: skip
    procs = Procs(workdir)
    cpus = list(range(os.cpu_count() or 1))
    try:
        mode = ["--mode", "slow", "--delay-ms", f"{delay_ms:g}"] if delay_ms else ["--mode", "ok"]
        up = procs.start(
            "upstream", [sys.executable, "-m", "bench.shadow", *mode], cpus, subprocess.PIPE, REPO
        )
        assert up.stdout is not None
        up_port = int(up.stdout.readline())
        listen, admin = free_port(), free_port()
        cfg = MeshConfig(listen, up_port, up_port, 0, False, workers, 5.0)
        (workdir / "mesh.yaml").write_text(mesh_yaml(cfg))
        argv = [
            sys.executable, "-m", "shadowmesh", "serve",
            "--state", str(workdir / "state"), "--admin", f"127.0.0.1:{admin}",
            "--outbound", "off", "--access-log", "off",
            "--drain-timeout", f"{drain_timeout:g}", "--workers", str(workers),
            "-f", str(workdir / "mesh.yaml"),
        ]  # fmt: skip
        serve = procs.start("serve", argv, cpus, cwd=REPO)
        wait_ready(admin, serve)
        time.sleep(0.3 if workers > 1 else 0.0)  # the extra workers' own start
        signalled: list[float] = []

        def sigterm() -> None:
            signalled.append(time.monotonic())
            os.kill(serve.pid, signal.SIGTERM)

        tally = hammer(listen, clients, load_seconds, sigterm)
        code = serve.wait(drain_timeout + 30)
        drain = time.monotonic() - signalled[0]
        complete = upstream_complete(up_port)
    finally:
        procs.stop_all()
    return {
        "workers": workers,
        **asdict(tally),
        "upstream_complete": complete,
        "unanswered": tally.sent - tally.answered,
        "lost": tally.lost,
        "lost_forwarded": max(0, complete - tally.answered_200),
        "drain_s": round(drain, 3),
        "exit": code,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--load-seconds", type=float, default=2.0)
    parser.add_argument("--delay-ms", type=float, default=5.0, help="upstream answer delay")
    parser.add_argument("--drain-timeout", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the runs to this file")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="shadowmesh-drain-") as tmp:
        for workers in [int(w) for w in args.workers.split(",")]:
            for i in range(args.runs):
                workdir = Path(tmp) / f"w{workers}-{i}"
                workdir.mkdir()
                run = one_run(
                    workdir, workers, args.clients, args.load_seconds, args.delay_ms,
                    args.drain_timeout,
                )  # fmt: skip
                runs.append(run)
                print(
                    f"workers={workers} run={i + 1}: sent {run['sent']}, answered "
                    f"{run['answered']}, unanswered {run['unanswered']} (forwarded "
                    f"{run['lost_forwarded']}, retry case {run['retry_case']}, new connection "
                    f"reset {run['reset_new']} or closed {run['closed_new']}, cut {run['cut']}), "
                    f"lost {run['lost']}, upstream "
                    f"{run['upstream_complete']}, drain {run['drain_s']} s "
                    f"(timeout {args.drain_timeout:g}), exit {run['exit']}",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2) + "\n")
    return 0 if all(r["lost"] == 0 and r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
