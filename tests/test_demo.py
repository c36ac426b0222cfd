"""The main job: ``runnerkit demo`` runs the whole system and accounts for every message.

The slow tests run the real command, with its master and runners, and a temporary
directory of their own (``TMPDIR``) so that what a run leaves behind can be seen; they
kill by pid whatever is left running on it.
"""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from runnerkit.cli import main
from runnerkit.demo import Demo, DemoResult, print_summary
from runnerkit.errors import DemoError
from runnerkit.master import running_master_pid
from runnerkit.progress import (
    FlowStatus,
    PlainLines,
    TerminalBar,
    bar_frame,
    progress_for,
    terminal_width,
)
from runnerkit.site import Site

#: The bound on every wait in these tests.
DEADLINE = 120.0


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Iterator[Path]:
    """A ``TMPDIR`` for the demo; processes left running on it are killed afterwards."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    yield directory
    for pid in pids_using(directory):
        os.kill(pid, signal.SIGKILL)


def pids_using(directory: Path) -> list[int]:
    """The processes whose command line names *directory* (the master and its runners)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(directory).encode() in command_line:
            pids.append(int(entry.name))
    return pids


def demo_env(tmp_dir: Path) -> dict[str, str]:
    return dict(os.environ, TMPDIR=str(tmp_dir))


def run_demo(
    *args: str, tmp_dir: Path | None = None, timeout: float = DEADLINE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runnerkit", "demo", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if tmp_dir is None else demo_env(tmp_dir),
    )


def summary_rows(stdout: str) -> dict[str, str]:
    """The ``label value`` rows of a text summary."""
    rows = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"(\S.*?)\s{2,}(\S+)", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def demo_dirs(tmp_dir: Path) -> list[Path]:
    return sorted(tmp_dir.glob("runnerkit-demo-*"))


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {DEADLINE} s for {what}")
        time.sleep(0.05)


# --- Options: refused up front, before anything starts ---------------------------------


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["-n", "0"], "Invalid value for '-n' / '--count': the demo needs at least 1 message"),
        (["--count", "-3"], "at least 1 message, got -3"),
        (["--members", "0"], "Invalid value for '--members': the demo list needs at least 1"),
        (["--members", "-1", "-n", "5"], "a list without members delivers nothing"),
        (["--timeout", "0"], "Invalid value for '--timeout': the timeout must be a number"),
        (["--timeout", "-1"], "seconds above 0, got -1.0"),
        (["--timeout", "nan"], "seconds above 0, got nan"),
        (["--timeout", "inf"], "seconds above 0, got inf"),
        (["--timeout", "soon"], "'soon' is not a valid float"),
        (["-n", "many"], "'many' is not a valid integer"),
    ],
)
def test_the_demo_refuses_an_option_it_cannot_work_with(
    args: list[str], complaint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tempfile reads $TMPDIR once a process, so its cached choice is replaced too.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(main, ["demo", *args])
    assert result.exit_code == 2, result.output
    assert complaint in result.output
    assert "runnerkit: error:" in result.output
    assert list(tmp_path.iterdir()) == []  # no var dir made, nothing started


def test_a_list_without_members_is_refused_at_once_not_after_the_timeout(
    tmp_dir: Path,
) -> None:
    started = time.monotonic()
    result = run_demo("--members", "0", "-n", "5", tmp_dir=tmp_dir, timeout=60)
    assert result.returncode == 2
    assert "--members': the demo list needs at least 1 member, got 0" in result.stderr
    assert time.monotonic() - started < 60
    assert demo_dirs(tmp_dir) == []


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"count": 0}, "at least 1 message"),
        ({"members": 0}, "at least 1 member"),
        ({"timeout": 0.0}, "above 0, got 0.0"),
        ({"timeout": -5.0}, "above 0, got -5.0"),
        ({"timeout": math.nan}, "above 0, got nan"),
        ({"timeout": math.inf}, "above 0, got inf"),
    ],
)
def test_demo_objects_check_their_arguments_too(
    kwargs: dict[str, float], complaint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(DemoError, match=complaint):
        Demo(**kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # nothing made for a demo that cannot run


def test_the_demo_refuses_a_var_dir_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("precious")
    result = run_demo("--var-dir", str(tmp_path))
    assert result.returncode == 1
    assert "is not empty; the demo needs a fresh one" in result.stderr
    assert (tmp_path / "something").read_text() == "precious"


# --- The progress display ------------------------------------------------------------


def status(delivered: int = 40, requested: int = 500, elapsed: float = 2.0) -> FlowStatus:
    depths = {"in": 12, "pipeline": 3, "out": 1000, "retry": 0}
    return FlowStatus(requested, delivered + 20, delivered, depths, elapsed)


@pytest.mark.parametrize("delivered", [0, 40, 500])
def test_a_bar_frame_never_reaches_the_last_column(delivered: int) -> None:
    for width in range(0, 200):
        frame = bar_frame(status(delivered), width)
        assert len(frame) <= max(width - 1, 0), (width, frame)
        if width > 20:
            assert frame.startswith(("[", f"delivered {delivered}/500")), frame


def test_a_bar_frame_shows_as_much_as_fits() -> None:
    wide = bar_frame(status(), 200)
    assert wide == (
        "[##" + "." * 28 + "] delivered 40/500 sent 60 | in 12 pipeline 3 out 1000 retry 0 |"
        " 20 msg/s"
    )
    assert bar_frame(status(), 40) == "[............] delivered 40/500 sent 60"
    assert bar_frame(status(), 20) == "delivered 40/500"
    assert bar_frame(status(), 10) == "delivered"


def test_the_bar_redraws_one_line_padded_to_the_width() -> None:
    stream = io.StringIO()
    bar = TerminalBar(stream, width=60)
    bar.show(status(10))
    bar.show(status(500))
    bar.finish(status(500))
    frames = stream.getvalue().split("\r")
    assert frames[0] == ""
    assert all(len(frame.rstrip("\n")) == 59 for frame in frames[1:])
    assert stream.getvalue().endswith("\n")
    assert stream.getvalue().count("\n") == 1


def test_plain_lines_come_every_interval_and_at_the_end_without_carriage_returns() -> None:
    stream = io.StringIO()
    lines = PlainLines(stream, interval=5.0)
    for tenth in range(0, 121):
        lines.show(status(tenth, elapsed=tenth / 10))
    lines.finish(status(120, elapsed=12.05))
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines() == [
        "demo: 5.0s delivered 50/500 sent 70 | in 12 pipeline 3 out 1000 retry 0 | 10 msg/s",
        "demo: 10.0s delivered 100/500 sent 120 | in 12 pipeline 3 out 1000 retry 0 | 10 msg/s",
        "demo: 12.1s delivered 120/500 sent 140 | in 12 pipeline 3 out 1000 retry 0 | 10 msg/s",
    ]


def test_a_terminal_gets_the_bar_and_anything_else_plain_lines() -> None:
    primary, secondary = os.openpty()
    with open(secondary, "w") as terminal, open(primary, "rb"):
        assert isinstance(progress_for(terminal), TerminalBar)
    assert isinstance(progress_for(io.StringIO()), PlainLines)
    with open(os.devnull, "w") as null:
        assert isinstance(progress_for(null), PlainLines)


def test_the_width_is_the_terminal_s_own_unless_columns_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 57, 0, 0))
    with open(secondary, "w") as terminal, open(primary, "rb"):
        monkeypatch.delenv("COLUMNS", raising=False)
        assert terminal_width(terminal) == 57
        monkeypatch.setenv("COLUMNS", "101")
        assert terminal_width(terminal) == 101
        monkeypatch.setenv("COLUMNS", "wide")
        assert terminal_width(terminal) == 57


# --- The summary ---------------------------------------------------------------------


def test_the_summary_says_when_the_demo_timed_out_or_was_interrupted() -> None:
    out = io.StringIO()
    print_summary(
        DemoResult(
            requested=500,
            sent=187,
            not_sent=313,
            delivered=185,
            queued=2,
            timed_out=True,
            seconds=1.02,
            timeout=1.0,
            var_dir="/tmp/x",
        ),
        out,
    )
    text = out.getvalue()
    assert (
        text.splitlines()[0] == "TIMED OUT after 1.0s (--timeout 1): 2 still queued, 313 not sent"
    )
    assert summary_rows(text)["requested"] == "500"
    assert "var dir: /tmp/x (kept)" in text
    out = io.StringIO()
    print_summary(DemoResult(requested=5, sent=3, seconds=2.5, interrupted=True), out)
    assert out.getvalue().startswith("INTERRUPTED after 2.5s of sending: the summary so far\n")


# --- Whole runs ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_demo_delivers_every_message_and_stops_everything(tmp_path: Path) -> None:
    var_dir = tmp_path / "demo"
    result = run_demo("-n", "40", "--members", "2", "--var-dir", str(var_dir), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["requested"] == summary["sent"] == 40
    assert summary["delivered"] == 40
    assert summary["lost"] == summary["not_sent"] == 0
    assert summary["shunted"] == summary["bad"] == summary["queued"] == 0
    assert summary["timed_out"] is summary["interrupted"] is False
    assert summary["master_stopped"] is True
    assert 0 < summary["seconds"] < summary["timeout"] == 300
    assert summary["var_dir"] == str(var_dir)
    assert summary["var_dir_removed"] is False  # an explicit --var-dir is never removed
    maildir = var_dir / "maildir" / "demo.example.com" / "new"
    delivered = sorted(path.read_bytes() for path in maildir.iterdir())
    assert len(delivered) == 40
    assert all(b"List-Id: Demo <demo.example.com>" in text for text in delivered)
    with Site(var_dir) as config:
        assert running_master_pid(config) is None


@pytest.mark.slow
def test_in_a_pipe_progress_is_plain_lines_and_the_temporary_var_dir_is_removed(
    tmp_dir: Path,
) -> None:
    result = run_demo("-n", "5", tmp_dir=tmp_dir)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("runnerkit demo: 5 messages to demo@example.com (3 members) in ")
    assert re.fullmatch(r"demo: [\d.]+s delivered 5/5 sent 5 \| .* msg/s", lines[-1])
    assert result.stdout.splitlines()[0] == "completed: every message accounted for"
    rows = summary_rows(result.stdout)
    assert rows["requested"] == rows["sent over LMTP"] == rows["delivered to the list's Maildir"]
    assert rows["lost"] == rows["not sent"] == "0"
    var_dir = re.search(r"^var dir: (.*) \(removed\)$", result.stdout, re.MULTILINE)
    assert var_dir is not None, result.stdout
    assert Path(var_dir.group(1)).parent == tmp_dir
    assert demo_dirs(tmp_dir) == []


@pytest.mark.slow
def test_keep_keeps_the_temporary_var_dir_and_says_where(tmp_dir: Path) -> None:
    result = run_demo("-n", "3", "--keep", "--json", tmp_dir=tmp_dir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["var_dir_removed"] is False
    assert demo_dirs(tmp_dir) == [Path(summary["var_dir"])]
    assert len(list((Path(summary["var_dir"]) / "maildir").rglob("new/*"))) == 3


@pytest.mark.slow
def test_a_timed_out_demo_says_so_and_exits_non_zero(tmp_dir: Path) -> None:
    result = run_demo("-n", "20000", "--timeout", "1", "--json", tmp_dir=tmp_dir)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["requested"] == 20000
    assert summary["timed_out"] is True
    assert summary["interrupted"] is False
    assert summary["sent"] + summary["not_sent"] == 20000
    assert summary["not_sent"] > 0
    assert 1 <= summary["seconds"] < 30
    assert summary["lost"] == 0
    assert summary["master_stopped"] is True
    assert "runnerkit: error: the demo timed out after 1s" in result.stderr
    # A demo that fell short keeps its var dir, logs and all, for a look.
    assert demo_dirs(tmp_dir) == [Path(summary["var_dir"])]
    assert summary["var_dir_removed"] is False


@pytest.mark.slow
def test_a_timed_out_demo_says_so_in_its_text_summary(tmp_dir: Path) -> None:
    result = run_demo("-n", "20000", "--timeout", "1", tmp_dir=tmp_dir)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("TIMED OUT after ")
    assert "(--timeout 1)" in result.stdout.splitlines()[0]
    assert summary_rows(result.stdout)["requested"] == "20000"


def start_demo(tmp_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    """``runnerkit demo`` in a session of its own, as a shell runs a foreground job."""
    with (
        (tmp_dir.parent / "stdout").open("w") as out,
        (tmp_dir.parent / "stderr").open("w") as err,
    ):
        return subprocess.Popen(
            [sys.executable, "-m", "runnerkit", "demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=demo_env(tmp_dir),
            start_new_session=True,
        )


def interrupt_while_delivering(tmp_dir: Path, signum: int, *args: str) -> tuple[int, str, str]:
    """Start a long demo, signal its process group mid-way, and return its exit and output."""
    var_dir = tmp_dir / "var"
    demo = start_demo(tmp_dir, "-n", "100000", "--var-dir", str(var_dir), *args)
    try:
        maildir = var_dir / "maildir" / "demo.example.com" / "new"
        wait_for(lambda: maildir.is_dir() and any(maildir.iterdir()), "a first delivery")
        os.killpg(demo.pid, signum)  # what Ctrl-C does: the terminal's foreground group
        status = demo.wait(timeout=DEADLINE)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    stdout = (tmp_dir.parent / "stdout").read_text()
    stderr = (tmp_dir.parent / "stderr").read_text()
    with Site(var_dir) as config:
        assert running_master_pid(config) is None
    # The master and every runner stopped: the master frees its lock as it exits, and
    # may take a moment more to be gone.
    wait_for(lambda: pids_using(tmp_dir) == [], "the master and its runners to be gone")
    return status, stdout, stderr


@pytest.mark.slow
def test_ctrl_c_stops_everything_and_prints_the_summary_so_far(tmp_dir: Path) -> None:
    status, stdout, stderr = interrupt_while_delivering(tmp_dir, signal.SIGINT)
    assert status == 130, stderr
    assert "Aborted!" not in stderr
    assert "Traceback" not in stderr
    assert stdout.startswith("INTERRUPTED after ")
    rows = summary_rows(stdout)
    assert rows["requested"] == "100000"
    assert 0 < int(rows["delivered to the list's Maildir"]) <= int(rows["sent over LMTP"])
    assert int(rows["sent over LMTP"]) + int(rows["not sent"]) == 100000
    assert rows["lost"] == "0"
    assert f"var dir: {tmp_dir / 'var'} (kept)" in stdout
    assert (
        "runnerkit: demo interrupted by SIGINT; the master and its runners stopped; "
        f"var dir: {tmp_dir / 'var'}"
    ) in stderr


@pytest.mark.slow
def test_sigterm_stops_everything_too_and_the_json_says_interrupted(tmp_dir: Path) -> None:
    status, stdout, stderr = interrupt_while_delivering(tmp_dir, signal.SIGTERM, "--json")
    assert status == 128 + signal.SIGTERM, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    assert summary["timed_out"] is False
    assert summary["master_stopped"] is True
    assert summary["lost"] == 0
    assert summary["var_dir"] == str(tmp_dir / "var")


@pytest.mark.slow
def test_on_a_terminal_the_bar_fits_its_width(tmp_dir: Path) -> None:
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 52, 0, 0))
    env = demo_env(tmp_dir)
    env.pop("COLUMNS", None)
    with (tmp_dir.parent / "stdout").open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "runnerkit", "demo", "-n", "30"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=secondary,
            env=env,
        )
    os.close(secondary)
    shown = b""
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the demo closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert demo.wait(timeout=DEADLINE) == 0
    finally:
        os.close(primary)
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert "completed" in (tmp_dir.parent / "stdout").read_text()
    text = shown.decode().replace("\r\n", "\n")
    header, _, bar = text.partition("\n")
    assert header.startswith("runnerkit demo: 30 messages")
    frames = bar.rstrip("\n").split("\r")
    assert frames[0] == ""
    assert len(frames) > 1
    assert all(len(frame) == 51 for frame in frames[1:]), frames
    assert frames[-1].startswith("[")
    assert "delivered 30/30" in frames[-1]
