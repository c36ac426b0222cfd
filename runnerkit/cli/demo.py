"""``demo``: a throwaway site that carries mail end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runnerkit.cli.common import (
    EXIT_FAILED,
    CommandError,
    main,
)
from runnerkit.errors import RunnerkitError


@main.command()
@click.option("-n", "--count", default=1000, show_default=True, help="Messages to send.")
@click.option(
    "--var-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run in this (empty or new) directory instead of a fresh temporary one.",
)
@click.option("--members", default=3, show_default=True, help="Members of the demo list.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait at most.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(count: int, var_dir: Path | None, members: int, timeout: float, as_json: bool) -> None:
    """Start everything, send COUNT messages over LMTP, and account for each one.

    Exits with status 1 if any message was lost.
    """
    from runnerkit.demo import Demo, print_summary

    try:
        runner = Demo(
            count,
            var_dir,
            members=members,
            timeout=timeout,
            out=None if as_json else sys.stderr,
        )
        result = runner.run()
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        print_summary(result)
    if result.lost:
        sys.exit(EXIT_FAILED)
