"""The supervisor: starts every runner process, watches them, and restarts the ones that die.

The master keeps one :class:`Slot` per runner process: one per slice of a queue runner,
one for a runner without slices.  Its watch loop (:meth:`Master.step`) reaps the
processes that ended, asks the restart policy (:mod:`runnerkit.master.policy`) what to
do about each, starts the ones that are due, lets the watchdog
(:mod:`runnerkit.master.watchdog`) find the ones stuck on a message, and writes the
status file (:mod:`runnerkit.master.files`).

Signals
-------
SIGTERM and SIGINT stop every runner after its current message, wait up to
``[master] stop_timeout`` for them (then kill the stragglers) and exit.  SIGUSR1
restarts all runners without spending their budget.  SIGHUP reopens the master's log
file and every runner's.  SIGUSR2 starts a *drain* (``runnerkit stop --drain``): the
runners where work comes in -- those without a queue whose class has ``intake`` true,
as the LMTP server -- are stopped and stay down (the REST runner goes on serving),
while the queue runners go on emptying their queues; the status file says
``"draining": true``.  SIGUSR1 ends a drain: every runner, the stopped
ones included, starts again.

Metrics
-------
When it starts, the master empties ``[paths] metrics_dir`` and starts every runner
process with ``PROMETHEUS_MULTIPROC_DIR`` naming it, so that each counts in files of
its own and the REST runner's ``/metrics`` sums them all (:mod:`runnerkit.metrics`).

Each runner process's standard output and error go to a file of its slot; when a
process fails, the last line it wrote there becomes the slot's ``last_error`` in the
status file (:mod:`runnerkit.master.output`).

Runners watch the master and stop if it dies, even by SIGKILL; a runner still finishing
a message then holds its slice's lock, and the new master's process for that slice
waits for it (see :mod:`runnerkit.process`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runnerkit.config import Configuration, ImportDir, read_config_texts
from runnerkit.errors import MasterRunningError, RunnerkitError
from runnerkit.exits import EXIT_RESTART
from runnerkit.fsio import make_directories, open_append
from runnerkit.importpath import use_import_path
from runnerkit.logs import configure_logging, reopen_logs
from runnerkit.master.files import (
    MasterLock,
    QueueLocks,
    layers_path,
    remove_layers,
    write_layers,
    write_status,
)
from runnerkit.master.output import describe_end, file_size, last_line, output_path
from runnerkit.master.policy import Action, RestartPolicy, describe_exit
from runnerkit.master.reload import plan, reload_problem
from runnerkit.master.status import MasterStatus, RunnerStatus
from runnerkit.master.watchdog import STUCK_CHECK_SECONDS, Watchdog
from runnerkit.metrics import prepare_directory, process_environment
from runnerkit.ownership import check_strict_modes
from runnerkit.runner import takes_work_in
from runnerkit.signals import SignalDispatcher
from runnerkit.streams import check_server

# The package's name, not this module's: operators and specs look for it in the log.
log = logging.getLogger("runnerkit.master")

#: The reason a runner stopped by a drain shows.
DRAINED = "stopped for a drain"


@dataclass
class Slot:
    """One runner process the master keeps alive: a runner name and a slice."""

    name: str
    slice: int | None
    count: int
    max_restarts: int
    process: subprocess.Popen[bytes] | None = None
    #: Recent failures, oldest first, inside the restart window, stamped with
    #: :attr:`running` (the policy ages failures by running time, not by the clock).
    failures: tuple[float, ...] = ()
    #: Seconds the slot's processes have run in all, up to the start of the current one.
    running: float = 0.0
    #: When the current process was started (monotonic).
    launched: float = 0.0
    #: When to start the process next (monotonic), or None when it is not to start.
    start_at: float | None = 0.0
    #: Restarts so far, for ``runnerkit status``.
    restarts: int = 0
    #: Why the slot is down, when it is.
    down_reason: str = ""
    #: The master asked this process to stop so that it can be restarted.
    restart_requested: bool = False
    #: When the current process was started (wall clock), for the stuck-runner watchdog.
    started: float = 0.0
    #: The file base the current process was found stuck on; it is being killed.
    stuck_on: str = ""
    #: What ended the last failed process (see :attr:`RunnerStatus.last_error`).
    last_error: str = ""
    #: The file the process's standard output and error go to, once one was started.
    output: Path | None = None
    #: Where the current process's output starts in :attr:`output`, in bytes.
    output_start: int = 0
    #: Stopped by a drain: it stays down until a restart (SIGUSR1).
    drained: bool = False

    @property
    def spec(self) -> str:
        """The ``--runner`` argument: NAME or NAME:SLICE:COUNT."""
        return self.name if self.slice is None else f"{self.name}:{self.slice}:{self.count}"

    @property
    def has_queue(self) -> bool:
        """Whether the slot is a slice of a queue runner; if not, it serves (LMTP, REST)."""
        return self.slice is not None

    @property
    def pid(self) -> int | None:
        """The pid of the current process, or None when there is none."""
        return self.process.pid if self.process is not None else None

    @property
    def state(self) -> str:
        """``running``, ``stuck``, ``starting`` or ``down``."""
        if self.process is not None:
            return "stuck" if self.stuck_on else "running"
        if self.start_at is not None:
            return "starting"
        return "down"

    def status(self) -> RunnerStatus:
        """The slot's line of the status file."""
        return RunnerStatus(
            name=self.name,
            slice=self.slice,
            count=self.count,
            pid=self.pid,
            state=self.state,
            restarts=self.restarts,
            reason=f"stuck on {self.stuck_on}" if self.stuck_on else self.down_reason,
            last_error=self.last_error,
        )


class Master:
    """Start, watch and restart the runner processes of one var dir.

    :param config: the master's configuration; every runner whose ``start`` is true is
        started, ``instances`` processes for a queue runner.
    :param config_files: the INI files the configuration was built from, in push order;
        each runner process pushes the same files.
    :param python: the interpreter that runs the runner processes.
    """

    def __init__(
        self,
        config: Configuration,
        config_files: Sequence[Path] = (),
        *,
        python: str = sys.executable,
        texts: Sequence[str] | None = None,
        var_dir: str | None = None,
        import_dirs: Sequence[ImportDir] = (),
    ) -> None:
        self.config = config
        self.config_files = [Path(path).absolute() for path in config_files]
        #: The text of each configuration file, as read when the master was made: the
        #: runner processes are built from these, not from the files (:meth:`reload`).
        self.texts = read_config_texts(self.config_files) if texts is None else tuple(texts)
        #: What :meth:`reload` passes on to :meth:`Configuration.load`.
        self.var_dir, self.import_dirs = var_dir, tuple(import_dirs)
        self.python = python
        settings = config.master
        self.policy = RestartPolicy.from_settings(settings)
        #: Seconds to wait for the runners to stop before killing them.
        self.stop_timeout: float = settings.stop_timeout.total_seconds()
        self.watchdog = Watchdog(
            settings.stuck_after.total_seconds(),
            {name: runner.path for name, runner in config.runners.items()},
            config.paths.lock_dir,
        )
        self.slots = self._plan()
        self.lock = MasterLock(config)
        # On Redis the queues are no directories: a lease a slice keeps them apart
        # (runnerkit.streams.SliceLease, taken by each runner process).
        self.queue_locks = QueueLocks(
            {name: config.runner(name).path for name in config.queue_names}
            if config.queues.backend == "file"
            else {}
        )
        self._stopping = False
        self._restart_all = False
        self._hangup = False
        self._drain = False
        #: Whether a drain is under way: the runners without a queue were stopped.
        self.draining = False
        self._wake = threading.Event()
        self._status_written: MasterStatus | None = None
        self._next_stuck_check = 0.0
        self._next_lock_check = 0.0

    @property
    def stuck_after(self) -> float:
        """Seconds a runner may spend on one message before it is killed; 0: never."""
        return self.watchdog.stuck_after

    @stuck_after.setter
    def stuck_after(self, seconds: float) -> None:
        self.watchdog.stuck_after = seconds

    def _plan(self) -> list[Slot]:
        return [
            Slot(name, index, count, self.config.runner(name).max_restarts)
            for name, index, count in plan(self.config)
        ]

    def _apply_settings(self) -> None:
        """Take the ``[master]`` settings and each slot's restart budget from the config."""
        settings = self.config.master
        self.policy = RestartPolicy.from_settings(settings)
        self.stop_timeout = settings.stop_timeout.total_seconds()
        self.watchdog.stuck_after = settings.stuck_after.total_seconds()
        for slot in self.slots:
            slot.max_restarts = self.config.runner(slot.name).max_restarts

    def reload(self) -> bool:
        """Read the configuration files again; take them if they changed and can be taken.

        Changed texts are taken as a whole when they keep the plan and the directories
        (:func:`runnerkit.master.reload.reload_problem`): the runner processes started
        from then on are built from them, and the ``[master]`` settings apply.
        Otherwise nothing changes, and the log says why.

        :returns: whether the master now runs with changed texts.
        """
        changed: Configuration | None = None
        try:
            texts = read_config_texts(self.config_files)
            if texts == self.texts:
                return False
            changed = Configuration.load(
                self.config_files, self.var_dir, import_path=self.import_dirs, texts=texts
            )
            problem = reload_problem(self.config, changed)
        except RunnerkitError as error:
            problem = str(error)
        if problem is not None or changed is None:
            log.error(
                "master: the changed configuration is not applied: %s; the runners go on "
                "with the configuration the master has (stop and start the master to "
                "apply it)",
                problem,
            )
            return False
        self.config, self.texts = changed, texts
        self._apply_settings()
        write_layers(self.config, self.config_files, self._import_path_dirs(), self.texts)
        log.info("master: the runners restart with the changed configuration")
        return True

    def _import_path_dirs(self) -> list[Path]:
        return [entry.path for entry in self.config.import_path]

    # The lock.

    def acquire_lock(self) -> None:
        """Take the var dir's master lock and write the pid files, then lock every queue
        directory (:class:`~runnerkit.master.files.QueueLocks`).

        :raises MasterRunningError: a live master holds the lock, or one of the queues.
        """
        self.lock.acquire()
        try:
            self.queue_locks.acquire()
        except BaseException:
            self.lock.release()
            raise

    def release_lock(self) -> None:
        """Remove the pid and status files and release the locks."""
        self.queue_locks.release()
        self.lock.release()

    # Running.

    def run(self) -> int:
        """Run until SIGTERM or SIGINT: the whole life of a master process.

        :returns: the exit status, 0.
        :raises UnsafeSiteError: another user could write the site
            (:func:`runnerkit.ownership.check_strict_modes`).
        :raises MasterRunningError: another master runs on this var dir.
        :raises QueueUnavailableError: the queues are on a Redis server that cannot be
            reached or refuses the credentials: nothing is started.
        """
        actions: dict[int, Callable[[int], object]] = {
            signal.SIGTERM: self._on_stop,
            signal.SIGINT: self._on_stop,
            signal.SIGUSR1: self._on_restart,
            signal.SIGHUP: self._on_hangup,
            signal.SIGUSR2: self._on_drain,
            signal.SIGCHLD: lambda signum: self._wake.set(),
        }
        # The handlers come first: a SIGTERM that arrives as soon as the pid file is
        # written (a ``runnerkit stop`` right after ``start``) stops the master in
        # order, its lock released and its files removed, instead of killing it.
        check_strict_modes(self.config, self.config_files)
        if self.config.queues.backend == "redis":
            check_server(self.config.queues.url, self.config.queues.key_prefix)
        with SignalDispatcher(actions):
            self.acquire_lock()
            try:
                write_layers(self.config, self.config_files, self._import_path_dirs(), self.texts)
                configure_logging(self.config)
                # Counts of an earlier master's processes would add to this one's.
                prepare_directory(self.config.paths.metrics_dir)
                log.info("master %d: starting %d runner processes", os.getpid(), len(self.slots))
                while not self._stopping:
                    now = time.monotonic()
                    self.step(now)
                    self._wake.wait(self.seconds_to_next_start(now))
                    self._wake.clear()
                self.shutdown()
            finally:
                remove_layers(self.config)
                self.release_lock()
        log.info("master %d: stopped", os.getpid())
        return 0

    def _on_stop(self, signum: int) -> None:
        log.info("master: %s, stopping all runners", signal.Signals(signum).name)
        self._stopping = True
        self._wake.set()

    def _on_restart(self, signum: int) -> None:
        self._restart_all = True
        self._wake.set()

    def _on_hangup(self, signum: int) -> None:
        self._hangup = True
        self._wake.set()

    def _on_drain(self, signum: int) -> None:
        self._drain = True
        self._wake.set()

    def step(self, now: float) -> None:
        """One pass of the watch loop: handle signals, reap, restart, write the status.

        Once a second it also makes sure its lock still guards the var dir
        (:meth:`~runnerkit.master.files.MasterLock.lost`); a master whose lock file was
        removed or replaced (its var dir deleted) stops, with its runners.

        :param now: the monotonic time, as :func:`time.monotonic` gives it.
        """
        if now >= self._next_lock_check:
            self._next_lock_check = now + STUCK_CHECK_SECONDS
            problem = self.lock.lost() if self.lock.held else None
            if problem is None and self.lock.held:
                problem = self.queue_locks.renew()
            if problem is not None:
                log.error("master: %s; stopping, with every runner", problem)
                self._stopping = True
                return
        if self._hangup:
            self._hangup = False
            reopen_logs()
            log.info("master: log files reopened on SIGHUP")
            self._signal_all(signal.SIGHUP)
        if self._restart_all:
            self._restart_all = False
            log.info("master: SIGUSR1, restarting all runners")
            self.reload()
            if self.draining:
                log.info("master: the drain ends; the stopped runners start again")
            self.draining = False
            for slot in self.slots:
                slot.drained = False
                if slot.process is not None:
                    slot.restart_requested = True
                    _send(slot.process, signal.SIGUSR1)
                elif slot.start_at is None:
                    slot.start_at, slot.down_reason, slot.failures = now, "", ()
        if self._drain:
            self._drain = False
            self.drain()
        for slot in self.slots:
            if slot.process is not None:
                status = slot.process.poll()
                if status is not None:
                    self._exited(slot, status, now)
            if slot.process is None and slot.start_at is not None and now >= slot.start_at:
                self._spawn(slot, now)
        if self.watchdog.enabled and now >= self._next_stuck_check:
            self._next_stuck_check = now + STUCK_CHECK_SECONDS
            self.kill_stuck(time.time())
        self.write_status()

    def drain(self) -> list[Slot]:
        """Stop the runners where work comes in, and keep them down.

        Those are the runners without a queue whose class's
        :attr:`~runnerkit.runner.Runner.intake` is true (the LMTP server; not the
        REST runner, which goes on serving status and metrics).  Each is sent SIGTERM
        (it ends its sessions and exits); one waiting to restart is not restarted.
        The queue runners go on.  A restart (SIGUSR1) ends the drain.

        :returns: the slots stopped, or being stopped.
        """
        stopped = [slot for slot in self.slots if takes_work_in(self.config.runner(slot.name))]
        names = ", ".join(slot.spec for slot in stopped) or "none"
        log.info("master: draining; stopping the runners that take work in (%s)", names)
        self.draining = True
        for slot in stopped:
            slot.drained = True
            if slot.process is not None:
                _send(slot.process, signal.SIGTERM)
            elif slot.start_at is not None:
                slot.start_at = None
                slot.down_reason = DRAINED
        return stopped

    def seconds_to_next_start(self, now: float, longest: float = 0.5) -> float:
        """How long the watch loop may sleep: until the next due start, at most *longest*."""
        due = [slot.start_at for slot in self.slots if slot.start_at is not None]
        return max(0.0, min([longest, *(start - now for start in due)]))

    def kill_stuck(self, now: float) -> list[Slot]:
        """Kill every runner process that has been on one message for over ``stuck_after``.

        A message held by a process this master did not start is only logged, once.

        :param now: the wall-clock time, as :func:`time.time` gives it (file ctimes are
            wall-clock times).
        :returns: the slots whose processes were found stuck and killed.
        """
        killed: list[Slot] = []
        for stuck in self.watchdog.check(self.slots, now):
            slot = stuck.slot
            if not stuck.own:
                log.error(
                    "master: runner %s slice %d: %s has been taken for %.1fs by "
                    "process %s, which this master did not start; pid %d waits for it",
                    slot.name,
                    slot.slice,
                    stuck.filebase,
                    stuck.held,
                    stuck.holder,
                    slot.pid,
                )
                continue
            slot.stuck_on = stuck.filebase
            killed.append(slot)
            log.error(
                "master: runner %s slice %d (pid %d) is stuck on %s: no progress for "
                "%.1fs, more than stuck_after=%ss; killing it",
                slot.name,
                slot.slice,
                slot.pid,
                stuck.filebase,
                stuck.held,
                self.stuck_after,
            )
        if killed:
            # Show the state before the kill: the process is reaped on the next pass.
            self.write_status()
            for slot in killed:
                if slot.process is not None:
                    _send(slot.process, signal.SIGKILL)
        return killed

    def _exited(self, slot: Slot, status: int, now: float) -> None:
        pid = slot.pid
        slot.process = None
        stuck_on, slot.stuck_on = slot.stuck_on, ""
        running = slot.running + max(0.0, now - slot.launched)
        if status not in (0, EXIT_RESTART) and not slot.restart_requested:
            slot.last_error = self._failure(slot, status, stuck_on)
        if slot.drained:
            slot.running = running
            slot.restart_requested = False
            slot.start_at = None
            slot.down_reason = DRAINED
            log.info(
                "master: %s (pid %s) stopped for the drain (%s)",
                slot.spec,
                pid,
                describe_end(status),
            )
            return
        decision = self.policy.decide(
            slot.failures,
            slot.max_restarts,
            status,
            restart_requested=slot.restart_requested,
            now=now,
            running=running,
        )
        slot.restart_requested = False
        slot.failures = decision.failures
        slot.running = running
        slot.start_at = decision.start_at
        if decision.stays_down:
            slot.down_reason = decision.reason
        else:
            slot.restarts += 1
        if decision.action is Action.BACKOFF:
            slot.down_reason = (
                f"backing off {decision.delay:.2f}s before restart "
                f"{len(decision.failures)} of {slot.max_restarts}"
            )
        if decision.action is Action.RESTART:
            log.info("master: %s (pid %s) restarting on request", slot.spec, pid)
        elif decision.action is Action.STOPPED:
            log.info("master: %s (pid %s) stopped on its own; not restarting", slot.spec, pid)
        elif decision.action is Action.GIVE_UP:
            log.error(
                "master: %s (pid %s) died with %s; it failed %d times within %ss, more than "
                "max_restarts=%d: giving up, the slice stays down",
                slot.spec,
                pid,
                describe_exit(status),
                len(decision.failures),
                self.policy.restart_window,
                slot.max_restarts,
            )
        else:
            log.warning(
                "master: %s (pid %s) died with %s; restart %d of %d in %.2fs",
                slot.spec,
                pid,
                describe_exit(status),
                len(decision.failures),
                slot.max_restarts,
                decision.delay,
            )

    def _failure(self, slot: Slot, status: int, stuck_on: str) -> str:
        """What ended *slot*'s process, which failed with *status*: its last error line."""
        if stuck_on:
            return f"killed by the master: stuck on {stuck_on}"
        if status < 0 or slot.output is None:
            # A signal ends a process without a word; an older line is no cause of it.
            return describe_end(status)
        return last_line(slot.output, slot.output_start) or describe_end(status)

    def _spawn(self, slot: Slot, now: float) -> None:
        command = [self.python, "-m", "runnerkit.process", "--runner", slot.spec]
        command += ["--var-dir", str(self.config.paths.var_dir), "--parent-pid", str(os.getpid())]
        if self.config_files:
            # The texts the master holds, never the files, which may have changed since.
            command += ["--layers", str(layers_path(self.config))]
        for entry in self.config.import_path:
            command += ["--path", str(entry.path)]
        output = output_path(self.config.paths.log_dir, slot.name, slot.slice)
        make_directories(output.parent)
        with open_append(output) as stderr:
            slot.output, slot.output_start = output, file_size(output)
            slot.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                close_fds=True,
                env=process_environment(self.config.paths.metrics_dir),
            )
        slot.started = time.time()
        slot.launched = now
        slot.start_at = None
        slot.down_reason = ""
        log.info("master: started %s as pid %d", slot.spec, slot.process.pid)

    def shutdown(self) -> None:
        """Stop every runner after its current message; kill those that overstay."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for slot in self.slots:
            if slot.process is None:
                continue
            try:
                slot.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "master: %s (pid %d) did not stop; killing it", slot.spec, slot.process.pid
                )
                slot.process.kill()
                slot.process.wait()
            slot.process = None
            slot.start_at = None
            slot.down_reason = "master stopped"

    def _signal_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None:
                _send(slot.process, signum)

    # Status.

    def status(self) -> MasterStatus:
        """The master's pid, whether it drains, and each runner process's status."""
        return MasterStatus(
            os.getpid(), tuple(slot.status() for slot in self.slots), draining=self.draining
        )

    def write_status(self) -> None:
        """Write :meth:`status` to the status file, when it changed."""
        status = self.status()
        if status == self._status_written:
            return
        try:
            write_status(self.config, status)
        except OSError as error:
            # The var dir moved or deleted under it (the lock check stops the master),
            # or a full disk: the next pass tries again.
            log.error("master: cannot write the status file: %s", error)
            return
        self._status_written = status


def _send(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m runnerkit.master [-C FILE]... [--var-dir DIR] [--path DIR]...``: run a master.

    Each ``--path`` directory goes on the import path (:mod:`runnerkit.importpath`),
    and on to every runner process.

    :returns: the exit status: 0 after a stop, 1 when another master runs, 2 when the
        configuration cannot be loaded or the master cannot run.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m runnerkit.master")
    parser.add_argument("-C", "--config", action="append", default=[], type=Path)
    parser.add_argument("--var-dir")
    parser.add_argument("--path", action="append", default=[], type=Path)
    args = parser.parse_args(argv)
    try:
        import_dirs = [ImportDir(path.absolute(), "--path") for path in args.path]
        texts = read_config_texts(args.config)
        config = Configuration.load(
            args.config, args.var_dir, import_path=import_dirs, texts=texts
        )
        use_import_path(config)
        master = Master(
            config, args.config, texts=texts, var_dir=args.var_dir, import_dirs=import_dirs
        )
        with config:
            return master.run()
    except MasterRunningError as error:
        print(f"runnerkit: {error}", file=sys.stderr)
        return 1
    except RunnerkitError as error:
        print(f"runnerkit: {error}", file=sys.stderr)
        return 2
