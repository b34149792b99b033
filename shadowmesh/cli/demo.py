"""Placeholder: being written."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Not written yet."""
    raise click.ClickException("not written yet")
