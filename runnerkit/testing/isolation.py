"""Isolation: nothing a document, or a test of runnerkit's fixtures, does outlives it.

A document's examples build on each other, and some undo, in a later example, what an
earlier one did: ``freeze_time(...).start()`` then ``.stop()``, ``runnerkit start`` then
``runnerkit stop``.  When the later example does not run (a selection ran the earlier
one as a prelude, or an example in between failed), the change outlives the document:
a frozen clock in the next document, a master and its runners on a var dir already
deleted.  An :class:`Isolation` is taken when a document's world (or the ``world``
fixture's) is set up, and :meth:`Isolation.restore` undoes, at its end, whatever is
still changed, and says what it had to undo, so that :func:`warn_restored` can tell the
author.

This module only runs on Linux: it finds processes through ``/proc``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import freezegun
import pytest
from freezegun import api as freezegun_api

from runnerkit.config import Configuration, current_config, set_current_config
from runnerkit.errors import HarnessError, NoConfigurationError
from runnerkit.locks import lock_holder, lock_is_held
from runnerkit.master import UNKNOWN_PID, running_master_pid, stop_master
from runnerkit.testing.redis import shared_server_pids

#: Seconds a master left running gets to stop its runners and itself before it is killed.
STOP_SECONDS = 10.0
#: Seconds a process sent SIGTERM gets before SIGKILL, and a killed one to be gone.
KILL_SECONDS = 5.0
#: Seconds the processes left in a console command's session get to finish exiting,
#: before they count as left running.
SESSION_GRACE_SECONDS = 1.0
#: How often a wait for processes looks again.
POLL_SECONDS = 0.02

#: The states, in ``/proc``, of a thread that has exited: a zombie, and one being reaped.
_EXITED = frozenset({"Z", "X"})

#: Environment variables that pytest itself changes from one test phase to the next.
_VOLATILE_ENVIRON = frozenset({"PYTEST_CURRENT_TEST"})


#: The key of a document's :class:`Isolation` in its namespace.
ISOLATION = "__runnerkit_isolation__"


def document_isolation(namespace: dict[str, Any]) -> Isolation | None:
    """The :class:`Isolation` of the document whose namespace is *namespace*, or None
    outside a document (:func:`runnerkit.testing.documents.setup_document` sets it)."""
    isolation: Isolation | None = namespace.get(ISOLATION)
    return isolation


class IsolationWarning(pytest.PytestWarning):
    """A document or test left process state behind, which runnerkit had to restore."""


class _LoggerState(NamedTuple):
    level: int
    handlers: tuple[logging.Handler, ...]
    propagate: bool
    disabled: bool


#: What a logger nobody configured looks like.
_PRISTINE_LOGGER = _LoggerState(logging.NOTSET, (), True, False)


class Isolation:
    """What the process looks like now, to put back by :meth:`restore`.

    It records the environment, the working directory, ``sys.path``, the umask, the
    Python signal handlers, the loggers, the freezegun freezes, the current
    configuration and the running child processes.  Var dirs given to :meth:`watch`
    have their masters and runner processes stopped too, and the sessions given to
    :meth:`watch_session` the processes still in them.
    """

    def __init__(self) -> None:
        self._environ = {k: v for k, v in os.environ.items() if k not in _VOLATILE_ENVIRON}
        self._cwd = _getcwd()
        self._path = list(sys.path)
        self._umask = _get_umask()
        self._signals = {signum: signal.getsignal(signum) for signum in _catchable_signals()}
        self._loggers = _logger_states()
        self._logging_disable = logging.root.manager.disable
        self._freezes = len(freezegun_api.freeze_factories)
        self._config = _current_config()
        self._children = _running_children()
        self._watched: list[Configuration] = []
        self._sessions: dict[int, str] = {}
        self._restored = False

    def watch(self, config: Configuration) -> None:
        """Stop the masters and runner processes of *config*'s var dir on :meth:`restore`;
        after console commands (:meth:`watch_session`), also every process that has the
        var dir as ``RUNNERKIT_VAR_DIR`` in its environment."""
        self._watched.append(config)

    def watch_session(self, sid: int, label: str) -> None:
        """Stop, on :meth:`restore`, the processes still in session *sid*.

        A console command runs in a session of its own, whose id is its shell's pid;
        what it leaves in the background (``server &``) stays in it after the shell
        exits, no child of this process any more.

        :param label: what started the session, as the warning names it.
        """
        self._sessions[sid] = label

    def restore(self) -> list[str]:
        """Put back everything that is still changed, and stop what was started.

        The clock is thawed first: the waits for processes need it to move.

        :returns: what had to be restored, one description each; empty if nothing.
        :raises HarnessError: it was restored already.
        """
        if self._restored:
            raise HarnessError("this Isolation was restored already; take a new one")
        self._restored = True
        steps: list[Callable[[], Iterable[str]]] = [
            self._restore_freezes,
            self._stop_sessions,
            self._stop_var_dir_processes,
            self._stop_children,
            self._restore_environ,
            self._restore_cwd,
            self._restore_path,
            self._restore_umask,
            self._restore_signals,
            self._restore_logging,
            self._restore_config,
        ]
        restored: list[str] = []
        for step in steps:
            restored.extend(step())
        return restored

    def _restore_freezes(self) -> Iterator[str]:
        leaked = thaw(self._freezes)
        if leaked:
            yield f"{leaked} freezegun freeze{'s' if leaked > 1 else ''} stopped"

    def _stop_var_dir_processes(self) -> Iterator[str]:
        for config in self._watched:
            yield from stop_var_dir_processes(config)
            if not self._sessions:
                continue
            # What runs on with the var dir in its environment, in a session of its own
            # (a daemon a console command started), is out of every other reach.  Only
            # looked for after console commands: it reads every process's environment.
            strays = functools.partial(_strays, str(config.paths.var_dir))
            with _killed_if_interrupted(strays):
                left = _settled(strays)
                names = {pid: _command_line(pid) for pid in left}
                if left:
                    terminate_all(strays)
            for pid in sorted(names):
                yield (
                    f"process {pid} ({names[pid]}), with"
                    f" RUNNERKIT_VAR_DIR={config.paths.var_dir} in its environment, killed"
                )

    def _stop_sessions(self) -> Iterator[str]:
        if not self._sessions:
            return
        sessions = frozenset(self._sessions)
        members = functools.partial(sessions_members, sessions)
        with _killed_if_interrupted(members):
            left = _settled(lambda: set(members()))
            if not left:
                return
            by_session = members()
            terminate_all(lambda: set(members()))
        for sid, label in self._sessions.items():
            pids = {pid for pid, session in by_session.items() if session == sid}
            if pids:
                yield (
                    f"process{'es' if len(pids) > 1 else ''} {_pids(pids)}, left running by"
                    f" {label}, killed"
                )

    def _stop_children(self) -> Iterator[str]:
        # The Redis server the harness starts for the whole process, on first use, is
        # no document's to stop: the next one needs it too.
        started = _running_children() - self._children - shared_server_pids()
        if started:
            terminate(started)
            yield f"child process{'es' if len(started) > 1 else ''} {_pids(started)} killed"
        _reap(_zombie_children() - self._children)

    def _restore_environ(self) -> Iterator[str]:
        now = {k: v for k, v in os.environ.items() if k not in _VOLATILE_ENVIRON}
        if now == self._environ:
            return
        added = sorted(now.keys() - self._environ.keys())
        removed = sorted(self._environ.keys() - now.keys())
        changed = sorted(
            k for k in now.keys() & self._environ.keys() if now[k] != self._environ[k]
        )
        for name in added:
            del os.environ[name]
        for name in removed + changed:
            os.environ[name] = self._environ[name]
        if "TZ" in added + removed + changed and hasattr(time, "tzset"):
            time.tzset()  # the C library keeps the zone it read until told again
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (("unset", added), ("set back", removed + changed))
            if names
        ]
        yield f"os.environ: {'; '.join(parts)}"

    def _restore_cwd(self) -> Iterator[str]:
        now = _getcwd()
        if self._cwd is not None and now != self._cwd:
            os.chdir(self._cwd)
            yield f"working directory {now} changed back to {self._cwd}"

    def _restore_path(self) -> Iterator[str]:
        if sys.path != self._path:
            added = [entry for entry in sys.path if entry not in self._path]
            sys.path[:] = self._path
            detail = f": {', '.join(map(repr, added))} removed" if added else ""
            yield f"sys.path put back{detail}"

    def _restore_umask(self) -> Iterator[str]:
        now = _get_umask()
        if now != self._umask:
            os.umask(self._umask)
            yield f"umask {now:04o} changed back to {self._umask:04o}"

    def _restore_signals(self) -> Iterator[str]:
        changed = []
        for signum, before in self._signals.items():
            now = signal.getsignal(signum)
            if before is None or _same_handler(before, now) or _cancelled_timeout(before, now):
                continue
            with contextlib.suppress(ValueError):  # not the main thread: nothing to do
                signal.signal(signum, before)
                changed.append(signal.Signals(signum).name)
        if changed:
            yield f"signal handlers put back: {', '.join(changed)}"

    def _restore_logging(self) -> Iterator[str]:
        changed = []
        kept = {handler for state in self._loggers.values() for handler in state.handlers}
        for name, now in _logger_states().items():
            before = self._loggers.get(name, _PRISTINE_LOGGER)
            if now == before:
                continue
            logger = logging.getLogger(name or None)
            logger.setLevel(before.level)
            logger.propagate = before.propagate
            logger.disabled = before.disabled
            for handler in now.handlers:
                if handler not in before.handlers:
                    logger.removeHandler(handler)
                    if handler not in kept:
                        handler.close()
            for handler in before.handlers:
                if handler not in now.handlers:
                    logger.addHandler(handler)
            changed.append(repr(name or "root"))
        if logging.root.manager.disable != self._logging_disable:
            logging.disable(self._logging_disable)
            changed.append("logging.disable()")
        if changed:
            yield f"logging put back: {', '.join(changed)}"

    def _restore_config(self) -> Iterator[str]:
        now = _current_config()
        if now is not self._config:
            set_current_config(self._config)
            yield f"current configuration {now!r} replaced by {self._config!r}"


def warn_restored(owner: str, restored: Collection[str], remedy: str) -> None:
    """Warn with an :class:`IsolationWarning` that *owner* needed *restored*, if anything.

    :param remedy: how the author avoids it next time.
    """
    if restored:
        details = "".join(f"\n  - {each}" for each in restored)
        warnings.warn(
            IsolationWarning(
                f"{owner} left changes behind, which runnerkit undid when it ended:"
                f"{details}\n{remedy}"
            ),
            stacklevel=2,
        )


def thaw(depth: int = 0) -> int:
    """Stop the freezegun freezes above the first *depth*; return how many there were.

    freezegun keeps only the time factories of active freezes in module state, not the
    freezer objects whose ``stop()`` undoes their patches; a freezer started as
    ``freeze_time(...).start()`` is gone already.  Inner freezes patch nothing, so
    dropping them from freezegun's stacks is all their ``stop()`` would do.  The
    outermost one is undone by a fresh freezer told that every module was loaded
    after it started, so that its ``stop()`` puts the real clock back everywhere.
    """
    stacks: list[list[Any]] = [
        freezegun_api.freeze_factories,
        freezegun_api.tz_offsets,
        freezegun_api.ignore_lists,
        freezegun_api.tick_flags,
    ]
    leaked = len(freezegun_api.freeze_factories) - depth
    if leaked <= 0:
        return 0
    # Made while the clock is frozen still: freezegun asks the clock for its time.
    sweeper = freezegun.freeze_time()
    for stack in stacks:
        del stack[depth:]
    if depth == 0:
        sweeper.start()
        sweeper.modules_at_start = set()
        sweeper.stop()
    return leaked


def stop_var_dir_processes(config: Configuration, timeout: float = STOP_SECONDS) -> list[str]:
    """Stop the master of *config*'s var dir, then kill the runner processes left in it.

    A runner process is one that holds a slice lock in the var dir's lock dir; the pid
    in the lock file is only trusted while the lock is held.

    :returns: what was stopped, one description each.
    """
    stopped = []
    pid = running_master_pid(config)
    if pid == UNKNOWN_PID:
        stopped.append(f"the master lock of {config.paths.var_dir} is held by an unknown pid")
    elif pid is not None:
        with contextlib.suppress(Exception):  # it may stop by itself meanwhile
            if stop_master(config, timeout) is None:
                terminate([pid])
        stopped.append(f"master {pid} of {config.paths.var_dir} stopped")
    runners = {
        holder: path.name
        for path in sorted(config.paths.lock_dir.glob("runner-*.lck"))
        if lock_is_held(path) and (holder := lock_holder(path)) not in (None, os.getpid())
    }
    if runners:
        terminate(runners)
        stopped.extend(f"runner process {pid} ({name}) killed" for pid, name in runners.items())
    return stopped


def terminate(pids: Collection[int], timeout: float = KILL_SECONDS) -> None:
    """Send *pids* SIGTERM, and SIGKILL to those still running after *timeout* seconds."""
    terminate_all(lambda: {pid for pid in pids if _alive(pid)}, timeout)


def terminate_all(members: Callable[[], set[int]], timeout: float = KILL_SECONDS) -> None:
    """Stop every process *members* gives, asked again and again, so that what they fork
    meanwhile is stopped too: SIGTERM, then SIGKILL to those still running after
    *timeout* seconds.  Each process is sent each signal once."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        sent: set[int] = set()
        deadline = time.monotonic() + timeout
        while pids := members():
            for pid in pids - sent:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            sent |= pids
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
        else:
            return


def _settled(found: Callable[[], set[int]], grace: float = SESSION_GRACE_SECONDS) -> set[int]:
    """The processes *found* gives, once those on their way out are gone: a process the
    document stopped in its last command (``$ kill PID`` returns at once) may still be
    exiting.  Waits *grace* seconds at most, and only while some are left."""
    deadline = time.monotonic() + grace
    while (left := found()) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    return left


def _strays(var_dir: str) -> set[int]:
    """:func:`var_dir_processes`, but the Redis server the harness keeps for the whole
    process, which a spec may have started with the variable set."""
    return var_dir_processes(var_dir) - shared_server_pids()


def var_dir_processes(var_dir: str) -> set[int]:
    """The processes, but this one and its ancestors, that have not exited and whose
    environment, as they were started with it, sets ``RUNNERKIT_VAR_DIR`` to *var_dir*
    (read from ``/proc/PID/environ``, which only their user may read)."""
    wanted = b"RUNNERKIT_VAR_DIR=" + os.fsencode(var_dir)
    spared = _ancestors()
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0"):
            stat = _proc_stat(int(entry.name))
            if stat is not None and not _exited(int(entry.name), stat[0]):
                found.add(int(entry.name))
    return found


def _ancestors() -> set[int]:
    """This process and its ancestors, up to the first process."""
    found, pid = set(), os.getpid()
    while pid > 0 and pid not in found:
        found.add(pid)
        stat = _proc_stat(pid)
        pid = stat[1] if stat is not None else 0
    return found


def _command_line(pid: int, limit: int = 60) -> str:
    """Process *pid*'s command line, its words joined by spaces, cut at *limit*
    characters; its name when it has none (a kernel thread, a zombie)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    # Its words on one line: a word may hold line breaks (python -c "...").
    text = " ".join(" ".join(os.fsdecode(word).split()) for word in words if word)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sessions_members(sessions: Collection[int]) -> dict[int, int]:
    """The processes of the *sessions* that have not exited, this one excepted, each
    with its session id: one look at ``/proc``, however many sessions."""
    me = os.getpid()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        fields = _stat_fields(entry.name)
        if fields is None:
            continue
        # state, ppid, pgrp, session: fields 3 to 6 of proc(5).
        sid = int(fields[3])
        if sid in sessions and not _exited(int(entry.name), fields[0]):
            found[int(entry.name)] = sid
    return found


@contextlib.contextmanager
def _killed_if_interrupted(members: Callable[[], Collection[int]]) -> Iterator[None]:
    """Kill what *members* gives with SIGKILL at once, should the block be interrupted
    (Ctrl-C, a time limit's exception): stopping what a document left running must not
    itself leave it running."""
    try:
        yield
    except BaseException:
        for pid in members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        raise


def _alive(pid: int) -> bool:
    """Whether *pid* still runs: some thread of it has not exited (else it is reaped if ours)."""
    state = _proc_stat(pid)
    if state is None:
        return False
    if _exited(pid, state[0]):
        _reap([pid])
        return False
    return True


def _exited(pid: int, state: str) -> bool:
    """Whether process *pid*, whose main thread is in *state*, has exited: all its threads.

    ``/proc/PID/stat`` shows the main thread, a zombie as soon as it has exited itself;
    the other threads may still run (those of a process being killed are on their way
    out), and the process holds its files, and its locks, until the last one is gone.
    """
    if state not in _EXITED:
        return False
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return all(
        (stat := _proc_stat(f"{pid}/task/{tid}")) is None or stat[0] in _EXITED for tid in threads
    )


def _reap(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _proc_stat(pid: int | str) -> tuple[str, int] | None:
    """(state, parent pid) of *pid*, from ``/proc/PID/stat``, or None if it is gone.

    *pid* may also be ``PID/task/TID``: the state is then that of one thread.
    """
    fields = _stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[1]))


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, from the state on, or
    None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces and parentheses itself.
    return text[text.rfind(")") + 2 :].split()


def _children_by_state() -> Iterator[tuple[int, str]]:
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == me and not _is_helper(int(entry.name)):
                yield int(entry.name), stat[0]


def _running_children() -> set[int]:
    return {pid for pid, state in _children_by_state() if not _exited(pid, state)}


def _zombie_children() -> set[int]:
    return {pid for pid, state in _children_by_state() if _exited(pid, state)}


def _is_helper(pid: int) -> bool:
    """Whether *pid* is a helper :mod:`multiprocessing` keeps for the whole process."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"from multiprocessing." in command


def _pids(pids: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(pids)))


def _getcwd() -> str | None:
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def _get_umask() -> int:
    """The umask, read from ``/proc`` where possible: setting it to read it races threads."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _catchable_signals() -> list[int]:
    uncatchable = {signal.SIGKILL, signal.SIGSTOP}
    return sorted(int(each) for each in signal.valid_signals() if each not in uncatchable)


def _same_handler(before: Any, now: Any) -> bool:
    """Whether two signal handlers are the same, or closures of one function.

    pytest-timeout installs a new closure of its handler for every test.
    """
    if before is now or before == now:
        return True
    code = getattr(before, "__code__", None)
    return code is not None and code is getattr(now, "__code__", None)


def _cancelled_timeout(before: Any, now: Any) -> bool:
    """Whether *now* is what pytest-timeout put in place of its handler *before*.

    It resets SIGALRM to the default when it cancels its timer, which it does as soon as
    a test fails, before the test's teardown.
    """
    return now == signal.SIG_DFL and getattr(before, "__module__", None) == "pytest_timeout"


def _is_pytests(handler: logging.Handler) -> bool:
    """Whether pytest's logging plugin owns *handler*; it swaps them between test phases."""
    return type(handler).__module__.startswith("_pytest.")


def _logger_states() -> dict[str, _LoggerState]:
    loggers: dict[str, logging.Logger] = {"": logging.getLogger()}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            loggers[name] = logger
    return {
        name: _LoggerState(
            logger.level,
            tuple(handler for handler in logger.handlers if not _is_pytests(handler)),
            logger.propagate,
            logger.disabled,
        )
        for name, logger in loggers.items()
    }


def _current_config() -> Configuration | None:
    try:
        return current_config()
    except NoConfigurationError:
        return None
