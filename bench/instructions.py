"""``python -m bench.instructions``: the proxy's instructions per request, counted by callgrind.

Requests a second on a shared 2-core machine move by 10 to 20% between runs of the same code
(README, Performance), more than most changes to the hot path. Instructions do not: valgrind's
callgrind counts what the proxy's process executes in user space, whatever else the machine
does, so two commits can be compared one after the other. What it leaves out: the kernel
(about half a request's time here), cache misses and memory effects (a reference cycle per
request cost pass-through a fifth of its requests a second but 3% of its instructions).

Each scenario starts the upstream nginx (``bench.nginx.upstream_config``) and ``shadowmesh serve``
under ``valgrind --tool=callgrind --instr-atstart=no`` with the mesh of ``bench.mesh``, warms it
up, switches instrumentation on (``callgrind_control -i on``), sends exactly ``--requests`` GETs
over ``--connections`` keep-alive connections (one in flight on each), switches it off, dumps,
and divides the proxy process's total by the number of requests.

    .venv/bin/python -m bench.instructions                 # passthrough, mirror100, dead-shadow
    .venv/bin/python -m bench.instructions --scenarios passthrough --requests 5000

It needs valgrind (Debian's package; installed with apt-get when missing, as root) and nginx.
A run of the three scenarios takes about three minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import nginx
from bench.client import read_answer
from bench.mesh import HOST, MeshConfig, mesh_yaml
from bench.procs import Procs, free_port, wait_for_port

REQUEST = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: bench\r\n\r\n".encode()


@dataclass(frozen=True)
class Case:
    name: str
    mirror_percent: float
    shadow: str  # "fast": the nginx v2; "dead": a port nothing listens on
    access_log: bool = True


CASES = {
    c.name: c
    for c in (
        Case("passthrough", 0.0, "fast"),
        Case("passthrough-nolog", 0.0, "fast", access_log=False),
        Case("mirror100", 100.0, "fast"),
        Case("dead-shadow", 100.0, "dead"),
    )
}


def send(port: int, requests: int, connections: int) -> None:
    """Exactly ``requests`` GETs, round robin over keep-alive connections, each answered 200."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    try:
        done = 0
        while done < requests:
            batch = socks[: min(connections, requests - done)]
            for sock in batch:
                sock.sendall(REQUEST)
            for sock in batch:
                head = read_answer(sock)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"the proxy answered {head.splitlines()[0]!r}")
            done += len(batch)
    finally:
        for sock in socks:
            sock.close()


def _callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _total(out: Path) -> int:
    """The instructions of the dump taken while instrumented (the first file has none)."""
    total = 0
    for dump in out.parent.glob(out.name + "*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


def measure(case: Case, requests: int, connections: int, tmp: Path) -> float:
    procs = Procs(tmp)
    try:
        v1 = free_port()
        v2 = free_port()
        upstream_ports = [v1] if case.shadow == "dead" else [v1, v2]
        nginx.start(
            procs,
            "upstreams",
            tmp / "nginx",
            nginx.upstream_config(tmp / "nginx", upstream_ports),
            [0],
            v1,
        )
        listen = free_port()
        cfg = MeshConfig(listen, v1, v2, case.mirror_percent, case.access_log, 1, 1.0)
        config = tmp / "mesh.yaml"
        config.write_text(mesh_yaml(cfg))
        out = tmp / "callgrind.out"
        argv = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable, "-m", "shadowmesh", "serve",
            "--state", str(tmp / "state"),
            "--admin", f"127.0.0.1:{free_port()}",
            "--outbound", "off",
            "--access-log", str(tmp / "access.log") if case.access_log else "off",
            "--shadow-timeout", "1",
            "-f", str(config),
        ]  # fmt: skip
        proxy = procs.start("shadowmesh", argv, [1])
        wait_for_port(listen, proxy, timeout=180.0)
        send(listen, 300, connections)  # warm: pools, caches, the first shadows
        time.sleep(1.0)
        _callgrind_control("-i", "on", str(proxy.pid))
        send(listen, requests, connections)
        time.sleep(1.5)  # the shadows' answers, a sweep of the timeouts
        _callgrind_control("-i", "off", str(proxy.pid))
        _callgrind_control("-d", str(proxy.pid))
        time.sleep(1.0)
        return _total(out) / requests
    finally:
        procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="passthrough,mirror100,dead-shadow")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; known: {', '.join(CASES)}")
    for tool in ("valgrind", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install -y valgrind nginx", file=sys.stderr)
            sys.exit(1)
    results: dict[str, float] = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
            results[name] = measure(CASES[name], args.requests, args.connections, Path(tmp))
        if not args.json:
            print(f"{name:20} {results[name]:10,.0f} instructions per request", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
