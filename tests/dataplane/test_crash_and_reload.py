"""Crash safety, a graceful stop, and reloads under load, against real processes and sockets.

* kill -9 in the middle of applies (a process on the Store, then ``shadowmesh serve`` itself):
  the store opens, holds one whole apply (never a mix), and a restart serves it;
* SIGTERM: the request in flight finishes 200, new connections are refused, exit 0;
* 100 applies (weights flipping, mirror on and off, a Service added and removed) under
  keep-alive load: no failed request, no leaked descriptor, nothing left in flight.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shadowmesh.admin.client import AdminClient
from shadowmesh.control.store import Store
from tests.support.serve import Served, free_port, mesh_yaml
from tests.support.upstreams import RecordingUpstream

KILLS = 12
SERVE_KILLS = 3
SERVICES = 150  # documents per apply: enough that an apply takes a while to write
# The 30 s; SHADOWMESH_LOAD_SECONDS=10 for a quicker local run.
LOAD_SECONDS = float(os.environ.get("SHADOWMESH_LOAD_SECONDS", "30"))
APPLIES = 100
CLIENTS = 4


# --- kill -9 during applies ---------------------------------------------------------------------


def services_yaml(generation: str, count: int = SERVICES) -> str:
    return "---\n".join(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Service
            metadata: {{name: svc-{i}, labels: {{generation: "{generation}"}}}}
            spec:
              selector: {{app: svc-{i}, generation: "{generation}"}}
              ports: [{{name: http, port: {20000 + i}, targetPort: 80}}]
            """
        )
        for i in range(count)
    )


APPLIER = """
import sys
from shadowmesh.control.store import Store
from shadowmesh.model.load import load_text
state, a, b = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
docs = {"a": load_text(a, "a.yaml").documents, "b": load_text(b, "b.yaml").documents}
store = Store(state)
turn = 0
while True:
    generation = "ab"[turn % 2]
    store.apply(docs[generation])
    print(generation, store.revision, flush=True)
    turn += 1
"""


def generations(state: Path) -> Counter[str]:
    """How many stored Services carry each generation label; the store must open."""
    with Store(state) as store:
        rows = store.get("Service")
        loaded = store.all()
    assert loaded.errors == []
    return Counter(row.document["metadata"]["labels"]["generation"] for row in rows)


def integrity(state: Path) -> str:
    with sqlite3.connect(state / "config.db") as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def test_kill_9_during_applies_leaves_one_whole_apply(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (tmp_path / "a.yaml").write_text(services_yaml("a"))
    (tmp_path / "b.yaml").write_text(services_yaml("b"))
    rng = random.Random(4)
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", APPLIER, str(state), str(tmp_path / "a.yaml"),
             str(tmp_path / "b.yaml")],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        committed = [proc.stdout.readline().split()]  # at least one apply went through
        time.sleep(rng.uniform(0.0, 0.4))  # then die anywhere, most likely mid-transaction
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # A line the kill cut short (no newline yet) was never fully reported: skip it; the
        # apply it spoke of counts as "the one after" below.
        complete = proc.stdout.read().split("\n")[:-1]
        committed += [line.split() for line in complete]
        proc.stdout.close()
        last_generation, last_revision = committed[-1][0], int(committed[-1][1])
        assert integrity(state) == "ok"
        found = generations(state)
        # One generation, every Service: the last one reported, or the one after it (committed
        # but killed before it could say so).
        assert len(found) == 1 and sum(found.values()) == SERVICES, (kill, found)
        with Store(state) as store:
            revision = store.revision
        assert revision in (last_revision, last_revision + 1), (kill, revision, last_revision)
        if revision == last_revision:
            assert set(found) == {last_generation}


def route_yaml(subset: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: app}}
        spec:
          hosts: [app]
          http:
          - route:
            - destination: {{host: app, subset: {subset}}}
        """
    )


def get_once(port: int, path: str = "/") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": "app"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_serve_killed_mid_apply_restarts_on_the_last_committed_config(tmp_path: Path) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstream = {"v1": v1, "v2": v2}
    rng = random.Random(9)
    try:
        for kill in range(SERVE_KILLS):
            served = Served(tmp_path, mesh_yaml(v1.port, v2.port))
            client = AdminClient(f"127.0.0.1:{served.admin}", timeout=10)
            flips = {"stop": False, "acked": ""}

            def flip(client: AdminClient = client, flips: dict[str, Any] = flips) -> None:
                turn = 0
                while not flips["stop"]:
                    subset = ("v1", "v2")[turn % 2]
                    files = [{"source": "vs.yaml", "text": route_yaml(subset)}]
                    try:
                        status, _ = client.post("/apply", {"files": files})
                    except Exception:
                        return  # the proxy is gone
                    if status == 200:
                        flips["acked"] = subset
                    turn += 1

            thread = threading.Thread(target=flip, daemon=True)
            thread.start()
            time.sleep(rng.uniform(0.2, 0.8))
            os.kill(served.proc.pid, signal.SIGKILL)
            served.proc.wait()
            flips["stop"] = True
            thread.join(15)
            served.stop()
            assert integrity(tmp_path / "state") == "ok"
            # Restart on the same state, with no -f: what it serves is what the store holds.
            restarted = _restart(tmp_path, served.port)
            try:
                client = AdminClient(f"127.0.0.1:{restarted.admin}", timeout=10)
                status, answer = client.get("/resources", {"kind": "vs", "name": "app"})
                assert status == 200, answer
                route = answer["items"][0]["spec"]["http"][0]["route"][0]["destination"]
                stored = route["subset"]
                assert stored in ("v1", "v2")
                before = len(upstream[stored].requests)
                assert get_once(served.port) == 200
                assert len(upstream[stored].wait_for(before + 1)) == before + 1, (kill, stored)
            finally:
                restarted.stop()
    finally:
        v1.close()
        v2.close()


def _restart(tmp_path: Path, service_port: int) -> Served:
    """serve again on the same state dir; mesh.yaml re-applied is identical (unchanged)."""
    served = Served.__new__(Served)
    served.port = service_port
    served.admin = free_port()
    served.log = tmp_path / "access.log"
    served.proc = subprocess.Popen(
        [sys.executable, "-m", "shadowmesh", "serve", "--state", str(tmp_path / "state"),
         "--admin", f"127.0.0.1:{served.admin}", "--outbound", "off", "--access-log", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    _wait_ready(served)
    return served


def _wait_ready(served: Served) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert served.proc.poll() is None, served.proc.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", served.admin), timeout=1):
                pass
            status, _ = AdminClient(f"127.0.0.1:{served.admin}", timeout=5).get("/stats")
            if status == 200:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError("serve did not become ready")


# --- SIGTERM ------------------------------------------------------------------------------------


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_drains_the_request_in_flight_then_exits_0(tmp_path: Path) -> None:
    slow, other = RecordingUpstream(mode="slow", delay=2.0), RecordingUpstream()
    served = Served(tmp_path, mesh_yaml(slow.port, other.port), "--drain-timeout", "10")
    try:
        result: dict[str, int] = {}
        thread = threading.Thread(target=lambda: result.update(status=get_once(served.port)))
        thread.start()
        assert len(slow.wait_for(1)) == 1  # the request is at the upstream, its answer 2 s away
        os.kill(served.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not refused(served.port):
            assert time.monotonic() < deadline, "new connections still accepted after SIGTERM"
            time.sleep(0.02)
        assert thread.is_alive() or result  # refusing new ones did not cut the one in flight
        thread.join(15)
        assert result == {"status": 200}
        assert served.proc.wait(15) == 0
    finally:
        served.stop()
        slow.close()
        other.close()


# --- reloads under load -------------------------------------------------------------------------


def variant(turn: int, v1: int, v2: int) -> str:
    """The route of apply number turn: weights flip, the mirror comes and goes."""
    w1 = (100, 0, 50, 80)[turn % 4]
    mirror = "    mirror: {host: app, subset: v2}\n" if turn % 3 == 0 else ""
    return mesh_yaml(v1, v2, mirror).replace(
        "    - destination: {host: app, subset: v1}\n",
        f"    - destination: {{host: app, subset: v1}}\n      weight: {w1}\n"
        f"    - destination: {{host: app, subset: v2}}\n      weight: {100 - w1}\n",
    )


def extra_service(port: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: extra}}
        spec:
          selector: {{app: app}}
          ports: [{{name: http, port: {port}, targetPort: 80}}]
        """
    )


class Load:
    """CLIENTS threads, each a keep-alive connection sending GETs until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            while not self.stop.is_set():
                try:
                    conn.request("GET", "/load", headers={"Host": "app"})
                    response = conn.getresponse()
                    response.read()
                    outcome = "" if response.status == 200 else f"status {response.status}"
                except (OSError, http.client.HTTPException) as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                with self.lock:
                    if outcome:
                        self.failures.append(outcome)
                    else:
                        self.ok += 1
        finally:
            conn.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def describe_fds(served: Served) -> list[str]:
    """What each descriptor is, with the TCP peer of sockets: for a leak's failure message."""
    peers = subprocess.run(
        ["ss", "-tanp"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    mine = [line for line in peers if f"pid={served.proc.pid}," in line]
    fd_dir = Path(f"/proc/{served.proc.pid}/fd")
    return [os.readlink(fd_dir / name) for name in sorted(os.listdir(fd_dir))] + mine


def settled_stats(served: Served) -> dict[str, Any]:
    """/stats once nothing is active or in flight (or what it says after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        stats = served.stats()
        idle = stats.get("downstream_active") == 0 and stats.get("shadow_in_flight") == 0
        if idle or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[tuple[Served, RecordingUpstream, RecordingUpstream]]:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    served = Served(tmp_path, variant(0, v1.port, v2.port))
    try:
        yield served, v1, v2
    finally:
        served.stop()
        v1.close()
        v2.close()


@pytest.mark.slow
@pytest.mark.timeout(LOAD_SECONDS * 3 + 60)
def test_100_applies_under_load_fail_no_request_and_leak_nothing(
    reloading: tuple[Served, RecordingUpstream, RecordingUpstream], tmp_path: Path
) -> None:
    served, v1, v2 = reloading
    client = AdminClient(f"127.0.0.1:{served.admin}", timeout=30)
    # Warm up every path the reloads will take (both subsets, the shadow pool), then measure.
    with Load(served.port):
        for turn in (2, 3, 2, 3):  # 50/50 without a mirror, 80/20 with one
            apply(client, variant(turn, v1.port, v2.port), served.port)
            time.sleep(0.5)
    before = settled_stats(served)
    fds_before = open_fds(served.proc.pid)

    extra_port = free_port()
    applied: Counter[str] = Counter()
    with Load(served.port) as load:
        started = time.monotonic()
        for turn in range(APPLIES):
            text = variant(turn, v1.port, v2.port)
            if turn % 10 == 5:
                text += "---\n" + extra_service(extra_port)
                applied["service added"] += 1
            apply(client, text, served.port)
            if turn % 10 == 6:
                status, answer = client.post(
                    "/delete", {"kind": "Service", "names": ["extra"], "namespace": "default"}
                )
                assert status == 200, answer
                applied["service removed"] += 1
            applied["applies"] += 1
            # Spread the applies over the load's whole duration.
            time.sleep(max(0.0, started + (turn + 1) * LOAD_SECONDS / APPLIES - time.monotonic()))
    stats = settled_stats(served)
    fds_after = open_fds(served.proc.pid)
    print(
        f"\nreload under load: {applied['applies']} applies ({applied['service added']} Service "
        f"adds, {applied['service removed']} removes) in {LOAD_SECONDS:.0f} s, {load.ok} "
        f"requests ok, {len(load.failures)} failed; fds {fds_before} -> {fds_after}",
        file=sys.stderr,
    )
    assert applied["applies"] == APPLIES
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert load.ok > APPLIES  # the load really ran alongside
    assert stats["downstream_active"] == 0
    assert stats["shadow_in_flight"] == 0 and stats["shadow_held_bytes"] == 0
    # Pools may keep more idle upstream connections than after the warm-up (how many depends on
    # how busy the machine was): those are counted by /stats and bounded per endpoint. Any
    # other descriptor more is a leak; one per apply would be 100.
    idle_before = before["upstream_idle"] + before["shadow_idle"]
    idle_after = stats["upstream_idle"] + stats["shadow_idle"]
    assert fds_after - idle_after <= fds_before - idle_before + CLIENTS, (
        fds_before,
        fds_after,
        idle_before,
        idle_after,
        describe_fds(served),
    )
    assert refused(extra_port)  # the removed Service's port is closed again


def apply(client: AdminClient, text: str, port: int) -> None:
    text = text.replace("SERVICE_PORT", str(port))
    status, answer = client.post("/apply", {"files": [{"source": "mesh.yaml", "text": text}]})
    assert status == 200, json.dumps(answer)[:500]
