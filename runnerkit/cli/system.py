"""``start``, ``stop``, ``restart`` and ``status``: the master and its runners."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runnerkit.cli.common import (
    CommandError,
    UsageProblem,
    config_options,
    load_config,
    main,
    opened,
    site_options,
)
from runnerkit.errors import MasterLayersError, RunnerkitError
from runnerkit.master import (
    UNKNOWN_PID,
    Master,
    read_status,
    restart_runners,
    running_master_pid,
    start_in_background,
    stop_master,
)
from runnerkit.runner import check_runner_classes
from runnerkit.switchboard import queue_depths


@main.command()
@config_options
@click.option("--foreground", is_flag=True, help="Run the master in this process.")
def start(config_files: tuple[Path, ...], var_dir: Path | None, foreground: bool) -> None:
    """Start the master, which starts every runner."""
    config = load_config(config_files, var_dir)
    try:
        # A runner class that cannot be loaded is reported now, not by a runner
        # process that the master would restart in vain.
        check_runner_classes(config)
    except RunnerkitError as error:
        raise UsageProblem(str(error)) from error
    pid = running_master_pid(config)
    if pid is not None:
        raise CommandError(
            f"a master is already running with pid {pid}; use 'runnerkit stop' or "
            "'runnerkit restart'"
        )
    if foreground:
        try:
            with config:
                sys.exit(Master(config, config_files).run())
        except RunnerkitError as error:
            raise CommandError(str(error)) from error
    try:
        pid = start_in_background(config, config_files)
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    click.echo(f"master started with pid {pid}")


@main.command()
@config_options
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
def stop(config_files: tuple[Path, ...], var_dir: Path | None, timeout: float) -> None:
    """Stop the master and every runner, after their current messages."""
    config = load_config(config_files, var_dir)
    try:
        pid = stop_master(config, timeout)
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    if pid is None:
        raise CommandError(f"the master did not stop within {timeout:.0f}s")
    click.echo(f"master {pid} stopped")


@main.command()
@config_options
def restart(config_files: tuple[Path, ...], var_dir: Path | None) -> None:
    """Restart every runner (the master stays), without spending restart budgets.

    The runners start again with the master's own layers, re-reading its -C files, so
    edits to those files take effect.  -C and --path may repeat what the master runs
    with (to find it), but cannot change it: other layers are refused (exit status 2);
    for them, stop the master and start it again with them.
    """
    config = load_config(config_files, var_dir)
    try:
        pid = restart_runners(config, config_files, site_options().import_path)
    except MasterLayersError as error:
        raise UsageProblem(str(error)) from error
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    click.echo(f"asked master {pid} to restart its runners")


@main.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_files: tuple[Path, ...], var_dir: Path | None, as_json: bool) -> None:
    """Show the master, its runners and the depth of every queue."""
    with opened(config_files, var_dir, read_only=True) as config:
        pid = running_master_pid(config)
        master_status = read_status(config) if pid is not None else None
        runners = master_status.runners if master_status is not None else ()
        depths = queue_depths(config.switchboards)
        if as_json:
            listed = [runner.to_dict() for runner in runners]
            click.echo(json.dumps({"master_pid": pid, "runners": listed, "queues": depths}))
            return
        if pid is None:
            click.echo("master: not running")
        elif pid == UNKNOWN_PID:
            click.echo("master: lock held by a process that wrote no pid")
        else:
            click.echo(f"master: running, pid {pid}")
        if runners:
            click.echo(
                f"{'runner':<12} {'slice':<7} {'pid':>8} {'state':<9} {'restarts':>8} {'queue':>7}"
            )
        for runner in runners:
            where = "-" if runner.slice is None else f"{runner.slice}/{runner.count}"
            depth = depths.get(runner.name, "-")
            reason = f"  ({runner.reason})" if runner.reason else ""
            click.echo(
                f"{runner.name:<12} {where:<7} {runner.pid or '-':>8} "
                f"{runner.state:<9} {runner.restarts:>8} {depth:>7}{reason}"
            )
        if pid is None:
            for name, depth in depths.items():
                click.echo(f"{name:<12} {depth:>7}")
