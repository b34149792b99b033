"""``serve --workers N``: several processes on one port, one config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import drain
from tests.support.serve import Served, mesh_yaml, scrape
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


# --- workers never outlive the first process; SIGHUP reopens the log; the drain -----------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def processes_of(served: Served) -> list[int]:
    """Every live process whose command line names this serve's state directory: the first
    process and its workers, and any worker left orphaned."""
    state = str(served.log.parent / "state").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if state in cmdline.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still alive after waiting up to ``seconds`` for them to exit."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """PIDs a failing test may leave running (orphaned workers): killed after the test."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_workers_exit_when_the_first_process_is_killed(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], reap: list[int]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(mesh_yaml(v1.port, v2.port), "--workers", "3")
    workers = workers_of(s.proc.pid)
    reap += workers
    assert len(workers) == 2
    os.kill(s.proc.pid, signal.SIGKILL)  # a crash: no handler runs in it
    s.proc.wait(10)
    assert gone_within(workers, 10) == []


def test_sigterm_while_a_worker_restarts_leaves_no_worker_behind(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], reap: list[int]
) -> None:
    slow, other = RecordingUpstream(mode="slow", delay=2.5), RecordingUpstream()
    upstreams += [slow, other]
    s = serve(mesh_yaml(slow.port, other.port), "--workers", "2", "--drain-timeout", "10")
    (worker,) = workers_of(s.proc.pid)
    time.sleep(0.5)  # the worker's own start
    os.kill(worker, signal.SIGKILL)
    assert gone_within([worker], 5) == []
    # A request in flight on the first process (the only one listening now) holds its drain
    # open for 2.5 s: the worker died just before the SIGTERM, and is not started again.
    codes: list[list[str]] = []
    thread = threading.Thread(target=lambda: codes.append(fresh_connection_gets(s.port, 1)))
    thread.start()
    assert len(slow.wait_for(1)) == 1
    os.kill(s.proc.pid, signal.SIGTERM)
    thread.join(15)
    assert s.proc.wait(15) == 0
    assert codes == [["200"]]
    left = processes_of(s)
    reap += left
    assert gone_within(left, 5) == []


def test_sighup_reopens_the_access_log_in_every_process(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(mesh_yaml(v1.port, v2.port), "--workers", "2")
    time.sleep(0.5)  # the worker's own start
    assert fresh_connection_gets(s.port, 10) == ["200"] * 10
    assert len(lines_within(s.log, 10)) == 10
    rotated = s.log.with_name("access.log.1")
    s.log.rename(rotated)  # what logrotate does, before it signals
    os.kill(s.proc.pid, signal.SIGHUP)
    end = time.monotonic() + 5
    while not s.log.exists():
        assert time.monotonic() < end, "the first process did not reopen its log"
        time.sleep(0.02)
    time.sleep(0.5)  # the worker gets the signal from the first process
    # 30 new connections: the kernel spreads them over both processes.
    assert fresh_connection_gets(s.port, 30) == ["200"] * 30
    assert len(lines_within(s.log, 30)) == 30
    assert len(rotated.read_text().splitlines()) == 10
    assert s.proc.poll() is None  # SIGHUP does not stop it
    s.stop()
    assert s.proc.returncode == 0


def lines_within(path: Path, count: int, seconds: float = 5.0) -> list[str]:
    """The file's lines once it has ``count`` of them (lines are flushed once per loop turn)."""
    end = time.monotonic() + seconds
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > end:
            return lines
        time.sleep(0.02)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_keep_alive_load_leaves_no_request_unanswered(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], workers: str
) -> None:
    # An upstream that takes 10 ms: requests are in flight at any moment.
    v1, v2 = RecordingUpstream(mode="slow", delay=0.01), RecordingUpstream()
    upstreams += [v1, v2]
    s = serve(mesh_yaml(v1.port, v2.port), "--workers", workers, "--drain-timeout", "60")
    time.sleep(0.5)  # the workers' own start
    tally = drain.hammer(s.port, 8, 0.5, lambda: os.kill(s.proc.pid, signal.SIGTERM))
    # The drain ends once nothing is in flight, long before its timeout (it ran to it while
    # keep-alive clients kept their connections busy).
    assert s.proc.wait(15) == 0
    assert tally.sent > 50
    # Every request written got its whole answer: none was cut, none was read and dropped,
    # and no connection that had served was closed without saying Connection: close first.
    # Only a new connection made as a listening socket closed may be reset by the kernel,
    # unaccepted: its request never reached the proxy.
    assert tally.lost == 0, tally
    assert tally.answered == len(v1.requests), tally
    assert tally.announced_close >= 8


# --- every worker's counters reach /stats and /stats/prometheus, each once ----------------------


def istio_total(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str) -> float:
    return sum(samples.get(name, {}).values())


def test_every_workers_requests_are_scraped_once(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], reap: list[int]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams += [v1, v2]
    # A mirror to a subset no rule has: skipped, and counted by the process that skipped it.
    s = serve(
        mesh_yaml(v1.port, v2.port, "    mirror: {host: app, subset: v3}\n"), "--workers", "2"
    )
    (worker,) = workers_of(s.proc.pid)
    reap.append(worker)
    assert len(s.wait_processes(2)) == 2  # the worker serves
    served = 80
    assert fresh_connection_gets(s.port, served) == ["200"] * served
    stats = s.stats()
    processes = stats["processes"]
    assert isinstance(processes, list) and len(processes) == 2
    assert {p["pid"] for p in processes} == {s.proc.pid, worker}
    assert all(p["requests"] > 0 for p in processes), processes  # both served some
    assert stats["requests"] == {"total": served, "2xx": served}  # type: ignore[comparison-overlap]
    assert stats["shadow_skipped"] == {"no_cluster": served}  # type: ignore[comparison-overlap]
    shown = subprocess.run(
        [sys.executable, "-m", "shadowmesh", "stats", "--admin", f"127.0.0.1:{s.admin}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert f"requests: {served} total" in shown and "processes: 2" in shown
    shares = [line.split() for line in shown.splitlines() if line.split()[:1] == [str(worker)]]
    assert len(shares) == 1 and 0 < int(shares[0][1]) < served, shown
    samples = scrape(s)
    assert istio_total(samples, "istio_requests_total") == served
    for histogram in ("request_duration_milliseconds", "request_bytes", "response_bytes"):
        assert istio_total(samples, f"istio_{histogram}_count") == served
    assert istio_total(samples, "shadowmesh_requests_total") == served
    assert istio_total(samples, "shadowmesh_upstream_request_duration_seconds_count") == served
    # A worker killed outright: what it had sent stays counted, once; its replacement's own
    # requests add to it.
    os.kill(worker, signal.SIGKILL)
    assert gone_within([worker], 5) == []
    end = time.monotonic() + 10
    while (workers_of(s.proc.pid) or [worker]) == [worker] and time.monotonic() < end:
        time.sleep(0.1)
    (again,) = workers_of(s.proc.pid)
    reap.append(again)
    assert len(s.wait_processes(2)) == 2  # the new worker serves
    more = 40
    assert fresh_connection_gets(s.port, more) == ["200"] * more
    samples = scrape(s)
    assert istio_total(samples, "istio_requests_total") == served + more
    assert s.stats()["requests"] == {"total": served + more, "2xx": served + more}
    s.stop()
    assert s.proc.returncode == 0
