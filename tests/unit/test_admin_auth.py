"""Admin API safety: loopback by default, a bearer token beyond it, no browser may drive it.

A real AdminServer on loopback (its loop in a thread), the real CLI verbs, and a real
``shadowmesh serve`` subprocess with ``--admin-token-file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from shadowmesh.admin.auth import (
    ENV_TOKEN_FILE,
    TokenError,
    authorized,
    is_loopback,
    load_token,
    serve_token,
)
from shadowmesh.admin.http import MAX_BODY
from shadowmesh.admin.server import AdminServer
from shadowmesh.cli.main import cli
from shadowmesh.control.controller import Controller
from shadowmesh.control.store import Store

TOKEN = "s3cr3t-token-0123456789abcdef"
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 8000}]
  selector: {app: web}
"""
# Every endpoint with the method it takes; each must refuse a request without the token.
ENDPOINTS = [
    ("POST", "/apply"),
    ("POST", "/delete"),
    ("GET", "/resources?kind=svc"),
    ("GET", "/config_dump"),
    ("GET", "/stats"),
    ("GET", "/stats/prometheus"),
    ("GET", "/nothing-here"),
]


@dataclass
class Admin:
    port: int
    controller: Controller

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _serve_admin(tmp_path: Path, token: str | None) -> Iterator[Admin]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    store = Store(tmp_path / "state")
    controller = Controller(store, lambda table: None)
    controller.start()
    server = AdminServer(
        controller, "127.0.0.1", 0, extra=lambda: {"downstream_active": 3}, token=token
    )
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield Admin(server.bound_port, controller)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        store.close()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Admin]:
    """An admin API that requires TOKEN."""
    yield from _serve_admin(tmp_path, TOKEN)


@pytest.fixture
def open_admin(tmp_path: Path) -> Iterator[Admin]:
    """An admin API on loopback without a token, as serve runs it by default."""
    yield from _serve_admin(tmp_path, None)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin.token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def apply_body() -> bytes:
    return json.dumps({"files": [{"source": "svc.yaml", "text": SERVICE}]}).encode()


# --- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_but_ready_requires_the_token(
    guarded: Admin, method: str, path: str
) -> None:
    body = apply_body() if method == "POST" else b""
    for headers in (
        {},
        bearer("wrong-token-0123456789abcdef"),
        bearer(TOKEN[:-1]),  # a prefix of the token
        bearer(TOKEN + "x"),  # the token and more
        {"Authorization": f"Basic {TOKEN}"},  # the right secret in the wrong scheme
        {"Authorization": TOKEN},
        {"X-Admin-Token": TOKEN},
    ):
        status, answer_headers, answer = request(guarded.port, method, path, headers, body)
        assert status == 401, (path, headers)
        assert answer_headers["www-authenticate"].startswith("Bearer")
        assert TOKEN.encode() not in answer  # the answer never echoes what was sent
        assert "--admin-token-file" in json.loads(answer)["error"]
    assert guarded.controller.get("svc").items == []


def test_the_token_opens_every_endpoint(guarded: Admin) -> None:
    status, _, answer = request(guarded.port, "POST", "/apply", bearer(), apply_body())
    assert (status, json.loads(answer)["lines"]) == (200, ["service/web created"])
    # The scheme is case-insensitive (RFC 9110 11.1).
    headers = {"Authorization": f"bearer {TOKEN}"}
    assert request(guarded.port, "GET", "/resources?kind=svc", headers)[0] == 200
    assert request(guarded.port, "GET", "/config_dump", bearer())[0] == 200
    status, _, answer = request(guarded.port, "GET", "/stats", bearer())
    assert (status, json.loads(answer)) == (200, {"downstream_active": 3})
    status, headers, answer = request(guarded.port, "GET", "/stats/prometheus", bearer())
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"shadowmesh_downstream_connections_active 3.0" in answer
    assert request(guarded.port, "GET", "/nothing-here", bearer())[0] == 404


def test_ready_needs_no_token_but_only_for_get(guarded: Admin) -> None:
    assert request(guarded.port, "GET", "/ready")[:1] == (200,)
    assert request(guarded.port, "POST", "/ready")[0] == 401
    assert request(guarded.port, "POST", "/ready", bearer())[0] == 405


def test_mutations_only_by_post_even_with_the_token(guarded: Admin) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
        for path in ("/apply", "/delete"):
            status, headers, _ = request(guarded.port, method, path, bearer(), apply_body())
            assert (status, headers["allow"]) == (405, "POST"), (method, path)
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = request(guarded.port, method, "/stats", bearer())
        assert (status, headers["allow"]) == (405, "GET")
    assert guarded.controller.get("svc").items == []


def test_authorized_compares_the_whole_token() -> None:
    assert authorized(f"Bearer {TOKEN}", TOKEN)
    assert authorized(f"  BEARER   {TOKEN}  ", TOKEN)
    for header in (None, "", "Bearer", "Bearer ", f"Bearer {TOKEN[:8]}", f"Token {TOKEN}"):
        assert not authorized(header, TOKEN), header
    # Whatever bytes a client sends, the check answers, never raises.
    assert not authorized("Bearer \xe9\xff\x00", TOKEN)


# --- loopback by default, a token required elsewhere ----------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    assert serve_token(host, None) == (None, [])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "10.1.2.3", "proxy.example"])
def test_anything_else_needs_a_token(host: str, token_file: Path) -> None:
    assert not is_loopback(host)
    with pytest.raises(TokenError, match="not loopback"):
        serve_token(host, None)
    assert serve_token(host, str(token_file)) == (TOKEN, [])


@pytest.mark.parametrize("admin", ["0.0.0.0:0", "[::]:0", "192.0.2.10:15000"])
def test_serve_refuses_to_start_exposed_without_a_token(tmp_path: Path, admin: str) -> None:
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["serve", "--state", str(state), "--admin", admin])
    assert result.exit_code == 2, result.output
    assert "--admin-token-file" in result.stderr and "not loopback" in result.stderr
    assert not state.exists()  # refused before anything was opened


def test_token_file_problems_are_clear(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(TokenError, match="cannot read the admin token file"):
        load_token(missing)
    for text in ("", "\n\n", "short", "has a space inside it!!", "tab\there-0123456789abc"):
        path = tmp_path / "token"
        path.write_text(text)
        with pytest.raises(TokenError, match="at least 16"):
            load_token(path)
    path = tmp_path / "token"
    path.write_bytes(b"\xff" * 20)
    with pytest.raises(TokenError, match="not ASCII"):
        load_token(path)


def test_a_token_file_others_can_read_is_warned_about(token_file: Path) -> None:
    token_file.chmod(0o644)
    token, warnings = serve_token("0.0.0.0", str(token_file))
    assert token == TOKEN and warnings and "chmod 600" in warnings[0]


# --- browsers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost:3000"},  # another local program's page
        {"Origin": "http://127.0.0.1:1"},  # loopback, but not this port
        {"Origin": "null"},  # sandboxed iframes and file:// pages
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_browser_requests_from_elsewhere_are_refused_token_or_not(
    guarded: Admin, open_admin: Admin, headers: dict[str, str]
) -> None:
    for admin, auth in ((guarded, bearer()), (open_admin, {})):
        status, _, body = request(admin.port, "POST", "/apply", {**headers, **auth}, apply_body())
        assert status == 403, (headers, admin)
        assert "refused" in json.loads(body)["error"]
        # Reads too: a page must not learn the config either.
        assert request(admin.port, "GET", "/config_dump", {**headers, **auth})[0] == 403
        assert admin.controller.get("svc").items == []


def test_same_origin_and_top_level_requests_pass(open_admin: Admin) -> None:
    same = {"Origin": f"http://127.0.0.1:{open_admin.port}", "Sec-Fetch-Site": "same-origin"}
    assert request(open_admin.port, "GET", "/stats", same)[0] == 200
    assert request(open_admin.port, "GET", "/stats", {"Sec-Fetch-Site": "none"})[0] == 200


def test_dns_names_in_host_are_refused_only_without_a_token(
    guarded: Admin, open_admin: Admin
) -> None:
    # Without a token, a DNS name could be a rebinding attack; with one, the page lacks the token.
    host = {"Host": "proxy.example:15000"}
    assert request(open_admin.port, "GET", "/stats", host)[0] == 403
    assert request(guarded.port, "GET", "/stats", {**host, **bearer()})[0] == 200
    assert request(guarded.port, "GET", "/stats", host)[0] == 401


def test_control_characters_in_the_target_or_a_header_are_refused(open_admin: Admin) -> None:
    for head in (
        b"GET /stats\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /st\x1bats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /stats\n HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x00b\r\n\r\n",
        b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\rb\r\n\r\n",
        b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX\n: a\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", open_admin.port), timeout=10) as s:
            s.sendall(head)
            answer = b"".join(iter(lambda: s.recv(65536), b""))
        assert answer.startswith(b"HTTP/1.1 400 "), head


# --- the CLI sends the token --------------------------------------------------------------------


def test_cli_sends_the_token_from_the_option_or_the_environment(
    guarded: Admin, token_file: Path, tmp_path: Path
) -> None:
    svc = tmp_path / "svc.yaml"
    svc.write_text(SERVICE)
    runner = CliRunner()
    base = ["--admin", guarded.address]
    result = runner.invoke(
        cli, ["apply", "-f", str(svc), *base, "--admin-token-file", str(token_file)]
    )
    assert (result.exit_code, result.stdout) == (0, "service/web created\n"), result.output
    env = {ENV_TOKEN_FILE: str(token_file)}
    result = runner.invoke(cli, ["get", "svc", *base], env=env)
    assert result.exit_code == 0 and "web" in result.stdout, result.output
    result = runner.invoke(cli, ["stats", *base], env=env)
    assert result.exit_code == 0 and "3 downstream active" in result.stdout, result.output
    result = runner.invoke(cli, ["delete", "svc", "web", *base], env=env)
    assert (result.exit_code, result.stdout) == (0, 'service "web" deleted\n'), result.output


def test_cli_without_the_token_says_what_to_do(guarded: Admin, tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["get", "svc"], ["stats"], ["stats", "-o", "prometheus"]):
        result = runner.invoke(cli, [*args, "--admin", guarded.address], env={ENV_TOKEN_FILE: None})
        assert result.exit_code == 1, (args, result.output)
        assert "requires a token" in result.stderr and "--admin-token-file" in result.stderr
    bad = tmp_path / "bad"
    bad.write_text("tiny")
    result = runner.invoke(
        cli, ["get", "svc", "--admin", guarded.address, "--admin-token-file", str(bad)]
    )
    assert result.exit_code == 1 and "at least 16" in result.stderr


# --- a real serve -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_with_token(tmp_path: Path, token_file: Path) -> Iterator[tuple[int, int]]:
    """A real ``serve`` with ``--admin-token-file``: (its admin port, its pid); it must exit 0
    and never print the token."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "shadowmesh", "serve",
            "--state", str(tmp_path / "state"),
            "--admin", f"127.0.0.1:{port}",
            "--admin-token-file", str(token_file),
            "--outbound", "off",
            "--access-log", "off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                assert request(port, "GET", "/ready")[0] == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert TOKEN not in stderr


def test_serve_with_a_token_file_enforces_it(tmp_path: Path, token_file: Path) -> None:
    with serve_with_token(tmp_path, token_file) as (port, _):
        assert request(port, "GET", "/stats")[0] == 401
        assert request(port, "GET", "/stats", bearer())[0] == 200
        env = {
            **os.environ,
            ENV_TOKEN_FILE: str(token_file),
            "SHADOWMESH_ADMIN": f"127.0.0.1:{port}",
        }
        svc = tmp_path / "svc.yaml"
        svc.write_text(SERVICE.replace("8000", str(_free_port())))
        done = subprocess.run(
            [sys.executable, "-m", "shadowmesh", "apply", "-f", str(svc)],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert (done.returncode, done.stdout) == (0, "service/web created\n"), done.stderr


# --- bodies: judged on the head, read only once admitted ------------------------------------


def head_only(port: int, head: bytes) -> bytes:
    """Send a request head announcing a body, send no body, and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)  # a server waiting for the body times this out
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_request_without_the_token_is_refused_before_its_body(guarded: Admin) -> None:
    head = b"POST /apply HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % MAX_BODY
    assert head_only(guarded.port, head).startswith(b"HTTP/1.1 401 ")
    # An unknown endpoint or a wrong method needs no body either.
    for target in (b"POST /nothing", b"GET /apply"):
        other = head.replace(b"POST /apply", target)
        other = other.replace(b"Host:", b"Authorization: Bearer " + TOKEN.encode() + b"\r\nHost:")
        assert head_only(guarded.port, other).split(b" ")[1] in (b"404", b"405")


def test_with_the_token_a_body_is_invited_and_read(guarded: Admin) -> None:
    body = apply_body()
    head = (
        b"POST /apply HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (TOKEN.encode(), len(body))
    )
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=5) as s:
        s.sendall(head)
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and b"service/web created" in answer


@pytest.mark.parametrize("expect", ["Expect:", "Expect: 100-continue"])
def test_a_body_too_large_gets_a_413_curl_can_read(
    open_admin: Admin, tmp_path: Path, expect: str
) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(MAX_BODY + 1)
    done = subprocess.run(
        [
            "curl", "-sS", "--max-time", "20", "-o", str(tmp_path / "answer"),
            "-w", "%{http_code}", "-H", expect, "--data-binary", f"@{big}",
            f"http://{open_admin.address}/apply",
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "413"), done.stderr
    assert "larger than" in json.loads((tmp_path / "answer").read_text())["error"]


def test_a_client_that_sends_its_whole_body_first_still_reads_the_413(open_admin: Admin) -> None:
    # http.client writes the whole body before it reads: closing on the unread body would
    # reset the connection under it and lose the answer.
    status, _, answer = request(open_admin.port, "POST", "/apply", body=bytes(MAX_BODY + 1))
    assert status == 413 and b"larger than" in answer


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_unauthorised_bodies_cost_the_admin_api_no_memory(tmp_path: Path, token_file: Path) -> None:
    body = bytes(MAX_BODY)  # as large as a body may be: before, each was read whole
    clients = 12
    answers: list[bytes] = []

    def send(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(
                b"POST /apply HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            try:
                s.sendall(body)
            except OSError:
                pass  # refused and closed: fine, as long as the answer came first
            answers.append(s.recv(65536))

    with serve_with_token(tmp_path, token_file) as (port, pid):
        before = peak_rss_kib(pid)
        threads = [threading.Thread(target=send, args=(port,)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        grown_mib = (peak_rss_kib(pid) - before) / 1024
    assert [a.split(b" ")[1] for a in answers] == [b"401"] * clients
    # 12 bodies of 16 MiB held at once were 190 MiB and more.
    assert grown_mib < 24, grown_mib
