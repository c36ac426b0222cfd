"""Run one command of a console session: a shell, its output, its exit status, a time limit.

A command runs as ``/bin/sh -c COMMAND`` in a session of its own (so in a process
group of its own), with standard input from ``/dev/null`` and standard output and
standard error on one pipe, so that its output and its errors arrive in the order a
terminal would show them.  When it runs out of time (on the real clock, whatever a
spec freezes), its whole process group is
stopped: ``SIGTERM``, a short grace, then ``SIGKILL``.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runnerkit.testing.timecontrol import real_monotonic
from runnerkit.testing.world import World

#: The shell every command runs in.
SHELL = "/bin/sh"

#: Seconds a process group gets to end after ``SIGTERM``, before ``SIGKILL``.
KILL_GRACE = 1.0

#: How many bytes of a command's output are kept; the rest is counted and dropped, and
#: the output ends with a line that says so: a runaway command must not take the test
#: process's memory with it.
MAX_OUTPUT = 4 * 1024 * 1024

#: Seconds the output that processes left in the background keep writing is read
#: after the shell exits, at most.
_AFTER_EXIT = 1.0

#: Seconds between looks at the shell where the system cannot say when it exits.
_POLL = 0.05


@dataclass(frozen=True)
class Completed:
    """How a command ended."""

    #: What it wrote, standard output and standard error as they came, decoded as
    #: UTF-8 (other bytes as ``\\xNN``), with ``\\r\\n`` read as ``\\n`` and other
    #: control characters escaped (:func:`escape_controls`).
    output: str
    #: Its exit status as the shell's ``$?`` gives it (128 + N for signal N), or None
    #: when it ran out of time.
    status: int | None

    @property
    def timed_out(self) -> bool:
        """Whether the command ran out of time and its process group was killed."""
        return self.status is None


def run_shell(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    started: Callable[[int], object] | None = None,
) -> Completed:
    """Run *command* with ``/bin/sh -c`` and wait for it, *timeout* seconds at most.

    Output written after the shell exits, by processes it left in the background, is
    not the command's: it is read as long as it is already there, then the pipe is
    closed.  A command that runs out of time has its process group killed, and what it
    wrote until then is returned, with no status; so has one whose wait is interrupted
    by an exception (``KeyboardInterrupt``, a time limit's), which is raised again.

    :param started: called with the shell's pid, the id of the command's session
        (where what it leaves in the background stays; see
        :meth:`runnerkit.testing.isolation.Isolation.watch_session`), as soon as it runs.
    :raises OSError: the shell cannot be started.
    """
    process = subprocess.Popen(
        [SHELL, "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
    assert process.stdout is not None  # for mypy: stdout=PIPE
    if started is not None:
        started(process.pid)
    deadline = real_monotonic() + timeout
    chunks = _Output()
    with process.stdout, selectors.DefaultSelector() as selector:
        fd = process.stdout.fileno()
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
        exited = _exit_notifier(process.pid, selector)
        try:
            open_ = _read_until_exit(process, selector, fd, chunks, deadline)
            if process.poll() is None:
                kill_process_group(process)
                return Completed(chunks.text(), None)
            if open_:
                _read_ready(selector, fd, chunks)
        except BaseException:
            # Interrupted (Ctrl-C, pytest-timeout's signal): the command is stopped as a
            # timed-out one is, not left running after the test.
            kill_process_group(process)
            raise
        finally:
            if exited is not None:
                os.close(exited)
    return Completed(chunks.text(), _shell_status(process.wait()))


def _read_until_exit(
    process: subprocess.Popen[bytes],
    selector: selectors.BaseSelector,
    fd: int,
    chunks: _Output,
    deadline: float,
) -> bool:
    """Read the command's output until the shell exits or *deadline* passes.

    :returns: whether the pipe is still open.
    """
    while process.poll() is None:
        remaining = deadline - real_monotonic()
        if remaining <= 0:
            return True
        if len(selector.get_map()) < 2:
            # No pidfd tells of the exit: wake up now and then to see whether the
            # shell exited while something it left in the background holds the pipe.
            remaining = min(remaining, _POLL)
        for key, _ in selector.select(remaining):
            if key.fd != fd:
                continue
            if not _read_chunk(fd, chunks):
                selector.unregister(fd)
                _wait_until(lambda: process.poll() is not None, deadline)
                return False
    return True


def _read_ready(selector: selectors.BaseSelector, fd: int, chunks: _Output) -> None:
    """Read what is in the pipe now, without waiting for more, and for
    :data:`_AFTER_EXIT` seconds at most: a process left in the background may keep it
    full."""
    deadline = real_monotonic() + _AFTER_EXIT
    while real_monotonic() < deadline and any(key.fd == fd for key, _ in selector.select(0)):
        if not _read_chunk(fd, chunks):
            return


class _Output:
    """What a command wrote: its first :data:`MAX_OUTPUT` bytes, and how many more."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = MAX_OUTPUT - self.kept
        if room > 0:
            self.chunks.append(data[:room])
            self.kept += min(room, len(data))
        self.dropped += max(len(data) - max(room, 0), 0)

    def text(self) -> str:
        """The output decoded as UTF-8 (other bytes as ``\\xNN``), ``\\r\\n`` read as
        ``\\n``, other control characters escaped (:func:`escape_controls`), and a last
        line saying how much was dropped, if anything was."""
        text = escape_controls(
            b"".join(self.chunks).decode("utf-8", "backslashreplace").replace("\r\n", "\n")
        )
        if self.dropped:
            if not text.endswith("\n"):
                text += "\n"
            text += (
                f"[runnerkit: output cut after {MAX_OUTPUT} bytes;"
                f" {self.dropped} more bytes dropped]\n"
            )
        return text


#: Control characters but tab and newline, and the characters that Python reads as
#: line breaks (:meth:`str.splitlines`) besides newline.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """*text* with its control characters but tab and newline written as Python writes
    them in a string: ``\\r``, ``\\x1b``, ``\\u2028``.

    So a command's output is plain text: a progress line's carriage returns, a colour's
    escape sequences or a NUL byte can be expected, and accept mode writes them into
    the document as text that reads back the same, never as bytes an editor or
    ``diff`` takes for binary.  A line break other than a newline (a form feed,
    ``\\x85``) no longer splits a line.
    """
    return _CONTROLS.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r":
        return "\\r"
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _read_chunk(fd: int, chunks: _Output) -> bool:
    """Read once from *fd* into *chunks*; False at end of file."""
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return True
    if not data:
        return False
    chunks.add(data)
    return True


def _exit_notifier(pid: int, selector: selectors.BaseSelector) -> int | None:
    """A pidfd for *pid*, registered with *selector*, that becomes readable when the
    process exits; None where the system has none."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        pidfd: int = pidfd_open(pid)
    except OSError:
        return None
    selector.register(pidfd, selectors.EVENT_READ)
    return pidfd


def kill_process_group(process: subprocess.Popen[bytes], grace: float = KILL_GRACE) -> None:
    """Stop the process group *process* leads: ``SIGTERM``, *grace* seconds, ``SIGKILL``.

    Processes of the group that made a session of their own meanwhile are not in it
    any more, and are left alone.
    """
    pgid = process.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = real_monotonic() + grace
    _wait_until(lambda: process.poll() is not None, deadline)
    _wait_until(lambda: not _group_has_members(pgid), deadline)
    _signal_group(pgid, signal.SIGKILL)
    process.wait()


def _wait_until(done: Callable[[], bool], deadline: float) -> None:
    """Wait until *done* says so, or the real clock reaches *deadline*.

    Not ``Popen.wait(timeout)``: :mod:`subprocess` keeps its own reference to the
    clock, which a spec's freeze would stop, and the wait would never time out.
    """
    delay = 0.0005
    while not done() and real_monotonic() < deadline:
        # As Popen.wait does: at once first, then less and less often.
        time.sleep(delay)
        delay = min(delay * 2, _POLL)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_has_members(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _shell_status(returncode: int) -> int:
    """*returncode* as the shell's ``$?`` says it: 128 + N for a process killed by N."""
    return 128 - returncode if returncode < 0 else returncode


def session_environment(world: World, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a console command of *world* runs with.

    It is *base* (by default this process's environment) with ``RUNNERKIT_VAR_DIR``
    naming the world's var dir and ``RUNNERKIT_CONFIG`` naming the files of the layers
    pushed on the world's configuration (:meth:`World.config_files`), or unset when
    there are none; ``PATH`` starting with the directory of the running Python, so
    that ``runnerkit`` and ``python`` are this environment's; and ``PYTHONUNBUFFERED``
    set, so that a Python program's output and errors interleave as on a terminal.
    """
    env = dict(os.environ if base is None else base)
    env.pop("RUNNERKIT_CONFIG", None)
    env["RUNNERKIT_VAR_DIR"] = str(world.var_dir)
    files = world.config_files()
    if files:
        env["RUNNERKIT_CONFIG"] = os.pathsep.join(str(path) for path in files)
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
    env["PYTHONUNBUFFERED"] = "1"
    return env
