"""``serve --workers N``: several processes on one port, one config."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from tests.support.serve import Served, mesh_yaml
from tests.support.upstreams import RecordingUpstream


def workers_of(pid: int) -> list[int]:
    """The extra data-plane processes of a serve (not its comparison-analysis process)."""
    out = subprocess.run(
        ["ps", "--ppid", str(pid), "-o", "pid=,args="], capture_output=True, text=True
    )
    return [int(line.split()[0]) for line in out.stdout.splitlines() if " --worker " in line]


def fresh_connection_gets(port: int, count: int) -> list[str]:
    """Each request on its own connection, so the kernel spreads them over the workers."""
    codes = []
    for _ in range(count):
        r = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: app",
                f"http://127.0.0.1:{port}/",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        codes.append(r.stdout)
    return codes


def test_workers_share_the_port_and_follow_config_changes(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(mesh_yaml(v1.port, v2.port), "--workers", "3")
    workers = workers_of(s.proc.pid)
    assert len(workers) == 2
    time.sleep(0.5)  # the workers' own start
    assert fresh_connection_gets(s.port, 30) == ["200"] * 30
    assert len(v1.requests) == 30 and v2.requests == []
    env = {**os.environ, "SHADOWMESH_ADMIN": f"127.0.0.1:{s.admin}"}
    subprocess.run(
        [sys.executable, "-m", "shadowmesh", "delete", "vs", "app"],
        env=env,
        check=True,
        capture_output=True,
    )
    time.sleep(0.5)  # a worker sees a new revision within 0.1 s
    assert fresh_connection_gets(s.port, 40) == ["200"] * 40
    # With the route gone every worker balances over both versions: none kept the old table.
    assert len(v2.requests) > 5 and len(v1.requests) > 30 + 5
    s.stop()
    assert s.proc.returncode == 0
    time.sleep(0.2)
    assert [pid for pid in workers if os.path.exists(f"/proc/{pid}")] == []
