"""Bounces: reading delivery reports, recording them against members, and the schema.

The runner works a real ``bounces`` queue of the world's var dir, and records into the
world's SQLite file; one test takes a bounce in over LMTP from a real LMTP runner.
"""

from __future__ import annotations

import base64
import json
import logging
import quopri
import smtplib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mail_servers import DEADLINE, LMTPServerThread

from runnerkit.bounces import FailedRecipient, scan
from runnerkit.database import Database
from runnerkit.lists import MailingList
from runnerkit.message import message_from_string
from runnerkit.runners.bounce import (
    BounceEvent,
    BounceRunner,
    BounceState,
    bounce_events,
    bounce_state,
    record_bounce,
)
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.site import Site
from runnerkit.testing.helpers import QueueItem

GetQueue = Callable[..., list[QueueItem]]
MakeRunner = Callable[..., Any]

DSN = """\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: test-bounces@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.net>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="RPT"

--RPT
Content-Type: text/plain

Your message could not be delivered to some recipients.

--RPT
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Mon, 1 Jan 2024 00:00:00 +0000

Original-Recipient: rfc822;Bart@Example.org
Final-Recipient: rfc822; bart.forwarded@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 no such user

Final-Recipient: rfc822; cris@example.org
Action: delayed
Status: 4.4.1

Final-Recipient: rfc822; <dave@example.org>
Action: failed
Status: 5.2.2 (mailbox full)

--RPT
Content-Type: text/rfc822-headers

From: anne@example.org
Subject: hello

--RPT--
"""

DELAYED = """\
From: MAILER-DAEMON@mx.example.net
Message-ID: <dsn-2@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type="Delivery-Status"; boundary="RPT"

--RPT
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; bart@example.org
Action: delayed
Status: 4.4.7

--RPT--
"""

QSBMF = """\
From: MAILER-DAEMON@mx.example.net
Subject: failure notice
Message-ID: <qsbmf-1@mx.example.net>

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<bart@example.org>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <bart@example.org>: Recipient address rejected
Giving up on 192.0.2.1.

<erin@example.org>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

<frank@example.org>:
not a recipient paragraph: this is the returned message.
"""

NOT_A_REPORT = """\
From: someone@example.net
Subject: out of office
Message-ID: <ooo@example.net>

I am away until Monday.
"""


def dsn(*blocks: str) -> str:
    """A minimal DSN holding these per-recipient blocks."""
    body = "\n".join(blocks)
    return (
        "From: MAILER-DAEMON@mx.example.net\nMessage-ID: <dsn-x@mx.example.net>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        f"{body}\n--B--\n"
    )


@pytest.fixture
def mlist(create_list: Callable[..., MailingList]) -> MailingList:
    mlist = create_list("test@example.com")
    for address in ("bart@example.org", "cris@example.org", "dave@example.org"):
        mlist.subscribe(address)
    mlist.subscribe("erin@example.org", role="owner")
    return mlist


def queue_bounce(config: Site, mlist: MailingList, text: str) -> None:
    config.switchboards["bounces"].enqueue(
        message_from_string(text),
        listid=mlist.list_id,
        listname=mlist.fqdn_listname,
        original_sender="",
    )


def run_bounces(make_testable_runner: MakeRunner) -> None:
    make_testable_runner(BounceRunner, "bounces").run()


# Reading reports.


def test_a_dsn_names_its_failed_recipients_and_not_the_delayed_ones() -> None:
    report = scan(message_from_string(DSN))
    assert report.context == "dsn"
    assert report.failed == [
        FailedRecipient(("Bart@Example.org", "bart.forwarded@example.net"), "5.1.1", "dsn"),
        FailedRecipient(("dave@example.org",), "5.2.2", "dsn"),
    ]
    assert report.other == [("cris@example.org", "delayed")]


def test_a_dsn_recipient_is_read_in_any_case_and_needs_an_rfc822_address() -> None:
    report = scan(
        message_from_string(
            dsn(
                "final-recipient: RFC822; a@example.org\naction: FAILED\nstatus: 5.0.0\n",
                "Final-Recipient: x400; /C=US/S=b/\nAction: failed\nStatus: 5.0.0\n",
                "Final-Recipient: rfc822; c@example.org\nAction: failed\n",
            )
        )
    )
    assert report.failed == [
        FailedRecipient(("a@example.org",), "5.0.0", "dsn"),
        FailedRecipient(("c@example.org",), "", "dsn"),
    ]


def test_a_comment_after_the_action_is_no_part_of_it() -> None:
    """Some MTAs add a comment to Action (GNU Mailman's DSN detector allows for it)."""
    report = scan(
        message_from_string(
            dsn(
                "Final-Recipient: rfc822; a@example.org\n"
                "Action: failed (bad destination mailbox address)\nStatus: 5.1.1\n",
                "Final-Recipient: rfc822; b@example.org\nAction: (still trying) delayed\n",
            )
        )
    )
    assert report.failed == [FailedRecipient(("a@example.org",), "5.1.1", "dsn")]
    assert report.other == [("b@example.org", "delayed")]


def test_a_report_that_runs_its_blocks_together_still_names_the_recipient() -> None:
    text = (
        "From: MAILER-DAEMON@mx.example.net\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n"
        "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.1.1\n--B--\n"
    )
    assert scan(message_from_string(text)).failed == [
        FailedRecipient(("a@example.org",), "5.1.1", "dsn")
    ]


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_an_encoded_status_part_is_decoded_before_it_is_read(encoding: str) -> None:
    fields = (
        "Reporting-MTA: dns; mx\n\n"
        "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.1.1\n"
    )
    body = (
        base64.encodebytes(fields.encode()).decode()
        if encoding == "base64"
        else quopri.encodestring(fields.encode(), quotetabs=True).decode()
    )
    text = (
        "From: MAILER-DAEMON@mx.example.net\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: message/delivery-status\n"
        f"Content-Transfer-Encoding: {encoding}\n\n{body}\n--B--\n"
    )
    assert scan(message_from_string(text)).failed == [
        FailedRecipient(("a@example.org",), "5.1.1", "dsn")
    ]


def test_a_qsbmf_bounce_names_the_recipients_before_the_returned_message() -> None:
    report = scan(message_from_string(QSBMF))
    assert report.context == "qsbmf"
    assert report.failed == [
        FailedRecipient(("bart@example.org",), "5.1.1", "qsbmf"),
        FailedRecipient(("erin@example.org",), "5.1.1", "qsbmf"),
    ]


def test_other_messages_are_no_report() -> None:
    report = scan(message_from_string(NOT_A_REPORT))
    assert (report.context, report.failed, report.other) == (None, [], [])


# Recording them.


def test_each_failed_member_gets_an_event_a_score_and_a_date(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "runnerkit.runners.bounce")
    before = datetime.now(UTC)
    queue_bounce(config, mlist, DSN)
    run_bounces(make_testable_runner)
    after = datetime.now(UTC)
    events = bounce_events(config.database)
    assert [(e.list_id, e.email, e.status, e.action, e.message_id, e.context) for e in events] == [
        (
            "test.example.com",
            "bart@example.org",
            "5.1.1",
            "failed",
            "<dsn-1@mx.example.net>",
            "dsn",
        ),
        (
            "test.example.com",
            "dave@example.org",
            "5.2.2",
            "failed",
            "<dsn-1@mx.example.net>",
            "dsn",
        ),
    ]
    assert before <= datetime.fromisoformat(events[0].timestamp) <= after
    bart = bounce_state(config.database, mlist, "BART@example.org")
    assert bart is not None
    assert (bart.bounce_score, bart.last_bounce_received) == (1, events[0].timestamp)
    cris = bounce_state(config.database, mlist, "cris@example.org")
    assert cris is not None
    assert (cris.bounce_score, cris.last_bounce_received) == (0, None)
    assert "recorded a bounce on test@example.com for bart@example.org (5.1.1)" in caplog.text
    for name in ("bounces", "bad", "shunt"):
        get_queue_messages(name, expected_count=0)


def test_bounces_add_up_and_the_last_date_moves_on(
    config: Site, mlist: MailingList, make_testable_runner: MakeRunner
) -> None:
    queue_bounce(config, mlist, DSN)
    queue_bounce(config, mlist, QSBMF)
    run_bounces(make_testable_runner)
    events = bounce_events(config.database)
    assert [(e.email, e.context) for e in events] == [
        ("bart@example.org", "dsn"),
        ("dave@example.org", "dsn"),
        ("bart@example.org", "qsbmf"),
    ]
    bart = bounce_state(config.database, mlist, "bart@example.org")
    assert bart == BounceState(2, events[2].timestamp)
    # Committed: another connection sees it.
    with sqlite3.connect(config.database.path) as other:
        assert other.execute(
            "SELECT bounce_score FROM member WHERE email = 'bart@example.org'"
        ).fetchall() == [(2,)]


def test_the_same_bounce_sent_twice_counts_once(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An MTA sends a report again when it lost the LMTP reply (RFC 2033, 4.2)."""
    caplog.set_level(logging.INFO, "runnerkit.runners.bounce")
    queue_bounce(config, mlist, DSN)
    queue_bounce(config, mlist, DSN)
    run_bounces(make_testable_runner)
    assert [e.email for e in bounce_events(config.database)] == [
        "bart@example.org",
        "dave@example.org",
    ]
    assert bounce_state(config.database, mlist, "bart@example.org").bounce_score == 1
    assert "a bounce already recorded on test@example.com for bart@example.org" in caplog.text
    get_queue_messages("bad", expected_count=0)


def test_a_bounce_of_the_same_address_on_another_list_counts_there_only(
    config: Site,
    mlist: MailingList,
    create_list: Callable[..., MailingList],
    make_testable_runner: MakeRunner,
) -> None:
    other = create_list("other@example.com")
    other.subscribe("bart@example.org")
    queue_bounce(config, mlist, QSBMF)
    run_bounces(make_testable_runner)
    assert bounce_state(config.database, mlist, "bart@example.org") is not None
    assert bounce_state(config.database, other, "bart@example.org") == BounceState(0, None)


def test_a_delay_notice_is_no_bounce_and_is_dropped(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "runnerkit.runners.bounce")
    queue_bounce(config, mlist, DELAYED)
    run_bounces(make_testable_runner)
    assert bounce_events(config.database) == []
    assert "is a notice, not a bounce (bart@example.org: delayed); dropped" in caplog.text
    get_queue_messages("bad", expected_count=0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            NOT_A_REPORT,
            "No failed recipient found: the message is neither an RFC 3464 delivery "
            "status notification nor a qmail (QSBMF) bounce.",
        ),
        (dsn(), "No failed recipient found in the dsn report."),
        (
            dsn("Final-Recipient: rfc822; zed@example.org\nAction: failed\nStatus: 5.1.1\n"),
            "No failed recipient is a member of test@example.com: zed@example.org.",
        ),
        (
            dsn("Final-Recipient: rfc822; bart@example.org\nAction: bounced\n"),
            "The dsn report gives bart@example.org the action 'bounced', which is not one "
            "of RFC 3464's.",
        ),
    ],
)
def test_a_bounce_without_a_failed_member_is_kept_in_bad_with_the_reason(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
    caplog: pytest.LogCaptureFixture,
    text: str,
    reason: str,
) -> None:
    queue_bounce(config, mlist, text)
    run_bounces(make_testable_runner)
    assert bounce_events(config.database) == []
    [item] = get_queue_messages("bad", expected_count=1)
    assert item.msgdata["reason"] == reason
    assert item.msgdata["listid"] == "test.example.com"
    assert "to bad as " in caplog.text
    assert reason in caplog.text


def test_an_owner_that_is_no_member_is_not_scored(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    # QSBMF names bart (a member) and erin (an owner only).
    queue_bounce(config, mlist, QSBMF)
    run_bounces(make_testable_runner)
    assert [event.email for event in bounce_events(config.database)] == ["bart@example.org"]
    get_queue_messages("bad", expected_count=0)


def test_a_bounce_comes_in_over_lmtp_to_the_bounces_address(
    config: Site, mlist: MailingList, make_testable_runner: MakeRunner
) -> None:
    with config.pushed("lmtp-test", "[lmtp]\nport: 0\n"):
        server = LMTPServerThread(LMTPRunner("lmtp", config=config))
        server.start()
        try:
            with smtplib.LMTP("127.0.0.1", server.runner.port, timeout=DEADLINE) as client:
                data = DSN.encode().replace(b"\n", b"\r\n")
                assert client.sendmail("<>", ["test-bounces@example.com"], data) == {}
        finally:
            server.stop()
    run_bounces(make_testable_runner)
    assert [event.email for event in bounce_events(config.database)] == [
        "bart@example.org",
        "dave@example.org",
    ]


# The schema: a database made before bounces were recorded.

#: The schema of runnerkit before bounces (the tables as they were, word for word).
OLD_SCHEMA = """\
CREATE TABLE mailing_list (
    id INTEGER PRIMARY KEY,
    list_name TEXT NOT NULL,
    mail_host TEXT NOT NULL,
    fqdn_listname TEXT NOT NULL UNIQUE,
    list_id TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    preferred_language TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE member (
    id INTEGER PRIMARY KEY,
    mailing_list INTEGER NOT NULL REFERENCES mailing_list(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    display_name TEXT NOT NULL,
    preferred_language TEXT,
    role TEXT NOT NULL,
    UNIQUE (mailing_list, email, role)
);
CREATE TABLE delivery_failure (
    id INTEGER PRIMARY KEY,
    list_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    code INTEGER,
    response TEXT NOT NULL,
    message_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at TEXT NOT NULL
);
INSERT INTO mailing_list VALUES
    (1, 'test', 'example.com', 'test@example.com', 'test.example.com', 'Test', 'en', 'then');
INSERT INTO member VALUES (1, 1, 'bart@example.org', 'bart@example.org', '', NULL, 'member');
"""


def old_database(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_SCHEMA)
    connection.close()
    return path


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as connection:
        found = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
    connection.close()
    return found


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        found = {row[0] for row in rows}
    connection.close()
    return found


def test_an_old_database_gets_the_new_columns_and_tables_when_opened(tmp_path: Path) -> None:
    path = old_database(tmp_path / "runnerkit.db")
    assert "bounce_score" not in columns(path, "member")
    Database(path).close()
    assert columns(path, "member")[-2:] == ["bounce_score", "last_bounce_received"]
    assert {"bounce_event", "pended"} <= tables(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute(
            "SELECT email, bounce_score, last_bounce_received FROM member"
        ).fetchall() == [("bart@example.org", 0, None)]
    connection.close()
    # Opening it again finds nothing left to do.
    Database(path).close()
    assert columns(path, "member").count("bounce_score") == 1


def test_a_bounce_is_recorded_in_a_database_made_by_the_old_schema(
    world: Any, make_testable_runner: MakeRunner
) -> None:
    config: Site = world.config
    old_database(config.database_path)
    mlist = config.lists.get("test@example.com")
    assert mlist is not None
    queue_bounce(config, mlist, QSBMF)
    run_bounces(make_testable_runner)
    state = bounce_state(config.database, mlist, "bart@example.org")
    assert state == BounceState(1, bounce_events(config.database)[0].timestamp)
    assert [event.email for event in bounce_events(config.database)] == ["bart@example.org"]


def test_a_read_only_connection_leaves_an_old_database_as_it_is(tmp_path: Path) -> None:
    path = old_database(tmp_path / "runnerkit.db")
    before = path.read_bytes()
    database = Database(path, read_only=True)
    try:
        rows = database.connection.execute("SELECT email FROM member").fetchall()
        assert rows == [("bart@example.org",)]
    finally:
        database.close()
    assert "bounce_score" not in columns(path, "member")
    assert "bounce_event" not in tables(path)
    assert path.read_bytes() == before


def test_bounce_event_is_a_row_of_the_table(config: Site, mlist: MailingList) -> None:
    event = BounceEvent(
        "test.example.com",
        "cris@example.org",
        "2024-01-01T00:00:00+00:00",
        "5.1.1",
        "failed",
        "<x@y>",
        "dsn",
    )
    record_bounce(config.database, event)
    config.database.commit()
    assert bounce_events(config.database) == [event]
    assert bounce_state(config.database, mlist, "cris@example.org") == BounceState(
        1, "2024-01-01T00:00:00+00:00"
    )


# What an operator sees.


def members_bounces(
    config: Site, listname: str, *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runnerkit", "members", "bounces", listname, *options,
         "--var-dir", str(config.paths.var_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_members_bounces_shows_the_scores_and_the_events(
    config: Site, mlist: MailingList, make_testable_runner: MakeRunner
) -> None:
    queue_bounce(config, mlist, DSN)
    queue_bounce(config, mlist, QSBMF)
    run_bounces(make_testable_runner)
    events = bounce_events(config.database)
    result = members_bounces(config, "test.example.com")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"bart@example.org  score 2  last {events[2].timestamp}",
        f"dave@example.org  score 1  last {events[1].timestamp}",
        f"{events[0].timestamp}  bart@example.org  5.1.1  dsn  <dsn-1@mx.example.net>",
        f"{events[1].timestamp}  dave@example.org  5.2.2  dsn  <dsn-1@mx.example.net>",
        f"{events[2].timestamp}  bart@example.org  5.1.1  qsbmf  <qsbmf-1@mx.example.net>",
    ]
    document = json.loads(members_bounces(config, "test.example.com", "--json").stdout)
    assert document["list"] == "test@example.com"
    assert document["members"] == [
        {"address": "bart@example.org", "bounce_score": 2,
         "last_bounce_received": events[2].timestamp},
        {"address": "dave@example.org", "bounce_score": 1,
         "last_bounce_received": events[1].timestamp},
    ]  # fmt: skip
    assert [(e["address"], e["status"], e["context"]) for e in document["events"]] == [
        ("bart@example.org", "5.1.1", "dsn"),
        ("dave@example.org", "5.2.2", "dsn"),
        ("bart@example.org", "5.1.1", "qsbmf"),
    ]


def test_members_bounces_reads_an_old_database_without_changing_it(world: Any) -> None:
    config: Site = world.config
    path = old_database(config.database_path)
    before = path.read_bytes()
    result = members_bounces(config, "test@example.com")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert path.read_bytes() == before
    assert "bounce_score" not in columns(path, "member")
