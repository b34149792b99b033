"""The report as one self-contained HTML page: no script, no external file, safe to mail or
archive as a CI artifact. Noise is greyed out; regressions stand out; examples side by side."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from shadowmesh.compare.render import (
    array_text,
    dropped,
    kinds,
    latency_cell,
    number,
    percent,
    transitions,
)
from shadowmesh.compare.report import (
    EndpointReport,
    ExampleReport,
    FieldReport,
    LatencyReport,
    Report,
)

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
pre { margin: 0; white-space: pre-wrap; word-break: break-all; max-width: 40em; }
.regression { background: #fde2e1; } .regression .verdict { color: #b00020; font-weight: bold; }
.difference .verdict { color: #a15c00; font-weight: bold; }
.noise { color: #999; } .ok .verdict { color: #1b7f3b; }
.insufficient-data .verdict { color: #555; font-style: italic; }
.verdict-line { font-size: 1.1em; }
.responses { display: flex; gap: 1em; } .responses div { flex: 1; min-width: 0; }
tr.drill td { background: #fafafa; }
p.array { margin: 0 0 0.5em; font-size: 12px; color: #7a4b00; }
svg.timeline { background: #f4f4f4; vertical-align: middle; } svg.timeline rect { fill: #b00020; }
svg.latency rect.baseline { fill: #8a8f99; } svg.latency rect.candidate { fill: #e07b00; }
div.top { border-left: 4px solid #b00020; padding: 0 1em; margin: 1em 0; }
div.top ol { margin: .3em 0; } div.top .risk { font-weight: bold; }
"""


def render_html(reports: Sequence[Report]) -> str:
    body = "".join(_report(r) for r in reports) or "<p>No comparisons found.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>shadowmesh diff</title>"
        f"<style>{_CSS}</style></head><body><h1>shadowmesh diff</h1>{body}</body></html>\n"
    )


def _report(report: Report) -> str:
    spec = report.spec
    roles = (
        f"primary <b>{_e(spec.get('primary'))}</b>, candidate <b>{_e(spec.get('candidate'))}</b>"
    )
    if report.has_baseline:
        roles += f", baseline <b>{_e(spec.get('baseline'))}</b>"
    parts = [
        f'<section class="comparison" id="{_e(report.namespace)}-{_e(report.name)}">',
        f"<h2>Comparison {_e(report.namespace)}/{_e(report.name)}</h2>",
        f"<p>host <b>{_e(spec.get('host'))}</b>: {roles}</p>",
        f'<p class="verdict-line {_cls(report.verdict)}"><span class="verdict">'
        f"{_e(report.verdict.upper())}</span>{_e(': ' + report.reason if report.reason else '')}"
        f": {report.regressions} field regressions, "
        f"{report.latency_flags} slower endpoints, {report.differences} field differences; "
        f"{report.compared} requests compared, {report.differing} differing, "
        f"{sum(report.skipped.values())} skipped, {_e(dropped(report))}</p>",
        *[f'<p class="assumption">assumes: {_e(a)}</p>' for a in report.assumptions],
        _top(report),
        _largest(report),
        _endpoint_table(report.endpoints),
    ]
    parts += [_endpoint_detail(e, report.has_baseline) for e in report.endpoints if e.fields]
    parts.append("</section>")
    return "\n".join(parts)


def _largest(report: Report) -> str:
    """The few endpoints with the most compared requests, most first."""
    if not report.largest:
        return ""
    items = [
        f'<li class="{_cls(str(e["verdict"]))}"><code>{_e(e["endpoint"])}</code>: '
        f"{int(e['requests'])} requests ({percent(float(e['share']))})</li>"
        for e in report.largest
    ]
    return _listing("largest", f"largest of {len(report.endpoints)} endpoints", items)


def _listing(cls: str, title: str, items: Sequence[str]) -> str:
    return f'<div class="{cls}"><h3>{title}</h3><ol>{"".join(items)}</ol></div>'


def _endpoint_table(endpoints: Sequence[EndpointReport]) -> str:
    rows = [
        "<tr><th>endpoint</th><th>verdict</th><th>requests</th><th>differing</th>"
        "<th>status</th><th>latency candidate/baseline</th>"
        "<th>p50 / p90 / p99: baseline grey, candidate orange</th><th>latency test</th></tr>"
    ]
    for e in endpoints:
        rows.append(
            f'<tr class="{_cls(e.verdict)}"><td><code>{_e(e.endpoint)}</code></td>'
            f'<td class="verdict">{e.verdict}</td><td class="num">{e.requests}</td>'
            f'<td class="num">{percent(e.difference_rate)}</td><td>{_e(transitions(e))}</td>'
            f"<td>{_e(latency_cell(e.latency))}</td><td>{_latency_bars(e.latency)}</td>"
            f"<td>{_e(e.latency.reason)}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


_QUANTILES = ("p50", "p90", "p99")


def _latency_bars(latency: LatencyReport) -> str:
    """The baseline's and the candidate's latency distributions (p50, p90, p99), side by side
    in inline SVG, on the row's own scale: both are shadows of the same requests, so this is
    the fair picture; the primary is never set against the candidate. Nothing without a
    baseline."""
    sides = [("baseline", latency.baseline), ("candidate", latency.candidate)]
    values = [getattr(side, q) for _, side in sides if side is not None for q in _QUANTILES]
    if latency.baseline is None or latency.candidate is None or not any(values):
        return ""
    top = max(v for v in values if v is not None)
    width, height, bar = 132, 30, 10
    rects = []
    for qi, q in enumerate(_QUANTILES):
        for si, (name, side) in enumerate(sides):
            value = getattr(side, q) or 0.0
            h = max(1.0, value / top * height)
            x = qi * 44 + si * (bar + 1)
            rects.append(
                f'<rect class="{name}" x="{x}" y="{height - h:.1f}" width="{bar}" '
                f'height="{h:.1f}"><title>{name} {q}: {value:.1f} ms</title></rect>'
            )
    return (
        f'<svg class="latency" width="{width}" height="{height}" viewBox="0 0 {width} '
        f'{height}" role="img" aria-label="latency of baseline and candidate">'
        f"{''.join(rects)}</svg>"
    )


def _top(report: Report) -> str:
    """The worst regressions, first on the page."""
    if not report.top:
        return ""
    items = [
        f"<li><code>{_e(t['endpoint'])}</code> <code>{_e(t['field'])}</code> "
        f'<span class="risk">{_e(t["risk"])}</span>: {_e(t["detail"])}</li>'
        for t in report.top
    ]
    return _listing("top", "top regressions", items)


def _endpoint_detail(endpoint: EndpointReport, baseline: bool) -> str:
    head = "<tr><th>field</th><th>verdict</th><th>risk</th><th>kinds</th><th>candidate</th>"
    if baseline:
        head += "<th>baseline</th><th>n10/n01/n11</th><th>q</th><th>rel %</th><th>abs %</th>"
    head += "<th>examples: primary</th><th>candidate</th></tr>"
    shown = [f for f in endpoint.fields if f.verdict != "follows status"]
    rows = [_field_row(f, baseline) for f in shown]
    followers = [
        f'<p class="followers">the status change explains, in the same requests: '
        f"{', '.join(f'<code>{_e(name)}</code>' for name in f.followers)}</p>"
        for f in shown
        if f.followers
    ]
    return (
        f"<h3><code>{_e(endpoint.endpoint)}</code>: {endpoint.requests} requests</h3>"
        f"{_timeline(endpoint)}"
        f"<table>{head}{''.join(rows)}</table>{''.join(followers)}"
    )


def _timeline(endpoint: EndpointReport) -> str:
    """The differing rate over time, as bars in inline SVG (no script in this page)."""
    slices = endpoint.timeline
    if len(slices) < 2:
        return ""
    width, height, bar = 300, 40, 300 / len(slices)
    bars = []
    for i, (_, requests, differing) in enumerate(slices):
        rate = differing / requests if requests else 0.0
        h = max(1.0, rate * height)
        bars.append(
            f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{max(1.0, bar - 1):.1f}" '
            f'height="{h:.1f}"><title>{percent(rate)} of {int(requests)}</title></rect>'
        )
    return (
        f'<p class="timeline">differing over time <svg class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(bars)}</svg></p>'
    )


def _field_row(f: FieldReport, baseline: bool) -> str:
    cells = [
        f"<td><code>{_e(f.field)}</code></td>",
        f'<td class="verdict">{f.verdict}</td>',
        f"<td>{f.risk}</td>",
        f"<td>{_e(kinds(f))}</td>",
        f'<td class="num">{f.raw}</td>',
    ]
    if baseline:
        q = f.q_value if f.q_value is not None else f.p_value
        cells += [
            f'<td class="num">{f.noise}</td>',
            f"<td>{f.n10}/{f.n01}/{f.n11}</td>",
            f'<td class="num">{number(q)}</td>',
            f'<td class="num">{number(f.relative, 1)}</td>',
            f'<td class="num">{number(f.absolute, 2)}</td>',
        ]
    primary = "".join(f"<pre>{_e(_value(e.primary))}</pre>" for e in f.examples)
    candidate = "".join(f"<pre>{_e(_value(e.candidate))}</pre>{_array(e)}" for e in f.examples)
    cells += [f"<td>{primary}</td>", f"<td>{candidate}</td>"]
    row = f'<tr class="{_cls(f.verdict)}">{"".join(cells)}</tr>'
    example = next((e for e in f.examples if e.request), None)
    if example is None or f.verdict not in ("regression", "difference"):
        return row
    return row + f'<tr class="drill"><td colspan="{len(cells)}">{_drill(example)}</td></tr>'


def _array(e: ExampleReport) -> str:
    """The example's array diff under its candidate value: what moved, changed, came, went."""
    if not e.array:
        return ""
    return f'<p class="array">array {_e(array_text(e.array))}</p>'


def _drill(e: ExampleReport) -> str:
    """One example to reproduce: the request, the three responses, the curl lines."""
    request = e.request or {}
    head = f"{request.get('method', '')} {request.get('target', '')}"
    headers = "\n".join(f"{n}: {v}" for n, v in request.get("headers", []))
    body = request.get("body") or ""
    responses = "".join(
        f"<div><b>{_e(role)}</b><pre>{_e(text)}</pre></div>" for role, text in e.responses.items()
    )
    curls = "".join(f"<pre>{_e(line)}</pre>" for line in e.curl.values())
    return (
        f"<details><summary>reproduce request {_e(e.request_id)}: <code>{_e(head)}</code>"
        f"</summary><pre>{_e(headers)}\n\n{_e(body)}</pre>"
        f'<div class="responses">{responses}</div>{curls}</details>'
    )


def _cls(verdict: str) -> str:
    return verdict.replace(" ", "-")


def _value(value: str | None) -> str:
    return "(absent)" if value is None else value


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)
