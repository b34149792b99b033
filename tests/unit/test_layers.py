"""The layers of pyproject.toml's [tool.importlinter] hold (README, Architecture): what
``lint-imports`` checks in .ci/run, here too so that a plain ``pytest`` sees a broken one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[2]
LINT = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package under ``root``, with its pyproject.toml."""
    return subprocess.run(
        [sys.executable, "-c", LINT],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_import_contract_is_kept() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_layers(tmp_path: Path) -> None:
    # A copy of the package with one import pointing up: routing may not know control.
    shutil.copytree(
        ROOT / "shadowmesh", tmp_path / "shadowmesh", ignore=shutil.ignore_patterns("*.so")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "shadowmesh" / "routing" / "upward.py").write_text(
        "import shadowmesh.control.store\n"
    )
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "shadowmesh.routing is not allowed to import shadowmesh.control" in result.stdout
