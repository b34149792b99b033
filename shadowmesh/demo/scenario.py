"""The scenario, step by step: what runs, what is applied, what each workload should log.

Each step applies files with the real CLI, sends requests through the outbound proxy, prints
what v1 and v2 logged, and checks it against what the tutorial shows; a step that does not
show it raises ``DemoFailure``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from shadowmesh.demo import processes
from shadowmesh.demo.accesslog import Entry, WorkloadLog
from shadowmesh.demo.processes import LOCALHOST, Managed
from shadowmesh.demo.traffic import Answer, get_via_proxy
from shadowmesh.observe.accesslog import escape
from shadowmesh.observe.redact import redact_headers

# The ports the example files name: the demo applies them unchanged.
V1_PORT = 18081
V2_PORT = 18082
SERVICE_PORT = 8000
SERVICE_AUTHORITY = f"httpbin:{SERVICE_PORT}"
SHADOW_AUTHORITY = f"httpbin-shadow:{SERVICE_PORT}"
DEPRECATION_WARNING = (
    'Warning: using deprecated setting "mirrorPercent", use "mirrorPercentage" instead'
)
INSTALL_HINT = "pip install 'shadowmesh[demo]'"
# How long a copy may take to reach v2 after the primary answered: shadows are fire and forget.
SHADOW_WAIT = 5.0


class DemoFailure(Exception):
    """The demo could not run, or a step did not show what the tutorial shows."""


@dataclass(frozen=True)
class Options:
    examples: Path
    requests: int
    keep_running: bool


@dataclass
class Mesh:
    """The running processes and how to reach them."""

    v1: Managed
    v2: Managed
    proxy: Managed
    admin: str
    outbound_port: int
    v1_log: WorkloadLog
    v2_log: WorkloadLog


def find_examples() -> Path | None:
    """The scenario's YAML: beside the package if packaged there, else in the source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (
        here / "examples",
        here.parents[1] / "examples" / "httpbin",
        Path.cwd() / "examples" / "httpbin",
    ):
        if (candidate / "00-workloads.yaml").is_file():
            return candidate
    return None


def preflight(examples: Path) -> None:
    """Fail before starting anything if a dependency, a file or a port is missing."""
    missing = [m for m in ("gunicorn", "httpbin") if importlib.util.find_spec(m) is None]
    if missing:
        raise DemoFailure(
            f"the demo runs real httpbin under gunicorn, and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}"
        )
    for name in _EXAMPLE_FILES:
        if not (examples / name).is_file():
            raise DemoFailure(f"{examples / name} not found: pass --examples DIR")
    for port, what in (
        (V1_PORT, "httpbin v1"),
        (V2_PORT, "httpbin v2"),
        (SERVICE_PORT, "the httpbin Service"),
    ):
        if not processes.port_is_free(port):
            raise DemoFailure(
                f"port {port} on {LOCALHOST} is in use; the demo needs it for {what} "
                "(the example files name it). Stop what listens there and run again."
            )


_EXAMPLE_FILES = (
    "00-workloads.yaml",
    "01-service.yaml",
    "02-route-v1.yaml",
    "03-mirror.yaml",
    "04-mirror-percentage.yaml",
)


def run(opts: Options) -> None:
    """Play the scenario; everything started is stopped before this returns or raises."""
    preflight(opts.examples)
    with tempfile.TemporaryDirectory(prefix="shadowmesh-demo-") as tmp, _mesh(Path(tmp)) as mesh:
        _step_no_virtualservice(mesh, opts)
        _step_route_v1(mesh, opts)
        _step_mirror(mesh, opts)
        _step_mirror_percentage(mesh, opts)
        if opts.keep_running:
            _wait_for_interrupt(mesh)
        _step_cleanup(mesh, opts)


# --- processes ---------------------------------------------------------------------------------


@contextmanager
def _mesh(tmp: Path) -> Iterator[Mesh]:
    started: list[Managed] = []
    try:
        mesh = _start(tmp, started)
        yield mesh
    finally:
        failures = _stop_all(started)
    if failures:
        raise DemoFailure("; ".join(failures))


def _start(tmp: Path, started: list[Managed]) -> Mesh:
    logs = tmp / "logs"
    _section("Starting httpbin v1 and v2 (gunicorn), and shadowmesh")
    v1 = processes.start_httpbin("httpbin-v1", V1_PORT, logs)
    started.append(v1)
    v2 = processes.start_httpbin("httpbin-v2", V2_PORT, logs)
    started.append(v2)
    admin_port, outbound_port = _two_free_ports()
    proxy = processes.start(
        "shadowmesh",
        processes.serve_argv(tmp / "state", admin_port, outbound_port, logs / "access.log"),
        logs,
    )
    started.append(proxy)
    admin = f"{LOCALHOST}:{admin_port}"
    for proc, url in (
        (v1, f"http://{LOCALHOST}:{V1_PORT}/status/200"),
        (v2, f"http://{LOCALHOST}:{V2_PORT}/status/200"),
        (proxy, f"http://{admin}/ready"),
    ):
        try:
            processes.wait_http_ok(proc, url)
        except processes.ProcessError as e:
            raise DemoFailure(str(e)) from e
        click.echo(f"  {proc.name:<11} pid {proc.pid:<7} {_shell(proc.argv)}")
    click.echo(f"  admin API on {admin}, outbound proxy on {LOCALHOST}:{outbound_port}")
    v1_log, v2_log = WorkloadLog(v1.stdout_path), WorkloadLog(v2.stdout_path)
    # gunicorn logs a request after answering it: the probes' lines must be in before the
    # first step takes its marks.
    for log in (v1_log, v2_log):
        log.wait_since(0, 1, SHADOW_WAIT)
    return Mesh(v1, v2, proxy, admin, outbound_port, v1_log, v2_log)


def _two_free_ports() -> tuple[int, int]:
    taken = {V1_PORT, V2_PORT, SERVICE_PORT}
    ports: list[int] = []
    while len(ports) < 2:
        port = processes.free_port()
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports[0], ports[1]


def _stop_all(started: list[Managed]) -> list[str]:
    """Stop in reverse order (the proxy before its upstreams); report what did not exit cleanly."""
    failures = []
    for proc in reversed(started):
        code = processes.stop(proc)
        if proc.name == "shadowmesh" and code != 0:
            failures.append(
                f"shadowmesh serve exited with code {code} on SIGTERM:\n{proc.stderr_tail()}"
            )
    if started:
        click.echo(f"\nStopped {', '.join(f'{p.name} (pid {p.pid})' for p in reversed(started))}.")
    return failures


def _wait_for_interrupt(mesh: Mesh) -> None:
    _section("Running: try it yourself, Ctrl-C to clean up and stop")
    click.echo(
        f"  curl -x http://{LOCALHOST}:{mesh.outbound_port} http://{SERVICE_AUTHORITY}/headers"
    )
    click.echo(f"  SHADOWMESH_ADMIN={mesh.admin} shadowmesh get vs httpbin -o yaml")
    click.echo(f"  v1's log: {mesh.v1.stdout_path}\n  v2's log: {mesh.v2.stdout_path}")
    try:
        while mesh.proxy.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("")
        return
    raise DemoFailure(f"shadowmesh serve exited:\n{mesh.proxy.stderr_tail()}")


# --- steps -------------------------------------------------------------------------------------


def _step_no_virtualservice(mesh: Mesh, opts: Options) -> None:
    _section("Step 1: the workloads and the Service, no VirtualService yet")
    _apply(mesh, opts.examples / "00-workloads.yaml")
    _apply(mesh, opts.examples / "01-service.yaml")
    count = max(opts.requests, 10)
    v1, v2, _ = _traffic(mesh, "/headers", count)
    _show(v1, v2)
    if len(v1) + len(v2) != count:
        raise DemoFailure(f"{count} requests, but v1 and v2 logged {len(v1)} + {len(v2)}")
    _note("Istio balances a Service across all its endpoints: both versions answer.")


def _step_route_v1(mesh: Mesh, opts: Options) -> None:
    _section("Step 2: route 100% of the traffic to subset v1")
    _apply(mesh, opts.examples / "02-route-v1.yaml")
    v1, v2, answers = _traffic(mesh, "/headers?show_env=1", opts.requests)
    _show(v1, v2)
    if v2 or len(v1) != opts.requests:
        raise DemoFailure(f"expected v1 to log all {opts.requests} requests and v2 none")
    _note(
        "Only v1 logs. The headers v1 saw in the last request; X-Request-Id, X-B3-*, "
        "X-Envoy-Attempt-Count and X-Forwarded-* were added by shadowmesh:"
    )
    _show_headers(answers[-1])


def _step_mirror(mesh: Mesh, opts: Options) -> None:
    _section("Step 3: mirror to v2, with the deprecated mirror_percent: 100")
    result = _apply(mesh, opts.examples / "03-mirror.yaml")
    if DEPRECATION_WARNING not in result.stderr.splitlines():
        raise DemoFailure(f"apply did not warn: {DEPRECATION_WARNING}")
    v1, v2, _ = _traffic(mesh, "/headers", opts.requests, shadows=opts.requests)
    _show(v1, v2)
    if len(v1) != opts.requests or len(v2) != opts.requests:
        raise DemoFailure(
            f"expected {opts.requests} requests on v1 and as many copies on v2, "
            f"got {len(v1)} and {len(v2)}"
        )
    hosts = {e.host for e in v2}
    if hosts != {SHADOW_AUTHORITY}:
        raise DemoFailure(f"expected v2 to see Host {SHADOW_AUTHORITY}, it saw {sorted(hosts)}")
    if sorted(e.request_id for e in v1) != sorted(e.request_id for e in v2):
        raise DemoFailure("the copies on v2 do not carry the x-request-ids of v1's requests")
    _note(
        f"The client got v1's answers. v2 got a copy of each request, Host {SHADOW_AUTHORITY}, "
        "same x-request-id; its answers were thrown away."
    )


def _step_mirror_percentage(mesh: Mesh, opts: Options) -> None:
    _section("Step 4: the modern form, mirrorPercentage: {value: 50.0}")
    result = _apply(mesh, opts.examples / "04-mirror-percentage.yaml")
    if "Warning:" in result.stderr:
        raise DemoFailure("apply warned about the modern mirrorPercentage")
    count = 4 * opts.requests
    v1, v2, _ = _traffic(mesh, "/headers", count)
    _show(v1, v2)
    if len(v1) != count or {e.host for e in v2} - {SHADOW_AUTHORITY}:
        raise DemoFailure(f"expected v1 to log {count} requests and v2 only copies")
    _note(f"Each request is sampled on its own: v2 got {len(v2)} copies of {count}.")


def _step_cleanup(mesh: Mesh, opts: Options) -> None:
    _section("Step 5: clean up: delete the VirtualService and the DestinationRule")
    _cli(mesh, ["delete", "virtualservice", "httpbin"])
    _cli(mesh, ["delete", "destinationrule", "httpbin"])
    count = max(opts.requests, 10)
    v1, v2, _ = _traffic(mesh, "/headers", count)
    _show(v1, v2)
    if len(v1) + len(v2) != count:
        raise DemoFailure(f"{count} requests, but v1 and v2 logged {len(v1)} + {len(v2)}")
    _note("No rule left: the Service is balanced over both versions again.")
    _cli(mesh, ["delete", "-f", _display(opts.examples / "01-service.yaml")])
    _cli(mesh, ["delete", "-f", _display(opts.examples / "00-workloads.yaml")])


# --- one step's parts --------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def _apply(mesh: Mesh, path: Path) -> CliResult:
    return _cli(mesh, ["apply", "-f", _display(path)])


def _cli(mesh: Mesh, args: list[str]) -> CliResult:
    """Run a client verb as the user would, print what it printed, fail if it failed."""
    click.echo(click.style(f"$ shadowmesh {_shell(args)}", bold=True))
    env = {**os.environ, "SHADOWMESH_ADMIN": mesh.admin}
    proc = subprocess.run(
        [sys.executable, "-m", "shadowmesh", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    for line in proc.stderr.splitlines():
        click.echo(click.style(line, fg="yellow" if line.startswith("Warning:") else "red"))
    for line in proc.stdout.splitlines():
        click.echo(line)
    if proc.returncode != 0:
        raise DemoFailure(f"shadowmesh {_shell(args)} exited with code {proc.returncode}")
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def _traffic(
    mesh: Mesh, path: str, count: int, shadows: int = 0
) -> tuple[list[Entry], list[Entry], list[Answer]]:
    """Send count requests; return what v1 and v2 logged meanwhile, and the answers."""
    v1_mark, v2_mark = mesh.v1_log.mark(), mesh.v2_log.mark()
    url = f"http://{SERVICE_AUTHORITY}{path}"
    click.echo(
        click.style(
            f"$ curl -x http://{LOCALHOST}:{mesh.outbound_port} {url}   # {count} times", bold=True
        )
    )
    try:
        answers = get_via_proxy(LOCALHOST, mesh.outbound_port, [url] * count)
    except OSError as e:
        raise DemoFailure(f"request to {url} through the outbound proxy failed: {e}") from e
    statuses = [a.status for a in answers]
    click.echo(f"  answers: {' '.join(map(str, statuses))}")
    if any(s != 200 for s in statuses):
        raise DemoFailure(f"expected 200 to every request, got {statuses}")
    # A workload writes its log line after it answered; copies to v2 may still be on their way.
    v1 = mesh.v1_log.settle_since(v1_mark, quiet=0.3, timeout=SHADOW_WAIT)
    if shadows:
        mesh.v2_log.wait_since(v2_mark, shadows, SHADOW_WAIT)
    v2 = mesh.v2_log.settle_since(v2_mark, quiet=0.3, timeout=SHADOW_WAIT)
    return v1, v2, answers


def _show(v1: list[Entry], v2: list[Entry]) -> None:
    for name, entries in (("v1", v1), ("v2", v2)):
        click.echo(f"  httpbin {name} logged {click.style(str(len(entries)), bold=True)}")
        if len(entries) > 3:
            click.echo(click.style(f"    ... {len(entries) - 3} earlier, then:", dim=True))
        for e in entries[-3:]:
            click.echo(click.style(f"    {e.line}", dim=True))


def _show_headers(answer: Answer) -> None:
    try:
        headers = json.loads(answer.body)["headers"]
    except (ValueError, KeyError, TypeError):
        click.echo(f"    {answer.body[:500]!r}")
        return
    if not isinstance(headers, dict):
        headers = {}
    shown = redact_headers({str(k): str(v) for k, v in headers.items()})
    for name in sorted(shown):
        click.echo(f"    {name}: {escape(shown[name])}")


def _section(title: str) -> None:
    click.echo("\n" + click.style(f"== {title}", fg="cyan", bold=True))


def _note(text: str) -> None:
    click.echo(click.style(f"  -> {text}", fg="green"))


def _display(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _shell(argv: list[str]) -> str:
    shown = [Path(a).name if a == sys.executable else a for a in argv]
    return shlex.join(shown)
