"""The report as plain text: a header, the endpoint table, then each endpoint's fields.

Pure: a Report in, a string out. ``style`` colours words when the CLI writes to a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shadowmesh.compare.report import EndpointReport, FieldReport, LatencyReport, Report

Style = Callable[[str, str], str]  # (text, verdict or "dim") -> styled text
MAX_CELL = 40
EXAMPLES_SHOWN = 3
_PADDING = 2


def plain(text: str, how: str) -> str:
    return text


def render_text(reports: Sequence[Report], style: Style = plain) -> str:
    if not reports:
        return "No comparisons found.\n"
    return "\n".join(_report(r, style) for r in reports)


def _report(report: Report, style: Style) -> str:
    spec = report.spec
    roles = f"primary {spec.get('primary')}, candidate {spec.get('candidate')}"
    if report.has_baseline:
        roles += f", baseline {spec.get('baseline')}"
    lines = [
        f"Comparison {report.namespace}/{report.name}: host {spec.get('host')}, {roles}"
        + ("" if report.configured else " (deleted; stored data)"),
        _totals(report),
        "verdict: " + style(_headline(report), _how(report.verdict)),
        "thresholds: " + _thresholds(report),
    ]
    lines += [f"assumes: {a}" for a in report.assumptions]
    if report.largest:
        lines.append(f"largest of {len(report.endpoints)} endpoints: " + largest(report))
    if report.top:
        lines.append("top regressions:")
        rows = [[t["endpoint"], t["field"], t["risk"], t["detail"]] for t in report.top]
        lines.append(_indent(table(rows), "  "))
    if report.endpoints:
        lines += ["", table(_endpoint_rows(report.endpoints, style))]
    for endpoint in report.endpoints:
        if endpoint.fields or endpoint.latency.flagged:
            lines += ["", *_endpoint_detail(endpoint, report.has_baseline, style)]
    return "\n".join(lines) + "\n"


def _how(verdict: str) -> str:
    return "difference" if verdict == "insufficient data" else verdict


def _thresholds(report: Report) -> str:
    t = report.thresholds
    text = f"alpha {t.get('alpha')}, min pairs {t.get('min_pairs')}"
    if report.has_baseline:
        text += (
            f", latency min effect +{100 * float(t.get('latency_min_relative', 0)):g}% and "
            f"{t.get('latency_min_absolute_ms')} ms"
        )
    return text


def _totals(report: Report) -> str:
    rate = f" ({percent(report.differing / report.compared)})" if report.compared else ""
    text = f"compared {report.compared} requests, {report.differing} differing{rate}"
    if report.since is not None:
        window = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.since))
        text = f"since {window}: " + text
    skipped = sum(report.skipped.values())
    if skipped:
        reasons = ", ".join(f"{reason} {n}" for reason, n in report.skipped.items())
        seen = skipped + report.compared
        text += f"; skipped {skipped} of {seen} ({percent(skipped / seen)}: {reasons})"
    return text + "; " + dropped(report)


def dropped(report: Report) -> str:
    """The requests the analysis never got (its queue full), with their share of all."""
    if not report.dropped:
        return "dropped 0"
    seen = report.dropped + report.compared + sum(report.skipped.values())
    return f"dropped {report.dropped} of {seen} ({percent(report.dropped / seen)}: queue full)"


def _headline(report: Report) -> str:
    parts = [report.reason] if report.reason else []
    if report.regressions:
        parts.append(f"{report.regressions} field regression{_s(report.regressions)}")
    if report.latency_flags:
        parts.append(f"{report.latency_flags} endpoint{_s(report.latency_flags)} slower")
    if report.differences:
        parts.append(f"{report.differences} field difference{_s(report.differences)}")
    if report.insufficient:
        parts.append(
            f"{report.insufficient} endpoint{_s(report.insufficient)} with too few requests "
            "to judge"
        )
    if not report.has_baseline:
        parts.append("no baseline: regressions and latency not judged")
    detail = "; ".join(parts)
    return report.verdict.upper() + (f": {detail}" if detail else "")


def _endpoint_rows(endpoints: Sequence[EndpointReport], style: Style) -> list[list[str]]:
    rows = [["ENDPOINT", "VERDICT", "REQUESTS", "DIFFERING", "STATUS", "LATENCY CAND/BASE"]]
    for e in endpoints:
        rows.append(
            [
                e.endpoint,
                style(e.verdict, _how(e.verdict)),
                str(e.requests),
                percent(e.difference_rate),
                transitions(e) or "-",
                latency_cell(e.latency),
            ]
        )
    return rows


def largest(report: Report) -> str:
    """The few endpoints with the most compared requests, most first, with their share."""
    return ", ".join(
        f"{e['endpoint']} {e['requests']} ({percent(e['share'])})" for e in report.largest
    )


def latency_cell(latency: LatencyReport) -> str:
    """The latency verdict in a few words: the median ratio of candidate to baseline."""
    if latency.verdict == "not judged":
        return "not judged"
    if latency.median_ratio is None or latency.verdict == "insufficient data":
        return f"{latency.pairs} pairs: too few"
    word = "SLOWER " if latency.flagged else ""
    return f"{word}x{latency.median_ratio:.2f} ({latency.delta_ms or 0.0:+.1f} ms)"


def _endpoint_detail(endpoint: EndpointReport, baseline: bool, style: Style) -> list[str]:
    head = (
        f"{endpoint.endpoint}: {style(endpoint.verdict, endpoint.verdict)}, "
        f"{endpoint.requests} requests, {percent(endpoint.difference_rate)} differing"
    )
    if baseline:
        head += f" (baseline {percent(endpoint.noise_rate)})"
    lines = [head]
    if endpoint.latency.flagged:
        lines.append("  " + style(f"latency {endpoint.latency.reason}", "regression"))
    shown = [f for f in endpoint.fields if f.verdict != "follows status"]
    if shown:
        lines.append(_indent(table(_field_rows(shown, baseline, style)), "  "))
    for f in shown:
        if f.followers:
            lines.append(
                f"  status change explains, in the same requests: {', '.join(f.followers)}"
            )
    for group in endpoint.groups[:3]:
        if len(group["fields"]) > 1:
            together = ", ".join(group["fields"])
            lines.append(f"  together in {group['requests']} requests: {together}")
    # Fields of one array share its alignment in a request: one line for them all.
    arrays: dict[str, tuple[str, list[str]]] = {}
    for f in shown:
        example = next((e for e in f.examples if e.array), None)
        if f.verdict != "noise" and example is not None and example.array is not None:
            text = array_text(example.array)
            arrays.setdefault(text, (example.request_id, []))[1].append(f.field)
    for text, (request_id, names) in arrays.items():
        lines.append(f"  array {text} ({', '.join(names)}; request {request_id})")
    for f in shown:
        example = next((e for e in f.examples if e.curl), None)
        if f.verdict == "regression" and example is not None:
            lines.append(f"  reproduce {f.field} ({example.request_id}):")
            lines += [f"    {example.curl[role]}" for role in ("primary", "candidate")]
    return lines


def _field_rows(fields: Sequence[FieldReport], baseline: bool, style: Style) -> list[list[str]]:
    title = ["FIELD", "VERDICT", "RISK", "KINDS", "CAND"]
    if baseline:
        title += ["BASE", "n10/n01/n11", "Q", "REL%", "ABS%"]
    rows = [[*title, "PRIMARY", "CANDIDATE"]]
    for f in fields:
        how = "dim" if f.verdict == "noise" else f.verdict
        volatile = f.verdict == "noise" and f.volatile and not f.raw
        verdict = "noise (volatile)" if volatile else f.verdict
        if f.verdict == "noise" and f.primary_varies:
            verdict = "noise (primary varies)"
        row = [style(f.field, how), verdict, f.risk, kinds(f), str(f.raw)]
        if baseline:
            row += [
                str(f.noise),
                f"{f.n10}/{f.n01}/{f.n11}",
                number(f.q_value if f.q_value is not None else f.p_value),
                number(f.relative, 1),
                number(f.absolute, 2),
            ]
        # Distinct value pairs only: five copies of one pair say less than one.
        pairs = list(dict.fromkeys((cell(e.primary), cell(e.candidate)) for e in f.examples))
        if not pairs:
            rows.append([*row, "", ""])
        for index, pair in enumerate(pairs[:EXAMPLES_SHOWN]):
            rows.append([*(row if index == 0 else [""] * len(row)), *pair])
    return rows


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell (escape codes do not count)."""
    widths = [max(_width(r[i]) for r in rows) + _PADDING for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [c + " " * (w - _width(c)) for c, w in zip(row[:-1], widths, strict=False)]
        out.append(("".join(cells) + row[-1]).rstrip())
    return "\n".join(out)


def _width(text: str) -> int:
    width, escape = 0, False
    for char in text:
        if char == "\x1b":
            escape = True
        elif escape:
            escape = char != "m"
        else:
            width += 1
    return width


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def transitions(endpoint: EndpointReport) -> str:
    changed = [t for t in endpoint.transitions if t.primary != t.candidate]
    return ", ".join(f"{t.primary}->{t.candidate} x{t.count}" for t in changed[:3])


def latency_pair(latency: LatencyReport, quantile: str) -> str:
    """Candidate against baseline at one quantile (never against the primary)."""
    baseline = getattr(latency.baseline, quantile, None) if latency.baseline else None
    candidate = getattr(latency.candidate, quantile, None) if latency.candidate else None
    if baseline is None or candidate is None:
        return "-"
    ratio = latency.ratio.get(quantile)
    text = f"{candidate:.1f}/{baseline:.1f} ms"
    return text + (f" x{ratio:.2f}" if ratio is not None else "")


def array_text(array: Mapping[str, Any]) -> str:
    """An example's array diff in a line: ``body.hits 4 -> 4 elements: moved 0->3, 3->0;
    changed 2; removed 5; added 4`` (primary index, then the candidate's)."""
    lengths = array.get("lengths") or [0, 0]
    counts = array.get("counts", {})
    parts = []
    for name in ("moved", "changed", "removed", "added"):
        entries = array.get(name) or []
        if not entries:
            continue
        shown = [_index(e, always_both=name == "moved") for e in entries]
        more = int(counts.get(name, len(entries))) - len(entries)
        parts.append(f"{name} " + ", ".join(shown) + (f" (+{more} more)" if more > 0 else ""))
    what = "; ".join(parts) or "same elements"
    return f"{array.get('path', '')} {lengths[0]} -> {lengths[1]} elements: {what}"


def _index(entry: Any, always_both: bool) -> str:
    """A primary index and the candidate's (``2->3``; ``2`` for a change in place), or one."""
    if not isinstance(entry, list):
        return str(entry)
    if entry[0] == entry[1] and not always_both:
        return str(entry[0])
    return f"{entry[0]}->{entry[1]}"


def kinds(f: FieldReport) -> str:
    return ",".join(f"{kind} x{count}" for kind, count in f.kinds.items()) or "-"


def cell(value: str | None) -> str:
    if value is None:
        return "(absent)"
    return value if len(value) <= MAX_CELL else value[: MAX_CELL - 3] + "..."


def percent(rate: float) -> str:
    return f"{100 * rate:.1f}%"


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits:
        return f"{value:.{digits}f}"
    return f"{value:.2g}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"
