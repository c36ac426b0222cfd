"""The contract of the queue-backend seam, :class:`runnerkit.backend.QueueBackend`.

Every test here uses the protocol's operations only: no directory listing, no file on
disk.  So a second backend runs the very same tests once a factory for it is added to
:data:`FACTORIES`.  Today there is one backend, the switchboard, made two ways: directly,
outside any configuration, and by a site, as a runner gets it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runnerkit.backend import QueueBackend
from runnerkit.config import current_config
from runnerkit.errors import MetadataError, NoConfigurationError, QueueError
from runnerkit.message import Message, message_from_bytes, message_from_string
from runnerkit.slices import slice_of
from runnerkit.streams import RedisCalls, StreamSwitchboard, delete_site_keys
from runnerkit.switchboard import QueueClock, Switchboard
from runnerkit.testing import World
from runnerkit.testing.redis import fresh_prefix, redis_unavailable, server_url

#: A file base: ``<time>+<40 hex digits>``, the time in seconds, maybe with a fraction.
FILEBASE = re.compile(r"(\d+(?:\.\d+)?)\+([0-9a-f]{40})")

#: A message whose headers and body hold non-ASCII text, and which has an envelope sender.
NON_ASCII = """\
From zoe@example.com Mon Jan  1 00:00:00 2024
From: Zoë Ünal <zoe@example.com>
To: test@example.com
Subject: Grüße aus Köln
X-Encoded: =?utf-8?q?Gr=C3=BC=C3=9Fe?=
Message-ID: <contract@example.com>

Ça va?  Très bien.
From the start of a line, nothing is mangled.
"""


@dataclass(frozen=True)
class Queues:
    """Makes queues of one backend, all sharing one ``bad`` queue and keeping one FIFO."""

    make: Callable[[str, int | None, int], QueueBackend]
    #: The ``bad`` queue, where ``finish(preserve=True)`` and recovery preserve messages.
    bad: QueueBackend

    def __call__(
        self, name: str = "test", slice: int | None = None, numslices: int = 1
    ) -> QueueBackend:
        return self.make(name, slice, numslices)


@contextmanager
def file_queues(tmp_path: Path) -> Iterator[Queues]:
    """Switchboards made directly, outside any configuration.

    None is told where ``bad`` is: its default, ``bad`` beside its own directory, is the
    shared one.  They share a clock, as a site's switchboards do.
    """
    root = tmp_path / "queue"
    clock = QueueClock()

    def make(name: str, slice: int | None, numslices: int) -> QueueBackend:
        return Switchboard(name, root / name, slice, numslices, clock=clock)

    yield Queues(make, make("bad", None, 1))


@contextmanager
def site_queues(tmp_path: Path, backend: str = "file") -> Iterator[Queues]:
    """Switchboards that a site makes, as a runner gets its own."""
    with World(tmp_path / "var", backend=backend) as world:
        site = world.config

        def make(name: str, slice: int | None, numslices: int) -> QueueBackend:
            if name not in site.switchboards:
                site.push(f"queue-{name}", f"[runner.{name}]\n")
            return site.switchboard(name, slice, numslices)

        yield Queues(make, site.switchboards["bad"])


@contextmanager
def redis_queues(tmp_path: Path) -> Iterator[Queues]:
    """Switchboards on Redis Streams made directly, under keys of their own."""
    calls = RedisCalls(require_redis(), fresh_prefix())
    clock = QueueClock()

    def make(name: str, slice: int | None, numslices: int) -> QueueBackend:
        return StreamSwitchboard(name, calls, slice, numslices, clock=clock)

    try:
        yield Queues(make, make("bad", None, 1))
    finally:
        delete_site_keys(calls)
        calls.close()


@contextmanager
def redis_site_queues(tmp_path: Path) -> Iterator[Queues]:
    """Switchboards on Redis Streams that a site makes, as a runner gets its own."""
    require_redis()
    with site_queues(tmp_path, backend="redis") as queues:
        yield queues


#: One factory per way of making queues; a new backend adds its own here.
FACTORIES: dict[str, Callable[[Path], AbstractContextManager[Queues]]] = {
    "file": file_queues,
    "file-in-site": site_queues,
    "redis": redis_queues,
    "redis-in-site": redis_site_queues,
}


def require_redis() -> str:
    """The test server's URL; skips, naming what is missing, where there is none."""
    reason = redis_unavailable()
    if reason is not None:
        pytest.skip(f"no Redis server for the redis backend: {reason}")
    return server_url()


@pytest.fixture(params=sorted(FACTORIES))
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Queues]:
    """``make_queue(name="test", slice=None, numslices=1)``; ``make_queue.bad`` is ``bad``."""
    with FACTORIES[request.param](tmp_path) as queues:
        yield queues


def digest_of(filebase: str) -> int:
    match = FILEBASE.fullmatch(filebase)
    assert match is not None, filebase
    return int(match[2], 16)


# The protocol.


def test_queues_are_queue_backends(make_queue: Queues) -> None:
    whole = make_queue()
    part = make_queue("test", 1, 4)
    assert isinstance(whole, QueueBackend)
    assert isinstance(part, QueueBackend)
    assert isinstance(make_queue.bad, QueueBackend)
    assert (whole.name, whole.slice, whole.numslices) == ("test", None, 1)
    assert (part.name, part.slice, part.numslices) == ("test", 1, 4)


# Queueing.


def test_a_file_base_is_the_time_and_a_digest(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    before = time.time()
    filebases = [queue.enqueue(msg) for _ in range(10)]
    after = time.time()
    for filebase in filebases:
        match = FILEBASE.fullmatch(filebase)
        assert match is not None, filebase
        assert before - 1 <= float(match[1]) <= after + 1, filebase
    assert len(set(filebases)) == len(filebases)
    assert len({digest_of(filebase) for filebase in filebases}) == len(filebases)


def test_files_are_oldest_first(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    filebases = [queue.enqueue(msg, n=n) for n in range(30)]
    assert queue.files == filebases
    # Another handle on the same queue, as another process has, sees the same queue.
    assert make_queue().files == filebases


def test_files_are_oldest_first_when_the_clock_stands_still(
    make_queue: Queues, msg: Message, freeze_time: Callable[..., Any]
) -> None:
    freeze_time("2024-05-01 12:00:00")
    first, second = make_queue(), make_queue()
    filebases = [(first if n % 2 else second).enqueue(msg, n=n) for n in range(50)]
    assert first.files == filebases
    assert [first.dequeue(filebase)[1]["n"] for filebase in first.files] == list(range(50))


# Round trips.


#: Ways to queue :data:`NON_ASCII`, and whether it is then stored as text to parse again.
ENQUEUE_WAYS: dict[str, tuple[Callable[[QueueBackend], str], bool]] = {
    "message": (lambda queue: queue.enqueue(message_from_string(NON_ASCII)), False),
    "text": (lambda queue: queue.enqueue(NON_ASCII), True),
    "plaintext": (
        lambda queue: queue.enqueue(message_from_string(NON_ASCII), _plaintext=True),
        True,
    ),
    "bytes-plaintext": (
        lambda queue: queue.enqueue(message_from_bytes(NON_ASCII.encode()), _plaintext=True),
        True,
    ),
}


@pytest.mark.parametrize("way", sorted(ENQUEUE_WAYS))
def test_a_message_comes_back_as_it_went_in(make_queue: Queues, way: str) -> None:
    queue = make_queue()
    enqueue, as_text = ENQUEUE_WAYS[way]
    filebase = enqueue(queue)
    back, msgdata = queue.dequeue(filebase)
    queue.finish(filebase)
    msg = message_from_string(NON_ASCII)
    assert isinstance(back, Message)
    assert back.get_unixfrom() == msg.get_unixfrom()
    assert back.items() == msg.items()
    assert back["subject"] == "Grüße aus Köln"
    assert back.get_payload() == msg.get_payload()
    assert back.senders == msg.senders == ["zoe@example.com"]
    assert msgdata["_parsemsg"] is as_text


def test_a_message_parsed_from_bytes_comes_back_byte_for_byte(make_queue: Queues) -> None:
    queue = make_queue()
    data = NON_ASCII.encode("utf-8")
    filebase = queue.enqueue(message_from_bytes(data))
    back, msgdata = queue.dequeue(filebase)
    queue.finish(filebase)
    assert isinstance(back, Message)
    assert back.as_bytes(unixfrom=True) == data
    assert back.original_size == len(data)
    assert msgdata["_parsemsg"] is False


def test_metadata_comes_back_with_keywords_winning(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    metadata = {
        "listname": "test@example.com",
        "color": "red",
        "_private": "steers the call",
        "_parsemsg": True,
        "version": 1,
    }
    given = dict(metadata)
    # A private value is never stored, so it need not be storable.
    filebase = queue.enqueue(msg, metadata, color="blue", size=3, _hook=print)
    _, msgdata = queue.dequeue(filebase)
    queue.finish(filebase)
    # _parsemsg says how the message was stored, and version which shape the metadata
    # has, whatever the caller said.
    assert msgdata == {
        "listname": "test@example.com",
        "color": "blue",
        "size": 3,
        "_parsemsg": False,
        "version": 3,
    }
    assert metadata == given


def test_metadata_values_keep_their_types(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    values = {
        "text": "héllo",
        "count": 7,
        "ratio": 0.25,
        "forever": float("inf"),
        "flag": True,
        "nothing": None,
        "recipients": ["anne@example.com", "bart@example.com"],
        "pair": (1, "two"),
        "seen": {"anne@example.com"},
        "frozen": frozenset({"bart@example.com"}),
        "nested": {"owner": {"lang": "fr", "ids": [1, 2]}},
        "by_number": {1: "one", (2, 3): "two and three"},
        "raw": b"\x00\xff",
        "received": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "day": date(2024, 5, 1),
        "delay": timedelta(minutes=5),
    }
    filebase = queue.enqueue(msg, values)
    _, msgdata = queue.dequeue(filebase)
    queue.finish(filebase)
    changed = [
        key
        for key, value in values.items()
        if msgdata[key] != value or type(msgdata[key]) is not type(value)
    ]
    assert changed == []


@pytest.mark.parametrize(
    "value",
    [Decimal("9.99"), print, object(), [1, Decimal(2)], {"inner": object()}, {object(): 1}],
    ids=["decimal", "function", "object", "in-a-list", "in-a-dict", "as-a-key"],
)
def test_unstorable_metadata_stores_nothing(
    make_queue: Queues, msg: Message, value: object
) -> None:
    queue = make_queue()
    with pytest.raises(MetadataError, match="'price'"):
        queue.enqueue(msg, {"listname": "test@example.com"}, price=value)
    assert issubclass(MetadataError, QueueError)
    assert queue.files == []
    assert queue.depth() == 0


# Taking messages out.


def test_a_dequeued_message_is_no_longer_waiting(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    first, second = queue.enqueue(msg), queue.enqueue(msg)
    queue.dequeue(first)
    assert queue.files == [second]
    assert make_queue().files == [second]
    with pytest.raises(QueueError):
        queue.dequeue(first)


def test_finish_removes_the_message(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    first, second = queue.enqueue(msg), queue.enqueue(msg)
    queue.dequeue(first)
    queue.finish(first)
    queue.recover_backup_files()
    assert queue.files == [second]
    assert make_queue.bad.depth() == 0
    with pytest.raises(QueueError):
        queue.finish(first)
    with pytest.raises(QueueError):
        queue.dequeue(first)


def test_finish_with_preserve_moves_the_message_to_bad(make_queue: Queues, msg: Message) -> None:
    queue, other = make_queue(), make_queue("other")
    kept, sent = queue.enqueue(msg), other.enqueue(msg)
    queue.dequeue(kept)
    other.dequeue(sent)
    queue.finish(kept, preserve=True)
    assert make_queue.bad.depth() == 1
    other.finish(sent, preserve=True)
    assert make_queue.bad.depth() == 2
    queue.recover_backup_files()
    other.recover_backup_files()
    assert (queue.files, queue.depth(), other.files, other.depth()) == ([], 0, [], 0)
    with pytest.raises(QueueError):
        queue.finish(kept, preserve=True)


def test_a_reason_kept_with_a_preserved_message_is_not_a_message(
    make_queue: Queues, msg: Message
) -> None:
    queue = make_queue()
    kept = queue.enqueue(msg)
    queue.dequeue(kept)
    queue.finish(kept, preserve=True, reason="ValueError: cannot digest\nthis one")
    assert make_queue.bad.depth() == 1
    assert make_queue.bad.files == []
    assert (queue.files, queue.depth()) == ([], 0)
    # Without preserve there is nothing to keep it with: it is ignored.
    gone = queue.enqueue(msg)
    queue.dequeue(gone)
    queue.finish(gone, reason="ignored")
    assert make_queue.bad.depth() == 1


def test_file_queues_need_no_configuration(tmp_path: Path, msg: Message) -> None:
    with file_queues(tmp_path) as make_queue:
        with pytest.raises(NoConfigurationError):
            current_config()
        queue = make_queue()
        filebase = queue.enqueue(msg)
        queue.dequeue(filebase)
        queue.finish(filebase, preserve=True)
        assert make_queue.bad.depth() == 1


UNKNOWN = "1.000000000+" + "a" * 40
MALFORMED = [
    "",
    "nonsense",
    "1+abc",
    "1.000000000+" + "A" * 40,
    "1.000000000+" + "a" * 41,
    UNKNOWN + ".pck",
    "../" + UNKNOWN,
    "queue/" + UNKNOWN,
    " " + UNKNOWN,
]


@pytest.mark.parametrize("filebase", [UNKNOWN, *MALFORMED])
def test_an_unknown_or_malformed_file_base_is_a_queue_error(
    make_queue: Queues, msg: Message, filebase: str
) -> None:
    queue = make_queue()
    waiting = queue.enqueue(msg)
    with pytest.raises(QueueError):
        queue.dequeue(filebase)
    with pytest.raises(QueueError):
        queue.finish(filebase)
    with pytest.raises(QueueError):
        queue.finish(filebase, preserve=True)
    assert queue.files == [waiting]
    assert make_queue.bad.depth() == 0


def test_a_waiting_message_cannot_be_finished(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    waiting = queue.enqueue(msg)
    with pytest.raises(QueueError):
        queue.finish(waiting)
    with pytest.raises(QueueError):
        queue.finish(waiting, preserve=True)
    assert queue.files == [waiting]
    assert make_queue.bad.depth() == 0


# Slices.


@pytest.mark.parametrize("numslices", [1, 2, 3, 4, 8])
def test_every_message_is_in_exactly_one_slice(
    make_queue: Queues, msg: Message, numslices: int
) -> None:
    whole = make_queue()
    slices = [make_queue("test", number, numslices) for number in range(numslices)]
    # Any handle may queue a message; its digest decides its slice.
    writers = [whole, *slices]
    filebases = [writers[n % len(writers)].enqueue(msg) for n in range(40)]
    assert whole.files == filebases
    listed = [part.files for part in slices]
    for filebase in filebases:
        assert sum(filebase in files for files in listed) == 1, filebase
    for number, files in enumerate(listed):
        assert files == [f for f in filebases if f in files]  # oldest first
        assert {slice_of(digest_of(f), numslices) for f in files} <= {number}
    assert sorted(f for files in listed for f in files) == sorted(filebases)
    assert sum(part.depth() for part in slices) == whole.depth() == 40


def test_each_slice_recovers_only_its_own(make_queue: Queues, msg: Message) -> None:
    # A queue's slices are fixed while it holds messages (on Redis, each is a stream).
    first, second = make_queue("test", 0, 2), make_queue("test", 1, 2)
    whole = make_queue()
    filebases = [whole.enqueue(msg, n=n) for n in range(12)]
    for filebase in filebases:
        whole.dequeue(filebase)
    mine = [f for f in filebases if slice_of(digest_of(f), 2) == 0]
    first.recover_backup_files()
    assert whole.files == mine
    second.recover_backup_files()
    assert whole.files == filebases


# Recovery and depth.


def test_recovery_puts_a_taken_message_back_in_its_place(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    first, middle, last = (queue.enqueue(msg, n=n) for n in range(3))
    queue.dequeue(middle)
    # A process that starts after a crash recovers with a handle of its own.
    make_queue().recover_backup_files()
    assert queue.files == [first, middle, last]
    back, msgdata = queue.dequeue(middle)
    assert back.items() == msg.items()
    assert back.get_payload() == msg.get_payload()
    assert msgdata["n"] == 1


def test_the_third_recovery_preserves_the_message_in_bad(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    poison = queue.enqueue(msg, poison=True)
    for _ in range(2):
        queue.dequeue(poison)
        make_queue().recover_backup_files()
        assert queue.files == [poison]
    assert make_queue.bad.depth() == 0
    # Recoveries are counted per message: this one is taken for the first time.
    innocent = queue.enqueue(msg)
    queue.dequeue(poison)
    queue.dequeue(innocent)
    make_queue().recover_backup_files()
    assert queue.files == [innocent]
    assert make_queue.bad.depth() == 1


def test_depth_counts_waiting_messages(make_queue: Queues, msg: Message) -> None:
    queue = make_queue()
    assert queue.depth() == 0
    first, second, third = (queue.enqueue(msg) for _ in range(3))
    assert queue.depth() == 3
    queue.dequeue(first)
    assert queue.depth() == 2
    queue.recover_backup_files()
    assert queue.depth() == 3
    queue.dequeue(first)
    queue.finish(first)
    queue.dequeue(second)
    queue.finish(second, preserve=True)
    assert queue.depth() == 1
    assert make_queue.bad.depth() == 1
    assert queue.files == [third]
