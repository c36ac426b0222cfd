"""Run one runner as a process: ``python -m runnerkit.process --runner NAME[:SLICE:COUNT]``.

The process makes its configuration current, logs to the configured file and runs the
runner until a signal stops it: SIGTERM, SIGINT and SIGUSR1 stop the runner after the
message it is processing (the message is finished, never shunted); after SIGUSR1 the
process exits with status 75, which asks the master to restart it.  SIGHUP reopens the
log files (the main log and the delivery log), for log rotation.

Before it sets up its runner, the process takes the lock of its slice (a file in the lock
dir) and holds it until it exits.  A runner left over from a master killed outright may
still be finishing a message on that slice; the new process waits for it, so that no
two processes ever work on one slice at once.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from runnerkit.config import Configuration, ImportDir, use_config
from runnerkit.errors import (
    ConfigurationError,
    QueueUnavailableError,
    RunnerkitError,
    RunnerSpecError,
)
from runnerkit.exits import EXIT_RESTART, EXIT_SETUP_FAILED
from runnerkit.fsio import FILE_MODE, make_directories
from runnerkit.importpath import use_import_path
from runnerkit.locks import slice_lock_path
from runnerkit.logs import configure_delivery_log, configure_logging, reopen_logs
from runnerkit.master.files import read_layers_file
from runnerkit.runner import Runner, load_runner_class
from runnerkit.signals import SignalDispatcher
from runnerkit.site import Site
from runnerkit.streams import SliceLease, host_id
from runnerkit.wakeup import watch_queue

log = logging.getLogger("runnerkit.process")

#: How often a runner checks that its master is still alive.
PARENT_POLL_SECONDS = 0.25
#: prctl option: the signal to receive when the parent dies.
PR_SET_PDEATHSIG = 1
#: How often a process waiting for its slice's lock tries again.
LOCK_POLL_SECONDS = 0.05
#: The longest pause between two tries at setting a runner up while its queue server
#: cannot be reached.
MAX_SETUP_PAUSE = 5.0


def parse_runner_spec(spec: str) -> tuple[str, int | None, int | None]:
    """Split ``NAME`` or ``NAME:SLICE:COUNT`` into its parts.

    :raises RunnerSpecError: the text is neither.
    """
    parts = spec.split(":")
    if len(parts) == 1 and parts[0]:
        return parts[0], None, None
    if len(parts) == 3 and parts[0]:
        try:
            return parts[0], int(parts[1]), int(parts[2])
        except ValueError:
            pass
    raise RunnerSpecError(f"--runner {spec!r}: expected NAME or NAME:SLICE:COUNT, e.g. in:0:4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runnerkit.process", description="Run one runnerkit runner."
    )
    parser.add_argument("-r", "--runner", required=True, help="NAME or NAME:SLICE:COUNT")
    parser.add_argument(
        "-C",
        "--config",
        action="append",
        default=[],
        help="an INI file pushed over the defaults (repeat for more layers)",
    )
    parser.add_argument(
        "--layers",
        metavar="FILE",
        help="a master's record of its layers (master.layers.json): its configuration "
        "files, pushed with the texts the master read from them; instead of -C",
    )
    parser.add_argument("--var-dir", help="the var dir (default: ./var)")
    parser.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory to import runner classes from, before [runnerkit] import_path "
        "(repeat for more)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        help="stop when this process (the master) dies, so no runner outlives it",
    )
    return parser


def watch_parent(parent_pid: int, on_death: Callable[[], object]) -> threading.Event:
    """Call *on_death* once the process *parent_pid* is no longer this one's parent.

    The kernel is also asked to send SIGTERM when the parent dies (Linux), so the
    runner hears at once; the polling thread covers other systems and the race of a
    parent that died before the request was made.

    :returns: an event that ends the watch when set.
    """
    _request_parent_death_signal()
    done = threading.Event()

    def poll() -> None:
        while not done.wait(PARENT_POLL_SECONDS):
            if os.getppid() != parent_pid:
                log.warning("parent %d is gone; stopping", parent_pid)
                on_death()
                return

    threading.Thread(target=poll, name="parent-watch", daemon=True).start()
    return done


def lock_slice(
    config: Configuration,
    name: str,
    slice: int | None,
    parent_pid: int | None,
    give_up: Callable[[], bool] = lambda: False,
) -> int | None:
    """Take the lock of runner *name*'s *slice*, waiting while another process holds it.

    The lock is held until the returned descriptor is closed, or the process exits.

    :param parent_pid: stop waiting when this process (the master) is gone.
    :param give_up: stop waiting when this returns true (a stop signal arrived).
    :returns: the lock's descriptor, or None if the wait was given up.
    """
    path = slice_lock_path(config.paths.lock_dir, name, slice)
    make_directories(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if give_up() or (parent_pid is not None and os.getppid() != parent_pid):
                os.close(fd)
                return None
            if not waiting:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
                log.warning(
                    "runner %s slice %s: process %s still works on this slice; waiting for it",
                    name,
                    "-" if slice is None else slice,
                    holder,
                )
                waiting = True
            time.sleep(LOCK_POLL_SECONDS)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return fd


def hold_slice_lease(
    config: Site,
    name: str,
    slice: int | None,
    parent_pid: int | None,
    give_up: Callable[[], bool],
) -> tuple[bool, SliceLease | None]:
    """On Redis, take the lease of queue runner *name*'s *slice* before it recovers and
    runs, waiting while another host holds it (:class:`~runnerkit.streams.SliceLease`).

    :returns: ``(True, lease)``, the lease held and renewed until released;
        ``(True, None)`` where none is needed (the file backend, whose queue
        directories are locked by their master, or a runner without a queue);
        ``(False, None)`` when the wait was given up.
    """
    if config.queues.backend != "redis" or slice is None or not config.runner(name).queue:
        return True, None
    lease = SliceLease(
        config.redis,
        name,
        slice,
        host_id(config.paths.var_dir),
        config.queues.lease.total_seconds(),
    )

    def stop_waiting() -> bool:
        return give_up() or (parent_pid is not None and os.getppid() != parent_pid)

    return (True, lease) if lease.acquire(stop_waiting) else (False, None)


def build_runner(
    runner_class: type[Runner],
    name: str,
    slice: int | None,
    config: Site,
    parent_pid: int | None,
    control: _Control,
    lease: SliceLease | None = None,
) -> Runner | None:
    """Build the runner; while its queue server cannot be reached (or is full), wait
    and try again, with a pause that doubles up to :data:`MAX_SETUP_PAUSE` seconds,
    instead of exiting (which would count as a failure against ``max_restarts``).

    Building a queue runner recovers its slice (puts back what a crash left taken), which
    only the lease's holder may do: each try waits until the *lease* is fresh
    (:meth:`~runnerkit.streams.SliceLease.staleness`), and gives up if it is lost.

    :returns: the runner, or None when the wait was given up (a stop signal, the master
        gone, or the lease lost).
    """
    pause = 0.1

    def given_up() -> bool:
        return (
            control.stopping.is_set()
            or (parent_pid is not None and os.getppid() != parent_pid)
            or (lease is not None and lease.lost is not None)
        )

    while True:
        while lease is not None and lease.staleness() is not None:
            if given_up():
                return None
            control.stopping.wait(LOCK_POLL_SECONDS)
        try:
            return runner_class(name, slice, config=config)
        except QueueUnavailableError as error:
            if given_up():
                return None
            log.error(
                "runner %s slice %s: cannot set up (%s); trying again in %.1fs",
                name,
                "-" if slice is None else slice,
                error,
                pause,
            )
            control.stopping.wait(pause)
            pause = min(MAX_SETUP_PAUSE, pause * 2)
            if given_up():
                return None


def _lease_lost(runner: Runner) -> None:
    """The slice's lease is lost: stop after the message in hand, and exit asking the
    master for a new process (which waits for the lease, and recovers the slice)."""
    runner.status = EXIT_RESTART
    runner.stop()


def _request_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):  # pragma: no cover - runnerkit targets Linux
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - prctl is always in glibc
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the runner named on the command line; return the process's exit status."""
    args = build_parser().parse_args(argv)
    if args.parent_pid is not None:
        # Hear the master's death from the start, not only once the runner is set up: a
        # process still setting up (no message taken yet) then simply ends at once.
        _request_parent_death_signal()
        if os.getppid() != args.parent_pid:
            return 0
    try:
        name, slice, count = parse_runner_spec(args.runner)
        files, texts = args.config, None
        if args.layers is not None:
            record = read_layers_file(Path(args.layers))
            if record is None:
                raise ConfigurationError(f"--layers {args.layers!r}: no such file")
            files, texts = list(record.config_files), record.texts
        config = Site.load(
            files,
            args.var_dir,
            import_path=[ImportDir(Path(path).absolute(), "--path") for path in args.path],
            texts=texts,
        )
        use_import_path(config)
        settings = config.runner(name)
        if count is not None and count != settings.instances:
            raise RunnerSpecError(
                f"--runner {args.runner!r}: [runner.{name}] has instances: "
                f"{settings.instances}, not {count}"
            )
        if slice is not None and count is not None and not 0 <= slice < count:
            raise RunnerSpecError(
                f"--runner {args.runner!r}: SLICE must be from 0 to {count - 1}, not {slice}"
            )
        runner_class = load_runner_class(settings)
    except RunnerkitError as error:
        print(f"runnerkit: {error}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    with config, use_config(config), contextlib.ExitStack() as stack:
        configure_logging(config)
        configure_delivery_log(config)
        control = _Control(args.runner)
        # Signals are handled from here on, so that one arriving while the slice lock
        # is awaited or the runner is built stops the process cleanly.
        stack.enter_context(SignalDispatcher(control.actions()))
        lock_fd = lock_slice(config, name, slice, args.parent_pid, control.stopping.is_set)
        if lock_fd is None:
            log.warning("runner %s: stopped or orphaned before it started", args.runner)
            return 0
        stack.callback(os.close, lock_fd)
        held, lease = hold_slice_lease(
            config, name, slice, args.parent_pid, control.stopping.is_set
        )
        if not held:
            log.info("runner %s: stopped or orphaned before it held its slice", args.runner)
            return 0
        if lease is not None:
            stack.callback(lease.release)
        runner = build_runner(runner_class, name, slice, config, args.parent_pid, control, lease)
        if runner is None:
            if lease is not None and lease.lost is not None:
                log.error("runner %s: %s before it was set up", args.runner, lease.lost)
                return EXIT_RESTART
            log.warning("runner %s: stopped or orphaned before it was set up", args.runner)
            return 0
        control.attach(runner)
        if lease is not None:
            switchboard = runner.switchboard
            if switchboard is not None and hasattr(switchboard, "lease"):
                switchboard.lease = lease
            lease.on_lost = partial(_lease_lost, runner)
            if lease.lost is not None:
                _lease_lost(runner)
        if args.parent_pid is not None:
            stack.callback(watch_parent(args.parent_pid, runner.stop).set)
        watch = getattr(runner.switchboard, "watch", None)
        if watch is not None:
            stack.callback(watch(runner.wake).close)
        elif runner.queue_directory is not None:
            watcher = watch_queue(runner.queue_directory, runner.wake)
            if watcher is not None:
                stack.callback(watcher.close)
        log.info("%s: started (pid %d)", runner, os.getpid())
        runner.run()
        log.info("%s: stopped with status %d", runner, runner.status)
        return runner.status


class _Control:
    """What the signal actions act on: the runner, once there is one."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.runner: Runner | None = None
        #: Set by the first stop signal, even before the runner exists.
        self.stopping = threading.Event()
        self._restart = False

    def actions(self) -> dict[int, Callable[[int], object]]:
        return {
            signal.SIGTERM: self.stop,
            signal.SIGINT: self.stop,
            signal.SIGUSR1: self.stop,
            signal.SIGHUP: self.reopen,
        }

    def attach(self, runner: Runner) -> None:
        """Hand the runner to the actions, applying a stop that came before it."""
        self.runner = runner
        if self.stopping.is_set():
            self._apply()

    def stop(self, signum: int) -> None:
        log.info("%s: stopping on %s", self.runner or self.spec, signal.Signals(signum).name)
        self._restart = self._restart or signum == signal.SIGUSR1
        self.stopping.set()
        if self.runner is not None:
            self._apply()

    def _apply(self) -> None:
        if self.runner is None:
            return
        if self._restart:
            self.runner.status = EXIT_RESTART
        self.runner.stop()

    def reopen(self, signum: int) -> None:
        reopen_logs()
        log.info("%s: log files reopened on SIGHUP", self.runner or self.spec)


if __name__ == "__main__":
    sys.exit(main())
