"""Hosts that share one Valkey server: masters, runners and chaos across "machines".

Each host is a var dir of its own and a master over it (``python -m runnerkit.master``),
children of the test, with its own runner processes; every host's queues are on the same
private Valkey server (:class:`runnerkit.valkey.ValkeyServer`, in the test's temporary
directory) under the same key prefix, and ``[runner.NAME] slices`` splits the queue's
slices between them.  The runners (:class:`host_runners.HostRecordingRunner`) record
the start and the end of every message in a file of their host's, with ``O_APPEND`` and
``fsync``.  The tests check:

- the chaos test: runner processes of both hosts, and a whole host's master, are
  SIGKILLed at random moments (the killed master's runners hear it by PDEATHSIG and
  finish their message), the master is started again; at the end nothing is lost,
  duplicates are no more than kills, every message was processed by the host that runs
  its slice, and never by two hosts at overlapping times;
- hosts given overlapping slices never run one slice at once: the second waits on the
  slice's lease (:class:`runnerkit.streams.SliceLease`);
- the lease of a host that died outright (master and runners SIGKILLed) is taken by
  another host only once it has expired.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_processes import alive, wait_for
from redis_hosts import (
    Host,
    enqueue_many,
    overlaps_across_hosts,
    processings,
    runner_section,
)

from runnerkit.errors import QueueUnavailableError
from runnerkit.message import message_from_string
from runnerkit.slices import slice_of
from runnerkit.streams import RedisCalls, SliceLease, StreamSwitchboard
from runnerkit.valkey import ValkeyServer, ValkeyUnavailableError

PREFIX = "hosts:"
#: The queue runner's slices, split between the hosts.
INSTANCES = 4


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path / "valkey")
    try:
        server.start()
    except ValkeyUnavailableError as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.kill()


class Hosts:
    """The hosts of one test; all killed, by pid, at the end."""

    def __init__(self, root: Path, server: ValkeyServer) -> None:
        self.root = root
        self.server = server
        self.hosts: list[Host] = []

    def add(self, name: str, runners: str, lease: str = "3s") -> Host:
        host = Host(name, self.root, self.server.url, PREFIX, runners, lease)
        self.hosts.append(host)
        return host

    def kill_all(self) -> None:
        for host in self.hosts:
            host.kill_all()


@pytest.fixture
def hosts(tmp_path: Path, valkey: ValkeyServer) -> Iterator[Hosts]:
    group = Hosts(tmp_path, valkey)
    try:
        yield group
    finally:
        group.kill_all()


def specs(name: str, slices: range, count: int = INSTANCES) -> list[str]:
    return [f"{name}:{index}:{count}" for index in slices]


#: Messages of the chaos test.
MESSAGES = 2000
#: The pause between two kills of a runner, in seconds.
KILL_EVERY = (0.3, 0.9)
#: The bound on the whole chaos run.
RUN_DEADLINE = 90.0


@pytest.mark.slow
def test_chaos_across_hosts_loses_nothing(hosts: Hosts, tmp_path: Path) -> None:
    rng = random.Random(14)
    a = hosts.add("host-a", runner_section("chaos", INSTANCES, "0-1"))
    b = hosts.add("host-b", runner_section("chaos", INSTANCES, "2-3"))
    owner = {index: a.name for index in (0, 1)} | {index: b.name for index in (2, 3)}
    a.start()
    b.start()
    a.wait_running(specs("chaos", range(0, 2)))
    b.wait_running(specs("chaos", range(2, 4)))

    filebases = enqueue_many(a.site, "chaos", range(MESSAGES), work="0.01")
    slice_of_mid = {
        mid: slice_of(int(filebase[-40:], 16), INSTANCES) for mid, filebase in enumerate(filebases)
    }
    began = time.monotonic()
    #: The hosts whose master is still to be killed, and when (messages done).
    master_kills = [(b, MESSAGES // 4), (a, MESSAGES // 2)]
    orphans_gone: list[float] = []

    def done() -> set[int]:
        return {p.mid for h in (a, b) for p in processings(h.records()) if p.end is not None}

    while len(done()) < MESSAGES:
        assert time.monotonic() - began < RUN_DEADLINE, f"only {len(done())} of {MESSAGES}"
        time.sleep(rng.uniform(*KILL_EVERY))
        rng.choice((a, b)).kill_a_runner(rng)
        if master_kills and len(done()) >= master_kills[0][1]:
            host = master_kills.pop(0)[0]
            orphans = host.kill_master()
            killed_at = time.monotonic()
            # The runners of the dead master hear it (PDEATHSIG), finish their message,
            # give their leases up and exit; the new master's wait for their locks.
            host.start()
            wait_for(
                lambda orphans=orphans: not any(alive(pid) for pid in orphans),
                "the orphans to exit",
                10,
            )
            orphans_gone.append(time.monotonic() - killed_at)

    # No more kills: the queue drains, both hosts stop cleanly.
    queue = a.site.switchboards["chaos"]
    wait_for(lambda: queue.depth() == 0 and not queue.taken(), "the queue to drain", 30)
    assert a.stop() == 0, a.output()
    assert b.stop() == 0, b.output()

    all_processings = [p for h in (a, b) for p in processings(h.records())]
    finished = [p for p in all_processings if p.end is not None]
    counts = Counter(p.mid for p in finished)
    lost = sorted(set(range(MESSAGES)) - set(counts))
    duplicates = sum(count - 1 for count in counts.values())
    kills = a.kills + b.kills
    wrong_host = [p for p in finished if owner[slice_of_mid[p.mid]] != p.host]
    overlapping = overlaps_across_hosts(all_processings)
    bad = a.site.switchboards["bad"]
    figures = {
        "messages": MESSAGES,
        "kills": kills,
        "lost": len(lost),
        "duplicates": duplicates,
        "orphans_exited_seconds": [round(seconds, 3) for seconds in orphans_gone],
        "seconds": round(time.monotonic() - began, 2),
    }
    (tmp_path / "hosts-chaos.json").write_text(json.dumps(figures) + "\n")
    print(f"\nhosts chaos {json.dumps(figures)}")
    assert lost == []
    assert duplicates <= kills
    assert kills > 2
    assert master_kills == []
    assert wrong_host == []
    assert overlapping == []
    assert bad.depth() == 0
    assert a.site.switchboards["shunt"].depth() == 0


@pytest.mark.slow
def test_overlapping_slices_never_run_at_once(hosts: Hosts) -> None:
    # Slice 1 is given to both hosts: only one runs it at a time.
    a = hosts.add("host-a", runner_section("shared", 2, "0-1"), lease="2s")
    b = hosts.add("host-b", runner_section("shared", 2, "1"), lease="2s")
    a.start()
    a.wait_running(specs("shared", range(2), 2))
    b.start()
    calls = RedisCalls(hosts.server.url, PREFIX)
    lease_key = f"{PREFIX}lease:shared:1"
    wait_for(lambda: "waiting for slice lease" in b.log_text(), "host b to wait on the lease")
    holder = calls.client.get(lease_key).decode()
    assert str(a.var_dir) in holder

    enqueue_many(a.site, "shared", range(200), work="0.005")
    wait_for(
        lambda: len({p.mid for p in processings(a.records()) if p.end}) == 200,
        "host a to process everything",
    )
    assert b.records() == []
    # Host a stops cleanly: it gives its leases up, and host b takes slice 1 at once.
    assert a.stop() == 0, a.output()
    wait_for(lambda: str(b.var_dir) in (calls.client.get(lease_key) or b"").decode(), "b's lease")
    later = enqueue_many(a.site, "shared", range(200, 300), work="0.005")
    of_slice_1 = {
        mid
        for mid, filebase in zip(range(200, 300), later, strict=True)
        if slice_of(int(filebase[-40:], 16), 2) == 1
    }
    wait_for(
        lambda: {p.mid for p in processings(b.records()) if p.end} == of_slice_1,
        "host b to process slice 1 (and only that)",
    )
    assert b.stop() == 0, b.output()
    everything = processings(a.records()) + processings(b.records())
    assert overlaps_across_hosts(everything) == []
    calls.close()


@pytest.mark.slow
def test_a_dead_hosts_lease_is_taken_only_once_it_expires(hosts: Hosts) -> None:
    a = hosts.add("host-a", runner_section("shared", 2, "0-1"), lease="3s")
    b = hosts.add("host-b", runner_section("shared", 2, "1"), lease="3s")
    a.start()
    pids = a.wait_running(specs("shared", range(2), 2))
    b.start()
    wait_for(lambda: "waiting for slice lease" in b.log_text(), "host b to wait on the lease")
    calls = RedisCalls(hosts.server.url, PREFIX)
    lease_key = f"{PREFIX}lease:shared:1"
    # Host a dies outright: its master cannot start new runners, its runners die at once.
    a.master.send_signal(signal.SIGSTOP)
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    remaining = calls.client.pttl(lease_key) / 1000
    holder = calls.client.get(lease_key).decode()
    assert str(a.var_dir) in holder
    assert remaining > 0.5
    a.master.send_signal(signal.SIGKILL)
    wait_for(
        lambda: str(b.var_dir) in (calls.client.get(lease_key) or b"").decode(),
        "host b to take the lease",
    )
    taken_after = time.monotonic() - killed
    # Not before the dead host's lease expired (less a little for the clocks' reads).
    assert taken_after >= remaining - 0.1, (taken_after, remaining)
    later = enqueue_many(a.site, "shared", range(50))
    of_slice_1 = {
        mid for mid, filebase in enumerate(later) if slice_of(int(filebase[-40:], 16), 2) == 1
    }
    wait_for(
        lambda: {p.mid for p in processings(b.records()) if p.end} == of_slice_1,
        "host b to process slice 1",
    )
    calls.close()


# The lease, seen by one process: takes under it, its renewal, a take whose answer is lost.


@pytest.fixture
def calls(valkey: ValkeyServer) -> Iterator[RedisCalls]:
    client = RedisCalls(valkey.url, PREFIX)
    try:
        yield client
    finally:
        client.close()


def one_slice(calls: RedisCalls) -> StreamSwitchboard:
    switchboard = StreamSwitchboard("leased", calls, 0, 1)
    switchboard.enqueue(message_from_string(MESSAGE_TEXT), mid=1)
    return switchboard


MESSAGE_TEXT = "From: a@example.com\nSubject: leased\n\nA message.\n"


def test_nothing_is_taken_under_a_lease_held_by_another(calls: RedisCalls) -> None:
    switchboard = one_slice(calls)
    lease = SliceLease(calls, "leased", 0, "host-a", 3.0)
    assert lease.try_acquire() is None
    switchboard.lease = lease
    # Another host holds it now (this one's expired and was taken over): the server
    # refuses the take in the same step, and the message still waits.
    calls.client.set(lease.key, "host-b:1")
    [filebase] = switchboard.files
    with pytest.raises(QueueUnavailableError, match="held by host-b:1"):
        switchboard.dequeue(filebase)
    assert switchboard.files == [filebase]
    assert switchboard.taken() == []


def test_nothing_is_taken_under_a_lease_not_renewed_lately(calls: RedisCalls) -> None:
    switchboard = one_slice(calls)
    lease = SliceLease(calls, "leased", 0, "host-a", 3.0)
    assert lease.try_acquire() is None
    switchboard.lease = lease
    [filebase] = switchboard.files
    assert lease.renewed is not None
    lease.renewed -= 2.5
    with pytest.raises(QueueUnavailableError, match="last renewed"):
        switchboard.dequeue(filebase)
    assert switchboard.files == [filebase]
    # Renewed again: it may take.
    assert lease.try_acquire(renew=True) is None
    switchboard.dequeue(filebase)
    switchboard.finish(filebase)


def test_a_lease_taken_over_or_expired_counts_as_lost(calls: RedisCalls) -> None:
    lost: list[str] = []
    lease = SliceLease(calls, "leased", 0, "host-a", 1.0)
    lease.on_lost = lambda: lost.append(lease.lost or "")
    assert lease.acquire(lambda: False)
    try:
        calls.client.set(lease.key, "host-b:1")
        wait_for(lambda: lost, "the renewal to find the lease lost", 5)
        assert "held by host-b:1" in lost[0]
        assert lease.staleness() is not None
    finally:
        lease.release()
    # One that expired, by the time it is renewed, is not taken again: lost too.
    again = SliceLease(calls, "leased", 1, "host-a", 1.0)
    assert again.try_acquire() is None
    calls.client.delete(again.key)
    assert again.try_acquire(renew=True) == ""


def test_a_lease_that_expired_with_nobody_taking_it_is_held_again(calls: RedisCalls) -> None:
    # The server stalled past the lease, but no other host took it: the runner goes on.
    lost: list[str] = []
    lease = SliceLease(calls, "leased", 2, "host-a", 1.0)
    lease.on_lost = lambda: lost.append(lease.lost or "")
    assert lease.acquire(lambda: False)
    try:
        calls.client.delete(lease.key)  # as if it expired
        wait_for(lambda: calls.client.get(lease.key) is not None, "the lease held again", 5)
        assert calls.client.get(lease.key).decode() == lease.owner
        time.sleep(0.5)
        assert lost == []
        assert lease.staleness() is None
    finally:
        lease.release()


def test_a_take_whose_answer_was_lost_is_put_back(
    calls: RedisCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    switchboard = one_slice(calls)
    [filebase] = switchboard.files
    take = calls.take

    def taken_but_unanswered(**kws: object) -> object:
        take(**kws)
        raise redis.exceptions.ConnectionError("the answer was lost")

    monkeypatch.setattr(calls, "take", taken_but_unanswered)
    with pytest.raises(QueueUnavailableError):
        switchboard.dequeue(filebase)
    monkeypatch.setattr(calls, "take", take)
    assert [name for name, _, _ in switchboard.taken()] == [filebase]
    # The next listing puts it back, in its place, with no strike against it.
    assert switchboard.files == [filebase]
    assert switchboard.taken() == []
    switchboard.dequeue(filebase)
    [(_, _, count)] = switchboard.taken()
    assert count == 1
