"""Fixtures: a real ``shadowmesh serve`` in front of recording upstreams, from generated YAML."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.upstreams import RecordingUpstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mesh_yaml(
    v1: int,
    v2: int,
    mirror: str = "",
    timeout: str = "",
) -> str:
    """The seed scenario's resources with these ports; ``mirror`` is extra route YAML.

    The Service port is left as ``SERVICE_PORT``: ``Served`` picks a free one.
    """
    return f"""
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
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  selector: {{app: app}}
  ports: [{{name: http, port: SERVICE_PORT, targetPort: 80}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app}}
spec:
  host: app
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app}}
spec:
  hosts: [app]
  http:
  - route:
    - destination: {{host: app, subset: v1}}
{mirror}{timeout}
"""


class Served:
    def __init__(self, tmp: Path, config: str, *args: str) -> None:
        self.port = free_port()
        self.admin = free_port()
        self.log = tmp / "access.log"
        cfg = tmp / "mesh.yaml"
        cfg.write_text(config.replace("SERVICE_PORT", str(self.port)))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shadowmesh",
                "serve",
                "--state",
                str(tmp / "state"),
                "--admin",
                f"127.0.0.1:{self.admin}",
                "--outbound",
                "off",
                "--access-log",
                str(self.log),
                "-f",
                str(cfg),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.proc.communicate()[1]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.proc.kill()  # never leave it running behind a failed test
            raise RuntimeError(f"serve did not become ready: {self.proc.communicate()[1]}")

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats", timeout=5) as r:
            data: dict[str, object] = json.loads(r.read())
            return data

    def wait_processes(self, count: int, seconds: float = 15.0) -> list[dict[str, int]]:
        """``/stats``' processes once ``count`` of them report (a worker reports once it
        serves): with ``--workers``, the moment every worker takes connections."""
        end = time.monotonic() + seconds
        while True:
            processes = self.stats().get("processes")
            assert isinstance(processes, list)
            if len(processes) >= count or time.monotonic() > end:
                return processes
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        assert self.proc.stdout and self.proc.stderr
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def upstreams() -> Iterator[list[RecordingUpstream]]:
    made: list[RecordingUpstream] = []
    yield made
    for u in made:
        u.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    started: list[Served] = []

    def start(config: str, *args: str) -> Served:
        workdir = tmp_path / f"serve-{len(started)}"  # a fresh state dir for each
        workdir.mkdir()
        s = Served(workdir, config, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, read until the server closes (or the timeout), return all it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def scrape(served: Served) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    url = f"http://127.0.0.1:{served.admin}/stats/prometheus"
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


# Two endpoints of one Service, on ports {a} and {b}: the retry and DestinationRule tests' mesh.
TWO_ENDPOINTS = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-a}}
spec: {{address: 127.0.0.1, ports: {{http: {a}}}, labels: {{app: app}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-b}}
spec: {{address: 127.0.0.1, ports: {{http: {b}}}, labels: {{app: app}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  selector: {{app: app}}
  ports: [{{name: http, port: SERVICE_PORT, targetPort: 80}}]
"""
