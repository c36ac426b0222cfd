"""One log record, one line: text from a message can never split a record or forge one.

Header fields are written by strangers: folded, with CR, LF, NUL, terminal escapes,
Unicode line separators, bytes that are not UTF-8, or megabytes long.  runnerkit's log
formatter makes every record one bounded line, whatever its arguments hold, and writes
a traceback below it on lines that start with white space; ``header_for_log`` shows a
header field unfolded.  The last test sends such a message through every runner, the
LMTP server included, with real sockets.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerkit.config import Configuration
from runnerkit.lists import MailingList
from runnerkit.logs import (
    CONTINUATION,
    LOG_BURST,
    LOG_FORMAT,
    OneLineFormatter,
    RateLimitFilter,
    configure_logging,
    unconfigure_logging,
)
from runnerkit.logtext import MAX_HEADER, MAX_VALUE, escape, header_for_log, one_line
from runnerkit.message import Message, message_from_bytes
from runnerkit.runners import handlers
from runnerkit.runners.incoming import IncomingRunner
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.runners.outgoing import OutgoingRunner
from runnerkit.runners.pipeline import PipelineRunner
from runnerkit.runners.retry import RetryRunner
from runnerkit.typing import MsgData

#: The start of a record: time, pid, logger, level (runnerkit.logs.LOG_FORMAT).
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ \S+ [A-Z]+: ")
#: A line that forges a record, as a stranger would hide it in a header or an error.
FORGED = "2024-01-01 00:00:00,000 1 runnerkit.master ERROR: master: forged"
#: Every character that ends a line for str.splitlines, and other troublemakers.
HOSTILE_TEXT = "a\r\nb\nc\rd\x00e\x0bf\x0cg\x1ch\x1di\x1ej\x85k\u2028l\u2029m\x1b[31mn\u202eo\ttab"

DEADLINE = 15.0


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"boom\n{FORGED}\rstill the error")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("runnerkit.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def formatted(rec: logging.LogRecord) -> str:
    return OneLineFormatter(LOG_FORMAT).format(rec)


def assert_one_line(text: str) -> None:
    assert len(text.splitlines()) == 1, text
    assert not any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in text), text


# The formatter.


def test_a_record_with_control_characters_in_its_arguments_is_one_line() -> None:
    line = formatted(record("moved message %s: %r", HOSTILE_TEXT, HOSTILE_TEXT))
    assert_one_line(line)
    assert RECORD.match(line)
    assert "moved message a\\r\\nb\\nc\\rd\\x00e\\x0bf" in line
    assert "\\x85k\\u2028l\\u2029m\\x1b[31mn\\u202eo\\ttab" in line


def test_control_characters_in_the_message_itself_are_escaped_too() -> None:
    line = formatted(record(f"refused {FORGED}\n{FORGED}"))
    assert_one_line(line)
    assert line.endswith(f"refused {FORGED}\\n{FORGED}")


def test_bytes_that_are_not_utf8_are_shown_not_lost(
    log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lone surrogate (a byte kept by surrogateescape) cannot be encoded: the stock
    # handler printed "--- Logging error ---" and lost the record.  (Kept from pytest's
    # own log capture, which cannot send such text between xdist workers.)
    monkeypatch.setattr(logging.getLogger("runnerkit"), "propagate", False)
    logging.getLogger("runnerkit.runner").warning("from %s", "caf\udce9")
    [line] = log_file.read_text(encoding="utf-8").splitlines()
    assert line.endswith("WARNING: from caf\\xe9")


def test_long_values_and_long_messages_are_bounded() -> None:
    line = formatted(record("subject %s, id %s", "s" * 50_000, "<id@example.com>"))
    assert_one_line(line)
    assert f"{'s' * MAX_VALUE}...[49,000 more characters], id <id@example.com>" in line
    assert len(line) < 2 * MAX_VALUE
    huge = formatted(record("x" * 100_000))
    assert len(huge) < 10 * MAX_VALUE
    assert huge.endswith("more characters]")


def test_a_traceback_follows_its_record_on_lines_that_start_with_white_space() -> None:
    text = formatted(record("shunting %s after an error", "<id>", exc=True))
    first, *rest = text.split("\n")
    assert RECORD.match(first)
    assert_one_line(first)
    assert rest[0] == CONTINUATION + "Traceback (most recent call last):"
    assert all(line.startswith(CONTINUATION) for line in rest), rest
    # The error's own line breaks do not start a record, and its CR is escaped.
    assert CONTINUATION + FORGED + "\\rstill the error" in rest
    assert not any(RECORD.match(line) for line in rest)
    assert all(len(line.splitlines()) == 1 for line in rest)


def test_the_record_is_left_for_other_handlers() -> None:
    rec = record("subject %s", HOSTILE_TEXT, exc=True)
    formatted(rec)
    assert (rec.msg, rec.args) == ("subject %s", (HOSTILE_TEXT,))
    standard = logging.Formatter("%(message)s").format(rec)
    assert standard.startswith(f"subject {HOSTILE_TEXT}\n")


def test_mapping_arguments_are_bounded_too() -> None:
    line = formatted(record("%(subject)s", {"subject": "a\nb" + "c" * 5000}))
    assert_one_line(line)
    assert line.endswith("...[4,003 more characters]")


# The helpers for call sites.


def test_escape_and_one_line() -> None:
    assert escape("plain text, é and \\ stay") == "plain text, é and \\ stay"
    assert escape("\x7f\x9f\udcff\u2066") == "\\x7f\\x9f\\xff\\u2066"
    assert one_line(ValueError("a\nb")) == "a\\nb"
    assert one_line("x" * 10, limit=4) == "xxxx...[6 more characters]"


def hostile_message() -> Message:
    return message_from_bytes(
        b"From: Anne \x00Evil <anne@example.com>\r\n"
        b"Subject: =?utf-8?q?encoded=0Aline?= and\r\n folded\r\n\tagain \x1b[2J\xe2\x80\xa8\r\n"
        b"Message-ID:\r\n <folded-1@example.com>\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"X-Long: " + b"x" * 5000 + b"\r\n"
        b"\r\nbody\r\n"
    )


def test_header_for_log_unfolds_decodes_escapes_and_bounds() -> None:
    msg = hostile_message()
    assert header_for_log(msg, "Message-ID") == "<folded-1@example.com>"
    # Unfolding keeps the white space after the line break; strip() takes the U+2028.
    assert header_for_log(msg, "Subject") == "encoded\\nline and folded\\tagain \\x1b[2J"
    assert header_for_log(msg, "From") == "Anne \\x00Evil <anne@example.com>"
    assert header_for_log(msg, "X-Latin") == "café"
    assert header_for_log(msg, "X-Long") == "x" * MAX_HEADER + "...[4,800 more characters]"
    assert header_for_log(msg, "Reply-To") == "(none)"
    assert header_for_log(msg, "Reply-To", "without one") == "without one"


# Every runner, end to end.


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def log_file(config: Configuration, tmp_path: Path) -> Iterator[Path]:
    """runnerkit's logging, at debug level, to a file of this test's own."""
    path = tmp_path / "runnerkit.log"
    config.push("logs", f"[logging]\npath: {path}\nlevel: debug\n")
    logger = logging.getLogger("runnerkit")
    level = logger.level
    handler = configure_logging(config)
    try:
        yield path
    finally:
        unconfigure_logging(handler)
        logger.setLevel(level)


#: Posted by a stranger: a folded Message-ID with a CR and a forged record in it, a
#: Subject with NUL, ESC and a line separator, 8-bit bytes that are not UTF-8, and a
#: header field 20,000 octets long.
HOSTILE = (
    b"From: Anne \x00 <anne@example.com>\r\n"
    b"To: test@example.com\r\n"
    b"Subject: hello\r\n " + FORGED.encode() + b"\r\n\tend \x1b[31mred\xe2\x80\xa8x\xe9\r\n"
    b"Message-ID:\r\n <hostile-%d@example.com>\r\n"
    b"X-Long: " + b"y" * 20_000 + b"\r\n"
    b"\r\nbody\r\n"
)


def test_every_runner_writes_one_line_per_record_for_a_hostile_message(
    config: Configuration,
    create_list: Callable[..., MailingList],
    make_testable_runner: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    log_file: Path,
) -> None:
    mlist = create_list("test@example.com")
    mlist.subscribe("bart@example.com")

    def failing(config: Configuration) -> handlers.Handler:
        def fail(mlist: MailingList, msg: Message, msgdata: MsgData) -> None:
            if "hostile-3" in str(msg["Message-ID"]):
                raise ValueError(f"cannot handle {msg['Subject']}")

        return fail

    monkeypatch.setitem(handlers.HANDLERS, "fail-on-3", failing)
    config.push(
        "e2e",
        "[lmtp]\nport: 0\n"
        "[pipeline]\nhandlers: fail-on-3 list-headers\n"
        f"[delivery]\nmethod: smtp\nsmtp_port: {unused_port()}\n",
    )
    # lmtp: 1 and 3 go on, 2 has no From (bad), 4 is refused (too deep), and a
    # recipient full of control characters is refused and logged.
    lmtp = LMTPRunner("lmtp", config=config)
    thread = threading.Thread(target=lmtp.run)
    thread.start()
    try:
        assert lmtp.ready.wait(DEADLINE)
        with smtplib.LMTP("127.0.0.1", lmtp.port, timeout=DEADLINE) as client:
            client.ehlo()
            for number in (1, 2, 3):
                data = HOSTILE % number
                if number == 2:
                    # No From: LMTP refuses it for good; queued by hand (as inject
                    # --force does), the in runner moves it to bad.
                    data = data.replace(b"From: Anne \x00 <anne@example.com>\r\n", b"")
                    client.mail("anne@example.com")
                    client.rcpt("test@example.com")
                    assert client.data(data)[0] == 554
                    config.switchboards["in"].enqueue(
                        message_from_bytes(data.replace(b"\r\n", b"\n")),
                        listid=mlist.list_id,
                        listname=mlist.fqdn_listname,
                    )
                    continue
                assert client.sendmail("anne@example.com", ["test@example.com"], data) == {}
            deep = b"From: a@example.com\r\nMessage-ID: <\x1b>\r\n" + b"".join(
                b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
                for n in range(150)
            )
            client.mail("anne@example.com")
            client.rcpt("test@example.com")
            assert client.data(deep)[0] == 554
            client.mail("anne@example.com")
            code, _ = client.docmd("RCPT TO:<x\x1b\x7f@example.net>")
            assert code in (550, 553), code
    finally:
        lmtp.stop()
        thread.join(DEADLINE)
    make_testable_runner(IncomingRunner, "in").run()
    make_testable_runner(PipelineRunner, "pipeline").run()
    # out: SMTP to a port where nothing listens, so it goes to retry; then by Maildir.
    make_testable_runner(OutgoingRunner, "out").run()
    config.push("maildir", "[delivery]\nmethod: maildir\n")
    make_testable_runner(RetryRunner, "retry").run()
    make_testable_runner(OutgoingRunner, "out").run()

    text = log_file.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]
    assert len(text.splitlines()) == len(lines)  # no other line separator anywhere
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", text)
    records = [line for line in lines if RECORD.match(line)]
    continued = [line for line in lines if not RECORD.match(line)]
    assert all(line.startswith(CONTINUATION) for line in continued), continued
    assert all(len(line) < 10 * MAX_VALUE for line in lines)
    assert not any(line.startswith(FORGED[:10]) for line in lines)  # nothing forged
    # Each runner logged its part, naming the message unfolded on the record's line.
    by_logger: dict[str, list[str]] = {}
    for line in records:
        by_logger.setdefault(line.split()[3], []).append(line)
    incoming = by_logger["runnerkit.runners.incoming"]
    assert any("moved message <hostile-2@example.com> (list" in line for line in incoming)
    lmtp_lines = "\n".join(by_logger["runnerkit.runners.lmtp"])
    assert "refused a message: its MIME structure is too deep" in lmtp_lines
    assert "refused a message for test@example.com: The message has no From header" in lmtp_lines
    assert "queued " in lmtp_lines
    shunted = "\n".join(by_logger["runnerkit.runner"])
    assert "shunting " in shunted
    assert "cannot handle hello\\n " + FORGED + "\\n\\tend \\x1b[31m" in shunted
    assert any(line == CONTINUATION + "Traceback (most recent call last):" for line in lines)
    outgoing = "\n".join(by_logger["runnerkit.runners.outgoing"])
    assert "message <hostile-1@example.com>: 1 recipient(s) failed for now" in outgoing
    assert "delivered message <hostile-1@example.com> to " in outgoing


def test_each_module_logs_under_its_own_name() -> None:
    """A logger's name is the module's (a package's for its modules), so that a
    grep for ``runnerkit.runners.`` finds every built-in runner's records."""
    import importlib
    import pkgutil

    import runnerkit

    names = {}
    for info in pkgutil.walk_packages(runnerkit.__path__, "runnerkit."):
        if info.name.startswith("runnerkit.testing") or info.name.endswith("__main__"):
            continue
        logger = getattr(importlib.import_module(info.name), "log", None)
        if isinstance(logger, logging.Logger):
            names[info.name] = logger.name
    assert names["runnerkit.runners.lmtp"] == "runnerkit.runners.lmtp"
    for module, name in names.items():
        assert module == name or module.startswith(name + "."), (module, name)


def test_what_a_client_can_make_a_server_log_is_bounded(log_file: Path) -> None:
    """2,000 LMTP connections sending bogus commands wrote 5.4 MB in 1.7 s to standard
    error through aiosmtpd's logger: it is routed to the log file, and each logger's
    records are limited (LOG_BURST per LOG_PERIOD seconds), the dropped ones counted."""
    library = logging.getLogger("mail.log")
    event_loop = logging.getLogger("asyncio")
    for number in range(2000):
        library.warning("bogus command %d from a client", number)
        library.info("not written: below WARNING")
        event_loop.error("socket.accept() out of system resource %d", number)
    logging.getLogger("runnerkit.runners.lmtp").warning("our own record")
    text = log_file.read_text(encoding="utf-8")
    library_lines = [line for line in text.splitlines() if " mail.log " in line]
    assert len(library_lines) == LOG_BURST
    assert len([line for line in text.splitlines() if " asyncio " in line]) == LOG_BURST
    assert "not written" not in text
    assert "our own record" in text  # another logger has a budget of its own


def test_the_first_record_after_dropped_ones_says_how_many(tmp_path: Path) -> None:
    limit = RateLimitFilter(burst=2, period=0.2)
    records = [logging.makeLogRecord({"name": "x", "msg": f"m{n}"}) for n in range(5)]
    assert [limit.filter(record) for record in records] == [True, True, False, False, False]
    time.sleep(0.25)
    later = logging.makeLogRecord({"name": "x", "msg": "after"})
    assert limit.filter(later)
    assert later.msg == "[3 earlier record(s) of this logger dropped] after"
