"""Comparison reports end to end: ``shadowmesh apply`` of a Comparison, an Analyzer fed with
captured exchanges (as the data plane will feed it), the admin API's ``/comparisons`` and
``shadowmesh diff`` in every output format, and its exit codes for CI."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from shadowmesh.admin.http import Request
from shadowmesh.admin.server import AdminServer
from shadowmesh.cli.main import cli
from shadowmesh.compare.analyzer import Analyzer
from shadowmesh.compare.capture import CapturedExchange, CapturedResponse
from shadowmesh.control.controller import Controller
from shadowmesh.control.store import Store
from shadowmesh.model.comparison import Comparison, comparisons_for
from shadowmesh.model.load import load_text
from tests.support.browser import Console, browser_starter

pytestmark = pytest.mark.e2e

SHADOWMESH = Path(sys.executable).parent / "shadowmesh"
JUNIT_XSD = Path(__file__).parent.parent / "schemas" / "junit.xsd"
REPORT_SCREENSHOT_COPY = Path("/tmp/shadowmesh-report.png")
CONFIG = """\
apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec:
  ports: [{name: http, port: 8000}]
  selector: {app: httpbin}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1b, labels: {version: v1b}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin, subset: v1}
    mirrors:
    - destination: {host: httpbin, subset: v2}
    - destination: {host: httpbin, subset: v1b}
---
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {name: httpbin-v2}
spec:
  host: httpbin
  primary: {subset: v1}
  candidate: {subset: v2}
  baseline: {subset: v1b}
  ignore: [header.server]
  thresholds: {minPairs: 10, latencyMinSeconds: 0}  # fed in a burst
---
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {name: no-baseline}
spec:
  host: httpbin
  primary: {subset: v1b}  # one Comparison per host and primary
  candidate: {subset: v2}
  thresholds: {minPairs: 5}
"""


@dataclass
class Stack:
    address: str
    port: int
    analyzer: Analyzer
    comparisons: list[Comparison]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A real AdminServer with an Analyzer, its loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    store = Store(tmp_path / "state")
    controller = Controller(store, lambda table: None)
    controller.start()
    current: list[Comparison] = []
    analyzer = Analyzer(tmp_path / "state", lambda: current)
    server = AdminServer(controller, "127.0.0.1", 0, analyzer=analyzer)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    port = server.bound_port
    yield Stack(f"127.0.0.1:{port}", port, analyzer, current)
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    analyzer.close()
    store.close()


def run(stack: Stack, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args, "--admin", stack.address], input=stdin)


def get(stack: Stack, path: str, method: str = "GET") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn.request(method, path)
    response = conn.getresponse()
    result = response.status, json.loads(response.read())
    conn.close()
    return result


def reply(
    body: Any, status: int = 200, ms: float = 10.0, ctype: str = "application/json"
) -> CapturedResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return CapturedResponse(
        status, (("content-type", ctype), ("server", "gunicorn")), data, False, ms
    )


def captured(name: str, path: str, *sides: CapturedResponse | None) -> CapturedExchange:
    primary, candidate, baseline = sides
    assert primary is not None
    return CapturedExchange(
        ("default", name),
        str(uuid.uuid4()),
        time.time(),
        "GET",
        path,
        (),
        primary,
        candidate,
        baseline,
    )


def traffic(name: str, requests: int = 20) -> list[CapturedExchange]:
    out = []
    for i in range(requests):
        ids = [{"uuid": str(uuid.uuid4())} for _ in range(3)]
        out.append(captured(name, "/uuid", reply(ids[0]), reply(ids[1]), reply(ids[2])))
        old, new = (
            {"slideshow": {"author": "Yours Truly"}},
            {"slideshow": {"writer": "Yours Truly"}},
        )
        out.append(captured(name, "/json", reply(old), reply(new, ms=45.0), reply(old, ms=11.0)))
        out.append(
            captured(
                name,
                f"/status/{200 + i % 2}",
                reply(b"", ctype="text/html"),
                reply(b"oops", 500, ctype="text/html"),
                reply(b"", ctype="text/html"),
            )
        )
        same = {"url": "http://httpbin/get"}
        out.append(captured(name, "/get", reply(same), reply(same), reply(same)))
    return out


def configure(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    result = run(stack, "apply", "-f", str(path))
    assert result.exit_code == 0, result.output
    assert "comparison.shadowmesh.io/httpbin-v2 created" in result.stdout
    assert "Comparison default/httpbin-v2" not in result.stderr  # both subsets are mirrored
    # What the data plane does on each config change: comparisons_for the new resources.
    stack.comparisons[:] = comparisons_for(d.resource for d in load_text(CONFIG, "c").documents)


def feed(stack: Stack, exchanges: list[CapturedExchange]) -> None:
    for e in exchanges:
        assert stack.analyzer.submit(e)
    assert stack.analyzer.wait_idle(30)


def test_get_comparisons_lists_them_like_kubectl(stack: Stack, tmp_path: Path) -> None:
    configure(stack, tmp_path)
    result = run(stack, "get", "cmp")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "HOST", "PRIMARY", "CANDIDATE", "BASELINE", "AGE"]
    assert lines[1].split()[:5] == ["httpbin-v2", "httpbin", "v1", "v2", "v1b"]
    assert lines[2].split()[:5] == ["no-baseline", "httpbin", "v1b", "v2", "<none>"]
    result = run(stack, "delete", "comparison", "no-baseline")
    assert result.stdout == 'comparison.shadowmesh.io "no-baseline" deleted\n'


def test_diff_reports_the_regressions_and_not_the_noise(stack: Stack, tmp_path: Path) -> None:
    configure(stack, tmp_path)
    feed(stack, traffic("httpbin-v2"))

    text = subprocess.run(
        [str(SHADOWMESH), "diff", "httpbin-v2", "--admin", stack.address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert out.startswith("Comparison default/httpbin-v2: host httpbin, primary v1, candidate v2")
    assert "verdict: REGRESSION" in out
    assert "\x1b[" not in out  # no colour codes into a pipe
    rows = {
        line.split()[0] + " " + line.split()[1]: line
        for line in out.splitlines()
        if line.startswith("GET ")
    }
    assert "regression" in rows["GET /json"] and "regression" in rows["GET /status/{id}"]
    assert "200->500 x20" in rows["GET /status/{id}"]
    assert " ok " in rows["GET /uuid"] and " ok " in rows["GET /get"]  # /uuid's field: noise
    assert "latency slower: median x4.09" in out
    assert "largest of 4 endpoints: GET /get 20 (25.0%), GET /json 20 (25.0%)," in out

    gate = run(stack, "diff", "httpbin-v2", "--fail-on", "regression")
    assert gate.exit_code == 1 and "REGRESSION" in gate.stdout

    answer = json.loads(run(stack, "diff", "httpbin-v2", "-o", "json").stdout)
    regressions = {
        (e["endpoint"], f["field"])
        for e in answer["endpoints"]
        for f in e["fields"]
        if f["verdict"] == "regression"
    }
    assert ("GET /json", "body.slideshow.author") in regressions
    assert ("GET /status/{id}", "status") in regressions
    assert not any(endpoint in ("GET /uuid", "GET /get") for endpoint, _ in regressions)
    assert [(e["endpoint"], e["requests"]) for e in answer["largest"]][:2] == [
        ("GET /get", 20),
        ("GET /json", 20),
    ]

    junit = ET.fromstring(run(stack, "diff", "httpbin-v2", "-o", "junit").stdout)
    failed = {
        (c.get("classname"), c.get("name"))
        for c in junit.iter("testcase")
        if c.find("failure") is not None
    }
    assert ("default.httpbin-v2.GET /json", "body.slideshow.author") in failed
    assert ("default.httpbin-v2.GET /json", "latency") in failed
    assert ("default.httpbin-v2", "verdict") in failed
    assert not any("/uuid" in str(cls) for cls, _ in failed)

    page = run(stack, "diff", "httpbin-v2", "-o", "html").stdout
    assert '<tr class="regression"><td><code>body.slideshow.author</code>' in page
    assert "<h3>largest of 4 endpoints</h3>" in page


def test_fail_on_difference_and_noise_only(stack: Stack, tmp_path: Path) -> None:
    configure(stack, tmp_path)
    noise_only = [e for e in traffic("httpbin-v2", 10) if e.path in ("/uuid", "/get")]
    feed(stack, noise_only)
    for fail_on in ("regression", "difference"):
        result = run(stack, "diff", "httpbin-v2", "--fail-on", fail_on)
        assert result.exit_code == 0, (fail_on, result.output)
    changed = [e for e in traffic("no-baseline", 5) if e.path == "/json"]
    feed(stack, [CapturedExchange(**{**_fields(e), "baseline": None}) for e in changed])
    assert run(stack, "diff", "no-baseline", "--fail-on", "regression").exit_code == 0
    assert run(stack, "diff", "no-baseline", "--fail-on", "difference").exit_code == 1


def _fields(e: CapturedExchange) -> dict[str, Any]:
    return {name: getattr(e, name) for name in e.__slots__}


def test_diff_without_a_name_reports_every_comparison(stack: Stack, tmp_path: Path) -> None:
    configure(stack, tmp_path)
    feed(stack, traffic("httpbin-v2", 3))
    result = run(stack, "diff")
    assert result.exit_code == 0, result.output
    assert "Comparison default/httpbin-v2" in result.stdout
    assert "Comparison default/no-baseline" in result.stdout
    assert "compared 0 requests" in result.stdout
    listing = json.loads(run(stack, "diff", "-o", "json").stdout)
    assert [r["name"] for r in listing["items"]] == ["httpbin-v2", "no-baseline"]
    assert run(stack, "diff", "-n", "other").stderr == "No comparisons found in other namespace.\n"
    # Nothing to judge is never a pass: no Comparison, or one with nothing compared.
    assert run(stack, "diff", "-n", "other", "--fail-on", "regression").exit_code == 1
    gate = run(stack, "diff", "no-baseline", "--fail-on", "regression")
    assert gate.exit_code == 1 and "INSUFFICIENT DATA: nothing compared yet" in gate.stdout
    allowed = ["--fail-on", "regression", "--allow-insufficient"]
    assert run(stack, "diff", "no-baseline", *allowed).exit_code == 0
    # A deleted Comparison is not among those that exist now (its data ages out).
    stack.comparisons[:] = [c for c in stack.comparisons if c.meta.name != "no-baseline"]
    listing = json.loads(run(stack, "diff", "-o", "json").stdout)
    assert [r["name"] for r in listing["items"]] == ["httpbin-v2"]


def test_diff_reset_and_threshold_overrides(stack: Stack, tmp_path: Path) -> None:
    configure(stack, tmp_path)
    feed(stack, traffic("httpbin-v2", 12))
    loose = json.loads(run(stack, "diff", "httpbin-v2", "-o", "json").stdout)
    assert loose["thresholds"]["min_pairs"] == 10 and loose["verdict"] == "regression"
    strict = run(
        stack, "diff", "httpbin-v2", "--min-pairs", "100", "--alpha", "0.001",
        "--latency-min-seconds", "5", "--min-field-effect", "2", "--min-field-relative", "40",
        "--latency-min-effect", "30", "--latency-min-ms", "4", "-o", "json",
    )  # fmt: skip
    answer = json.loads(strict.stdout)
    assert answer["thresholds"] == {
        **loose["thresholds"],
        "min_pairs": 100,
        "alpha": 0.001,
        "latency_min_seconds": 5,
        "min_excess": 0.02,
        "min_relative": 0.4,
        "latency_min_relative": 0.3,
        "latency_min_absolute_ms": 4,
    }
    latency = {e["endpoint"]: e["latency"]["verdict"] for e in answer["endpoints"]}
    assert latency["GET /json"] == "insufficient data"
    assert get(stack, "/comparisons/default/httpbin-v2?alpha=2")[0] == 400
    assert get(stack, "/comparisons/default/httpbin-v2?since=soon")[0] == 400
    hour = json.loads(run(stack, "diff", "httpbin-v2", "--since", "1h", "-o", "json").stdout)
    assert hour["compared"] == loose["compared"] and hour["since"] is not None
    bad = run(stack, "diff", "httpbin-v2", "--since", "soon")
    assert bad.exit_code == 1 and 'invalid --since "soon"' in bad.stderr
    result = run(stack, "diff", "httpbin-v2", "--reset")
    assert (result.exit_code, result.stdout) == (0, "comparison.shadowmesh.io/httpbin-v2 reset\n")
    after = json.loads(run(stack, "diff", "httpbin-v2", "-o", "json").stdout)
    assert (after["compared"], after["verdict"]) == (0, "insufficient data")
    assert run(stack, "diff", "nope", "--reset").exit_code == 1


def test_junit_is_valid_against_the_schema(stack: Stack, tmp_path: Path) -> None:
    """Real ``diff -o junit`` output (failures, passes, skipped latency without a baseline,
    several suites) against tests/schemas/junit.xsd; broken copies of it are refused, so the
    check can fail."""
    import xmlschema

    configure(stack, tmp_path)
    feed(stack, traffic("httpbin-v2", 12))
    changed = [e for e in traffic("no-baseline", 6) if e.path in ("/json", "/get")]
    feed(stack, [CapturedExchange(**{**_fields(e), "baseline": None}) for e in changed])
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    one = run(stack, "diff", "httpbin-v2", "-o", "junit").stdout
    every = run(stack, "diff", "-o", "junit").stdout
    for document in (one, every):
        schema.validate(document)
        root = ET.fromstring(document)
        cases = list(root.iter("testcase"))
        assert int(root.get("tests", "-1")) == len(cases)
        assert int(root.get("failures", "-1")) == sum(c.find("failure") is not None for c in cases)
        assert int(root.get("skipped", "-1")) == sum(c.find("skipped") is not None for c in cases)
        for suite in root.iter("testsuite"):
            assert int(suite.get("tests", "-1")) == len(suite.findall("testcase"))
    root = ET.fromstring(every)
    assert len(root.findall("testsuite")) == 2
    outcomes = {child.tag for case in root.iter("testcase") for child in case}
    assert outcomes == {"failure", "skipped", "system-out"}

    broken = {
        "a case without a name": one.replace('name="verdict"', "", 1),
        "a count that is no number": one.replace('failures="', 'failures="x', 1),
        "an element JUnit has not": one.replace("<failure ", "<failed ", 1).replace(
            "</failure>", "</failed>", 1
        ),
        "two outcomes in one case": one.replace(
            "<system-out>", '<failure message="m" /><failure message="m" /><system-out>', 1
        ),
        "a suite outside testsuites": one.replace("<testsuites ", "<testsuitez ", 1).replace(
            "</testsuites>", "</testsuitez>"
        ),
    }
    for what, document in broken.items():
        assert document != one, what
        assert not schema.is_valid(document), what


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[], Any]]:
    yield from browser_starter(tmp_path)


def test_the_html_report_in_a_browser(
    browser: Callable[[], Any], stack: Stack, tmp_path: Path
) -> None:
    """``diff -o html`` as a person sees it in headless chromium: the verdict and regressions
    stand out, the top regressions come first, noise is grey, the largest endpoints, each
    endpoint's baseline and candidate latency and the timeline are drawn, a drill-down
    opens to its curl lines, nothing overflows the width; a full-page screenshot is left in
    the tmp dir and at REPORT_SCREENSHOT_COPY."""
    configure(stack, tmp_path)
    start = time.time() - 60
    exchanges = traffic("httpbin-v2", 20)
    feed(stack, [dataclasses.replace(e, started=start + i / 2) for i, e in enumerate(exchanges)])
    html = tmp_path / "report.html"
    html.write_text(run(stack, "diff", "httpbin-v2", "-o", "html").stdout)

    page = browser().new_page()
    console = Console(page)
    page.goto(html.as_uri())
    verdict = page.locator("p.verdict-line.regression .verdict")
    assert verdict.inner_text() == "REGRESSION"
    assert verdict.evaluate("e => getComputedStyle(e).color") == "rgb(176, 0, 32)"

    author = page.locator(
        "tr.regression", has=page.locator("code", has_text="body.slideshow.author")
    )
    assert author.first.is_visible()
    background = author.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(253, 226, 225)"
    noise = page.locator("tr.noise", has=page.locator("code", has_text="body.uuid")).first
    assert noise.is_visible()
    assert noise.evaluate("e => getComputedStyle(e).color") == "rgb(153, 153, 153)"

    top = page.locator("div.top li")
    assert top.count() >= 1 and top.first.is_visible()
    assert top.first.locator(".risk").inner_text() == "high"  # a removed field, or a status
    # Baseline and candidate latency, per endpoint: three quantiles, two bars each, drawn.
    latency = page.locator("svg.latency").first
    assert latency.locator("rect.baseline").count() == 3
    assert latency.locator("rect.candidate").count() == 3
    box = latency.bounding_box()
    assert box is not None and box["width"] == 132 and box["height"] == 30

    largest = page.locator("div.largest li")
    assert largest.count() == 4 and all(largest.nth(i).is_visible() for i in range(4))
    assert "20 requests (25.0%)" in largest.first.inner_text()
    bars = page.locator("svg.timeline").first
    assert bars.locator("rect").count() >= 2
    box = bars.bounding_box()
    assert box is not None and box["width"] == 300 and box["height"] > 0

    drill = page.locator("details", has=page.locator("summary")).first
    curl = drill.locator("pre", has_text="$CANDIDATE").first
    assert not curl.is_visible()  # closed until asked
    drill.locator("summary").click()
    assert curl.is_visible() and curl.inner_text().startswith("curl -sS -i -X GET")

    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1440, f"the report is {width} px wide"
    height = page.evaluate("document.documentElement.scrollHeight")
    shot = tmp_path / "shadowmesh-report.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1440, height)  # IHDR: the whole page
    shutil.copyfile(shot, REPORT_SCREENSHOT_COPY)
    assert console.errors() == []


def test_admin_endpoints(stack: Stack, tmp_path: Path) -> None:
    configure(stack, tmp_path)
    feed(stack, traffic("httpbin-v2", 2))
    status, answer = get(stack, "/comparisons")
    assert status == 200
    assert [(i["name"], i["compared"]) for i in answer["items"]] == [
        ("httpbin-v2", 8),
        ("no-baseline", 0),
    ]
    assert answer["analyzer"]["analysed"] == 8 and answer["analyzer"]["dropped"] == 0
    status, report = get(stack, "/comparisons/default/httpbin-v2")
    assert status == 200 and report["compared"] == 8 and report["spec"]["baseline"] == "v1b"
    assert get(stack, "/comparisons/default/nope") == (
        404,
        {"error": 'comparisons.shadowmesh.io "nope" not found in namespace "default"'},
    )
    assert get(stack, "/comparisons/default/Bad_Name")[0] == 400
    assert get(stack, "/comparisons", method="POST")[0] == 405
    assert get(stack, "/comparisons/default/httpbin-v2/reset")[0] == 405
    assert get(stack, "/comparisons/a/b/c")[0] == 404
    result = run(stack, "diff", "nope")
    assert result.exit_code == 1
    assert 'error: comparisons.shadowmesh.io "nope" not found' in result.stderr


def test_admin_without_an_analyzer_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    server = AdminServer(Controller(store, lambda table: None))
    response = server.handle(Request("GET", "/comparisons", {}, {"host": "127.0.0.1"}))
    assert response.status == 404
    assert b"comparisons are not enabled" in response.body
    store.close()
