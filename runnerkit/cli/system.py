"""``start``, ``stop``, ``restart`` and ``status``: the master and its runners.

``status`` exits with :data:`STATUS_RUNNING` (0) when the master and every runner
process run, :data:`STATUS_DEGRADED` (1) when the master runs but some runner does
not, :data:`STATUS_NOT_RUNNING` (3, as for an LSB init script) when no master runs, and
:data:`STATUS_UNKNOWN` (4) when the master lock is held by a process that wrote no pid;
2 is, as for every command, bad usage or configuration.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
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
    warn_other_queues,
)
from runnerkit.errors import MasterLayersError, MasterStartError, RunnerkitError, StatusFileError
from runnerkit.master import (
    UNKNOWN_PID,
    DrainReport,
    Master,
    MasterStatus,
    RunnerStatus,
    drain_master,
    listening_addresses,
    read_status,
    restart_runners,
    running_master_pid,
    signal_master,
    start_in_background,
    stop_master,
    wait_until_ready,
)
from runnerkit.master.client import KEPT_QUEUES
from runnerkit.ownership import check_strict_modes
from runnerkit.runner import check_runner_classes, load_runner_class
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.runners.operator_page import token_path
from runnerkit.runners.rest import RESTRunner
from runnerkit.site import AnySwitchboard, Site
from runnerkit.streams import describe, redis_url
from runnerkit.switchboard import read_depths

#: ``status``: the master and every runner process run.
STATUS_RUNNING = 0
#: ``status``: the master runs, but some runner process does not.
STATUS_DEGRADED = 1
#: ``status``: no master runs (LSB's "program is not running").
STATUS_NOT_RUNNING = 3
#: ``status``: the master lock is held by a process that wrote no pid.
STATUS_UNKNOWN = 4
#: Seconds ``start`` waits for the runners, unless told.
START_WAIT_SECONDS = 10.0


def listener_names(config: Site) -> list[str]:
    """The runners the master starts that serve a port: LMTP and REST runners."""
    return [
        name
        for name, settings in sorted(config.runners.items())
        if settings.start
        and not settings.queue
        and issubclass(load_runner_class(settings), (LMTPRunner, RESTRunner))
    ]


@main.command()
@config_options
@click.option("--foreground", is_flag=True, help="Run the master in this process.")
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    default=START_WAIT_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for every runner to start and the LMTP and REST servers to "
    "listen; if one fails, or time runs out, the master is stopped (0: do not wait).",
)
def start(
    config_files: tuple[Path, ...], var_dir: Path | None, foreground: bool, wait: float
) -> None:
    """Start the master, which starts every runner.

    In the background (the default), return once every runner process has started and
    the LMTP and REST servers listen; should one fail first, say why, stop the master
    and exit with status 1.
    """
    config = load_config(config_files, var_dir)
    try:
        # A runner class that cannot be loaded is reported now, not by a runner
        # process that the master would restart in vain.
        check_runner_classes(config)
        listeners = listener_names(config)
    except RunnerkitError as error:
        raise UsageProblem(str(error)) from error
    try:
        check_strict_modes(config, config_files)
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    pid = running_master_pid(config)
    if pid is not None:
        raise CommandError(
            f"a master is already running with pid {pid}; use 'runnerkit stop' or "
            "'runnerkit restart'"
        )
    if config.queues.backend == "redis":
        # Runners on a server that cannot be used would wait for their leases forever.
        try:
            config.redis.ping()
        except RunnerkitError as error:
            raise CommandError(str(error)) from error
    if foreground:
        try:
            with config:
                sys.exit(Master(config, config_files).run())
        except RunnerkitError as error:
            raise CommandError(str(error)) from error
    pid = None
    try:
        pid = start_in_background(config, config_files)
        if wait > 0:
            wait_until_ready(config, pid, listeners, wait)
    except MasterStartError as error:
        if pid is None:
            raise CommandError(str(error)) from error
        raise CommandError(f"{error}; {_stop_after_failed_start(config, pid)}") from error
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    except KeyboardInterrupt:
        # Interrupted while it started: what was started is stopped, not left behind.
        pid = pid if pid is not None else running_master_pid(config)
        done = _stop_after_failed_start(config, pid) if pid is not None else "no master ran"
        click.echo(f"runnerkit: interrupted; {done}", err=True)
        sys.exit(128 + signal.SIGINT)
    click.echo(f"master started with pid {pid}")


#: Seconds a stop waits beyond the master's stop_timeout, for it to kill and exit.
STOP_MARGIN = 5.0


def _stop_after_failed_start(config: Site, pid: int) -> str:
    """Stop the master *pid* that ``start`` started, and say how that went."""
    # The master gives its runners stop_timeout, then kills them: wait a little more.
    timeout = config.master.stop_timeout.total_seconds() + STOP_MARGIN
    try:
        stopped = stop_master(config, timeout)
    except RunnerkitError as error:
        return f"the master (pid {pid}) could not be stopped: {error}"
    if stopped is None:
        return f"the master (pid {pid}) did not stop within {timeout:g}s; see 'runnerkit status'"
    return f"stopped the master (pid {pid}) and its runners"


@main.command()
@config_options
@click.option(
    "--drain",
    is_flag=True,
    help="First stop intake (the LMTP server, and any runner whose class has intake true) "
    "and wait until every queue but bad and shunt is empty.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the master to stop (0: ask it, do not wait); with "
    "--drain, for the queues to empty, then for the stop at least the master's "
    "stop_timeout and 5 seconds.",
)
def stop(
    config_files: tuple[Path, ...], var_dir: Path | None, drain: bool, timeout: float
) -> None:
    """Stop the master and every runner, after their current messages.

    With --drain, exit with status 1 and name what is left if the queues did not
    empty in time: it stays queued, for the next start.
    """
    if drain:
        with opened(config_files, var_dir) as site:
            _drain(site, timeout)
        return
    config = load_config(config_files, var_dir)
    try:
        if timeout == 0:
            # As start --wait 0: ask, do not wait.
            asked = signal_master(config, signal.SIGTERM)
            click.echo(f"asked master {asked} to stop")
            return
        stopped = stop_master(config, timeout)
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    if stopped is None:
        raise CommandError(f"the master did not stop within {timeout:g}s")
    click.echo(f"master {stopped} stopped")


def _drain(site: Site, timeout: float) -> None:
    try:
        # The stop after the drain waits as long as the master may take to stop (it
        # kills what overstays its stop_timeout), whatever the drain's own timeout.
        stop_timeout = max(timeout, site.master.stop_timeout.total_seconds() + STOP_MARGIN)
        with _counted_slices(site) as counted:
            report = drain_master(
                site, site.switchboards, timeout, stop_timeout=stop_timeout, counted=counted
            )
    except KeyboardInterrupt:
        raise CommandError(
            "drain interrupted: the master still runs, its intake perhaps stopped; "
            "'runnerkit restart' starts every runner again, 'runnerkit stop' stops it all"
        ) from None
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    if report.kept:
        kept = ", ".join(f"{name} {count}" for name, count in report.kept.items())
        click.echo(f"left for an operator: {kept}")
    if report.drained:
        click.echo(f"drained in {report.seconds:.1f}s; master {report.pid} stopped")
        return
    raise CommandError(_drain_problem(report, timeout, stop_timeout))


@contextlib.contextmanager
def _counted_slices(site: Site) -> Iterator[dict[str, list[AnySwitchboard]]]:
    """On Redis, what a drain of this site's master counts of each queue a runner of it
    serves: the slices it runs (``[runner.NAME] slices``), not those of other hosts
    sharing the server; nothing on the file backend (every queue is counted whole)."""
    counted: dict[str, list[AnySwitchboard]] = {}
    try:
        if site.queues.backend == "redis":
            for name in site.queue_names:
                settings = site.runner(name)
                if name in KEPT_QUEUES or not settings.start or not settings.is_queue_runner:
                    continue
                counted[name] = [
                    site.switchboard(name, number, settings.instances)
                    for number in settings.run_slices
                ]
        yield counted
    finally:
        for switchboards in counted.values():
            for switchboard in switchboards:
                switchboard.close()


def _drain_problem(report: DrainReport, timeout: float, stop_timeout: float) -> str:
    """Why a drain fell short, and where things stand."""
    if not report.intake_stopped:
        servers = ", ".join(report.intake) or "the runners that take work in"
        problem = f"intake ({servers}) did not stop within {timeout:g}s"
    elif report.emptied and report.stopped:
        problem = (
            f"the queues were seen empty after {report.seconds:.1f}s, but messages came "
            "in again before the master stopped (queued by another process, or put back "
            "by a runner as it stopped)"
        )
    elif report.emptied:
        problem = f"the queues were seen empty after {report.seconds:.1f}s"
    else:
        problem = f"the queues did not drain within {timeout:g}s"
    if report.left:
        left = ", ".join(f"{name} {count}" for name, count in report.left.items())
        problem += f"; left, for the next start: {left}"
    if report.stopped:
        return f"{problem}; master {report.pid} stopped"
    return f"{problem}; master {report.pid} did not stop within {stop_timeout:g}s"


@main.command()
@config_options
def restart(config_files: tuple[Path, ...], var_dir: Path | None) -> None:
    """Restart every runner (the master stays), without spending restart budgets.

    The master reads its -C files again: edits to them take effect, as a whole, when
    they start the same runner processes (each runner's start, queue and instances)
    and keep every directory; an edit that changes those is refused (exit status 1)
    and nothing changes: stop the master and start it again to apply it.  Until a
    restart, the master starts every runner process (after a crash too) with the
    files as they were when it read them.  -C and --path may repeat what the master
    runs with (to find it), but cannot change it: other layers are refused (exit
    status 2); for them, stop the master and start it again with them.
    """
    config = load_config(config_files, var_dir)
    try:
        pid, changed = restart_runners(config, config_files, site_options().import_path)
    except MasterLayersError as error:
        raise UsageProblem(str(error)) from error
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    if changed:
        files = ", ".join(str(path) for path in changed)
        click.echo(
            f"asked master {pid} to restart its runners with the changed configuration ({files})"
        )
    else:
        click.echo(f"asked master {pid} to restart its runners")


@main.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_files: tuple[Path, ...], var_dir: Path | None, as_json: bool) -> None:
    """Show the master, its runners and the depth of every queue.

    A runner that is not running shows why, and the last error line of its last failed
    process; a server (LMTP, REST) the addresses it listens on ("listening" in the
    JSON), and a REST runner of the master the address of its operator page and the file of the
    token its actions need.  The queues' backend is named (on Redis, the server and key prefix); on
    Redis, a runner slice's row shows the depth of that slice.  A queue whose depth
    cannot be read shows as ? (null in the JSON), and the problems say why.  Exit
    status: 0 when the master and every runner process run and every depth reads, 1
    when some runner does not run or some depth does not read, 3 when no master runs,
    4 when the master lock is held by a process that wrote no pid.
    """
    with opened(config_files, var_dir, read_only=True) as config:
        warn_other_queues(config)
        pid = running_master_pid(config)
        problems: list[str] = []
        master_status: MasterStatus | None = None
        if pid is None:
            master, code = "not running", STATUS_NOT_RUNNING
            problems.append("master: not running")
        elif pid == UNKNOWN_PID:
            master, code = "unknown", STATUS_UNKNOWN
            problems.append("master: the lock is held by a process that wrote no pid")
        else:
            master, code = "running", STATUS_RUNNING
            try:
                master_status = read_status(config)
            except StatusFileError as error:
                problems.append(f"master: {error}")
                code = STATUS_DEGRADED
            if master_status is not None and master_status.master_pid != pid:
                # Left by a master killed outright; this one has not written its own yet.
                master_status = None
        runners = master_status.runners if master_status is not None else ()
        draining = master_status is not None and master_status.draining
        for runner in runners:
            if runner.state != "running":
                problems.append(runner.problem())
                code = max(code, STATUS_DEGRADED)
        depths, unread = read_depths(config.switchboards)
        if unread:
            problems.extend(unread)
            code = max(code, STATUS_DEGRADED)
        backend = queue_backend(config)
        slice_depths = _slice_depths(config, runners)
        listening = {
            runner.name: listening_addresses(runner.pid) or []
            for runner in runners
            if runner.slice is None and runner.pid is not None
        }
        if as_json:
            document = {
                "master": master,
                "master_pid": pid if master == "running" else None,
                "draining": draining,
                "runners": [
                    {**runner.to_dict(), "listening": listening.get(runner.name, [])}
                    for runner in runners
                ],
                "queues": depths,
                "queue_backend": backend,
                "problems": problems,
            }
            click.echo(json.dumps(document, sort_keys=True))
        else:
            _show_status(pid, draining, runners, depths, listening, slice_depths, backend)
            for address in _page_addresses(config, listening):
                click.echo(
                    f"operator page: http://{address}/ (its actions need the token: "
                    f"cat {token_path(config)})"
                )
            for problem in unread:
                click.echo(f"runnerkit: error: {problem}", err=True)
        sys.exit(code)


def _page_addresses(config: Site, listening: dict[str, list[str]]) -> list[str]:
    """The addresses where a REST runner serves its operator page."""
    found = []
    for name, addresses in listening.items():
        try:
            is_rest = issubclass(load_runner_class(config.runner(name)), RESTRunner)
        except RunnerkitError:
            continue
        found.extend(addresses if is_rest else [])
    return found


def queue_backend(config: Site) -> dict[str, str | None]:
    """Where *config*'s queues are: ``backend``, and on Redis ``server`` (its password
    hidden) and ``key_prefix`` (else None)."""
    queues = config.queues
    if queues.backend != "redis":
        return {"backend": queues.backend, "server": None, "key_prefix": None}
    return {
        "backend": "redis",
        "server": describe(redis_url(queues.url)),
        "key_prefix": queues.key_prefix,
    }


def _slice_depths(
    config: Site, runners: tuple[RunnerStatus, ...]
) -> dict[tuple[str, int], int | None]:
    """On Redis, the depth of each runner slice's own stream (None: it cannot be read);
    on the file backend, nothing (a row shows its whole queue's depth)."""
    if config.queues.backend != "redis":
        return {}
    found: dict[tuple[str, int], int | None] = {}
    for runner in runners:
        if runner.slice is None or runner.name not in config.queue_names:
            continue
        try:
            found[runner.name, runner.slice] = config.switchboard(
                runner.name, runner.slice, runner.count
            ).depth()
        except RunnerkitError:
            found[runner.name, runner.slice] = None
    return found


def _show_status(
    pid: int | None,
    draining: bool,
    runners: tuple[RunnerStatus, ...],
    depths: dict[str, int | None],
    listening: dict[str, list[str]],
    slice_depths: dict[tuple[str, int], int | None],
    backend: dict[str, str | None],
) -> None:
    """The text of ``status``: the master, a table of runners (a server's with the
    addresses it listens on), a table of queues."""
    if pid is None:
        click.echo("master: not running")
    elif pid == UNKNOWN_PID:
        click.echo("master: lock held by a process that wrote no pid")
    else:
        drain = ", draining (intake stopped)" if draining else ""
        click.echo(f"master: running, pid {pid}{drain}")
    if runners:
        click.echo(
            f"{'runner':<12} {'slice':<7} {'pid':>8} {'state':<9} {'restarts':>8} {'queue':>7}"
        )
    for runner in runners:
        if runner.slice is not None and (runner.name, runner.slice) in slice_depths:
            depth = _depth_text(slice_depths[runner.name, runner.slice])
        else:
            depth = _depth_text(depths.get(runner.name, "-"))
        click.echo(
            f"{runner.name:<12} {runner.where:<7} {runner.pid or '-':>8} "
            f"{runner.state:<9} {runner.restarts:>8} {depth:>7}{_why(runner)}"
            + (
                f"  listening on {', '.join(listening[runner.name])}"
                if listening.get(runner.name)
                else ""
            )
        )
    click.echo()
    if backend["backend"] == "redis":
        click.echo(f"queues on Redis at {backend['server']}, key prefix {backend['key_prefix']!r}")
    click.echo(f"{'queue':<12} {'depth':>7}")
    for name, queue_depth in depths.items():
        click.echo(f"{name:<12} {_depth_text(queue_depth):>7}")


def _depth_text(depth: int | str | None) -> str:
    """A depth in a table: ``?`` where it cannot be read."""
    return "?" if depth is None else str(depth)


def _why(runner: RunnerStatus) -> str:
    """The end of a runner's row: why it is not running, and its last error."""
    if runner.state == "running":
        return ""
    parts = [runner.reason] if runner.reason else []
    if runner.last_error and runner.state != "stuck":
        parts.append(f"last error: {runner.last_error}")
    return f"  ({'; '.join(parts)})" if parts else ""
