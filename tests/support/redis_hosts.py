"""Hosts that share one Valkey server, simulated on one machine, for the Redis tests.

A :class:`Host` is a var dir and a configuration file of its own, and the masters
(``python -m runnerkit.master``) the test starts over them, children of the test; their
runner processes are seen through ``/proc``.  Every host's configuration puts its queues
on the same server under the same key prefix, so the hosts share the queues and split
their slices (``[runner.NAME] slices``).  The runners are
:class:`host_runners.HostRecordingRunner`; :func:`read_records` reads what they leave.
Everything a host started is killed, by pid, at the end (:meth:`Host.kill_all`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from child_processes import (
    BUILT_INS_OFF,
    alive,
    env_with_path,
    master_section,
    processes_over,
    runner_processes,
    wait_for,
)
from host_runners import records_file

from runnerkit.message import message_from_string
from runnerkit.site import Site

#: The directory of :mod:`host_runners`: on the children's ``PYTHONPATH``.
SUPPORT = Path(__file__).resolve().parent

#: The ``[master]`` settings of these tests: short delays, so that they stay fast.
MASTER = {
    "backoff_base": "20ms",
    "backoff_max": "100ms",
    "restart_window": "1m",
    "stop_timeout": "10s",
}

MESSAGE = """\
From: hosts@example.com
To: list@example.com
Subject: hosts

A message among many.
"""


def queues_section(url: str, prefix: str, lease: str) -> str:
    return f"[queues]\nbackend: redis\nurl: {url}\nkey_prefix: {prefix}\nlease: {lease}\n\n"


def runner_section(
    name: str, instances: int, slices: str, sleep_time: str = "100ms", **extra: str
) -> str:
    text = (
        f"[runner.{name}]\nclass: host_runners.HostRecordingRunner\ninstances: {instances}\n"
        f"slices: {slices}\nsleep_time: {sleep_time}\nmax_restarts: 1000000\n"
    )
    return text + "".join(f"{key}: {value}\n" for key, value in extra.items()) + "\n"


class Host:
    """One simulated host: a var dir, its configuration, the masters started over it.

    :param root: where the host's var dir (``root/name``), configuration file and the
        masters' output go.
    :param runners: the ``[runner.NAME]`` sections of this host.
    """

    def __init__(
        self, name: str, root: Path, url: str, prefix: str, runners: str, lease: str = "3s"
    ) -> None:
        self.name = name
        self.var_dir = root / name
        self.var_dir.mkdir(parents=True)
        self.work = root / f"{name}-work"
        self.work.mkdir()
        self.ini = self.work / "runnerkit.ini"
        text = master_section(MASTER) + "\n" + BUILT_INS_OFF + queues_section(url, prefix, lease)
        self.ini.write_text(text + runners, encoding="utf-8")
        env = env_with_path(SUPPORT)
        for variable in ("RUNNERKIT_CONFIG", "RUNNERKIT_VAR_DIR"):
            env.pop(variable, None)
        self.env = env
        self.masters: list[subprocess.Popen[bytes]] = []
        self._outputs: list[IO[bytes]] = []
        self._site: Site | None = None
        self.kills = 0

    @property
    def site(self) -> Site:
        """The host's site, as the test sees it (to queue messages and look)."""
        if self._site is None:
            site = Site(self.var_dir)
            site.push_file(self.ini)
            self._site = site
        return self._site

    # Masters.

    def start(self) -> subprocess.Popen[bytes]:
        """Start a master over the host."""
        output = (self.work / f"master-{len(self.masters)}.out").open("wb")
        self._outputs.append(output)
        command = [sys.executable, "-m", "runnerkit.master", "-C", str(self.ini)]
        command += ["--var-dir", str(self.var_dir)]
        master = subprocess.Popen(
            command, env=self.env, cwd=self.work, stdout=output, stderr=subprocess.STDOUT
        )
        self.masters.append(master)
        return master

    @property
    def master(self) -> subprocess.Popen[bytes]:
        return self.masters[-1]

    def output(self) -> str:
        return "".join(
            (self.work / f"master-{index}.out").read_text(errors="replace")
            for index in range(len(self.masters))
        )

    def log_text(self) -> str:
        try:
            return (self.var_dir / "logs" / "runnerkit.log").read_text(errors="replace")
        except FileNotFoundError:
            path = self.site.get("logging", "path")
            try:
                return Path(path).read_text(errors="replace")
            except FileNotFoundError:
                return ""

    def runners(self) -> dict[str, list[int]]:
        """The live runner processes of this host, by ``--runner``."""
        return runner_processes(self.var_dir)

    def wait_running(self, specs: Iterable[str], timeout: float = 30.0) -> dict[str, int]:
        """Wait until each of *specs* (``NAME:SLICE:COUNT``) runs in one process, which
        has logged that it started; return the pids."""
        wanted = set(specs)
        found: dict[str, int] = {}

        def ready() -> bool:
            running = self.runners()
            found.clear()
            found.update((spec, pids[0]) for spec, pids in running.items() if len(pids) == 1)
            log = self.log_text()
            return wanted <= set(found) and all(
                f": started (pid {found[spec]})" in log for spec in wanted
            )

        wait_for(ready, f"host {self.name} to run {sorted(wanted)}", timeout)
        return {spec: found[spec] for spec in wanted}

    def kill_a_runner(self, rng: Any) -> int | None:
        """SIGKILL one runner process of this host, chosen by *rng*; its pid, or None."""
        running = sorted(pid for pids in self.runners().values() for pid in pids)
        if not running:
            return None
        pid = rng.choice(running)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        self.kills += 1
        return pid

    def kill_master(self) -> list[int]:
        """SIGKILL the current master; return the pids of its runners of that moment,
        which hear it (PDEATHSIG) and finish their message."""
        orphans = [pid for pids in self.runners().values() for pid in pids]
        self.master.send_signal(signal.SIGKILL)
        self.master.wait(timeout=10)
        self.kills += 1
        return orphans

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the current master and return its exit status."""
        self.master.send_signal(signal.SIGTERM)
        return self.master.wait(timeout=timeout)

    def kill_all(self) -> None:
        """Kill, by pid, every master and runner of this host, until none is left."""
        deadline = time.monotonic() + 30
        for master in self.masters:
            if master.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    master.kill()
        while True:
            left = [pid for pid in processes_over(self.var_dir) if alive(pid)]
            if not left:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"processes of host {self.name} keep running: {left}")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for master in self.masters:
            with contextlib.suppress(subprocess.TimeoutExpired):
                master.wait(timeout=10)
        for output in self._outputs:
            output.close()
        if self._site is not None:
            self._site.close()
            self._site = None

    # Records.

    def records(self) -> list[Record]:
        return read_records(self.var_dir)


@dataclass(frozen=True)
class Record:
    """One line a :class:`host_runners.HostRecordingRunner` wrote."""

    kind: str  # S or E
    mid: int
    host: str
    pid: int
    time: float


def read_records(var_dir: Path) -> list[Record]:
    """The whole lines of the records of the host over *var_dir*."""
    try:
        text = Path(records_file(var_dir)).read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    out = []
    for line in text.split("\n")[:-1]:
        kind, mid, host, pid, when = line.split()
        out.append(Record(kind, int(mid), host, int(pid), float(when)))
    return out


@dataclass
class Processing:
    """One processing of a message: its start and, if it finished, its end."""

    mid: int
    host: str
    pid: int
    start: float
    end: float | None


def processings(records: Iterable[Record]) -> list[Processing]:
    """Pair each start with the end that the same process wrote next for that message."""
    open_: dict[tuple[int, int], Processing] = {}
    out: list[Processing] = []
    for record in records:
        key = (record.mid, record.pid)
        if record.kind == "S":
            processing = Processing(record.mid, record.host, record.pid, record.time, None)
            open_[key] = processing
            out.append(processing)
        elif key in open_:
            open_.pop(key).end = record.time
    return out


def overlaps_across_hosts(
    all_processings: list[Processing],
) -> list[tuple[Processing, Processing]]:
    """Pairs of finished processings of one message, by two hosts, at overlapping times."""
    by_mid: dict[int, list[Processing]] = {}
    for processing in all_processings:
        if processing.end is not None:
            by_mid.setdefault(processing.mid, []).append(processing)
    found = []
    for items in by_mid.values():
        for index, first in enumerate(items):
            for second in items[index + 1 :]:
                if first.host == second.host:
                    continue
                assert first.end is not None
                assert second.end is not None
                if first.start < second.end and second.start < first.end:
                    found.append((first, second))
    return found


def enqueue_many(site: Site, queue: str, mids: Iterable[int], **metadata: Any) -> list[str]:
    """Queue one small message for each of *mids*; return their file bases."""
    switchboard = site.switchboards[queue]
    msg = message_from_string(MESSAGE)
    return [switchboard.enqueue(msg, mid=mid, **metadata) for mid in mids]
