"""The master: starts every runner process, watches them, and restarts the ones that die.

Restart rule
------------
A runner process that exits with status 0 stopped on purpose and stays down.  One
that exits with :data:`EXIT_RESTART` (75; a runner stopped by SIGUSR1) is restarted at
once, at no cost.  Any other exit -- an error status or death by a signal -- is a
*failure*:

- failures older than ``[master] restart_window`` are forgotten, so a runner that fails
  now and then is always restarted;
- the *n*\\ th failure inside the window is followed by a pause of
  ``backoff_base * 2**(n-1)``, capped at ``backoff_max``, before the restart, so a crash
  loop does not spin;
- when a runner has failed more than its ``max_restarts`` times inside the window, the
  master logs that it gives up and leaves that slice down.

Unlike a cumulative budget, which leaves a slice dead for good after enough sporadic
crashes over weeks, the window forgives old failures; unlike immediate restarts, the
backoff gives a broken dependency time to come back.

Stuck runners
-------------
A runner takes a message by renaming its file to ``.bak``, which sets the file's ctime;
it removes the ``.bak`` when it is done.  So a ``.bak`` in a slice's queue directory that
is older than ``[master] stuck_after`` (and older than the process itself, which
recovered its slice's ``.bak`` files when it started) means the slice's runner has been
on one message for too long.  Once a second the master looks for such files; for each
one it logs an error naming the runner, the slice, the pid and the file, shows the
process as ``stuck`` in the status file, and kills it with SIGKILL.  That is a failure
like any other, so the process is restarted; the restarted runner recovers the message
and counts the recovery in the file, and a message that is stuck every time ends in
``bad`` after three attempts.  ``stuck_after: 0`` turns the watchdog off.  A ``.bak``
held by a leftover process of a killed master (which still holds the slice's lock) is
only logged: the master kills only its own children.

Signals
-------
SIGTERM and SIGINT stop every runner after its current message, wait up to
``[master] stop_timeout`` for them (then kill the stragglers) and exit.  SIGUSR1
restarts all runners without spending their budget.  SIGHUP reopens the master's log
file and every runner's.  Runners watch the master and stop if it dies, even by SIGKILL;
a runner still finishing a message then holds its slice's lock, and the new master's
process for that slice waits for it (see :mod:`runnerkit.process`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runnerkit.config import Configuration
from runnerkit.errors import RunnerkitError
from runnerkit.fsio import FILE_MODE, make_directories, write_new_file
from runnerkit.logs import configure_logging, reopen_logs
from runnerkit.process import EXIT_RESTART
from runnerkit.signals import SignalDispatcher
from runnerkit.slices import slice_of

log = logging.getLogger("runnerkit.master")

#: How long to retry a lock held for an instant by a process that only checks it.
LOCK_RETRY_SECONDS = 0.25
#: How often the master looks for runners stuck on one message, at most.
STUCK_CHECK_SECONDS = 1.0

#: A queue file taken for processing: its base name, whose last 40 hex digits are the digest.
_BACKUP_NAME = re.compile(r"(\d+(?:\.\d+)?\+([0-9a-f]{40}))\.bak")


class MasterRunningError(RunnerkitError):
    """Another master holds the lock of this var dir."""


@dataclass
class Slot:
    """One runner process the master keeps alive: a runner name and a slice."""

    name: str
    slice: int | None
    count: int
    max_restarts: int
    process: subprocess.Popen[bytes] | None = None
    #: Monotonic times of recent failures, inside the restart window.
    failures: deque[float] = field(default_factory=deque)
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

    @property
    def spec(self) -> str:
        """The ``--runner`` argument: NAME or NAME:SLICE:COUNT."""
        return self.name if self.slice is None else f"{self.name}:{self.slice}:{self.count}"

    @property
    def state(self) -> str:
        if self.process is not None:
            return "stuck" if self.stuck_on else "running"
        if self.start_at is not None:
            return "starting"
        return "down"


def lock_paths(config: Configuration) -> tuple[Path, Path, Path]:
    """(lock file, pid file, status file) of the master of *config*'s var dir."""
    return (
        config.paths.lock_dir / "master.lck",
        config.paths.var_dir / "master.pid",
        config.paths.var_dir / "master.json",
    )


def running_master_pid(config: Configuration) -> int | None:
    """The pid of the master that holds *config*'s lock, or None if no master does."""
    lock_path, _, _ = lock_paths(config)
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            # A master that has just taken the lock writes its pid a moment later.
            deadline = time.monotonic() + LOCK_RETRY_SECONDS
            while True:
                text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
                if text.isdigit():
                    return int(text)
                if time.monotonic() > deadline:
                    return -1
                time.sleep(0.005)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


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
    ) -> None:
        self.config = config
        self.config_files = [Path(path).absolute() for path in config_files]
        self.python = python
        self.restart_window: float = config.get("master", "restart_window").total_seconds()
        self.backoff_base: float = config.get("master", "backoff_base").total_seconds()
        self.backoff_max: float = config.get("master", "backoff_max").total_seconds()
        self.stop_timeout: float = config.get("master", "stop_timeout").total_seconds()
        self.stuck_after: float = config.get("master", "stuck_after").total_seconds()
        self.slots = self._plan()
        self._lock_fd: int | None = None
        self._stopping = False
        self._restart_all = False
        self._hangup = False
        self._wake = threading.Event()
        self._status_written = ""
        self._next_stuck_check = 0.0
        #: Stuck files held by processes that are not this master's, already logged.
        self._foreign_stuck: set[str] = set()

    def _plan(self) -> list[Slot]:
        slots: list[Slot] = []
        for name, settings in sorted(self.config.runners.items()):
            if not settings.start:
                continue
            if settings.is_queue_runner:
                slots.extend(
                    Slot(name, index, settings.instances, settings.max_restarts)
                    for index in range(settings.instances)
                )
            else:
                slots.append(Slot(name, None, 1, settings.max_restarts))
        return slots

    # The lock.

    def acquire_lock(self) -> None:
        """Take the var dir's master lock and write the pid files.

        A lock left by a dead master is free (the kernel drops a dead process's locks),
        so it is simply taken over, whatever pid its file names.

        :raises MasterRunningError: a live master holds the lock.
        """
        lock_path, pid_path, _ = lock_paths(self.config)
        lock_path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            _lock_exclusively(fd)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise MasterRunningError(
                f"a runnerkit master is already running with pid {holder} "
                f"(lock {str(lock_path)!r}); stop it with 'runnerkit stop'"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd
        _write_atomically(pid_path, f"{os.getpid()}\n")

    def release_lock(self) -> None:
        """Remove the pid and status files and release the lock."""
        if self._lock_fd is None:
            return
        _, pid_path, status_path = lock_paths(self.config)
        for path in (pid_path, status_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    # Running.

    def run(self) -> int:
        """Run until SIGTERM or SIGINT: the whole life of a master process.

        :raises MasterRunningError: another master runs on this var dir.
        """
        self.acquire_lock()
        try:
            configure_logging(self.config)
            actions: dict[int, Callable[[int], object]] = {
                signal.SIGTERM: self._on_stop,
                signal.SIGINT: self._on_stop,
                signal.SIGUSR1: self._on_restart,
                signal.SIGHUP: self._on_hangup,
                signal.SIGCHLD: lambda signum: self._wake.set(),
            }
            with SignalDispatcher(actions):
                log.info("master %d: starting %d runner processes", os.getpid(), len(self.slots))
                while not self._stopping:
                    now = time.monotonic()
                    self.step(now)
                    self._wake.wait(self.seconds_to_next_start(now))
                    self._wake.clear()
                self.shutdown()
        finally:
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

    def step(self, now: float) -> None:
        """One pass of the watch loop: handle signals, reap, restart, write the status."""
        if self._hangup:
            self._hangup = False
            reopen_logs()
            log.info("master: log files reopened on SIGHUP")
            self._signal_all(signal.SIGHUP)
        if self._restart_all:
            self._restart_all = False
            log.info("master: SIGUSR1, restarting all runners")
            for slot in self.slots:
                if slot.process is not None:
                    slot.restart_requested = True
                    _send(slot.process, signal.SIGUSR1)
                elif slot.start_at is None:
                    slot.start_at, slot.down_reason = now, ""
                    slot.failures.clear()
        for slot in self.slots:
            if slot.process is not None:
                status = slot.process.poll()
                if status is not None:
                    self._exited(slot, status, now)
            if slot.process is None and slot.start_at is not None and now >= slot.start_at:
                self._spawn(slot)
        if self.stuck_after > 0 and now >= self._next_stuck_check:
            self._next_stuck_check = now + STUCK_CHECK_SECONDS
            self.kill_stuck(time.time())
        self.write_status()

    def seconds_to_next_start(self, now: float, longest: float = 0.5) -> float:
        """How long the watch loop may sleep: until the next due start, at most *longest*."""
        due = [slot.start_at for slot in self.slots if slot.start_at is not None]
        return max(0.0, min([longest, *(start - now for start in due)]))

    def kill_stuck(self, now: float) -> list[Slot]:
        """Kill every runner process that has been on one message for over ``stuck_after``.

        :param now: the wall-clock time, as :func:`time.time` gives it (file ctimes are
            wall-clock times).
        :returns: the slots whose processes were found stuck and killed.
        """
        by_queue: dict[str, dict[int, Slot]] = {}
        for candidate in self.slots:
            if candidate.slice is not None:
                by_queue.setdefault(candidate.name, {})[candidate.slice] = candidate
        stuck: list[Slot] = []
        for name, slices in by_queue.items():
            count = next(iter(slices.values())).count
            for filebase, digest, changed in _backups(self.config.runner(name).path):
                owner = slice_of(digest, count)
                slot = slices.get(owner)
                if slot is None or slot.process is None or slot.stuck_on:
                    continue
                held = now - max(changed, slot.started)
                if held <= self.stuck_after:
                    continue
                holder = self._slice_holder(slot)
                if holder != slot.process.pid:
                    if filebase not in self._foreign_stuck:
                        self._foreign_stuck.add(filebase)
                        log.error(
                            "master: runner %s slice %d: %s has been taken for %.1fs by "
                            "process %s, which this master did not start; pid %d waits for it",
                            name,
                            owner,
                            filebase,
                            held,
                            holder,
                            slot.process.pid,
                        )
                    continue
                slot.stuck_on = filebase
                stuck.append(slot)
                log.error(
                    "master: runner %s slice %d (pid %d) is stuck on %s: no progress for "
                    "%.1fs, more than stuck_after=%ss; killing it",
                    name,
                    owner,
                    slot.process.pid,
                    filebase,
                    held,
                    self.stuck_after,
                )
        if stuck:
            # Show the state before the kill: the process is reaped on the next pass.
            self.write_status()
            for slot in stuck:
                if slot.process is not None:
                    _send(slot.process, signal.SIGKILL)
        return stuck

    def _slice_holder(self, slot: Slot) -> int | None:
        """The pid written in *slot*'s slice lock (see :func:`runnerkit.process.lock_slice`)."""
        path = self.config.paths.lock_dir / f"runner-{slot.name}-{slot.slice}.lck"
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _exited(self, slot: Slot, status: int, now: float) -> None:
        pid = slot.process.pid if slot.process else "?"
        slot.process = None
        slot.stuck_on = ""
        if slot.restart_requested or status == EXIT_RESTART:
            slot.restart_requested = False
            slot.start_at = now
            slot.restarts += 1
            log.info("master: %s (pid %s) restarting on request", slot.spec, pid)
            return
        if status == 0:
            slot.start_at = None
            slot.down_reason = "stopped"
            log.info("master: %s (pid %s) stopped on its own; not restarting", slot.spec, pid)
            return
        how = f"signal {-status}" if status < 0 else f"status {status}"
        while slot.failures and slot.failures[0] <= now - self.restart_window:
            slot.failures.popleft()
        slot.failures.append(now)
        if len(slot.failures) > slot.max_restarts:
            slot.start_at = None
            slot.down_reason = f"failed {len(slot.failures)} times within the restart window"
            log.error(
                "master: %s (pid %s) died with %s; it failed %d times within %ss, more than "
                "max_restarts=%d: giving up, the slice stays down",
                slot.spec,
                pid,
                how,
                len(slot.failures),
                self.restart_window,
                slot.max_restarts,
            )
            return
        delay = min(self.backoff_base * 2 ** (len(slot.failures) - 1), self.backoff_max)
        slot.start_at = now + delay
        slot.restarts += 1
        log.warning(
            "master: %s (pid %s) died with %s; restart %d of %d in %.2fs",
            slot.spec,
            pid,
            how,
            len(slot.failures),
            slot.max_restarts,
            delay,
        )

    def _spawn(self, slot: Slot) -> None:
        command = [self.python, "-m", "runnerkit.process", "--runner", slot.spec]
        command += ["--var-dir", str(self.config.paths.var_dir), "--parent-pid", str(os.getpid())]
        for path in self.config_files:
            command += ["-C", str(path)]
        errors = self.config.paths.log_dir / "runners.err"
        errors.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        with open(errors, "ab") as stderr:
            slot.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, close_fds=True
            )
        slot.started = time.time()
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

    def status(self) -> dict[str, object]:
        """The master's pid and each runner process's name, slice, pid, state, restarts."""
        return {
            "master_pid": os.getpid(),
            "runners": [
                {
                    "name": slot.name,
                    "slice": slot.slice,
                    "count": slot.count,
                    "pid": slot.process.pid if slot.process else None,
                    "state": slot.state,
                    "restarts": slot.restarts,
                    "reason": f"stuck on {slot.stuck_on}" if slot.stuck_on else slot.down_reason,
                }
                for slot in self.slots
            ],
        }

    def write_status(self) -> None:
        """Write :meth:`status` to the status file, when it changed."""
        text = json.dumps(self.status(), indent=2, sort_keys=True)
        if text == self._status_written:
            return
        _, _, status_path = lock_paths(self.config)
        _write_atomically(status_path, text + "\n")
        self._status_written = text


def _lock_exclusively(fd: int) -> None:
    """Take an exclusive lock on *fd*, waiting a little for a passing shared lock.

    :func:`running_master_pid` holds a shared lock for an instant; only a lock still
    held after :data:`LOCK_RETRY_SECONDS` belongs to a master.

    :raises BlockingIOError: the lock is still held.
    """
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _backups(directory: Path) -> list[tuple[str, int, float]]:
    """(file base, digest, ctime) of each ``.bak`` file in the queue *directory*."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        match = _BACKUP_NAME.fullmatch(entry.name)
        if match is None:
            continue
        try:
            changed = entry.stat(follow_symlinks=False).st_ctime
        except OSError:
            continue
        found.append((match[1], int(match[2], 16), changed))
    return found


def _send(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    write_new_file(tmp, path, text.encode("utf-8"))


def start_in_background(
    config: Configuration, config_files: Sequence[Path] = (), wait: float = 15.0
) -> int:
    """Start a master on *config*'s var dir in a new session, and wait until it holds its lock.

    :returns: the master's pid.
    :raises MasterRunningError: another master holds the lock (it may have won a race).
    :raises RunnerkitError: the master exited at once, or did not take its lock in time.
    """
    command = [sys.executable, "-m", "runnerkit.master", "--var-dir", str(config.paths.var_dir)]
    for path in config_files:
        command += ["-C", str(Path(path).absolute())]
    make_directories(config.paths.log_dir)
    with open(config.paths.log_dir / "master.err", "ab") as errors:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=errors,
            stderr=errors,
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
            raise RunnerkitError(
                f"the master exited at once with status {process.returncode}; "
                f"see {config.paths.log_dir / 'master.err'}"
            )
        time.sleep(0.02)
    raise RunnerkitError(f"the master (pid {process.pid}) did not take its lock in {wait:.0f}s")


def stop_master(config: Configuration, pid: int, timeout: float) -> bool:
    """Send SIGTERM to the master *pid* and wait until *config*'s lock is free.

    :returns: whether the master stopped within *timeout* seconds.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return running_master_pid(config) is None
    deadline = time.monotonic() + timeout
    while running_master_pid(config) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m runnerkit.master [-C FILE]... [--var-dir DIR]``: run a master."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m runnerkit.master")
    parser.add_argument("-C", "--config", action="append", default=[], type=Path)
    parser.add_argument("--var-dir")
    args = parser.parse_args(argv)
    try:
        config = Configuration.load(args.config, args.var_dir)
        master = Master(config, args.config)
        with config:
            return master.run()
    except MasterRunningError as error:
        print(f"runnerkit: {error}", file=sys.stderr)
        return 1
    except RunnerkitError as error:
        print(f"runnerkit: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
