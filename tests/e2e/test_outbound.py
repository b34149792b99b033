"""The outbound port: a forward proxy that reaches Services by name, as a sidecar's capture."""

from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e


def test_forward_proxy_routes_by_service_name(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")

    body = json.loads(mesh.curl_body("/anything/x?y=1", via="outbound"))

    assert body["url"] == f"http://{mesh.authority}/anything/x?y=1"
    assert body["headers"]["Host"] == mesh.authority
    assert [e.target for e in mesh.v1.settled(at_least=1)] == ["/anything/x?y=1"]


def test_forward_proxy_from_the_http_proxy_variable(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    env = {**os.environ, "http_proxy": f"http://127.0.0.1:{mesh.proxy.outbound_port}"}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)

    out = subprocess.run(
        [
            "curl",
            "-s",
            "--max-time",
            "10",
            "-o",
            os.devnull,
            "-w",
            "%{http_code}",
            f"http://{mesh.authority}/",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    ).stdout

    assert out == "200"
    assert [e.target for e in mesh.v1.settled(at_least=1)] == ["/"]


def test_post_body_reaches_the_primary_and_the_shadow(mesh: Mesh) -> None:
    mesh.apply_examples(
        "00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml", "03-mirror.yaml"
    )

    body = json.loads(
        mesh.curl_body("/anything", args=["-X", "POST", "--data-binary", "ping=pong"])
    )

    assert body["form"] == {"ping": "pong"}
    assert [e.method for e in mesh.v1.settled(at_least=1)] == ["POST"]
    assert [e.method for e in mesh.v2.settled(at_least=1)] == ["POST"]
