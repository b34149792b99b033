"""``serve --workload-labels``: through real sockets, a route with ``sourceLabels`` takes the
traffic of the proxy whose labels it selects, and of no other (it used to take everyone's)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable

from tests.support.serve import Served, mesh_yaml
from tests.support.upstreams import RecordingUpstream

SLEEP_TO_V2 = """\
  - match:
    - sourceLabels: {app: sleep, version: v1}
    route: [{destination: {host: app, subset: v2}}]
"""


def config(v1: int, v2: int) -> str:
    text = mesh_yaml(v1, v2)
    return text.replace("  hosts: [app]\n  http:\n", "  hosts: [app]\n  http:\n" + SLEEP_TO_V2)


def gets(port: int, count: int) -> list[str]:
    return [
        subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: app",
             f"http://127.0.0.1:{port}/{i}"],
            capture_output=True, text=True, timeout=10,
        ).stdout
        for i in range(count)
    ]  # fmt: skip


def test_only_the_selected_workload_s_proxy_takes_the_source_labels_route(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    sleep = serve(config(v1.port, v2.port), "--workload-labels", "app=sleep,version=v1,team=a")
    assert gets(sleep.port, 5) == ["200"] * 5
    assert (len(v1.requests), len(v2.requests)) == (0, 5)
    with urllib.request.urlopen(f"http://127.0.0.1:{sleep.admin}/config_dump", timeout=5) as r:
        dump = json.loads(r.read())
    assert dump["node"]["labels"] == {"app": "sleep", "version": "v1", "team": "a"}
    other = serve(config(v1.port, v2.port), "--workload-labels", "app=sleep,version=v2")
    assert gets(other.port, 5) == ["200"] * 5
    nobody = serve(config(v1.port, v2.port))  # no labels: serve's default
    assert gets(nobody.port, 5) == ["200"] * 5
    assert (len(v1.requests), len(v2.requests)) == (10, 5)
