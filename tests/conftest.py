"""Shared pytest configuration: markers (pyproject's addopts has --strict-markers)."""

from __future__ import annotations

import pytest

# Fixtures shared by the data-plane and end-to-end tests: a real `shadowmesh serve` (`serve`)
# and recording upstreams (`upstreams`).
pytest_plugins = ["tests.support.serve"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end to end, with real processes (shadowmesh serve, httpbin under gunicorn, curl)",
    )
