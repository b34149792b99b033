"""The client verbs, ``apply``, ``delete`` and ``get``: kubectl's words, sent to the admin API.

Each verb reads its input, makes one admin API call and prints the answer. Every failure ends as
``error: ...`` on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from shadowmesh.admin.auth import ENV_TOKEN_FILE, load_token
from shadowmesh.admin.client import DEFAULT_ADMIN, AdminClient
from shadowmesh.cli.format import format_output, format_table, no_resources
from shadowmesh.errors import ShadowmeshError

SUFFIXES = (".yaml", ".yml", ".json")

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(1)


def _errors_exit(func: Callable[P, R]) -> Callable[P, R]:
    """Turns shadowmesh's own errors into ``error: ...`` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ShadowmeshError as exc:
            fail(str(exc))

    return wrapper


admin_option = click.option(
    "--admin",
    envvar="SHADOWMESH_ADMIN",
    default=DEFAULT_ADMIN,
    show_default=True,
    metavar="HOST:PORT",
    help="Admin API of the running `shadowmesh serve` (env SHADOWMESH_ADMIN).",
)
token_option = click.option(
    "--admin-token-file",
    "admin_token_file",
    envvar=ENV_TOKEN_FILE,
    metavar="FILE",
    help=f"File holding the admin API's token, when serve has one (env {ENV_TOKEN_FILE}).",
)
namespace_option = click.option(
    "-n", "--namespace", default="default", show_default=True, help="Namespace of the resources."
)
filename_option = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    metavar="PATH|DIR|-",
    help="A YAML or JSON file, a directory of them, or - for stdin. Repeatable.",
)


@click.command()
@filename_option
@namespace_option
@admin_option
@token_option
@_errors_exit
def apply(paths: tuple[str, ...], namespace: str, admin: str, admin_token_file: str | None) -> None:
    """Create or update resources from files, all or nothing, as kubectl apply."""
    if not paths:
        fail("must specify -f")
    files = read_sources(paths)
    if not files:
        fail("no objects passed to apply")
    status, answer = admin_client(admin, admin_token_file).post(
        "/apply", {"files": _payload_files(files), "namespace": namespace}
    )
    _print_warnings(answer)
    if status == 422:
        for error in _strings(answer, "errors"):
            click.echo(f"error: {error}", err=True)
        raise click.exceptions.Exit(1)
    _check(status, answer)
    for line in _strings(answer, "lines"):
        click.echo(line)


@click.command()
@click.argument("args", nargs=-1, metavar="[KIND NAME...]")
@filename_option
@namespace_option
@admin_option
@token_option
@_errors_exit
def delete(
    args: tuple[str, ...],
    paths: tuple[str, ...],
    namespace: str,
    admin: str,
    admin_token_file: str | None,
) -> None:
    """Delete resources named in files (-f), or by KIND and NAME."""
    if paths and args:
        fail("give either -f PATH or KIND NAME..., not both")
    if paths:
        files = read_sources(paths)
        if not files:
            fail("no objects passed to delete")
        payload: dict[str, Any] = {"files": _payload_files(files), "namespace": namespace}
    elif len(args) >= 2:
        payload = {"kind": args[0], "names": list(args[1:]), "namespace": namespace}
    elif args:
        fail("resource(s) were provided, but no name was specified")
    else:
        fail("you must provide one or more resources by argument or filename")
    status, answer = admin_client(admin, admin_token_file).post("/delete", payload)
    _print_warnings(answer)
    if status == 422:
        for error in _strings(answer, "errors"):
            click.echo(f"error: {error}", err=True)
        raise click.exceptions.Exit(1)
    if status not in (200, 404) or not isinstance(answer, dict) or "lines" not in answer:
        _check(status, answer)
    for line in _strings(answer, "lines"):
        click.echo(line)
    errors = _strings(answer, "errors")
    for error in errors:
        click.echo(error, err=True)
    if errors:
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json", "wide", "name"]),
    help="Output format; a table by default.",
)
@admin_option
@token_option
@_errors_exit
def get(
    kind: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: str | None,
    admin: str,
    admin_token_file: str | None,
) -> None:
    """Show resources of one KIND (svc, vs, dr, we), or one of them by NAME."""
    if name and all_namespaces:
        fail("a resource cannot be retrieved by name across all namespaces")
    params = {"kind": kind, "namespace": namespace}
    if name:
        params["name"] = name
    if all_namespaces:
        params["allNamespaces"] = "1"
    status, answer = admin_client(admin, admin_token_file).get("/resources", params)
    if status == 404 and isinstance(answer, dict) and "errors" in answer:
        for error in _strings(answer, "errors"):
            click.echo(error, err=True)
        raise click.exceptions.Exit(1)
    _check(status, answer)
    items = [i for i in answer.get("items", []) if isinstance(i, dict)]
    stored_kind = str(answer.get("kind", ""))
    click.echo(_render(stored_kind, items, output, bool(name), all_namespaces, namespace), nl=False)


def _render(
    kind: str,
    items: list[dict[str, Any]],
    output: str | None,
    single: bool,
    all_namespaces: bool,
    namespace: str,
) -> str:
    if output in ("yaml", "json") or output == "name":
        return format_output(kind, items, output, single)
    if not items:
        click.echo(no_resources(None if all_namespaces else namespace), err=True)
        return ""
    return format_table(kind, items, all_namespaces=all_namespaces, wide=output == "wide")


def admin_client(admin: str, token_file: str | None) -> AdminClient:
    """A client of ``admin``, with the token of ``token_file`` when one is given."""
    return AdminClient(admin, token=load_token(token_file) if token_file else None)


def read_sources(paths: tuple[str, ...]) -> list[tuple[str, str]]:
    """(source, text) of each path; a directory gives its YAML and JSON files, sorted."""
    return [(source, _read(source)) for path in paths for source in _expand(path)]


def _expand(path: str) -> Iterator[str]:
    if path != "-" and os.path.isdir(path):
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror or exc}")
        for name in names:
            full = os.path.join(path, name)
            if name.endswith(SUFFIXES) and os.path.isfile(full):
                yield full
        return
    yield path


def _read(source: str) -> str:
    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            data = Path(source).read_bytes()
        return data.decode("utf-8-sig")
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail(f"cannot read {source}: not UTF-8 text ({exc.reason} at byte {exc.start})")


def _payload_files(files: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"source": source, "text": text} for source, text in files]


def _print_warnings(answer: Any) -> None:
    for warning in _strings(answer, "warnings"):
        click.echo(f"Warning: {warning}", err=True)


def _check(status: int, answer: Any) -> None:
    """Fails on any answer but 200, with the admin API's own message."""
    if status == 200 and isinstance(answer, dict):
        return
    message = answer.get("error") if isinstance(answer, dict) else None
    if not message and isinstance(answer, dict):
        message = "; ".join(_strings(answer, "errors"))
    fail(str(message or f"the admin API answered {status}"))


def _strings(answer: Any, key: str) -> list[str]:
    values = answer.get(key) if isinstance(answer, dict) else None
    return [str(v) for v in values] if isinstance(values, list) else []


COMMANDS: list[click.Command] = [apply, delete, get]
