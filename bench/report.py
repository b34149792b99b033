"""Medians, min and max over rounds; the shadowmesh/nginx ratios; the table; the JSON; targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bench.runner import Measurement
from bench.scenarios import Scenario

METRICS = (
    "rps",
    "p50_ms",
    "p99_ms",
    "mean_ms",
    "cpu_pct",
    "peak_rss_mb",
    "rss_growth_mb",
    "errors",
    "mib_per_s",
)


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: Sequence[Measurement]) -> dict[str, Any]:
    """For one proxy in one scenario: median, min and max of every metric, and the runs."""
    metrics: dict[str, dict[str, float]] = {}
    for name in METRICS:
        values = [getattr(m, name) for m in runs if getattr(m, name) is not None]
        if values:
            metrics[name] = spread(values)
    return {"metrics": metrics, "runs": [asdict(m) for m in runs]}


def _median(proxies: dict[str, Any], proxy: str, metric: str) -> float | None:
    value = proxies.get(proxy, {}).get("metrics", {}).get(metric, {}).get("median")
    return float(value) if value is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(proxies: dict[str, Any]) -> dict[str, float | None]:
    """shadowmesh / nginx, on medians; for c=1, of the p50 latency each adds over direct."""
    out = {
        m: _ratio(_median(proxies, "shadowmesh", m), _median(proxies, "nginx", m))
        for m in ("rps", "p50_ms", "p99_ms", "mib_per_s")
    }
    direct = _median(proxies, "direct", "p50_ms")
    if direct is not None:
        added = {
            p: (_median(proxies, p, "p50_ms") or 0.0) - direct for p in ("nginx", "shadowmesh")
        }
        out["added_ms_nginx"] = added["nginx"]
        out["added_ms_shadowmesh"] = added["shadowmesh"]
        out["added_latency"] = _ratio(added["shadowmesh"], added["nginx"])
    return out


def shadow_accounting(runs: Sequence[Measurement]) -> dict[str, int]:
    """Summed over shadowmesh's rounds: every request's shadow whole at v2, or counted."""
    total = dict.fromkeys(
        ("requests", "v2_complete", "v2_partial", "sent", "dropped", "failed", "in_flight"), 0
    )
    for m in runs:
        if m.proxy != "shadowmesh" or "v2" not in m.shadow:
            continue
        stats = m.shadow.get("shadowmesh", {})
        total["requests"] += int(stats.get("requests", {}).get("total", m.requests))
        total["v2_complete"] += int(m.shadow["v2"].get("complete", 0))
        total["v2_partial"] += int(m.shadow["v2"].get("partial", 0))
        total["sent"] += int(stats.get("shadows", {}).get("sent", 0))
        total["dropped"] += sum(int(v) for v in stats.get("shadow_dropped", {}).values())
        total["failed"] += sum(int(v) for v in stats.get("shadow_failed", {}).values())
        # Still in flight a second after the load stopped: neither delivered nor counted.
        total["in_flight"] += int(stats.get("shadow_in_flight", 0))
    return total


def scenario_result(
    scenario: Scenario, runs: Sequence[Measurement], default_c: int
) -> dict[str, Any]:
    proxies = {
        proxy: summarize([m for m in runs if m.proxy == proxy])
        for proxy in ("direct", "nginx", "shadowmesh")
        if any(m.proxy == proxy for m in runs)
    }
    result: dict[str, Any] = {
        "name": scenario.name,
        "about": scenario.about,
        "connections": scenario.clients(default_c),
        "mirror_percent": scenario.mirror_percent,
        "shadow": scenario.shadow,
        "access_log": scenario.access_log,
        "body_bytes": scenario.body_bytes,
        "proxies": proxies,
        "ratio": ratios(proxies),
    }
    if scenario.shadow == "counting":
        result["shadow_accounting"] = shadow_accounting(runs)
    return result


# --- the printed table ---------------------------------------------------------------------

COLUMNS = (
    ("scenario", 19, "<"),
    ("proxy", 10, "<"),
    ("rps", 9, ">"),
    ("rps min-max", 17, ">"),
    ("p50 ms", 8, ">"),
    ("p99 ms", 8, ">"),
    ("CPU%", 6, ">"),
    ("RSS MB", 7, ">"),
    ("errors", 7, ">"),
    ("sm/nginx", 18, "<"),
)


def _row(cells: Sequence[str]) -> str:
    return "  ".join(
        f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, COLUMNS, strict=True)
    )


def _ratio_note(result: dict[str, Any]) -> str:
    r = result["ratio"]
    if r.get("added_latency") is not None:
        return f"{r['added_latency']:.2f}x added"
    if r.get("mib_per_s") is not None:
        return f"{r['mib_per_s']:.2f}x MB/s"
    if r.get("rps") is None:
        return ""
    p99 = f", {r['p99_ms']:.2f}x p99" if r.get("p99_ms") else ""
    return f"{r['rps']:.2f}x rps{p99}"


def _proxy_row(name: str, proxy: str, data: dict[str, Any], note: str) -> str:
    m = data["metrics"]
    cpu = f"{m['cpu_pct']['median']:.0f}" if proxy != "direct" else "-"
    rss = f"{m['peak_rss_mb']['median']:.1f}" if proxy != "direct" else "-"
    errors = sum(run["errors"] for run in data["runs"])
    return _row(
        (
            name,
            proxy,
            f"{m['rps']['median']:,.0f}",
            f"{m['rps']['min']:,.0f}-{m['rps']['max']:,.0f}",
            f"{m['p50_ms']['median']:.2f}",
            f"{m['p99_ms']['median']:.2f}",
            cpu,
            rss,
            str(errors),
            note,
        )
    )


def table(results: Sequence[dict[str, Any]]) -> str:
    header = _row([c[0] for c in COLUMNS])
    lines = [header, "-" * len(header)]
    for result in results:
        first = True
        for proxy, data in result["proxies"].items():
            note = _ratio_note(result) if proxy == "shadowmesh" else ""
            lines.append(_proxy_row(result["name"] if first else "", proxy, data, note))
            first = False
    return "\n".join(line.rstrip() for line in lines)


def notes(results: Sequence[dict[str, Any]]) -> list[str]:
    """The figures a row cannot hold: latency added at c=1, MB/s and shadow accounting."""
    out: list[str] = []
    for result in results:
        r = result["ratio"]
        if "added_ms_nginx" in r:
            out.append(
                f"{result['name']}: p50 latency added over direct: nginx "
                f"{1000 * r['added_ms_nginx']:.0f} us, shadowmesh "
                f"{1000 * r['added_ms_shadowmesh']:.0f} us"
            )
        if result["body_bytes"]:
            mbs = {
                p: d["metrics"].get("mib_per_s", {}).get("median", 0.0)
                for p, d in result["proxies"].items()
            }
            line = ", ".join(f"{p} {v:,.0f} MiB/s" for p, v in mbs.items())
            out.append(f"{result['name']}: primary throughput {line}")
        if "shadow_accounting" in result:
            a = result["shadow_accounting"]
            out.append(
                f"{result['name']}: shadowmesh served {a['requests']} requests; v2 got "
                f"{a['v2_complete']} whole bodies and {a['v2_partial']} cut short; shadowmesh "
                f"sent {a['sent']}, dropped {a['dropped']}, failed {a['failed']} (counted); "
                f"{a['in_flight']} still in flight a second after the load stopped"
            )
    return out


# --- the targets ---------------------------------------------------------------------


def _by_name(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in results}


def _own(results: dict[str, dict[str, Any]], name: str, metric: str) -> float | None:
    if name not in results:
        return None
    return _median(results[name]["proxies"], "shadowmesh", metric)


def _target(name: str, value: float | None, limit: float, at_least: bool) -> dict[str, Any]:
    met = None if value is None else (value >= limit if at_least else value <= limit)
    return {"target": name, "value": value, "limit": limit, "at_least": at_least, "met": met}


def targets(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 3's targets, for the scenarios that ran; ``met`` None when a figure is missing."""
    by = _by_name(results)
    out: list[dict[str, Any]] = []
    if "passthrough" in by:
        r = by["passthrough"]["ratio"]
        out.append(_target("passthrough rps vs nginx", r["rps"], 0.75, True))
        out.append(_target("passthrough p99 vs nginx", r["p99_ms"], 1.5, False))
    if "mirror100" in by:
        out.append(_target("mirror100 rps vs nginx", by["mirror100"]["ratio"]["rps"], 2.5, True))
    if "mirror100" in by and "mirror100-compare" in by:
        # Issue 12: comparing every mirrored request keeps 0.8 of mirroring's throughput.
        own = _ratio(_own(by, "mirror100-compare", "rps"), _own(by, "mirror100", "rps"))
        out.append(_target("mirror100-compare rps vs own mirror100", own, 0.8, True))
    for name in ("slow-shadow", "frozen-shadow", "dead-shadow"):
        if name not in by or "passthrough" not in by:
            continue
        own_rps = _ratio(_own(by, name, "rps"), _own(by, "passthrough", "rps"))
        own_p99 = _ratio(_own(by, name, "p99_ms"), _own(by, "passthrough", "p99_ms"))
        errors = sum(m["errors"] for m in by[name]["proxies"]["shadowmesh"]["runs"])
        out.append(_target(f"{name} rps vs own passthrough", own_rps, 0.9, True))
        out.append(_target(f"{name} p99 vs own passthrough", own_p99, 1.2, False))
        out.append(_target(f"{name} errors", errors, 0, False))
    if "post-1mib-mirrored" in by:
        result = by["post-1mib-mirrored"]
        out.append(_target("post-1mib MB/s vs nginx", result["ratio"]["mib_per_s"], 0.8, True))
        a = result.get("shadow_accounting")
        if a:
            unaccounted = max(0, a["requests"] - a["v2_complete"] - a["dropped"] - a["failed"])
            out.append(_target("post-1mib shadows cut short at v2", a["v2_partial"], 0, False))
            out.append(_target("post-1mib shadows unaccounted", unaccounted, 0, False))
    if "c1-latency" in by:
        out.append(
            _target(
                "c1 latency added vs nginx",
                by["c1-latency"]["ratio"].get("added_latency"),
                1.5,
                False,
            )
        )
    if "c1000" in by:
        out.append(_target("c1000 peak RSS MB", _own(by, "c1000", "peak_rss_mb"), 60, False))
    if "frozen-soak" in by:
        growth = _own(by, "frozen-soak", "rss_growth_mb")
        out.append(_target("frozen-soak RSS growth MB", growth, 10, False))
    return out


def target_lines(checks: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for c in checks:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[c["met"]]
        value = "-" if c["value"] is None else f"{c['value']:.2f}"
        sign = ">=" if c["at_least"] else "<="
        lines.append(f"  {verdict:<7} {c['target']:<40} {value:>8}  (target {sign} {c['limit']:g})")
    return lines
