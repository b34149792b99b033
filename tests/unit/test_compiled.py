"""The mypyc-compiled hot path: that CI really runs it, and the guard that falls back to source."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from importlib.machinery import EXTENSION_SUFFIXES, SourceFileLoader
from importlib.util import module_from_spec
from pathlib import Path

import pytest

import shadowmesh
from shadowmesh import SourceFinder, hot_path_state
from shadowmesh._hotpath import MODULES
from tests.support.serve import free_port

# CI installs with SHADOWMESH_COMPILE=1: there a pure Python install must fail, not pass slower.
CI_COMPILES = os.environ.get("SHADOWMESH_COMPILE") == "1"
SUFFIX = EXTENSION_SUFFIXES[0]


@pytest.mark.skipif(not CI_COMPILES, reason="only where the install must compile (CI)")
def test_every_hot_path_module_is_loaded_compiled() -> None:
    assert os.environ.get("SHADOWMESH_PURE") != "1"
    loaded = {name: importlib.import_module(name).__file__ or "" for name in MODULES}
    assert {name: f for name, f in loaded.items() if not f.endswith(SUFFIX)} == {}
    assert shadowmesh.compiled()


def make_tree(root: Path, names: list[str], compiled: list[str]) -> None:
    """Sources for ``names`` and extensions for ``compiled``, all dated 1000 s ago."""
    old = time.time() - 1000
    for name in names:
        base = root.joinpath(*name.split("."))
        base.parent.mkdir(parents=True, exist_ok=True)
        files = [base.with_suffix(".py")]
        base.with_suffix(".py").write_text(f"WHERE = 'source of {name}'\n")
        if name in compiled:
            extension = base.parent / (base.name + SUFFIX)
            extension.write_bytes(b"not really an extension")
            files.append(extension)
        for path in files:
            os.utime(path, (old, old))


def touch(root: Path, name: str, suffix: str) -> None:
    base = root.joinpath(*name.split("."))
    (base.parent / (base.name + suffix)).touch()


NAMES = ["pkg.fast", "pkg.sub.faster"]


def test_no_extension_at_all_is_a_pure_install(tmp_path: Path) -> None:
    make_tree(tmp_path, NAMES, compiled=[])
    assert hot_path_state(str(tmp_path), NAMES, check_times=True) == ("pure", [])


def test_extensions_newer_than_their_sources_are_used(tmp_path: Path) -> None:
    make_tree(tmp_path, NAMES, compiled=NAMES)
    assert hot_path_state(str(tmp_path), NAMES, check_times=True) == ("compiled", [])
    touch(tmp_path, "pkg.fast", SUFFIX)  # rebuilt after
    assert hot_path_state(str(tmp_path), NAMES, check_times=True) == ("compiled", [])


def test_a_source_edited_after_compiling_makes_the_set_stale(tmp_path: Path) -> None:
    make_tree(tmp_path, NAMES, compiled=NAMES)
    touch(tmp_path, "pkg.sub.faster", ".py")
    assert hot_path_state(str(tmp_path), NAMES, check_times=True) == ("stale", ["pkg.sub.faster"])
    # From a wheel, install order sets the times: they are not compared.
    assert hot_path_state(str(tmp_path), NAMES, check_times=False) == ("compiled", [])


def test_a_listed_module_never_compiled_makes_the_set_stale(tmp_path: Path) -> None:
    make_tree(tmp_path, NAMES, compiled=["pkg.fast"])
    for check_times in (True, False):
        assert hot_path_state(str(tmp_path), NAMES, check_times) == ("stale", ["pkg.sub.faster"])


def test_the_source_finder_loads_the_py_past_its_extension(tmp_path: Path) -> None:
    make_tree(tmp_path, NAMES, compiled=NAMES)
    finder = SourceFinder(str(tmp_path), NAMES)
    assert finder.find_spec("pkg.other", None) is None
    assert finder.find_spec("shadowmesh.cli.main", None) is None
    spec = finder.find_spec("pkg.sub.faster", None)
    assert spec is not None and isinstance(spec.loader, SourceFileLoader)
    assert spec.origin == str(tmp_path / "pkg" / "sub" / "faster.py")
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.WHERE == "source of pkg.sub.faster"


def serve_reports(tmp_path: Path, pure: bool) -> tuple[str, object]:
    """The hot-path line a real ``serve`` prints at start, and ``compiled`` from its /stats."""
    admin = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SHADOWMESH_PURE"}
    if pure:
        env["SHADOWMESH_PURE"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shadowmesh", "serve", "--state", str(tmp_path / "state")]
        + ["--admin", f"127.0.0.1:{admin}", "--outbound", "off", "--access-log", "off"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=2) as r:
                    stats = json.load(r)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    lines = [line for line in stderr.splitlines() if line.startswith("shadowmesh hot path:")]
    assert len(lines) == 1, stderr
    return lines[0], stats["compiled"]


def test_serve_says_pure_python_when_told_to(tmp_path: Path) -> None:
    line, compiled = serve_reports(tmp_path, pure=True)
    assert line.startswith("shadowmesh hot path: pure Python") and compiled is False


@pytest.mark.skipif(
    not (CI_COMPILES or shadowmesh.compiled()), reason="this install is pure Python"
)
def test_serve_says_compiled_when_it_is(tmp_path: Path) -> None:
    assert serve_reports(tmp_path, pure=False) == ("shadowmesh hot path: compiled (mypyc)", True)
