"""The built-in queue runners, in process: in -> pipeline -> out, and retry.

Each runner is driven by :func:`make_testable_runner`, which returns once its queue is
empty.  SMTP delivery goes to a real aiosmtpd server on 127.0.0.1.
"""

from __future__ import annotations

import email
import email.message
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from mail_servers import AnyPortController, RecordingHandler

from runnerkit.config import Configuration
from runnerkit.errors import ConfigurationError
from runnerkit.lists import MailingList
from runnerkit.message import Message, message_from_string
from runnerkit.runners import handlers
from runnerkit.runners.incoming import IncomingRunner
from runnerkit.runners.outgoing import MAILDIR_TMP_AGE, OutgoingRunner, delivery_failures
from runnerkit.runners.pipeline import PipelineRunner
from runnerkit.runners.retry import RetryRunner
from runnerkit.typing import MsgData

POST = """\
From: anne@example.com
To: test@example.com
Subject: a test
Message-ID: <post@example.com>

Hello, list.
"""

NO_FROM = """\
To: test@example.com
Subject: who sent this?
Message-ID: <nofrom@example.com>

Nobody.
"""

#: A post with non-ASCII text and no MIME headers, as a sloppy client might send.
EIGHT_BIT = """\
From: anne@example.com
Subject: café
Message-ID: <eightbit@example.com>

Crème brûlée.
"""

MEMBERS = ("bart@example.com", "cris@example.org", "dave@example.net")


@pytest.fixture
def mlist(create_list: Callable[..., MailingList]) -> MailingList:
    """test@example.com, display name Test, with three members."""
    created = create_list("test@example.com")
    for address in MEMBERS:
        created.subscribe(address)
    return created


def list_metadata(mlist: MailingList) -> MsgData:
    """The metadata the lmtp runner gives a message it accepts for *mlist*."""
    return {
        "listid": mlist.list_id,
        "listname": mlist.fqdn_listname,
        "original_sender": "anne@example.com",
        "received_time": 1700000000.5,
        "original_size": len(POST),
    }


def enqueue(config: Configuration, queue: str, text: str, **msgdata: Any) -> str:
    return config.switchboards[queue].enqueue(message_from_string(text), msgdata)


def maildir_files(config: Configuration, mlist: MailingList) -> list[Path]:
    new = config.get("delivery", "maildir") / mlist.list_id / "new"
    return sorted(new.iterdir()) if new.exists() else []


def subject_of(msg: email.message.Message) -> str:
    return str(make_header(decode_header(str(msg["Subject"]))))


# in


def test_in_passes_a_message_to_pipeline_with_its_metadata(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> None:
    enqueue(config, "in", POST, **list_metadata(mlist))
    make_testable_runner(IncomingRunner, "in").run()
    (item,) = get_queue_messages("pipeline", expected_count=1)
    assert item.msg["Message-ID"] == "<post@example.com>"
    for key, value in list_metadata(mlist).items():
        assert item.msgdata[key] == value
    assert "reason" not in item.msgdata
    get_queue_messages("bad", expected_count=0)
    get_queue_messages("in", expected_count=0)


def test_in_sends_a_message_without_from_to_bad_with_a_reason(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    enqueue(config, "in", NO_FROM, **list_metadata(mlist))
    make_testable_runner(IncomingRunner, "in").run()
    (item,) = get_queue_messages("bad", expected_count=1)
    assert item.msg["Message-ID"] == "<nofrom@example.com>"
    assert item.msgdata["reason"] == "The message has no From header."
    assert item.msgdata["listid"] == mlist.list_id
    assert "The message has no From header." in caplog.text
    get_queue_messages("pipeline", expected_count=0)


def test_in_sends_a_from_without_an_address_to_bad(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> None:
    enqueue(config, "in", "From: \nSubject: empty\n\nBody.\n", **list_metadata(mlist))
    make_testable_runner(IncomingRunner, "in").run()
    (item,) = get_queue_messages("bad", expected_count=1)
    assert item.msgdata["reason"] == "The message's From header names no address."


def test_in_sends_a_message_for_no_list_to_bad(
    config: Configuration,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> None:
    enqueue(config, "in", POST)
    make_testable_runner(IncomingRunner, "in").run()
    (item,) = get_queue_messages("bad", expected_count=1)
    assert item.msgdata["reason"] == "The message's metadata names no mailing list."


# pipeline


@pytest.fixture
def pipeline(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> Callable[..., Message]:
    """Run a message through the pipeline runner; return what it queues for out.

    The message is *text*, for the list *to* (``test@example.com`` unless given), and
    the metadata the pipeline passes on must be the lmtp runner's.
    """

    def run(text: str = POST, to: MailingList = mlist) -> Message:
        enqueue(config, "pipeline", text, **list_metadata(to))
        make_testable_runner(PipelineRunner).run()
        (item,) = get_queue_messages("out", expected_count=1)
        for key, value in list_metadata(to).items():
            assert item.msgdata[key] == value
        msg: Message = item.msg
        return msg

    return run


def test_pipeline_adds_the_list_headers_and_the_subject_prefix(
    pipeline: Callable[..., Message],
) -> None:
    msg = pipeline()
    assert msg.get_all("List-Id") == ["Test <test.example.com>"]
    assert msg.get_all("List-Post") == ["<mailto:test@example.com>"]
    assert len(msg.get_all("X-Runnerkit-Version", [])) == 1
    assert msg["X-Runnerkit-Version"]
    assert msg.get_all("Precedence") == ["list"]
    assert msg.get_all("Subject") == ["[Test] a test"]


def test_pipeline_twice_prefixes_and_adds_headers_once(pipeline: Callable[..., Message]) -> None:
    once = pipeline()
    twice = pipeline(text=once.as_string())
    assert twice.get_all("Subject") == ["[Test] a test"]
    for name in ("List-Id", "List-Post", "X-Runnerkit-Version", "Precedence"):
        assert len(twice.get_all(name, [])) == 1, name


def test_pipeline_leaves_a_reply_that_carries_the_prefix(pipeline: Callable[..., Message]) -> None:
    reply = POST.replace("Subject: a test", "Subject: Re: [test] a test")
    msg = pipeline(text=reply)
    assert msg["Subject"] == "Re: [test] a test"


def test_pipeline_prefixes_a_missing_subject(pipeline: Callable[..., Message]) -> None:
    text = POST.replace("Subject: a test\n", "")
    msg = pipeline(text=text)
    assert msg["Subject"] == "[Test] (no subject)"


def test_pipeline_keeps_a_senders_precedence(pipeline: Callable[..., Message]) -> None:
    text = POST.replace("Subject:", "Precedence: bulk\nSubject:")
    msg = pipeline(text=text)
    assert msg.get_all("Precedence") == ["bulk"]


def test_pipeline_prefix_uses_the_configured_template(
    config: Configuration,
    create_list: Callable[..., MailingList],
    pipeline: Callable[..., Message],
) -> None:
    mlist = create_list("cafe@example.com", display_name="Café Crème")
    config.push("prefix", "[pipeline]\nsubject_prefix: ({list_name}|{display_name})\n")
    msg = pipeline(to=mlist)
    assert subject_of(msg) == "(cafe|Café Crème) a test"
    assert str(msg["List-Id"]).endswith(" <cafe.example.com>")
    assert str(make_header(decode_header(str(msg["List-Id"])))) == "Café Crème <cafe.example.com>"


def test_pipeline_prefix_none_leaves_the_subject(
    config: Configuration,
    pipeline: Callable[..., Message],
) -> None:
    config.push("no-prefix", "[pipeline]\nsubject_prefix: none\n")
    msg = pipeline()
    assert msg["Subject"] == "a test"
    assert msg["List-Id"] == "Test <test.example.com>"


def test_pipeline_runs_only_the_configured_handlers(
    config: Configuration,
    pipeline: Callable[..., Message],
) -> None:
    config.push("only-prefix", "[pipeline]\nhandlers: subject-prefix\n")
    msg = pipeline()
    assert msg["Subject"] == "[Test] a test"
    for name in ("List-Id", "List-Post", "X-Runnerkit-Version", "Precedence"):
        assert msg[name] is None, name


def test_pipeline_runs_the_handlers_in_the_configured_order(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, str | None, str]] = []

    def recorder(label: str) -> handlers.HandlerFactory:
        def factory(config: Configuration) -> handlers.Handler:
            def record(mlist: MailingList, msg: Message, msgdata: MsgData) -> None:
                seen.append((label, msg["List-Id"], str(msg["Subject"])))

            return record

        return factory

    monkeypatch.setitem(handlers.HANDLERS, "record-a", recorder("a"))  # type: ignore[arg-type]
    monkeypatch.setitem(handlers.HANDLERS, "record-b", recorder("b"))  # type: ignore[arg-type]
    config.push(
        "order", "[pipeline]\nhandlers: record-a list-headers record-b subject-prefix record-a\n"
    )
    runner = make_testable_runner(PipelineRunner)
    assert [name for name, _ in runner.handlers] == [
        "record-a",
        "list-headers",
        "record-b",
        "subject-prefix",
        "record-a",
    ]
    enqueue(config, "pipeline", POST, **list_metadata(mlist))
    runner.run()
    get_queue_messages("out", expected_count=1)
    assert seen == [
        ("a", None, "a test"),
        ("b", "Test <test.example.com>", "a test"),
        ("a", "Test <test.example.com>", "[Test] a test"),
    ]


def test_pipeline_refuses_an_unknown_handler_when_built(
    config: Configuration, make_testable_runner: Callable[..., Any]
) -> None:
    config.push("typo", "[pipeline]\nhandlers: list-headers subject-prefx\n")
    with pytest.raises(ConfigurationError, match=r"unknown handler\(s\) 'subject-prefx'.*"):
        make_testable_runner(PipelineRunner)


def test_pipeline_refuses_a_bad_prefix_template_when_built(
    config: Configuration, make_testable_runner: Callable[..., Any]
) -> None:
    config.push("bad-prefix", "[pipeline]\nsubject_prefix: [{fqdn}]\n")
    with pytest.raises(ConfigurationError, match=r"subject_prefix '\[\{fqdn\}\]'"):
        make_testable_runner(PipelineRunner)


def test_pipeline_shunts_a_message_for_no_list(
    config: Configuration,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> None:
    enqueue(config, "pipeline", POST)
    make_testable_runner(PipelineRunner).run()
    (item,) = get_queue_messages("shunt", expected_count=1)
    assert item.msgdata["whichq"] == "pipeline"
    get_queue_messages("out", expected_count=0)


# out, to a Maildir


@pytest.fixture
def deliver(
    config: Configuration, mlist: MailingList, make_testable_runner: Callable[..., Any]
) -> Callable[..., None]:
    """Queue *text* for out to ``test@example.com``, with *msgdata* in its metadata,
    and run the out runner over it."""

    def run(text: str = POST, **msgdata: Any) -> None:
        enqueue(config, "out", text, **msgdata, **list_metadata(mlist))
        make_testable_runner(OutgoingRunner, "out").run()

    return run


def test_out_delivers_one_maildir_file_per_message(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> None:
    for number in range(3):
        text = POST.replace("<post@", f"<post{number}@")
        enqueue(config, "out", text, **list_metadata(mlist))
    make_testable_runner(OutgoingRunner, "out").run()
    files = maildir_files(config, mlist)
    assert len(files) == 3
    delivered = sorted(
        str(email.message_from_bytes(path.read_bytes())["Message-ID"]) for path in files
    )
    assert delivered == [f"<post{number}@example.com>" for number in range(3)]
    get_queue_messages("out", expected_count=0)
    get_queue_messages("retry", expected_count=0)
    # Mail is the owner's and the group's only, whatever the umask.
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o640}


def test_out_removes_abandoned_maildir_tmp_files_only(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
) -> None:
    """A delivery killed half-way leaves a file in tmp/; after 36 hours (the Maildir
    convention) the out runner removes it, and never a recent one.  (The Maildir here
    has only tmp/: the out runner makes the rest.)"""
    tmp = config.get("delivery", "maildir") / mlist.list_id / "tmp"
    tmp.mkdir(parents=True)
    abandoned, recent = tmp / "1700000000.M1P2.host", tmp / "1700000001.M1P3.host"
    for path in (abandoned, recent):
        path.write_bytes(b"Subject: half\n\n")
    old = time.time() - MAILDIR_TMP_AGE - 60
    os.utime(abandoned, (old, old))
    enqueue(config, "out", POST, **list_metadata(mlist))
    make_testable_runner(OutgoingRunner, "out").run()
    assert sorted(tmp.iterdir()) == [recent]
    assert len(maildir_files(config, mlist)) == 1


def test_out_delivers_non_ascii_text_to_the_maildir_as_utf8(
    config: Configuration,
    mlist: MailingList,
    deliver: Callable[..., None],
) -> None:
    deliver(EIGHT_BIT)
    (path,) = maildir_files(config, mlist)
    data = path.read_bytes()
    assert subject_of(email.message_from_bytes(data)) == "café"
    assert data.endswith("\n\nCrème brûlée.\n".encode())


def test_out_delivers_nothing_for_a_list_without_members(
    config: Configuration,
    create_list: Callable[..., MailingList],
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> None:
    empty = create_list("empty@example.com")
    enqueue(config, "out", POST, **list_metadata(empty))
    make_testable_runner(OutgoingRunner, "out").run()
    assert maildir_files(config, empty) == []
    get_queue_messages("out", expected_count=0)


def test_out_settings_are_refused_when_their_layer_is_pushed(config: Configuration) -> None:
    # The schema checks [delivery] before any runner is built: a bad method or a number
    # of attempts that allows no delivery never reaches the outgoing runner.
    with pytest.raises(ConfigurationError, match=r"key 'method', value 'pigeon'.*maildir, smtp"):
        config.push("pigeon", "[delivery]\nmethod: pigeon\n")
    with pytest.raises(ConfigurationError, match=r"key 'max_attempts', value '0'.*1 or more"):
        config.push("never", "[delivery]\nmax_attempts: 0\n")
    assert config.layers == ()


# out, by SMTP


@pytest.fixture
def smtpd(config: Configuration) -> Iterator[RecordingHandler]:
    """A local SMTP server, with ``[delivery]`` pointing the out runner at it."""
    handler = RecordingHandler()
    controller = AnyPortController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        config.push(
            "smtp",
            f"[delivery]\nmethod: smtp\nsmtp_host: 127.0.0.1\nsmtp_port: {controller.port}\n",
        )
        yield handler
    finally:
        controller.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_out_delivers_by_smtp_to_every_member(
    config: Configuration,
    mlist: MailingList,
    smtpd: RecordingHandler,
    get_queue_messages: Callable[..., Any],
    deliver: Callable[..., None],
) -> None:
    deliver()
    (received,) = smtpd.received
    assert sorted(received.rcpt_tos) == sorted(MEMBERS)
    assert received.mail_from == "test-bounces@example.com"
    assert email.message_from_bytes(received.content)["Message-ID"] == "<post@example.com>"
    get_queue_messages("retry", expected_count=0)
    assert delivery_failures(config.database) == []
    assert maildir_files(config, mlist) == []


def test_out_delivers_non_ascii_text_by_smtp_as_utf8(
    smtpd: RecordingHandler,
    deliver: Callable[..., None],
) -> None:
    deliver(EIGHT_BIT)
    (received,) = smtpd.received
    assert "Crème brûlée.".encode() in received.content


def test_out_delivers_to_the_recipients_in_the_metadata(
    smtpd: RecordingHandler,
    deliver: Callable[..., None],
) -> None:
    deliver(recipients=["zoe@example.com"])
    (received,) = smtpd.received
    assert received.rcpt_tos == ["zoe@example.com"]


def test_out_retries_only_the_temporarily_refused_recipients(
    config: Configuration,
    mlist: MailingList,
    smtpd: RecordingHandler,
    get_queue_messages: Callable[..., Any],
    deliver: Callable[..., None],
) -> None:
    smtpd.refuse["cris@example.org"] = "451 4.3.0 try again later"
    deliver()
    (received,) = smtpd.received
    assert sorted(received.rcpt_tos) == ["bart@example.com", "dave@example.net"]
    (item,) = get_queue_messages("retry", expected_count=1)
    assert item.msgdata["recipients"] == ["cris@example.org"]
    assert item.msgdata["attempts"] == 1
    assert item.msgdata["listid"] == mlist.list_id
    assert item.msg["Message-ID"] == "<post@example.com>"
    assert delivery_failures(config.database) == []


def test_out_counts_attempts_up_on_each_temporary_failure(
    smtpd: RecordingHandler,
    get_queue_messages: Callable[..., Any],
    deliver: Callable[..., None],
) -> None:
    smtpd.refuse["cris@example.org"] = "452 4.2.2 mailbox full"
    deliver(recipients=["cris@example.org"], attempts=2)
    assert smtpd.received == []
    (item,) = get_queue_messages("retry", expected_count=1)
    assert item.msgdata["recipients"] == ["cris@example.org"]
    assert item.msgdata["attempts"] == 3


def test_out_retries_every_recipient_when_the_server_is_down(
    config: Configuration,
    get_queue_messages: Callable[..., Any],
    deliver: Callable[..., None],
) -> None:
    config.push("down", f"[delivery]\nmethod: smtp\nsmtp_port: {closed_port()}\n")
    deliver()
    (item,) = get_queue_messages("retry", expected_count=1)
    assert sorted(item.msgdata["recipients"]) == sorted(MEMBERS)
    assert item.msgdata["attempts"] == 1
    assert delivery_failures(config.database) == []
    get_queue_messages("out", expected_count=0)


def test_out_records_a_permanent_failure_and_does_not_retry(
    config: Configuration,
    smtpd: RecordingHandler,
    get_queue_messages: Callable[..., Any],
    deliver: Callable[..., None],
) -> None:
    smtpd.refuse["dave@example.net"] = "550 5.1.1 no such user"
    deliver()
    (received,) = smtpd.received
    assert sorted(received.rcpt_tos) == ["bart@example.com", "cris@example.org"]
    get_queue_messages("retry", expected_count=0)
    (failure,) = delivery_failures(config.database)
    assert (failure.list_id, failure.recipient, failure.code) == (
        "test.example.com",
        "dave@example.net",
        550,
    )
    assert failure.response == "5.1.1 no such user"
    assert failure.message_id == "<post@example.com>"
    assert failure.attempts == 1


def test_out_records_a_refused_message_for_every_recipient(
    config: Configuration,
    smtpd: RecordingHandler,
    get_queue_messages: Callable[..., Any],
    deliver: Callable[..., None],
) -> None:
    for address in MEMBERS:
        smtpd.refuse[address] = "554 5.7.1 go away"
    deliver()
    get_queue_messages("retry", expected_count=0)
    failures = delivery_failures(config.database)
    assert sorted(failure.recipient for failure in failures) == sorted(MEMBERS)
    assert {failure.code for failure in failures} == {554}


def test_out_gives_up_after_max_attempts(
    config: Configuration,
    smtpd: RecordingHandler,
    get_queue_messages: Callable[..., Any],
    deliver: Callable[..., None],
) -> None:
    config.push("two-attempts", "[delivery]\nmax_attempts: 2\n")
    smtpd.refuse["cris@example.org"] = "451 4.3.0 try again later"
    deliver(recipients=["cris@example.org"], attempts=1)
    get_queue_messages("retry", expected_count=0)
    (failure,) = delivery_failures(config.database)
    assert (failure.recipient, failure.code, failure.attempts) == ("cris@example.org", 451, 2)
    assert failure.response == "4.3.0 try again later (gave up after 2 attempts)"


# retry


def test_retry_moves_every_message_back_to_out(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> None:
    for number in range(2):
        text = POST.replace("<post@", f"<post{number}@")
        enqueue(
            config,
            "retry",
            text,
            recipients=["cris@example.org"],
            attempts=number + 1,
            **list_metadata(mlist),
        )
    make_testable_runner(RetryRunner).run()
    get_queue_messages("retry", expected_count=0)
    items = get_queue_messages("out", expected_count=2, sort_on="Message-ID")
    assert [item.msgdata["attempts"] for item in items] == [1, 2]
    for item in items:
        assert item.msgdata["recipients"] == ["cris@example.org"]
        assert item.msgdata["listid"] == mlist.list_id


def test_retry_then_out_delivers_once_the_server_accepts(
    smtpd: RecordingHandler,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
    deliver: Callable[..., None],
) -> None:
    smtpd.refuse["cris@example.org"] = "451 4.3.0 try again later"
    deliver()
    del smtpd.refuse["cris@example.org"]
    make_testable_runner(RetryRunner).run()
    make_testable_runner(OutgoingRunner, "out").run()
    assert [sorted(received.rcpt_tos) for received in smtpd.received] == [
        ["bart@example.com", "dave@example.net"],
        ["cris@example.org"],
    ]
    for name in ("out", "retry", "shunt", "bad"):
        get_queue_messages(name, expected_count=0)


# end to end


def test_a_message_flows_from_in_to_the_lists_maildir(
    config: Configuration,
    mlist: MailingList,
    make_testable_runner: Callable[..., Any],
    get_queue_messages: Callable[..., Any],
) -> None:
    enqueue(config, "in", POST, **list_metadata(mlist))
    make_testable_runner(IncomingRunner, "in").run()
    make_testable_runner(PipelineRunner).run()
    make_testable_runner(OutgoingRunner, "out").run()
    (path,) = maildir_files(config, mlist)
    assert path.parent == config.paths.var_dir / "maildir" / "test.example.com" / "new"
    delivered = email.message_from_bytes(path.read_bytes())
    assert delivered["Subject"] == "[Test] a test"
    assert delivered["List-Id"] == "Test <test.example.com>"
    assert delivered["Message-ID"] == "<post@example.com>"
    assert delivered.get_payload() == "Hello, list.\n"
    for name in ("in", "pipeline", "out", "retry", "bad", "shunt"):
        get_queue_messages(name, expected_count=0)


def test_a_duplicated_header_is_set_once_where_the_first_was() -> None:
    from runnerkit.message import message_from_bytes
    from runnerkit.runners.handlers import _set_header

    msg = message_from_bytes(
        b"From: a@example.com\nList-Id: old <one>\nTo: b@example.com\nList-Id: two\n\nbody\n"
    )
    _set_header(msg, "List-Id", "Ants <ants.example.com>")
    assert msg.as_bytes() == (
        b"From: a@example.com\nList-Id: Ants <ants.example.com>\nTo: b@example.com\n\nbody\n"
    )
