"""The delivery log: one line per delivery outcome of the ``out`` runner, in a file of its own.

The first tests run the ``out`` runner in process, with the delivery log configured as
a runner process configures it, delivering to a Maildir or to a real aiosmtpd server
on 127.0.0.1 that refuses recipients as told.  The last runs a real master and
rotates the log under it with SIGHUP.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from child_processes import DEADLINE, MasterGroup, kill_at_end, master_section, wait_for
from mail_servers import AnyPortController, RecordingHandler

from runnerkit.config import Configuration
from runnerkit.lists import MailingList
from runnerkit.logs import (
    DELIVERY_LOGGER,
    configure_delivery_log,
    configure_logging,
    unconfigure_logging,
)
from runnerkit.message import message_from_string
from runnerkit.runners.outgoing import OutgoingRunner, delivery_line, logfmt_value
from runnerkit.testing import World

POST = """\
From: anne@example.com
To: ant@example.com
Subject: a test
Message-ID: <post@example.com>

Hello, list.
"""

#: The time and pid that start every line (runnerkit.logs.DELIVERY_FORMAT).
PREFIX = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} " + str(os.getpid()) + " "
SECONDS = r"seconds=\d+\.\d{3}"


@pytest.fixture
def mlist(world: World) -> MailingList:
    """ant@example.com with three members."""
    created = world.config.lists.create("ant@example.com")
    for address in ("bart@example.com", "cris@example.org", "dave@example.net"):
        created.subscribe(address)
    return created


@pytest.fixture
def delivery_log(world: World) -> Iterator[Path]:
    """The delivery log, configured as a runner process configures it; its path."""
    logger = logging.getLogger(DELIVERY_LOGGER)
    saved = logger.level, logger.propagate
    handler = configure_delivery_log(world.config)
    try:
        yield world.config.logging.delivery_path
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def deliver(world: World, mlist: MailingList, text: str = POST, **msgdata: Any) -> None:
    """Queue *text* to ``out`` for *mlist* and run the out runner until it is empty."""
    world.config.switchboards["out"].enqueue(
        message_from_string(text), listid=mlist.list_id, listname=mlist.fqdn_listname, **msgdata
    )
    OutgoingRunner("out", config=world.config).run(
        until=lambda runner: not world.config.switchboards["out"].files
    )


def test_a_maildir_delivery_is_one_line(
    world: World, mlist: MailingList, delivery_log: Path
) -> None:
    deliver(world, mlist)
    [line] = lines(delivery_log)
    assert re.fullmatch(
        PREFIX + "outcome=delivered message_id=<post@example.com> list=ant.example.com "
        "recipients=3 " + SECONDS,
        line,
    ), line


def test_the_lines_are_in_their_own_file_whatever_the_level(
    world: World, mlist: MailingList, delivery_log: Path, tmp_path: Path
) -> None:
    world.config.push("quiet", f"[logging]\nlevel: error\npath: {tmp_path / 'main.log'}\n")
    runnerkit = logging.getLogger("runnerkit")
    level = runnerkit.level
    main = configure_logging(world.config)
    try:
        deliver(world, mlist)
    finally:
        unconfigure_logging(main)
        runnerkit.setLevel(level)
    assert len(lines(delivery_log)) == 1
    assert not (tmp_path / "main.log").exists()


# By SMTP.


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


def test_each_outcome_of_one_smtp_delivery_is_a_line_with_its_reply(
    world: World, mlist: MailingList, delivery_log: Path, smtpd: RecordingHandler
) -> None:
    smtpd.refuse["cris@example.org"] = "451 4.3.0 try again later"
    smtpd.refuse["dave@example.net"] = "550 5.1.1 no such user"
    deliver(world, mlist)
    fields = "message_id=<post@example.com> list=ant.example.com recipients=1 attempt=1/5 "
    delivered, deferred, failed = lines(delivery_log)
    assert re.fullmatch(PREFIX + "outcome=delivered " + fields + SECONDS, delivered), delivered
    assert re.fullmatch(
        PREFIX + "outcome=deferred " + fields + SECONDS + ' reply="451 4.3.0 try again later"',
        deferred,
    ), deferred
    assert re.fullmatch(
        PREFIX + "outcome=failed " + fields + SECONDS + ' reply="550 5.1.1 no such user"',
        failed,
    ), failed


def test_the_last_attempt_is_a_failure(
    world: World, mlist: MailingList, delivery_log: Path, smtpd: RecordingHandler
) -> None:
    smtpd.refuse["cris@example.org"] = "451 4.3.0 try again later"
    deliver(world, mlist, recipients=["cris@example.org"], attempts=4)
    [line] = lines(delivery_log)
    assert re.fullmatch(
        PREFIX + "outcome=failed message_id=<post@example.com> list=ant.example.com "
        "recipients=1 attempt=5/5 " + SECONDS + ' reply="451 4.3.0 try again later '
        '\\(gave up after 5 attempts\\)"',
        line,
    ), line


def test_recipients_that_share_a_reply_share_a_line(
    world: World, mlist: MailingList, delivery_log: Path, config: Configuration
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config.push("down", f"[delivery]\nmethod: smtp\nsmtp_port: {port}\n")
    deliver(world, mlist)
    [line] = lines(delivery_log)
    assert re.fullmatch(
        PREFIX + "outcome=deferred message_id=<post@example.com> list=ant.example.com "
        "recipients=3 attempt=1/5 " + SECONDS + f' reply="cannot deliver through '
        f'127.0.0.1:{port}: .*"',
        line,
    ), line


def test_a_hostile_message_id_stays_in_its_field(
    world: World, mlist: MailingList, delivery_log: Path
) -> None:
    # Folded over two lines to forge a record, with a terminal escape and quotes.
    forged = "<a@b>\r\n 2026-01-01 00:00:00,000 1 outcome=delivered message_id=<f>\x1b[2J"
    deliver(world, mlist, POST.replace("<post@example.com>", forged + ' "x=y"'))
    [line] = lines(delivery_log)
    assert re.fullmatch(
        PREFIX
        + re.escape(
            'outcome=delivered message_id="<a@b> 2026-01-01 00:00:00,000 1 '
            'outcome=delivered message_id=<f>\\\\x1b[2J \\"x=y\\"" list=ant.example.com '
        )
        + "recipients=3 "
        + SECONDS,
        line,
    ), line


def test_the_fields_and_their_logfmt_quoting() -> None:
    assert logfmt_value("<a@b>") == "<a@b>"
    assert logfmt_value("") == '""'
    assert logfmt_value('a "b" c\\d') == '"a \\"b\\" c\\\\d"'
    assert logfmt_value("k=v") == '"k=v"'
    assert delivery_line("delivered", "-", "ant.example.com", 2, 0.0126) == (
        "outcome=delivered message_id=- list=ant.example.com recipients=2 seconds=0.013"
    )
    assert delivery_line(
        "failed", "<a@b>", "ant.example.com", 1, 2, attempt=(5, 5), reply="550 no"
    ) == (
        "outcome=failed message_id=<a@b> list=ant.example.com recipients=1 attempt=5/5 "
        'seconds=2.000 reply="550 no"'
    )


# A real master.


@pytest.fixture
def masters(world: World, tmp_path: Path) -> Iterator[MasterGroup]:
    yield from kill_at_end(MasterGroup(world.config, tmp_path, Path(__file__).parent))


@pytest.mark.slow
def test_a_runner_process_writes_the_delivery_log_and_reopens_it_on_sighup(
    masters: MasterGroup, world: World
) -> None:
    masters.ini.write_text(
        master_section(masters.master_defaults)
        + "[runner.lmtp]\nstart: no\n[runner.retry]\nstart: no\n",
        encoding="utf-8",
    )
    masters.config.push_file(masters.ini)
    mlist = world.config.lists.create("ant@example.com")
    mlist.subscribe("anne@example.com")
    world.config.commit()
    runnerkit = Path(sys.executable).with_name("runnerkit")
    result = subprocess.run(
        [str(runnerkit), "start", "--wait", "60", *masters.options()],
        env=masters.env,
        cwd=masters.work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    master = int(result.stdout.split()[-1])
    masters.seen.add(master)
    path = world.config.logging.delivery_path

    def post(number: int) -> None:
        world.config.switchboards["in"].enqueue(
            message_from_string(POST.replace("<post@", f"<post{number}@")),
            listid=mlist.list_id,
            listname=mlist.fqdn_listname,
        )

    def logged(file: Path, count: int) -> Callable[[], bool]:
        return lambda: file.exists() and len(lines(file)) == count

    post(1)
    post(2)
    wait_for(logged(path, 2), "two lines in the delivery log", DEADLINE)
    rotated = path.with_name("delivery.log.1")
    path.rename(rotated)
    os.kill(master, signal.SIGHUP)
    out = masters.slot("out", 0)["pid"]
    wait_for(
        lambda: any("log files reopened" in text for text in masters.messages_of(out)),
        "the out runner to reopen its logs",
        DEADLINE,
    )
    post(3)
    wait_for(logged(path, 1), "a line in the reopened delivery log", DEADLINE)
    assert [line.split()[4] for line in lines(rotated)] == [
        "message_id=<post1@example.com>",
        "message_id=<post2@example.com>",
    ]
    [line] = lines(path)
    assert f" {out} outcome=delivered message_id=<post3@example.com> " in line
    # Nothing of it in the main log.
    assert "outcome=" not in masters.log_text()
