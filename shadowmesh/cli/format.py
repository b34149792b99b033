"""What the client verbs print, as pure functions of what the admin API answered.

The shapes are kubectl's: a table padded as Go's tabwriter pads it, ``AGE`` as kubectl's
HumanDuration writes it, and ``-o yaml|json`` of a list wrapped in a ``v1 List``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from shadowmesh.control.kinds import kind_info
from shadowmesh.model.kinds import Column

Row = list[str]
Cells = Callable[[Mapping[str, Any]], Row]

# kubectl's tabwriter: minwidth 6, padding 3, spaces.
_MIN_WIDTH = 6
_PADDING = 3


def human_duration(seconds: float) -> str:
    """kubectl's AGE: ``45s``, ``3m20s``, ``25m``, ``5h10m``, ``3d4h``, ``400d``, ``3y20d``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 120:
        return f"{max(s, 0)}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return _pair(minutes, "m", s % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return _pair(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _pair(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _pair(hours // (24 * 365), "y", (hours // 24) % 365, "d")
    return f"{hours // (24 * 365)}y"


def _pair(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def format_table(
    kind: str,
    items: Sequence[Mapping[str, Any]],
    *,
    all_namespaces: bool = False,
    wide: bool = False,
    now: datetime | None = None,
) -> str:
    """``kubectl get`` of ``kind`` (``VirtualService``...) as a table, ending in a newline.

    Columns: [NAMESPACE] NAME, the kind's own, AGE, then with ``wide`` the kind's wide ones.
    """
    when = now or datetime.now(UTC)
    columns = kind_info(kind).columns
    narrow = [c for c in columns if not c.wide]
    extra = [c for c in columns if c.wide] if wide else []
    rows: list[Row] = [["NAME", *(c.title for c in narrow), "AGE", *(c.title for c in extra)]]
    for item in items:
        rows.append(
            [
                _meta(item, "name"),
                *(_cell(item, c) for c in narrow),
                _age(item, when),
                *(_cell(item, c) for c in extra),
            ]
        )
    if all_namespaces:
        namespaces = ["NAMESPACE", *(_meta(i, "namespace") for i in items)]
        rows = [[ns, *row] for ns, row in zip(namespaces, rows, strict=True)]
    return tabulate(rows)


def tabulate(rows: Sequence[Row]) -> str:
    widths = [max(_MIN_WIDTH, max(len(r[i]) for r in rows) + _PADDING) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("".join(cells) + row[-1])
    return "\n".join(lines) + "\n"


def format_output(kind: str, items: Sequence[Mapping[str, Any]], output: str, single: bool) -> str:
    """``-o yaml|json|name``: one object when a name was asked for, else a ``v1 List``."""
    if output == "name":
        resource = kind_info(kind).resource
        return "".join(f"{resource}/{_meta(i, 'name')}\n" for i in items)
    data: Any = items[0] if single and items else _as_list(items)
    if output == "json":
        return json.dumps(data, indent=4) + "\n"
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True)


def no_resources(namespace: str | None) -> str:
    if namespace is None:
        return "No resources found"
    return f"No resources found in {namespace} namespace."


def _as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "items": [dict(i) for i in items],
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }


def _cell(item: Mapping[str, Any], column: Column) -> str:
    value: Any = item
    for part in column.path.split("."):
        value = _mapping(value).get(part)
    return _SHOW[column.show](value)


def _ports(value: Any) -> str:
    ports = [p for p in _list(value) if isinstance(p, Mapping)]
    text = ",".join(f"{p.get('port', '')}/{p.get('protocol') or 'TCP'}" for p in ports)
    return text or "<none>"


def _names(value: Any) -> str:
    named = [s for s in _list(value) if isinstance(s, Mapping)]
    return ",".join(str(s.get("name", "")) for s in named) or "<none>"


_SHOW: dict[str, Callable[[Any], str]] = {
    "text": lambda value: "" if value is None else str(value),
    "json": lambda value: _json_list(value),
    "labels": lambda value: _labels(value),
    "names": _names,
    "ports": _ports,
    "percent": lambda value: f"{100 if value is None else value}%",
    "subset": lambda value: str(_mapping(value).get("subset", "")) or "<none>",
}


def _age(item: Mapping[str, Any], now: datetime) -> str:
    created = _meta(item, "creationTimestamp")
    try:
        then = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


def _meta(item: Mapping[str, Any], name: str) -> str:
    return str(_mapping(item.get("metadata")).get(name, ""))


def _spec(item: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(item.get("spec"))


def _labels(value: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in _mapping(value).items()) or "<none>"


def _json_list(value: Any) -> str:
    # kubectl prints a CRD's array column as compact JSON: ["httpbin"]; absent is empty.
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list) and value else ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
