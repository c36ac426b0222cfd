"""Helpers of the tests of hostile, corrupt and strange files, a full disk and leftovers.

:class:`RunnerProcesses` starts real runner processes, ``python -m runnerkit.process``,
over a test's var dir, running :class:`hostilekit.runners.TallyRunner`, which records every
message it disposes of.  Every wait is bounded by a deadline, and every process started
is killed by pid when the test ends.  The other helpers craft queue files by hand and
watch a file for opens.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

import runnerkit
from runnerkit import queuefile
from runnerkit.message import message_from_string
from runnerkit.switchboard import Switchboard
from runnerkit.testing import World

#: The directory that holds ``hostilekit``; the children get it on their PYTHONPATH.
RELIABILITY = Path(__file__).parent

#: The project's root, which holds the ``runnerkit`` package.
PROJECT = Path(runnerkit.__file__).resolve().parents[1]

#: The bound on every wait for a child.  Generous, so that a loaded machine never fails
#: a test; a test that passes waits far less.
DEADLINE = 15.0

#: The configuration of the ``tally`` runner.  The short sleep is only a fallback: the
#: runner process watches its queue with inotify and wakes at once.
TALLY = """\
[runner.tally]
class: hostilekit.runners.TallyRunner
sleep_time: 100ms
"""


def wait_for(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> float:
    """Poll *condition* until it is true and return the seconds it took.

    Fails the test after *timeout* seconds.
    """
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.005)
    return time.monotonic() - start


def child_env() -> dict[str, str]:
    """The environment of a child process: this one's, with ``hostilekit`` and
    ``runnerkit`` importable (from the source tree, for an interpreter other than this)."""
    python_path = [str(RELIABILITY), str(PROJECT), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, python_path)))


@functools.cache
def python_for(uid: int) -> str:
    """An interpreter that the user *uid* can run, and that imports runnerkit and hostilekit.

    The tests' own interpreter may live where only its owner can reach it (under
    ``/root``, say); then a system ``python3`` of a version runnerkit supports serves,
    with runnerkit imported from the project's source tree.

    :raises AssertionError: no interpreter will do.
    """
    probe = "import sys; assert sys.version_info >= (3, 11); import runnerkit.process, hostilekit"
    tried = []
    for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            result = subprocess.run(
                [python, "-c", probe],
                env=child_env(),
                cwd="/",
                user=uid,
                group=uid,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=DEADLINE,
                check=False,
            )
        except OSError as error:
            tried.append(f"{python}: {error}")
            continue
        if result.returncode == 0:
            return python
        tried.append(f"{python}: {result.stderr.strip()}")
    raise AssertionError(f"no Python that uid {uid} can run imports runnerkit: {tried}")


def queue_name(seconds: int, index: int, digest: int) -> str:
    """A queue file base name with the given time and digest."""
    return f"{seconds}.{index:09d}+{digest:040x}"


def message_text(tag: str) -> str:
    return f"From: anne@example.com\nSubject: {tag}\n\nMessage {tag}.\n"


def enqueue(switchboard: Switchboard, tag: str) -> str:
    """Queue a small message tagged *tag*."""
    return switchboard.enqueue(message_from_string(message_text(tag)), tag=tag)


def frame(metadata: bytes, body: bytes, kind: bytes = b"b") -> bytes:
    """Wrap *metadata* and *body*, whatever they hold, in a well-formed queue file.

    The header's lengths, its SHA-256 and the end record are all correct, built here
    from the format's description rather than with :func:`runnerkit.queuefile.encode`,
    so only what the payloads hold can make :func:`~runnerkit.queuefile.decode` refuse it.
    """
    fields = b"%d %d %s 0 %d" % (len(metadata), len(body), kind, len(body))
    digest = hashlib.sha256(fields + metadata + body).hexdigest().encode("ascii")
    return b"".join((queuefile.MAGIC, fields, b" ", digest, b"\n", metadata, body, queuefile.END))


def drop(directory: Path, name: str, data: bytes) -> Path:
    """Put a file named *name* holding *data* into *directory* in one rename, as a
    writer would; return its path."""
    staging = directory / f".{name}.staging"
    staging.write_bytes(data)
    path = directory / name
    os.rename(staging, path)
    return path


class OpenWatch:
    """Counts the opens and reads of one file, by any process, with inotify."""

    IN_ACCESS = 0x00000001
    IN_OPEN = 0x00000020
    #: The size of ``struct inotify_event`` without its name.
    EVENT_SIZE = 16

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        mask = self.IN_OPEN | self.IN_ACCESS
        if libc.inotify_add_watch(self._fd, os.fsencode(path), mask) < 0:
            error = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(error, os.strerror(error), str(path))
        self._count = 0

    def events(self) -> int:
        """How many opens and reads were seen since the watch began."""
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return self._count
            offset = 0
            while offset < len(data):
                name_length = int.from_bytes(data[offset + 12 : offset + 16], sys.byteorder)
                self._count += 1
                offset += self.EVENT_SIZE + name_length

    def close(self) -> None:
        os.close(self._fd)


class RunnerProcess:
    """One runner process, with its output in files (a pipe could fill up and block it)."""

    def __init__(self, args: list[str], directory: Path, **popen: Any) -> None:
        directory.mkdir(parents=True)
        self.stdout_path = directory / "stdout"
        self.stderr_path = directory / "stderr"
        self._files: list[IO[bytes]] = [
            self.stdout_path.open("wb"),
            self.stderr_path.open("wb"),
        ]
        self.process = subprocess.Popen(
            args, env=child_env(), stdout=self._files[0], stderr=self._files[1], **popen
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """Stop the runner with SIGTERM and return its exit status."""
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"runner process {self.pid} still running {DEADLINE} s after SIGTERM")

    def kill(self) -> None:
        """Kill the process, by pid, if it still runs; reap it and close its files."""
        try:
            if self.process.poll() is None:
                os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=DEADLINE)
        finally:
            for file in self._files:
                file.close()


class RunnerProcesses:
    """Starts tally runner processes over one world's var dir, and reads what they leave.

    :param workdir: where the configuration file and the processes' output go.
    :param user: run the processes as this uid (and gid), with no other groups.
    """

    def __init__(self, world: World, workdir: Path, user: int | None = None) -> None:
        self.world = world
        self.workdir = workdir
        self.user = user
        self.ini = workdir / "runnerkit.ini"
        self.started: list[RunnerProcess] = []

    @property
    def var_dir(self) -> Path:
        return self.world.var_dir

    def configure(self, text: str = TALLY, name: str = "tally") -> Switchboard:
        """Write *text* as the processes' configuration, push it in the test's own
        configuration too, and return the switchboard of runner *name*."""
        self.ini.write_text(text, encoding="utf-8")
        self.world.config.push_file(self.ini)
        return self.world.config.switchboards[name]

    def start(self, runner: str = "tally") -> RunnerProcess:
        """Start ``python -m runnerkit.process -r RUNNER`` over the world."""
        python = sys.executable if self.user is None else python_for(self.user)
        args = [python, "-m", "runnerkit.process", "-r", runner]
        args += ["-C", str(self.ini), "--var-dir", str(self.var_dir)]
        directory = self.workdir / f"process-{len(self.started)}"
        popen: dict[str, Any] = {"cwd": self.workdir}
        if self.user is not None:
            popen.update(user=self.user, group=self.user, extra_groups=[])
        process = RunnerProcess(args, directory, **popen)
        self.started.append(process)
        return process

    def start_ready(self, runner: str = "tally") -> RunnerProcess:
        """Start a runner process and wait until it has set itself up and runs."""
        process = self.start(runner)
        wait_for(
            lambda: self.has_started(process) or not process.running(),
            f"runner process {process.pid} to start",
        )
        assert process.running(), process.stderr
        return process

    def has_started(self, process: RunnerProcess) -> bool:
        marker = f" {process.pid} runnerkit.process INFO: "
        return any(marker in line and ": started" in line for line in self.log_lines())

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()

    @property
    def log_path(self) -> Path:
        path: Path = self.world.config.get("logging", "path")
        return path

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def disposed(self) -> list[tuple[int, str]]:
        """``(pid, tag)`` for every message a runner process disposed of, in order."""
        try:
            text = (self.var_dir / "records" / "disposed").read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        pairs = (line.split(" ", 1) for line in text.splitlines())
        return [(int(pid), tag) for pid, tag in pairs]

    def disposed_tags(self) -> list[str]:
        return [tag for _, tag in self.disposed()]

    def wait_disposed(self, tag: str) -> int:
        """Wait until the message *tag* has been disposed of; return the pid that did it."""
        wait_for(lambda: tag in self.disposed_tags(), f"the runner to process {tag!r}")
        return next(pid for pid, seen in self.disposed() if seen == tag)
