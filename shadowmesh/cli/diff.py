"""``shadowmesh diff [NAME]``: what the candidate does differently, read from the admin API.

Prints the report of one Comparison, or of every Comparison configured in the namespace, as
text, JSON, JUnit XML or a self-contained HTML page. ``--fail-on`` makes it a CI gate (exit 1):
``regression`` on a field or status regression, ``latency`` on a latency regression,
``difference`` on either or any field difference; each also on "insufficient data" (too few
requests compared to judge) unless ``--allow-insufficient``. ``--reset`` forgets what a
Comparison counted, so its report starts over.
"""

from __future__ import annotations

import json
import re
import time
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
from shadowmesh.model.comparison import DEFAULT_THRESHOLDS as _D

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
    type=click.Choice(["regression", "latency", "difference", "never"]),
    multiple=True,
    help="Exit 1 on a field regression, a latency regression, or any difference (repeat to "
    "combine); also on insufficient data unless --allow-insufficient. Without a baseline "
    "nothing is a regression: use difference.",
)
@click.option(
    "--allow-insufficient",
    is_flag=True,
    help="Let the gate pass when too few requests were compared to judge.",
)
@click.option("--reset", is_flag=True, help="Forget what the Comparison counted; start over.")
@click.option(
    "--since",
    help="Only what was compared in the last DURATION (90s, 10m, 2h, 1d) or since an epoch "
    "time; within the per-request retention (100,000 requests, 7 days).",
)
@click.option("--alpha", type=float, help=f"False discovery rate [spec, or {_D.alpha}].")
@click.option(
    "--min-pairs",
    type=int,
    help=f"Requests before an endpoint is judged [spec, or {_D.min_pairs}].",
)
@click.option(
    "--min-field-effect",
    type=float,
    help=f"Smallest field effect, % of the requests [spec, or {100 * _D.min_excess:g}].",
)
@click.option(
    "--min-field-relative",
    type=float,
    help="Smallest field effect as Diffy's relative figure, % "
    f"[spec, or {100 * _D.min_relative:g}: off].",
)
@click.option(
    "--latency-min-effect",
    type=float,
    help=f"Smallest latency effect, % slower [spec, or {100 * _D.latency_min_relative:g}].",
)
@click.option(
    "--latency-min-ms",
    type=float,
    help=f"Smallest latency effect, ms slower [spec, or {_D.latency_min_absolute_ms:g}].",
)
@click.option(
    "--latency-min-seconds",
    type=float,
    help=f"Time the latency pairs must span [spec, or {_D.latency_min_seconds:g}].",
)
@admin_option
@token_option
@_errors_exit
def diff(
    name: str | None,
    namespace: str,
    output: str,
    fail_on: tuple[str, ...],
    allow_insufficient: bool,
    reset: bool,
    since: str | None,
    alpha: float | None,
    min_pairs: int | None,
    min_field_effect: float | None,
    min_field_relative: float | None,
    latency_min_effect: float | None,
    latency_min_ms: float | None,
    latency_min_seconds: float | None,
    admin: str,
    admin_token_file: str | None,
) -> None:
    """Show how the candidate's responses differ from the primary's (Comparison reports)."""
    client = admin_client(admin, admin_token_file)
    if reset:
        if not name:
            fail("--reset needs the NAME of a Comparison")
        status, answer = client.post(f"/comparisons/{namespace}/{name}/reset", {})
        _check(status, answer)
        click.echo(f"comparison.shadowmesh.io/{name} reset")
        return
    params = _params(
        alpha=alpha,
        min_pairs=min_pairs,
        min_excess=_fraction(min_field_effect),
        min_relative=_fraction(min_field_relative),
        latency_min_relative=_fraction(latency_min_effect),
        latency_min_absolute_ms=latency_min_ms,
        latency_min_seconds=latency_min_seconds,
    )
    if since:
        params["since"] = repr(since_epoch(since))
    names = [name] if name else _names(client, namespace)
    raw = [_fetch(client, namespace, n, params) for n in names]
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
    if failed(reports, set(fail_on), allow_insufficient):
        raise click.exceptions.Exit(1)


def failed(reports: list[Report], fail_on: set[str], allow_insufficient: bool = False) -> bool:
    """The gate: nothing to judge is never a pass."""
    if not fail_on - {"never"}:
        return False
    if not reports:
        return not allow_insufficient
    return any(r.fails(fail_on, allow_insufficient) for r in reports)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_epoch(text: str, now: float | None = None) -> float:
    """``10m`` -> ten minutes ago, as epoch seconds; a plain number is an epoch already."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd])", text.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        fail(f'invalid --since "{text}": give a duration (90s, 10m, 2h, 1d) or epoch seconds')
    return value


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else percent / 100


def _params(**values: float | None) -> dict[str, str]:
    """The thresholds to override, as the admin API takes them (``Thresholds``' names,
    fractions, not percent)."""
    return {k: repr(v) for k, v in values.items() if v is not None}


def _names(client: AdminClient, namespace: str) -> list[str]:
    status, answer = client.get("/comparisons", {"namespace": namespace})
    _check(status, answer)
    items = answer.get("items")
    if not isinstance(items, list):
        fail("the admin API answered a comparison list without items")
    return [
        str(i["name"])
        for i in items
        if isinstance(i, dict) and "name" in i and i.get("configured", True)
    ]


def _fetch(
    client: AdminClient, namespace: str, name: str, params: dict[str, str]
) -> dict[str, Any]:
    status, answer = client.get(f"/comparisons/{namespace}/{name}", params or None)
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
