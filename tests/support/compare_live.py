"""The live comparison scenario of issue 5, shared by the report test and the browser test.

httpbin v1 is the primary and (as v1b) the baseline; the candidate v2 (``tests/e2e/
candidate_app.py``) renames a JSON field on /json, reverses its list of slides and is 30 ms
slower there, and answers 500 on /get. Each test starts its own copies: ``start_versions``
gives their ports, ``mesh_yaml`` the resources that mirror httpbin to v2 and v1b and compare
them, ``send_traffic`` the requests.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shadowmesh.demo import processes

CANDIDATE_DIR = Path(__file__).resolve().parents[1] / "e2e"
ENDPOINTS = ["/json", "/get", "/uuid", "/user-agent"]
ROUNDS = 40
COMPARISON = "httpbin-v2"


def mesh_yaml(v1: int, v1b: int, v2: int) -> str:
    """The resources; the Service port is left as ``SERVICE_PORT`` for ``Served`` to fill."""

    def entry(name: str, port: int, version: str) -> str:
        return (
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
            f"metadata: {{name: {name}}}\n"
            f"spec: {{address: 127.0.0.1, ports: {{http: {port}}}, "
            f"labels: {{app: httpbin, version: {version}}}}}\n---\n"
        )

    return (
        entry("httpbin-v1", v1, "v1")
        + entry("httpbin-v1b", v1b, "v1b")
        + entry("httpbin-v2", v2, "v2")
        + f"""apiVersion: v1
kind: Service
metadata: {{name: httpbin}}
spec:
  selector: {{app: httpbin}}
  ports: [{{name: http, port: SERVICE_PORT, targetPort: 80}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin}}
spec:
  host: httpbin
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v1b, labels: {{version: v1b}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {{host: httpbin, subset: v1}}
    mirrors:
    - destination: {{host: httpbin, subset: v2}}
    - destination: {{host: httpbin, subset: v1b}}
---
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {{name: {COMPARISON}}}
spec:
  host: httpbin
  primary: {{subset: v1}}
  candidate: {{subset: v2}}
  baseline: {{subset: v1b}}
  thresholds: {{latencyMinSeconds: 0}}  # one curl run of 160 requests: well under 2 s
"""
    )


@contextlib.contextmanager
def start_versions(log_dir: Path) -> Iterator[dict[str, int]]:
    """httpbin v1, v1b and the candidate v2 under gunicorn: {"v1": port, ...}; stopped after."""
    started: list[processes.Managed] = []
    ports: dict[str, int] = {}
    try:
        for name, app in (
            ("v1", "httpbin:app"),
            ("v1b", "httpbin:app"),
            ("v2", "candidate_app:app"),
        ):
            port = processes.free_port()
            argv = [
                sys.executable,
                "-m",
                "gunicorn",
                "--no-control-socket",
                # Threads, so the candidate's 30 ms on /json does not queue the other requests:
                # the test measures the latency v2 adds, not a backlog of copies.
                "-k",
                "gthread",
                "--threads",
                "16",
                "--pythonpath",
                str(CANDIDATE_DIR),
                "-b",
                f"127.0.0.1:{port}",
                app,
            ]
            proc = processes.start(f"httpbin-{name}", argv, log_dir)
            started.append(proc)
            processes.wait_http_ok(proc, f"http://127.0.0.1:{port}/status/200")
            ports[name] = port
        yield ports
    finally:
        for proc in started:
            processes.stop(proc)


def send_traffic(port: int, rounds: int = ROUNDS) -> list[str]:
    """ROUNDS requests to each endpoint through the proxy, in one curl run; the statuses."""
    urls = [f"http://127.0.0.1:{port}{e}" for _ in range(rounds) for e in ENDPOINTS]
    args = [a for u in urls for a in ("-o", "/dev/null", u)]
    r = subprocess.run(
        ["curl", "-sS", "-H", "Host: httpbin:8000", "-w", "%{http_code}\n", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r.stdout.split()


def wait_for_report(admin: int, expected: int) -> dict[str, Any]:
    """The comparison's report once it has compared ``expected`` requests (30 s at most)."""
    url = f"http://127.0.0.1:{admin}/comparisons/default/{COMPARISON}"
    deadline = time.monotonic() + 30
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as answer:
            report = json.loads(answer.read())
        if report.get("compared", 0) >= expected:
            return report
        time.sleep(0.2)
    raise AssertionError(f"only {report.get('compared')} of {expected} compared: {report}")
