"""Idle wake-up latency: from ``enqueue`` to ``_dispose`` in an idle runner process.

Two real runner processes run side by side, both idle with the same ``sleep_time``:
one as ``python -m runnerkit.process`` runs it, woken by inotify when a file lands in
its queue, and one that only polls (:mod:`bench.polling`), as Mailman's runners do.
The benchmark queues one message at a time, alternating between them; the poller's
messages arrive at points spread evenly over its sleep, as random arrivals would.  The runner
measures the latency itself: the message carries the monotonic time (system-wide on
Linux) just before ``enqueue`` was called, and ``_dispose`` appends the difference to a
report file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.payload import message_bytes
from bench.places import Place
from bench.queues import BenchError
from bench.stats import Measurement, Target, alternate
from runnerkit.lists import MailingList
from runnerkit.message import Message, message_from_bytes
from runnerkit.runner import Runner
from runnerkit.site import Site
from runnerkit.switchboard import Switchboard
from runnerkit.typing import MsgData

#: The runner that inotify wakes, and the one that polls.
WATCHING, POLLING = "wake", "poll"
#: How long a runner process may take to start and process its first message.
START_TIMEOUT = 30.0


class LatencyRunner(Runner):
    """Appends, for each message, the seconds since the time the message carries."""

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        latency = time.monotonic() - float(msgdata["queued_at"])
        fd = os.open(str(msgdata["report"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{latency:.9f}\n".encode("ascii"))
        finally:
            os.close(fd)
        return False


def config_text(sleep_time: float) -> str:
    """The configuration layer both runner processes load."""
    return "".join(
        f"[runner.{name}]\nclass: bench.wakeup.LatencyRunner\nsleep_time: {sleep_time}s\n\n"
        for name in (WATCHING, POLLING)
    )


class RunnerProcess:
    """One runner process and the report file its runner writes."""

    def __init__(self, module: str, name: str, ini: Path, var_dir: Path, root: Path) -> None:
        self.name = name
        self.report = var_dir / f"{name}.latencies"
        self.report.touch()
        self._seen = 0
        self._stderr = var_dir / f"{name}.stderr"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
        with open(self._stderr, "wb") as stderr:
            command = [sys.executable, "-m", module, "-r", name, "-C", str(ini)]
            self.process = subprocess.Popen(
                [*command, "--var-dir", str(var_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )

    def wait_for_report(self, timeout: float) -> float:
        """The next latency the runner reports, waiting at most *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.report.read_text(encoding="ascii").split()
            if len(lines) > self._seen:
                self._seen += 1
                return float(lines[self._seen - 1])
            if self.process.poll() is not None:
                raise BenchError(
                    f"runner process {self.name} exited with {self.process.returncode}: "
                    + self._stderr.read_text(encoding="utf-8", errors="replace")[-2000:]
                )
            if time.monotonic() > deadline:
                raise BenchError(f"runner {self.name} reported nothing in {timeout:.0f} s")
            time.sleep(0.001)

    def stop(self) -> None:
        """Stop the process with SIGTERM, killing it if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def measure_wakeup(
    place: Place, samples: int, sleep_time: float, progress: Callable[[str], None]
) -> Measurement:
    """Alternate messages to an inotify-woken runner and a polling one; latencies in ms."""
    var_dir = place.fresh("wakeup")
    ini = var_dir / "bench.ini"
    ini.write_text(config_text(sleep_time), encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    config = Site.load([ini], var_dir)
    message = message_from_bytes(message_bytes(0))
    processes: list[RunnerProcess] = []
    try:
        processes = [
            RunnerProcess("runnerkit.process", WATCHING, ini, var_dir, root),
            RunnerProcess("bench.polling", POLLING, ini, var_dir, root),
        ]
        queues = {proc.name: config.switchboards[proc.name] for proc in processes}

        def send(proc: RunnerProcess, pause: float, timeout: float) -> float:
            time.sleep(pause)
            switchboard: Switchboard = queues[proc.name]
            switchboard.enqueue(message, queued_at=time.monotonic(), report=str(proc.report))
            return proc.wait_for_report(timeout) * 1000

        for proc in processes:  # a first message proves the process is up and idle
            send(proc, 0.0, START_TIMEOUT + sleep_time)
        watching, polling = processes
        # The poller starts its sleep when it has reported; each of its messages is
        # queued at its own point of that sleep, the points spread evenly over it.
        phases = [(number + 0.5) / samples * sleep_time for number in range(samples)]
        random.shuffle(phases)
        polled = time.monotonic()

        def poll() -> float:
            nonlocal polled
            due = polled + phases.pop()
            while due < time.monotonic():
                due += sleep_time
            latency = send(polling, due - time.monotonic(), 10 + 2 * sleep_time)
            polled = time.monotonic()
            return latency

        figures = alternate(
            {
                "runnerkit, inotify": lambda: send(
                    watching, random.uniform(0.02, 0.1), 10 + sleep_time
                ),
                "polling (Mailman style)": poll,
            },
            samples,
            progress,
        )
    finally:
        for proc in processes:
            proc.stop()
        config.close()
    return Measurement(
        "wakeup",
        f"idle wake-up, enqueue → _dispose, sleep_time {sleep_time:g} s",
        "ms",
        figures,
        [Target("≤ 10 ms", "value", 10.0, False)],
        note=f"polling is expected near half of sleep_time ({sleep_time * 500:.0f} ms)",
    )
