"""The report as JUnit XML, for CI: one test suite per Comparison, one test case per endpoint
and field, plus one per endpoint for its latency. Regressions are failures; everything else
passes (noise and plain differences say so in ``system-out``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from shadowmesh.compare.render import array_text, cell, kinds, latency_pair
from shadowmesh.compare.report import EndpointReport, FieldReport, Report


def render_junit(reports: Sequence[Report]) -> str:
    root = ET.Element("testsuites", name="shadowmesh diff")
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for report in reports:
        suite = _suite(report)
        root.append(suite)
        for count in counts:
            counts[count] += int(suite.get(count, "0"))
    for count, value in counts.items():
        root.set(count, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(report: Report) -> ET.Element:
    suite = ET.Element("testsuite", name=f"Comparison {report.namespace}/{report.name}")
    tests = failures = 0
    for endpoint in report.endpoints:
        for f in endpoint.fields:
            suite.append(_field_case(report, endpoint, f))
            tests += 1
            failures += f.verdict == "regression"
        suite.append(_latency_case(report, endpoint))
        tests += 1
        failures += endpoint.latency.flagged
    # The overall verdict is a case of its own: "insufficient data" fails it, as it fails the
    # gate, so a CI that only reads JUnit cannot pass on nothing compared.
    case = ET.SubElement(suite, "testcase", classname=_class(report), name="verdict")
    message = f"{report.verdict}: {report.reason or report.verdict}"
    if report.verdict in ("regression", "insufficient data"):
        ET.SubElement(case, "failure", message=message, type=report.verdict)
        failures += 1
    else:
        ET.SubElement(case, "system-out").text = message
    tests += 1
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(case.find("skipped") is not None for case in suite)))
    return suite


def _class(report: Report, endpoint: EndpointReport | None = None) -> str:
    base = f"{report.namespace}.{report.name}"
    return f"{base}.{endpoint.endpoint}" if endpoint else base


def _field_case(report: Report, endpoint: EndpointReport, f: FieldReport) -> ET.Element:
    case = ET.Element("testcase", classname=_class(report, endpoint), name=f.field)
    summary = (
        f"{f.verdict}, risk {f.risk}: differs in {f.raw} of {endpoint.requests} requests "
        f"({kinds(f)})"
    )
    if report.has_baseline:
        summary += f"; baseline differs in {f.noise}; n10={f.n10} n01={f.n01} n11={f.n11}"
        if f.q_value is not None:
            summary += f", q={f.q_value:.3g}"
    examples = "\n".join(
        f"{e.method} {e.target} [{e.request_id}] {e.path}: {cell(e.primary)} -> {cell(e.candidate)}"
        + (f"\n  array {array_text(e.array)}" if e.array else "")
        for e in f.examples
    )
    if f.verdict == "regression":
        failure = ET.SubElement(case, "failure", message=summary, type="regression")
        failure.text = examples
    else:
        ET.SubElement(case, "system-out").text = summary + ("\n" + examples if examples else "")
    return case


def _latency_case(report: Report, endpoint: EndpointReport) -> ET.Element:
    case = ET.Element("testcase", classname=_class(report, endpoint), name="latency")
    latency = endpoint.latency
    text = (
        f"candidate/baseline p50 {latency_pair(latency, 'p50')}, "
        f"p99 {latency_pair(latency, 'p99')}; {latency.verdict}: {latency.reason}"
    )
    if latency.flagged:
        ET.SubElement(case, "failure", message=latency.reason, type="latency").text = text
    elif latency.verdict == "not judged":
        ET.SubElement(case, "skipped", message="latency not judged: no baseline")
    else:
        ET.SubElement(case, "system-out").text = text
    return case
