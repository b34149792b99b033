"""End-to-end fixtures: real httpbin under gunicorn, real ``shadowmesh serve``, real curl.

Every process runs on ports the kernel gave us, is started by the fixture and stopped by its PID
at teardown. The scenario's example files are applied with their ports rewritten to those.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from shadowmesh.demo import processes
from shadowmesh.demo.accesslog import Entry, WorkloadLog
from shadowmesh.demo.processes import LOCALHOST, Managed

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "httpbin"
# The ports the example files name, rewritten to free ones for each test.
EXAMPLE_V1_PORT, EXAMPLE_V2_PORT, EXAMPLE_SERVICE_PORT = 18081, 18082, 8000
# Copies to the shadow are fire and forget: they may land a little after the primary answered.
SHADOW_WAIT = 5.0
QUIET = 0.4


# --- workloads -----------------------------------------------------------------------------------


@dataclass
class Httpbin:
    """One httpbin under gunicorn, and what it logged (Host and x-request-id included)."""

    name: str
    port: int
    proc: Managed
    log: WorkloadLog

    def freeze(self) -> None:
        """SIGSTOP the gunicorn master and its workers: connections queue, nothing answers."""
        for pid in (self.proc.pid, *_children(self.proc.pid)):
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in (self.proc.pid, *_children(self.proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def settled(self, mark: int = 0, at_least: int = 0) -> list[Entry]:
        """What it logged past mark, once at_least lines came and then no more for a while."""
        if at_least:
            self.log.wait_since(mark, at_least, SHADOW_WAIT)
        return self.log.settle_since(mark, quiet=QUIET, timeout=SHADOW_WAIT)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return found


@dataclass
class Workloads:
    v1: Httpbin
    v2: Httpbin


@pytest.fixture
def workloads(tmp_path: Path) -> Iterator[Workloads]:
    started: list[Httpbin] = []
    try:
        for name in ("httpbin-v1", "httpbin-v2"):
            port = processes.free_port()
            proc = processes.start_httpbin(name, port, tmp_path / "logs")
            started.append(Httpbin(name, port, proc, WorkloadLog(proc.stdout_path)))
        for h in started:
            processes.wait_http_ok(h.proc, f"http://{LOCALHOST}:{h.port}/status/200")
        # gunicorn logs a request after answering it: wait for the readiness probe's line, so
        # tests count from a log that has nothing of theirs yet.
        for h in started:
            h.log = _LogFrom(h.log.path, len(h.log.wait_since(0, 1, SHADOW_WAIT)))
        yield Workloads(*started)
    finally:
        for h in started:
            h.thaw()
            processes.stop(h.proc)


class _LogFrom(WorkloadLog):
    """A workload log that starts after the lines it had when created."""

    def __init__(self, path: Path, skip: int) -> None:
        super().__init__(path)
        self._skip = skip

    def entries(self) -> list[Entry]:
        return super().entries()[self._skip :]


# --- the proxy -----------------------------------------------------------------------------------

_ACCESS_LINE = re.compile(
    r'^\[(?P<start_time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" '
    r"(?P<status>\d{3}) (?P<response_flags>\S+) (?P<bytes_received>\d+) (?P<bytes_sent>\d+) "
    r'(?P<duration_ms>\d+) "(?P<x_forwarded_for>[^"]*)" "(?P<user_agent>[^"]*)" '
    r'"(?P<request_id>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)" '
    r"(?P<upstream_cluster>\S+) (?P<shadow>-|shadow)$"
)


@dataclass(frozen=True)
class AccessRecord:
    """One line of shadowmesh's access log (text format), the fields the tests look at."""

    line: str
    method: str
    path: str
    status: int
    response_flags: str
    request_id: str
    authority: str
    upstream_host: str
    upstream_cluster: str
    shadow: bool


def parse_access_line(line: str) -> AccessRecord:
    m = _ACCESS_LINE.match(line)
    assert m is not None, f"not an access log line: {line!r}"
    return AccessRecord(
        line=line,
        method=m["method"],
        path=m["path"],
        status=int(m["status"]),
        response_flags=m["response_flags"],
        request_id=m["request_id"],
        authority=m["authority"],
        upstream_host=m["upstream_host"],
        upstream_cluster=m["upstream_cluster"],
        shadow=m["shadow"] == "shadow",
    )


class Proxy:
    """``shadowmesh serve`` as a subprocess, with its own state dir, ports and access log."""

    def __init__(self, workdir: Path, extra_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.access_log = workdir / "access.log"
        self.admin_port = processes.free_port()
        self.outbound_port = processes.free_port()
        self.extra_args = list(extra_args)
        self.proc: Managed | None = None
        self._runs = 0

    @property
    def admin(self) -> str:
        return f"{LOCALHOST}:{self.admin_port}"

    def start(self) -> None:
        self._runs += 1
        argv = processes.serve_argv(
            self.state_dir, self.admin_port, self.outbound_port, self.access_log, self.extra_args
        )
        self.proc = processes.start(f"shadowmesh-{self._runs}", argv, self.workdir)
        processes.wait_http_ok(self.proc, f"http://{self.admin}/ready")

    def stop(self) -> int | None:
        assert self.proc is not None
        code = processes.stop(self.proc)
        self.proc = None
        return code

    def stderr(self) -> str:
        return "" if self.proc is None else self.proc.stderr_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        try:
            text = self.access_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        # A line still being written has no newline yet.
        return [line for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]

    def records(self) -> list[AccessRecord]:
        return [parse_access_line(line) for line in self.lines()]

    def json_records(self) -> list[dict[str, Any]]:
        """The access log written with --access-log-format json."""
        return [json.loads(line) for line in self.lines()]

    def settle(self, count: int) -> None:
        """Wait until the access log has count lines (a shadow's comes when the shadow ends)."""
        deadline = time.monotonic() + SHADOW_WAIT
        while len(self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(QUIET)

    def records_settled(self, count: int) -> list[AccessRecord]:
        self.settle(count)
        return self.records()


@pytest.fixture
def proxy_args() -> list[str]:
    """Extra ``serve`` options; a test overrides it with parametrize("proxy_args", [...])."""
    return []


@pytest.fixture
def proxy(tmp_path: Path, proxy_args: list[str]) -> Iterator[Proxy]:
    p = Proxy(tmp_path / "proxy", proxy_args)
    p.workdir.mkdir()
    p.start()
    try:
        yield p
    finally:
        if p.proc is not None:
            p.stop()


# --- the client side: the CLI and curl -----------------------------------------------------------


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()


def _client_env() -> dict[str, str]:
    # A proxy from the environment would take our requests somewhere else.
    drop = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {k: v for k, v in os.environ.items() if k.lower() not in drop}


@dataclass(frozen=True)
class Curled:
    status: int
    seconds: float


class Mesh:
    """The scenario on free ports: two workloads, the proxy, and the ways to talk to them."""

    def __init__(self, tmp: Path, workloads: Workloads, proxy: Proxy) -> None:
        self.tmp = tmp
        self.v1 = workloads.v1
        self.v2 = workloads.v2
        self.proxy = proxy
        self.service_port = processes.free_port()
        self.ports = {
            EXAMPLE_V1_PORT: self.v1.port,
            EXAMPLE_V2_PORT: self.v2.port,
            EXAMPLE_SERVICE_PORT: self.service_port,
        }

    @property
    def authority(self) -> str:
        return f"httpbin:{self.service_port}"

    @property
    def shadow_authority(self) -> str:
        return f"httpbin-shadow:{self.service_port}"

    @property
    def cluster_v2(self) -> str:
        return f"outbound|{self.service_port}|v2|httpbin.default.svc.cluster.local"

    # files

    def example(self, name: str) -> Path:
        """The example file, its ports rewritten to this mesh's, in tmp under the same name."""
        docs = list(yaml.safe_load_all((EXAMPLES / name).read_text()))
        for doc in docs:
            _rewrite_ports(doc, self.ports)
        path = self.tmp / name
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    # the CLI

    def cli(self, *args: str, stdin: str | None = None) -> Run:
        env = {**_client_env(), "SHADOWMESH_ADMIN": self.proxy.admin}
        proc = subprocess.run(
            [sys.executable, "-m", "shadowmesh", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def apply(self, *paths: Path) -> Run:
        """Apply each file; fail the test if one is refused."""
        result = Run(0, "", "")
        for path in paths:
            run = self.cli("apply", "-f", str(path))
            assert run.code == 0, f"apply -f {path.name} failed:\n{run.stderr}"
            result = Run(0, result.stdout + run.stdout, result.stderr + run.stderr)
        return result

    def apply_examples(self, *names: str) -> Run:
        return self.apply(*(self.example(n) for n in names))

    # curl

    def curl(
        self,
        path: str = "/headers",
        count: int = 1,
        *,
        via: str = "outbound",
        args: Sequence[str] = (),
    ) -> list[Curled]:
        """Send count requests in one curl run (one keep-alive connection); status and time each.

        via "outbound": through the forward proxy to http://httpbin:PORT; "direct": at the
        Service's listener, 127.0.0.1:PORT, with Host httpbin:PORT.
        """
        argv = self._curl_base(via) + ["-w", "%{http_code} %{time_total}\n", *args]
        for _ in range(count):
            argv += ["-o", os.devnull, self._url(path, via)]
        out = _run_curl(argv)
        answers = [Curled(int(s), float(t)) for s, t in (line.split() for line in out.splitlines())]
        assert len(answers) == count, out
        return answers

    def curl_body(
        self,
        path: str,
        *,
        via: str = "outbound",
        args: Sequence[str] = (),
        authority: str | None = None,
    ) -> str:
        """One request's answer body (or what args make curl print)."""
        return _run_curl(self._curl_base(via) + [*args, self._url(path, via, authority)])

    def statuses(
        self, path: str = "/headers", count: int = 1, *, via: str = "outbound"
    ) -> list[int]:
        return [c.status for c in self.curl(path, count, via=via)]

    def _curl_base(self, via: str) -> list[str]:
        base = ["curl", "-s", "--max-time", "10"]
        if via == "outbound":
            return base + ["-x", f"http://{LOCALHOST}:{self.proxy.outbound_port}"]
        assert via == "direct", via
        return base + ["--noproxy", "*", "-H", f"Host: {self.authority}"]

    def _url(self, path: str, via: str, authority: str | None = None) -> str:
        if via == "outbound":
            return f"http://{authority or self.authority}{path}"
        return f"http://{LOCALHOST}:{self.service_port}{path}"


def _run_curl(argv: list[str]) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=_client_env(), timeout=120, check=False
    )
    # curl's exit code is not checked: a timed-out request shows as status 000, which the
    # tests see.
    return proc.stdout


def _rewrite_ports(doc: dict[str, Any], ports: dict[int, int]) -> None:
    spec = doc.get("spec", {})
    if doc["kind"] == "WorkloadEntry":
        spec["ports"] = {name: ports.get(p, p) for name, p in spec["ports"].items()}
    elif doc["kind"] == "Service":
        for port in spec["ports"]:
            port["port"] = ports.get(port["port"], port["port"])


@pytest.fixture
def mesh(tmp_path: Path, workloads: Workloads, proxy: Proxy) -> Mesh:
    files = tmp_path / "files"
    files.mkdir()
    return Mesh(files, workloads, proxy)


@pytest.fixture(autouse=True, scope="session")
def _curl_available() -> None:
    if shutil.which("curl") is None:
        pytest.fail("the end-to-end tests drive real curl: install it (apt-get install curl)")
