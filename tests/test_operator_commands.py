"""The system as an operator tries it from outside: start, status, queues --json, stop --drain.

Real masters and runners over each test's var dir, with the runners of
``tests/processes/`` and the built-in LMTP and REST servers; a port is made busy with a
real socket.  Every wait is bounded, and the ``operator`` fixture kills, by pid, every
master and runner left when a test ends.  The first tests need no process at all: the
pieces that read a runner's last error line and that see who listens.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from child_processes import (
    BUILT_INS_OFF,
    DEADLINE,
    MasterGroup,
    Recordings,
    alive,
    enqueue,
    kill_at_end,
    master_section,
    processes_over,
    wait_for,
)

from runnerkit.config import Configuration
from runnerkit.master import Master, listening_addresses, output_path, running_master_pid
from runnerkit.master.output import MAX_LINE, TAIL_BYTES, clean_line, describe_end, last_line
from runnerkit.master.supervisor import DRAINED
from runnerkit.runners.lmtp import read_address
from runnerkit.testing import World

PROCESSES_DIR = Path(__file__).parent / "processes"
RUNNERKIT = Path(sys.executable).with_name("runnerkit")
#: ``python -c`` code that gives SIGINT its default action, unblocks it, and execs argv.
DEFAULT_SIGINT_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
BUILT_INS = ("lmtp", "in", "pipeline", "out", "retry", "bounces", "command", "rest")

#: How long a start may take on a loaded machine: the runner processes import a lot.
START_WAIT = "60"
#: The bound on a wait for a runner process to start, fail or restart.
SLOW_WAIT = 60.0

SLOW = """
[runner.slow]
class: process_runners.RecordingRunner
sleep_time: 100ms
"""

PAUSED = """
[runner.paused]
class: process_runners.PausedRunner
sleep_time: 100ms
"""

#: What a busy LMTP port makes the LMTP runner say (Linux's words for EADDRINUSE).
BUSY = (
    "cannot listen for LMTP on 127.0.0.1:{port}: Address already in use; "
    "set [lmtp] host and port to a free address"
)


# The last error line of a runner process, without processes.


def test_the_last_line_is_the_last_one_the_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "lmtp.err"
    path.write_bytes(b"Traceback of an earlier process\nValueError: old\n")
    start = path.stat().st_size
    assert last_line(path, start) == ""
    with path.open("ab") as file:
        file.write(
            b"Traceback (most recent call last):\n"
            b'  File "x.py", line 1, in <module>\n'
            b"runnerkit.errors.RunnerError: <LMTPRunner 'lmtp'>: cannot listen \x1b[31mhere\n"
            b"\n   \n"
        )
    # The class and the runner's name go (the status names the runner), and so does
    # the terminal escape.
    assert last_line(path, start) == "cannot listen ?[31mhere"
    assert last_line(path) == "cannot listen ?[31mhere"
    assert last_line(tmp_path / "missing.err") == ""


def test_a_last_line_is_cleaned_and_cut() -> None:
    assert clean_line("runnerkit: --runner 'x:9:2': bad") == "--runner 'x:9:2': bad"
    assert clean_line("ZeroDivisionError: division by zero") == (
        "ZeroDivisionError: division by zero"
    )
    assert clean_line("<InRunner 'in' slice 3>: no database") == "no database"
    long = clean_line("x" * (MAX_LINE * 2))
    assert len(long) == MAX_LINE
    assert long.endswith("...")


def test_only_the_tail_of_a_big_output_is_read(tmp_path: Path) -> None:
    path = tmp_path / "out.0.err"
    path.write_bytes(b"y" * (TAIL_BYTES * 4) + b"\nthe end\n")
    assert last_line(path) == "the end"


def test_how_a_process_ended() -> None:
    assert describe_end(1) == "exited with status 1"
    assert describe_end(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_end(-250) == "killed by signal 250"


def test_each_slot_has_its_own_output_file(tmp_path: Path) -> None:
    assert output_path(tmp_path, "lmtp", None) == tmp_path / "runners" / "lmtp.err"
    assert output_path(tmp_path, "in", 3) == tmp_path / "runners" / "in.3.err"


# Who listens, read from /proc.


def test_a_process_is_seen_listening_on_its_own_sockets_only() -> None:
    with socket.socket() as listener, socket.socket(socket.AF_INET6) as listener6:
        listener.bind(("127.0.0.1", 0))
        listener6.bind(("::1", 0))
        assert listening_addresses(os.getpid()) == []  # bound, not listening yet
        listener.listen()
        listener6.listen()
        port, port6 = listener.getsockname()[1], listener6.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            found = listening_addresses(os.getpid())
        assert found is not None
        assert sorted(found) == sorted([f"127.0.0.1:{port}", f"[::1]:{port6}"])
        # Another process, with nothing open, listens on nothing.
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert listening_addresses(other.pid) == []
        finally:
            other.kill()
            other.wait()
    assert listening_addresses(other.pid) == []  # gone


# A drain, on a master that runs no process.


def test_a_drain_stops_the_runners_without_a_queue_and_keeps_them_down(
    config: Configuration, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(PROCESSES_DIR))
    config.push(
        "drain",
        BUILT_INS_OFF + SLOW + "[runner.service]\nclass: process_runners.ServiceRunner\n"
        "queue: no\n",
    )
    config.push("rest", "[runner.rest]\nstart: yes\n")
    master = Master(config)
    rest, service, slow = sorted(master.slots, key=lambda slot: slot.name)
    assert (rest.name, service.name, slow.name) == ("rest", "service", "slow")
    for slot in master.slots:
        slot.start_at = None
    # The service waits to be restarted after a failure: the drain cancels that.
    service.start_at = time.monotonic() + 60

    assert master.drain() == [service]
    assert master.draining
    assert (service.start_at, service.state, service.down_reason) == (None, "down", DRAINED)
    # The REST runner takes no work in (intake = False): it serves through the drain.
    assert rest.down_reason == slow.down_reason == ""
    status = master.status()
    assert status.draining
    assert [runner.reason for runner in status.runners] == ["", DRAINED, ""]


# Real masters.


class Operator(MasterGroup, Recordings):
    """Runs ``runnerkit`` commands and masters over one world's var dir."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        super().__init__(world.config, tmp_path, PROCESSES_DIR)
        self.world = world

    def configure_site(self, on: Iterable[str], text: str, **master: str) -> None:
        """Write the masters' configuration: the built-in runners *on* started, the
        others off, and *text*; push it onto the test's configuration too."""
        off = "".join(f"[runner.{name}]\nstart: no\n\n" for name in BUILT_INS if name not in on)
        ini = master_section(self.master_defaults, **master) + "\n" + off + text
        self.ini.write_text(ini, encoding="utf-8")
        self.config.push_file(self.ini)

    def runnerkit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``runnerkit ARGS -C INI --var-dir VAR`` to its end, within :data:`SLOW_WAIT`
        seconds more than a ``start --wait`` or a drain may take."""
        return subprocess.run(
            [str(RUNNERKIT), *args, *self.options()],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=2 * SLOW_WAIT,
            check=False,
        )

    def popen(self, *args: str, interruptible: bool = False) -> subprocess.Popen[str]:
        """Start ``runnerkit ARGS -C INI --var-dir VAR``, its output in pipes.

        *interruptible*: the command starts with SIGINT at its default action and
        unblocked, as a terminal's foreground job does, whatever this test process
        inherited: a shell's background job (``pytest ... &``) ignores SIGINT, and
        an ignored signal stays ignored through ``exec``, so Ctrl-C would not reach it.
        """
        command = [str(RUNNERKIT), *args, *self.options()]
        if interruptible:
            command = [sys.executable, "-c", DEFAULT_SIGINT_EXEC, *command]
        return subprocess.Popen(
            command,
            env=self.env,
            cwd=self.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def start(self, *args: str) -> int:
        """``runnerkit start ARGS``; return the master's pid."""
        result = self.runnerkit("start", *args)
        assert result.returncode == 0, result.stderr
        match = re.fullmatch(r"master started with pid (\d+)\n", result.stdout)
        assert match is not None, result.stdout
        self.seen.add(int(match[1]))
        return int(match[1])

    def status_json(self) -> tuple[int, dict[str, object]]:
        """``runnerkit status --json``: its exit status and its document."""
        result = self.runnerkit("status", "--json")
        assert result.stderr == ""
        return result.returncode, json.loads(result.stdout)

    def row(self, text: str, name: str) -> str:
        """The line of runner *name* in the text of ``runnerkit status``."""
        runners = text.split("\n\n")[0]
        [line] = [line for line in runners.splitlines() if line.split()[:1] == [name]]
        return line

    def nothing_left(self) -> bool:
        return running_master_pid(self.config) is None and not processes_over(self.var_dir)


@pytest.fixture
def operator(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Operator]:
    monkeypatch.syspath_prepend(str(PROCESSES_DIR))
    yield from kill_at_end(Operator(world, tmp_path))


@pytest.fixture
def busy_port() -> Iterator[socket.socket]:
    """A socket listening on a free port of 127.0.0.1: the port is busy while it lives."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


# start.


@pytest.mark.slow
def test_start_fails_on_a_busy_lmtp_port_with_the_cause_and_stops_what_it_started(
    operator: Operator, busy_port: socket.socket
) -> None:
    port = busy_port.getsockname()[1]
    operator.configure_site({"lmtp"}, f"[lmtp]\nport: {port}\n" + SLOW)
    result = operator.runnerkit("start", "--wait", START_WAIT)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    match = re.fullmatch(
        re.escape(f"runnerkit: error: lmtp: {BUSY.format(port=port)}; ")
        + r"stopped the master \(pid (\d+)\) and its runners\n",
        result.stderr,
    )
    assert match is not None, result.stderr
    operator.seen.add(int(match[1]))
    # Nothing is left running: not the master, not the LMTP runner, not the slow one.
    wait_for(operator.nothing_left, "every process of the failed start to be gone", SLOW_WAIT)
    # The full story is in the LMTP runner's own output file.
    errors = output_path(operator.config.paths.log_dir, "lmtp", None)
    assert "Traceback (most recent call last):" in errors.read_text(encoding="utf-8")


@pytest.mark.slow
def test_start_returns_once_lmtp_and_rest_listen(operator: Operator) -> None:
    operator.configure_site(
        {"lmtp", "rest"},
        "[lmtp]\nport: 0\n\n[rest]\nport: 0\n\n[runner.rest]\nstart: yes\n" + SLOW,
    )
    master = operator.start("--wait", START_WAIT)
    # At once: no wait, no retry.
    address = read_address(operator.var_dir)
    assert address is not None
    with socket.create_connection(address, timeout=DEADLINE) as lmtp:
        assert lmtp.recv(512).startswith(b"220 ")
    rest_pid = operator.slot("rest", None)["pid"]
    [rest] = listening_addresses(rest_pid) or []
    with urllib.request.urlopen(f"http://{rest}/runners", timeout=DEADLINE) as answer:
        assert json.load(answer)["master_pid"] == master
    code, status = operator.status_json()
    assert code == 0
    assert status["problems"] == []
    # status says where each server listens (the ports were 0: any free one).
    servers = {runner["name"]: runner["listening"] for runner in status["runners"]}
    assert servers["rest"] == [rest]
    assert servers["lmtp"] == [f"{address[0]}:{address[1]}"]
    assert servers["slow"] == []
    text = operator.runnerkit("status").stdout
    assert f"  listening on {rest}\n" in text
    assert f"  listening on {address[0]}:{address[1]}\n" in text
    # And where the operator page is, with the file its token is in.
    token_file = operator.var_dir / "rest.token"
    assert (
        f"operator page: http://{rest}/ (its actions need the token: cat {token_file})\n" in text
    )


# status.


@pytest.mark.slow
def test_status_shows_why_a_runner_is_restarting_and_exits_1(
    operator: Operator, busy_port: socket.socket
) -> None:
    port = busy_port.getsockname()[1]
    # One failure, then a minute's pause before the only restart: long enough to look.
    operator.configure_site(
        {"lmtp"},
        f"[lmtp]\nport: {port}\n\n[runner.lmtp]\nmax_restarts: 1\n" + SLOW,
        backoff_base="1m",
        backoff_max="1m",
    )
    master = operator.start("--wait", "0")
    wait_for(
        lambda: operator.slot("lmtp", None)["last_error"], "the LMTP runner to fail", SLOW_WAIT
    )
    busy = BUSY.format(port=port)

    result = operator.runnerkit("status")
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(f"master: running, pid {master}\n")
    assert re.fullmatch(
        r"lmtp +- +- starting +1 +- +"
        + re.escape(f"(backing off 60.00s before restart 1 of 1; last error: {busy})"),
        operator.row(result.stdout, "lmtp"),
    )
    assert re.fullmatch(r"slow +0/1 +\d+ running +0 +0", operator.row(result.stdout, "slow"))
    # Every queue, bad and shunt included, while the master runs.
    assert result.stdout.split("\n\n")[1].splitlines()[1:] == [
        f"{name:<12} {0:>7}"
        for name in (
            "bad",
            "bounces",
            "command",
            "in",
            "out",
            "pipeline",
            "retry",
            "shunt",
            "slow",
        )
    ]

    code, status = operator.status_json()
    assert code == 1
    assert (status["master"], status["master_pid"], status["draining"]) == (
        "running",
        master,
        False,
    )
    assert set(status["queues"]) == {
        *("bad", "bounces", "command", "in", "out", "pipeline", "retry", "shunt", "slow")
    }
    [lmtp] = [runner for runner in status["runners"] if runner["name"] == "lmtp"]
    assert (lmtp["state"], lmtp["pid"], lmtp["last_error"]) == ("starting", None, busy)
    assert status["problems"] == [
        f"lmtp -: starting (backing off 60.00s before restart 1 of 1): {busy}"
    ]


@pytest.mark.slow
def test_the_last_error_is_of_the_last_failed_process_across_restarts_and_sigkill(
    operator: Operator, busy_port: socket.socket
) -> None:
    port = busy_port.getsockname()[1]
    operator.configure_site(
        {"lmtp"}, f"[lmtp]\nport: {port}\n" + SLOW, backoff_base="2s", backoff_max="2s"
    )
    operator.start("--wait", "0")
    wait_for(
        lambda: operator.slot("lmtp", None)["last_error"], "the LMTP runner to fail", SLOW_WAIT
    )
    busy_port.close()
    # The port is free: the restarted runner listens, and the failure stays on record.
    wait_for(
        lambda: read_address(operator.var_dir) is not None, "the LMTP runner to listen", SLOW_WAIT
    )
    lmtp = operator.slot("lmtp", None)
    assert lmtp["state"] == "running"
    assert lmtp["last_error"] == BUSY.format(port=port)
    result = operator.runnerkit("status")
    assert result.returncode == 0, result.stdout
    assert "last error" not in result.stdout  # shown only for a runner that is not running

    # A process killed outright writes nothing: its end speaks, not the old traceback.
    os.kill(lmtp["pid"], signal.SIGKILL)
    wait_for(lambda: operator.slot("lmtp", None)["restarts"] == 2, "the second restart", SLOW_WAIT)
    assert operator.slot("lmtp", None)["last_error"] == "killed by SIGKILL"


def test_ctrl_c_during_start_stops_what_it_started(operator: Operator) -> None:
    operator.configure_site(
        {"lmtp"}, "[lmtp]\nport: 0\n[runner.lmtp]\nclass: process_runners.SlowLMTPRunner\n"
    )
    began = time.monotonic()
    start = operator.popen("start", "--wait", "60", interruptible=True)
    wait_for(
        lambda: running_master_pid(operator.config) is not None, "the master to start", SLOW_WAIT
    )
    master = running_master_pid(operator.config)
    # What the start process inherits, should it not take the signal.
    inherited = [
        line
        for line in Path(f"/proc/{start.pid}/status").read_text().splitlines()
        if line.startswith(("SigBlk", "SigIgn"))
    ]
    start.send_signal(signal.SIGINT)
    out, err = start.communicate(timeout=SLOW_WAIT)
    took = time.monotonic() - began
    assert start.returncode == 130, (start.returncode, out, err, f"{took:.1f} s", inherited)
    assert out == ""
    assert err == f"runnerkit: interrupted; stopped the master (pid {master}) and its runners\n"
    assert running_master_pid(operator.config) is None
    wait_for(operator.nothing_left, "every process to be gone", SLOW_WAIT)


# stop --drain.


@pytest.mark.slow
def test_a_drain_closes_lmtp_first_then_waits_for_the_queues(operator: Operator) -> None:
    operator.configure_site({"lmtp"}, "[lmtp]\nport: 0\n" + SLOW)
    slow = operator.switchboard("slow")
    master = operator.start("--wait", START_WAIT)
    address = read_address(operator.var_dir)
    assert address is not None
    slow_pid = operator.slot("slow")["pid"]
    enqueue(slow, "m1", gate=True)
    wait_for(lambda: operator.records("started-m1"), "the slow runner to start m1", SLOW_WAIT)
    enqueue(slow, "m2")
    enqueue(operator.switchboard("shunt"), "kept", whichq="slow")

    drain = operator.popen("stop", "--drain", "--timeout", "60")
    wait_for(
        lambda: (
            operator.status().get("draining") and operator.slot("lmtp", None)["state"] == "down"
        ),
        "the master to stop its intake",
        SLOW_WAIT,
    )
    # LMTP no longer listens, while the queue still holds work and is worked.
    assert operator.slot("lmtp", None)["reason"] == DRAINED
    assert read_address(operator.var_dir) is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=DEADLINE).close()
    result = operator.runnerkit("status")
    assert result.returncode == 1
    assert result.stdout.startswith(f"master: running, pid {master}, draining (intake stopped)\n")
    assert drain.poll() is None
    assert alive(slow_pid)
    assert running_master_pid(operator.config) == master

    operator.release("m1")
    out, err = drain.communicate(timeout=2 * SLOW_WAIT)
    assert drain.returncode == 0, err
    assert re.fullmatch(
        rf"left for an operator: shunt 1\ndrained in \d+\.\ds; master {master} stopped\n", out
    )
    assert err == ""
    # Both messages were processed before the stop, by the one slow runner.
    assert operator.records("done-m1") == [f"pid {slow_pid} slice 0"]
    assert operator.records("done-m2") == [f"pid {slow_pid} slice 0"]
    assert slow.files == []
    assert slow.get_files(".bak") == []
    wait_for(operator.nothing_left, "every process to be gone", SLOW_WAIT)


@pytest.mark.slow
def test_a_drain_that_times_out_stops_anyway_and_names_what_is_left(operator: Operator) -> None:
    operator.configure_site({"lmtp"}, "[lmtp]\nport: 0\n" + PAUSED)
    paused = operator.switchboard("paused")
    waiting = [enqueue(paused, tag) for tag in ("a", "b")]
    master = operator.start("--wait", START_WAIT)

    result = operator.runnerkit("stop", "--drain", "--timeout", "2")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "runnerkit: error: the queues did not drain within 2s; left, for the next start: "
        f"paused 2; master {master} stopped\n"
    )
    assert paused.files == waiting
    wait_for(operator.nothing_left, "every process to be gone", SLOW_WAIT)


def test_a_drain_needs_a_running_master(operator: Operator) -> None:
    operator.configure_site((), PAUSED)
    result = operator.runnerkit("stop", "--drain")
    assert result.returncode == 1
    assert result.stderr == (
        f"runnerkit: error: no master is running on {operator.var_dir}; "
        "start one with 'runnerkit start'\n"
    )


def test_stop_with_timeout_0_asks_and_does_not_wait(operator: Operator) -> None:
    operator.configure_site((), SLOW)
    master = operator.start("--wait", START_WAIT)
    result = operator.runnerkit("stop", "--timeout", "0")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"asked master {master} to stop\n",
        "",
    )
    wait_for(lambda: running_master_pid(operator.config) is None, "the master to stop", SLOW_WAIT)
