"""The admin API and the client verbs, end to end over loopback against a real AdminServer."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from shadowmesh.admin.server import AdminServer
from shadowmesh.cli.format import format_output, format_table, human_duration
from shadowmesh.cli.main import cli
from shadowmesh.control.controller import Controller
from shadowmesh.control.store import Store
from shadowmesh.routing.table import RouteTable
from tests.support.seed import ROUTE_V1, SERVICE, WORKLOADS

SHADOWMESH = Path(sys.executable).parent / "shadowmesh"

MIRROR = ROUTE_V1.split("---")[0].replace(
    "      weight: 100\n",
    "      weight: 100\n    mirror: {host: httpbin, subset: v2}\n    mirror_percent: 100\n",
)
BAD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [httpbin]
  htp: []
"""


@dataclass
class Admin:
    address: str
    port: int
    controller: Controller
    tables: list[RouteTable] = field(default_factory=list)


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    """A real AdminServer on a free port, its loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    tables: list[RouteTable] = []
    store = Store(tmp_path / "state")
    controller = Controller(store, tables.append)
    controller.start()
    server = AdminServer(controller, "127.0.0.1", 0, extra=lambda: {"requests": {"total": 7}})
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    port = server.bound_port
    yield Admin(f"127.0.0.1:{port}", port, controller, tables)
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    store.close()


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    """The scenario's first three files in a directory, with a README the CLI must skip."""
    directory = tmp_path / "httpbin"
    directory.mkdir()
    (directory / "00-workloads.yaml").write_text(WORKLOADS)
    (directory / "01-service.yml").write_text(SERVICE)
    (directory / "02-route-v1.yaml").write_text(ROUTE_V1)
    (directory / "README.md").write_text("# not config\n")
    return directory


def run(admin: Admin, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args, "--admin", admin.address], input=stdin)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request(
    admin: Admin,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", admin.port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    result = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return result


def raw_request(admin: Admin, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", admin.port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- the CLI against the admin API -------------------------------------------------------------


def test_apply_a_directory_prints_kubectl_lines(admin: Admin, scenario: Path) -> None:
    result = run(admin, "apply", "-f", str(scenario))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "workloadentry.networking.istio.io/httpbin-v1 created",
        "workloadentry.networking.istio.io/httpbin-v2 created",
        "service/httpbin created",
        "virtualservice.networking.istio.io/httpbin created",
        "destinationrule.networking.istio.io/httpbin created",
    ]
    assert result.stderr == ""
    assert admin.tables[-1].ports == frozenset({8000})


def test_deprecated_mirror_field_warns_on_stderr(admin: Admin, scenario: Path) -> None:
    run(admin, "apply", "-f", str(scenario))
    result = run(admin, "apply", "-f", "-", stdin=MIRROR)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "virtualservice.networking.istio.io/httpbin configured\n"
    assert (
        'Warning: using deprecated setting "mirrorPercent", use "mirrorPercentage" instead\n'
        in result.stderr
    )


def test_reapplying_says_unchanged_and_keeps_the_table(admin: Admin, scenario: Path) -> None:
    run(admin, "apply", "-f", str(scenario))
    tables = len(admin.tables)
    result = run(admin, "apply", "-f", str(scenario / "01-service.yml"))
    assert result.stdout == "service/httpbin unchanged\n"
    assert len(admin.tables) == tables


def test_an_invalid_document_applies_nothing(admin: Admin, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(SERVICE)
    bad.write_text(ROUTE_V1 + "---\n" + BAD)
    result = run(admin, "apply", "-f", str(good), "-f", str(bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines)
    assert f"{bad}: document 3" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(admin.tables) == 1  # only the start's
    listing = run(admin, "get", "svc")
    assert listing.stderr == "No resources found in default namespace.\n"


def test_unreadable_file(admin: Admin, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run(admin, "apply", "-f", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot read {missing}: No such file or directory\n"


def test_get_prints_kubectl_tables(admin: Admin, scenario: Path) -> None:
    run(admin, "apply", "-f", str(scenario))
    vs = run(admin, "get", "vs")
    assert vs.exit_code == 0
    header, row = vs.stdout.splitlines()
    assert re.fullmatch(r"NAME {6}GATEWAYS   HOSTS {9}AGE", header)
    assert re.fullmatch(r'httpbin {3} {11}\["httpbin"\]   \d+s', row)
    svc = run(admin, "get", "Services", "-o", "wide")
    assert svc.stdout.splitlines()[0].split() == ["NAME", "PORT(S)", "AGE", "SELECTOR"]
    name, ports, age, selector = svc.stdout.splitlines()[1].split()
    assert (name, ports, selector) == ("httpbin", "8000/TCP", "app=httpbin")
    assert re.fullmatch(r"\d+s", age)
    we = run(admin, "get", "we", "-A")
    assert [line.split()[:3] for line in we.stdout.splitlines()] == [
        ["NAMESPACE", "NAME", "ADDRESS"],
        ["default", "httpbin-v1", "127.0.0.1"],
        ["default", "httpbin-v2", "127.0.0.1"],
    ]
    dr = run(admin, "get", "destinationrule.networking.istio.io")
    assert dr.stdout.splitlines()[1].split()[:2] == ["httpbin", "httpbin"]


def test_get_yaml_round_trips_unchanged(admin: Admin, scenario: Path) -> None:
    run(admin, "apply", "-f", str(scenario))
    shown = run(admin, "get", "vs", "httpbin", "-o", "yaml")
    document = yaml.safe_load(shown.stdout)
    assert document["kind"] == "VirtualService"
    assert document["metadata"]["namespace"] == "default"
    assert document["metadata"]["generation"] == 1
    again = run(admin, "apply", "-f", "-", stdin=shown.stdout)
    assert again.exit_code == 0, again.stderr
    assert again.stdout == "virtualservice.networking.istio.io/httpbin unchanged\n"


def test_get_json_of_a_list(admin: Admin, scenario: Path) -> None:
    run(admin, "apply", "-f", str(scenario))
    listing = json.loads(run(admin, "get", "we", "-o", "json").stdout)
    assert (listing["kind"], listing["apiVersion"]) == ("List", "v1")
    assert [i["metadata"]["name"] for i in listing["items"]] == ["httpbin-v1", "httpbin-v2"]
    other = run(admin, "get", "we", "-n", "elsewhere")
    assert (other.exit_code, other.stdout) == (0, "")
    assert other.stderr == "No resources found in elsewhere namespace.\n"


def test_get_errors_as_kubectl(admin: Admin) -> None:
    unknown = run(admin, "get", "foo")
    assert (unknown.exit_code, unknown.stderr) == (
        1,
        'error: the server doesn\'t have a resource type "foo"\n',
    )
    missing = run(admin, "get", "vs", "nope")
    assert missing.exit_code == 1
    assert missing.stderr == (
        'Error from server (NotFound): virtualservices.networking.istio.io "nope" not found\n'
    )


def test_delete_by_name_and_by_file(admin: Admin, scenario: Path) -> None:
    run(admin, "apply", "-f", str(scenario))
    by_name = run(admin, "delete", "vs", "httpbin", "ghost")
    assert by_name.exit_code == 1
    assert by_name.stdout == 'virtualservice.networking.istio.io "httpbin" deleted\n'
    assert by_name.stderr == (
        'Error from server (NotFound): virtualservices.networking.istio.io "ghost" not found\n'
    )
    route = scenario / "02-route-v1.yaml"
    by_file = run(admin, "delete", "-f", str(route))
    assert by_file.stdout == 'destinationrule.networking.istio.io "httpbin" deleted\n'
    assert f'error when deleting "{route}"' in by_file.stderr
    last = run(admin, "delete", "svc", "httpbin")
    assert (last.exit_code, last.stdout) == (0, 'service "httpbin" deleted\n')
    assert admin.tables[-1].ports == frozenset()
    assert run(admin, "delete", "pods", "x").stderr.startswith(
        'error: the server doesn\'t have a resource type "pods"'
    )
    assert run(admin, "delete", "vs").stderr.startswith("error: ")


def test_unreachable_admin_is_one_line_without_traceback() -> None:
    port = free_port()
    result = subprocess.run(
        [str(SHADOWMESH), "get", "vs", "--admin", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot reach the shadowmesh admin API at 127.0.0.1:{port} "
        '(is "shadowmesh serve" running?): Connection refused\n'
    )


def test_admin_address_from_the_environment(admin: Admin, scenario: Path) -> None:
    env = {**os.environ, "SHADOWMESH_ADMIN": admin.address, "http_proxy": "http://127.0.0.1:9"}
    result = subprocess.run(
        [str(SHADOWMESH), "apply", "-f", str(scenario / "01-service.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert (result.returncode, result.stdout) == (0, "service/httpbin created\n"), result.stderr


# -- the admin API itself ----------------------------------------------------------------------


def test_ready_config_dump_and_stats(admin: Admin, scenario: Path) -> None:
    status, headers, body = request(admin, "GET", "/ready")
    assert (status, body) == (200, b"LIVE\n")
    run(admin, "apply", "-f", str(scenario))
    status, headers, body = request(admin, "GET", "/config_dump")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == json.loads(json.dumps(admin.tables[-1].describe(), default=str))
    # Encoded in two parts (the routes' part once per table), yet the text json_response writes.
    assert body == (json.dumps(admin.tables[-1].describe(), indent=2) + "\n").encode()
    assert request(admin, "GET", "/config_dump")[2] == body
    status, _, body = request(admin, "GET", "/stats")
    assert (status, json.loads(body)) == (200, {"requests": {"total": 7}})


def test_apply_endpoint_json(admin: Admin) -> None:
    files = [{"source": "svc.yaml", "text": SERVICE}]
    status, _, body = request(admin, "POST", "/apply", {"files": files, "namespace": "team"})
    assert (status, json.loads(body)) == (
        200,
        {"lines": ["service/httpbin created"], "warnings": []},
    )
    status, _, body = request(
        admin, "POST", "/apply", {"files": [{"source": "bad.yaml", "text": BAD}]}
    )
    assert status == 422
    errors = json.loads(body)["errors"]
    assert errors and all(e.startswith("bad.yaml: document 1") for e in errors)
    assert any('unknown field "htp"' in e for e in errors)
    status, _, body = request(admin, "GET", "/resources?kind=svc&allNamespaces=1")
    assert [i["metadata"]["namespace"] for i in json.loads(body)["items"]] == ["team"]


def test_foreign_origin_and_host_are_refused(admin: Admin) -> None:
    files = [{"source": "svc.yaml", "text": SERVICE}]
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        # A page another local program serves is a foreign origin too (see test_admin_auth).
        {"Origin": "http://localhost:3000"},
        {"Host": "evil.example:15000"},
    ):
        status, _, body = request(admin, "POST", "/apply", {"files": files}, headers)
        assert status == 403, headers
        assert "refused" in json.loads(body)["error"]
    assert admin.controller.get("svc").items == []
    status, _, _ = request(
        admin, "POST", "/apply", {"files": files}, {"Origin": f"http://127.0.0.1:{admin.port}"}
    )
    assert status == 200


def test_methods_paths_and_bodies_are_checked(admin: Admin) -> None:
    status, headers, _ = request(admin, "GET", "/apply")
    assert (status, headers["allow"]) == (405, "POST")
    status, headers, _ = request(admin, "DELETE", "/resources?kind=vs")
    assert (status, headers["allow"]) == (405, "GET")
    assert request(admin, "GET", "/nothing")[0] == 404
    assert request(admin, "GET", "/resources")[0] == 400
    status, _, body = request(admin, "POST", "/apply", None, {"Content-Type": "text/plain"})
    assert status == 400 and "JSON" in json.loads(body)["error"]
    assert request(admin, "POST", "/delete", {"kind": "vs", "names": "x"})[0] == 400
    assert request(admin, "POST", "/apply", {"files": [], "namespace": "Bad_NS"})[0] == 400


def test_oversized_chunked_and_malformed_requests(admin: Admin) -> None:
    too_big = raw_request(
        admin,
        b"POST /apply HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16777217\r\n\r\n",
    )
    assert too_big.startswith(b"HTTP/1.1 413 ")
    chunked = raw_request(
        admin,
        b"POST /apply HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 411 ")
    assert raw_request(admin, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_request(admin, b"GET /ready HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    huge_head = b"GET /ready HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
    assert raw_request(admin, huge_head).startswith(b"HTTP/1.1 431 ")


# -- pure formatting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (25 * 60, "25m"),
        (5 * 3600 + 600, "5h10m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400 + 20 * 86400, "3y20d"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_human_duration_as_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_format_table_pads_as_tabwriter() -> None:
    now = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    item = {
        "metadata": {
            "name": "httpbin",
            "namespace": "default",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"hosts": ["httpbin", "x"], "gateways": ["mesh"]},
    }
    assert format_table("VirtualService", [item], now=now) == (
        'NAME      GATEWAYS   HOSTS             AGE\nhttpbin   ["mesh"]   ["httpbin","x"]   5m\n'
    )
    assert format_table("VirtualService", [item], all_namespaces=True, now=now).startswith(
        "NAMESPACE   NAME      GATEWAYS"
    )


def test_format_output_wraps_lists() -> None:
    item: dict[str, Any] = {"kind": "Service", "metadata": {"name": "a"}}
    assert yaml.safe_load(format_output("Service", [item], "yaml", single=True)) == item
    listed = json.loads(format_output("Service", [item], "json", single=False))
    assert listed["items"] == [item] and listed["kind"] == "List"
    assert format_output("Service", [item], "name", single=False) == "service/a\n"
