"""Hostile and unusual mail at the door: ``[limits]``, over LMTP and through ``inject``.

A message that runnerkit can never handle gets one permanent, clear answer where it
enters: a 5xx LMTP reply with an enhanced status code and the reason, once per
recipient, or a one-line ``runnerkit: error:`` from ``inject``.  Never a 4xx (the
sending MTA would retry for days), never a traceback.  The LMTP server runs for real,
in a thread, on a port the system picks.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runnerkit.cli import main
from runnerkit.config import Configuration, LimitsSettings
from runnerkit.errors import ConfigurationError, MessageLimitError
from runnerkit.limits import read_message
from runnerkit.lists import MailingList
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.site import Site
from runnerkit.testing.helpers import QueueItem

#: The bound on every wait.
DEADLINE = 15.0

DEFAULTS = LimitsSettings(
    max_mime_depth=100, max_header_fields=1000, max_header_field_size=102400, max_line_length=0
)

HEAD = b"From: anne@example.org\nTo: test@example.com\nSubject: hi\nMessage-ID: <hi@example.org>\n"
PLAIN = HEAD + b"\nHello.\n"


def nested(depth: int) -> bytes:
    """A message whose multipart parts nest *depth* deep: its leaf is at level *depth*."""
    parts = [HEAD]
    for level in range(depth):
        parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level))
    parts.append(b"Content-Type: text/plain\n\nleaf\n")
    parts.extend(b"--b%d--\n" % level for level in reversed(range(depth)))
    return b"".join(parts)


def refused(data: bytes, limits: LimitsSettings = DEFAULTS, max_size: int = 0) -> str:
    """The limit that refuses *data*, asserting that one does, and that it says so."""
    with pytest.raises(MessageLimitError) as raised:
        read_message(data, limits, max_size)
    assert f"[limits] {raised.value.limit}" in str(raised.value) or (
        raised.value.limit == "max_message_size"
    )
    return raised.value.limit


def limits(**changes: int) -> LimitsSettings:
    values = {**DEFAULTS.__dict__, **changes}
    return LimitsSettings(**values)


# The limits themselves.


def test_the_defaults_are_the_documented_ones(config: Configuration) -> None:
    assert config.limits == DEFAULTS
    assert config.lmtp.max_message_size == 10485760


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_mime_depth", "0", "from 1 to 100"),
        ("max_mime_depth", "101", "a queue file holds no deeper structure"),
        ("max_line_length", "100", "998 or more"),
        ("max_line_length", "997", "RFC 5322"),
        ("max_header_fields", "-1", "0 or more"),
        ("max_header_field_size", "big", "0 or more"),
    ],
)
def test_limits_out_of_range_are_refused_with_the_rule(
    config: Configuration, key: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        config.push("bad", f"[limits]\n{key}: {value}\n")
    assert f"section [limits], key '{key}', value '{value}'" in str(raised.value)
    assert expected in str(raised.value)


def test_limits_in_range_are_taken(config: Configuration) -> None:
    config.push("ok", "[limits]\nmax_line_length: 998\nmax_mime_depth: 1\nmax_header_fields: 0\n")
    assert config.limits == limits(max_line_length=998, max_mime_depth=1, max_header_fields=0)


@pytest.mark.parametrize("depth", [0, 1, 50, 100])
def test_a_structure_within_max_mime_depth_is_read(depth: int) -> None:
    assert read_message(nested(depth), DEFAULTS).as_bytes() == nested(depth)


@pytest.mark.parametrize("depth", [101, 150, 400])
def test_a_structure_beyond_max_mime_depth_is_refused(depth: int) -> None:
    assert refused(nested(depth)) == "max_mime_depth"
    assert refused(nested(3), limits(max_mime_depth=2)) == "max_mime_depth"


def test_header_fields_are_counted_per_header_block() -> None:
    many = b"".join(b"X-N: %d\n" % n for n in range(7))
    assert refused(HEAD + many + b"\nbody\n", limits(max_header_fields=10)) == "max_header_fields"
    read_message(HEAD + many[: 6 * 7] + b"\nbody\n", limits(max_header_fields=10))
    part = (
        HEAD + b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n' + many + b"\nleaf\n--b--\n"
    )
    with pytest.raises(MessageLimitError, match="part 1 has 7 header fields"):
        read_message(part, limits(max_header_fields=6))
    read_message(part, limits(max_header_fields=0))  # 0: no limit


def test_a_header_field_size_counts_name_value_and_folding_not_line_ends() -> None:
    # "X-Big" (5) + ":" (1) + the value; the space after the colon and CRLFs not counted.
    assert read_message(HEAD + b"X-Big: " + b"a" * 94 + b"\n\n", limits(max_header_field_size=100))
    too_big = HEAD + b"X-Big: " + b"a" * 95 + b"\n\n"
    assert refused(too_big, limits(max_header_field_size=100)) == "max_header_field_size"
    folded = HEAD + b"X-Big: " + b"a" * 47 + b"\r\n " + b"a" * 46 + b"\r\n\r\n"
    read_message(folded, limits(max_header_field_size=100))  # 5 + 1 + 47 + 1 + 46 = 100
    assert refused(HEAD + b"X-Big: " + b"a" * 200_000 + b"\n\n") == "max_header_field_size"


def test_long_lines_are_accepted_by_default_and_refused_when_limited() -> None:
    long_line = HEAD + b"\n" + b"x" * 5000 + b"\n"
    assert read_message(long_line, DEFAULTS).as_bytes() == long_line
    at_limit = HEAD + b"\n" + b"x" * 998 + b"\r\n"
    read_message(at_limit, limits(max_line_length=998))
    with pytest.raises(MessageLimitError, match=r"line 6 is 999 octets long.*\(998; RFC 5322"):
        read_message(HEAD + b"\n" + b"x" * 999 + b"\n", limits(max_line_length=998))


def test_the_size_limit_names_its_key() -> None:
    with pytest.raises(MessageLimitError, match=r"more than \[lmtp\] max_message_size \(100\)"):
        read_message(PLAIN + b"x" * 100, DEFAULTS, max_size=100)
    read_message(PLAIN, DEFAULTS, max_size=len(PLAIN))


# Over LMTP.


class Server:
    """An LMTP runner serving in a thread, and a way to post to it."""

    def __init__(self, config: Site) -> None:
        self.config = config
        self.runner = LMTPRunner("lmtp", config=config)
        self.thread = threading.Thread(target=self.runner.run, name="lmtp-limits")

    def __enter__(self) -> Server:
        self.thread.start()
        assert self.runner.ready.wait(DEADLINE), "the LMTP runner did not listen"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.runner.stop()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()

    def post(self, data: bytes, *rcpts: str) -> list[tuple[int, bytes]]:
        """The replies to *data* (LF line ends, sent as CRLF), one per recipient."""
        with smtplib.LMTP("127.0.0.1", self.runner.port, timeout=DEADLINE) as client:
            client.ehlo()
            assert client.mail("anne@example.org")[0] == 250
            for rcpt in rcpts:
                assert client.rcpt(rcpt)[0] == 250
            replies = [client.data(data.replace(b"\n", b"\r\n"))]
            replies += [client.getreply() for _ in rcpts[1:]]
            assert client.noop()[0] == 250  # still in step
        return replies

    def queued(self, queue: str = "in") -> int:
        return len(self.config.switchboards[queue].files)


@pytest.fixture
def server(config: Site, create_list: Callable[..., MailingList]) -> Callable[[str], Server]:
    """Start an LMTP server over a layer of settings: ``server("[limits]\\n...")``."""
    create_list("test@example.com")
    create_list("other@example.com")

    def start(layer: str = "") -> Server:
        config.push("limits-lmtp", "[lmtp]\nport: 0\nmax_message_size: 0\n")
        config.push("limits-test", layer)
        return Server(config)

    return start


RCPTS = ("test@example.com", "other@example.com")


def assert_refused(replies: list[tuple[int, bytes]], code: int, status: str, *words: str) -> None:
    """One permanent refusal per recipient, each naming it, the status and the reason."""
    for rcpt, (got, text) in zip(RCPTS, replies, strict=True):
        assert got == code, text
        assert text.startswith(f"{status} {rcpt}: the message is refused: ".encode()), text
        for word in words:
            assert word.encode() in text, text


# 900: the parser manages, but recording the parts ran out of stack (it answered 500
# with the RecursionError); 1200 and 5000: the parser itself gives up.
@pytest.mark.parametrize("depth", [101, 400, 900, 1200, 5000])
def test_lmtp_refuses_a_structure_too_deep_for_good_once_per_recipient(
    server: Callable[[str], Server], depth: int
) -> None:
    with server("") as lmtp:
        assert_refused(lmtp.post(nested(depth), *RCPTS), 554, "5.6.0", "max_mime_depth (100)")
        assert lmtp.queued("in") == lmtp.queued("bad") == lmtp.queued("shunt") == 0
        assert lmtp.post(nested(100), "test@example.com")[0][0] == 250
        assert lmtp.queued() == 1


def test_lmtp_refuses_too_many_header_fields(server: Callable[[str], Server]) -> None:
    many = b"".join(b"X-N: %d\n" % n for n in range(10))
    with server("[limits]\nmax_header_fields: 10\n") as lmtp:
        assert_refused(
            lmtp.post(HEAD + many + b"\nbody\n", *RCPTS),
            554,
            "5.6.0",
            "the message has 14 header fields, more than [limits] max_header_fields (10)",
        )
        assert lmtp.queued() == 0


def test_lmtp_refuses_a_header_field_too_big(server: Callable[[str], Server]) -> None:
    with server("[limits]\nmax_header_field_size: 1000\n") as lmtp:
        big = HEAD + b"X-Big: " + b"a" * 600 + b"\n " + b"a" * 600 + b"\n\nbody\n"
        assert_refused(
            lmtp.post(big, *RCPTS), 554, "5.6.0", "header field of 1,207 octets", "(1,000)"
        )
        assert lmtp.queued() == 0


def test_lmtp_accepts_long_lines_by_default_byte_for_byte(
    server: Callable[[str], Server], get_queue_messages: Callable[..., list[QueueItem]]
) -> None:
    # aiosmtpd alone answers "500 Line too long" past 1,000 octets.
    data = HEAD + b"\n" + b"x" * 5000 + b"\n" + b"y" * 70_000 + b"\n"
    with server("") as lmtp:
        assert [code for code, _ in lmtp.post(data, *RCPTS)] == [250, 250]
    [item, _] = get_queue_messages("in", expected_count=2)
    assert item.msg.as_bytes() == data


def test_lmtp_refuses_long_lines_when_max_line_length_says_so(
    server: Callable[[str], Server],
) -> None:
    with server("[limits]\nmax_line_length: 998\n") as lmtp:
        assert lmtp.post(HEAD + b"\n" + b"x" * 998 + b"\n", "test@example.com")[0][0] == 250
        assert_refused(
            lmtp.post(HEAD + b"\n" + b"x" * 999 + b"\n", *RCPTS),
            554,
            "5.6.0",
            "line 6 is 999 octets long, more than [limits] max_line_length (998;",
        )
        assert lmtp.queued() == 1


def test_lmtp_refuses_an_oversize_message_with_an_enhanced_code_per_recipient(
    server: Callable[[str], Server],
) -> None:
    with server("[lmtp]\nmax_message_size: 2000\n") as lmtp:
        assert_refused(
            lmtp.post(PLAIN + b"x" * 3000 + b"\n", *RCPTS),
            552,
            "5.3.4",
            "larger than [lmtp] max_message_size (2,000 octets)",
        )
        # One line longer than the whole limit: aiosmtpd calls it "too long".
        assert_refused(
            lmtp.post(PLAIN + b"x" * 3000, *RCPTS), 552, "5.3.4", "[lmtp] max_message_size"
        )
        assert lmtp.queued() == 0


# Through inject.


def run_inject(var_dir: Path, *args: str, input: bytes | None = None) -> Result:
    """``runnerkit inject ARGS`` over *var_dir*, in this process."""
    return CliRunner().invoke(
        main,
        ["inject", *args],
        input=input,
        env={"RUNNERKIT_VAR_DIR": str(var_dir), "RUNNERKIT_CONFIG": None},
        prog_name="runnerkit",
        catch_exceptions=False,
    )


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("runnerkit: error: "), line
    for fragment in fragments:
        assert fragment in line, line


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A var dir with the list ants@example.com."""
    var_dir = tmp_path / "var"
    result = CliRunner().invoke(
        main,
        ["lists", "create", "ants@example.com"],
        env={"RUNNERKIT_VAR_DIR": str(var_dir), "RUNNERKIT_CONFIG": None},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return var_dir


def queue_depth(var_dir: Path, queue: str) -> int:
    return sum(1 for _ in (var_dir / "queue" / queue).glob("*.pck"))


@pytest.mark.parametrize(
    ("layer", "data", "fragment"),
    [
        ("", nested(150), "more than [limits] max_mime_depth (100) levels"),
        ("max_header_fields: 3\n", PLAIN, "4 header fields, more than [limits] max_header_fields"),
        ("max_header_field_size: 20\n", PLAIN, "more than [limits] max_header_field_size (20)"),
        ("max_line_length: 998\n", HEAD + b"\n" + b"x" * 1000 + b"\n", "max_line_length (998"),
    ],
)
def test_inject_refuses_a_message_beyond_a_limit_in_one_line(
    site: Path, tmp_path: Path, layer: str, data: bytes, fragment: str
) -> None:
    ini = tmp_path / "limits.ini"
    ini.write_text(f"[limits]\n{layer}", encoding="utf-8")
    path = tmp_path / "message.eml"
    path.write_bytes(data)
    result = run_inject(site, "-C", str(ini), "-l", "ants@example.com", "--force", str(path))
    assert_one_line_error(result, 1, f"{path}: the message is refused: ", fragment)
    assert queue_depth(site, "in") == 0


def test_inject_refuses_a_message_over_the_size_limit(site: Path, tmp_path: Path) -> None:
    ini = tmp_path / "size.ini"
    ini.write_text("[lmtp]\nmax_message_size: 50\n", encoding="utf-8")
    result = run_inject(site, "-C", str(ini), "-l", "ants@example.com", "-", input=PLAIN)
    assert_one_line_error(
        result, 1, "more than [lmtp] max_message_size (50 octets); it was not read further"
    )
    path = tmp_path / "big.eml"
    path.write_bytes(PLAIN)
    result = run_inject(site, "-C", str(ini), "-l", "ants@example.com", str(path))
    assert_one_line_error(result, 1, f"{len(PLAIN)} octets, more than [lmtp] max_message_size")


def test_inject_of_a_structure_that_exhausts_the_stack_is_one_line(
    site: Path, tmp_path: Path
) -> None:
    # 900 levels: the parser manages, and recording the parts used to exhaust the stack
    # (a 2,000-line traceback).  In a process of its own, as an operator runs it.
    import subprocess
    import sys

    path = tmp_path / "deep.eml"
    path.write_bytes(nested(900))
    completed = subprocess.run(
        [sys.executable, "-m", "runnerkit", "inject", "-l", "ants@example.com", str(path)],
        capture_output=True,
        text=True,
        env={"RUNNERKIT_VAR_DIR": str(site), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith("runnerkit: error: "), line
    assert "[limits] max_mime_depth (100)" in line


def test_inject_refuses_random_bytes(site: Path) -> None:
    noise = bytes(range(256)) * 8
    result = run_inject(site, "-l", "ants@example.com", "-", input=noise)
    assert_one_line_error(result, 1, "it has no header fields: it is not an email message")
    assert queue_depth(site, "in") == 0
    # --force queues it all the same, for an operator who means it.
    result = run_inject(site, "-l", "ants@example.com", "--force", "-", input=noise)
    assert result.exit_code == 0, result.stderr
    assert queue_depth(site, "in") == 1


def test_inject_to_in_needs_a_list(site: Path) -> None:
    result = run_inject(site, "-", input=PLAIN)
    assert_one_line_error(result, 2, "the in queue needs a list: name it with -l/--list")
    assert queue_depth(site, "in") == 0
    assert run_inject(site, "--force", "-", input=PLAIN).exit_code == 0
    assert queue_depth(site, "in") == 1


def test_inject_to_another_queue_needs_no_list(site: Path) -> None:
    assert run_inject(site, "-q", "out", "-", input=PLAIN).exit_code == 0
    assert queue_depth(site, "out") == 1


def test_inject_to_in_refuses_a_message_without_a_sender(site: Path) -> None:
    no_from = b"To: ants@example.com\nSubject: who?\n\nbody\n"
    result = run_inject(site, "-l", "ants@example.com", "-", input=no_from)
    assert_one_line_error(
        result, 1, "the message has no From header; the in runner would move it to bad", "--force"
    )
    assert queue_depth(site, "in") == 0


def test_inject_names_a_list_that_does_not_exist(site: Path) -> None:
    result = run_inject(site, "-l", "ghost@example.com", "-", input=PLAIN)
    assert_one_line_error(result, 1, "no mailing list 'ghost@example.com'")


#: The ``runnerkit`` console script of the interpreter running the tests.
RUNNERKIT = Path(sys.executable).with_name("runnerkit")


def test_inject_reads_no_more_than_the_limit_of_a_huge_input(site: Path) -> None:
    """inject had no size limit: it reads one byte more than [lmtp] max_message_size,
    enough to refuse it, from a stream that would never end."""
    endless = subprocess.Popen(["yes", "x" * 1000], stdout=subprocess.PIPE)
    try:
        result = subprocess.run(
            [str(RUNNERKIT), "inject", "-l", "ants@example.com", "-", "--var-dir", str(site)],
            stdin=endless.stdout,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        endless.kill()
        endless.wait()
        assert endless.stdout is not None
        endless.stdout.close()
    assert result.returncode == 1
    assert "max_message_size" in result.stderr
