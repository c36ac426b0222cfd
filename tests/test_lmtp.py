"""The LMTP runner: a real aiosmtpd server, spoken to with :class:`smtplib.LMTP`.

Each test runs the runner's :meth:`~LMTPRunner.run` in a thread of its own, on a port
the system picks, and stops it at the end; one test runs it as a real process.  Every
wait is bounded by a deadline.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mail_servers import LMTPServerThread as ServerThread

from runnerkit.config import Configuration
from runnerkit.errors import QueueError
from runnerkit.lists import ListManager, MailingList
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.testing.helpers import QueueItem

#: The bound on every wait.  Generous for a loaded machine; a passing test waits far less.
DEADLINE = 15.0

#: The message size limit of these tests, in bytes.
MAX_SIZE = 2000

LAYER = f"""\
[lmtp]
port: 0
max_message_size: {MAX_SIZE}
"""

SAMPLE = b"""\
From: anne@example.org
To: test@example.com
Subject: hello
Message-ID: <hello@example.org>

Hello, list.
"""

#: 8-bit headers and body, in two charsets, and lines that SMTP dot-stuffs.
EIGHT_BIT = (
    "From: Zo\u00eb <zoe@example.org>\n"
    "To: test@example.com\n"
    "Subject: caf\u00e9 \u2014 r\u00e9sum\u00e9\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=iso-8859-1\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
).encode() + b"Caf\xe9 cr\xe8me\n.a line with a leading dot\n.\n..\nend\n"

GetQueue = Callable[..., list[QueueItem]]


def wire(message: bytes) -> bytes:
    """*message* as an MTA sends it, with CRLF line endings (smtplib leaves bytes as is)."""
    return message.replace(b"\n", b"\r\n")


@pytest.fixture
def lmtp_config(config: Configuration) -> Iterator[Configuration]:
    """The world's configuration with an LMTP server on any free port."""
    with config.pushed("lmtp-test", LAYER):
        yield config


@pytest.fixture
def lists(create_list: Callable[..., MailingList]) -> list[MailingList]:
    return [create_list("test@example.com"), create_list("other@example.com")]


@pytest.fixture
def server(lmtp_config: Configuration, lists: list[MailingList]) -> Iterator[ServerThread]:
    """A listening LMTP runner, stopped (with a bounded wait) at the end of the test."""
    served = ServerThread(LMTPRunner("lmtp", config=lmtp_config))
    served.start()
    try:
        yield served
    finally:
        if served.thread.is_alive():
            served.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[smtplib.LMTP]:
    """An LMTP client connected to the server, after LHLO."""
    lmtp = smtplib.LMTP("127.0.0.1", server.runner.port, timeout=DEADLINE)
    lmtp.ehlo()
    try:
        yield lmtp
    finally:
        lmtp.close()


def queued(lmtp_config: Configuration) -> int:
    return len(lmtp_config.switchboards["in"].files)


def test_delivery_queues_to_in_with_the_metadata(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    before = time.time()
    refused = client.sendmail("Anne@example.org", ["test@example.com"], wire(SAMPLE))
    after = time.time()
    assert refused == {}
    [item] = get_queue_messages("in", expected_count=1)
    assert item.msg.as_bytes() == SAMPLE
    assert item.msg["message-id"] == "<hello@example.org>"
    data = item.msgdata
    assert data["listid"] == "test.example.com"
    assert data["listname"] == "test@example.com"
    assert data["original_sender"] == "Anne@example.org"
    assert data["original_size"] == len(SAMPLE)
    assert isinstance(data["received_time"], float)
    assert before <= data["received_time"] <= after


def test_list_address_matches_in_any_case(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    assert client.sendmail("anne@example.org", ["Test@Example.COM"], wire(SAMPLE)) == {}
    [item] = get_queue_messages("in", expected_count=1)
    assert item.msgdata["listname"] == "test@example.com"


def test_null_sender_is_accepted_and_recorded_as_empty(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    assert client.sendmail("<>", ["test@example.com"], wire(SAMPLE)) == {}
    [item] = get_queue_messages("in", expected_count=1)
    assert item.msgdata["original_sender"] == ""


def test_unknown_list_gets_550_at_rcpt_and_the_message_is_queued_once(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    code, text = client.rcpt("nosuchlist@example.com")
    assert (code, text[:5]) == (550, b"5.1.1")
    assert b"no such mailing list" in text
    # One accepted recipient: one reply after DATA.
    assert client.data(wire(SAMPLE))[0] == 250
    assert client.noop()[0] == 250
    [item] = get_queue_messages("in", expected_count=1)
    assert item.msgdata["listid"] == "test.example.com"


@pytest.mark.parametrize(
    ("recipient", "reply"),
    [
        ("someone@elsewhere.org", b"5.7.1 someone@elsewhere.org: relay access denied"),
        ("test@example.com.evil.org", b"5.7.1 test@example.com.evil.org: relay access denied"),
        ("anne@example.com", b"5.1.1 anne@example.com: no such mailing list"),
        ("postmaster", b"5.1.1 postmaster: no such mailing list"),
    ],
)
def test_a_recipient_that_is_not_a_list_is_refused(
    client: smtplib.LMTP, lmtp_config: Configuration, recipient: str, reply: bytes
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        client.sendmail("anne@example.org", [recipient], wire(SAMPLE))
    [(code, text)] = raised.value.recipients.values()
    assert code == 550
    assert text.startswith(reply)
    assert queued(lmtp_config) == 0


def test_size_parameter_over_the_limit_is_refused_at_mail(
    client: smtplib.LMTP, lmtp_config: Configuration
) -> None:
    assert int(client.esmtp_features["size"]) == MAX_SIZE
    code, _ = client.mail("anne@example.org", [f"SIZE={MAX_SIZE + 1}"])
    assert code == 552
    # smtplib announces the size itself when the server supports SIZE.
    big = wire(SAMPLE + (b"x" * 69 + b"\n") * (MAX_SIZE // 70 + 1))
    with pytest.raises(smtplib.SMTPSenderRefused) as raised:
        client.sendmail("anne@example.org", ["test@example.com"], big)
    assert raised.value.smtp_code == 552
    assert queued(lmtp_config) == 0


def test_oversize_data_is_refused_once_per_recipient(
    client: smtplib.LMTP, lmtp_config: Configuration, get_queue_messages: GetQueue
) -> None:
    # No SIZE parameter: the server finds out while it reads the data.
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    assert client.rcpt("other@example.com")[0] == 250
    big = wire(SAMPLE + (b"x" * 69 + b"\n") * (MAX_SIZE // 70 + 1))
    assert client.data(big)[0] == 552
    assert client.getreply()[0] == 552
    assert queued(lmtp_config) == 0
    # The session is still in step: the next transaction goes through.
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    assert client.data(wire(SAMPLE))[0] == 250
    assert client.noop()[0] == 250
    get_queue_messages("in", expected_count=1)


def test_two_lists_in_one_transaction_get_a_reply_and_a_queue_entry_each(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    assert client.rcpt("other@example.com")[0] == 250
    first = client.data(wire(SAMPLE))
    second = client.getreply()
    assert (first[0], second[0]) == (250, 250)
    assert first[1].startswith(b"2.0.0 test@example.com:")
    assert second[1].startswith(b"2.0.0 other@example.com:")
    # Exactly two replies: the next command gets its own.
    assert client.noop()[0] == 250
    items = get_queue_messages("in", expected_count=2)
    assert sorted(item.msgdata["listid"] for item in items) == [
        "other.example.com",
        "test.example.com",
    ]
    assert all(item.msg.as_bytes() == SAMPLE for item in items)


def test_a_list_named_twice_is_queued_once_and_answered_twice(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    assert client.rcpt("TEST@example.com")[0] == 250
    assert client.data(wire(SAMPLE))[0] == 250
    assert client.getreply()[0] == 250
    assert client.noop()[0] == 250
    get_queue_messages("in", expected_count=1)


def test_eight_bit_content_round_trips_byte_for_byte(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    refused = client.sendmail(
        "zoe@example.org", ["test@example.com"], wire(EIGHT_BIT), mail_options=["BODY=8BITMIME"]
    )
    assert refused == {}
    [item] = get_queue_messages("in", expected_count=1)
    # Queued with runnerkit's LF line endings, every other byte as sent.
    assert item.msg.as_bytes() == EIGHT_BIT
    assert item.msgdata["original_size"] == len(EIGHT_BIT)


def test_a_failed_enqueue_answers_451_and_the_other_list_still_gets_it(
    client: smtplib.LMTP,
    server: ServerThread,
    lmtp_config: Configuration,
    get_queue_messages: GetQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    incoming = lmtp_config.switchboards["in"]
    enqueue = incoming.enqueue

    def fail_for_other(msg: object, metadata: object = None, **kws: object) -> str:
        if kws.get("listid") == "other.example.com":
            raise QueueError("cannot enqueue to 'in': disk full")
        return enqueue(msg, metadata, **kws)  # type: ignore[arg-type]

    monkeypatch.setattr(incoming, "enqueue", fail_for_other)
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("other@example.com")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    first = client.data(wire(SAMPLE))
    second = client.getreply()
    assert first[0] == 451
    assert first[1].startswith(b"4.3.0 other@example.com:")
    assert second[0] == 250
    [item] = get_queue_messages("in", expected_count=1)
    assert item.msgdata["listid"] == "test.example.com"


def test_stop_ends_run_promptly_and_closes_idle_sessions(
    client: smtplib.LMTP, server: ServerThread
) -> None:
    assert client.noop()[0] == 250
    server.stop()
    assert not server.runner.ready.is_set()
    code, _ = client.getreply()
    assert code == 421
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.getreply()


def test_stop_in_the_middle_of_data_queues_nothing(
    client: smtplib.LMTP, server: ServerThread, lmtp_config: Configuration
) -> None:
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(b"Subject: half a message\r\n\r\nand no end")
    server.stop()
    assert queued(lmtp_config) == 0


def test_stop_before_run_makes_run_return(lmtp_config: Configuration) -> None:
    served = ServerThread(LMTPRunner("lmtp", config=lmtp_config))
    served.runner.stop()
    served.thread.start()
    served.stop()
    assert not served.runner.ready.is_set()


def test_a_port_in_use_is_a_clear_error(lmtp_config: Configuration) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with lmtp_config.pushed("taken", f"[lmtp]\nport: {port}\n"):
            runner = LMTPRunner("lmtp", config=lmtp_config)
        with pytest.raises(Exception, match=rf"cannot listen for LMTP on 127\.0\.0\.1:{port}"):
            runner.run()


# The runner as a process.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def connect(port: int, process: subprocess.Popen[bytes], stderr: Path) -> smtplib.LMTP:
    """Connect to the runner process once it listens; fail if it dies or never does."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return smtplib.LMTP("127.0.0.1", port, timeout=DEADLINE)
        except ConnectionRefusedError:
            if process.poll() is not None:
                pytest.fail(
                    f"the LMTP process exited with {process.returncode}: "
                    f"{stderr.read_text(errors='replace')}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"the LMTP process did not listen within {DEADLINE} s")
            time.sleep(0.02)


def test_the_runner_as_a_process_delivers_and_stops_on_sigterm(
    config: Configuration,
    lists: list[MailingList],
    tmp_path: Path,
    get_queue_messages: GetQueue,
) -> None:
    port = free_port()
    ini = tmp_path / "lmtp.ini"
    ini.write_text(f"[lmtp]\nport: {port}\n", encoding="utf-8")
    stderr = tmp_path / "stderr"
    args = [sys.executable, "-m", "runnerkit.process", "-r", "lmtp", "-C", str(ini)]
    args += ["--var-dir", str(config.paths.var_dir)]
    with stderr.open("wb") as errors:
        process = subprocess.Popen(args, cwd=tmp_path, stdout=errors, stderr=errors)
    try:
        lmtp = connect(port, process, stderr)
        try:
            assert lmtp.sendmail("anne@example.org", ["test@example.com"], wire(SAMPLE)) == {}
        finally:
            lmtp.close()
        os.kill(process.pid, signal.SIGTERM)
        try:
            status = process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the LMTP process still running {DEADLINE} s after SIGTERM")
        assert status == 0, stderr.read_text(errors="replace")
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=DEADLINE)
    [item] = get_queue_messages("in", expected_count=1)
    assert item.msgdata["listid"] == "test.example.com"
    assert item.msg.as_bytes() == SAMPLE


def nested(depth: int) -> bytes:
    """A message whose multipart parts nest *depth* deep."""
    parts = [b"From: anne@example.org\nTo: test@example.com\nSubject: nested\n"]
    for level in range(depth):
        parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level))
    parts.append(b"Content-Type: text/plain\n\nleaf\n")
    parts.extend(b"--b%d--\n" % level for level in reversed(range(depth)))
    return b"".join(parts)


@pytest.fixture
def roomy_client(
    config: Configuration, lists: list[MailingList]
) -> Iterator[tuple[smtplib.LMTP, Configuration]]:
    """A client of an LMTP server that takes messages of any size."""
    with config.pushed("roomy", "[lmtp]\nport: 0\nmax_message_size: 0\n"):
        served = ServerThread(LMTPRunner("lmtp", config=config))
        served.start()
        lmtp = smtplib.LMTP("127.0.0.1", served.runner.port, timeout=DEADLINE)
        try:
            lmtp.ehlo()
            yield lmtp, config
        finally:
            lmtp.close()
            served.stop()


# 150 levels: the queue file refuses it.  (Deeper still, the email parser itself runs
# out of stack: tests/test_cli.py shows that path in a process of its own, where the
# exhausted stack cannot disturb anything else.)
@pytest.mark.parametrize("depth", [150])
def test_a_message_too_deep_to_queue_gets_a_permanent_5xx_once_per_recipient(
    roomy_client: tuple[smtplib.LMTP, Configuration], depth: int
) -> None:
    client, lmtp_config = roomy_client
    # No retry could ever queue it: a 4xx would make the sending MTA try for days.
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    assert client.rcpt("other@example.com")[0] == 250
    replies = [client.data(wire(nested(depth))), client.getreply()]
    for code, text in replies:
        assert code == 554, text
        assert b"5.6.0" in text
        assert b"too deep" in text
    assert queued(lmtp_config) == 0
    # The server goes on.
    assert client.sendmail("anne@example.org", ["test@example.com"], wire(nested(3))) == {}
    assert queued(lmtp_config) == 1


def test_the_listening_address_is_published_while_it_listens(
    lmtp_config: Configuration, lists: list[MailingList]
) -> None:
    # With port: 0 the system picks the port; a client (the demo, an operator) reads it.
    from runnerkit.runners.lmtp import read_address

    served = ServerThread(LMTPRunner("lmtp", config=lmtp_config))
    served.start()
    try:
        assert read_address(lmtp_config.paths.var_dir) == ("127.0.0.1", served.runner.port)
    finally:
        served.stop()
    assert read_address(lmtp_config.paths.var_dir) is None


def test_a_message_the_parser_cannot_read_gets_a_permanent_5xx_once_per_recipient(
    client: smtplib.LMTP, lmtp_config: Configuration, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runnerkit import limits
    from runnerkit.errors import MessageError

    def unreadable(data: bytes) -> None:
        raise MessageError("the message cannot be read: its MIME structure is too deep to parse")

    monkeypatch.setattr(limits, "message_from_bytes", unreadable)
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    assert client.rcpt("other@example.com")[0] == 250
    for rcpt, (code, text) in zip(
        ("test", "other"), (client.data(wire(SAMPLE)), client.getreply()), strict=True
    ):
        expected = (
            f"5.6.0 {rcpt}@example.com: the message is refused: its MIME structure is too "
            "deep to parse: far more than [limits] max_mime_depth (100) levels of parts"
        )
        assert code == 554, text
        assert text == expected.encode()
    assert queued(lmtp_config) == 0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"Subject: no sender\n\nhello\n",
            b"5.6.0 test@example.com: the message is refused: the message has no From header",
        ),
        (
            b"From: Anne <>\nSubject: no address\n\nhello\n",
            b"5.6.0 test@example.com: the message is refused: the message's From header names "
            b"no address",
        ),
        (
            bytes(range(1, 256)) * 4,
            b"5.6.0 test@example.com: the message is refused: it has no header fields: it is "
            b"not an email message (RFC 5322 2.1)",
        ),
    ],
)
def test_a_post_the_in_runner_could_only_put_in_bad_is_refused_for_good(
    client: smtplib.LMTP, lmtp_config: Configuration, content: bytes, reason: bytes
) -> None:
    """As inject refuses it: the sender hears it now, nothing waits in bad."""
    assert client.mail("anne@example.org")[0] == 250
    assert client.rcpt("test@example.com")[0] == 250
    code, text = client.data(content.replace(b"\n", b"\r\n"))
    assert (code, text) == (554, reason)
    assert queued(lmtp_config) == 0
    assert lmtp_config.switchboards["bad"].files == []


def test_sessions_beyond_max_connections_are_told_to_try_again_later(
    lmtp_config: Configuration, lists: list[MailingList]
) -> None:
    """60 concurrent 9 MB messages held 623 MB: sessions are capped, and one more is
    answered 421 at once, before anything of it is read."""
    lmtp_config.push("cap", "[lmtp]\nmax_connections: 2\n")
    served = ServerThread(LMTPRunner("lmtp", config=lmtp_config))
    lmtp_config.pop("cap")  # read by the runner when it was made
    served.start()
    try:
        port = served.runner.port
        first = smtplib.LMTP("127.0.0.1", port, timeout=DEADLINE)
        second = smtplib.LMTP("127.0.0.1", port, timeout=DEADLINE)
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as third:
            greeting = third.makefile("rb").readline()
        assert greeting == (
            b"421 4.3.2 Too many sessions at once ([lmtp] max_connections); try again later\r\n"
        )
        first.quit()
        # A place is free again.
        deadline = time.monotonic() + DEADLINE
        while True:
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as fourth:
                if fourth.makefile("rb").readline().startswith(b"220 "):
                    break
            assert time.monotonic() < deadline, "no place came free"
            time.sleep(0.05)
        second.quit()
    finally:
        served.stop()


def test_after_a_database_error_lookups_use_a_new_connection(
    lmtp_config: Configuration,
    lists: list[MailingList],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the SQLite file was damaged and restored in place, LMTP answered 451 for
    over 120 s until a restart: after a database error it opens the file afresh."""
    failing: list[bool] = [False]
    real_get = ListManager.get

    def get(self: ListManager, fqdn_listname: str) -> MailingList | None:
        if failing[0]:
            failing[0] = False
            raise sqlite3.DatabaseError("database disk image is malformed")
        return real_get(self, fqdn_listname)

    monkeypatch.setattr(ListManager, "get", get)
    served = ServerThread(LMTPRunner("lmtp", config=lmtp_config))
    served.start()
    client = smtplib.LMTP("127.0.0.1", served.runner.port, timeout=DEADLINE)
    try:
        client.ehlo()
        assert client.mail("anne@example.org")[0] == 250
        failing[0] = True
        assert client.rcpt("test@example.com")[0] == 451
        assert client.rcpt("test@example.com")[0] == 250
    finally:
        client.close()
        served.stop()
    assert "opened the database afresh after an error" in caplog.text
