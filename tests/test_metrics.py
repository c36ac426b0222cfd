"""Prometheus metrics at the REST runner's ``/metrics``: one view of every runner process.

The first tests need no master: what a runner outside a master's processes counts
(nothing, and no file), the queue gauges, and the text a scrape gets.  The others run
a real master (``runnerkit start``) with the built-in runners, two processes for
``in`` and ``pipeline``, and scrape ``/metrics`` over HTTP: the sums must hold every
process's counts, a runner killed by SIGKILL included, and the LMTP replies of a real
LMTP session.  Every wait is bounded; the ``system`` fixture kills, by pid, every
master and runner left when a test ends.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_processes import DEADLINE, MasterGroup, kill_at_end, master_section, wait_for
from prometheus_client.parser import text_string_to_metric_families

from runnerkit.master import listening_addresses
from runnerkit.message import message_from_string
from runnerkit.metrics import (
    MULTIPROCESS_DIR_VARIABLE,
    NOTHING,
    QueueCollector,
    counting,
    exposition,
    prepare_directory,
)
from runnerkit.runner import Runner
from runnerkit.runners.lmtp import read_address
from runnerkit.site import Site
from runnerkit.slices import slice_of
from runnerkit.switchboard import filebase_time
from runnerkit.testing import World

PROCESSES_DIR = Path(__file__).parent / "processes"
RUNNERKIT = Path(sys.executable).with_name("runnerkit")
#: How long a start may take on a loaded machine: the runner processes import a lot.
START_WAIT = "60"

#: A sample's value by its name and labels, as a scrape shows it.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

POST = """\
From: anne@example.com
To: ant@example.com
Subject: number {number}
Message-ID: <metrics-{number}@example.com>

Hello.
"""


def samples_of(text: str) -> Samples:
    """Every sample of a text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# Without a master.


class Idle(Runner):
    def _dispose(self, mlist: object, msg: object, msgdata: object) -> bool:
        return False


def test_a_runner_outside_a_masters_processes_counts_nothing_and_writes_no_file(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    world.config.push("idle", "[runner.idle]\nclass: test_metrics.Idle\n")
    monkeypatch.delenv(MULTIPROCESS_DIR_VARIABLE, raising=False)
    assert Idle("idle", config=world.config).metrics is NOTHING
    # A directory of someone else's is not the site's: nothing is written there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(elsewhere))
    runner = Idle("idle", config=world.config)
    assert runner.metrics is NOTHING
    world.config.switchboards["idle"].enqueue(message_from_string("Subject: x\n\nx\n"))
    runner.run_once()
    assert list(elsewhere.iterdir()) == []
    assert not world.config.paths.metrics_dir.exists()
    # The site's own directory counts: that is what the master gives its runners.  (No
    # runner is built here: prometheus_client would then count into files for good.)
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(world.config.paths.metrics_dir))
    assert counting(world.config)


def test_a_queue_file_name_tells_when_it_was_queued() -> None:
    assert filebase_time("1714564800.250000000+" + "a" * 40) == 1714564800.25
    assert filebase_time("1714564800+" + "a" * 40) == 1714564800.0


def test_the_queue_gauges_are_the_depth_and_the_oldest_files_age(world: World) -> None:
    config = world.config
    first = config.switchboards["in"].enqueue(message_from_string("Subject: 1\n\nx\n"))
    config.switchboards["in"].enqueue(message_from_string("Subject: 2\n\nx\n"))
    now = filebase_time(first) + 90.5
    text, content_type = exposition(
        config.paths.metrics_dir, (QueueCollector(config.switchboards, lambda: now),)
    )
    assert content_type.startswith("text/plain")
    samples = samples_of(text.decode("utf-8"))
    assert value(samples, "runnerkit_queue_messages", queue="in") == 2
    assert value(samples, "runnerkit_queue_oldest_message_age_seconds", queue="in") == (
        pytest.approx(90.5, abs=1e-3)
    )
    assert value(samples, "runnerkit_queue_messages", queue="out") == 0
    assert value(samples, "runnerkit_queue_oldest_message_age_seconds", queue="out") == 0


def test_the_preserved_files_of_bad_count_in_its_gauges(world: World) -> None:
    config = world.config
    shunt = config.switchboards["shunt"]
    filebase = shunt.enqueue(message_from_string("Subject: 1\n\nx\n"))
    shunt.dequeue(filebase)
    shunt.finish(filebase, preserve=True)
    now = filebase_time(filebase) + 10
    text, _ = exposition(
        config.paths.metrics_dir, (QueueCollector(config.switchboards, lambda: now),)
    )
    samples = samples_of(text.decode("utf-8"))
    assert value(samples, "runnerkit_queue_messages", queue="bad") == 1
    assert value(samples, "runnerkit_queue_oldest_message_age_seconds", queue="bad") == (
        pytest.approx(10, abs=1e-3)
    )


def test_a_master_empties_the_metrics_directory_of_its_files_only(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    prepare_directory(directory)
    assert directory.is_dir()
    (directory / "counter_123.db").write_bytes(b"old")
    (directory / "README").write_text("mine")
    prepare_directory(directory)
    assert sorted(path.name for path in directory.iterdir()) == ["README"]


# A real master.


class System(MasterGroup):
    """A master with the built-in runners over one world's var dir, and its REST API."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        super().__init__(world.config, tmp_path, PROCESSES_DIR)

    def configure_site(self, text: str = "") -> None:
        """The built-in runners, LMTP and REST on free ports, two processes for ``in``
        and ``pipeline``; no retry runner; then *text*."""
        ini = (
            master_section(self.master_defaults)
            + "[lmtp]\nport: 0\n[rest]\nport: 0\n"
            + "[runner.rest]\nstart: yes\n[runner.retry]\nstart: no\n"
            + "[runner.in]\ninstances: 2\n[runner.pipeline]\ninstances: 2\n"
            + text
        )
        self.ini.write_text(ini, encoding="utf-8")
        self.config.push_file(self.ini)

    def start(self) -> int:
        """``runnerkit start``, once every runner runs; return the master's pid."""
        result = subprocess.run(
            [str(RUNNERKIT), "start", "--wait", START_WAIT, *self.options()],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        match = re.fullmatch(r"master started with pid (\d+)\n", result.stdout)
        assert match is not None, result.stdout
        self.seen.add(int(match[1]))
        return int(match[1])

    def scrape(self) -> tuple[Samples, str]:
        """GET ``/metrics`` from the REST runner: its samples and its content type."""
        [rest] = listening_addresses(self.slot("rest", None)["pid"]) or []
        with urllib.request.urlopen(f"http://{rest}/metrics", timeout=DEADLINE) as answer:
            return samples_of(answer.read().decode("utf-8")), answer.headers["Content-Type"]

    def wait_for_sample(self, name: str, expected: float, **labels: str) -> Samples:
        """Scrape until sample *name* with *labels* is *expected*; return that scrape."""
        found: list[Samples] = []

        def reached() -> bool:
            found[:] = [self.scrape()[0]]
            return value(found[0], name, **labels) == expected

        try:
            wait_for(reached, f"{name}{labels} to be {expected}", DEADLINE)
        except BaseException:
            print(f"last scrape: {found}")
            raise
        return found[0]


@pytest.fixture
def system(world: World, tmp_path: Path) -> Iterator[System]:
    yield from kill_at_end(System(world, tmp_path))


def post(config: Site, count: int, start: int = 0) -> list[str]:
    """Queue *count* posts to ant@example.com in ``in``; return their file bases."""
    return [
        config.switchboards["in"].enqueue(
            message_from_string(POST.format(number=number)),
            listid="ant.example.com",
            listname="ant@example.com",
        )
        for number in range(start, start + count)
    ]


def owners(filebases: list[str], count: int) -> set[int]:
    """The slices, of *count*, that own *filebases*."""
    return {slice_of(int(filebase.rpartition("+")[2], 16), count) for filebase in filebases}


@pytest.mark.slow
def test_metrics_are_summed_over_every_process_and_outlive_a_killed_one(
    system: System, world: World
) -> None:
    # A queue runner whose queue stays empty.
    system.configure_site("[runner.quiet]\nclass: process_runners.RecordingRunner\n")
    mlist = world.config.lists.create("ant@example.com")
    mlist.subscribe("anne@example.com")
    mlist.subscribe("bart@example.com")
    world.config.commit()
    queued = post(world.config, 20)
    # Both processes of `in` get work: a sum of 20 needs the counts of both.
    assert owners(queued, 2) == {0, 1}
    master = system.start()
    # Each runner counts a message once it is finished with it, the next one may count
    # it first: wait for each.
    for runner in ("in", "pipeline", "out"):
        samples = system.wait_for_sample("runnerkit_messages_processed_total", 20, runner=runner)
    _, content_type = system.scrape()
    from prometheus_client import CONTENT_TYPE_LATEST

    assert content_type == CONTENT_TYPE_LATEST
    for runner in ("in", "pipeline", "out"):
        assert value(samples, "runnerkit_messages_processed_total", runner=runner) == 20
        assert value(samples, "runnerkit_messages_shunted_total", runner=runner) == 0
        assert value(samples, "runnerkit_message_processing_seconds_count", runner=runner) == 20
        assert value(
            samples, "runnerkit_message_processing_seconds_bucket", runner=runner, le="+Inf"
        ) == (20)
    assert value(samples, "runnerkit_runner_restarts_total", runner="in") == 0
    # The processing took some time, each message well under a minute.
    seconds = value(samples, "runnerkit_message_processing_seconds_sum", runner="out")
    assert seconds is not None
    assert 0 < seconds < 20 * 60
    # Each of the two processes of `in` wrote its own counts.
    files = sorted(path.name for path in world.config.paths.metrics_dir.glob("counter_*.db"))
    pids = {system.slot("in", index)["pid"] for index in (0, 1)}
    assert {f"counter_{pid}.db" for pid in pids} <= set(files)

    # A process that counted nothing wrote nothing: neither the idle runner nor REST.
    for idle in (system.slot("quiet", 0)["pid"], system.slot("rest", None)["pid"]):
        assert not list(world.config.paths.metrics_dir.glob(f"*_{idle}.db"))

    # A process killed outright: the master restarts it, and its counts stay.
    killed = system.slot("in", 0)["pid"]
    os.kill(killed, signal.SIGKILL)
    system.wait_running(master, {("in", 0)}, avoid={killed})
    samples = system.wait_for_sample("runnerkit_runner_restarts_total", 1, runner="in")
    assert value(samples, "runnerkit_messages_processed_total", runner="in") == 20
    assert value(samples, "runnerkit_runner_restarts_total", runner="pipeline") == 0

    # A message for a list that does not exist is shunted, and counted so.
    world.config.switchboards["in"].enqueue(
        message_from_string(POST.format(number=99)), listname="gone@example.com"
    )
    # (A message is counted as shunted, then as processed: wait for the last count.)
    samples = system.wait_for_sample("runnerkit_messages_processed_total", 21, runner="in")
    assert value(samples, "runnerkit_messages_shunted_total", runner="in") == 1
    assert value(samples, "runnerkit_queue_messages", queue="shunt") == 1
    assert value(samples, "runnerkit_queue_messages", queue="in") == 0
    age = value(samples, "runnerkit_queue_oldest_message_age_seconds", queue="shunt")
    assert age is not None
    assert 0 <= age < 120

    # A message whose processing raises is shunted too: out needs a list.
    world.config.switchboards["out"].enqueue(message_from_string(POST.format(number=98)))
    samples = system.wait_for_sample("runnerkit_messages_processed_total", 21, runner="out")
    assert value(samples, "runnerkit_messages_shunted_total", runner="out") == 1
    assert value(samples, "runnerkit_queue_messages", queue="shunt") == 2

    # An unreadable queue file is preserved in bad, and counted so.
    junk = world.config.switchboards["pipeline"].queue_directory / (
        f"{time.time():.9f}+{'0' * 40}.pck"
    )
    junk.write_bytes(b"not a queue file")
    samples = system.wait_for_sample("runnerkit_messages_preserved_total", 1, runner="pipeline")
    assert value(samples, "runnerkit_queue_messages", queue="bad") == 1


@pytest.mark.slow
def test_lmtp_replies_are_counted_by_code(system: System, world: World) -> None:
    system.configure_site()
    world.config.lists.create("ant@example.com")
    world.config.commit()
    system.start()
    address = read_address(system.var_dir)
    assert address is not None
    with smtplib.LMTP(*address, timeout=DEADLINE) as client:
        refused = client.sendmail(
            "anne@example.com",
            ["ant@example.com", "nobody@example.com"],
            POST.format(number=1).encode("ascii"),
        )
        assert list(refused) == ["nobody@example.com"]
        assert refused["nobody@example.com"][0] == 550
    samples = system.wait_for_sample("runnerkit_lmtp_replies_total", 1, code="221")
    # Greeting; LHLO, MAIL, the accepted RCPT and the one reply to DATA (one recipient);
    # the refused RCPT; DATA's go-ahead; QUIT.  A multiline reply (to LHLO) is one.
    assert {
        dict(labels)["code"]: count
        for (name, labels), count in samples.items()
        if name == "runnerkit_lmtp_replies_total"
    } == {"220": 1, "250": 4, "550": 1, "354": 1, "221": 1}


def test_preparing_the_directory_removes_only_metrics_files(tmp_path: Path) -> None:
    """A metrics_dir set to a directory with other .db files (the lists' database)
    cost them all at the next start."""
    from runnerkit.metrics import prepare_directory

    for name in (
        "counter_12.db",
        "histogram_7.db",
        "gauge_livesum_3.db",
        "runnerkit.db",
        "important.db",
        "counter_x.db",
    ):
        (tmp_path / name).write_bytes(b"x")
    prepare_directory(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_x.db",
        "important.db",
        "runnerkit.db",
    ]
