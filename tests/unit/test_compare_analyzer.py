"""The Analyzer end to end in one process: captured exchanges in, reports out, through the
real background thread and the real SQLite storage."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from shadowmesh.compare.analyzer import Analyzer
from shadowmesh.compare.capture import CapturedExchange, CapturedResponse
from shadowmesh.compare.htmlpage import render_html
from shadowmesh.compare.junit import render_junit
from shadowmesh.compare.render import render_text
from shadowmesh.compare.report import FieldReport, Report
from shadowmesh.compare.store import OTHER_FIELDS, CompareStore
from shadowmesh.model.comparison import (
    DEFAULT_REDACTIONS,
    Comparison,
    IgnoreRule,
    RedactRule,
    Thresholds,
    ToleranceRule,
    parse_path,
)
from shadowmesh.model.resources import Meta

KEY = ("default", "httpbin-v2")
DATE = ("date", "Wed, 01 May 2024 12:30:45 GMT")


# The exchanges of a test arrive within milliseconds: no minimum span for the latency test
# (test_a_latency_window_must_span_enough_time has one).
INSTANT = Thresholds(latency_min_seconds=0.0)


def comparison(baseline: str | None = "v1b", **changes: Any) -> Comparison:
    c = Comparison(
        Meta("httpbin-v2", "default"), "httpbin", "v1", "v2", baseline, thresholds=INSTANT
    )
    return dataclasses.replace(c, **changes)


def reply(
    body: Any = None,
    status: int = 200,
    ms: float = 10.0,
    content_type: str = "application/json",
    headers: Sequence[tuple[str, str]] = (DATE,),
    error: str = "",
) -> CapturedResponse:
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return CapturedResponse(
        status, (("content-type", content_type), *headers), data, False, ms, error
    )


def exchange(
    path: str,
    primary: CapturedResponse,
    candidate: CapturedResponse | None,
    baseline: CapturedResponse | None = None,
    *,
    request_id: str | None = None,
    method: str = "GET",
    key: tuple[str, str] = KEY,
) -> CapturedExchange:
    return CapturedExchange(
        comparison=key,
        request_id=request_id or str(uuid.uuid4()),
        started=time.time(),
        method=method,
        path=path,
        request_headers=(("host", "httpbin"),),
        primary=primary,
        candidate=candidate,
        baseline=baseline,
    )


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Analyzer] = []

    def build(*comparisons: Comparison, **kwargs: Any) -> Analyzer:
        current = list(comparisons)
        analyzer = Analyzer(tmp_path / "state", lambda: current, rng=random.Random(7), **kwargs)
        made.append(analyzer)
        return analyzer

    yield build
    for analyzer in made:
        analyzer.close()


def feed(analyzer: Analyzer, exchanges: list[CapturedExchange]) -> None:
    for e in exchanges:
        assert analyzer.submit(e)
    assert analyzer.wait_idle(30)


def field(report: Report, endpoint: str, name: str) -> FieldReport:
    [e] = [e for e in report.endpoints if e.endpoint == endpoint]
    [f] = [f for f in e.fields if f.field == name]
    return f


def the_scenario(requests: int = 30) -> list[CapturedExchange]:
    """v2 renames a field on /json, answers 500 on /status/200, is 30 ms slower on /json;
    /uuid differs on every call (noise), /get is the same."""
    out = []
    for _ in range(requests):
        uuids = [{"uuid": str(uuid.uuid4())} for _ in range(3)]
        out.append(exchange("/uuid", reply(uuids[0]), reply(uuids[1]), reply(uuids[2])))
        old = {"slideshow": {"author": "Yours Truly", "title": "Sample"}}
        new = {"slideshow": {"writer": "Yours Truly", "title": "Sample"}}
        out.append(exchange("/json", reply(old), reply(new, ms=42.0), reply(old, ms=11.0)))
        page = b"<html>Internal Server Error</html>"
        out.append(
            exchange(
                "/status/200",
                reply(b"", content_type="text/html"),
                reply(page, 500, content_type="text/html"),
                reply(b"", content_type="text/html"),
            )
        )
        same = {"args": {}, "url": "http://httpbin/get"}
        out.append(exchange("/get?x=1", reply(same), reply(same), reply(same)))
    return out


def test_the_scenario_with_a_baseline(make: Any) -> None:
    analyzer = make(comparison())
    feed(analyzer, the_scenario())
    report = analyzer.report(*KEY)
    assert report is not None and report.has_baseline
    assert report.compared == 120
    by_name = {e.endpoint: e for e in report.endpoints}
    assert set(by_name) == {"GET /uuid", "GET /json", "GET /status/{id}", "GET /get"}

    renamed = field(report, "GET /json", "body.slideshow.author")
    assert (renamed.verdict, renamed.risk, renamed.kinds) == ("regression", "high", {"missing": 30})
    assert (renamed.n10, renamed.n01, renamed.n11, renamed.n00) == (30, 0, 0, 0)
    assert renamed.q_value is not None and renamed.q_value < 1e-6
    assert renamed.relative == 100.0 and renamed.absolute == 100.0
    assert renamed.examples[0].primary == '"Yours Truly"' and renamed.examples[0].candidate is None
    added = field(report, "GET /json", "body.slideshow.writer")
    assert (added.verdict, added.risk) == ("regression", "low")
    latency = by_name["GET /json"].latency
    assert (latency.verdict, latency.flagged, latency.pairs) == ("regression", True, 30)
    assert latency.median_ratio == pytest.approx(42 / 11)
    assert "slower: median x3.82" in latency.reason and "over the baseline" in latency.reason

    status = field(report, "GET /status/{id}", "status")
    assert (status.verdict, status.risk) == ("regression", "high")
    assert [(t.primary, t.candidate, t.count) for t in by_name["GET /status/{id}"].transitions] == [
        (200, 500, 30)
    ]

    uuid_field = field(report, "GET /uuid", "body.uuid")
    assert uuid_field.verdict == "noise"
    # A UUID for a UUID is no difference on either side: volatile, and out of the test.
    assert (uuid_field.n10, uuid_field.n01, uuid_field.n11, uuid_field.volatile) == (0, 0, 0, 30)
    assert by_name["GET /uuid"].verdict == "ok"  # its only field is noise
    assert by_name["GET /uuid"].latency.verdict == "ok"  # the same 10 ms on both shadows

    assert by_name["GET /get"].verdict == "ok"
    assert by_name["GET /get"].fields == []
    assert by_name["GET /get"].difference_rate == 0.0

    assert report.verdict == "regression"
    assert report.latency_flags == 1
    assert report.failed_on_regression
    flagged = {f.field for e in report.endpoints for f in e.fields if f.verdict == "regression"}
    assert "body.uuid" not in flagged


def test_without_a_baseline_volatile_fields_are_noise_and_nothing_is_a_regression(
    make: Any,
) -> None:
    analyzer = make(comparison(baseline=None))
    scenario = [dataclasses.replace(e, baseline=None) for e in the_scenario(10)]
    feed(analyzer, scenario)
    report = analyzer.report(*KEY)
    assert report is not None and not report.has_baseline
    uuid_field = field(report, "GET /uuid", "body.uuid")
    assert (uuid_field.verdict, uuid_field.volatile, uuid_field.raw) == ("noise", 10, 0)
    assert uuid_field.p_value is None
    renamed = field(report, "GET /json", "body.slideshow.author")
    assert renamed.verdict == "difference"
    assert report.regressions == 0
    assert report.differences > 0
    assert "noise (volatile)" in render_text([report])


def test_a_uuid_against_a_non_uuid_is_a_real_difference(make: Any) -> None:
    analyzer = make(comparison(baseline=None))
    feed(
        analyzer,
        [
            exchange("/uuid", reply({"uuid": str(uuid.uuid4())}), reply({"uuid": "n/a"}))
            for _ in range(3)
        ],
    )
    report = analyzer.report(*KEY)
    assert report is not None
    assert field(report, "GET /uuid", "body.uuid").verdict == "difference"


def test_ignore_rules_drop_differences(make: Any) -> None:
    ignore = (IgnoreRule(("header", "date")), IgnoreRule(("body", "origin"), r"[0-9.]+"))
    analyzer = make(comparison(baseline=None, ignore=ignore))
    other_date = (("date", "Thu, 02 May 2024 00:00:00 GMT"),)
    feed(
        analyzer,
        [
            exchange(
                "/ip",
                reply({"origin": "1.2.3.4"}),
                reply({"origin": "5.6.7.8"}, headers=other_date),
            ),
            exchange("/ip", reply({"origin": "1.2.3.4"}), reply({"origin": "unknown"})),
        ],
    )
    report = analyzer.report(*KEY)
    assert report is not None
    [endpoint] = report.endpoints
    assert [f.field for f in endpoint.fields] == ["body.origin"]  # only the non-matching one
    assert endpoint.fields[0].raw == 1
    assert endpoint.fields[0].examples[0].candidate == '"unknown"'


def test_redaction_happens_before_anything_is_stored(make: Any, tmp_path: Path) -> None:
    rules = (*DEFAULT_REDACTIONS, RedactRule(parse_path("body.profile.ssn")))
    analyzer = make(comparison(baseline=None, redact=rules))
    secrets = ["hunter2-pass", "session=s3cr3t-cookie", "078-05-1120", "tok-in-query"]
    body = {"password": secrets[0], "profile": {"ssn": secrets[2], "name": "ann"}}
    changed = {"password": secrets[0] + "x", "profile": {"ssn": secrets[2] + "9", "name": "bob"}}
    feed(
        analyzer,
        [
            exchange(
                f"/login?token={secrets[3]}",
                reply(body, headers=(("set-cookie", secrets[1]),)),
                reply(changed, headers=(("set-cookie", secrets[1] + "2"),)),
            )
        ],
    )
    report = analyzer.report(*KEY)
    assert report is not None
    fields = {f.field for e in report.endpoints for f in e.fields}
    # Changed secrets are still seen as differences, by their masks.
    assert {"body.password", "body.profile.ssn", "header.set-cookie"} <= fields
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("compare.db*"))
    assert b"ann" in stored or b"bob" in stored  # the file does hold the examples
    for secret in secrets:
        assert secret.encode() not in stored, secret
    assert secrets[3] not in json.dumps(report.to_dict())


def test_skipped_exchanges_are_counted_by_reason(make: Any) -> None:
    analyzer = make(comparison())
    ok = reply({"a": 1})
    feed(
        analyzer,
        [
            exchange("/a", ok, None, ok),
            exchange("/a", reply(status=0, error="timeout"), ok, ok),
            exchange("/a", ok, ok, None),
            exchange("/a", ok, ok, ok, key=("default", "not-configured")),
            # Copies the proxy dropped under load are no answer of the shadow's.
            exchange("/a", ok, reply(status=0, error="overflow"), ok),
            exchange("/a", ok, ok, reply(status=0, error="unhealthy")),
        ],
    )
    report = analyzer.report(*KEY)
    assert report is not None
    assert report.skipped == {
        "baseline copy dropped (unhealthy)": 1,
        "candidate copy dropped (overflow)": 1,
        "no baseline response": 1,
        "no candidate response": 1,
        "primary timeout": 1,
    }
    assert report.compared == 0
    assert analyzer.stats()["skipped"] == 6
    assert "skipped 5 of 5 (100.0%: baseline copy dropped" in render_text([report])


def test_a_candidate_that_did_not_answer_is_a_status_difference(make: Any) -> None:
    analyzer = make(comparison(baseline=None))
    feed(analyzer, [exchange("/a", reply({"a": 1}), reply(status=0, error="timeout"))])
    report = analyzer.report(*KEY)
    assert report is not None
    [endpoint] = report.endpoints
    assert [(f.field, f.kinds) for f in endpoint.fields] == [("status", {"status": 1})]
    assert endpoint.fields[0].examples[0].candidate == '"0 (timeout)"'
    assert [(t.primary, t.candidate) for t in endpoint.transitions] == [(200, 0)]


def test_examples_are_a_reservoir_not_the_first_five(make: Any) -> None:
    analyzer = make(comparison(baseline=None))
    feed(
        analyzer,
        [
            exchange("/n", reply({"n": 0}), reply({"n": i + 1}), request_id=f"r{i}")
            for i in range(60)
        ],
    )
    report = analyzer.report(*KEY)
    assert report is not None
    examples = field(report, "GET /n", "body.n").examples
    assert len(examples) == 5
    indices = sorted(int(e.request_id[1:]) for e in examples)
    assert len(set(indices)) == 5
    assert max(indices) >= 5, indices  # later examples get in


def test_the_queue_is_bounded_and_drops_are_counted(make: Any) -> None:
    analyzer = make(comparison(), queue_size=3, start=False)
    e = exchange("/a", reply({"a": 1}), reply({"a": 1}), reply({"a": 1}))
    results = [analyzer.submit(e) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert analyzer.stats()["dropped"] == 2
    assert analyzer.stats()["queued"] == 3
    report = analyzer.report(*KEY)
    assert report is not None and report.dropped == 2
    analyzer.close(deadline=0.1)  # never started: what was queued is dropped too
    assert analyzer.stats()["dropped"] == 5
    assert analyzer.submit(e) is False  # closed


def test_close_drains_the_queue(tmp_path: Path) -> None:
    current = [comparison(baseline=None)]
    analyzer = Analyzer(tmp_path / "state", lambda: current)
    for i in range(50):
        analyzer.submit(exchange(f"/x/{i}", reply({"i": i}), reply({"i": -i})))
    analyzer.close(deadline=30)
    assert analyzer.stats()["analysed"] == 50
    store = CompareStore(tmp_path / "state")
    snapshot = store.snapshot(*KEY)
    store.close()
    assert snapshot is not None and snapshot.row.compared == 50


def test_new_rules_start_new_counters(make: Any) -> None:
    current = [comparison(baseline=None)]
    analyzer = make()
    analyzer._provider = lambda: current  # the config changes under a running analyzer
    feed(analyzer, [exchange("/a", reply({"a": 1}), reply({"a": 2}))])
    before = analyzer.report(*KEY)
    assert before is not None and before.compared == 1
    current[0] = comparison(baseline=None, ignore=(IgnoreRule(("body", "a")),))
    after = analyzer.report(*KEY)
    assert after is not None and after.compared == 0 and after.digest != before.digest
    feed(analyzer, [exchange("/a", reply({"a": 1}), reply({"a": 2}))])
    after = analyzer.report(*KEY)
    assert after is not None and (after.compared, after.differing) == (1, 0)
    assert analyzer.report("default", "nothing") is None


def test_a_deleted_comparison_keeps_its_report(make: Any) -> None:
    current = [comparison(baseline=None)]
    analyzer = make()
    analyzer._provider = lambda: current
    feed(analyzer, [exchange("/a", reply({"a": 1}), reply({"a": 2}))])
    current.clear()
    report = analyzer.report(*KEY)
    assert report is not None and not report.configured and report.compared == 1
    assert [c["name"] for c in analyzer.comparisons()] == ["httpbin-v2"]
    assert analyzer.comparisons()[0]["configured"] is False


def test_storage_is_bounded_by_count_age_endpoints_and_fields(tmp_path: Path) -> None:
    store = CompareStore(tmp_path, max_exchanges=10, max_endpoints=2, max_fields=2)
    current = [comparison(baseline=None)]
    analyzer = Analyzer(tmp_path, lambda: current, store=store)
    many = {f"k{i}": i for i in range(5)}
    paths = [f"/p{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(30)]
    feed(analyzer, [exchange(p, reply(many), reply({})) for p in paths])
    assert store.exchange_count() <= 30
    store.prune(force=True)
    assert store.exchange_count() == 10
    report = analyzer.report(*KEY)
    assert report is not None
    assert sorted(e.endpoint for e in report.endpoints) == ["GET /paa", "GET /pab", "OTHER"]
    assert {f.field for e in report.endpoints for f in e.fields} == {
        "body.k0",
        "body.k1",
        OTHER_FIELDS,
    }
    store.prune(now=time.time() + 8 * 24 * 3600, force=True)
    assert store.exchange_count() == 0
    assert store.comparisons() == []
    analyzer.close()


def test_report_formats(make: Any) -> None:
    analyzer = make(comparison())
    scenario = the_scenario(30)
    scenario.append(
        exchange("/html", reply({"a": "<b>&"}), reply({"a": "<i>"}), reply({"a": "<b>&"}))
    )
    feed(analyzer, scenario)
    report = analyzer.report(*KEY)
    assert report is not None

    data = json.loads(json.dumps(report.to_dict()))
    assert Report.from_dict(data) == report

    root = ET.fromstring(render_junit([report]))
    cases = root.findall("./testsuite/testcase")
    failures = {c.get("name") for c in cases if c.find("failure") is not None}
    assert {"body.slideshow.author", "status", "latency"} <= failures
    assert "body.uuid" not in failures
    assert int(root.get("failures", "0")) == len(
        [c for c in cases if c.find("failure") is not None]
    )

    page = render_html([report])
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "body.slideshow.author" in page
    assert '<tr class="regression"><td><code>body.slideshow.author</code>' in page
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page  # values are escaped

    text = render_text([report])
    assert "REGRESSION" in text and "200->500 x30" in text
    assert "body.slideshow.author" in text and '"Yours Truly"' in text

    # The worst first, on one screen: removed fields and status changes before added fields,
    # the latency regression among them; in text, JSON and HTML.
    top = [(t["endpoint"], t["field"], t["risk"]) for t in report.top]
    assert set(top[:2]) == {
        ("GET /json", "body.slideshow.author", "high"),
        ("GET /status/{id}", "status", "high"),
    }, top
    assert ("GET /json", "latency", "medium") in top and top[-1][2] == "low", top
    assert data["top"] == report.top
    assert "top regressions:" in text and "latency: x" in text
    assert '<div class="top"><h3>top regressions</h3><ol><li><code>' in page
    # Each endpoint's latency, baseline and candidate (never the primary): p50, p90, p99.
    assert page.count('<svg class="latency"') == len(report.endpoints)
    assert page.count('<rect class="baseline"') == page.count('<rect class="candidate"')
    assert page.count('<rect class="candidate"') == 3 * len(report.endpoints)


def test_examples_carry_array_diffs_in_every_format(make: Any) -> None:
    """A list in another order names what moved; a line inserted before a changed one is an
    addition and a change, not every index differing; text, JSON, HTML and JUnit show it."""
    analyzer = make(comparison())
    ranked = [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]
    moved = [{"id": 4}, {"id": 1}, {"id": 2}, {"id": 3}]
    lines = [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}, {"sku": "C", "qty": 1}]
    inserted = [{"sku": "Z", "qty": 1}, lines[0], {"sku": "B", "qty": 5}, lines[2]]
    scenario = []
    for _ in range(30):
        scenario.append(exchange("/ranked", reply(ranked), reply(moved), reply(ranked)))
        cart, changed = {"lines": lines}, {"lines": inserted}
        scenario.append(exchange("/cart", reply(cart), reply(changed), reply(cart)))
    feed(analyzer, scenario)
    report = analyzer.report(*KEY)
    assert report is not None

    order = field(report, "GET /ranked", "body")
    assert order.verdict == "regression" and set(order.kinds) == {"order"}
    array = order.examples[0].array
    assert array is not None
    assert (array["path"], array["lengths"], array["kept"]) == ("body", [4, 4], 3)
    assert (array["moved"], array["changed"], array["removed"], array["added"]) == (
        [[3, 0]],
        [],
        [],
        [],
    )
    # Each field of the cart's lines has its example in the same array: aligned alike.
    cart_fields = [f for e in report.endpoints if e.endpoint == "GET /cart" for f in e.fields]
    assert cart_fields and all(f.examples for f in cart_fields)
    for f in cart_fields:
        for e in f.examples:
            assert e.array is not None and e.array["path"] == "body.lines", (f.field, e.path)
            assert (e.array["moved"], e.array["changed"]) == ([], [[1, 2]])
            assert (e.array["removed"], e.array["added"], e.array["kept"]) == ([], [0], 2)

    data = json.loads(json.dumps(report.to_dict()))
    [ranked_json] = [e for e in data["endpoints"] if e["endpoint"] == "GET /ranked"]
    assert ranked_json["fields"][0]["examples"][0]["array"]["moved"] == [[3, 0]]
    assert Report.from_dict(data) == report

    text = render_text([report])
    assert "array body 4 -> 4 elements: moved 3->0 (body; request " in text
    [cart_line] = [line for line in text.splitlines() if "array body.lines" in line]
    assert cart_line.startswith("  array body.lines 3 -> 4 elements: changed 1->2; added 0 (")
    assert all(f.field in cart_line for f in cart_fields)
    page = render_html([report])
    assert '<p class="array">array body 4 -&gt; 4 elements: moved 3-&gt;0</p>' in page
    root = ET.fromstring(render_junit([report]))
    [case] = [
        c
        for c in root.iter("testcase")
        if c.get("classname", "").endswith("/ranked") and c.get("name") == "body"
    ]
    failure = case.find("failure")
    assert failure is not None and "array body 4 -> 4 elements: moved 3->0" in (failure.text or "")


def test_a_failing_batch_is_counted_and_the_thread_goes_on(tmp_path: Path) -> None:
    calls = []

    def provider() -> list[Comparison]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("config not ready")
        return [comparison(baseline=None)]

    analyzer = Analyzer(tmp_path, provider, start=False)
    analyzer.submit(exchange("/a", reply({"a": 1}), reply({"a": 2})))
    analyzer._thread.start()
    assert analyzer.wait_idle(30)
    assert analyzer.stats()["errors"] == 1
    feed(analyzer, [exchange("/a", reply({"a": 1}), reply({"a": 2}))])
    assert analyzer.stats()["analysed"] == 1
    analyzer.close()


def test_one_broken_exchange_does_not_cost_its_batch(make: Any) -> None:
    analyzer = make(comparison(baseline=None), start=False)
    broken = CapturedResponse(200, (), "not bytes", False, 1.0)  # type: ignore[arg-type]
    analyzer.submit(exchange("/a", reply({"a": 1}), broken))
    analyzer.submit(exchange("/a", reply({"a": 1}), reply({"a": 2})))
    analyzer._thread.start()
    assert analyzer.wait_idle(30)
    assert (analyzer.stats()["errors"], analyzer.stats()["analysed"]) == (1, 1)


# -- the worker process ---------------------------------------------------------------------------


def test_the_analysis_runs_in_a_worker_process(tmp_path: Path) -> None:
    current = [comparison(baseline=None)]
    analyzer = Analyzer(tmp_path / "state", lambda: current, process=True)
    try:
        child = analyzer._child
        assert child is not None and not analyzer._thread.is_alive()
        feed(analyzer, [exchange("/a", reply({"a": 1}), reply({"a": 2})) for _ in range(5)])
        assert child.process.pid not in (None, os.getpid()) and child.process.is_alive()
        report = analyzer.report(*KEY)
        assert report is not None and (report.compared, report.differing) == (5, 5)
        # New rules reach the worker ahead of the next exchange: that one is compared under them.
        current[0] = comparison(baseline=None, ignore=(IgnoreRule(("body", "a")),))
        feed(analyzer, [exchange("/a", reply({"a": 1}), reply({"a": 2}))])
        report = analyzer.report(*KEY)
        assert report is not None and (report.compared, report.differing) == (1, 0)
        # A Comparison deleted before the submit: skipped, and counted by the worker.
        current.clear()
        feed(analyzer, [exchange("/a", reply({"a": 1}), reply({"a": 2}))])
        stats = analyzer.stats()
        assert (stats["submitted"], stats["analysed"], stats["skipped"]) == (7, 6, 1)
    finally:
        analyzer.close()
    assert not child.process.is_alive()
    assert analyzer.stats()["analysed"] == 6  # the worker's counts outlive it


def test_the_worker_process_counts_a_broken_exchange_and_goes_on(tmp_path: Path) -> None:
    current = [comparison(baseline=None)]
    analyzer = Analyzer(tmp_path / "state", lambda: current, process=True)
    broken = CapturedResponse(200, (), "not bytes", False, 1.0)  # type: ignore[arg-type]
    feed(analyzer, [exchange("/a", reply({"a": 1}), broken)])
    feed(analyzer, [exchange("/a", reply({"a": 1}), reply({"a": 2}))])
    analyzer.close()
    assert (analyzer.stats()["errors"], analyzer.stats()["analysed"]) == (1, 1)


def test_a_dead_worker_costs_what_it_held_and_is_restarted_once(tmp_path: Path) -> None:
    current = [comparison(baseline=None)]
    analyzer = Analyzer(tmp_path / "state", lambda: current, process=True)
    e = exchange("/a", reply({"a": 1}), reply({"a": 2}))
    try:
        feed(analyzer, [e])
        first = analyzer._child
        assert first is not None and first.process.pid is not None
        os.kill(first.process.pid, signal.SIGSTOP)  # it holds what comes next
        for _ in range(4):
            assert analyzer.submit(e)
        time.sleep(0.2)  # the flusher sends the batch (after 20 ms) to the stopped worker
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.join(30)
        assert analyzer.wait_idle(30)  # finds it dead: its four are dropped, a new one starts
        second = analyzer._child
        assert second is not None and second is not first
        feed(analyzer, [e, e])
        stats = analyzer.stats()
        assert (stats["submitted"], stats["analysed"], stats["dropped"]) == (7, 3, 4)
        report = analyzer.report(*KEY)
        assert report is not None and report.compared == 3

        assert second.process.pid is not None
        os.kill(second.process.pid, signal.SIGKILL)
        second.process.join(30)
        assert analyzer.wait_idle(30)
        assert analyzer._child is None  # restarted once only
        assert analyzer.submit(e) is False
        stats = analyzer.stats()
        assert (stats["submitted"], stats["analysed"], stats["dropped"]) == (7, 3, 5)
    finally:
        analyzer.close(deadline=5)


def test_the_worker_queue_is_bounded_and_close_drops_what_is_left(tmp_path: Path) -> None:
    current = [comparison(baseline=None)]
    analyzer = Analyzer(
        tmp_path / "state", lambda: current, queue_size=3, process=True, start=False
    )
    e = exchange("/a", reply({"a": 1}), reply({"a": 2}))
    # The bound is on exchanges not yet analysed, gathered or sent in batches.
    assert [analyzer.submit(e) for _ in range(4)] == [True, True, True, False]
    assert analyzer.stats()["queued"] == 3
    assert not analyzer.wait_idle(0.05)
    analyzer.close(deadline=0.1)  # never started: nothing was analysed, all was dropped
    stats = analyzer.stats()
    assert (stats["submitted"], stats["dropped"], stats["analysed"]) == (3, 4, 0)
    assert analyzer.submit(e) is False


def test_close_never_waits_past_its_deadline_for_a_stuck_worker(tmp_path: Path) -> None:
    current = [comparison(baseline=None)]
    analyzer = Analyzer(tmp_path / "state", lambda: current, process=True)
    e = exchange("/a", reply({"a": 1}), reply({"a": 2}))
    feed(analyzer, [e])
    child = analyzer._child
    assert child is not None and child.process.pid is not None
    os.kill(child.process.pid, signal.SIGSTOP)
    assert analyzer.submit(e) and analyzer.submit(e)
    analyzer.close(deadline=0.2)
    assert not child.process.is_alive()
    assert (analyzer.stats()["analysed"], analyzer.stats()["dropped"]) == (1, 2)


def test_verdict_states_per_endpoint_and_overall(make: Any) -> None:
    analyzer = make(comparison())
    empty = analyzer.report(*KEY)
    assert empty is not None and (empty.verdict, empty.compared) == ("insufficient data", 0)
    assert empty.reason == "nothing compared yet"
    # Nothing compared is never a pass, for any gate but "never".
    assert empty.fails({"regression"}) and empty.fails({"latency"}) and not empty.fails({"never"})
    assert not empty.fails({"regression"}, allow_insufficient=True)

    same = {"a": 1}
    feed(analyzer, [exchange("/a", reply(same), reply(same), reply(same)) for _ in range(10)])
    report = analyzer.report(*KEY)
    assert report is not None
    assert (report.verdict, report.reason) == (
        "insufficient data",
        "10 requests compared, 30 needed",
    )
    [endpoint] = report.endpoints
    assert (endpoint.verdict, endpoint.reason) == ("insufficient data", "10 of 30 requests needed")
    assert endpoint.latency.verdict == "insufficient data"
    assert report.fails({"regression"}) and not report.fails({"regression"}, True)
    assert "INSUFFICIENT DATA: 10 requests compared, 30 needed" in render_text([report])

    feed(analyzer, [exchange("/a", reply(same), reply(same), reply(same)) for _ in range(25)])
    feed(analyzer, [exchange("/b", reply(same), reply(same), reply(same)) for _ in range(5)])
    report = analyzer.report(*KEY)
    assert report is not None
    verdicts = {e.endpoint: e.verdict for e in report.endpoints}
    assert verdicts == {"GET /a": "ok", "GET /b": "insufficient data"}
    # Enough compared overall: the thin endpoint is stated, not a failure of the whole.
    assert (report.verdict, report.insufficient) == ("ok", 1)
    assert not report.fails({"regression", "latency", "difference"})
    assert "1 endpoint with too few requests to judge" in render_text([report])

    # The spec's knobs, and the CLI's overrides of them for one report.
    looser = analyzer.report(*KEY, {"min_pairs": 5})
    assert looser is not None and {e.verdict for e in looser.endpoints} == {"ok"}
    assert looser.thresholds["min_pairs"] == 5


def test_a_regression_needs_no_minimum_and_the_gates_are_separate(make: Any) -> None:
    analyzer = make(comparison())
    old, new = {"a": 1}, {"b": 1}
    slow = [exchange("/slow", reply(old), reply(old, ms=40.0), reply(old)) for _ in range(30)]
    feed(analyzer, slow)
    report = analyzer.report(*KEY)
    assert report is not None
    assert (report.verdict, report.regressions, report.latency_flags) == ("regression", 0, 1)
    assert report.fails({"latency"}) and not report.fails({"regression"})
    assert report.fails({"difference"})
    analyzer.reset(*KEY)
    feed(analyzer, [exchange("/r", reply(old), reply(new), reply(old)) for _ in range(12)])
    report = analyzer.report(*KEY)
    assert report is not None and report.compared == 12  # the reset forgot /slow
    # 12 requests, fewer than min pairs, and still a regression: the test is what decides.
    assert (report.verdict, report.regressions, report.latency_flags) == ("regression", 2, 0)
    [endpoint] = report.endpoints
    assert endpoint.verdict == "regression" and endpoint.latency.verdict == "insufficient data"
    assert report.fails({"regression"}) and not report.fails({"latency"}, allow_insufficient=True)


def test_without_a_baseline_latency_is_not_judged_and_differences_gate(make: Any) -> None:
    analyzer = make(comparison(baseline=None))
    feed(
        analyzer,
        [exchange("/a", reply({"a": 1}), reply({"a": 2}, ms=90.0)) for _ in range(30)],
    )
    report = analyzer.report(*KEY)
    assert report is not None
    [endpoint] = report.endpoints
    assert (endpoint.verdict, endpoint.latency.verdict) == ("difference", "not judged")
    assert endpoint.latency.reason == "latency not judged: no baseline"
    assert (report.verdict, report.regressions, report.latency_flags) == ("difference", 0, 0)
    assert not report.fails({"regression"}) and report.fails({"difference"})
    # Latency cannot be judged without a baseline: that gate cannot pass on nothing.
    assert report.fails({"latency"}) and not report.fails({"latency"}, allow_insufficient=True)
    text = render_text([report])
    assert "no baseline: regressions and latency not judged" in text
    assert "slower" not in text.lower()
    assert any(a.startswith("no baseline") for a in report.assumptions)


def test_millisecond_timestamps_are_never_a_regression_in_an_a_a_run(make: Any) -> None:
    """The issue's A/A failure: the shadow sent last answered nearer the primary, so its
    millisecond timestamps equalled the primary's more often than the other's did, and the
    paired test called that a regression. Compared by shape and tolerance, neither differs."""
    analyzer = make(comparison())
    exchanges = []
    for i in range(200):
        ms = 100 + i
        stamp = {"at": f"2026-12-02T06:00:00.{ms % 1000:03d}Z", "n": i}
        later = {"at": f"2026-12-02T06:00:00.{(ms + 1) % 1000:03d}Z", "n": i}
        # The candidate's clock ticked apart from the primary's in 90 % of the requests, the
        # baseline's in 10 %: before, body.at was a regression with n10 = 160.
        candidate = later if i % 10 else stamp
        baseline = stamp if i % 10 else later
        exchanges.append(exchange("/t", reply(stamp), reply(candidate), reply(baseline)))
    feed(analyzer, exchanges)
    report = analyzer.report(*KEY)
    assert report is not None
    at = field(report, "GET /t", "body.at")
    assert (at.verdict, at.n10, at.n01, at.volatile) == ("noise", 0, 0, 180)
    assert (report.verdict, report.regressions) == ("ok", 0)


def test_numeric_tolerance_and_unordered_arrays_per_path(make: Any) -> None:
    rules = {
        "tolerance": (ToleranceRule(parse_path("body.items[*].price"), absolute=0.01),),
        "unordered": (parse_path("body.hits"),),
    }
    analyzer = make(comparison(baseline=None, **rules))
    primary = {"items": [{"price": 10.0, "qty": 1}], "hits": [1, 2, 3], "ranked": [1, 2]}
    near = {"items": [{"price": 10.004, "qty": 1}], "hits": [3, 1, 2], "ranked": [1, 2]}
    far = {"items": [{"price": 10.5, "qty": 2}], "hits": [3, 1, 4], "ranked": [2, 1]}
    feed(
        analyzer,
        [exchange("/a", reply(primary), reply(near)), exchange("/a", reply(primary), reply(far))],
    )
    report = analyzer.report(*KEY)
    assert report is not None
    [endpoint] = report.endpoints
    raw = {f.field: f.raw for f in endpoint.fields}
    # Near prices and reordered hits are equal; a far price, a new hit, another order elsewhere
    # are differences, once each (the request with them only).
    assert raw == {
        "body.items[*].price": 1,
        "body.items[*].qty": 1,
        "body.hits[*]": 1,
        "body.ranked": 1,
    }, raw
    assert report.spec["unordered"] == ["body.hits"]


def test_a_time_window_recounts_from_the_requests_in_it(make: Any) -> None:
    analyzer = make(comparison())
    hour_ago = time.time() - 3600
    old = [dataclasses.replace(e, started=hour_ago) for e in the_scenario(30)]
    feed(analyzer, old)
    same = {"a": 1}
    recent = [exchange("/get?x=1", reply(same), reply(same), reply(same)) for _ in range(40)]
    feed(analyzer, recent)
    whole = analyzer.report(*KEY)
    assert whole is not None and whole.verdict == "regression" and whole.compared == 160
    # Since the beginning, the recount is the counters: one fact, two ways to read it.
    everything = analyzer.report(*KEY, since=0.0)
    assert everything is not None

    def summary(r: Report) -> Any:
        return (
            r.compared,
            r.differing,
            r.verdict,
            sorted(
                (e.endpoint, e.requests, e.verdict, e.latency.verdict, e.latency.pairs)
                for e in r.endpoints
            ),
            sorted(
                (e.endpoint, f.field, f.verdict, f.raw, f.noise, f.n10, f.n01, f.n11, f.volatile)
                for e in r.endpoints
                for f in e.fields
            ),
            sorted(
                (e.endpoint, t.primary, t.candidate, t.count)
                for e in r.endpoints
                for t in e.transitions
            ),
        )

    assert summary(everything) == summary(whole)
    window = analyzer.report(*KEY, since=time.time() - 60)
    assert window is not None and window.since is not None
    assert (window.compared, window.verdict, window.regressions) == (40, "ok", 0)
    assert [e.endpoint for e in window.endpoints] == ["GET /get"]
    assert render_text([window]).splitlines()[1].startswith("since ")


def test_a_time_window_counts_its_own_skips_and_drops(make: Any) -> None:
    """Skipped and dropped requests are counted within a ``since`` window as the compared ones
    are, not since the start."""
    analyzer = make(comparison(), queue_size=4, start=False)
    hour_ago = time.time() - 3600
    ok = reply({"a": 1})

    def at(e: CapturedExchange, when: float) -> CapturedExchange:
        return dataclasses.replace(e, started=when)

    skipped_old = at(exchange("/a", ok, None, ok), hour_ago)
    compared_old = at(exchange("/a", ok, ok, ok), hour_ago)
    skipped_new = exchange("/a", ok, reply(status=0, error="overflow"), ok)
    compared_new = exchange("/a", ok, ok, ok)
    queued = [skipped_old, compared_old, skipped_new, compared_new]
    assert [analyzer.submit(e) for e in queued] == [True] * 4
    # The queue is full: these are dropped, three an hour ago and one now.
    dropped = [skipped_old, compared_old, compared_old, compared_new]
    assert [analyzer.submit(e) for e in dropped] == [False] * 4
    analyzer._thread.start()
    assert analyzer.wait_idle(30)

    whole = analyzer.report(*KEY)
    assert whole is not None
    assert (whole.compared, whole.dropped) == (2, 4)
    assert whole.skipped == {"no candidate response": 1, "candidate copy dropped (overflow)": 1}
    everything = analyzer.report(*KEY, since=0.0)
    assert everything is not None
    assert (everything.compared, everything.skipped, everything.dropped) == (
        whole.compared,
        whole.skipped,
        whole.dropped,
    )
    window = analyzer.report(*KEY, since=time.time() - 60)
    assert window is not None
    assert (window.compared, window.dropped) == (1, 1)
    assert window.skipped == {"candidate copy dropped (overflow)": 1}
    text = render_text([window])
    assert "skipped 1 of 2 (50.0%: candidate copy dropped (overflow) 1); dropped 1 of 3 " in text
    assert "dropped 1 of 3 (33.3%: queue full)" in render_html([window])


def test_a_status_change_leads_and_its_fields_fold_under_it(make: Any) -> None:
    analyzer = make(comparison())
    ok = {"order": 1, "lines": [1, 2], "total": 3}
    error = {"error": "order service unavailable"}
    exchanges = []
    for i in range(40):
        broken = i % 4 == 0
        candidate = reply(error, 500) if broken else reply({**ok, "total": 4} if i == 1 else ok)
        exchanges.append(exchange("/orders/1", reply(ok), candidate, reply(ok)))
    feed(analyzer, exchanges)
    report = analyzer.report(*KEY)
    assert report is not None
    status = field(report, "GET /orders/{id}", "status")
    assert (status.verdict, status.raw) == ("regression", 10)
    assert status.followers == ["body.error", "body.lines", "body.order"]
    # One error is one regression: the body fields of those requests follow it, untested...
    lines = field(report, "GET /orders/{id}", "body.lines")
    assert (lines.verdict, lines.with_status, lines.q_value) == ("follows status", 10, None)
    assert report.regressions == 1
    # ...but a field that also differs without a status change is judged on its own.
    total = field(report, "GET /orders/{id}", "body.total")
    assert (total.raw, total.with_status, total.verdict) == (1, 10, "difference")
    text = render_text([report])
    assert "status change explains, in the same requests: body.error, body.lines" in text


def test_the_analysis_process_ends_when_the_proxy_dies_as_it_starts(tmp_path: Path) -> None:
    # The proxy dies (as with SIGKILL: no clean-up runs) right after starting the analysis
    # process, before that process is even running: it must still notice and end.
    code = (
        "import os, sys\n"
        "from shadowmesh.compare.analyzer import Analyzer\n"
        "a = Analyzer(sys.argv[1], lambda: ())\n"
        "open(sys.argv[2], 'w').write(str(a._child.process.pid))\n"
        "os._exit(0)\n"
    )
    pid_file = tmp_path / "child.pid"
    # No pipe: the analysis process would inherit it and hold it open.
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "state"), str(pid_file)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=30, check=True,
    )  # fmt: skip
    child = int(pid_file.read_text())
    try:
        end = time.monotonic() + 15
        while _alive(child) and time.monotonic() < end:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_latency_is_not_judged_when_the_shadows_were_saturated(make: Any) -> None:
    analyzer = make(comparison())
    same = {"a": 1}
    slow = [exchange("/a", reply(same), reply(same, ms=300.0), reply(same)) for _ in range(40)]
    dropped = [
        exchange("/a", reply(same), reply(status=0, error="overflow"), reply(same))
        for _ in range(10)
    ]
    feed(analyzer, slow + dropped)
    report = analyzer.report(*KEY)
    assert report is not None
    [endpoint] = report.endpoints
    # A candidate 30 times slower, but a fifth of its copies overflowed: the queue, not the code.
    assert endpoint.latency.verdict == "insufficient data" and not endpoint.latency.flagged
    assert "shadows saturated, 20.0% of copies dropped" in endpoint.latency.reason
    assert report.latency_flags == 0 and report.fails({"latency"})
    assert not report.fails({"latency"}, allow_insufficient=True)


def test_the_drill_down_has_the_request_the_responses_and_curl_lines(make: Any) -> None:
    analyzer = make(comparison())
    request = dataclasses.replace(
        exchange(
            "/orders?x=1",
            reply({"total": 3, "password": "hunter2"}),
            reply({"total": "3", "password": "hunter2"}),
            reply({"total": 3, "password": "hunter2"}),
            method="POST",
        ),
        request_headers=(("content-type", "application/json"), ("authorization", "Bearer s3")),
        request_body=b'{"sku": "SKU-0001", "password": "pw-secret"}',
    )
    feed(analyzer, [request])
    report = analyzer.report(*KEY)
    assert report is not None
    [example] = field(report, "POST /orders", "body.total").examples
    assert example.request is not None
    assert example.request["method"] == "POST" and example.request["target"] == "/orders?x=1"
    headers = dict(example.request["headers"])
    assert headers["content-type"] == "application/json"
    assert headers["authorization"].startswith("<redacted:")
    assert '"SKU-0001"' in example.request["body"] and "pw-secret" not in example.request["body"]
    assert set(example.responses) == {"primary", "candidate", "baseline"}
    assert '"total": "3"' in example.responses["candidate"]
    assert "hunter2" not in json.dumps(report.to_dict())
    candidate = example.curl["candidate"]
    assert candidate.startswith("curl -sS -i -X POST -H 'content-type: application/json'")
    assert "-H 'authorization: REDACTED'" in candidate
    assert candidate.endswith("\"http://$CANDIDATE\"'/orders?x=1'")
    assert example.curl["primary"].endswith("\"http://$PRIMARY\"'/orders?x=1'")
    assert "--data-binary" in candidate
    page = render_html([report])
    assert "reproduce request" in page and "http://$CANDIDATE" in page


def test_the_drill_down_responses_are_cut_at_max_example_chars(make: Any) -> None:
    small_key = ("default", "small")
    small = comparison(max_example_chars=1_000, meta=Meta(small_key[1], small_key[0]))
    analyzer = make(comparison(), small)
    big = {"items": [{"n": i, "text": "x" * 40} for i in range(200)], "total": 1}
    changed = {**big, "total": 2}
    feed(
        analyzer,
        [
            exchange("/big", reply(big), reply(changed), reply(big), key=key)
            for key in (KEY, small_key)
        ],
    )

    def kept(key: tuple[str, str]) -> dict[str, str]:
        report = analyzer.report(*key)
        assert report is not None
        [example] = field(report, "GET /big", "body.total").examples
        return example.responses

    default = kept(KEY)
    assert all(len(text) <= 8_000 for text in default.values())
    assert "(cut at 8000 characters)" in default["primary"]
    cut = kept(small_key)
    assert all(len(text) <= 1_000 for text in cut.values()), {k: len(v) for k, v in cut.items()}
    assert "(cut at 1000 characters)" in cut["candidate"]
    assert analyzer.report(*small_key).spec["maxExampleChars"] == 1_000


def test_latency_is_not_judged_when_the_shadows_queue(make: Any) -> None:
    analyzer = make(comparison())
    same = {"a": 1}
    # Both shadows wait behind each other (the baseline, the primary's code, takes 6 times
    # the primary's time): the candidate's 40 % more is the drift of two queues.
    queued = [
        exchange("/a", reply(same, ms=10.0), reply(same, ms=84.0), reply(same, ms=60.0))
        for _ in range(40)
    ]
    feed(analyzer, queued)
    report = analyzer.report(*KEY)
    assert report is not None
    [endpoint] = report.endpoints
    assert endpoint.latency.verdict == "insufficient data" and not endpoint.latency.flagged
    assert endpoint.latency.reason.startswith("latency not judged: shadows queued (baseline p50")


def test_a_latency_window_must_span_enough_time(make: Any) -> None:
    analyzer = make(comparison(thresholds=Thresholds()))  # the default: 2 s
    same = {"a": 1}
    now = time.time()
    burst = [
        dataclasses.replace(
            exchange("/a", reply(same), reply(same, ms=40.0), reply(same)), started=now + i / 100
        )
        for i in range(60)
    ]
    feed(analyzer, burst)  # 60 requests in 0.6 s: a starved process could fill all of it
    report = analyzer.report(*KEY)
    assert report is not None
    [endpoint] = report.endpoints
    assert endpoint.latency.verdict == "insufficient data"
    assert endpoint.latency.reason == "latency: 60 pairs over 0.6 s, 2 s needed"
    spread = [dataclasses.replace(e, started=now + 5 + i / 10) for i, e in enumerate(burst)]
    feed(analyzer, spread)  # 60 more over 6 s: each third of the 6.6 s has its pairs
    report = analyzer.report(*KEY)
    assert report is not None
    assert report.endpoints[0].latency.verdict == "regression"


def test_the_differing_rate_over_time(make: Any) -> None:
    analyzer = make(comparison(baseline=None))
    start = time.time() - 100
    exchanges = [
        dataclasses.replace(
            exchange("/a", reply({"a": 1}), reply({"a": 2 if i >= 50 else 1})), started=start + i
        )
        for i in range(100)
    ]
    feed(analyzer, exchanges)
    report = analyzer.report(*KEY)
    assert report is not None
    timeline = report.endpoints[0].timeline
    assert len(timeline) == 30 and sum(n for _, n, _ in timeline) == 100
    assert timeline[0][2] == 0 and timeline[-1][2] == timeline[-1][1]  # changed half-way
    assert '<svg class="timeline"' in render_html([report])


def test_fields_that_differ_together_are_one_group(make: Any) -> None:
    analyzer = make(comparison())
    feed(analyzer, the_scenario(30))
    report = analyzer.report(*KEY)
    assert report is not None
    [json_endpoint] = [e for e in report.endpoints if e.endpoint == "GET /json"]
    assert json_endpoint.groups == [
        {"fields": ["body.slideshow.author", "body.slideshow.writer"], "requests": 30}
    ]
    text = render_text([report])
    assert "together in 30 requests: body.slideshow.author, body.slideshow.writer" in text
    # Each regression's first example, to reproduce against the primary and the candidate.
    assert "  reproduce body.slideshow.author (" in text
    assert "    curl -sS -i -X GET -H 'host: httpbin' \"http://$CANDIDATE\"/json" in text


def test_the_report_lists_the_largest_endpoints(make: Any) -> None:
    analyzer = make(comparison(baseline=None, thresholds=Thresholds(min_pairs=5)))
    counts = {"/a": 3, "/b": 12, "/c": 1, "/d": 7, "/e": 2, "/f": 5, "/g": 4}  # 34 requests
    feed(
        analyzer,
        [
            exchange(path, reply({"n": 1}), reply({"n": 1 if path != "/d" else 2}))
            for path, n in counts.items()
            for _ in range(n)
        ],
    )
    report = analyzer.report(*KEY)
    assert report is not None
    assert [(e["endpoint"], e["requests"]) for e in report.largest] == [
        ("GET /b", 12), ("GET /d", 7), ("GET /f", 5), ("GET /g", 4), ("GET /a", 3),
    ]  # fmt: skip
    assert report.largest[0]["share"] == pytest.approx(12 / 34)
    assert report.largest[1]["verdict"] == "difference"
    assert Report.from_dict(json.loads(json.dumps(report.to_dict()))).largest == report.largest

    text = render_text([report])
    assert (
        "largest of 7 endpoints: GET /b 12 (35.3%), GET /d 7 (20.6%), GET /f 5 (14.7%), "
        "GET /g 4 (11.8%), GET /a 3 (8.8%)\n"
    ) in text
    page = render_html([report])
    assert '<div class="largest"><h3>largest of 7 endpoints</h3><ol>' in page
    assert '<li class="difference"><code>GET /d</code>: 7 requests (20.6%)</li>' in page
    assert page.index("GET /b</code>: 12") < page.index("GET /a</code>: 3")


def test_without_a_baseline_a_field_that_varies_on_the_primary_is_noise(make: Any) -> None:
    """Two primary responses to one request (same method, target, body) that differ in a field
    make it volatile on that endpoint, back to its first request; a request never repeated
    teaches nothing; a real change next to it stays a difference."""
    analyzer = make(comparison(baseline=None, thresholds=Thresholds(min_pairs=5)))
    words = random.Random(3)

    def offer() -> str:  # no strict shape: a word and a few letters
        return "offer-" + "".join(words.choice("abcdefgh") for _ in range(5))

    repeated = [
        exchange(
            "/quote?sku=A",
            reply({"quote": offer(), "currency": "EUR"}),
            reply({"quote": offer(), "currency": "USD"}),
            method="POST",
        )
        for _ in range(10)
    ]
    distinct = [
        exchange(f"/offer?sku={i}", reply({"quote": offer()}), reply({"quote": offer()}))
        for i in range(10)
    ]
    feed(analyzer, [dataclasses.replace(e, request_body=b'{"n": 1}') for e in repeated])
    # Another body is another request: the same target with bodies that differ teaches nothing.
    bodies = [
        dataclasses.replace(e, path="/price?sku=A", request_body=b"%d" % i)
        for i, e in enumerate(repeated)
    ]
    feed(analyzer, [dataclasses.replace(e, request_id=str(uuid.uuid4())) for e in bodies])
    feed(analyzer, distinct)
    report = analyzer.report(*KEY)
    assert report is not None
    quote = field(report, "POST /quote", "body.quote")
    assert (quote.verdict, quote.primary_varies) == ("noise", True)
    assert quote.raw == 1  # the first, before a repeat showed the primary varies there
    assert field(report, "POST /quote", "body.currency").verdict == "difference"
    assert field(report, "GET /offer", "body.quote").verdict == "difference"
    assert field(report, "POST /price", "body.quote").verdict == "difference"
    assert any("differs between two primary responses" in a for a in report.assumptions)
    assert "noise (primary varies)" in render_text([report])
    window = analyzer.report(*KEY, since=time.time() - 60)
    assert window is not None and field(window, "POST /quote", "body.quote").verdict == "noise"


def test_two_primary_responses_of_another_status_teach_nothing() -> None:
    from shadowmesh.compare.analysis import Rules
    from shadowmesh.compare.repeats import varying_fields

    rules = Rules.of(comparison(baseline=None))
    created = {"status": 201, "body": {"id": "o-1", "at": "monday"}}
    assert varying_fields(
        created, {"status": 201, "body": {"id": "o-2", "at": "monday"}}, rules
    ) == {"body.id"}
    assert varying_fields(created, {"status": 409, "body": {"error": "exists"}}, rules) == set()
