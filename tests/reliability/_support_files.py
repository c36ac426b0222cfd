"""Helpers of the tests of hostile, corrupt and strange files, a full disk and leftovers.

:class:`RunnerProcesses` starts real runner processes, ``python -m runnerkit.process``,
over a test's var dir, running :class:`hostilekit.runners.TallyRunner`, which records every
message it disposes of.  Every wait is bounded by a deadline, and every process started
is killed by pid when the test ends (``tests/support/child_processes.py`` holds what
this shares with the other tests of processes).  The other helpers craft queue files by hand and
watch a file for opens.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import msgpack
from child_processes import DEADLINE, RunnerGroup, env_with_path, wait_for
from child_processes import ChildProcess as RunnerProcess

import runnerkit
from runnerkit import queuefile
from runnerkit.message import message_from_string
from runnerkit.switchboard import Switchboard
from runnerkit.testing import World

#: The directory that holds ``hostilekit``; the children get it on their PYTHONPATH.
RELIABILITY = Path(__file__).parent

#: The project's root, which holds the ``runnerkit`` package.
PROJECT = Path(runnerkit.__file__).resolve().parents[1]

#: The configuration of the ``tally`` runner.  The short sleep is only a fallback: the
#: runner process watches its queue with inotify and wakes at once.
TALLY = """\
[runner.tally]
class: hostilekit.runners.TallyRunner
sleep_time: 100ms
"""


def child_env(uid: int | None = None) -> dict[str, str]:
    """The environment of a child process: this one's, with ``hostilekit`` and
    ``runnerkit`` importable.

    A child of this user imports them from the source tree.  A child of another user
    (*uid*) may not be able to read the source tree or this interpreter's packages (a
    clone in a mode-0700 directory, a venv under ``/root``), so it imports copies of
    them that anyone can read, made once a session: the capability by construction.
    """
    if uid is None:
        return env_with_path(RELIABILITY, PROJECT, shared_packages())
    return env_with_path(shared_packages(with_sources=True))


@functools.cache
def shared_packages(with_sources: bool = False) -> Path:
    """A directory that any user can read, holding copies of the packages that runnerkit
    needs and a system ``python3`` may not have; *with_sources*, runnerkit and hostilekit
    too, as they are now."""
    directory = Path(tempfile.mkdtemp(prefix="runnerkit-shared-packages-"))
    packages = [Path(msgpack.__file__ or "").parent]
    if with_sources:
        packages += [PROJECT / "runnerkit", RELIABILITY / "hostilekit"]
    for package in packages:
        shutil.copytree(
            package, directory / package.name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for path in (directory, *directory.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return directory


@functools.cache
def python_for(uid: int) -> str:
    """An interpreter that the user *uid* can run, and that imports runnerkit and hostilekit.

    The tests' own interpreter may live where only its owner can reach it (under
    ``/root``, or a venv in a mode-0700 directory); then a system ``python3`` of a
    version runnerkit supports serves, with the copies of :func:`child_env`.

    :raises AssertionError: no interpreter will do.
    """
    probe = "import sys; assert sys.version_info >= (3, 11); import runnerkit.process, hostilekit"
    tried = []
    for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            result = subprocess.run(
                [python, "-c", probe],
                env=child_env(uid),
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
    """Wrap *metadata* and *body*, whatever they hold, in a well-formed queue file of the
    earlier format (``RKQ1``, still read), whose metadata was JSON.

    The header's lengths, its SHA-256 and the end record are all correct, built here
    from the format's description rather than with :func:`runnerkit.queuefile.encode`,
    so only what the payloads hold can make :func:`~runnerkit.queuefile.decode` refuse it.
    """
    fields = b"%d %d %s 0 %d" % (len(metadata), len(body), kind, len(body))
    digest = hashlib.sha256(fields + metadata + body).hexdigest().encode("ascii")
    return b"".join(
        (queuefile.MAGIC_RKQ1, fields, b" ", digest, b"\n", metadata, body, queuefile.END)
    )


def frame_document(document: bytes, recoveries: int = 0) -> bytes:
    """Wrap *document*, whatever it holds, in a well-formed queue file of the current
    format (``RKQ2``): lengths, CRC-32 and end record correct, built from the format's
    description."""
    fields = b"%d %d" % (len(document), recoveries)
    check = zlib.crc32(document, zlib.crc32(fields))
    return b"".join((queuefile.MAGIC, fields, b" %08x\n" % check, document, queuefile.END))


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


class RunnerProcesses(RunnerGroup):
    """Starts tally runner processes over one world's var dir, and reads what they leave.

    :param workdir: where the configuration file and the processes' output go.
    :param user: run the processes as this uid (and gid), with no other groups.
    """

    def __init__(self, world: World, workdir: Path, user: int | None = None) -> None:
        super().__init__(world, workdir, RELIABILITY, PROJECT)
        self.env = child_env(user)
        self.workdir = workdir
        self.user = user

    def configure(self, text: str = TALLY, name: str = "tally") -> Switchboard:
        return super().configure(text, name)

    def start(
        self, runner: str = "tally", python: str = sys.executable, **popen: Any
    ) -> RunnerProcess:
        """Start ``python -m runnerkit.process -r RUNNER`` over the world, as :attr:`user`."""
        if self.user is not None:
            python = python_for(self.user)
            popen.update(user=self.user, group=self.user, extra_groups=[])
        return super().start(runner, python, **popen)

    def start_ready(self, runner: str = "tally") -> RunnerProcess:
        return super().start_ready(runner)

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
