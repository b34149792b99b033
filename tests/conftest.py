"""Shared pytest configuration: markers (pyproject's addopts has --strict-markers)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end to end, with real processes (shadowmesh serve, httpbin under gunicorn, curl)",
    )
