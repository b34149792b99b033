"""Loops: one request through a mirror to the proxy's own port, and one routed to it.

    .venv/bin/python -m bench.loops                       # the installed shadowmesh
    .venv/bin/python -m bench.loops --source /tmp/old     # a source tree, e.g. an older commit:
    git archive COMMIT shadowmesh | tar -x -C /tmp/old    #   (how to make one)

Two counting upstreams (v1, v2) and ``shadowmesh serve`` with Service ``app`` whose subset
``self`` is the Service's own listener. ``mirror`` routes to v1 and mirrors to ``self``;
``route`` routes to ``self`` and mirrors to v2. One POST is sent to each, then for
``--seconds`` the bench counts what v1 and v2 received and samples the proxy's descriptors and
RSS. With the loop guard, v1 (mirror) or v2 (route) gets exactly one request.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.procs import Procs, free_port, rss_mib, wait_for_port

MESH = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-v1}}
spec: {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{app: app, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-v2}}
spec: {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{app: app, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-self}}
spec: {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{app: app, version: self}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  selector: {{app: app}}
  ports: [{{name: http, port: {port}, targetPort: 80}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app}}
spec:
  host: app
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: self, labels: {{version: self}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app}}
spec:
  hosts: [app]
  http:
  - route:
    - destination: {{host: app, subset: {route}}}
    mirror: {{host: app, subset: {mirror}}}
"""

REQUEST = b"POST /post HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Counter:
    """A keep-alive upstream that answers every request 200 and counts them."""

    def __init__(self) -> None:
        self.count = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port: int = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            try:
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                        continue
                    head, buf = buf[:end].lower(), buf[end + 4 :]
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    while len(buf) < length:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = buf[length:]
                    with self.lock:
                        self.count += 1
                    conn.sendall(ANSWER)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def run(name: str, route: str, mirror: str, source: str | None, seconds: float) -> str:
    v1, v2 = Counter(), Counter()
    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="shadowmesh-loops-") as tmp:
        work = Path(tmp)
        mesh = MESH.format(v1=v1.port, v2=v2.port, port=port, route=route, mirror=mirror)
        (work / "mesh.yaml").write_text(mesh)
        if source is None:
            python = [sys.executable, "-m", "shadowmesh"]
        else:
            code = (
                f"import sys, runpy; sys.path.insert(0, {source!r}); "
                "runpy.run_module('shadowmesh', run_name='__main__')"
            )
            python = [sys.executable, "-c", code]
        procs = Procs(work)
        try:
            proxy = procs.start(
                "serve",
                [
                    *python,
                    "serve",
                    "--state",
                    str(work / "state"),
                    "--admin",
                    f"127.0.0.1:{admin}",
                    "--outbound",
                    "off",
                    "--access-log",
                    "off",
                    "-f",
                    str(work / "mesh.yaml"),
                ],
                cpus=range(os.cpu_count() or 1),
            )
            wait_for_port(port, proxy)
            started = time.monotonic()
            peaks = [0.0, 0.0]  # descriptors, RSS in MiB, sampled while the loop runs

            def sample() -> None:
                while time.monotonic() < started + seconds:
                    try:
                        peaks[0] = max(peaks[0], len(os.listdir(f"/proc/{proxy.pid}/fd")))
                    except FileNotFoundError:
                        return
                    peaks[1] = max(peaks[1], rss_mib([proxy.pid]))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            status = b"-"
            with socket.create_connection(("127.0.0.1", port), timeout=seconds) as client:
                client.sendall(REQUEST)
                try:
                    status = client.recv(64).split(b"\r\n", 1)[0] or b"closed"
                except TimeoutError:
                    status = b"no answer"
            answered = time.monotonic() - started
            sampler.join()
            fds, rss = peaks
        finally:
            procs.stop_all()
            v1.close()
            v2.close()
    return (
        f"{name:6} client got {status.decode('latin-1')!r} in {answered:.2f} s; "
        f"in {seconds:g} s v1 got {v1.count}, v2 got {v2.count}; "
        f"proxy peak {int(fds)} descriptors, {rss:.0f} MiB RSS"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", help="run shadowmesh from this source tree")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(run("mirror", "v1", "self", args.source, args.seconds), flush=True)
    print(run("route", "self", "v2", args.source, args.seconds), flush=True)


if __name__ == "__main__":
    main()
