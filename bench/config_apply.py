"""What the serving loop sees while config changes: ``python -m bench.config_apply``.

Starts two tiny upstreams (v1, v2) and ``shadowmesh serve`` with a base config (WorkloadEntries,
a Service, a DestinationRule, one VirtualService), keeps a steady stream of proxied requests
going to 127.0.0.1 from a separate process, and measures, each phase under that load:

1. ``apply`` of N VirtualServices (default 10,000, about 2.4 MB of YAML): how long it took and
   the max and p99 wait of the proxied requests during it;
2. a one-document change (one VirtualService switched from subset v1 to v2), posted to the
   admin API: the time from the POST until a request for its host is answered by v2, and the
   waits; then the same change back with ``shadowmesh apply`` (its own start-up included);
3. the whole file applied again with that one document changed (the usual ``apply -f dir/``);
4. ``/config_dump`` fetched a few times: its time and the waits;
5. a restart with the N stored: time until the first request is routed by the stored config.

Every process is started here, on free ports, and stopped by its PID. Prints one JSON object
(``--json FILE`` also writes it).
"""

from __future__ import annotations

import argparse
import asyncio
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
from pathlib import Path
from typing import Any

from bench.client import read_answer
from bench.mesh import MeshConfig, mesh_yaml

HOST_SUFFIX = "example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- the upstream: answers its own name, keep-alive -------------------------------------------


def run_upstream(name: str, port: int) -> None:
    body = name.encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- the client: a steady stream of requests, each one's wait recorded ------------------------


def run_client(port: int, host: str, interval: float, connections: int) -> None:
    """Until stdin closes: ``connections`` keep-alive connections, one request each every
    ``interval`` seconds (or as soon as the previous answer came, if later). Prints a JSON list
    of [start (CLOCK_MONOTONIC), wait in seconds, ok] on exit."""
    records: list[tuple[float, float, bool]] = []
    stop = threading.Event()
    lock = threading.Lock()
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    def one_connection() -> None:
        sock: socket.socket | None = None
        next_at = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at = max(next_at + interval, time.monotonic())
            start = time.monotonic()
            ok = False
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(request)
                head = read_answer(sock)
                ok = head.startswith(b"HTTP/1.1 200")
            except OSError:
                if sock is not None:
                    sock.close()
                sock = None
            with lock:
                records.append((start, time.monotonic() - start, ok))

    threads = [threading.Thread(target=one_connection, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    sys.stdin.read()
    stop.set()
    for t in threads:
        t.join(35)
    with lock:
        json.dump(records, sys.stdout)


# --- the bench --------------------------------------------------------------------------------


def base_yaml(v1: int, v2: int, port: int) -> str:
    """The bench's usual mesh (bench/mesh.py), without a mirror: the VirtualServices come on top."""
    cfg = MeshConfig(port, v1, v2, mirror_percent=0, access_log=False, workers=1, shadow_timeout=5)
    return mesh_yaml(cfg)


def vs_yaml(i: int, subset: str = "v1") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-{i:05d}}}
spec:
  hosts: [vs-{i:05d}.{HOST_SUFFIX}]
  http:
  - match:
    - uri: {{prefix: /tenant/{i:05d}}}
    route:
    - destination: {{host: app, subset: v2}}
  - route:
    - destination: {{host: app, subset: {subset}}}
"""


def many_yaml(count: int, changed: int | None = None) -> str:
    return "---\n".join(vs_yaml(i, "v2" if i == changed else "v1") for i in range(count))


class Bench:
    def __init__(self, workdir: Path, count: int, rate: float, connections: int) -> None:
        self.workdir = workdir
        self.count = count
        self.rate = rate
        self.connections = connections
        self.procs: list[subprocess.Popen[Any]] = []
        self.v1, self.v2, self.port = free_port(), free_port(), free_port()
        self.admin = free_port()
        self.serve_proc: subprocess.Popen[Any] | None = None
        self.serve_args: list[str] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    def me(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bench.config_apply", *args]

    def start_upstreams(self) -> None:
        for name, port in (("v1", self.v1), ("v2", self.v2)):
            self.start(self.me("upstream", name, str(port)))
        for port in (self.v1, self.v2):
            _wait_port(port)

    def start_serve(self, *extra: str) -> float:
        """Start serve; returns seconds until a request is routed by the stored config."""
        log = open(self.workdir / "serve.log", "ab")  # noqa: SIM115 (the child holds it)
        argv = [
            sys.executable, "-m", "shadowmesh", "serve",
            "--state", str(self.workdir / "state"),
            "--admin", f"127.0.0.1:{self.admin}",
            "--outbound", "off", "--access-log", "off",
            *extra,
        ]  # fmt: skip
        start = time.monotonic()
        self.serve_proc = self.start(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        return start

    def until_answer(self, host: str, body: bytes, start: float, timeout: float = 120) -> float:
        end = start + timeout
        while time.monotonic() < end:
            assert self.serve_proc is not None
            if self.serve_proc.poll() is not None:
                raise RuntimeError("shadowmesh serve exited; see serve.log")
            if _get(self.port, host) == body:
                return time.monotonic() - start
            time.sleep(0.01)
        raise RuntimeError(f"{host} did not answer {body!r} within {timeout}s")

    def apply(self, path: Path) -> float:
        start = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "shadowmesh", "apply", "-f", str(path),
             "--admin", f"127.0.0.1:{self.admin}"],
            capture_output=True, text=True,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"apply failed: {out.stderr[-2000:]}")
        return time.monotonic() - start

    def post_apply(self, path: Path) -> None:
        """The apply as the admin API gets it, without the CLI's own start-up."""
        body = json.dumps({"files": [{"source": path.name, "text": path.read_text()}]})
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin}/apply",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as r:
            r.read()

    def client(self) -> subprocess.Popen[str]:
        interval = self.connections / self.rate
        return self.start(
            self.me("client", str(self.port), "app", str(interval), str(self.connections)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def records(self, client: subprocess.Popen[str]) -> list[tuple[float, float, bool]]:
        out, _ = client.communicate(timeout=60)
        self.procs.remove(client)
        return [(r[0], r[1], r[2]) for r in json.loads(out)]

    def run(self) -> dict[str, Any]:
        self.start_upstreams()
        base = self.workdir / "base.yaml"
        base.write_text(base_yaml(self.v1, self.v2, self.port))
        many = self.workdir / "many.yaml"
        many.write_text(many_yaml(self.count))
        changed = self.count // 2
        many_changed = self.workdir / "many-changed.yaml"
        many_changed.write_text(many_yaml(self.count, changed))
        one_v2, one_v1 = self.workdir / "one-v2.yaml", self.workdir / "one-v1.yaml"
        one_v2.write_text(vs_yaml(changed, "v2"))
        one_v1.write_text(vs_yaml(changed, "v1"))
        changed_host = f"vs-{changed:05d}.{HOST_SUFFIX}"
        result: dict[str, Any] = {
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "virtual_services": self.count,
            "yaml_bytes": many.stat().st_size,
            "request_rate": self.rate,
            "connections": self.connections,
        }
        self.start_serve("-f", str(base))
        self.until_answer("app", b"v1", time.monotonic(), 30)

        client = self.client()
        time.sleep(1.0)
        windows: dict[str, tuple[float, float]] = {}

        t0 = time.monotonic()
        result["apply_seconds"] = self.apply(many)
        windows["apply"] = (t0, time.monotonic())
        time.sleep(0.5)

        t0 = time.monotonic()
        self.post_apply(one_v2)
        result["one_change_api_seconds"] = time.monotonic() - t0
        result["one_change_live_seconds"] = self.until_answer(changed_host, b"v2", t0)
        windows["one_change"] = (t0, time.monotonic())
        time.sleep(0.5)

        t0 = time.monotonic()
        self.apply(one_v1)
        result["one_change_cli_seconds"] = time.monotonic() - t0
        result["one_change_cli_live_seconds"] = self.until_answer(changed_host, b"v1", t0)
        windows["one_change_cli"] = (t0, time.monotonic())
        time.sleep(0.5)

        t0 = time.monotonic()
        self.apply(many_changed)  # the whole file again, with that one document changed
        result["reapply_seconds"] = time.monotonic() - t0
        result["reapply_live_seconds"] = self.until_answer(changed_host, b"v2", t0)
        windows["reapply"] = (t0, time.monotonic())
        time.sleep(0.5)

        dumps = []
        t0 = time.monotonic()
        for _ in range(3):
            start = time.monotonic()
            size = len(_admin_get(self.admin, "/config_dump"))
            dumps.append(time.monotonic() - start)
        windows["config_dump"] = (t0, time.monotonic())
        result["config_dump_seconds"] = max(dumps)
        result["config_dump_bytes"] = size
        time.sleep(0.5)
        records = self.records(client)

        result["baseline"] = _waits(records, records[0][0], windows["apply"][0])
        for name, (start, end) in windows.items():
            result[name] = _waits(records, start, end)

        assert self.serve_proc is not None
        self.stop(self.serve_proc)
        t0 = self.start_serve()
        result["startup_live_seconds"] = self.until_answer(changed_host, b"v2", t0)
        # CPU seconds the start took: on a shared machine, what the wall clock depends on.
        result["startup_cpu_seconds"] = _cpu_seconds(self.serve_proc.pid)
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        result["cpus"] = os.cpu_count()
        return result


def _waits(records: list[tuple[float, float, bool]], start: float, end: float) -> dict[str, Any]:
    # A request that was waiting during the window counts, whenever it started.
    inside = [r for r in records if r[0] < end and r[0] + r[1] > start]
    waits = sorted(r[1] for r in inside)
    if not waits:
        return {"requests": 0}
    return {
        "requests": len(waits),
        "failed": sum(1 for r in inside if not r[2]),
        "max_ms": round(waits[-1] * 1000, 1),
        "p99_ms": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000, 1),
        "p50_ms": round(waits[len(waits) // 2] * 1000, 1),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def _get(port: int, host: str) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return body if head.startswith(b"HTTP/1.1 200") else None


def _admin_get(admin: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=120) as r:
        body: bytes = r.read()
        return body


def _wait_port(port: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "upstream":
        run_upstream(args[1], int(args[2]))
        return
    if args and args[0] == "client":
        run_client(int(args[1]), args[2], float(args[3]), int(args[4]))
        return
    p = argparse.ArgumentParser(prog="python -m bench.config_apply", description=__doc__)
    p.add_argument("--count", type=int, default=10_000, help="VirtualServices applied")
    p.add_argument("--rate", type=float, default=200.0, help="proxied requests a second")
    p.add_argument("--connections", type=int, default=4, help="client connections")
    p.add_argument("--json", type=Path, help="also write the result here")
    options = p.parse_args(args)
    with tempfile.TemporaryDirectory(prefix="shadowmesh-config-bench-") as tmp:
        bench = Bench(Path(tmp), options.count, options.rate, options.connections)
        try:
            result = bench.run()
        finally:
            bench.stop_all()
    text = json.dumps(result, indent=2)
    print(text)
    if options.json is not None:
        options.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
