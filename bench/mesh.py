"""shadowmesh under test: the Istio YAML equivalent to the peer's nginx config, and the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Procs, free_port

HOST = "app"


@dataclass(frozen=True)
class MeshConfig:
    listen: int
    v1: int
    v2: int
    mirror_percent: float  # 0: no mirror
    access_log: bool
    workers: int
    shadow_timeout: float
    compare: bool = False  # a Comparison of v1 (primary) and v2 (candidate), every request


def mesh_yaml(cfg: MeshConfig) -> str:
    """Two WorkloadEntries, a Service, subsets v1/v2, and a route to v1 mirroring to v2."""
    mirror = ""
    if cfg.mirror_percent:
        mirror = (
            f"    mirror: {{host: {HOST}, subset: v2}}\n"
            f"    mirrorPercentage: {{value: {cfg.mirror_percent:g}}}\n"
        )
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {HOST}-v1}}
spec: {{address: 127.0.0.1, ports: {{http: {cfg.v1}}}, labels: {{app: {HOST}, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {HOST}-v2}}
spec: {{address: 127.0.0.1, ports: {{http: {cfg.v2}}}, labels: {{app: {HOST}, version: v2}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {HOST}}}
spec:
  selector: {{app: {HOST}}}
  ports: [{{name: http, port: {cfg.listen}, targetPort: 80}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {HOST}}}
spec:
  host: {HOST}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {HOST}}}
spec:
  hosts: [{HOST}]
  http:
  - route:
    - destination: {{host: {HOST}, subset: v1}}
{mirror}{_comparison(cfg)}"""


def _comparison(cfg: MeshConfig) -> str:
    if not cfg.compare:
        return ""
    return f"""---
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {{name: {HOST}-v2}}
spec:
  host: {HOST}
  primary: {{subset: v1}}
  candidate: {{subset: v2}}
  sample: {{percentage: 100}}
"""


class Mesh:
    """A running ``shadowmesh serve``: its process, admin port, and /stats."""

    def __init__(self, procs: Procs, prefix: Path, cfg: MeshConfig, cpus: Sequence[int]) -> None:
        prefix.mkdir(parents=True, exist_ok=True)
        self.admin = free_port()
        config = prefix / "mesh.yaml"
        config.write_text(mesh_yaml(cfg))
        log = str(prefix / "access.log") if cfg.access_log else "off"
        argv = [
            sys.executable, "-m", "shadowmesh", "serve",
            "--state", str(prefix / "state"),
            "--admin", f"127.0.0.1:{self.admin}",
            "--outbound", "off",
            "--access-log", log,
            "--shadow-timeout", f"{cfg.shadow_timeout:g}",
            "--drain-timeout", "1",
            "-f", str(config),
        ]  # fmt: skip
        if cfg.workers > 1:
            # Only when asked: a one-worker run must work with a shadowmesh that lacks it.
            argv += ["--workers", str(cfg.workers)]
        self.proc = procs.start("shadowmesh", argv, cpus)
        self._wait_ready()

    def _get(self, path: str) -> bytes:
        url = f"http://127.0.0.1:{self.admin}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            body: bytes = r.read()
            return body

    def _wait_ready(self, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"shadowmesh serve exited with {self.proc.returncode}")
            try:
                self._get("/ready")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"shadowmesh serve not ready after {timeout}s")

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self._get("/stats"))
        return data


def _ask_python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter of this venv, as the proxy would import it."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ
    )
    return out.stdout.strip() or "unknown"


def version() -> str:
    return _ask_python("import importlib.metadata as m; print(m.version('shadowmesh'))")


def hot_path() -> str:
    """``compiled (mypyc)`` or ``pure Python (why)``, as the proxy under test will run: pure
    Python serves about half the requests a second, so a figure means little without it."""
    return _ask_python("import shadowmesh; print(shadowmesh.hot_path())")
