"""The proxy's pseudonym in Via: one per state directory, the same for every process on it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from shadowmesh.control.identity import proxy_pseudonym


def test_one_name_per_state_directory_kept_across_restarts(tmp_path: Path) -> None:
    first = proxy_pseudonym(tmp_path / "a")
    assert first.startswith("shadowmesh-") and len(first) == len("shadowmesh-") + 12
    assert proxy_pseudonym(tmp_path / "a") == first
    assert proxy_pseudonym(tmp_path / "b") != first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["pseudonym"]


def _draw(state: str) -> str:
    return proxy_pseudonym(state)


def test_processes_starting_at_once_agree(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        names = pool.map(_draw, [str(tmp_path / "s")] * 8)
    assert len(set(names)) == 1


def test_a_file_that_is_not_a_name_is_an_error_not_a_new_name(tmp_path: Path) -> None:
    (tmp_path / "pseudonym").write_text("not a token\n")
    with pytest.raises(OSError, match="holds no pseudonym"):
        proxy_pseudonym(tmp_path)
