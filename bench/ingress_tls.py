"""What terminating TLS at the ingress costs: a Gateway's HTTPS server against its HTTP one.

    .venv/bin/python -m bench.ingress_tls                    # 3 rounds of 3 s, 50 connections
    .venv/bin/python -m bench.ingress_tls --rounds 5 --duration 5 --json out.json

One ``shadowmesh serve`` with one Gateway of two servers, HTTP and HTTPS (``mode: SIMPLE``, a
self-signed certificate made with the openssl command), both routed by one VirtualService to
a tiny nginx upstream. wrk (keep-alive, so a handshake per connection, not per request) loads
each port in turn, round by round; the proxy alone on CPU 0, wrk and nginx on CPU 1, as in
``python -m bench``. Printed: requests per second and p99 of each, and HTTPS over HTTP.

Everything is on 127.0.0.1; the processes it starts are stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import nginx, wrk
from bench.procs import Procs, free_port

HOST = "app"


def config(http_port: int, https_port: int, upstream: int, cert: Path, key: Path) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {HOST}-v1}}
spec: {{address: 127.0.0.1, ports: {{http: {upstream}}}, labels: {{app: {HOST}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {HOST}}}
spec:
  hosts: [{HOST}.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: {HOST}}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  servers:
  - port: {{number: {http_port}, name: http, protocol: HTTP}}
    hosts: ["*"]
  - port: {{number: {https_port}, name: https, protocol: HTTPS}}
    tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {HOST}}}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - route: [{{destination: {{host: {HOST}.internal}}}}]
"""


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
            "-addext", f"subjectAltName=DNS:{HOST}", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def wait_ready(admin: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"shadowmesh serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("shadowmesh serve not ready")


def load(url: str, connections: int, seconds: int) -> wrk.WrkResult:
    argv = [
        "taskset", "-c", "1", "wrk", "--latency", "-t1", f"-c{connections}", f"-d{seconds}s",
        "--timeout=5s", "-H", f"Host: {HOST}", url,
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 40)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr.strip()}")
    return wrk.parse(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        root = Path(tmp)
        procs = Procs(root)
        try:
            results = run(procs, root, args)
        finally:
            procs.stop_all()
    print(json.dumps(results, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def run(procs: Procs, root: Path, args: argparse.Namespace) -> dict[str, object]:
    upstream = free_port()
    nginx.start(
        procs,
        "upstream",
        root / "nginx",
        nginx.upstream_config(root / "nginx", [upstream]),
        [1],
        upstream,
    )
    cert, key = self_signed(root)
    http_port, https_port, admin = free_port(), free_port(), free_port()
    mesh = root / "mesh.yaml"
    mesh.write_text(config(http_port, https_port, upstream, cert, key))
    argv = [
        sys.executable, "-m", "shadowmesh", "serve", "--state", str(root / "state"),
        "--admin", f"127.0.0.1:{admin}", "--outbound", "off", "--access-log", "off",
        "--gateway-bind", "127.0.0.1", "-f", str(mesh),
    ]  # fmt: skip
    proc = procs.start("shadowmesh", argv, [0])
    wait_ready(admin, proc)
    urls = {"http": f"http://127.0.0.1:{http_port}/", "https": f"https://127.0.0.1:{https_port}/"}
    for url in urls.values():  # warm-up: connections, the compiled paths, the TLS session
        load(url, args.connections, 1)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():
            result = load(url, args.connections, args.duration)
            if result.errors:
                raise RuntimeError(f"{name}: {result.errors} errors")
            rounds[name].append({"rps": result.rps, "p99_ms": result.p99_ms})
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p99_ms")}
        for name, runs in rounds.items()
    }
    return {
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": rounds,
        "median": medians,
        "https_over_http": medians["https"]["rps"] / medians["http"]["rps"],
    }


if __name__ == "__main__":
    main()
