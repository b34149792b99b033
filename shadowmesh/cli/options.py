"""Command options declared once, as the fields of a frozen dataclass.

A field made with ``option(...)`` is one option: its name, type, default and help live there
and nowhere else. From the dataclass come the click options (``click_options``), the settings
object built from what click parsed (``from_params``), and the command line that gives the
same settings to another process (``to_argv``, how ``serve`` starts its extra workers). A
field made with plain ``dataclasses.field`` is no option: something derived at start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import click

from shadowmesh.model import validate

T = TypeVar("T")
C = TypeVar("C", bound=Callable[..., Any])

METADATA = "shadowmesh.cli"


class Cli:
    """How one field is spelled on the command line."""

    def __init__(
        self,
        decls: tuple[str, ...],
        help: str | None,
        type: click.ParamType[Any, Any] | None,
        multiple: bool,
        hidden: bool,
        inherited: bool,
        show_default: bool | str,
        metavar: str | None,
    ) -> None:
        self.decls = decls
        self.help = help
        self.type = type
        self.multiple = multiple
        self.hidden = hidden
        self.inherited = inherited  # given on to the processes ``to_argv`` starts
        self.show_default = show_default
        self.metavar = metavar

    @property
    def long(self) -> str:
        """The long spelling (``--filename`` of ``-f, --filename``)."""
        return next(d for d in self.decls if d.startswith("--"))

    def text(self, value: object) -> str:
        """``value`` as it is written on a command line."""
        if isinstance(self.type, Formatted):
            return self.type.format(value)
        return str(value)


class Formatted(click.ParamType[Any, Any]):
    """A parameter type whose converted values can be written back as they are typed."""

    def format(self, value: Any) -> str:
        raise NotImplementedError


@overload
def option(
    *decls: str,
    default: T,
    help: str | None = None,
    type: click.ParamType[Any, Any] | None = None,
    multiple: bool = False,
    hidden: bool = False,
    inherited: bool = True,
    show_default: bool | str = True,
    metavar: str | None = None,
) -> T: ...


@overload
def option(
    *decls: str,
    default_factory: Callable[[], T],
    help: str | None = None,
    type: click.ParamType[Any, Any] | None = None,
    multiple: bool = False,
    hidden: bool = False,
    inherited: bool = True,
    show_default: bool | str = True,
    metavar: str | None = None,
) -> T: ...


def option(
    *decls: str,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    help: str | None = None,
    type: click.ParamType[Any, Any] | None = None,
    multiple: bool = False,
    hidden: bool = False,
    inherited: bool = True,
    show_default: bool | str = True,
    metavar: str | None = None,
) -> Any:
    """A dataclass field that is a command-line option.

    A ``bool`` field is a flag: ``--x/--no-x`` in ``decls``, or ``--x`` alone for one that is
    off by default. ``multiple``: repeatable, a tuple; an empty value given (``--x ''``) stands
    for none, so that a default list can be emptied. ``inherited=False``: an option of this
    process alone, not given on to the processes it starts.
    """
    cli = Cli(decls, help, type, multiple, hidden, inherited, show_default, metavar)
    metadata = {METADATA: cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def options_of(settings: type[Any]) -> list[tuple[dataclasses.Field[Any], Cli]]:
    """The option fields of a settings dataclass, in declaration order."""
    found = []
    for f in dataclasses.fields(settings):
        cli = f.metadata.get(METADATA)
        if isinstance(cli, Cli):
            found.append((f, cli))
    return found


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory
    return f.default


class Address(Formatted):
    """``HOST:PORT`` as ``(host, port)``; an empty host is 127.0.0.1, ``[::1]:80`` is IPv6.
    With ``off``, that word stands for none (``None``)."""

    name = "HOST:PORT"

    def __init__(self, off: str | None = None) -> None:
        self.off = off

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default, already converted
        if self.off is not None and value == self.off:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            self.fail(f"expected HOST:PORT, got {value!r}", param, ctx)
        return host.strip("[]") or "127.0.0.1", int(port)

    def format(self, value: Any) -> str:
        if value is None and self.off is not None:
            return self.off
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Labels(Formatted):
    """``app=sleep,version=v1`` as ``(("app", "sleep"), ("version", "v1"))``, each key and
    value as Kubernetes labels allow; an empty value is none."""

    name = "KEY=VALUE,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default, already converted
        pairs: dict[str, str] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            key, sep, val = item.strip().partition("=")
            problem = (
                f"expected KEY=VALUE, got {item.strip()!r}"
                if not sep
                else validate.label_key(key) or validate.label_value(val)
            )
            if problem:
                self.fail(problem, param, ctx)
            pairs[key] = val
        return tuple(pairs.items())

    def format(self, value: Any) -> str:
        return ",".join(f"{k}={v}" for k, v in value)


def _drop_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    return tuple(v for v in value if v != "")


def click_options(settings: type[Any]) -> Callable[[C], C]:
    """A decorator adding one click option per option field of ``settings``."""

    def decorate(command: C) -> C:
        # click.option decorators apply bottom-up: reversed, --help lists them in field order.
        for f, cli in reversed(options_of(settings)):
            default = _default(f)
            kwargs: dict[str, Any] = {
                "help": cli.help,
                "hidden": cli.hidden,
                "show_default": cli.show_default,
            }
            if cli.metavar is not None:
                kwargs["metavar"] = cli.metavar
            if cli.multiple:
                kwargs["multiple"] = True
                kwargs["callback"] = _drop_empty
                default = tuple(cli.text(v) for v in default)
            elif isinstance(default, bool):
                if "/" not in cli.long and default:
                    raise TypeError(f"{cli.long}: a flag on by default needs --x/--no-x")
                if "/" not in cli.long:
                    kwargs["is_flag"] = True
            elif default is not None and not callable(default):
                default = cli.text(default) if isinstance(cli.type, Formatted) else default
            if cli.type is not None:
                kwargs["type"] = cli.type
            kwargs["default"] = default
            command = click.option(*cli.decls, f.name, **kwargs)(command)
        return command

    return decorate


def from_params(settings: type[T], params: Mapping[str, Any]) -> T:
    """The settings object of what click parsed (``params``, one entry per option field)."""
    return settings(**{f.name: params[f.name] for f, _ in options_of(settings)})


def to_argv(settings: object) -> list[str]:
    """The options that give another process the inherited fields of ``settings``.

    Every inherited option is written, defaults too, so the other process takes this one's
    values rather than its own defaults.
    """
    argv: list[str] = []
    for f, cli in options_of(type(settings)):
        if not cli.inherited:
            continue
        value = getattr(settings, f.name)
        if cli.multiple:
            # None at all: one empty value, so the other process does not fall back to defaults.
            for item in value or ("",):
                argv += [cli.long, cli.text(item)]
        elif isinstance(value, bool):
            if "/" in cli.long:
                on, off = cli.long.split("/")
                argv.append(on if value else off)
            elif value:
                argv.append(cli.long)
        elif value is not None or _default(f) is not None:
            # None where the default is not: the type spells it (``--outbound off``).
            argv += [cli.long, cli.text(value)]
    return argv
