"""A damaged, unreadable or full config store: ``serve`` says so in one line and exits 1.

Each variant is made for real (bytes cut or overwritten, a directory where the file should be,
a row rewritten behind the store's back, SQLite's own size limit standing in for a full disk)
and ``python -m shadowmesh serve`` is run on it: exit 1, one line naming the file and what to
do, no traceback, and never a proxy started with an empty config over a store that held one.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shadowmesh.admin.client import AdminClient
from shadowmesh.control.store import DB_NAME, Store
from shadowmesh.errors import ShadowmeshError
from shadowmesh.model.load import load_text
from tests.support.serve import free_port

DOCUMENTS = 120  # enough rows for the file to span many pages


def services(count: int = DOCUMENTS, prefix: str = "svc") -> str:
    return "---\n".join(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Service
            metadata: {{name: {prefix}-{i}}}
            spec:
              selector: {{app: {prefix}-{i}}}
              ports: [{{name: http, port: {30000 + i}, targetPort: 80}}]
            """
        )
        for i in range(count)
    )


def stored(state: Path) -> Path:
    """A store holding DOCUMENTS Services, closed (so the file holds everything)."""
    with Store(state) as store:
        store.apply(load_text(services(), "svc.yaml").documents)
    return state / DB_NAME


# Patches sqlite3.connect before the CLI runs, so that every connection the config store opens
# is limited to a few pages: SQLite then fails a write as it does on a full disk (SQLITE_FULL).
FULL_DISK = """
import runpy, sqlite3, sys
connect = sqlite3.connect
def small(path, *args, **kwargs):
    db = connect(path, *args, **kwargs)
    if str(path).endswith({suffixes}):
        db.execute("PRAGMA max_page_count = {pages}")
    return db
sqlite3.connect = small
sys.argv = ["shadowmesh", *sys.argv[1:]]
runpy.run_module("shadowmesh", run_name="__main__")
"""


CONFIG_DB = ("config.db", "config.db.new")


def serve(state: Path, *args: str, prelude: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", prelude] if prelude else [sys.executable, "-m", "shadowmesh"]
    return subprocess.run(
        [
            *command,
            "serve",
            "--state",
            str(state),
            "--admin",
            f"127.0.0.1:{free_port()}",
            "--outbound",
            "off",
            "--access-log",
            "off",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_exit_1(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    # An editable install older than its sources says so on every start: not ours to count.
    lines = [x for x in result.stderr.strip().splitlines() if "since it was compiled" not in x]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_truncated_store(tmp_path: Path) -> None:
    db = stored(tmp_path / "state")
    with open(db, "r+b") as f:
        f.truncate(os.path.getsize(db) // 2)
    line = one_line_exit_1(serve(tmp_path / "state"), str(db), "damaged", "backup")
    assert "malformed" in line or "not a database" in line


def test_garbage_bytes_instead_of_a_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(os.urandom(8192))
    one_line_exit_1(serve(state), str(state / DB_NAME), "damaged", "backup")


def test_a_zero_byte_store_is_not_started_empty(tmp_path: Path) -> None:
    db = stored(tmp_path / "state")
    db.write_bytes(b"")  # the store held 120 Services
    one_line_exit_1(serve(tmp_path / "state"), str(db), "empty (0 bytes)", "backup")
    assert db.stat().st_size == 0  # and it was left as it was


def test_a_store_that_cannot_be_opened(tmp_path: Path) -> None:
    # The tests run as root, whom file modes do not stop: a directory in the file's place does.
    state = tmp_path / "state"
    (state / DB_NAME).mkdir(parents=True)
    one_line_exit_1(serve(state), str(state / DB_NAME), "cannot be opened")


def test_a_state_directory_that_is_a_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    one_line_exit_1(serve(state), str(state), "state directory")


def test_a_row_that_does_not_decode(tmp_path: Path) -> None:
    db = stored(tmp_path / "state")
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE resources SET document = '{\"spec\": [' WHERE name = 'svc-7'")
    raw.close()
    line = one_line_exit_1(serve(tmp_path / "state"), str(db), "Service default/svc-7")
    assert "DELETE FROM resources WHERE kind = 'Service'" in line


@pytest.mark.parametrize("pages", [2, 12])
def test_a_full_disk(tmp_path: Path, pages: int) -> None:
    """2 pages: the new store cannot even be made; 12: it is, the -f apply is not."""
    config = tmp_path / "many.yaml"
    config.write_text(services(400, "big"))
    prelude = FULL_DISK.format(pages=pages, suffixes=CONFIG_DB)
    result = serve(tmp_path / "state", "-f", str(config), prelude=prelude)
    one_line_exit_1(result, str(tmp_path / "state" / DB_NAME), "disk is full")
    if pages == 12:
        with Store(tmp_path / "state") as store:
            assert store.rows() == [] and store.revision == 0  # nothing half-written


def test_a_full_disk_under_a_running_proxy(tmp_path: Path) -> None:
    """The apply gets that one line and exit 1; the proxy keeps serving what it had."""
    admin = free_port()
    small = tmp_path / "small.yaml"
    small.write_text(services(1, "first"))
    big = tmp_path / "big.yaml"
    big.write_text(services(400, "big"))
    argv = [
        sys.executable, "-c", FULL_DISK.format(pages=12, suffixes=CONFIG_DB), "serve",
        "--state", str(tmp_path / "state"), "--admin", f"127.0.0.1:{admin}",
        "--outbound", "off", "--access-log", "off", "-f", str(small),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        client = AdminClient(f"127.0.0.1:{admin}", timeout=10)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                if client.get("/ready")[0] == 200:
                    break
            except ShadowmeshError:
                pass
            time.sleep(0.05)
        apply = subprocess.run(
            [sys.executable, "-m", "shadowmesh", "apply", "-f", str(big), "--admin",
             f"127.0.0.1:{admin}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        one_line_exit_1(apply, str(tmp_path / "state" / DB_NAME), "disk is full")
        got = subprocess.run(
            [sys.executable, "-m", "shadowmesh", "get", "svc", "--admin", f"127.0.0.1:{admin}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert got.returncode == 0 and "first-0" in got.stdout and "big-" not in got.stdout
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err


def test_a_full_disk_for_the_other_databases(tmp_path: Path) -> None:
    """The comparisons' database, in the same state directory, fails on the same full disk."""
    prelude = FULL_DISK.format(pages=12, suffixes=("",))  # every database
    result = serve(tmp_path / "state", prelude=prelude)
    one_line_exit_1(result, str(tmp_path / "state"), "full")
