"""The shop scenario: ``tests/e2e/shop_app.py`` as primary v1, baseline v1b and candidate v2,
each under gunicorn, behind a real ``shadowmesh serve``, driven by seeded traffic.

``start_shop`` starts the three versions (``candidate_version`` "v1" makes an A/A/A run: the
candidate is the primary's code); ``mesh_yaml`` mirrors to both shadows in the given order;
``drive`` sends the requests, from one client (light load) or many at once (heavy).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shadowmesh.demo import processes

APP_DIR = Path(__file__).resolve().parents[1] / "e2e"
COMPARISON = "shop-v2"


def start_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--no-control-socket",
        "-k",
        "gthread",
        "--threads",
        "16",
        "--pythonpath",
        str(APP_DIR),
        "-b",
        f"127.0.0.1:{port}",
        "shop_app:app",
    ]


@contextlib.contextmanager
def start_shop(log_dir: Path, candidate_version: str = "v2") -> Iterator[dict[str, int]]:
    """{"v1": port, "v1b": port, "v2": port}; the candidate runs ``candidate_version``."""
    started: list[processes.Managed] = []
    ports: dict[str, int] = {}
    try:
        for name, version in (("v1", "v1"), ("v1b", "v1"), ("v2", candidate_version)):
            port = processes.free_port()
            proc = processes.start(
                f"shop-{name}", start_command(port), log_dir, env={"SHOP_VERSION": version}
            )
            started.append(proc)
            processes.wait_http_ok(proc, f"http://127.0.0.1:{port}/health")
            ports[name] = port
        yield ports
    finally:
        for proc in started:
            processes.stop(proc)


def mesh_yaml(ports: dict[str, int], mirrors: tuple[str, str] = ("v2", "v1b"), **spec: Any) -> str:
    entries = "".join(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        f"metadata: {{name: shop-{name}}}\n"
        f"spec: {{address: 127.0.0.1, ports: {{http: {port}}}, "
        f"labels: {{app: shop, version: {name}}}}}\n---\n"
        for name, port in ports.items()
    )
    mirror_lines = "".join(f"    - destination: {{host: shop, subset: {m}}}\n" for m in mirrors)
    extra = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in spec.items())
    return (
        entries
        + """apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: SERVICE_PORT, targetPort: 80}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1b, labels: {version: v1b}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop, subset: v1}
    mirrors:
"""
        + mirror_lines
        + f"""---
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {{name: {COMPARISON}}}
spec:
  host: shop
  primary: {{subset: v1}}
  candidate: {{subset: v2}}
  baseline: {{subset: v1b}}
"""
        + extra
    )


def paths(seed: int, rounds: int) -> list[str]:
    """``rounds`` of one request to each endpoint, seeded: the same run every time."""
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        out += [
            f"/api/skus/SKU-{rng.randint(1, 399):04d}",
            f"/api/skus?page={rng.randint(1, 70)}",
            f"/api/search?q={rng.choice(['blue', 'red', 'widget'])}",
            f"/api/orders/{rng.randint(1, 10_000)}",
            "/api/slow",
        ]
    return out


def drive(port: int, targets: list[str], clients: int = 1, pause: float = 0.0) -> list[int]:
    """Send every target through the proxy, ``clients`` keep-alive connections at once, each
    waiting ``pause`` seconds between its requests; the statuses the clients saw."""
    statuses: list[int] = []
    lock = threading.Lock()
    shares = [targets[i::clients] for i in range(clients)]

    def client(share: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for target in share:
            conn.request("GET", target, headers={"Host": "shop:8000"})
            answer = conn.getresponse()
            answer.read()
            with lock:
                statuses.append(answer.status)
            if pause:
                time.sleep(pause)
        conn.close()

    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return statuses


def report(admin: int, expected: int, timeout: float = 30.0) -> dict[str, Any]:
    """The report once ``expected`` requests are compared or skipped (dropped ones never come)."""
    url = f"http://127.0.0.1:{admin}/comparisons/default/{COMPARISON}"
    deadline = time.monotonic() + timeout
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.loads(r.read())
        settled = answer["compared"] + sum(answer["skipped"].values()) + answer["dropped"]
        if settled >= expected:
            return answer
        time.sleep(0.2)
    return answer


def regressions(answer: dict[str, Any]) -> list[str]:
    out = [
        f"{e['endpoint']} {f['field']}"
        for e in answer["endpoints"]
        for f in e["fields"]
        if f["verdict"] == "regression"
    ]
    out += [f"{e['endpoint']} latency" for e in answer["endpoints"] if e["latency"]["flagged"]]
    return out
