"""What the client verbs print, as pure functions of what the admin API answered.

The shapes are kubectl's: a table padded as Go's tabwriter pads it, ``AGE`` as kubectl's
HumanDuration writes it, and ``-o yaml|json`` of a list wrapped in a ``v1 List``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from shadowmesh.control.kinds import kind_info

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
    columns = _COLUMNS[kind]
    rows: list[Row] = [["NAME", *columns.titles, "AGE", *(columns.wide_titles if wide else [])]]
    for item in items:
        extra = columns.wide_cells(item) if wide else []
        rows.append([_meta(item, "name"), *columns.cells(item), _age(item, when), *extra])
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


@dataclass(frozen=True)
class _Columns:
    titles: Row
    cells: Cells
    wide_titles: Row
    wide_cells: Cells


def _service_ports(item: Mapping[str, Any]) -> Row:
    ports = [p for p in _list(_spec(item).get("ports")) if isinstance(p, Mapping)]
    text = ",".join(f"{p.get('port', '')}/{p.get('protocol') or 'TCP'}" for p in ports)
    return [text or "<none>"]


def _service_selector(item: Mapping[str, Any]) -> Row:
    return [_labels(_spec(item).get("selector"))]


def _vs_cells(item: Mapping[str, Any]) -> Row:
    spec = _spec(item)
    return [_json_list(spec.get("gateways")), _json_list(spec.get("hosts"))]


def _dr_host(item: Mapping[str, Any]) -> Row:
    return [str(_spec(item).get("host", ""))]


def _dr_subsets(item: Mapping[str, Any]) -> Row:
    subsets = [s for s in _list(_spec(item).get("subsets")) if isinstance(s, Mapping)]
    return [",".join(str(s.get("name", "")) for s in subsets) or "<none>"]


def _we_address(item: Mapping[str, Any]) -> Row:
    return [str(_spec(item).get("address", ""))]


def _we_labels(item: Mapping[str, Any]) -> Row:
    return [_labels(_spec(item).get("labels"))]


def _cmp_cells(item: Mapping[str, Any]) -> Row:
    spec = _spec(item)
    return [str(spec.get("host", ""))] + [
        str(_mapping(spec.get(role)).get("subset", "")) or "<none>"
        for role in ("primary", "candidate", "baseline")
    ]


def _cmp_sample(item: Mapping[str, Any]) -> Row:
    percentage = _mapping(_spec(item).get("sample")).get("percentage", 100)
    return [f"{percentage}%"]


def _nothing(item: Mapping[str, Any]) -> Row:
    return []


_COLUMNS: dict[str, _Columns] = {
    "Service": _Columns(["PORT(S)"], _service_ports, ["SELECTOR"], _service_selector),
    "VirtualService": _Columns(["GATEWAYS", "HOSTS"], _vs_cells, [], _nothing),
    "DestinationRule": _Columns(["HOST"], _dr_host, ["SUBSETS"], _dr_subsets),
    "WorkloadEntry": _Columns(["ADDRESS"], _we_address, ["LABELS"], _we_labels),
    "Comparison": _Columns(
        ["HOST", "PRIMARY", "CANDIDATE", "BASELINE"], _cmp_cells, ["SAMPLE"], _cmp_sample
    ),
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
