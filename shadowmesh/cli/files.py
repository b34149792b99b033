"""Reading ``-f PATH|DIR|-`` as kubectl does: a directory means its YAML and JSON files, sorted."""

from __future__ import annotations

import sys
from pathlib import Path

import click

SUFFIXES = (".yaml", ".yml", ".json")


def read_sources(paths: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(source name, text) for every file named; a clean ClickException when one can't be read."""
    sources: list[tuple[str, str]] = []
    for name in paths:
        if name == "-":
            sources.append(("-", sys.stdin.read()))
            continue
        path = Path(name)
        try:
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
                if not files:
                    raise click.ClickException(f"no .yaml, .yml or .json files in {name}")
                sources += [(str(p), p.read_text(encoding="utf-8")) for p in files]
            else:
                sources.append((name, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise click.ClickException(f"cannot read {name}: {reason}") from None
    return sources
