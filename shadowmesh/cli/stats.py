"""``shadowmesh stats``: the proxy's counters for a person, the same numbers ``/stats/prometheus``
exports.

It reads ``GET /stats`` (the JSON that ``Stats.snapshot`` writes, plus serve's gauges) and prints
plain tables: requests by cluster, status class and response flag; shadows by outcome and
reason; upstream latency per cluster as percentiles estimated from the histogram buckets, the
way Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from shadowmesh.cli.client import _check, _errors_exit, admin_client, admin_option, token_option
from shadowmesh.cli.format import tabulate

QUANTILES = (0.5, 0.9, 0.99)


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "prometheus"]),
    default="table",
    show_default=True,
    help="Tables for a person, the raw JSON, or the Prometheus text.",
)
@admin_option
@token_option
@_errors_exit
def stats(output: str, admin: str, admin_token_file: str | None) -> None:
    """Show the proxy's counters: requests, shadows, upstream latency, connections."""
    client = admin_client(admin, admin_token_file)
    if output == "prometheus":
        code, text = client.get_text("/stats/prometheus")
        if code != 200:
            _check(code, _json_or_none(text))
        click.echo(text, nl=False)
        return
    code, answer = client.get("/stats")
    _check(code, answer)
    if output == "json":
        click.echo(json.dumps(answer, indent=2, sort_keys=True))
        return
    click.echo(format_stats(answer), nl=False)


def format_stats(snapshot: Mapping[str, Any]) -> str:
    """The snapshot as sections of plain tables, each ending in a newline."""
    sections = [
        _requests(snapshot),
        _shadows(snapshot),
        _latency(_mapping(snapshot.get("upstream_latency"))),
        _connections(snapshot),
    ]
    return "\n".join(sections)


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """Prometheus' histogram_quantile over per-bucket counts (the last one is +Inf).

    Linear inside the bucket the rank falls in; in the +Inf bucket, the highest finite bound.
    None when there is nothing counted.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1] if bounds else None
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1] if bounds else None


def _requests(snapshot: Mapping[str, Any]) -> str:
    rows = [["CLUSTER", "STATUS", "FLAG", "REQUESTS"]]
    for row in _rows(snapshot.get("requests_by")):
        rows.append(
            [
                str(row.get("cluster") or "-"),
                str(row.get("status_class", "")),
                str(row.get("flag") or "-"),
                str(row.get("count", 0)),
            ]
        )
    totals = _mapping(snapshot.get("requests"))
    summary = f"requests: {totals.get('total', 0)} total, {totals.get('rejected', 0)} rejected\n"
    return summary + (tabulate(rows) if len(rows) > 1 else "")


def _shadows(snapshot: Mapping[str, Any]) -> str:
    shadows = _mapping(snapshot.get("shadows"))
    lines = (
        f"shadows: {shadows.get('sent', 0)} sent, {shadows.get('completed', 0)} completed, "
        f"{snapshot.get('shadow_in_flight', 0)} in flight\n"
    )
    rows = [["SHADOWS", "REASON", "COUNT"]]
    for outcome, key in (
        ("failed", "shadow_failed"),
        ("dropped", "shadow_dropped"),
        ("skipped", "shadow_skipped"),
    ):
        for reason, count in sorted(_mapping(snapshot.get(key)).items()):
            rows.append([outcome, str(reason), str(count)])
    return lines + (tabulate(rows) if len(rows) > 1 else "")


def _latency(latency: Mapping[str, Any]) -> str:
    bounds = [float(b) for b in latency.get("bounds_seconds", [])]
    rows = [["CLUSTER", "COUNT", "MEAN", *(f"P{round(q * 100)}" for q in QUANTILES)]]
    for cluster, histogram in sorted(_mapping(latency.get("clusters")).items()):
        data = _mapping(histogram)
        counts = [int(c) for c in data.get("counts", [])]
        count = sum(counts)
        mean = float(data.get("sum", 0.0)) / count if count else None
        cells = [_ms(quantile(q, bounds, counts)) for q in QUANTILES]
        rows.append([str(cluster), str(count), _ms(mean), *cells])
    title = "upstream latency (ms, percentiles estimated from buckets):\n"
    return title + (tabulate(rows) if len(rows) > 1 else "  none yet\n")


def _connections(snapshot: Mapping[str, Any]) -> str:
    line = (
        f"connections: {snapshot.get('downstream_active', 0)} downstream active; "
        f"{snapshot.get('shadow_held_bytes', 0)} bytes held for shadows\n"
    )
    processes = _rows(snapshot.get("processes"))
    if len(processes) < 2:
        return line
    # serve --workers: the totals above are every process's; here, each one's share.
    rows = [["PID", "REQUESTS", "CONNECTIONS"]]
    for p in processes:
        rows.append(
            [str(p.get("pid", "")), str(p.get("requests", 0)), str(p.get("downstream_active", 0))]
        )
    return line + f"processes: {len(processes)}\n" + tabulate(rows)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []
