"""``shadowmesh demo``, the README's first command, run as the user runs it."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from shadowmesh.demo import processes
from shadowmesh.demo.scenario import SERVICE_PORT, V1_PORT, V2_PORT

pytestmark = pytest.mark.e2e


def test_demo_plays_the_scenario_and_stops_everything() -> None:
    busy = [p for p in (V1_PORT, V2_PORT, SERVICE_PORT) if not processes.port_is_free(p)]
    if busy:
        pytest.skip(f"the demo needs the example files' ports, busy here: {busy}")

    run = subprocess.run(
        [sys.executable, "-m", "shadowmesh", "demo", "--requests", "3"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "virtualservice.networking.istio.io/httpbin created" in out
    assert 'Warning: using deprecated setting "mirrorPercent"' in out
    assert "host=httpbin-shadow:8000" in out
    assert 'virtualservice.networking.istio.io "httpbin" deleted' in out
    # Everything it started is gone: the ports are free again.
    assert [p for p in (V1_PORT, V2_PORT, SERVICE_PORT) if not processes.port_is_free(p)] == []


def test_demo_names_a_busy_port() -> None:
    if not processes.port_is_free(V2_PORT):
        pytest.skip(f"port {V2_PORT} is busy already")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind((processes.LOCALHOST, V2_PORT))
        holder.listen()
        run = subprocess.run(
            [sys.executable, "-m", "shadowmesh", "demo"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run.returncode == 1
    assert f"port {V2_PORT}" in run.stderr
    assert "httpbin v2" in run.stderr
