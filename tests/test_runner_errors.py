"""What a runner does when things go wrong: bad files, failed shunts, missing lists, errors."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runnerkit import queuefile
from runnerkit.config import Configuration
from runnerkit.errors import ConfigurationError, QueueError
from runnerkit.lists import MailingList
from runnerkit.message import Message, message_from_string
from runnerkit.runner import Runner
from runnerkit.site import Site
from runnerkit.switchboard import Switchboard, reasons_directory
from runnerkit.testing import get_queue_messages
from runnerkit.typing import MsgData

Action = Callable[[MailingList | None, Message, MsgData], bool]


class RecordingRunner(Runner):
    """Records what it disposes of; ``action``, when set, decides what else happens."""

    def __init__(self, *args: Any, **kws: Any) -> None:
        super().__init__(*args, **kws)
        self.action: Action | None = None
        self.seen: list[tuple[MailingList | None, str, MsgData]] = []
        self.cleaned_up = False

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        self.seen.append((mlist, str(msg["subject"]), dict(msgdata)))
        return self.action(mlist, msg, msgdata) if self.action is not None else False

    def _clean_up(self) -> None:
        self.cleaned_up = True


MakeRunner = Callable[..., Any]


@pytest.fixture
def runner(test_queue: Switchboard, make_testable_runner: MakeRunner) -> RecordingRunner:
    """A recording runner on the ``test`` queue that stops once the queue is empty."""
    made: RecordingRunner = make_testable_runner(RecordingRunner, "test")
    return made


def message(subject: str) -> Message:
    return message_from_string(f"From: anne@example.com\nSubject: {subject}\n\nbody\n")


def entries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def bad_dir(config: Configuration) -> Path:
    return config.switchboards["bad"].queue_directory


def shunted(config: Configuration) -> list[tuple[str, MsgData]]:
    return [
        (str(item.msg["subject"]), item.msgdata)
        for item in get_queue_messages("shunt", config=config)
    ]


def insert_list_row(config: Configuration, name: str) -> None:
    """Add a list row in the open transaction, without committing it."""
    config.database.connection.execute(
        "INSERT INTO mailing_list (list_name, mail_host, fqdn_listname, list_id,"
        " display_name, preferred_language, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, "example.com", f"{name}@example.com", f"{name}.example.com", name, "en", "now"),
    )


def committed_lists(config: Configuration) -> list[str]:
    """The list names another connection sees: what was committed."""
    other = sqlite3.connect(config.database.path)
    try:
        rows = other.execute("SELECT fqdn_listname FROM mailing_list ORDER BY 1").fetchall()
    finally:
        other.close()
    return [row[0] for row in rows]


# Files that cannot be read.


def test_a_corrupt_file_is_preserved_and_the_runner_goes_on(
    config: Configuration, test_queue: Switchboard, runner: RecordingRunner
) -> None:
    garbage = b"RKQ1 this is not a queue file\n\x00\xff"
    corrupt = f"1.000000001+{'ab' * 20}"  # older than anything enqueued now
    (test_queue.queue_directory / f"{corrupt}.pck").write_bytes(garbage)
    test_queue.enqueue(message("good"))
    runner.run()
    assert [subject for _, subject, _ in runner.seen] == ["good"]
    assert (bad_dir(config) / f"{corrupt}.psv").read_bytes() == garbage
    assert entries(test_queue.queue_directory) == []
    assert shunted(config) == []


def test_stray_entries_do_not_stop_the_runner(
    config: Configuration, test_queue: Switchboard, runner: RecordingRunner, tmp_path: Path
) -> None:
    queue = test_queue.queue_directory
    target = tmp_path / "target.pck"
    target.write_bytes(queuefile.encode(message("target"), {}))
    link, directory, fifo = (f"1.00000000{n}+{'cd' * 20}" for n in (1, 2, 3))
    (queue / f"{link}.pck").symlink_to(target)
    (queue / f"{directory}.pck").mkdir()
    os.mkfifo(queue / f"{fifo}.pck")
    (queue / "README.pck").write_text("not a queue file\n")
    test_queue.enqueue(message("good"))
    runner.run()
    assert [subject for _, subject, _ in runner.seen] == ["good"]
    assert entries(bad_dir(config)) == sorted(f"{fb}.psv" for fb in (link, directory, fifo))
    assert entries(reasons_directory(bad_dir(config))) == sorted(
        f"{fb}.reason" for fb in (link, directory, fifo)
    )
    assert (bad_dir(config) / f"{link}.psv").is_symlink()
    assert queuefile.decode(target.read_bytes()).message["subject"] == "target"
    assert entries(queue) == ["README.pck"]


# Shunting.


def test_an_exception_in_dispose_shunts_and_rolls_back(
    config: Configuration, test_queue: Switchboard, runner: RecordingRunner
) -> None:
    def dispose(mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        insert_list_row(config, str(msg["subject"]))
        if msg["subject"] == "fails":
            raise ValueError("this message is trouble")
        return False

    runner.action = dispose
    test_queue.enqueue(message("fails"), foo="yes")
    test_queue.enqueue(message("works"))
    runner.run()
    assert [subject for _, subject, _ in runner.seen] == ["fails", "works"]
    assert committed_lists(config) == ["works@example.com"]
    assert config.lists.get("fails@example.com") is None
    ((subject, msgdata),) = shunted(config)
    assert subject == "fails"
    assert msgdata["whichq"] == "test"
    assert msgdata["foo"] == "yes"
    assert entries(test_queue.queue_directory) == []
    assert entries(bad_dir(config)) == []


def test_a_database_error_makes_the_runner_open_the_database_afresh(
    config: Site, test_queue: Switchboard, runner: RecordingRunner
) -> None:
    """A database damaged and then restored is seen whole only through a new
    connection: after a database error the runner's next message gets one."""
    connections: list[sqlite3.Connection] = []

    def dispose(mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        connections.append(config.database.connection)
        if msg["subject"] == "fails":
            raise sqlite3.DatabaseError("database disk image is malformed")
        return False

    runner.action = dispose
    for subject in ("works", "fails", "works again"):
        test_queue.enqueue(message(subject))
    runner.run()
    first, failed, after = connections
    assert first is failed
    assert after is not failed
    assert [subject for subject, _ in shunted(config)] == ["fails"]


@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EIO, "Input/output error"),
        OSError(errno.EMFILE, "Too many open files"),
        sqlite3.OperationalError("database or disk is full"),
    ],
    ids=["ENOSPC", "EIO", "EMFILE", "SQLITE_FULL"],
)
def test_an_error_of_the_environment_is_retried_not_shunted(
    config: Site,
    test_queue: Switchboard,
    runner: RecordingRunner,
    failure: Exception,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full disk for a moment is not the message's fault: it waits and is tried
    again, instead of ending in shunt or bad."""
    if isinstance(failure, sqlite3.OperationalError):
        failure.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL
    attempts = []

    def dispose(mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        attempts.append(msg["subject"])
        if len(attempts) < 3:
            raise failure
        return False

    runner.action = dispose
    test_queue.enqueue(message("waits"))
    runner.run()
    assert attempts == ["waits"] * 3
    assert shunted(config) == []
    assert not bad_dir(config).exists() or entries(bad_dir(config)) == []
    assert test_queue.files == []
    assert entries(test_queue.queue_directory) == []
    assert "met an error of the environment, not of the message" in caplog.text


def test_a_shunt_that_cannot_be_written_for_now_is_retried_not_preserved(
    config: Site,
    test_queue: Switchboard,
    runner: RecordingRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chaos run's 4 of 7 messages in bad: shunt could not be written (ENOSPC)."""
    shunt = config.switchboards["shunt"]
    real_enqueue = shunt.enqueue
    full = [True]

    def enqueue(*args: Any, **kws: Any) -> str:
        if full[0]:
            full[0] = False
            raise QueueError("cannot enqueue to 'shunt'") from OSError(
                errno.ENOSPC, "No space left on device"
            )
        return real_enqueue(*args, **kws)

    monkeypatch.setattr(shunt, "enqueue", enqueue)

    def dispose(mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        raise ValueError("this message is trouble")

    runner.action = dispose
    test_queue.enqueue(message("trouble"))
    runner.run()
    # Tried again once there was room: shunted, with its own reason; nothing in bad.
    assert [subject for subject, _ in shunted(config)] == ["trouble"]
    assert not bad_dir(config).exists() or entries(bad_dir(config)) == []


def test_the_base_runner_shunts_everything(
    config: Configuration, test_queue: Switchboard, make_testable_runner: MakeRunner
) -> None:
    base = make_testable_runner(Runner, "test")
    test_queue.enqueue(message("unhandled"))
    base.run()
    assert [(subject, data["whichq"]) for subject, data in shunted(config)] == [
        ("unhandled", "test")
    ]


def test_a_failed_shunt_preserves_the_original_in_bad(
    config: Configuration,
    test_queue: Switchboard,
    runner: RecordingRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kws: Any) -> str:
        raise QueueError("cannot enqueue to 'shunt': disk full")

    def dispose(mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        raise ValueError("trouble")

    monkeypatch.setattr(config.switchboards["shunt"], "enqueue", refuse)
    runner.action = dispose
    filebase = test_queue.enqueue(message("doomed"), foo="yes")
    original = (test_queue.queue_directory / f"{filebase}.pck").read_bytes()
    test_queue.enqueue(message("next"))
    runner.run()
    assert [subject for _, subject, _ in runner.seen] == ["doomed", "next"]
    assert (bad_dir(config) / f"{filebase}.psv").read_bytes() == original
    assert entries(test_queue.queue_directory) == []
    assert entries(config.switchboards["shunt"].queue_directory) == []


def test_a_message_for_a_missing_list_is_shunted(
    config: Configuration,
    test_queue: Switchboard,
    runner: RecordingRunner,
    create_list: Callable[..., MailingList],
) -> None:
    mlist = create_list("test@example.com")
    test_queue.enqueue(message("no such name"), listname="missing@example.com")
    test_queue.enqueue(message("no such id"), listid="missing.example.com")
    # The list id wins over a wrong name; a wrong id falls back to the name.
    test_queue.enqueue(message("id wins"), listid=mlist.list_id, listname="x@example.com")
    test_queue.enqueue(
        message("name helps"), listid="gone.example.com", listname="test@example.com"
    )
    runner.run()
    assert [(seen, subject) for seen, subject, _ in runner.seen] == [
        (mlist, "id wins"),
        (mlist, "name helps"),
    ]
    found = shunted(config)
    assert [subject for subject, _ in found] == ["no such name", "no such id"]
    assert [data["whichq"] for _, data in found] == ["test", "test"]
    assert found[0][1]["listname"] == "missing@example.com"
    assert found[1][1]["listid"] == "missing.example.com"


# Interruptions.


def test_keyboard_interrupt_is_not_shunted(
    config: Configuration,
    test_queue: Switchboard,
    runner: RecordingRunner,
    make_testable_runner: MakeRunner,
) -> None:
    create_list = config.lists.create
    create_list("kept@example.com")

    def interrupt(mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        config.database.connection.execute(
            "UPDATE mailing_list SET display_name = 'half done' WHERE list_name = 'kept'"
        )
        raise KeyboardInterrupt

    runner.action = interrupt
    filebase = test_queue.enqueue(message("interrupted"))
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert runner.cleaned_up
    # The interrupted message's database work was rolled back, not left pending.
    config.commit()
    assert config.lists.get("kept@example.com").display_name == "Kept"
    assert test_queue.get_files(".bak") == [filebase]
    assert test_queue.files == []
    assert shunted(config) == []
    assert entries(bad_dir(config)) == []

    # The next runner to start recovers the message and processes it.
    again: RecordingRunner = make_testable_runner(RecordingRunner, "test")
    assert test_queue.files == [filebase]
    again.run()
    assert [subject for _, subject, _ in again.seen] == ["interrupted"]
    assert entries(test_queue.queue_directory) == []


# Construction.


def test_a_runner_needs_its_section(config: Configuration) -> None:
    with pytest.raises(ConfigurationError, match=r"no \[runner.nope\] section") as info:
        Runner("nope", config=config)
    assert "known runners:" in str(info.value)
    with pytest.raises(ConfigurationError, match=r"no \[runner.nope\] section"):
        Runner("nope")  # the world's configuration is current


def test_a_runner_runs_again_afresh_after_it_stopped(
    config: Site, make_testable_runner: Callable[..., Any], message_from_string: Any
) -> None:
    config.push("again", "[runner.again]\n")
    seen: list[str] = []

    class AgainRunner(Runner):
        def _dispose(self, mlist: Any, msg: Any, msgdata: Any) -> bool:
            seen.append(str(msg["subject"]))
            return False

    queue = config.switchboards["again"]
    runner = make_testable_runner(AgainRunner, "again")
    queue.enqueue(message_from_string("Subject: 1\n\n"))
    runner.run()
    assert runner.stopping
    for subject in ("2", "3"):
        queue.enqueue(message_from_string(f"Subject: {subject}\n\n"))
    runner.run()
    assert seen == ["1", "2", "3"]
    for subject in ("4", "5"):
        queue.enqueue(message_from_string(f"Subject: {subject}\n\n"))
    assert runner.run_once() == 2
    assert runner.run_once(until=lambda r: True) == 0
    queue.enqueue(message_from_string("Subject: 6\n\n"))
    assert runner.run_once() == 1
    assert seen == ["1", "2", "3", "4", "5", "6"]


def test_a_stop_asked_for_before_the_run_still_counts(config: Site) -> None:
    config.push("early", "[runner.early]\n")
    runner = Runner("early")
    runner.stop()
    runner.run()  # returns at once: nothing queued, and stopping
    assert runner.stopping
