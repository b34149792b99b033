"""The ``shadowmesh`` command: one click group, each verb in its own module."""

from __future__ import annotations

import click

from shadowmesh import __version__
from shadowmesh.cli import analyze, client, demo, diff, proxyconfig, serve, stats


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shadowmesh")
def cli() -> None:
    """Istio's traffic routing and mirroring for any HTTP service, with Istio's own YAML."""


cli.add_command(serve.serve)
cli.add_command(demo.demo)
cli.add_command(diff.diff)
cli.add_command(stats.stats)
cli.add_command(analyze.analyze)
cli.add_command(proxyconfig.proxy_config)
for command in client.COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="shadowmesh")
