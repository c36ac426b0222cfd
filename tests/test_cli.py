"""The ``runnerkit`` command line, without a master.

Most commands run in this process through :class:`click.testing.CliRunner`; where the
process matters (exit status, standard streams, standard input, the environment, the
current directory) the real ``runnerkit`` console script runs as a child process, with a
deadline.  Every test has its own var dir, and reads what a command did from it with a
:class:`Configuration` of its own.  Commands that need a running master are tested with
the master; here, ``stop``, ``restart`` and ``status`` only meet a var dir without one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from runnerkit import queuefile
from runnerkit.cli import main
from runnerkit.cli.table import echo_table
from runnerkit.config import Configuration
from runnerkit.message import Message, message_from_bytes, message_from_string
from runnerkit.site import Site
from runnerkit.switchboard import METADATA_VERSION

#: The bound on every child process.
DEADLINE = 60.0

#: Where a command's message on failure starts.
ERROR = "runnerkit: error: "

MESSAGE = """\
From: anne@example.com
To: ant@example.com
Subject: hello ants
Message-ID: <hello@example.com>

Hello.
"""


def console_script() -> list[str]:
    """The command that runs ``runnerkit``: the console script next to this Python."""
    script = Path(sys.executable).parent / "runnerkit"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from runnerkit.cli import main; main()"]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without runnerkit's variables, plus *extra*."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RUNNERKIT_VAR_DIR", "RUNNERKIT_CONFIG")
    }
    env.update(extra)
    return env


class Commands:
    """Runs ``runnerkit`` over one var dir, in process or as a child process."""

    def __init__(self, var_dir: Path, tmp_path: Path) -> None:
        self.var_dir = var_dir
        self.tmp_path = tmp_path

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: dict[str, str | None] | None = None,
    ) -> Result:
        """Run ``runnerkit ARGS`` in this process, with ``RUNNERKIT_VAR_DIR`` set."""
        environment: dict[str, str | None] = {
            "RUNNERKIT_VAR_DIR": str(self.var_dir),
            "RUNNERKIT_CONFIG": None,
        }
        environment.update(env or {})
        return CliRunner().invoke(
            main,
            list(args),
            input=input,
            env=environment,
            prog_name="runnerkit",
            catch_exceptions=False,
        )

    def process(
        self,
        *args: str,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``runnerkit ARGS`` as a child process; by default over this var dir."""
        environment = clean_environment(RUNNERKIT_VAR_DIR=str(self.var_dir))
        if env is not None:
            environment = clean_environment(**env)
        completed = subprocess.run(
            [*console_script(), *args],
            input=input,
            capture_output=True,
            env=environment,
            cwd=cwd or self.tmp_path,
            timeout=DEADLINE,
            check=False,
        )
        return subprocess.CompletedProcess(
            completed.args,
            completed.returncode,
            completed.stdout.decode("utf-8"),
            completed.stderr.decode("utf-8"),
        )

    def configuration(self, var_dir: Path | None = None) -> Configuration:
        """A configuration over the var dir, to look at what a command did; close it."""
        return Site(var_dir or self.var_dir)

    def queued(self, queue: str, var_dir: Path | None = None) -> list[tuple[Message, Any]]:
        """The messages and metadata in *queue*, oldest first, left in place."""
        with self.configuration(var_dir) as config:
            switchboard = config.switchboards[queue]
            found = []
            for filebase in switchboard.files:
                path = switchboard.queue_directory / f"{filebase}.pck"
                entry = queuefile.decode(path.read_bytes())
                found.append((entry.message, entry.metadata))
            return found

    def enqueue(self, queue: str, text: str = MESSAGE, **metadata: Any) -> Path:
        """Queue a message directly and return its file's path."""
        with self.configuration() as config:
            switchboard = config.switchboards[queue]
            filebase = switchboard.enqueue(message_from_string(text), metadata)
            return switchboard.queue_directory / f"{filebase}.pck"


@pytest.fixture
def rk(tmp_path: Path) -> Commands:
    return Commands(tmp_path / "var", tmp_path)


@pytest.fixture
def message_file(tmp_path: Path) -> Path:
    path = tmp_path / "message.eml"
    path.write_text(MESSAGE, encoding="utf-8")
    return path


@pytest.fixture
def ant(rk: Commands) -> str:
    """The list ant@example.com, with no members."""
    result = rk("lists", "create", "ant@example.com")
    assert result.exit_code == 0, result.output
    return "ant@example.com"


def assert_error(result: Result, exit_code: int, *fragments: str) -> str:
    """Check a failed command: its status, one ``runnerkit: error:`` line first on
    stderr, nothing on stdout, and *fragments* in the message.  Return the message."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith(ERROR), result.stderr
    message = result.stderr.splitlines()[0][len(ERROR) :]
    for fragment in fragments:
        assert fragment in message, message
    return message


# Help.


def command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command and group under *command*, itself included."""
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from command_paths(sub, (*path, name))


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


ALL_COMMANDS = list(command_paths(main))

#: Every command the issue asks for, at least.
EXPECTED_COMMANDS = {
    ("start",),
    ("stop",),
    ("restart",),
    ("status",),
    ("inject",),
    ("queues",),
    ("qfile",),
    ("unshunt",),
    ("lists", "create"),
    ("lists", "list"),
    ("lists", "delete"),
    ("members", "add"),
    ("members", "list"),
    ("members", "remove"),
}


def test_every_command_of_the_issue_exists() -> None:
    assert set(ALL_COMMANDS) >= EXPECTED_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "runnerkit")
def test_help_of_every_command(rk: Commands, path: tuple[str, ...]) -> None:
    command = command_at(path)
    result = rk(*path, "--help")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout.startswith(f"Usage: {' '.join(('runnerkit', *path))} [OPTIONS]")
    assert "-h, --help  " in result.stdout
    assert rk(*path, "-h").stdout == result.stdout
    # Every command says what it does, and every option what it is for.
    assert command.help, f"{path} has no description"
    assert " ".join(command.help.split("\n\n")[0].split()) in " ".join(result.stdout.split())
    for parameter in command.params:
        if isinstance(parameter, click.Option) and parameter.name not in ("help", "version"):
            assert parameter.help, f"{path}: option {parameter.opts} has no help"
    if isinstance(command, click.Group):
        assert "Commands:" in result.stdout
        for name in command.commands:
            assert re.search(rf"^  {re.escape(name)}\s", result.stdout, re.MULTILINE)


@pytest.mark.parametrize(
    "path", sorted(EXPECTED_COMMANDS - {("qfile",)}), ids=lambda path: " ".join(path)
)
def test_commands_over_a_var_dir_take_config_and_var_dir(rk: Commands, path: tuple[str]) -> None:
    text = rk(*path, "--help").stdout
    assert "-C, --config FILE" in text
    assert "$RUNNERKIT_CONFIG" in text
    assert "--var-dir DIR" in text
    assert "$RUNNERKIT_VAR_DIR" in text


def test_help_and_version_from_the_console_script(rk: Commands) -> None:
    completed = rk.process("--help")
    assert completed.returncode == 0
    assert completed.stdout.startswith("Usage: runnerkit [OPTIONS] COMMAND [ARGS]...")
    assert completed.stderr == ""
    version = rk.process("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"runnerkit, version \d+\.\d+\.\d+\S*\n", version.stdout)


# Usage and configuration errors: status 2.


def test_unknown_command_is_a_usage_error(rk: Commands) -> None:
    result = rk("frobnicate")
    assert_error(result, 2, "No such command 'frobnicate'")
    assert "Try 'runnerkit --help' for help." in result.stderr


def test_missing_argument_is_a_usage_error(rk: Commands) -> None:
    result = rk("members", "add", "ant@example.com")
    assert_error(result, 2, "Missing argument 'ADDRESS'")
    assert "Usage: runnerkit members add [OPTIONS] LISTNAME ADDRESS" in result.stderr
    assert "Try 'runnerkit members add --help' for help." in result.stderr


def test_unknown_option_is_a_usage_error(rk: Commands) -> None:
    # click words it "No such option: --x" up to 8.2, "No such option '--x'" after.
    assert_error(rk("queues", "--frobnicate"), 2, "No such option", "--frobnicate")


def test_a_group_without_a_command_shows_its_help(rk: Commands) -> None:
    # (Its exit status is click's: 0 before click 8.2, 2 since.)
    result = rk("members")
    assert "Usage: runnerkit members [OPTIONS] COMMAND [ARGS]..." in result.output
    assert "add" in result.output


@pytest.mark.parametrize(
    "args",
    [("queues",), ("status",), ("stop",), ("restart",), ("lists", "list"), ("unshunt",)],
    ids=" ".join,
)
def test_a_missing_config_file_is_a_configuration_error(
    rk: Commands, tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "missing.ini"
    assert_error(
        rk(*args, "-C", str(missing)), 2, f"cannot read configuration file {str(missing)!r}"
    )


def test_a_bad_config_file_names_the_bad_value(rk: Commands, tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[runner.in]\ninstances: 3\n", encoding="utf-8")
    message = assert_error(rk("queues", "-C", str(ini)), 2, str(ini), "instances", "3")
    assert "runner.in" in message


def test_a_bad_config_file_from_the_environment(rk: Commands, tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[lmtp]\nport: many\n", encoding="utf-8")
    assert_error(rk("queues", env={"RUNNERKIT_CONFIG": str(ini)}), 2, "port", "many")


def test_start_refuses_a_port_out_of_range_before_starting_anything(
    rk: Commands, tmp_path: Path
) -> None:
    ini = tmp_path / "port.ini"
    ini.write_text("[lmtp]\nport: 70000\n", encoding="utf-8")
    assert_error(rk("start", "-C", str(ini)), 2, str(ini), "[lmtp]", "'port'", "'70000'", "65535")
    assert not (rk.var_dir / "master.pid").exists()


def test_start_refuses_a_runner_class_that_cannot_be_loaded(rk: Commands, tmp_path: Path) -> None:
    ini = tmp_path / "class.ini"
    ini.write_text("[runner.helper]\nclass: rk_no_such_module.Helper\n", encoding="utf-8")
    assert_error(
        rk("start", "-C", str(ini)),
        2,
        "[runner.helper]",
        "cannot import module 'rk_no_such_module'",
    )
    assert not (rk.var_dir / "master.pid").exists()


def test_a_lock_held_without_a_pid_is_never_signalled(rk: Commands) -> None:
    # An operator's flock on the master lock writes no pid: stop and restart must not
    # guess one (kill(-1) would reach every process of the user).
    lock = rk.var_dir / "locks" / "master.lck"
    lock.parent.mkdir(parents=True)
    lock.touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True); time.sleep(60)\n",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        for command in ("stop", "restart"):
            assert_error(rk(command), 1, "wrote no pid", "signals no process it cannot name")
        result = rk("status")
        assert "master: lock held by a process that wrote no pid" in result.output
        assert result.exit_code == 4
        status = json.loads(rk("status", "--json").stdout)
        assert (status["master"], status["master_pid"]) == ("unknown", None)
        assert holder.poll() is None
        assert canary.poll() is None
    finally:
        for process in (holder, canary):
            process.kill()
            process.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_inject_to_an_unknown_queue_names_the_queues(rk: Commands, message_file: Path) -> None:
    assert_error(
        rk("inject", "-q", "nosuch", str(message_file)),
        2,
        "no queue 'nosuch'",
        "bad, bounces, command, in, out, pipeline, retry, shunt",
    )


def test_inject_a_missing_file(rk: Commands, tmp_path: Path) -> None:
    assert_error(rk("inject", str(tmp_path / "nope.eml")), 2, "No such file or directory")


def test_members_with_an_unknown_role(rk: Commands, ant: str) -> None:
    result = rk("members", "add", "--role", "boss", ant, "anne@example.com")
    assert_error(result, 2, "'boss'", "member", "owner", "moderator")
    assert_error(rk("members", "list", "--role", "boss", ant), 2, "'boss'")


# Without a master: stop and restart fail (status 1), status reports.


@pytest.mark.parametrize("command", ["stop", "restart"])
def test_without_a_master_stop_and_restart_fail(rk: Commands, command: str) -> None:
    completed = rk.process(command)
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr == (
        f"{ERROR}no master is running on {rk.var_dir}; start one with 'runnerkit start'\n"
    )


def test_status_without_a_master_shows_queue_depths_and_exits_3(rk: Commands) -> None:
    rk.enqueue("in")
    rk.enqueue("in")
    rk.enqueue("shunt", whichq="out")
    completed = rk.process("status")
    # 3: not running, as an LSB init script's status says.
    assert completed.returncode == 3, completed.stderr
    assert completed.stderr == ""
    assert completed.stdout == (
        "master: not running\n"
        "\n"
        "queue          depth\n"
        "bad                0\n"
        "bounces            0\n"
        "command            0\n"
        "in                 2\n"
        "out                0\n"
        "pipeline           0\n"
        "retry              0\n"
        "shunt              1\n"
    )


def test_status_json_without_a_master_is_complete_and_exits_3(rk: Commands) -> None:
    rk.enqueue("out")
    result = rk("status", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout) == {
        "master": "not running",
        "master_pid": None,
        "draining": False,
        "runners": [],
        "queues": {
            "bad": 0,
            "bounces": 0,
            "command": 0,
            "in": 0,
            "out": 1,
            "pipeline": 0,
            "retry": 0,
            "shunt": 0,
        },
        "queue_backend": {"backend": "file", "server": None, "key_prefix": None},
        "problems": ["master: not running"],
    }


# The environment and the var dir.


def test_the_var_dir_comes_from_the_environment(rk: Commands, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    result = rk("lists", "create", "ant@example.com", env={"RUNNERKIT_VAR_DIR": str(elsewhere)})
    assert result.exit_code == 0
    assert (elsewhere / "data" / "runnerkit.db").exists()
    assert not rk.var_dir.exists()
    assert "\nant@example.com " in rk("lists", "list", "--var-dir", str(elsewhere)).stdout
    assert rk("lists", "list").exit_code == 2  # the default var dir does not exist


def test_the_option_beats_the_environment(rk: Commands, tmp_path: Path) -> None:
    option = tmp_path / "option"
    rk("lists", "create", "ant@example.com", "--var-dir", str(option))
    assert (option / "data" / "runnerkit.db").exists()
    assert not rk.var_dir.exists()


def test_the_var_dir_defaults_to_var_in_the_current_directory(
    rk: Commands, tmp_path: Path
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    completed = rk.process("lists", "create", "ant@example.com", env={}, cwd=here)
    assert completed.returncode == 0, completed.stderr
    assert (here / "var" / "data" / "runnerkit.db").exists()
    listed = rk.process("lists", "list", env={}, cwd=here)
    assert listed.stdout.splitlines()[1].startswith("ant@example.com ")


def test_config_files_come_from_the_environment(rk: Commands, tmp_path: Path) -> None:
    first = tmp_path / "first.ini"
    first.write_text(f"[paths]\nvar_dir: {tmp_path / 'configured'}\n", encoding="utf-8")
    second = tmp_path / "second.ini"
    second.write_text("[runner.extra]\nstart: no\n", encoding="utf-8")
    (tmp_path / "configured").mkdir()
    completed = rk.process(
        "queues", env={"RUNNERKIT_CONFIG": os.pathsep.join([str(first), str(second)])}
    )
    assert completed.returncode == 0, completed.stderr
    assert "extra" in dict(line.split() for line in completed.stdout.splitlines())
    # queues only looks: the var dir is the configured one, and nothing was made in it.
    assert list((tmp_path / "configured").iterdir()) == []


def test_config_option_repeats(rk: Commands, tmp_path: Path) -> None:
    first = tmp_path / "first.ini"
    first.write_text("[runner.extra]\nstart: no\n", encoding="utf-8")
    second = tmp_path / "second.ini"
    second.write_text("[runner.more]\nstart: no\n", encoding="utf-8")
    rk.var_dir.mkdir()
    result = rk("queues", "-C", str(first), "-C", str(second))
    assert result.exit_code == 0
    assert {"extra", "more"} <= {line.split()[0] for line in result.stdout.splitlines()}


# Lists.


def test_lists_create_list_and_delete(rk: Commands) -> None:
    rk.var_dir.mkdir()
    assert rk("lists", "list").stdout == "no mailing lists\n"
    created = rk("lists", "create", "Ant@Example.com")
    assert created.exit_code == 0
    assert created.stdout == "created ant@example.com (list id ant.example.com)\n"
    result = rk("lists", "create", "bee@example.org", "--language", "fr", "--display-name", "B")
    assert result.exit_code == 0
    assert rk("members", "add", "ant@example.com", "anne@example.com").exit_code == 0
    assert rk("lists", "list").stdout == (
        "LIST             LIST-ID          LANGUAGE  MEMBERS\n"
        "ant@example.com  ant.example.com  en        1\n"
        "bee@example.org  bee.example.org  fr        0\n"
    )
    with rk.configuration() as config:
        bee = config.lists.get("bee@example.org")
        assert bee is not None
        assert bee.display_name == "B"
    deleted = rk("lists", "delete", "ant@example.com")
    assert (deleted.exit_code, deleted.stdout) == (0, "deleted ant@example.com\n")
    assert rk("lists", "list").stdout == (
        "LIST             LIST-ID          LANGUAGE  MEMBERS\n"
        "bee@example.org  bee.example.org  fr        0\n"
    )


def test_lists_create_twice_fails(rk: Commands, ant: str) -> None:
    assert_error(rk("lists", "create", ant), 1, "cannot create list", "exists already")


def test_lists_create_with_a_bad_name_fails(rk: Commands) -> None:
    assert_error(rk("lists", "create", "no-domain"), 1, "invalid email address 'no-domain'")
    assert rk("lists", "list").stdout == "no mailing lists\n"


def test_lists_delete_a_missing_list_fails(rk: Commands) -> None:
    assert_error(rk("lists", "delete", "ghost@example.com"), 1, "no mailing list")


# Members.

#: ``members list --role owner`` of the list ant with its one owner.
OLGA = "ADDRESS           NAME  LANGUAGE\nolga@example.com  -     -\n"


def test_members_add_list_and_remove(rk: Commands, ant: str) -> None:
    added = rk("members", "add", ant, "anne@example.com", "--name", "Anne", "--language", "fr")
    assert (added.exit_code, added.stdout) == (
        0,
        "subscribed anne@example.com to ant@example.com as member\n",
    )
    assert rk("members", "add", ant, "bart@example.com").exit_code == 0
    assert rk("members", "add", ant, "olga@example.com", "--role", "owner").exit_code == 0
    assert rk("members", "list", ant).stdout == (
        "ADDRESS           NAME  LANGUAGE\nanne@example.com  Anne  fr\nbart@example.com  -     -\n"
    )
    assert rk("members", "list", "--role", "owner", ant).stdout == OLGA
    with rk.configuration() as config:
        mlist = config.lists.get(ant)
        assert mlist is not None
        anne = mlist.get_member("anne@example.com")
        assert anne is not None
        assert (anne.display_name, anne.preferred_language) == ("Anne", "fr")
    removed = rk("members", "remove", ant, "anne@example.com")
    assert (removed.exit_code, removed.stdout) == (
        0,
        "removed anne@example.com from ant@example.com\n",
    )
    assert rk("members", "list", ant).stdout == (
        "ADDRESS           NAME  LANGUAGE\nbart@example.com  -     -\n"
    )
    assert rk("members", "list", "--role", "owner", ant).stdout == OLGA


def test_members_of_a_list_given_by_its_list_id(rk: Commands, ant: str) -> None:
    assert rk("members", "add", "ant.example.com", "anne@example.com").exit_code == 0
    assert rk("members", "list", ant).stdout.splitlines()[1:] == ["anne@example.com  -     -"]


def test_members_add_twice_fails(rk: Commands, ant: str) -> None:
    rk("members", "add", ant, "anne@example.com")
    assert_error(rk("members", "add", ant, "ANNE@example.com"), 1, "already a member")


def test_members_add_with_a_bad_language_fails(rk: Commands, ant: str) -> None:
    assert_error(
        rk("members", "add", ant, "anne@example.com", "--language", "not a language"),
        1,
        "language 'not a language'",
    )
    assert rk("members", "list", ant).stdout == f"no members of {ant}\n"


def test_members_add_a_bad_address_fails(rk: Commands, ant: str) -> None:
    assert_error(rk("members", "add", ant, "Anne <anne@example.com>"), 1, "invalid email")


def test_members_remove_a_stranger_fails(rk: Commands, ant: str) -> None:
    assert_error(rk("members", "remove", ant, "zed@example.com"), 1, "is not a member")


def test_members_of_a_missing_list(rk: Commands) -> None:
    for args in (
        ("add", "ghost@example.com", "anne@example.com"),
        ("list", "ghost@example.com"),
        ("remove", "ghost@example.com", "anne@example.com"),
    ):
        assert_error(
            rk("members", *args), 1, "no mailing list 'ghost@example.com'", "runnerkit lists list"
        )


# Inject.


def queued_filebase(result: Result | subprocess.CompletedProcess[str], queue: str) -> str:
    found = re.fullmatch(rf"queued (\S+) in queue '{queue}'\n", result.stdout)
    assert found, result.stdout
    return found.group(1)


def test_inject_a_file_to_a_queue_for_a_list(rk: Commands, ant: str, message_file: Path) -> None:
    result = rk("inject", "-l", ant, "-q", "pipeline", str(message_file))
    assert result.exit_code == 0
    filebase = queued_filebase(result, "pipeline")
    [(msg, metadata)] = rk.queued("pipeline")
    assert msg["Subject"] == "hello ants"
    assert msg.get_payload() == "Hello.\n"
    assert metadata["listid"] == "ant.example.com"
    assert metadata["listname"] == "ant@example.com"
    assert rk.queued("in") == []
    with rk.configuration() as config:
        assert config.switchboards["pipeline"].files == [filebase]


def test_inject_goes_to_in_by_default(rk: Commands, ant: str, message_file: Path) -> None:
    result = rk("inject", "-l", ant, str(message_file))
    queued_filebase(result, "in")
    [(msg, metadata)] = rk.queued("in")
    assert msg["Message-ID"] == "<hello@example.com>"
    assert metadata["listid"] == "ant.example.com"


def test_inject_from_standard_input(rk: Commands, ant: str) -> None:
    result = rk("inject", "--list", "ant.example.com", "--queue", "out", "-", input=MESSAGE)
    queued_filebase(result, "out")
    [(msg, metadata)] = rk.queued("out")
    assert msg["Subject"] == "hello ants"
    assert metadata["listname"] == "ant@example.com"


def test_inject_from_the_standard_input_of_a_process(rk: Commands, ant: str) -> None:
    completed = rk.process("inject", "-l", ant, "-", input=MESSAGE.encode("ascii"))
    assert completed.returncode == 0, completed.stderr
    queued_filebase(completed, "in")
    [(msg, metadata)] = rk.queued("in")
    assert msg["To"] == "ant@example.com"
    assert metadata["listid"] == "ant.example.com"


def test_inject_nothing_is_refused(rk: Commands) -> None:
    assert_error(rk("inject", "-", input=""), 2, "is empty")
    assert rk.queued("in") == []


def test_inject_for_a_missing_list_fails(rk: Commands, message_file: Path) -> None:
    assert_error(
        rk("inject", "-l", "ghost@example.com", str(message_file)),
        1,
        "no mailing list 'ghost@example.com'",
        "runnerkit lists list",
    )
    assert rk.queued("in") == []


# Queues.


def test_queues_shows_every_depth(rk: Commands) -> None:
    for _ in range(3):
        rk.enqueue("pipeline")
    rk.enqueue("shunt", whichq="in")
    damaged = rk.enqueue("bad")
    damaged.rename(damaged.with_suffix(".psv"))
    rk.enqueue("bad")
    result = rk("queues")
    assert result.exit_code == 0
    assert result.stdout == (
        "bad                2\n"
        "bounces            0\n"
        "command            0\n"
        "in                 0\n"
        "out                0\n"
        "pipeline           3\n"
        "retry              0\n"
        "shunt              1\n"
    )


def test_queues_json_gives_every_depth(rk: Commands) -> None:
    rk.enqueue("pipeline")
    rk.enqueue("shunt", whichq="in")
    damaged = rk.enqueue("bad")
    damaged.rename(damaged.with_suffix(".psv"))
    completed = rk.process("queues", "--json")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    # One line, the layout of the REST runner's /queues.
    assert completed.stdout.count("\n") == 1
    assert json.loads(completed.stdout) == {
        "queues": {
            "bad": 1,
            "bounces": 0,
            "command": 0,
            "in": 0,
            "out": 0,
            "pipeline": 1,
            "retry": 0,
            "shunt": 1,
        }
    }


# qfile.


def test_qfile_prints_message_and_metadata(rk: Commands) -> None:
    path = rk.enqueue("in", listid="ant.example.com", received_time=1.5)
    result = rk("qfile", str(path))
    assert result.exit_code == 0
    message, _, metadata = result.stdout.partition("-" * 20 + " metadata " + "-" * 20 + "\n")
    assert "Subject: hello ants" in message
    assert "Hello." in message
    assert metadata.splitlines() == [
        "_parsemsg    : False",
        "listid       : 'ant.example.com'",
        "received_time: 1.5",
        f"version      : {METADATA_VERSION}",
        "recoveries   : 0",
    ]


def pickle_payload(marker: Path) -> bytes:
    """A pickle that creates the directory *marker* when it is loaded."""

    class Exploit:
        def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
            return os.mkdir, (str(marker),)

    return pickle.dumps(Exploit())


def test_the_pickle_payload_is_live(tmp_path: Path) -> None:
    # The control for the tests below: loading the payload does run code.
    marker = tmp_path / "control"
    pickle.loads(pickle_payload(marker))
    assert marker.is_dir()


def test_qfile_refuses_a_pickle(rk: Commands, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / f"1700000000.000000000+{'0' * 40}.pck"
    path.write_bytes(pickle_payload(marker))
    message = assert_error(
        rk("qfile", str(path)), 1, str(path), "not a valid runnerkit queue file"
    )
    assert "does not start with" in message
    assert not marker.exists()


def test_qfile_refuses_a_pickle_dressed_as_a_queue_file(rk: Commands, tmp_path: Path) -> None:
    # A pickle in the metadata's place, behind a well-formed header and checksum of the
    # earlier format, which is still read.
    marker = tmp_path / "pwned"
    metadata, body = pickle_payload(marker), b"Subject: hi\n\nhi\n"
    fields = b"%d %d b 0 %d" % (len(metadata), len(body), len(body))
    checksum = hashlib.sha256(fields + metadata + body).hexdigest().encode("ascii")
    path = tmp_path / "crafted.pck"
    path.write_bytes(
        queuefile.MAGIC_RKQ1 + fields + b" " + checksum + b"\n" + metadata + body + queuefile.END
    )
    assert_error(rk("qfile", str(path)), 1, "its metadata does not decode")
    assert not marker.exists()


def test_qfile_shows_what_reads_of_a_damaged_file(rk: Commands, tmp_path: Path) -> None:
    # Cut after its metadata: that still reads, and is shown, then the reason (exit 1).
    path = rk.enqueue("in", listid="ant.example.com")
    path.write_bytes(path.read_bytes()[:-3])
    result = rk("qfile", str(path))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "(the message cannot be read: the file is damaged; its metadata, as far as it "
        "reads, unchecked:)",
        "-" * 20 + " metadata " + "-" * 20,
        "_parsemsg: False",
        "listid   : 'ant.example.com'",
        f"version  : {METADATA_VERSION}",
    ]
    assert result.stderr.startswith(ERROR)
    assert "truncated or damaged" in result.stderr.splitlines()[0]
    assert result.stderr.splitlines()[1].startswith("runnerkit: hint: use 'runnerkit qfile --hex")


def test_qfile_of_a_file_damaged_in_its_metadata_gives_the_reason(
    rk: Commands, tmp_path: Path
) -> None:
    path = tmp_path / "cut.pck"
    path.write_bytes(queuefile.encode(message_from_string(MESSAGE), {"listid": "a.b"})[:30])
    assert_error(rk("qfile", str(path)), 1, "truncated or damaged")


def test_qfile_on_a_missing_file(rk: Commands, tmp_path: Path) -> None:
    assert_error(rk("qfile", str(tmp_path / "nope.pck")), 2, "does not exist")


#: A message as a mail client sends it: 8-bit UTF-8 in a header and in the body.
EIGHT_BIT = (
    "From: Zoë <zoe@example.com>\n"
    "To: ant@example.com\n"
    "Subject: Grüße aus Zürich\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Hällo, wörld!\n"
).encode()


def write_queue_file(path: Path, message: bytes | str, **metadata: Any) -> Path:
    """Write a queue file of *message*: bytes parsed as runnerkit parses what it
    receives, text queued as text."""
    parsed = message_from_bytes(message) if isinstance(message, bytes) else message
    path.write_bytes(queuefile.encode(parsed, metadata))
    return path


def shown_message(result: Result) -> str:
    """The message part of ``qfile``'s output, line ends as they are."""
    assert result.exit_code == 0, (result.stdout, result.stderr)
    output = result.stdout_bytes.decode("utf-8")  # .stdout would turn CRLF into LF
    message, separator, _ = output.partition("-" * 20 + " metadata " + "-" * 20 + "\n")
    assert separator
    return message


def test_qfile_shows_8bit_text_as_text(rk: Commands, tmp_path: Path) -> None:
    path = write_queue_file(tmp_path / "utf8.pck", EIGHT_BIT, listname="ant@example.com")
    message = shown_message(rk("qfile", str(path)))
    # As received, not the generator's re-encoding: no base64 body, no encoded words.
    assert message == EIGHT_BIT.decode("utf-8") + "\n"


def test_qfile_shows_8bit_text_of_a_message_queued_as_text(rk: Commands, tmp_path: Path) -> None:
    text = EIGHT_BIT.decode("utf-8")
    path = write_queue_file(tmp_path / "text.pck", text)
    assert shown_message(rk("qfile", str(path))) == text + "\n"


def test_qfile_shows_8bit_bytes_of_an_edited_message(rk: Commands, tmp_path: Path) -> None:
    # Once a part changes, the file keeps no received bytes, only the parsed message,
    # whose 8-bit text is still shown as text.
    received = (
        "From: anne@example.com\n"
        "Subject: café\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=XX\n"
        "\n"
        "--XX\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "eins ä\n"
        "--XX--\n"
    ).encode()
    parsed = message_from_bytes(received)
    [part] = parsed.get_payload()
    part.set_payload("zwei ö\n".encode().decode("ascii", "surrogateescape"))
    path = tmp_path / "edited.pck"
    path.write_bytes(queuefile.encode(parsed, {}))
    message = shown_message(rk("qfile", str(path)))
    assert "Subject: café\n" in message
    assert "\nzwei ö\n" in message
    assert "base64" not in message


def test_qfile_shows_a_message_of_bytes_and_text(rk: Commands, tmp_path: Path) -> None:
    # Received bytes, then a body set as text: no generator of bytes can write it.
    parsed = message_from_bytes(b"From: anne@example.com\nSubject: caf\xc3\xa9\n\nx\n")
    parsed.set_payload("Grüße\n")
    path = tmp_path / "mixed.pck"
    path.write_bytes(queuefile.encode(parsed, {}))
    message = shown_message(rk("qfile", str(path)))
    assert message == "From: anne@example.com\nSubject: café\n\nGrüße\n\n"


def test_qfile_escapes_bytes_that_are_not_utf8(rk: Commands, tmp_path: Path) -> None:
    received = (
        b"From: anne@example.com\n"
        b"Subject: caf\xe9\n"
        b"Content-Type: text/plain; charset=iso-8859-1\n"
        b"Content-Transfer-Encoding: 8bit\n"
        b"\n"
        b"Cr\xe8me br\xfbl\xe9e\n"
    )
    path = write_queue_file(tmp_path / "latin1.pck", received)
    message = shown_message(rk("qfile", str(path)))
    assert "Subject: caf\\xe9\n" in message
    assert "\nCr\\xe8me br\\xfbl\\xe9e\n" in message
    assert "\ufffd" not in message
    assert "quoted-printable" not in message


def test_qfile_escapes_control_characters(rk: Commands, tmp_path: Path) -> None:
    received = b"From: anne@example.com\r\nSubject: \x1b[2Jhi\r\n\r\nover\rwritten\x00\xc2\x9b\r\n"
    path = write_queue_file(tmp_path / "controls.pck", received)
    message = shown_message(rk("qfile", str(path)))
    assert message == (
        "From: anne@example.com\r\nSubject: \\x1b[2Jhi\r\n\r\nover\\x0dwritten\\x00\\u009b\r\n\n"
    )


def test_qfile_raw_writes_the_exact_bytes(rk: Commands, tmp_path: Path) -> None:
    received = EIGHT_BIT.replace(b"Subject: ", b"Subject: caf\xe9 ") + b"\xff\x00\r\n"
    path = write_queue_file(tmp_path / "raw.pck", received, listname="ant@example.com")
    result = rk("qfile", "--raw", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == received
    assert result.stderr == ""


def test_qfile_raw_of_a_message_queued_as_text(rk: Commands) -> None:
    path = rk.enqueue("in")
    result = rk("qfile", "--raw", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == MESSAGE.encode("ascii")


def test_qfile_verbose_names_the_format_and_recoveries(rk: Commands, tmp_path: Path) -> None:
    path = tmp_path / "recovered.pck"
    data = queuefile.encode(message_from_string(MESSAGE), {"listid": "a.b"}, recoveries=2)
    path.write_bytes(data)
    lines = rk("qfile", "-v", str(path)).stdout.splitlines()
    assert lines[0] == (
        f"# {path} is a whole runnerkit queue file (RKQ2, {len(data)} bytes), recovered 2 times"
    )
    assert lines[1:5] == MESSAGE.splitlines()[:4]
    assert lines[-1] == "recoveries: 2"


def test_qfile_reads_the_earlier_format(rk: Commands, tmp_path: Path) -> None:
    metadata, body = b'{"listid": "a.b"}', MESSAGE.encode("ascii")
    fields = b"%d %d b 1 %d" % (len(metadata), len(body), len(body))
    checksum = hashlib.sha256(fields + metadata + body).hexdigest().encode("ascii")
    path = tmp_path / "old.pck"
    path.write_bytes(
        queuefile.MAGIC_RKQ1 + fields + b" " + checksum + b"\n" + metadata + body + queuefile.END
    )
    result = rk("qfile", "-v", str(path))
    assert result.stdout.startswith(f"# {path} is a whole runnerkit queue file (RKQ1, ")
    assert "recovered 1 time\n" in result.stdout
    assert shown_message(result).endswith(MESSAGE + "\n")


def test_qfile_hints_at_hex_for_a_damaged_file(rk: Commands, tmp_path: Path) -> None:
    path = rk.enqueue("in")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))
    for options in ((), ("--raw",), ("-v",)):
        result = rk("qfile", *options, str(path))
        # The metadata, which still reads, is shown; --raw writes the message or nothing.
        assert ("metadata" in result.stdout) == (options != ("--raw",))
        assert result.exit_code == 1
        message = result.stderr.splitlines()[0]
        assert message.startswith(ERROR)
        assert str(path) in message
        assert "CRC-32 does not match" in message
        assert result.stderr.splitlines()[1:] == [
            f"runnerkit: hint: use 'runnerkit qfile --hex {path}' to see its bytes"
        ]


def test_qfile_hex_dumps_a_damaged_file_after_the_reason(rk: Commands, tmp_path: Path) -> None:
    path = tmp_path / "damaged.pck"
    path.write_bytes(b"RKQ2 99 0 00000000\nabc\x00\xff\n")
    result = rk("qfile", "--hex", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"# {path} is not a valid runnerkit queue file: it is 25 bytes long, but its "
        "header promises 127 (truncated or damaged)",
        "00000000  52 4b 51 32 20 39 39 20  30 20 30 30 30 30 30 30  |RKQ2 99 0 000000|",
        "00000010  30 30 0a 61 62 63 00 ff  0a                       |00.abc...|",
        "00000019",
    ]


def test_qfile_hex_of_a_whole_file(rk: Commands) -> None:
    path = rk.enqueue("in")
    data = path.read_bytes()
    lines = rk("qfile", "--hex", str(path)).stdout.splitlines()
    assert lines[0] == (
        f"# {path} is a whole runnerkit queue file (RKQ2, {len(data)} bytes), recovered 0 times"
    )
    assert lines[1].startswith("00000000  52 4b 51 32 20 ")
    assert lines[-1] == f"{len(data):08x}"
    # Every byte of the file, and nothing else, in order.
    dumped = "".join(line[10:59].replace("  ", " ") for line in lines[1:-1])
    assert bytes.fromhex(dumped) == data


def test_qfile_hex_layout_is_that_of_hexdump(rk: Commands, tmp_path: Path) -> None:
    hexdump = "/usr/bin/hexdump"
    if not os.access(hexdump, os.X_OK):
        pytest.skip("hexdump (bsdextrautils) is not installed: no layout to compare with")
    path = tmp_path / "foreign.bin"
    path.write_bytes(bytes(range(256)) + b"tail")
    ours = rk("qfile", "--hex", str(path)).stdout.splitlines()[1:]
    theirs = subprocess.run(
        [hexdump, "-C", "-v", str(path)], capture_output=True, text=True, timeout=DEADLINE
    ).stdout.splitlines()
    assert ours == theirs


def test_qfile_hex_is_bounded_by_max_bytes(rk: Commands, tmp_path: Path) -> None:
    path = tmp_path / "huge.pck"
    path.write_bytes(b"x" * 100_000)
    lines = rk("qfile", "--hex", str(path)).stdout.splitlines()
    assert len(lines) == 1 + 65536 // 16 + 2
    assert lines[-2] == "00010000"
    assert lines[-1] == (
        "(34464 more bytes not shown, of 100000; --max-bytes 100000 shows them all)"
    )
    lines = rk("qfile", "--hex", "--max-bytes", "20", str(path)).stdout.splitlines()
    assert lines[1:] == [
        "00000000  78 78 78 78 78 78 78 78  78 78 78 78 78 78 78 78  |xxxxxxxxxxxxxxxx|",
        "00000010  78 78 78 78                                       |xxxx|",
        "00000014",
        "(99980 more bytes not shown, of 100000; --max-bytes 100000 shows them all)",
    ]


def test_qfile_hex_of_an_empty_file(rk: Commands, tmp_path: Path) -> None:
    path = tmp_path / "empty.pck"
    path.write_bytes(b"")
    result = rk("qfile", "--hex", str(path))
    assert result.stdout.splitlines()[1:] == ["00000000"]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (("--raw", "--hex"), "--raw and --hex do not go together"),
        (("--raw", "-v"), "drop --verbose"),
        (("--max-bytes", "10"), "--max-bytes only limits --hex"),
        (("--hex", "--max-bytes", "0"), "0 is not in the range x>=1"),
    ],
)
def test_qfile_refuses_options_that_do_not_go_together(
    rk: Commands, options: tuple[str, ...], fragment: str
) -> None:
    path = rk.enqueue("in")
    assert_error(rk("qfile", *options, str(path)), 2, fragment)


@pytest.mark.parametrize("options", [(), ("--hex",)])
def test_qfile_on_a_directory(rk: Commands, tmp_path: Path, options: tuple[str, ...]) -> None:
    result = rk("qfile", *options, str(tmp_path))
    assert_error(result, 2, "is a directory")
    assert "hint" not in result.stderr


@pytest.mark.parametrize("options", [(), ("--hex",)])
def test_qfile_on_a_fifo(rk: Commands, tmp_path: Path, options: tuple[str, ...]) -> None:
    # Refused without blocking for a writer; no hint, as --hex cannot read it either.
    path = tmp_path / "fifo.pck"
    os.mkfifo(path)
    result = rk("qfile", *options, str(path))
    assert_error(result, 1, str(path), "not a regular file")
    assert "hint" not in result.stderr


# Unshunt.


def test_unshunt_moves_messages_back_to_their_queues(rk: Commands) -> None:
    rk.enqueue("shunt", text=MESSAGE.replace("hello", "one"), whichq="pipeline", listid="a.b")
    rk.enqueue("shunt", text=MESSAGE.replace("hello", "two"), whichq="out", recipients=["x@y.z"])
    rk.enqueue("shunt", text=MESSAGE.replace("hello", "three"), whichq="pipeline")
    result = rk("unshunt")
    assert result.exit_code == 0, result.output
    assert result.stdout == "moved 3 message(s) back; 0 left in shunt\n"
    assert result.stderr == ""
    assert rk.queued("shunt") == []
    pipeline = rk.queued("pipeline")
    assert [msg["Subject"] for msg, _ in pipeline] == ["one ants", "three ants"]
    assert pipeline[0][1]["listid"] == "a.b"
    assert all("whichq" not in metadata for _, metadata in pipeline)
    [(msg, metadata)] = rk.queued("out")
    assert msg["Subject"] == "two ants"
    assert metadata["recipients"] == ["x@y.z"]


def test_unshunt_keeps_messages_for_unknown_queues(rk: Commands) -> None:
    rk.enqueue("shunt", text=MESSAGE.replace("hello", "lost"), whichq="nosuch")
    rk.enqueue("shunt", text=MESSAGE.replace("hello", "home"), whichq="in")
    rk.enqueue("shunt", text=MESSAGE.replace("hello", "loop"), whichq="shunt")
    result = rk("unshunt")
    assert result.exit_code == 1
    assert result.stdout == "moved 1 message(s) back; 2 left in shunt\n"
    assert "unknown queue 'nosuch', left in shunt" in result.stderr
    assert "unknown queue 'shunt', left in shunt" in result.stderr
    [(msg, _)] = rk.queued("in")
    assert msg["Subject"] == "home ants"
    kept = {msg["Subject"]: metadata["whichq"] for msg, metadata in rk.queued("shunt")}
    assert kept == {"lost ants": "nosuch", "loop ants": "shunt"}


def test_unshunt_preserves_damaged_files_in_bad(rk: Commands) -> None:
    damaged = rk.enqueue("shunt", whichq="in")
    damaged.write_bytes(damaged.read_bytes()[:-3])
    rk.enqueue("shunt", text=MESSAGE.replace("hello", "fine"), whichq="out")
    result = rk("unshunt")
    assert result.exit_code == 1
    assert result.stdout == (
        "moved 1 message(s) back; 0 left in shunt; 1 unreadable preserved in bad\n"
    )
    assert "preserved in bad" in result.stderr
    assert [msg["Subject"] for msg, _ in rk.queued("out")] == ["fine ants"]
    assert rk.queued("shunt") == []
    assert list(damaged.parent.iterdir()) == []
    assert (rk.var_dir / "queue" / "bad" / damaged.with_suffix(".psv").name).exists()


def test_unshunt_with_nothing_shunted(rk: Commands) -> None:
    rk.var_dir.mkdir()
    result = rk("unshunt")
    assert (result.exit_code, result.stdout) == (0, "moved 0 message(s) back; 0 left in shunt\n")


def test_inject_of_a_message_too_deep_to_read_is_one_line(rk: Commands, tmp_path: Path) -> None:
    rk("lists", "create", "ants@example.com")
    path = tmp_path / "deep.eml"
    levels = 1200  # past the email parser's recursion, far past what a queue file holds
    parts = [b"From: anne@example.com\nSubject: deep\n"]
    parts += [
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(levels)
    ]
    parts.append(b"Content-Type: text/plain\n\nleaf\n")
    path.write_bytes(b"".join(parts))
    # In a process of its own, as an operator runs it: the parser exhausts the stack,
    # which in this process would also disturb whatever else runs on it.
    result = rk.process("inject", "-l", "ants@example.com", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("runnerkit: error: "), result.stderr
    assert "MIME structure is too deep" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_lists_and_members_as_json(rk: Commands, ant: str) -> None:
    rk("members", "add", ant, "anne@example.com", "--name", "Anne", "--language", "fr")
    rk("members", "add", ant, "olga@example.com", "--role", "owner")
    assert json.loads(rk("lists", "list", "--json").stdout) == {
        "lists": [
            {
                "fqdn_listname": ant,
                "list_id": "ant.example.com",
                "display_name": "Ant",
                "preferred_language": "en",
                "members": 1,
            }
        ]
    }
    assert json.loads(rk("members", "list", ant, "--role", "owner", "--json").stdout) == {
        "list": ant,
        "role": "owner",
        "members": [
            {"address": "olga@example.com", "display_name": "", "preferred_language": None}
        ],
    }


def test_a_display_name_that_would_break_a_header_is_refused(rk: Commands, ant: str) -> None:
    for name in ("Anne\nX-Injected: yes", "Z\x1b[2J", "A\u2028B"):
        result = rk("members", "add", ant, "anne@example.com", "--name", name)
        assert_error(result, 1, f"the member's display name {name!r}: it holds the control")
        result = rk("lists", "create", "bee@example.com", "--display-name", name)
        assert_error(result, 1, f"the list's display name {name!r}: it holds the control")
    assert rk("members", "list", ant).stdout == f"no members of {ant}\n"
    assert rk("lists", "list", "--json").stdout.count("fqdn_listname") == 1


def test_a_cell_from_outside_cannot_break_a_row_of_a_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A database written before display names were checked may still hold such names.
    echo_table(("ADDRESS", "NAME"), [("a@example.com", "A\nb@example.com  -"), ("z", "\x1b[2J")])
    assert capsys.readouterr().out.splitlines() == [
        "ADDRESS        NAME",
        "a@example.com  A\\nb@example.com  -",
        "z              \\x1b[2J",
    ]


def test_every_option_value_is_named_for_what_it_is() -> None:
    """Help names a value by what it is (DIR, N, SECONDS, NAME), as the README and the
    docs do, never by click's type names."""
    generic = re.compile(r"^\s+(?:-\w, )?--[\w-]+ (TEXT|INTEGER|FLOAT|DIRECTORY|PATH)\b", re.M)
    found = {}
    for path in command_paths(main):
        text = CliRunner().invoke(main, [*path, "--help"], terminal_width=200).output
        found[" ".join(path)] = generic.findall(text)
    assert "members add" in found
    assert {command: names for command, names in found.items() if names} == {}


def test_a_damaged_database_is_a_clear_error_not_a_traceback(rk: Commands, ant: str) -> None:
    with rk.configuration() as config:
        path = config.database_path
    size = path.stat().st_size
    with path.open("r+b") as damaged:
        damaged.write(b"garbage!" * (size // 8))
    for args in (("lists", "list"), ("members", "list", ant), ("lists", "create", "b@x.org")):
        result = rk(*args)
        assert result.exit_code == 1, args
        assert "Traceback" not in result.output
        assert "file is not a database" in result.output
