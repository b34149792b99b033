"""``shadowmesh proxy-config routes|clusters|endpoints|listeners``: istioctl's tables of a proxy.

The admin API's ``/proxy_config`` gives the rows; the tables here are laid out as istioctl's Go
``tabwriter`` lays them out (padding 5), with its column names and its shortening of domains.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click
import yaml

from shadowmesh.cli.client import _check, _errors_exit, admin_client, admin_option, token_option

Row = Mapping[str, Any]


def tabwriter(lines: Sequence[Sequence[str]], padding: int = 5) -> str:
    """Go's ``tabwriter.NewWriter(w, 0, 8, padding, ' ', 0)``: every cell but a line's last is
    padded to its column's widest cell plus ``padding``."""
    widths: dict[int, int] = {}
    for cells in lines:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    out = []
    for cells in lines:
        padded = [cell.ljust(widths[i] + padding) for i, cell in enumerate(cells[:-1])]
        out.append("".join(padded) + (cells[-1] if cells else ""))
    return "".join(line + "\n" for line in out)


def route_domains(domains: Sequence[str]) -> str:
    """istioctl's ``describeRouteDomains``: the domains without a port, the longer forms of a
    name dropped when the short one is there, at most two and ``+ N more...``."""
    if not domains:
        return ""
    if len(domains) == 1:
        return domains[0]
    plain = [d for d in domains if ":" not in d or (d.count(":") > 2 and d.endswith("]"))]
    unique = set(plain)
    longer = {
        d
        for d in plain
        for suffix in (".svc.cluster.local", ".svc")
        if d.endswith(suffix) and d[: -len(suffix)] in unique
    }
    kept = [d for d in plain if d not in longer]
    if len(kept) > 2:
        return f"{', '.join(kept[:2])} + {len(kept) - 2} more..."
    return ", ".join(kept)


def _routes(rows: Sequence[Row]) -> list[list[str]]:
    lines = [["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]]
    for r in rows:
        domains = route_domains(list(r["domains"]))
        lines.append([r["name"], r["vhostName"], domains, r["match"], r["virtualService"]])
    return lines


def _clusters(rows: Sequence[Row]) -> list[list[str]]:
    lines = [["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]]
    for r in rows:
        subset = r["subset"] or "-"
        lines.append(
            [
                r["serviceFqdn"],
                str(r["port"]),
                subset,
                r["direction"],
                r["type"],
                r["destinationRule"],
            ]
        )
    return lines


def _endpoints(rows: Sequence[Row]) -> list[list[str]]:
    lines = [["NAME", "STATUS", "LOCALITY", "CLUSTER"]]
    lines += [[r["endpoint"], r["status"], r["locality"], r["cluster"]] for r in rows]
    return lines


def _listeners(rows: Sequence[Row]) -> list[list[str]]:
    lines = [["ADDRESSES", "PORT", "MATCH", "DESTINATION"]]
    for r in rows:
        lines.append([",".join(r["addresses"]), str(r["port"]), r["match"], r["destination"]])
    return lines


TABLES: dict[str, Callable[[Sequence[Row]], list[list[str]]]] = {
    "routes": _routes,
    "clusters": _clusters,
    "endpoints": _endpoints,
    "listeners": _listeners,
}


@click.group("proxy-config")
def proxy_config() -> None:
    """Show the proxy's routes, clusters, endpoints or listeners, as istioctl proxy-config."""


def _verb(kind: str, text: str) -> click.Command:
    @click.command(kind, help=text)
    @click.option(
        "-o",
        "--output",
        type=click.Choice(["short", "json", "yaml"]),
        default="short",
        show_default=True,
        help="istioctl's table, or the rows as JSON or YAML.",
    )
    @admin_option
    @token_option
    @_errors_exit
    def show(output: str, admin: str, admin_token_file: str | None) -> None:
        status, answer = admin_client(admin, admin_token_file).get("/proxy_config", {"type": kind})
        _check(status, answer)
        items = [i for i in answer.get("items", []) if isinstance(i, dict)]
        if output == "json":
            click.echo(json.dumps(items, indent=4))
        elif output == "yaml":
            click.echo(yaml.safe_dump(items, sort_keys=False), nl=False)
        else:
            click.echo(tabwriter(TABLES[kind](items)), nl=False)

    return show


for _kind, _text in (
    ("routes", "Route configurations: each route of each virtual host, per port."),
    ("clusters", "Clusters: one per Service port and subset."),
    ("endpoints", "Endpoints of every cluster."),
    ("listeners", "Listeners: one per Service port."),
):
    proxy_config.add_command(_verb(_kind, _text))
