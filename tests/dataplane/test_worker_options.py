"""``serve --workers 2`` with every inherited option given: the extra worker is started with
each of them, as the first process parsed them, and serves."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from shadowmesh.cli.options import options_of
from shadowmesh.cli.serve import ServeOptions, serve
from tests.support.serve import Served, free_port, mesh_yaml
from tests.support.upstreams import RecordingUpstream


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def parsed(argv: list[str]) -> ServeOptions:
    """The settings of a ``python -m shadowmesh serve ...`` command line."""
    assert argv[1:4] == ["-m", "shadowmesh", "serve"], argv
    return ServeOptions(**serve.make_context("serve", argv[4:]).params)


def test_a_worker_gets_every_inherited_option(
    tmp_path: Path, upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    given = [
        "--workers", "2",
        "--outbound", f"127.0.0.1:{free_port()}",
        "--gateway-bind", "127.0.0.2",
        "--credentials-dir", str(credentials),
        "--workload-labels", "app=sleep,version=v1",
        "--access-log-format", "json",
        "--no-shadow-host-suffix",
        "--shadow-timeout", "2.5",
        "--shadow-max-in-flight", "77",
        "--shadow-max-in-flight-per-endpoint", "9",
        "--shadow-max-body", "4096",
        "--connect-timeout", "0.75",
        "--idle-timeout", "7.5",
        "--request-header-timeout", "3",
        "--stream-idle-timeout", "11",
        "--max-connections", "120",
        "--allow-underscores-in-headers",
        "--redact-query-param", "session",
        "--shadow-strip-header", "cookie",
        "--dns-refresh-min", "1.5",
        "--dns-refresh-max", "30",
        "--otlp-endpoint", f"http://127.0.0.1:{free_port()}",
        "--otlp-sampling", "12.5",
        "--no-otlp-shadow-spans",
        "--drain-timeout", "0.5",
    ]  # fmt: skip
    s = serve(mesh_yaml(v1.port, v2.port), *given)
    first = parsed(cmdline(s.proc.pid))
    out = subprocess.run(
        ["ps", "--ppid", str(s.proc.pid), "-o", "pid=,args="], capture_output=True, text=True
    )
    workers = [int(line.split()[0]) for line in out.stdout.splitlines() if " --worker " in line]
    assert len(workers) == 1
    worker = parsed(cmdline(workers[0]))
    assert worker.worker and not first.worker
    inherited = [f.name for f, cli in options_of(ServeOptions) if cli.inherited]
    defaults = ServeOptions()
    # Every option above is one the first process took, not its default...
    assert [n for n in inherited if getattr(first, n) == getattr(defaults, n)] == ["bind"]
    # ...and the worker has each as the first process has it.
    assert {n: getattr(worker, n) for n in inherited} == {n: getattr(first, n) for n in inherited}
    time.sleep(0.5)  # the worker's own start
    codes = [
        subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: app",
             f"http://127.0.0.1:{s.port}/"],
            capture_output=True, text=True, timeout=10,
        ).stdout
        for _ in range(10)
    ]  # fmt: skip
    assert codes == ["200"] * 10
