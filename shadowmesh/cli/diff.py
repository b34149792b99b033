"""``shadowmesh diff [NAME]``: what the candidate does differently, read from the admin API.

Prints the report of one Comparison, or of every Comparison in the namespace, as text, JSON,
JUnit XML or a self-contained HTML page. ``--fail-on`` makes it a CI gate: exit 1 when a
regression (a field the test calls, or a slower endpoint) or any difference is found.
"""

from __future__ import annotations

import json
from typing import Any

import click

from shadowmesh.admin.client import AdminClient
from shadowmesh.cli.client import (
    _check,
    _errors_exit,
    admin_client,
    admin_option,
    fail,
    namespace_option,
    token_option,
)
from shadowmesh.compare.htmlpage import render_html
from shadowmesh.compare.junit import render_junit
from shadowmesh.compare.render import render_text
from shadowmesh.compare.report import Report
from shadowmesh.errors import ShadowmeshError

_COLOURS = {"regression": "red", "difference": "yellow", "ok": "green"}


@click.command("diff")
@click.argument("name", required=False)
@namespace_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "junit", "html"]),
    default="text",
    show_default=True,
    help="Plain text, the report's JSON, JUnit XML for CI, or one self-contained HTML page.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["regression", "difference", "never"]),
    default="never",
    show_default=True,
    help="Exit 1 when a regression (or any difference) is found. Without a baseline nothing "
    "is a regression: use difference.",
)
@admin_option
@token_option
@_errors_exit
def diff(
    name: str | None,
    namespace: str,
    output: str,
    fail_on: str,
    admin: str,
    admin_token_file: str | None,
) -> None:
    """Show how the candidate's responses differ from the primary's (Comparison reports)."""
    client = admin_client(admin, admin_token_file)
    names = [name] if name else _names(client, namespace)
    raw = [_fetch(client, namespace, n) for n in names]
    reports = [_parse(r) for r in raw]
    if output == "json":
        click.echo(json.dumps(raw[0] if name else {"items": raw}, indent=2))
    elif output == "junit":
        click.echo(render_junit(reports), nl=False)
    elif output == "html":
        click.echo(render_html(reports), nl=False)
    else:
        if not reports:
            click.echo(f"No comparisons found in {namespace} namespace.", err=True)
        click.echo(render_text(reports, _style), nl=False)
    if failed(reports, fail_on):
        raise click.exceptions.Exit(1)


def failed(reports: list[Report], fail_on: str) -> bool:
    if fail_on == "regression":
        return any(r.failed_on_regression for r in reports)
    if fail_on == "difference":
        return any(r.failed_on_regression or r.differences for r in reports)
    return False


def _names(client: AdminClient, namespace: str) -> list[str]:
    status, answer = client.get("/comparisons", {"namespace": namespace})
    _check(status, answer)
    items = answer.get("items")
    if not isinstance(items, list):
        fail("the admin API answered a comparison list without items")
    return [str(i["name"]) for i in items if isinstance(i, dict) and "name" in i]


def _fetch(client: AdminClient, namespace: str, name: str) -> dict[str, Any]:
    status, answer = client.get(f"/comparisons/{namespace}/{name}")
    _check(status, answer)
    return dict(answer)


def _parse(data: dict[str, Any]) -> Report:
    try:
        return Report.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        message = f"the admin API answered a report this client cannot read: {exc}"
        raise ShadowmeshError(message) from None


def _style(text: str, how: str) -> str:
    if how == "dim":
        return click.style(text, dim=True)
    colour = _COLOURS.get(how)
    return click.style(text, fg=colour, bold=how == "regression") if colour else text
