"""A list's other addresses: -owner, -bounces, -request, -join, -leave, -confirm.

A real LMTP runner (in a thread, on a free port) takes the mail, spoken to with
:class:`smtplib.LMTP`; real runners work the queues of the world's var dir; the
database is the world's SQLite file; replies are delivered to a local aiosmtpd server.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest
from mail_servers import DEADLINE, AnyPortController, LMTPServerThread, RecordingHandler

from runnerkit.errors import QueueError
from runnerkit.lists import MailingList
from runnerkit.message import message_from_string
from runnerkit.runners.command import CommandRunner, pend, pendings
from runnerkit.runners.incoming import IncomingRunner
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.runners.outgoing import OutgoingRunner, mailbox_name
from runnerkit.site import Site
from runnerkit.testing.helpers import QueueItem

GetQueue = Callable[..., list[QueueItem]]
MakeRunner = Callable[..., Any]

MESSAGE = b"""\
From: Anne Person <anne@example.org>
To: test-owner@example.com
Subject: hello
Message-ID: <hello@example.org>

Hello.
"""


def wire(message: bytes) -> bytes:
    return message.replace(b"\n", b"\r\n")


@pytest.fixture
def mlist(create_list: Callable[..., MailingList]) -> MailingList:
    mlist = create_list("test@example.com")
    mlist.subscribe("bart@example.org")
    return mlist


@pytest.fixture
def server(config: Site, mlist: MailingList) -> Iterator[LMTPServerThread]:
    with config.pushed("lmtp-test", "[lmtp]\nport: 0\n"):
        served = LMTPServerThread(LMTPRunner("lmtp", config=config))
        served.start()
        try:
            yield served
        finally:
            if served.thread.is_alive():
                served.stop()


@pytest.fixture
def client(server: LMTPServerThread) -> Iterator[smtplib.LMTP]:
    lmtp = smtplib.LMTP("127.0.0.1", server.runner.port, timeout=DEADLINE)
    lmtp.ehlo()
    try:
        yield lmtp
    finally:
        lmtp.close()


@pytest.fixture
def smtpd(config: Site) -> Iterator[RecordingHandler]:
    """A local SMTP server, with ``[delivery]`` pointing the out runner at it."""
    handler = RecordingHandler()
    controller = AnyPortController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        with config.pushed(
            "smtp",
            f"[delivery]\nmethod: smtp\nsmtp_host: 127.0.0.1\nsmtp_port: {controller.port}\n",
        ):
            yield handler
    finally:
        controller.stop()


# LMTP: which address goes where.


@pytest.mark.parametrize(
    ("recipient", "queue", "flag"),
    [
        ("test@example.com", "in", "tolist"),
        ("test-owner@example.com", "in", "toowner"),
        ("Test-Owner@Example.COM", "in", "toowner"),
        ("test-request@example.com", "command", "torequest"),
        ("test-join@example.com", "command", "tojoin"),
        ("test-subscribe@example.com", "command", "tojoin"),
        ("test-leave@example.com", "command", "toleave"),
        ("TEST-UNSUBSCRIBE@example.com", "command", "toleave"),
        ("test-confirm@example.com", "command", "toconfirm"),
    ],
)
def test_each_list_address_is_queued_to_its_queue_with_its_flag(
    client: smtplib.LMTP, get_queue_messages: GetQueue, recipient: str, queue: str, flag: str
) -> None:
    assert client.sendmail("anne@example.org", [recipient], wire(MESSAGE)) == {}
    [item] = get_queue_messages(queue, expected_count=1)
    assert item.msgdata[flag] is True
    assert item.msgdata["listid"] == "test.example.com"
    assert item.msgdata["listname"] == "test@example.com"
    assert item.msgdata["original_sender"] == "anne@example.org"
    assert "token" not in item.msgdata
    for other in {"in", "bounces", "command"} - {queue}:
        get_queue_messages(other, expected_count=0)


def test_the_bounces_address_is_queued_to_bounces_with_no_flag(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    assert client.sendmail("<>", ["test-BOUNCES@example.com"], wire(MESSAGE)) == {}
    [item] = get_queue_messages("bounces", expected_count=1)
    assert item.msgdata["listid"] == "test.example.com"
    assert item.msgdata["original_sender"] == ""
    assert not {"tolist", "toowner", "torequest"} & set(item.msgdata)
    get_queue_messages("in", expected_count=0)


def test_a_confirm_address_with_a_token_carries_the_token(
    client: smtplib.LMTP, get_queue_messages: GetQueue
) -> None:
    token = "0123456789abcdef0123456789abcdef01234567"
    assert (
        client.sendmail("anne@example.org", [f"test-confirm+{token}@example.com"], wire(MESSAGE))
        == {}
    )
    [item] = get_queue_messages("command", expected_count=1)
    assert item.msgdata["toconfirm"] is True
    assert item.msgdata["token"] == token


@pytest.mark.parametrize(
    "recipient",
    [
        "test-bogus@example.com",
        "test-owner+x@example.com",
        "test-confirm+@example.com",
        "test-request+detail@example.com",
        "nosuch-owner@example.com",
        "-owner@example.com",
        "test-owner",
    ],
)
def test_any_other_address_is_still_refused_with_550(
    client: smtplib.LMTP, config: Site, recipient: str
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        client.sendmail("anne@example.org", [recipient], wire(MESSAGE))
    [(code, text)] = raised.value.recipients.values()
    assert (code, text[:5]) == (550, b"5.1.1")
    for name in ("in", "bounces", "command"):
        assert config.switchboards[name].files == []


def test_the_bounces_address_of_another_domain_is_relay_denied(client: smtplib.LMTP) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        client.sendmail("anne@example.org", ["test-bounces@example.net"], wire(MESSAGE))
    [(code, text)] = raised.value.recipients.values()
    assert (code, text[:5]) == (550, b"5.7.1")


def test_several_addresses_of_one_list_get_a_reply_and_a_queue_entry_each(
    client: smtplib.LMTP,
    config: Site,
    get_queue_messages: GetQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bounces = config.switchboards["bounces"]

    def full(*args: object, **kws: object) -> str:
        raise QueueError("cannot enqueue to 'bounces': disk full")

    monkeypatch.setattr(bounces, "enqueue", full)
    assert client.mail("anne@example.org")[0] == 250
    recipients = [
        "test@example.com",
        "test-owner@example.com",
        "test-bounces@example.com",
        "test-request@example.com",
        "TEST-OWNER@example.com",
    ]
    for recipient in recipients:
        assert client.rcpt(recipient)[0] == 250
    replies = [client.data(wire(MESSAGE))] + [client.getreply() for _ in recipients[1:]]
    # Exactly one reply per recipient, in order: the next command gets its own.
    assert client.noop()[0] == 250
    assert [code for code, _ in replies] == [250, 250, 451, 250, 250]
    for (_, text), recipient in zip(replies, recipients, strict=True):
        # The same address twice (in any case) is queued once and answered twice.
        assert text.split()[1].lower() == f"{recipient}:".lower().encode()
    items = get_queue_messages("in", expected_count=2)
    assert sorted(
        flag for item in items for flag in ("tolist", "toowner") if item.msgdata.get(flag)
    ) == ["tolist", "toowner"]
    [request] = get_queue_messages("command", expected_count=1)
    assert request.msgdata["torequest"] is True


# -owner: to the owners, not the members.


def enqueue_to_owner(config: Site, mlist: MailingList, message: bytes = MESSAGE) -> None:
    config.switchboards["in"].enqueue(
        message.decode(),
        listid=mlist.list_id,
        listname=mlist.fqdn_listname,
        original_sender="anne@example.org",
        toowner=True,
    )


def test_a_message_to_the_owners_goes_to_out_for_the_owners_only(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    mlist.subscribe("olga@example.org", role="owner")
    mlist.subscribe("otto@example.org", role="owner")
    mlist.subscribe("mona@example.org", role="moderator")
    enqueue_to_owner(config, mlist)
    make_testable_runner(IncomingRunner, "in").run()
    get_queue_messages("pipeline", expected_count=0)
    [item] = get_queue_messages("out", expected_count=1)
    assert item.msgdata["recipients"] == ["olga@example.org", "otto@example.org"]
    # Not list traffic: no subject prefix, no list headers.
    assert item.msg["Subject"] == "hello"


def test_owner_mail_is_delivered_by_smtp_to_the_owners_from_the_bounces_address(
    client: smtplib.LMTP,
    mlist: MailingList,
    smtpd: RecordingHandler,
    make_testable_runner: MakeRunner,
) -> None:
    mlist.subscribe("olga@example.org", role="owner")
    assert client.sendmail("anne@example.org", ["test-owner@example.com"], wire(MESSAGE)) == {}
    make_testable_runner(IncomingRunner, "in").run()
    make_testable_runner(OutgoingRunner, "out").run()
    [received] = smtpd.received
    assert received.rcpt_tos == ["olga@example.org"]
    assert received.mail_from == "test-bounces@example.com"
    assert message_from_bytes(received.content)["Message-ID"] == "<hello@example.org>"


def test_owner_mail_delivered_to_maildirs_goes_to_each_owners_own_and_not_the_lists(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
) -> None:
    mlist.subscribe("Olga@example.org", role="owner")
    enqueue_to_owner(config, mlist)
    make_testable_runner(IncomingRunner, "in").run()
    make_testable_runner(OutgoingRunner, "out").run()
    maildir = config.delivery.maildir
    assert not (maildir / mlist.list_id).exists()
    [path] = (maildir / "olga@example.org" / "new").iterdir()
    assert message_from_bytes(path.read_bytes())["Message-ID"] == "<hello@example.org>"


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("Olga@Example.org", "olga@example.org"),
        ("a/b@example.org", "a%2Fb@example.org"),
        ("..", "%2E."),
        ("", "%00"),
    ],
)
def test_a_recipients_maildir_name_is_one_plain_directory_name(address: str, name: str) -> None:
    assert mailbox_name(address) == name


def test_a_message_to_the_owners_of_a_list_without_owners_is_kept_in_bad(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    enqueue_to_owner(config, mlist)
    make_testable_runner(IncomingRunner, "in").run()
    get_queue_messages("out", expected_count=0)
    get_queue_messages("pipeline", expected_count=0)
    [item] = get_queue_messages("bad", expected_count=1)
    assert item.msgdata["reason"] == (
        "The message is for the owners of test@example.com, which has none."
    )
    assert item.msgdata["toowner"] is True


# -join, -leave, -request, -confirm: requests confirmed by a mailed token.


def queue_request(config: Site, mlist: MailingList, text: str, **flags: Any) -> None:
    metadata = {"original_sender": "anne@example.org", **flags}
    config.switchboards["command"].enqueue(
        message_from_string(text),
        listid=mlist.list_id,
        listname=mlist.fqdn_listname,
        **metadata,
    )


REQUEST = """\
From: Anne Person <anne@example.org>
To: test-join@example.com
Subject: {subject}
Message-ID: <request@example.org>

{body}
"""


def request(subject: str = "", body: str = "") -> str:
    return REQUEST.format(subject=subject, body=body)


def run_commands(make_testable_runner: MakeRunner) -> None:
    make_testable_runner(CommandRunner, "command").run()


def test_a_join_is_only_pended_and_its_token_mailed_to_the_address(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    queue_request(config, mlist, request("please"), tojoin=True)
    run_commands(make_testable_runner)
    # Not subscribed on the strength of a From.
    assert mlist.get_member("anne@example.org") is None
    [pended] = pendings(config.database)
    assert (pended.email, pended.display_name, pended.action) == (
        "anne@example.org",
        "Anne Person",
        "join",
    )
    assert pended.list_id == "test.example.com"
    created = datetime.fromisoformat(pended.created_at)
    assert datetime.fromisoformat(pended.expiration_date) - created == timedelta(days=3)
    [item] = get_queue_messages("out", expected_count=1)
    assert item.msgdata["recipients"] == ["anne@example.org"]
    assert item.msgdata["listid"] == "test.example.com"
    reply = item.msg
    assert reply["To"] == "anne@example.org"
    assert reply["Subject"] == f"confirm {pended.token}"
    assert reply["Reply-To"] == reply["From"] == f"test-confirm+{pended.token}@example.com"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == "<request@example.org>"
    assert f"confirm {pended.token}" in str(reply.get_payload())


def test_replying_to_the_confirm_address_subscribes_the_address(
    client: smtplib.LMTP,
    config: Site,
    mlist: MailingList,
    smtpd: RecordingHandler,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    join = request("join").replace("To: test-join", "To: test-request").encode()
    assert client.sendmail("anne@example.org", ["test-request@example.com"], wire(join)) == {}
    run_commands(make_testable_runner)
    make_testable_runner(OutgoingRunner, "out").run()
    [mailed] = smtpd.received
    assert mailed.rcpt_tos == ["anne@example.org"]
    assert mailed.mail_from == "test-bounces@example.com"
    confirmation = message_from_bytes(mailed.content)
    assert confirmation["Auto-Submitted"] == "auto-replied"
    reply_to = str(confirmation["Reply-To"])
    # Anyone who can read anne's mailbox replies; here, from another address still.
    answer = b"From: someone@example.org\nSubject: Re: confirm\n\nyes\n"
    assert client.sendmail("someone@example.org", [reply_to], wire(answer)) == {}
    run_commands(make_testable_runner)
    member = mlist.get_member("anne@example.org")
    assert member is not None
    assert member.display_name == "Anne Person"
    assert pendings(config.database) == []
    make_testable_runner(OutgoingRunner, "out").run()
    welcome = smtpd.received[-1]
    assert welcome.rcpt_tos == ["anne@example.org"]
    assert b"has joined test@example.com" in welcome.content
    get_queue_messages("bad", expected_count=0)


def test_confirm_in_the_subject_of_a_request_leaves_the_list(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    bart = "From: bart@example.org\nSubject: unsubscribe\n\n"
    queue_request(config, mlist, bart, torequest=True)
    run_commands(make_testable_runner)
    assert mlist.get_member("bart@example.org") is not None
    [pended] = pendings(config.database)
    assert pended.action == "leave"
    get_queue_messages("out", expected_count=1)
    queue_request(
        config,
        mlist,
        f"From: bart@example.org\nSubject: Re: confirm {pended.token}\n\n",
        torequest=True,
    )
    run_commands(make_testable_runner)
    assert mlist.get_member("bart@example.org") is None
    [item] = get_queue_messages("out", expected_count=1)
    assert "has left test@example.com" in str(item.msg.get_payload())


def test_commands_are_read_from_the_body_up_to_the_first_other_line(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    body = "help\njoin\n\n-- \nleave\n"
    queue_request(config, mlist, request("", body), torequest=True)
    run_commands(make_testable_runner)
    [pended] = pendings(config.database)
    assert pended.action == "join"
    items = get_queue_messages("out", expected_count=2)
    answer = next(item for item in items if item.msg["Subject"].startswith("Re:"))
    text = str(answer.msg.get_payload())
    assert "This is the request address of the list test@example.com" in text
    assert "join: a confirmation has been mailed to anne@example.org." in text


def test_a_request_without_a_command_is_answered_with_the_help(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    queue_request(config, mlist, request("hi there", "what is this?"), torequest=True)
    run_commands(make_testable_runner)
    assert pendings(config.database) == []
    [item] = get_queue_messages("out", expected_count=1)
    text = str(item.msg.get_payload())
    assert text.startswith("No command found in your message.")
    assert "test-join@example.com" in text
    assert item.msg["Auto-Submitted"] == "auto-replied"


def test_an_expired_or_unknown_token_confirms_nothing(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    old = pend(
        config.database,
        mlist,
        "anne@example.org",
        "",
        "join",
        datetime.now(UTC) - timedelta(days=3, seconds=1),
    )
    config.database.commit()
    queue_request(config, mlist, "From: anne@example.org\n\nhi\n", toconfirm=True, token=old.token)
    queue_request(config, mlist, "From: anne@example.org\n\nhi\n", toconfirm=True, token="f" * 40)
    run_commands(make_testable_runner)
    assert mlist.get_member("anne@example.org") is None
    assert pendings(config.database) == []
    items = get_queue_messages("out", expected_count=2)
    for item, token in zip(items, (old.token, "f" * 40), strict=True):
        assert f"the token {token} is unknown or has expired" in str(item.msg.get_payload())


def test_a_token_of_another_list_confirms_nothing_here(
    config: Site,
    mlist: MailingList,
    create_list: Callable[..., MailingList],
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    other = create_list("other@example.com")
    pended = pend(config.database, other, "anne@example.org", "", "join", datetime.now(UTC))
    config.database.commit()
    queue_request(
        config, mlist, "From: anne@example.org\n\nhi\n", toconfirm=True, token=pended.token
    )
    run_commands(make_testable_runner)
    assert mlist.get_member("anne@example.org") is None
    assert other.get_member("anne@example.org") is None
    [item] = get_queue_messages("out", expected_count=1)
    assert "unknown or has expired" in str(item.msg.get_payload())


@pytest.mark.parametrize(
    ("headers", "metadata", "reason"),
    [
        ("Auto-Submitted: auto-replied\n", {}, "(Auto-Submitted: auto-replied)"),
        ("Auto-Submitted: auto-generated; x\n", {}, "(Auto-Submitted: auto-generated; x)"),
        ("", {"original_sender": ""}, "its envelope sender is null (<>)"),
        ("List-Id: <x.example.net>\n", {}, "it came from a mailing list (it has a List-Id)"),
        ("Precedence: bulk\n", {}, "(Precedence: bulk)"),
        ("Precedence: JUNK\n", {}, "(Precedence: junk)"),
        ("Precedence: list\n", {}, "(Precedence: list)"),
    ],
)
def test_automatic_messages_are_neither_answered_nor_acted_on_but_kept(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
    headers: str,
    metadata: dict[str, str],
    reason: str,
) -> None:
    text = f"From: anne@example.org\n{headers}Subject: join\n\njoin\n"
    queue_request(config, mlist, text, torequest=True, **metadata)
    run_commands(make_testable_runner)
    get_queue_messages("out", expected_count=0)
    assert pendings(config.database) == []
    [item] = get_queue_messages("bad", expected_count=1)
    assert item.msgdata["reason"].startswith("Not acted on or answered (RFC 3834): ")
    assert reason in item.msgdata["reason"]


def test_auto_submitted_no_is_answered(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    queue_request(
        config, mlist, "From: anne@example.org\nAuto-Submitted: no\n\njoin\n", tojoin=True
    )
    run_commands(make_testable_runner)
    get_queue_messages("out", expected_count=1)


def test_a_request_without_a_usable_from_is_kept_in_bad(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    queue_request(config, mlist, "Subject: join\n\njoin\n", tojoin=True)
    queue_request(config, mlist, "From: not an address\n\njoin\n", tojoin=True)
    run_commands(make_testable_runner)
    get_queue_messages("out", expected_count=0)
    reasons = [item.msgdata["reason"] for item in get_queue_messages("bad", expected_count=2)]
    assert reasons[0] == "The request has no From address to answer."
    assert reasons[1].startswith("The request's From address is unusable: invalid email")


def test_a_join_of_a_member_or_a_leave_of_a_stranger_is_answered_and_pends_nothing(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    queue_request(config, mlist, "From: bart@example.org\n\nhi\n", tojoin=True)
    queue_request(config, mlist, "From: anne@example.org\n\nbye\n", toleave=True)
    run_commands(make_testable_runner)
    assert pendings(config.database) == []
    items = get_queue_messages("out", expected_count=2)
    assert [item.msgdata["recipients"] for item in items] == [
        ["bart@example.org"],
        ["anne@example.org"],
    ]
    assert [str(item.msg.get_payload()) for item in items] == [
        "join: bart@example.org is already a member of test@example.com.\n",
        "leave: anne@example.org is not a member of test@example.com.\n",
    ]


def test_a_leave_sent_to_the_leave_address_is_pended_for_the_member(
    config: Site,
    mlist: MailingList,
    make_testable_runner: MakeRunner,
    get_queue_messages: GetQueue,
) -> None:
    queue_request(config, mlist, "From: Bart@Example.org\n\nbye\n", toleave=True)
    run_commands(make_testable_runner)
    [pended] = pendings(config.database)
    assert (pended.email, pended.action) == ("Bart@Example.org", "leave")
    assert mlist.get_member("bart@example.org") is not None
    [item] = get_queue_messages("out", expected_count=1)
    assert item.msg["Subject"] == f"confirm {pended.token}"
