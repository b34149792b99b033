"""The admin web page (``/ui``) in a real headless browser: Debian's chromium, driven by Playwright.

The first test plays issue 5's scenario (``tests/support/compare_live``: v2 renames a field on
/json, answers 500 on /get, is slower on /json) and reads the page as a person would: the
comparison, its regressions, the noise, the mirrors, rates that move. It leaves a screenshot in
its tmp dir and at SCREENSHOT_COPY. The second runs ``serve`` with an admin token: the page asks
for it and never puts it in a URL.

The browser is tests/support/browser.py's: the system's chromium, never ``playwright install``.
"""

from __future__ import annotations

import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import compare_live
from tests.support.browser import Console, browser_starter
from tests.support.serve import Served, free_port, mesh_yaml

SCREENSHOT_COPY = Path("/tmp/shadowmesh-ui.png")
COMPARISON = f'[data-comparison="default/{compare_live.COMPARISON}"]'
TOKEN = "0123456789abcdef0123456789abcdef"
NONZERO_RATE = re.compile(r"^(?!0\.0\b)[0-9]")  # "19/s", "0.5 req/s"; not "0.0/s" nor "–/s"


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[], Any]]:
    yield from browser_starter(tmp_path)


def number(text: str) -> int:
    return int("".join(c for c in text if c.isdigit()) or "0")


# --- the scenario --------------------------------------------------------------------------------


@pytest.fixture
def versions(tmp_path: Path) -> Iterator[dict[str, int]]:
    with compare_live.start_versions(tmp_path / "logs") as ports:
        yield ports


class Traffic:
    """Requests through the proxy on a thread, round after round, until stopped."""

    def __init__(self, port: int) -> None:
        self.statuses: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self, port: int) -> None:
        # Gently: the comparison measures latencies, and the browser shares the CPU.
        while not self._stop.is_set():
            self.statuses += compare_live.send_traffic(port, rounds=1)
            self._stop.wait(0.5)


@pytest.mark.e2e
def test_the_page_shows_the_comparison_its_regressions_and_the_mirrors(
    browser: Callable[[], Any],  # first: without chromium, skip before starting anything
    versions: dict[str, int],
    serve: Callable[..., Served],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    config = compare_live.mesh_yaml(versions["v1"], versions["v1b"], versions["v2"])
    s = serve(config, "--shadow-timeout", "10")
    sent = compare_live.ROUNDS * len(compare_live.ENDPOINTS)
    assert compare_live.send_traffic(s.port) == ["200"] * sent
    compare_live.wait_for_report(s.admin, sent)

    page = browser().new_page()
    console = Console(page)
    answer = page.goto(f"http://127.0.0.1:{s.admin}/ui")
    assert answer is not None and answer.status == 200
    headers = answer.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"

    card = page.locator(COMPARISON)
    card.wait_for()
    assert card.get_attribute("data-verdict") == "regression"
    compared = card.locator('[data-figure="requests compared"] .figure-value')
    assert number(compared.inner_text()) >= sent

    # The regressions: open by default, highlighted, named as such.
    for endpoint, field in (
        ("GET /json", "body.slideshow.author"),
        ("GET /json", "body.slideshow.writer"),
        ("GET /get", "status"),
    ):
        row = card.locator(f'tr[data-detail-for="{endpoint}"] tr.field[data-field="{field}"]')
        assert row.is_visible(), (endpoint, field)
        assert row.get_attribute("data-verdict") == "regression", (endpoint, field)
        assert "verdict-regression" in (row.get_attribute("class") or "")
        assert row.locator(".badge").inner_text().lower() == "regression"
    # The worst first, on one screen: the top regressions, as the report ranks them.
    top = card.locator(".top-regressions li")
    assert top.count() >= 3 and top.first.is_visible()
    tops = {(top.nth(i).get_attribute("data-endpoint"), top.nth(i).get_attribute("data-field"))
            for i in range(top.count())}  # fmt: skip
    assert {("GET /get", "status"), ("GET /json", "body.slideshow.author")} <= tops, tops
    get_row = card.locator('tr.endpoint[data-endpoint="GET /get"]')
    assert "200 → 500" in get_row.inner_text()
    json_row = card.locator('tr.endpoint[data-endpoint="GET /json"]')
    # The page says what the report says: "slower" where latency was judged a regression; on a
    # loaded machine the shadows can be saturated or queued, and then latency is not judged
    # (compare/report.py's _judge_latency), which the page must show as such, not as slower.
    report = compare_live.wait_for_report(s.admin, sent)
    latency = {e["endpoint"]: e["latency"]["verdict"] for e in report["endpoints"]}["GET /json"]
    assert latency in ("regression", "insufficient data"), latency
    shown = json_row.inner_text().lower()
    if latency == "regression":
        assert "slower" in shown
    else:
        assert "(too few)" in shown and "slower" not in shown
    json_chart = card.locator('tr[data-detail-for="GET /json"] svg.bars')
    assert json_chart.locator("rect.bar.side-candidate").count() == 3
    assert json_chart.locator("rect.bar.side-baseline").count() == 3
    assert json_chart.locator("rect.bar.side-primary").count() == 0  # never against the primary

    # /uuid: a new value on every call, on every side: noise, greyed out, never a regression.
    # (Its latency is the analyzer's to judge, on a loaded machine: not asserted here.)
    uuid_row = card.locator('tr.endpoint[data-endpoint="GET /uuid"]')
    uuid_detail = card.locator('tr[data-detail-for="GET /uuid"]')
    if not uuid_detail.is_visible():  # open by default only if it needs a look
        uuid_row.click()
    uuid_detail.wait_for(state="visible")
    uuid_fields = uuid_detail.locator("tr.field")
    verdicts = {
        uuid_fields.nth(i).get_attribute("data-verdict") for i in range(uuid_fields.count())
    }
    assert verdicts == {"noise"}
    noise_color = uuid_fields.first.evaluate("e => getComputedStyle(e).color")
    writer = card.locator('tr.field[data-field="body.slideshow.writer"]')
    assert noise_color != writer.evaluate("e => getComputedStyle(e).color")

    # A field's kept examples, side by side: the primary has no writer, the candidate has.
    writer.click()
    examples = writer.locator("xpath=following-sibling::tr[1]")
    examples.wait_for(state="visible")
    primary = examples.locator(".example-value.side-primary").first
    candidate = examples.locator(".example-value.side-candidate").first
    assert "absent" in primary.inner_text()
    assert "Yours Truly" in candidate.inner_text()
    # ...and the drill-down to reproduce it: the full responses and a curl line per version.
    reproduce = examples.locator("details.reproduce").first
    reproduce.locator("summary").click()
    curl = reproduce.locator('pre.curl[data-side="candidate"]')
    assert curl.inner_text().startswith("curl -sS -i -X GET")
    assert '"http://$CANDIDATE"' in curl.inner_text() and "/json" in curl.inner_text()

    # A list in another order: its example names the index that moved, and where to.
    slides = card.locator('tr.field[data-field="body.slideshow.slides"]')
    slides.click()
    array = slides.locator("xpath=following-sibling::tr[1]").locator(".example-array").first
    array.wait_for(state="visible")
    assert array.get_attribute("data-path") == "body.slideshow.slides"
    assert "2 → 2 elements, 1 in order" in array.inner_text()
    moved = array.locator('[data-kind="moved"] .index')
    assert moved.count() == 1 and moved.first.inner_text() in ("0 → 1", "1 → 0")

    # The route table: the primary's weight and both mirror targets with their percentages.
    vhost = page.locator('[data-vhost="httpbin.default.svc.cluster.local"]')
    assert "100%" in vhost.locator('.dest[data-destination="v1"]').inner_text()
    for subset in ("v2", "v1b"):
        mirror = vhost.locator(f'.mirror[data-mirror="{subset}"]')
        assert mirror.is_visible(), subset
        assert "100%" in mirror.inner_text(), subset

    # Live: more traffic shows up without a reload, as rates and as more requests compared.
    # (expect(), not wait_for_function: the page's CSP refuses eval, and should.)
    with Traffic(s.port) as traffic:
        expect(compared).not_to_have_text(compared.inner_text())
        for tile in ("Requests", "Shadows sent"):
            expect(page.locator(f'[data-tile="{tile}"] .tile-value')).to_have_text(NONZERO_RATE)
        v1_rate = vhost.locator('.dest[data-destination="v1"] .rate')
        expect(v1_rate).to_have_text(NONZERO_RATE)
        page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar at the top of the shot
        shot = tmp_path / "shadowmesh-ui.png"
        # caret="initial": Playwright's own caret-hiding style would be refused by the page's CSP.
        page.screenshot(path=str(shot), full_page=True, caret="initial")
    shutil.copyfile(shot, SCREENSHOT_COPY)
    assert set(traffic.statuses) <= {"200"}

    assert page.evaluate("document.body.dataset.state") == "live"
    assert console.errors() == []


# --- with a token --------------------------------------------------------------------------------


def _get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}


MIRROR = "    mirror: {host: app, subset: v2}\n    mirrorPercentage: {value: 25}\n"


@pytest.mark.e2e
def test_with_a_token_the_page_asks_for_it_and_never_puts_it_in_a_url(
    browser: Callable[[], Any], serve: Callable[..., Served], tmp_path: Path
) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    s = serve(mesh_yaml(free_port(), free_port(), MIRROR), "--admin-token-file", str(token_file))
    base = f"http://127.0.0.1:{s.admin}"

    # The page is code and is served to anyone; what it shows needs the token.
    status, headers = _get(f"{base}/ui")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    status, headers = _get(f"{base}/ui/ui.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert headers["x-content-type-options"] == "nosniff"
    assert _get(f"{base}/ui/nothing.js")[0] == 404
    assert _get(f"{base}/ui", method="POST")[0] == 405
    assert _get(f"{base}/config_dump")[0] == 401
    assert _get(f"{base}/config_dump", TOKEN)[0] == 200

    page = browser().new_page()
    console = Console(page)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(f"{base}/ui")
    form = page.locator("#token-form")
    form.wait_for(state="visible")
    assert page.locator(".mirror").count() == 0

    page.fill("#token-input", "not-the-token-0123456789")
    page.click("#token-form button[type=submit]")
    page.locator("#token-error").wait_for(state="visible")
    assert "refused" in page.locator("#token-error").inner_text()

    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    mirror = page.locator('.mirror[data-mirror="v2"]')
    mirror.wait_for()
    assert "25%" in mirror.inner_text()
    assert not form.is_visible()

    # The fragment form: read once, then gone from the address bar; never sent anywhere.
    other = browser().new_page()
    other.on("request", lambda r: urls.append(r.url))
    other.goto(f"{base}/ui#token={TOKEN}")
    other.locator('.mirror[data-mirror="v2"]').wait_for()
    assert TOKEN not in other.url
    assert not [u for u in urls if TOKEN in u.split("#")[0]]

    # 401s for the wrong token are expected console lines; nothing else is.
    unexpected = [e for e in console.errors() if "401" not in e]
    assert unexpected == []


def test_the_static_files_are_in_the_package() -> None:
    """What the wheel ships is what the page loads (hatch takes every file under shadowmesh/)."""
    from shadowmesh.admin import ui

    assert b'src="/ui/ui.js"' in ui.asset("ui.html")
    assert b'href="/ui/ui.css"' in ui.asset("ui.html")
    assert b"<script>" not in ui.asset("ui.html")  # no inline script: the CSP forbids it
    assert "'unsafe-inline'" not in ui.CSP
