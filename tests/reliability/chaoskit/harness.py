"""Run real masters over one var dir, and read what they and their runners leave behind.

The masters run as ``python -m runnerkit.master -C INI --var-dir VAR``, children of the
test, with ``tests/reliability`` on their ``PYTHONPATH`` so that their runner processes
can load :mod:`chaoskit.runners`.  The runners are not the test's children; they are
seen through ``/proc``, the master's status file and the shared log.  :meth:`MasterRun.kill_all`
kills, by pid, every master and runner of the var dir that is still alive.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from chaoskit.runners import records_path
from runnerkit.config import Configuration
from runnerkit.switchboard import Switchboard

#: The directory that holds :mod:`chaoskit`; it goes on the children's ``PYTHONPATH``.
RELIABILITY = Path(__file__).resolve().parent.parent

#: The bound on every ordinary wait: generous, so that a loaded machine never fails a
#: test; a test that passes waits far less.
DEADLINE = 30.0

#: The built-in runners are tested elsewhere; these tests keep them off.
BUILT_INS_OFF = "".join(
    f"[runner.{name}]\nstart: no\n\n"
    for name in ("lmtp", "in", "pipeline", "out", "retry", "rest")
)

#: A log line: time, pid, logger, level, message (runnerkit.logs.LOG_FORMAT).
LOG_LINE = re.compile(r"^(\S+ \S+) (\d+) (\S+) (\w+): (.*)$")


def wait_for(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Poll *condition* until it is true; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.01)


# Processes, seen through /proc.


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def alive(pid: int) -> bool:
    """Whether *pid* runs: a zombie, waiting for its parent to reap it, has exited."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


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
    """The live runner processes over *var_dir*, by their ``--runner`` spec."""
    found: dict[str, list[int]] = {}
    for pid in processes_over(var_dir):
        args = command_line(pid)
        spec = option(args, "--runner")
        if "runnerkit.process" in args and spec is not None:
            found.setdefault(spec, []).append(pid)
    return found


def master_section(**overrides: str) -> str:
    """A ``[master]`` section with short delays, so that the tests stay fast."""
    settings = {
        "backoff_base": "20ms",
        "backoff_max": "100ms",
        "restart_window": "1m",
        "stop_timeout": "10s",
        **overrides,
    }
    return "[master]\n" + "".join(f"{key}: {value}\n" for key, value in settings.items())


class MasterRun:
    """Runs masters over the var dir of *config*, and reads what they leave behind.

    :param config: the test's configuration; :meth:`configure` pushes the masters'
        INI file onto it, so that the test sees the same queues.
    :param work: where the INI file and the masters' output go.
    """

    def __init__(self, config: Configuration, work: Path) -> None:
        self.config = config
        self.work = work
        self.ini = work / "runnerkit.ini"
        python_path = [str(RELIABILITY), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, python_path)))
        for name in ("RUNNERKIT_CONFIG", "RUNNERKIT_VAR_DIR"):
            env.pop(name, None)
        self.env = env
        #: The masters started, as children of the test.
        self.children: list[subprocess.Popen[bytes]] = []
        self._outputs: list[IO[bytes]] = []
        #: Every master and runner pid seen, for :meth:`kill_all`.
        self.seen: set[int] = set()

    @property
    def var_dir(self) -> Path:
        return self.config.paths.var_dir

    def configure(self, runners: str, **master: str) -> None:
        """Write the INI file (short ``[master]`` delays, built-ins off, then *runners*)
        and push it onto the test's configuration."""
        text = master_section(**master) + "\n" + BUILT_INS_OFF + runners
        self.ini.write_text(text, encoding="utf-8")
        self.config.push_file(self.ini)

    def switchboard(self, name: str) -> Switchboard:
        return self.config.switchboards[name]

    def start(self) -> subprocess.Popen[bytes]:
        """Start ``python -m runnerkit.master -C INI --var-dir VAR`` as a child."""
        output = (self.work / f"master-{len(self.children)}.out").open("wb")
        self._outputs.append(output)
        command = [sys.executable, "-m", "runnerkit.master", "-C", str(self.ini)]
        command += ["--var-dir", str(self.var_dir)]
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

    def status(self) -> dict[str, Any]:
        """The master's status file, or an empty status when there is none."""
        try:
            text = (self.var_dir / "master.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"master_pid": None, "runners": []}
        status: dict[str, Any] = json.loads(text)
        self.seen.update(runner["pid"] for runner in status["runners"] if runner["pid"])
        return status

    def slot(self, name: str, slice: int | None = 0) -> dict[str, Any]:
        """The status row of runner *name*'s *slice*."""
        for runner in self.status()["runners"]:
            if (runner["name"], runner["slice"]) == (name, slice):
                return dict(runner)
        pytest.fail(f"no {name} slice {slice} in {self.status()}")

    def running(self, master: int) -> dict[tuple[str, int | None], int]:
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
        self, master: int, slots: set[tuple[str, int | None]], avoid: set[int] = frozenset()
    ) -> dict[tuple[str, int | None], int]:
        """Wait until master *master* runs every slot of *slots*, each in a process that
        is not one of *avoid* and that has started its runner; return the pids."""
        pids: dict[tuple[str, int | None], int] = {}

        def ready() -> bool:
            pids.clear()
            pids.update((key, pid) for key, pid in self.running(master).items() if key in slots)
            return (
                set(pids) == slots
                and not avoid & set(pids.values())
                and all(self.has_started(pid) for pid in pids.values())
            )

        wait_for(ready, f"master {master} to run {sorted(slots, key=str)}")
        return dict(pids)

    # The log and the records.

    def log_records(self) -> list[tuple[int, str, str]]:
        """(pid, level, message) of each line of the shared log."""
        path: Path = self.config.get("logging", "path")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            match = LOG_LINE.match(line)
            if match:
                records.append((int(match[2]), match[4], match[5]))
        self.seen.update(pid for pid, _, _ in records)
        return records

    def messages_of(self, pid: int) -> list[str]:
        """What process *pid* logged."""
        return [message for who, _, message in self.log_records() if who == pid]

    def has_started(self, pid: int) -> bool:
        """Whether runner process *pid* logged that it started its runner."""
        return any(message.endswith(f": started (pid {pid})") for message in self.messages_of(pid))

    def records(self) -> list[tuple[int, int, str]]:
        """(message id, slice, process token) of each message the runners processed, in
        the order they recorded them."""
        try:
            text = records_path(self.var_dir).read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        # A line still being written has no newline yet: leave it for the next read.
        lines = text.split("\n")[:-1]
        return [(int(mid), int(slice), token) for mid, slice, token in map(str.split, lines)]

    # Cleaning up.

    def kill_all(self) -> None:
        """Kill, by pid, every master and runner of this var dir that is still alive."""
        self.status()
        self.log_records()
        candidates = self.seen | set(processes_over(self.var_dir))
        # Masters first, so that none restarts a runner killed after it.
        for pid in sorted(candidates, key=lambda pid: is_runner_of(pid, self.var_dir)):
            if alive(pid) and option(command_line(pid), "--var-dir") == str(self.var_dir):
                os.kill(pid, signal.SIGKILL)
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=DEADLINE)
        for output in self._outputs:
            output.close()
