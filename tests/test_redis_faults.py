"""Faults of the Redis engine, met by real masters and runners: nothing is lost.

Each test runs a private Valkey server (:class:`runnerkit.valkey.ValkeyServer`, with
``appendonly yes`` and ``appendfsync always``) in its temporary directory, so that it can
kill it, stop it, start it again over its append-only files, or limit its memory.  The
host is a master (``python -m runnerkit.master``) over a var dir whose queues are on that
server, running :class:`host_runners.HostRecordingRunner` (see ``tests/support/``):

- the server SIGKILLed and started again over its AOF mid-run: every acknowledged
  message survives, the runners carry on, nothing is lost;
- the server stopped for a few seconds: the runners back off and resume (no runner dies,
  so none counts against ``max_restarts``), enqueue raises
  :class:`~runnerkit.errors.QueueUnavailableError` naming the server, and the LMTP runner
  answers 451 (a temporary failure: the client keeps the message and retries);
- a full server (``maxmemory`` with ``noeviction``): enqueue raises
  QueueUnavailableError saying so, a runner whose work needs a write waits, and all
  goes on once the limit is raised;
- stream entries that someone else added (no ``f``/``d`` fields, garbage) go to bad with
  the reason, as a damaged queue file does;
- a message whose runner is SIGKILLed is recovered at the next start, and after three
  recoveries it is preserved in bad (three strikes, by the entry's delivery count).
"""

from __future__ import annotations

import smtplib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from child_processes import wait_for
from lossy_proxy import LossyProxy
from mail_servers import LMTPServerThread
from redis_hosts import Host, enqueue_many, processings, runner_section

from runnerkit.errors import QueueUnavailableError
from runnerkit.lists import MailingList
from runnerkit.message import message_from_string
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.streams import RedisCalls, StreamSwitchboard, describe, foreign_filebase, queue_key
from runnerkit.testing import World
from runnerkit.valkey import ValkeyServer, ValkeyUnavailableError

PREFIX = "faults:"


def start_server(directory: Path, **options: int) -> ValkeyServer:
    server = ValkeyServer(directory, **options)  # type: ignore[arg-type]
    try:
        server.start()
    except ValkeyUnavailableError as error:
        pytest.skip(str(error))
    return server


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = start_server(tmp_path / "valkey")
    try:
        yield server
    finally:
        server.kill()


class Hosts:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.hosts: list[Host] = []

    def add(self, server: ValkeyServer, runners: str, lease: str = "3s") -> Host:
        host = Host(f"host-{len(self.hosts)}", self.root, server.url, PREFIX, runners, lease)
        self.hosts.append(host)
        return host


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    group = Hosts(tmp_path)
    try:
        yield group
    finally:
        for host in group.hosts:
            host.kill_all()


def finished(host: Host) -> Counter[int]:
    return Counter(p.mid for p in processings(host.records()) if p.end is not None)


def died(host: Host) -> list[str]:
    """The master's lines about runners that died (a crash, counted against
    ``max_restarts``), rather than stopped or restarted on request."""
    return [line for line in host.log_text().splitlines() if " died with " in line]


def drained(host: Host, queue: str) -> Callable[[], bool]:
    switchboard = host.site.switchboards[queue]
    return lambda: switchboard.depth() == 0 and not switchboard.taken()


@pytest.mark.slow
def test_the_server_killed_and_restarted_over_its_aof_loses_nothing(
    valkey: ValkeyServer, hosts: Hosts
) -> None:
    host = hosts.add(valkey, runner_section("work", 2, "all"))
    host.start()
    host.wait_running(["work:0:2", "work:1:2"])
    total = 400
    enqueue_many(host.site, "work", range(total), work="0.01")
    wait_for(lambda: len(finished(host)) >= 50, "some messages to be processed")
    valkey.kill()
    time.sleep(1.0)
    valkey.start()
    wait_for(lambda: len(finished(host)) == total, "every message to be processed", 60)
    wait_for(drained(host, "work"), "the queue to drain")
    assert host.stop() == 0, host.output()
    counts = finished(host)
    assert sorted(counts) == list(range(total))
    # At least once: a message is processed again only if its runner could not finish
    # it; here every runner waited for the server instead.
    assert sum(counts.values()) - total <= 2
    assert died(host) == []
    assert host.site.switchboards["bad"].depth() == 0


@pytest.mark.slow
def test_the_server_gone_for_a_while_makes_runners_wait_and_enqueue_fail_clearly(
    valkey: ValkeyServer, hosts: Hosts
) -> None:
    host = hosts.add(valkey, runner_section("work", 2, "all"))
    host.start()
    host.wait_running(["work:0:2", "work:1:2"])
    total = 300
    enqueue_many(host.site, "work", range(total), work="0.01")
    wait_for(lambda: len(finished(host)) >= 30, "some messages to be processed")
    valkey.stop()
    with pytest.raises(QueueUnavailableError) as raised:
        enqueue_many(host.site, "work", [total])
    text = str(raised.value)
    assert describe(valkey.url) in text
    assert "cannot be reached" in text
    wait_for(lambda: "trying again in" in host.log_text(), "the runners to back off")
    time.sleep(3.0)
    valkey.start()
    enqueue_many(host.site, "work", [total])
    wait_for(lambda: len(finished(host)) == total + 1, "every message to be processed", 60)
    wait_for(drained(host, "work"), "the queue to drain")
    assert host.stop() == 0, host.output()
    assert sorted(finished(host)) == list(range(total + 1))
    # The runners waited: none died, so none counted against max_restarts.
    assert died(host) == []


@pytest.fixture
def redis_world(world: World, valkey: ValkeyServer) -> World:
    """The test's world with its queues on the test's own server."""
    world.config.push(
        "faults-queues",
        f"[queues]\nbackend: redis\nurl: {valkey.url}\nkey_prefix: {PREFIX}lmtp:\n"
        "[lmtp]\nport: 0\n",
    )
    return world


def test_lmtp_answers_451_while_the_server_is_down(
    redis_world: World,
    valkey: ValkeyServer,
    create_list: Callable[..., MailingList],
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_list("test@example.com")
    served = LMTPServerThread(LMTPRunner("lmtp", config=redis_world.config))
    served.start()
    message = b"From: anne@example.org\r\nTo: test@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"
    try:
        valkey.stop()
        with smtplib.LMTP("127.0.0.1", served.runner.port, timeout=15) as client:
            client.ehlo()
            assert client.mail("anne@example.org")[0] == 250
            assert client.rcpt("test@example.com")[0] == 250
            code, text = client.data(message)
            assert code == 451, text
            assert text.startswith(b"4.3.0 ")
        # The log says why in one line, naming the server, without a traceback.
        [record] = [r for r in caplog.records if "the client will retry" in r.getMessage()]
        assert describe(valkey.url) in record.getMessage()
        assert record.exc_info is None
        valkey.start()
        with smtplib.LMTP("127.0.0.1", served.runner.port, timeout=15) as client:
            client.ehlo()
            assert client.mail("anne@example.org")[0] == 250
            assert client.rcpt("test@example.com")[0] == 250
            assert client.data(message)[0] == 250
    finally:
        served.stop()
    assert redis_world.config.switchboards["in"].depth() == 1


@pytest.mark.slow
def test_a_full_server_refuses_clearly_and_loses_nothing(tmp_path: Path, hosts: Hosts) -> None:
    server = start_server(tmp_path / "full", maxmemory=4_000_000)
    try:
        host = hosts.add(
            server,
            runner_section("work", 2, "all") + runner_section("next", 1, "all", start="no"),
        )
        work = host.site.switchboards["work"]
        body = "x" * 20_000
        msg = message_from_string(f"From: a@example.com\nSubject: big\n\n{body}\n")
        stored = 0

        def fill() -> None:
            nonlocal stored
            for mid in range(10_000):
                work.enqueue(msg, mid=mid, forward="next")
                stored += 1

        with pytest.raises(QueueUnavailableError) as raised:
            fill()
        assert "is full (maxmemory)" in str(raised.value)
        assert describe(server.url) in str(raised.value)
        assert stored > 10
        # A little room, for the runners' leases (a SET, which a full server refuses:
        # runners that start on a full server wait for their leases) and a few messages
        # queued onward; then the server is full again.  The runners take the messages,
        # but cannot queue them onward: each waits in its place, and the runners back
        # off; nothing goes to shunt or bad.
        server_calls = RedisCalls(server.url, PREFIX)
        server_calls.client.config_set("maxmemory", 4_300_000)
        host.start()
        wait_for(lambda: "met an error of the environment" in host.log_text(), "a back-off")
        time.sleep(1.0)
        assert died(host) == []
        assert host.site.switchboards["shunt"].depth() == 0
        assert host.site.switchboards["bad"].depth() == 0
        # More room: everything goes through.
        server_calls.client.config_set("maxmemory", 0)
        wait_for(
            lambda: host.site.switchboards["next"].depth() == stored,
            "every message to be queued onward",
            60,
        )
        wait_for(drained(host, "work"), "the queue to drain")
        assert host.stop() == 0, host.output()
        assert sorted(finished(host)) == list(range(stored))
        assert host.site.switchboards["shunt"].depth() == 0
        assert host.site.switchboards["bad"].depth() == 0
        server_calls.close()
    finally:
        for running in hosts.hosts:
            running.kill_all()
        server.kill()


def test_foreign_stream_entries_go_to_bad_with_a_reason(
    valkey: ValkeyServer, hosts: Hosts
) -> None:
    from host_runners import HostRecordingRunner

    host = hosts.add(valkey, runner_section("work", 1, "all"))
    site = host.site
    [good] = enqueue_many(site, "work", [1])
    calls = RedisCalls(valkey.url, PREFIX)
    key = queue_key(PREFIX, "work", "0")
    foreign = [
        calls.client.xadd(key, {"x": "y"}).decode(),  # no f, no d
        calls.client.xadd(key, {"f": "not a file base", "d": "garbage"}).decode(),
        calls.client.xadd(key, {"f": "1.000000000+" + "a" * 40, "d": "garbage"}).decode(),
        calls.client.xadd(key, {"d": b"\x00\x01\x02"}).decode(),
    ]
    runner = HostRecordingRunner("work", 0, config=site)
    runner.run_once()
    bad = site.switchboards["bad"]
    preserved = bad.get_files(".psv")
    expected = [
        foreign_filebase(key, foreign[0]),
        foreign_filebase(key, foreign[1]),
        "1.000000000+" + "a" * 40,
        foreign_filebase(key, foreign[3]),
    ]
    assert sorted(preserved) == sorted(expected)
    for filebase in expected:
        reason = bad.preserved_reason(filebase)
        assert reason is not None
        assert reason["queue"] == "work"
        assert "QueueFileError" in reason["reason"], reason
    assert "no document" in (bad.preserved_reason(expected[0]) or {})["reason"]
    # The good message went through; nothing waits or is taken.
    assert finished(host) == Counter({1: 1})
    work = site.switchboards["work"]
    assert work.depth() == 0
    assert work.taken() == []
    assert good not in preserved
    calls.close()


@pytest.mark.slow
def test_a_message_that_kills_its_runner_is_recovered_then_preserved_after_three(
    valkey: ValkeyServer, hosts: Hosts
) -> None:
    host = hosts.add(valkey, runner_section("work", 1, "all"))
    [poison] = enqueue_many(host.site, "work", [0], poison=True)
    enqueue_many(host.site, "work", range(1, 21))
    host.start()
    bad = host.site.switchboards["bad"]
    wait_for(lambda: bad.get_files(".psv") == [poison], "the poison to be preserved", 60)
    wait_for(lambda: len(finished(host)) == 20, "the others to be processed")
    starts = Counter(p.mid for p in processings(host.records()))
    # Taken three times: recovered after the first two crashes, preserved after the third.
    assert starts[0] == 3
    reason = bad.preserved_reason(poison)
    assert reason is not None
    assert "recovered 3 times" in reason["reason"]
    log = host.log_text()
    assert log.count(f"recovered {poison}") == 2
    assert host.stop() == 0, host.output()


@pytest.mark.slow
def test_a_runner_that_loses_its_lease_is_restarted_and_waits_for_it(
    valkey: ValkeyServer, hosts: Hosts
) -> None:
    host = hosts.add(valkey, runner_section("work", 1, "all"), lease="2s")
    host.start()
    [pid] = host.wait_running(["work:0:1"]).values()
    calls = RedisCalls(valkey.url, PREFIX)
    key = f"{PREFIX}lease:work:0"
    # Someone else holds the slice now (as a host whose lease-holder stalled would find):
    # the runner stops taking, exits asking for a restart, and the new one waits.
    calls.client.set(key, "intruder:1", px=1500)
    enqueue_many(host.site, "work", range(20))
    wait_for(lambda: "is now held by intruder:1" in host.log_text(), "the runner to see it")
    wait_for(lambda: pid not in host.runners().get("work:0:1", [pid]), "a new process")
    wait_for(lambda: len(finished(host)) == 20, "the new runner to take the lease, and work")
    holder = calls.client.get(key)
    assert holder is not None
    assert str(host.var_dir) in holder.decode()
    assert f"work:0:1 (pid {pid}) restarting on request" in host.log_text()
    assert died(host) == []
    assert host.stop() == 0, host.output()
    calls.close()


def test_an_enqueue_whose_answer_was_lost_is_queued_once(tmp_path: Path) -> None:
    # The server wrote the entry, but its answer was lost with the connection: the
    # enqueue sent again finds the entry instead of writing a second one.
    with ValkeyServer(tmp_path / "valkey", tcp=True) as server:
        proxy = LossyProxy(server.port)
        calls = RedisCalls(proxy.url, "lossy:")
        try:
            queue = StreamSwitchboard("in", calls, layout=1)
            msg = message_from_string("Subject: once\n\nbody\n")
            first = queue.enqueue(msg)  # loads the script
            proxy.lose_next_answer()
            second = queue.enqueue(msg, n=2)
            assert proxy.lost == 1
            assert queue.files == [first, second]
            assert calls.client.xlen("lossy:queue:in:0") == 2
            _, msgdata = queue.dequeue(second)
            assert msgdata["n"] == 2
        finally:
            calls.close()
            proxy.close()


def test_wrong_credentials_are_named_as_such_without_the_password(tmp_path: Path) -> None:
    with ValkeyServer(tmp_path / "valkey", tcp=True) as server:
        admin = RedisCalls(server.tcp_url, "auth:")
        admin.client.config_set("requirepass", "right-one")
        admin.close()
        calls = RedisCalls(f"redis://:wrong-one@127.0.0.1:{server.port}/0", "auth:")
        try:
            queue = StreamSwitchboard("in", calls, layout=1)
            with pytest.raises(QueueUnavailableError) as raised:
                queue.enqueue(message_from_string("Subject: x\n\nbody\n"))
            assert "refused the credentials" in str(raised.value)
            assert "wrong-one" not in str(raised.value)
            assert "***@127.0.0.1" in str(raised.value)
        finally:
            calls.close()


def test_a_second_server_over_a_running_ones_directory_is_refused(tmp_path: Path) -> None:
    with ValkeyServer(tmp_path / "valkey") as first:
        with pytest.raises(RuntimeError, match="already runs over"):
            ValkeyServer(tmp_path / "valkey").start()
        assert first.process is not None
        assert first.process.poll() is None
        # Killed, it may be started again over its directory.
        first.kill()
        first.start()
