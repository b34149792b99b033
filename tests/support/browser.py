"""Debian's chromium driven by Playwright, for the browser tests (``/ui`` and the HTML report).

Playwright drives the system's chromium (``executable_path``); ``playwright install`` is never
run. Without chromium or Playwright the tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # a proxy from the environment must not see the admin API
]


def missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[test]'"
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM}: apt-get install chromium"
    return None


def browser_starter(tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Starts chromium, with a fresh profile, when called; gives its BrowserContext.

    Started on demand, after the traffic: a browser starting up takes the CPU that the
    latencies being compared are measured with. Skips (fails under CI) without chromium.
    """
    why = missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        contexts: list[Any] = []

        def start() -> Any:
            if not contexts:
                context = p.chromium.launch_persistent_context(
                    str(tmp_path / "chromium-profile"),
                    executable_path=str(CHROMIUM),
                    args=CHROMIUM_ARGS,
                    headless=True,
                    viewport={"width": 1440, "height": 900},
                )
                context.set_default_timeout(30_000)
                contexts.append(context)
            return contexts[0]

        try:
            yield start
        finally:
            for context in contexts:
                context.close()


class Console:
    """What the page logged: a script error or a blocked (CSP) action fails the test."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        page.on("console", lambda m: self.lines.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.lines.append(f"pageerror: {e}"))

    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith(("error", "pageerror"))]
