"""Real runnerkit processes for the tests: started, watched, and killed by pid.

The tests of ``python -m runnerkit.process`` and of the master run real child processes
over a test's var dir and read what they leave behind: their output files, the shared
log, the master's status file.  This module holds what those tests share:

- :func:`wait_for`, the one bounded wait;
- :class:`ChildProcess`, one child with its output in files, killed by pid;
- :class:`RunnerGroup`, runner processes over one world's var dir;
- :class:`MasterGroup`, masters over one var dir, and the runners they start;
- :class:`Recordings` and :func:`enqueue`, for the recording runner of ``tests/processes/``;
- :func:`kill_at_end`, the body of a fixture that kills, by pid, what a group started;
- the ``/proc`` helpers that find processes which are not the test's children, and the
  reader of the shared log.

``tests/conftest.py`` puts this directory on ``sys.path``; ``tests/`` is no package.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from subprocess import CompletedProcess
from typing import IO, Any, NamedTuple, Protocol, TypeVar

import pytest

from runnerkit.config import Configuration
from runnerkit.message import message_from_string
from runnerkit.switchboard import Switchboard
from runnerkit.testing import World

#: The bound on every wait for a child.  Generous, so that a loaded machine never fails
#: a test; a test that passes waits far less.
DEADLINE = 15.0

#: A log line: time, pid, logger, level, message (runnerkit.logs.LOG_FORMAT).
LOG_LINE = re.compile(r"^(\S+ \S+) (\d+) (\S+) (\w+): (.*)$")

#: A runner slot of the master's status file: the runner's name and its slice.
Slot = tuple[str, int | None]


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


def env_with_path(*directories: Path | str) -> dict[str, str]:
    """This process's environment with *directories* in front of its ``PYTHONPATH``."""
    python_path = [*map(str, directories), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, python_path)))


class ChildProcess:
    """One child process, with its output in files (a pipe could fill up and block it)."""

    def __init__(self, args: list[str], directory: Path, **popen: Any) -> None:
        directory.mkdir(parents=True)
        self.stdout_path = directory / "stdout"
        self.stderr_path = directory / "stderr"
        self._files: list[IO[bytes]] = [
            self.stdout_path.open("wb"),
            self.stderr_path.open("wb"),
        ]
        self.process = subprocess.Popen(
            args, stdout=self._files[0], stderr=self._files[1], **popen
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        """Wait for the child to exit and return its status; fail if it does not."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"runner process {self.pid} still running after {timeout} s")

    def stop(self) -> int:
        """Stop the child with SIGTERM and return its exit status."""
        self.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def kill(self) -> None:
        """Kill the child, by pid, if it still runs; reap it and close its output files."""
        try:
            if self.process.poll() is None:
                os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=DEADLINE)
        finally:
            for file in self._files:
                file.close()


# The shared log and the records.


class LogRecord(NamedTuple):
    """One line of the shared log."""

    when: datetime
    pid: int
    logger: str
    level: str
    message: str


def log_path(config: Configuration) -> Path:
    path: Path = config.get("logging", "path")
    return path


def read_log(config: Configuration) -> str:
    """The text of the shared log, or nothing while there is none."""
    try:
        return log_path(config).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def parse_log(text: str) -> list[LogRecord]:
    """The records of the log lines in *text*; other lines are left out."""
    records = []
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match:
            when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
            records.append(LogRecord(when, int(match[2]), match[3], match[4], match[5]))
    return records


class Recordings:
    """What a ``process_runners.RecordingRunner`` (``tests/processes/``) leaves under
    ``<var dir>/records/``, for a class that has a ``var_dir``."""

    var_dir: Path

    def records(self, name: str) -> list[str]:
        """The lines of record *name*: one per attempt, naming the process and slice."""
        try:
            return (self.var_dir / "records" / name).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def release(self, tag: str) -> None:
        """Let the runner finish the gated message *tag*."""
        (self.var_dir / "records" / f"release-{tag}").touch()


def enqueue(switchboard: Switchboard, tag: str, **metadata: Any) -> str:
    """Queue a small message with *tag*, and *metadata*, in its metadata."""
    msg = message_from_string(f"From: a@example.com\nSubject: {tag}\n\nMessage {tag}.\n")
    return switchboard.enqueue(msg, tag=tag, **metadata)


def run_to_end(command: list[str], env: dict[str, str], cwd: Path) -> CompletedProcess[str]:
    """Run *command* to its end, within :data:`DEADLINE`, capturing its output."""
    return subprocess.run(
        command,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


class Group(Protocol):
    """What :func:`kill_at_end` needs: a way to kill all that was started."""

    def kill_all(self) -> None: ...


G = TypeVar("G", bound=Group)


def kill_at_end(group: G) -> Iterator[G]:
    """Yield *group*, for a fixture; kill, by pid, what it started when the test ends."""
    try:
        yield group
    finally:
        group.kill_all()


# Runner processes.


class RunnerGroup:
    """Starts ``python -m runnerkit.process`` over one world's var dir.

    :param world: the test's world; :meth:`configure` pushes the processes'
        configuration file onto its configuration too.
    :param work: where the configuration file and the processes' output go.
    :param runners: directories the processes need on their ``PYTHONPATH``.
    """

    def __init__(self, world: World, work: Path, *runners: Path) -> None:
        self.world = world
        self.work = work
        self.ini = work / "runnerkit.ini"
        self.env = env_with_path(*runners)
        self.started: list[ChildProcess] = []

    @property
    def var_dir(self) -> Path:
        return self.world.var_dir

    def configure(self, text: str, name: str) -> Switchboard:
        """Write *text* as the processes' configuration file, push it in the test's own
        configuration too, and return the switchboard of runner *name*."""
        self.ini.write_text(text, encoding="utf-8")
        self.world.config.push_file(self.ini)
        return self.world.config.switchboards[name]

    def start(self, runner: str, python: str = sys.executable, **popen: Any) -> ChildProcess:
        """Start ``python -m runnerkit.process -r RUNNER`` over the world."""
        args = [python, "-m", "runnerkit.process", "-r", runner]
        args += ["-C", str(self.ini), "--var-dir", str(self.var_dir)]
        directory = self.work / f"process-{len(self.started)}"
        popen.setdefault("cwd", self.work)
        child = ChildProcess(args, directory, env=self.env, **popen)
        self.started.append(child)
        return child

    def start_ready(self, runner: str) -> ChildProcess:
        """Start a runner process and wait until its signal handling is in place."""
        child = self.start(runner)
        wait_for(
            lambda: self.has_started(child) or not child.running(),
            f"runner process {child.pid} to start",
        )
        assert child.running(), child.stderr
        return child

    def has_started(self, child: ChildProcess) -> bool:
        """Whether *child* has logged that it started, inside its signal handling."""
        marker = f" {child.pid} runnerkit.process INFO: "
        return any(marker in line and ": started" in line for line in self.log_lines())

    def kill_all(self) -> None:
        for child in self.started:
            child.kill()

    @property
    def log_path(self) -> Path:
        return log_path(self.world.config)

    def log_text(self) -> str:
        return read_log(self.world.config)

    def log_lines(self) -> list[str]:
        return self.log_text().splitlines()


# Processes, seen through /proc: a master's runners are not the test's children.


#: The states of a thread that has exited: a zombie, and one being reaped.
EXITED = ("Z", "X")


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None.

    *pid* may also be ``PID/task/TID``, for one thread of process PID.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def alive(pid: int) -> bool:
    """Whether *pid* runs: some thread of it has not exited yet.

    A zombie, waiting for a parent to reap it, has exited.  But ``/proc/PID/stat``
    shows the main thread only, and it is a zombie as soon as it has exited itself: the
    other threads of a process killed by SIGKILL (a runner has three) may still be on
    their way out, and the process holds its files, and its locks, until the last
    thread is gone.
    """
    fields = proc_stat(pid)
    if fields is None:
        return False
    if fields[0] not in EXITED:
        return True
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(
        (thread := proc_stat(f"{pid}/task/{tid}")) is not None and thread[0] not in EXITED
        for tid in threads
    )


#: ``PF_EXITING``, in the flags of ``/proc/PID/stat``: the process has begun to exit.
PF_EXITING = 0x4


def exiting(pid: int) -> bool:
    """Whether *pid* is on its way out: it has begun to exit, and some thread still runs.

    Its command line went with its memory, so it no longer shows the var dir it worked
    over; but it holds its files and locks until its last thread is gone.
    """
    fields = proc_stat(pid)
    return fields is not None and int(fields[6]) & PF_EXITING != 0 and alive(pid)


def parent_of(pid: int) -> int | None:
    fields = proc_stat(pid)
    return None if fields is None else int(fields[1])


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def option(args: list[str], name: str) -> str | None:
    """The value after *name* in *args*, or None."""
    return next((value for key, value in itertools.pairwise(args) if key == name), None)


def processes_over(var_dir: Path) -> list[int]:
    """The live processes, other than this one, whose command line names *var_dir*."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            if option(command_line(pid), "--var-dir") == str(var_dir) and alive(pid):
                pids.append(pid)
    return pids


def is_runner_of(pid: int, var_dir: Path) -> bool:
    """Whether *pid* is a live runner process working over *var_dir*."""
    args = command_line(pid)
    return "runnerkit.process" in args and option(args, "--var-dir") == str(var_dir)


def runner_processes(var_dir: Path) -> dict[str, list[int]]:
    """The live runner processes over *var_dir*, by their ``--runner`` (name and slice).

    A process forked by a runner (to run a helper program) wears the runner's command
    line until it executes the program; it is not a runner.
    """
    specs: dict[int, str] = {}
    for pid in processes_over(var_dir):
        args = command_line(pid)
        spec = option(args, "--runner")
        if "runnerkit.process" in args and spec is not None:
            specs[pid] = spec
    found: dict[str, list[int]] = {}
    for pid, spec in specs.items():
        if parent_of(pid) not in specs:
            found.setdefault(spec, []).append(pid)
    return found


# Masters.

#: The built-in runners are tested elsewhere; the tests of the master keep them off.
BUILT_INS_OFF = "".join(
    f"[runner.{name}]\nstart: no\n\n"
    for name in ("lmtp", "in", "pipeline", "out", "retry", "bounces", "command", "rest")
)


def master_section(defaults: dict[str, str], **overrides: str) -> str:
    """A ``[master]`` section of *defaults* with *overrides*."""
    settings = {**defaults, **overrides}
    return "[master]\n" + "".join(f"{key}: {value}\n" for key, value in settings.items())


class MasterGroup:
    """Runs masters over the var dir of *config*, and reads what they leave behind.

    :param config: the test's configuration; :meth:`configure` pushes the masters'
        configuration file onto it, so that the test sees the same queues.
    :param work: where the configuration file and the masters' output go.
    :param runners: the directory of the runner classes; it goes on the masters'
        ``PYTHONPATH``, which they pass on to their runners.
    """

    #: The ``[master]`` settings of :meth:`configure`: short delays, for fast tests.
    master_defaults: dict[str, str] = {
        "backoff_base": "50ms",
        "backoff_max": "200ms",
        "restart_window": "1m",
        "stop_timeout": "10s",
    }
    #: The bound on the waits of :meth:`wait_running` and :meth:`kill_all`.
    deadline = DEADLINE

    def __init__(self, config: Configuration, work: Path, runners: Path) -> None:
        self.config = config
        self.work = work
        self.ini = work / "runnerkit.ini"
        env = env_with_path(runners)
        for name in ("RUNNERKIT_CONFIG", "RUNNERKIT_VAR_DIR"):
            env.pop(name, None)
        self.env = env
        #: The masters started as children of the test.
        self.children: list[subprocess.Popen[bytes]] = []
        self._outputs: list[IO[bytes]] = []
        #: Every master and runner pid seen, for :meth:`kill_all`.
        self.seen: set[int] = set()

    @property
    def var_dir(self) -> Path:
        return self.config.paths.var_dir

    def configure(self, runners: str, **master: str) -> None:
        """Write the configuration file (short ``[master]`` delays, the built-ins off,
        then *runners*) and push it onto the test's configuration."""
        text = master_section(self.master_defaults, **master) + "\n" + BUILT_INS_OFF + runners
        self.ini.write_text(text, encoding="utf-8")
        self.config.push_file(self.ini)

    def switchboard(self, name: str) -> Switchboard:
        return self.config.switchboards[name]

    def options(self) -> list[str]:
        """``-C INI --var-dir VAR``: the options every command of the test takes."""
        return ["-C", str(self.ini), "--var-dir", str(self.var_dir)]

    def spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        """Start a master with *command* as a child of the test, its output in a file."""
        output = (self.work / f"master-{len(self.children)}.out").open("wb")
        self._outputs.append(output)
        child = subprocess.Popen(
            command, env=self.env, cwd=self.work, stdout=output, stderr=subprocess.STDOUT
        )
        self.children.append(child)
        self.seen.add(child.pid)
        return child

    def output(self, child: subprocess.Popen[bytes]) -> str:
        """What master *child* wrote to its standard output and error."""
        path = self.work / f"master-{self.children.index(child)}.out"
        return path.read_text(encoding="utf-8", errors="replace")

    # The status file.

    @property
    def status_path(self) -> Path:
        return self.var_dir / "master.json"

    def status(self) -> dict[str, Any]:
        """The master's status file, or an empty status when there is none."""
        try:
            status: dict[str, Any] = json.loads(self.status_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"master_pid": None, "runners": []}
        self.seen.update(runner["pid"] for runner in status["runners"] if runner["pid"])
        return status

    def slot(self, name: str, slice: int | None = 0) -> dict[str, Any]:
        """The status row of runner *name*'s *slice*; a master that has just started
        (``start --wait 0``) is given until :data:`DEADLINE` to write its first status."""
        deadline = time.monotonic() + DEADLINE
        while True:
            status = self.status()
            for runner in status["runners"]:
                if (runner["name"], runner["slice"]) == (name, slice):
                    return dict(runner)
            if status["runners"] or time.monotonic() > deadline:
                pytest.fail(f"no {name} slice {slice} in {status}")
            time.sleep(0.05)

    def running(self, master: int) -> dict[Slot, int]:
        """The runner processes that master *master* reports running, by (name, slice)."""
        status = self.status()
        if status["master_pid"] != master:
            return {}
        return {
            (runner["name"], runner["slice"]): runner["pid"]
            for runner in status["runners"]
            if runner["state"] == "running"
        }

    def wait_running(
        self, master: int, slots: set[Slot], avoid: set[int] = frozenset()
    ) -> dict[Slot, int]:
        """Wait until master *master* runs every slot of *slots*, each in a process that
        is not one of *avoid* and that has set up its signal handling; return the pids."""
        pids: dict[Slot, int] = {}

        def ready() -> bool:
            pids.clear()
            pids.update((key, pid) for key, pid in self.running(master).items() if key in slots)
            return (
                set(pids) == slots
                and not avoid & set(pids.values())
                and all(self.has_started(pid) for pid in pids.values())
            )

        wait_for(ready, f"master {master} to run {sorted(slots, key=str)}", self.deadline)
        return dict(pids)

    # The shared log.

    @property
    def log_path(self) -> Path:
        return log_path(self.config)

    def log_text(self) -> str:
        return read_log(self.config)

    def log_entries(self) -> list[LogRecord]:
        """The records of the shared log; their pids count as seen."""
        records = parse_log(self.log_text())
        self.seen.update(record.pid for record in records)
        return records

    def messages_of(self, pid: int) -> list[str]:
        """What process *pid* logged."""
        return [record.message for record in self.log_entries() if record.pid == pid]

    def has_started(self, pid: int) -> bool:
        """Whether runner process *pid* logged that it started, inside its signal handling."""
        return any(message.endswith(f": started (pid {pid})") for message in self.messages_of(pid))

    # Cleaning up.

    def kill_all(self) -> None:
        """Kill, by pid, every master and runner of this var dir, and wait until all are gone.

        Masters first, so that none starts a runner after the runners are listed; then
        everything left (a runner a master forked just before it died may still show the
        master's command line).  Each round lists again, until one finds nothing left.
        A killed process is gone only when its last thread is (:func:`alive`): the kernel
        drops its locks then, and the test's isolation checks them when the test ends.
        Last come the processes seen that were on their way out already, having died by
        themselves or by the test's hand a moment before.
        """
        deadline = time.monotonic() + self.deadline
        for masters_only in (True, False):
            while killed := self._kill_left(masters_only):
                if time.monotonic() > deadline:
                    pytest.fail(f"processes keep appearing on {self.var_dir}: {sorted(killed)}")
                self._wait_gone(killed, deadline)
        self._wait_gone(self.seen, deadline)
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=self.deadline)
        for output in self._outputs:
            output.close()

    def _works_here(self, pid: int) -> bool:
        """Whether *pid* runs, with this var dir on its command line."""
        return alive(pid) and option(command_line(pid), "--var-dir") == str(self.var_dir)

    def _kill_left(self, masters_only: bool) -> set[int]:
        """Kill the processes of this var dir, or only those that are no runner; return them."""
        self.status()
        self.log_entries()
        killed = set()
        for pid in self.seen | set(processes_over(self.var_dir)):
            if self._works_here(pid) and not (masters_only and is_runner_of(pid, self.var_dir)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        self.seen |= killed
        return killed

    def _wait_gone(self, pids: set[int], deadline: float) -> None:
        """Wait, until *deadline*, for *pids* to be gone from this var dir: dead, not dying."""
        pids = set(pids)
        wait_for(
            lambda: not any(self._works_here(pid) or exiting(pid) for pid in pids),
            f"processes {sorted(pids)} of {self.var_dir} to be gone",
            max(0.0, deadline - time.monotonic()),
        )
