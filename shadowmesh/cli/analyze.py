"""``shadowmesh analyze -f FILES``: what ``apply`` would say of some files, nothing applied.

As ``istioctl analyze``: findings go to stdout as ``Level [CODE] (Kind ns/name) text`` (the
analyzers of ``routing.analyze``), a document that apply would refuse is ``Error [IST0106]
... Schema validation error``, and the exit code is istioctl's: 0, or 79 when a finding reaches
``--failure-threshold`` (Error unless told), 65 for a file that is not YAML, 64 for bad usage.
The warnings apply gives as ``Warning: ...`` (deprecated or ignored fields, kinds skipped) are
given the same way, on stderr, and count as findings of level Warning. By default the files are
analysed against the running proxy's config, as istioctl against the cluster's; ``--offline``
analyses them alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml

from shadowmesh.cli.client import (
    _check,
    _errors_exit,
    admin_client,
    admin_option,
    filename_option,
    namespace_option,
    read_sources,
    token_option,
)
from shadowmesh.control.controller import analyze_files
from shadowmesh.errors import ConfigError, ConfigErrors, ParseError

# istioctl/cmd/sysexits.go
EXIT_INCORRECT_USAGE = 64
EXIT_DATA_ERROR = 65
EXIT_ANALYZER_FOUND_ISSUES = 79
LEVELS = ("Info", "Warning", "Error")


@click.command()
@filename_option
@namespace_option
@click.option(
    "--offline",
    is_flag=True,
    help="Analyse the files alone, not against the running proxy's config "
    "(istioctl's --use-kube=false).",
)
@click.option(
    "--failure-threshold",
    type=click.Choice(LEVELS),
    default="Error",
    show_default=True,
    help="The level of finding at which to exit 79.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["log", "json", "yaml"]),
    default="log",
    show_default=True,
    help="Findings as istioctl's log lines, or JSON or YAML (which always exit 0, as istioctl).",
)
@admin_option
@token_option
@_errors_exit
def analyze(
    paths: tuple[str, ...],
    namespace: str,
    offline: bool,
    failure_threshold: str,
    output: str,
    admin: str,
    admin_token_file: str | None,
) -> None:
    """Report what applying files would warn of or refuse, without applying (istioctl analyze)."""
    if not paths:
        click.echo("error: must specify -f", err=True)
        raise click.exceptions.Exit(EXIT_INCORRECT_USAGE)
    files = read_sources(paths)
    if offline:
        messages, warnings, invalid, unparsed = _offline(files, namespace)
    else:
        messages, warnings, invalid, unparsed = _online(files, namespace, admin, admin_token_file)
    for error in unparsed:
        click.echo(f"error: {error}", err=True)
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)
    findings = [
        {
            "code": "IST0106",
            "level": "Error",
            "origin": "",
            "message": f"Schema validation error: {e}",
            "line": f"Error [IST0106] Schema validation error: {e}",
        }
        for e in invalid
    ] + messages
    if output == "json":
        click.echo(json.dumps([_public(f) for f in findings], indent=1))
        return
    if output == "yaml":
        click.echo(yaml.safe_dump([_public(f) for f in findings], sort_keys=False), nl=False)
        return
    click.echo("\n".join(str(f["line"]) for f in findings))
    if not findings and not warnings and not unparsed:
        names = [source for source, _ in files]
        if len(names) > 1:
            listed = "\n  - ".join(names)
            click.echo(f"\u2714 No validation issues found when analyzing:\n  - {listed}", err=True)
        else:
            click.echo(f"\u2714 No validation issues found when analyzing {names[0]}.", err=True)
    levels = [str(f["level"]) for f in findings] + ["Warning"] * len(warnings)
    threshold = LEVELS.index(failure_threshold)
    if any(LEVELS.index(level) >= threshold for level in levels if level in LEVELS):
        raise click.exceptions.Exit(EXIT_ANALYZER_FOUND_ISSUES)
    if unparsed:
        raise click.exceptions.Exit(EXIT_DATA_ERROR)


Result = tuple[list[dict[str, Any]], list[str], list[str], list[str]]


def _offline(files: Sequence[tuple[str, str]], namespace: str) -> Result:
    try:
        analysis = analyze_files(files, namespace, {})
    except (ConfigErrors, ConfigError) as exc:
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        invalid = [str(e) for e in errors if not isinstance(e, ParseError)]
        return [], [], invalid, [str(e) for e in errors if isinstance(e, ParseError)]
    return [m.as_json() for m in analysis.messages], analysis.warnings, [], []


def _online(
    files: Sequence[tuple[str, str]], namespace: str, admin: str, token_file: str | None
) -> Result:
    payload = {"files": [{"source": s, "text": t} for s, t in files], "namespace": namespace}
    status, answer = admin_client(admin, token_file).post("/analyze", payload)
    if status == 422 and isinstance(answer, dict):
        return [], [], _strings(answer, "errors"), _strings(answer, "parseErrors")
    _check(status, answer)
    messages = [m for m in answer.get("messages", []) if isinstance(m, dict)]
    return messages, _strings(answer, "warnings"), [], []


def _public(finding: dict[str, Any]) -> dict[str, Any]:
    """A finding as istioctl's JSON has it: code, level, origin, message."""
    return {k: finding[k] for k in ("code", "level", "origin", "message") if k in finding}


def _strings(answer: dict[str, Any], key: str) -> list[str]:
    values = answer.get(key)
    return [str(v) for v in values] if isinstance(values, list) else []
