"""``shadowmesh demo``: play Istio's traffic-mirroring tutorial on this machine."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

from shadowmesh.demo import scenario


@click.command()
@click.option(
    "--requests",
    "-r",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="Requests sent at each step.",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="After the mirror steps, leave everything running until Ctrl-C, then clean up.",
)
@click.option(
    "--examples",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of the scenario's YAML (default: examples/httpbin of this checkout).",
)
def demo(requests: int, keep_running: bool, examples: Path | None) -> None:
    """Istio's mirroring tutorial, end to end: httpbin v1 and v2, route, mirror, clean up.

    Starts real httpbin v1 and v2 under gunicorn (127.0.0.1:18081 and :18082) and `shadowmesh
    serve` (Service port 8000), applies examples/httpbin step by step, sends requests and shows
    what each version logged. Everything it started is stopped at the end, on error and on
    Ctrl-C.
    """
    found = examples or scenario.find_examples()
    if found is None:
        raise click.ClickException(
            "the scenario's files (examples/httpbin) were not found: run from the source "
            "checkout or pass --examples DIR"
        )
    opts = scenario.Options(examples=found, requests=requests, keep_running=keep_running)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        scenario.run(opts)
    except scenario.DemoFailure as e:
        click.echo(click.style(f"\ndemo failed: {e}", fg="red", bold=True), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; everything the demo started was stopped", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(click.style("\ndemo finished: the scenario ran end to end", fg="green", bold=True))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the children are stopped by the same finally blocks.
    raise KeyboardInterrupt
