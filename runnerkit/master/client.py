"""The client side of the master: start one in the background, stop one, drain one.

``runnerkit start`` and ``runnerkit stop`` (and the demo) use these; they talk to the
master only through its lock and status file (:mod:`runnerkit.master.files`) and
signals.

Draining
--------
:func:`drain_master` (``runnerkit stop --drain``) stops a master without leaving work
in its queues.  It sends the master SIGUSR2, which stops the runners without a queue --
the LMTP server first of all: nothing new comes in -- and waits until the status file
shows them down.  Then it waits until no queue but ``bad`` and ``shunt`` holds a
message, waiting or in progress (``.pck`` or ``.bak``), on two looks in a row (a
message moving from one queue to the next could slip between the queues of one look).
Then it stops the master as :func:`stop_master` does, and counts what is left, once
nothing moves any more.  Each wait is bounded; what a drain could not empty is
reported, never lost: it waits in its queue for the next start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from runnerkit.config import Configuration, ImportDir, read_config_texts
from runnerkit.errors import (
    ConfigurationError,
    MasterError,
    MasterLayersError,
    MasterNotRunningError,
    MasterRunningError,
    MasterStartError,
    RunnerkitError,
)
from runnerkit.fsio import make_directories, open_append
from runnerkit.master.files import (
    UNKNOWN_PID,
    MasterLayers,
    lock_paths,
    read_layers,
    read_status,
    running_master_pid,
)
from runnerkit.master.reload import reload_problem
from runnerkit.master.status import RunnerStatus
from runnerkit.runner import takes_work_in
from runnerkit.streams import describe, redis_url

if TYPE_CHECKING:  # pragma: no cover
    from runnerkit.site import AnySwitchboard

#: How often the client looks at the master's lock while it waits.
POLL_SECONDS = 0.02


def start_in_background(
    config: Configuration, config_files: Sequence[Path] = (), wait: float = 15.0
) -> int:
    """Start a master on *config*'s var dir in a new session, and wait until it holds its lock.

    The master runs ``python -m runnerkit.master --var-dir VAR [-C FILE]... [--path
    DIR]...``, with *config*'s import path as ``--path`` options; its standard output
    and error go to ``LOG_DIR/master.err``.

    :param wait: seconds to wait for the master to take its lock.
    :returns: the master's pid.
    :raises MasterRunningError: another master holds the lock (it may have won a race).
    :raises MasterStartError: the master exited at once, or did not take its lock in time.
    """
    command = [sys.executable, "-m", "runnerkit.master", "--var-dir", str(config.paths.var_dir)]
    for path in config_files:
        command += ["-C", str(Path(path).absolute())]
    for entry in config.import_path:
        command += ["--path", str(entry.path)]
    make_directories(config.paths.log_dir)
    errors = config.paths.log_dir / "master.err"
    with open_append(errors) as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pid = running_master_pid(config)
        if pid == process.pid:
            return pid
        if process.poll() is not None:
            other = running_master_pid(config)
            if other is not None:
                # Another start won the race for the lock.
                raise MasterRunningError(
                    f"a master is already running with pid {other}; use 'runnerkit stop' or "
                    "'runnerkit restart'"
                )
            raise MasterStartError(
                f"the master exited at once with status {process.returncode}; see {errors}"
            )
        time.sleep(POLL_SECONDS)
    raise MasterStartError(f"the master (pid {process.pid}) did not take its lock in {wait:.0f}s")


def signal_master(config: Configuration, signum: int) -> int:
    """Send *signum* to the master of *config*'s var dir, and return its pid.

    Only a pid that the lock holder wrote is signalled; a lock held by a process that
    wrote none (an operator's ``flock``, say) is refused, never guessed at.

    :raises MasterNotRunningError: no master holds the lock.
    :raises MasterError: the lock holder wrote no pid.
    """
    pid = running_master_pid(config)
    if pid is None:
        raise MasterNotRunningError(
            f"no master is running on {config.paths.var_dir}; start one with 'runnerkit start'"
        )
    if pid == UNKNOWN_PID:
        lock = lock_paths(config).lock
        raise MasterError(
            f"the master lock {str(lock)!r} is held by a process that wrote no pid into it; "
            f"runnerkit signals no process it cannot name (see 'fuser -v {lock}')"
        )
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    return pid


class RestartRequest(NamedTuple):
    """What :func:`restart_runners` asked: of which master, applying which edits."""

    #: The master's pid.
    pid: int
    #: Its configuration files whose text changed since it read them: the restart
    #: applies them.
    changed: tuple[Path, ...] = ()


def restart_runners(
    config: Configuration, config_files: Sequence[Path] = (), import_path: Sequence[Path] = ()
) -> RestartRequest:
    """Ask the master of *config*'s var dir to restart every runner (SIGUSR1).

    The master reads its files afresh and applies what changed in them as a whole
    (:meth:`runnerkit.master.supervisor.Master.reload`); other layers would need
    another master.  So
    *config_files*, when given, must be the master's files, in its order, and each
    of *import_path* a directory of its import path: they may only find the master,
    never silently fail to apply.

    :returns: the master's pid, and the files whose edits the restart applies.
    :raises MasterLayersError: *config_files* or *import_path* differ from the
        master's; the message names both, and how to run with other layers.
    :raises MasterError: the master's files changed since it read them, and the
        change cannot be applied by a restart
        (:func:`runnerkit.master.reload.reload_problem`): it would change the runner
        processes or a directory, or a runner class does not load.
    :raises MasterNotRunningError: no master holds the lock.
    :raises MasterError: the lock holder wrote no pid (see :func:`signal_master`).
    """
    pid = running_master_pid(config)
    recorded = read_layers(config) if pid is not None and pid != UNKNOWN_PID else None
    changed: tuple[Path, ...] = ()
    if recorded is not None and recorded.master_pid == pid:
        mine = [os.path.realpath(path) for path in config_files]
        theirs = [os.path.realpath(path) for path in recorded.config_files]
        known = {os.path.realpath(path) for path in recorded.import_path}
        strangers = [str(path) for path in import_path if os.path.realpath(path) not in known]
        if (mine and mine != theirs) or strangers:
            given = " ".join(f"-C {path}" for path in mine) if mine != theirs else ""
            given += "".join(f" --path {path}" for path in strangers)
            runs = " ".join(f"-C {path}" for path in theirs) or "no -C file"
            raise MasterLayersError(
                f"master {pid} runs with {runs}, not {given.strip()}; restart restarts its "
                "runners with its own layers (re-reading those files) and cannot change "
                "them: to run with these, 'runnerkit stop', then 'runnerkit start' with them"
            )
        changed, problem = _changes(config, recorded)
        if problem is not None:
            raise MasterError(
                f"the configuration files of master {pid} changed, and a restart cannot "
                f"apply the change: {problem}; nothing was changed (to apply it, "
                "'runnerkit stop', then 'runnerkit start')"
            )
    return RestartRequest(signal_master(config, signal.SIGUSR1), changed)


def _changes(config: Configuration, recorded: MasterLayers) -> tuple[tuple[Path, ...], str | None]:
    """The files of the master that *recorded* describes whose text changed since it
    read them, and why it could not take them as they are now
    (:func:`runnerkit.master.reload.reload_problem`; None if it can)."""
    if recorded.texts is None:
        return (), None
    texts: list[str | None] = []
    problem = None
    for path in recorded.config_files:
        try:
            (text,) = read_config_texts([path])
        except ConfigurationError as error:
            text, problem = None, problem or str(error)
        texts.append(text)
    changed = tuple(
        path
        for path, now, then in zip(recorded.config_files, texts, recorded.texts, strict=True)
        if now != then
    )
    if not changed or problem is not None:
        return changed, problem
    try:
        var_dir = str(config.paths.var_dir)
        import_dirs = [ImportDir(path, "--path") for path in recorded.import_path]
        running, edited = (
            Configuration.load(
                recorded.config_files, var_dir, import_path=import_dirs, texts=version
            )
            for version in (recorded.texts, [text or "" for text in texts])
        )
    except ConfigurationError as error:
        return changed, str(error)
    return changed, reload_problem(running, edited)


def stop_master(config: Configuration, timeout: float) -> int | None:
    """Send SIGTERM to the master of *config*'s var dir and wait until its lock is free.

    :param timeout: seconds to wait.
    :returns: the master's pid if it stopped within *timeout* seconds, else None.
    :raises MasterNotRunningError: no master holds the lock.
    :raises MasterError: the lock holder wrote no pid (see :func:`signal_master`).
    """
    pid = signal_master(config, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_master_pid(config) is not None:
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_SECONDS)
    return pid


#: The queues a drain leaves alone: what waits there waits for an operator.
KEPT_QUEUES = ("bad", "shunt")


@dataclass(frozen=True)
class DrainReport:
    """What :func:`drain_master` did."""

    #: The master's pid.
    pid: int
    #: The runners without a queue that the drain stopped, as ``NAME``.
    intake: tuple[str, ...]
    #: Whether they were down within the timeout.
    intake_stopped: bool
    #: Seconds from the request to the last look that found the queues empty, or to
    #: the timeout.
    seconds: float
    #: Whether the master stopped within its timeout.
    stopped: bool
    #: Messages left in each drained queue, counted once the master stopped (waiting
    #: and in-progress files); only queues that hold some.
    left: dict[str, int] = field(default_factory=dict)
    #: Files in ``bad`` and ``shunt``, which a drain leaves to an operator; only those
    #: that hold some.
    kept: dict[str, int] = field(default_factory=dict)
    #: Whether two looks in a row found the drained queues empty before the timeout
    #: (what is :attr:`left` then came in, or came back, after those looks).
    emptied: bool = False

    @property
    def drained(self) -> bool:
        """Whether the master stopped with every drained queue empty."""
        return self.stopped and not self.left


def queue_load(switchboard: AnySwitchboard) -> int:
    """Messages in *switchboard*'s queue: waiting (``.pck``) and in progress (``.bak``;
    on Redis, the pending entries of its streams)."""
    return len(switchboard.get_files(".pck")) + len(switchboard.get_files(".bak"))


def drain_master(
    config: Configuration,
    switchboards: Mapping[str, AnySwitchboard],
    timeout: float,
    stop_timeout: float,
    counted: Mapping[str, Sequence[AnySwitchboard]] | None = None,
) -> DrainReport:
    """Stop intake, wait for the queues to empty, then stop the master of *config*.

    See the module's documentation for the steps.

    :param switchboards: every queue of the var dir, by name (``bad`` and ``shunt``
        are counted, not drained).
    :param counted: what to count of a drained queue instead of its whole switchboard:
        the switchboards of the slices this master runs (on a Redis server that several
        hosts share, the others' slices are theirs to drain).
    :param timeout: seconds to wait for the intake to stop and the queues to empty.
    :param stop_timeout: seconds to wait for the master to stop afterwards.
    :raises MasterNotRunningError: no master holds the lock.
    :raises MasterError: the lock holder wrote no pid, the master wrote no status file
        within *timeout* (it is not asked to drain), or it exited before the drain was
        done.
    """
    started = time.monotonic()
    deadline = started + timeout
    # Signal 0 only finds the master (and refuses a lock without a pid).
    pid = signal_master(config, 0)

    def master_gone() -> MasterError:
        return MasterError(
            f"the master (pid {pid}) exited during the drain; "
            f"see {config.paths.log_dir / 'runnerkit.log'}"
        )

    # A master writes its status file once it handles signals; before that, SIGUSR2
    # would end it (a drain asked for the moment after a 'start --wait 0').
    while (status := read_status(config)) is None or status.master_pid != pid:
        if running_master_pid(config) != pid:
            raise master_gone()
        if time.monotonic() > deadline:
            raise MasterError(
                f"the master (pid {pid}) wrote no status within {timeout:g}s: it is still "
                "starting, or stuck; nothing was asked of it"
            )
        time.sleep(POLL_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGUSR2)
    intake: tuple[str, ...] = ()
    intake_stopped = False
    while time.monotonic() <= deadline:
        if running_master_pid(config) != pid:
            raise master_gone()
        status = read_status(config)
        if status is not None and status.master_pid == pid and status.draining:
            servers = [runner for runner in status.runners if _takes_work_in(config, runner)]
            intake = tuple(runner.name for runner in servers)
            if all(runner.pid is None for runner in servers):
                intake_stopped = True
                break
        time.sleep(POLL_SECONDS)
    drained = [name for name in sorted(switchboards) if name not in KEPT_QUEUES]
    counted = counted or {}

    def load(name: str) -> int:
        return sum(queue_load(part) for part in counted.get(name, (switchboards[name],)))

    empty_looks = 0
    while intake_stopped and time.monotonic() <= deadline:
        if running_master_pid(config) != pid:
            raise master_gone()
        if any(load(name) for name in drained):
            empty_looks = 0
        else:
            empty_looks += 1
            if empty_looks == 2:
                break
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - started
    try:
        stopped = stop_master(config, stop_timeout) is not None
    except MasterNotRunningError:
        # It stopped between the last look and the signal: nothing runs, as asked.
        stopped = True
    emptied = empty_looks == 2
    loads = {name: load(name) for name in drained}
    kept = {name: switchboards[name].depth() for name in KEPT_QUEUES if name in switchboards}
    return DrainReport(
        pid=pid,
        intake=intake,
        intake_stopped=intake_stopped,
        seconds=seconds,
        stopped=stopped,
        left={name: count for name, count in loads.items() if count},
        kept={name: count for name, count in kept.items() if count},
        emptied=emptied,
    )


def other_queues(config: Configuration) -> str | None:
    """Whether the master of *config*'s var dir recorded (``master.layers.json``) that
    it runs with other queues than *config*'s: another ``[queues] backend``, server or
    key prefix.  If so, a warning that says so and names its ``-C`` files; else None
    (no record, or one that cannot be read: nothing to say).
    """
    try:
        recorded = read_layers(config)
        if recorded is None or recorded.texts is None:
            return None
        with Configuration.load(recorded.config_files, texts=recorded.texts) as theirs:
            them = _queues_of(theirs)
    except RunnerkitError:
        return None
    ours = _queues_of(config)
    if them == ours:
        return None
    files = " ".join(f"-C {path}" for path in recorded.config_files) or "no -C file"
    return (
        f"the master (pid {recorded.master_pid}) runs with other queues ({them}) than "
        f"these ({ours}); to see its queues, give its configuration files: {files}"
    )


def _queues_of(config: Configuration) -> str:
    """Where *config*'s queues are, in words."""
    queues = config.queues
    if queues.backend != "redis":
        return f"backend {queues.backend}"
    return f"redis at {describe(redis_url(queues.url))}, key prefix {queues.key_prefix!r}"


def _takes_work_in(config: Configuration, runner: RunnerStatus) -> bool:
    """Whether the master's drain stops *runner* (:func:`runnerkit.runner.takes_work_in`);
    a runner without a queue that *config* does not know is counted in."""
    if runner.slice is not None:
        return False
    if runner.name not in config.runners:
        return True
    return takes_work_in(config.runner(runner.name))
