"""Issue 5 end to end: live traffic through the proxy, compared, reported.

httpbin v1 is the primary and (as v1b) the baseline; the candidate v2 renames a JSON field on
/json and is 30 ms slower there, and answers 500 on /get. The report must flag those, and must
not flag /uuid (a new value on every call: noise) nor the endpoints where v2 is the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shadowmesh.demo import processes
from tests.support.serve import Served

HERE = Path(__file__).resolve().parent
ENDPOINTS = ["/json", "/get", "/uuid", "/user-agent"]
ROUNDS = 40


def mesh(v1: int, v1b: int, v2: int) -> str:
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
        + """apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: SERVICE_PORT, targetPort: 80}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1b, labels: {version: v1b}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin, subset: v1}
    mirrors:
    - destination: {host: httpbin, subset: v2}
    - destination: {host: httpbin, subset: v1b}
---
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {name: httpbin-v2}
spec:
  host: httpbin
  primary: {subset: v1}
  candidate: {subset: v2}
  baseline: {subset: v1b}
"""
    )


@pytest.fixture
def versions(tmp_path: Path) -> Iterator[dict[str, int]]:
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
                str(HERE),
                "-b",
                f"127.0.0.1:{port}",
                app,
            ]
            proc = processes.start(f"httpbin-{name}", argv, tmp_path / "logs")
            started.append(proc)
            processes.wait_http_ok(proc, f"http://127.0.0.1:{port}/status/200")
            ports[name] = port
        yield ports
    finally:
        for proc in started:
            processes.stop(proc)


@pytest.mark.e2e
def test_the_report_flags_what_differs_and_only_that(
    versions: dict[str, int], serve: Callable[..., Served], tmp_path: Path
) -> None:
    s = serve(mesh(versions["v1"], versions["v1b"], versions["v2"]), "--shadow-timeout", "10")
    urls = [f"http://127.0.0.1:{s.port}{e}" for _ in range(ROUNDS) for e in ENDPOINTS]
    args = [a for u in urls for a in ("-o", "/dev/null", u)]
    r = subprocess.run(
        ["curl", "-sS", "-H", "Host: httpbin:8000", "-w", "%{http_code}\n", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The client only ever sees v1: /get is 200 for it, whatever the candidate answered.
    assert r.stdout.split() == ["200"] * len(urls)
    report = wait_for_report(s.admin, len(urls))
    endpoints = {e["endpoint"]: e for e in report["endpoints"]}
    flagged = {
        (e["endpoint"], f["field"])
        for e in report["endpoints"]
        for f in e["fields"]
        if f["verdict"] == "regression"
    }
    print("regressions:", sorted(flagged))
    print("latency flagged:", {k: v["latency"]["flagged"] for k, v in endpoints.items()})
    assert ("GET /json", "body.slideshow.author") in flagged
    assert ("GET /json", "body.slideshow.writer") in flagged
    assert ("GET /get", "status") in flagged
    assert endpoints["GET /json"]["latency"]["flagged"] is True
    # Noise and sameness are not flagged.
    assert not [f for f in flagged if f[0] in ("GET /uuid", "GET /user-agent")]
    assert endpoints["GET /uuid"]["latency"]["flagged"] is False
    assert endpoints["GET /user-agent"]["differing"] == 0
    # The CI gate.
    env = {**os.environ, "SHADOWMESH_ADMIN": f"127.0.0.1:{s.admin}"}
    gate = subprocess.run(
        [sys.executable, "-m", "shadowmesh", "diff", "httpbin-v2", "--fail-on", "regression"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert gate.returncode == 1, gate.stderr
    assert "body.slideshow.writer" in gate.stdout


def wait_for_report(admin: int, expected: int) -> dict:  # type: ignore[type-arg]
    url = f"http://127.0.0.1:{admin}/comparisons/default/httpbin-v2"
    deadline = time.monotonic() + 30
    report: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as answer:
            report = json.loads(answer.read())
        if report.get("compared", 0) >= expected:
            return report
        time.sleep(0.2)
    raise AssertionError(f"only {report.get('compared')} of {expected} compared: {report}")
