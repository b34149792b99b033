"""Shared pytest configuration: markers (pyproject's addopts has --strict-markers)."""

from __future__ import annotations

import pytest

import shadowmesh

# Fixtures shared by the data-plane and end-to-end tests: a real `shadowmesh serve` (`serve`)
# and recording upstreams (`upstreams`).
pytest_plugins = ["tests.support.serve"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end to end, with real processes (shadowmesh serve, httpbin under gunicorn, curl)",
    )


def pytest_report_header() -> str:
    # Whether this run tests the mypyc-compiled hot path, and if not why (a stale build...).
    return f"shadowmesh hot path: {shadowmesh.hot_path()}"
