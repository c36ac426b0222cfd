"""Which site a ``runnerkit`` command works on, tried from outside (issue 12).

The options that name a site (``-C``, ``--var-dir``, ``--path``) before or after the
subcommand; the import path the command, the master and its runners share; layers
checked before anything starts; commands that only look and create nothing;
``restart`` and the master's own layers.  Where the process matters (the current
directory, the console script, a master) the real ``runnerkit`` runs as a child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_processes import MasterGroup, kill_at_end, wait_for
from click.testing import CliRunner, Result

from runnerkit.cli import main
from runnerkit.config import Configuration
from runnerkit.message import message_from_string
from runnerkit.site import Site

#: The bound on every child process.
DEADLINE = 60.0
ERROR = "runnerkit: error: "


def runnerkit(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``runnerkit`` console script in *cwd*, without runnerkit's variables."""
    script = Path(sys.executable).parent / "runnerkit"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RUNNERKIT_CONFIG", "RUNNERKIT_VAR_DIR", "PYTHONPATH")
    }
    environment.update(env or {})
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """Run ``runnerkit ARGS`` in this process, without runnerkit's variables."""
    environment: dict[str, str | None] = {"RUNNERKIT_CONFIG": None, "RUNNERKIT_VAR_DIR": None}
    environment.update(env or {})
    return CliRunner().invoke(
        main, list(args), env=environment, prog_name="runnerkit", catch_exceptions=False
    )


def error_of(result: Result | subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The one ``runnerkit: error:`` line of a failed command, checked."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == status, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith(ERROR), result.stderr
    return result.stderr.splitlines()[0][len(ERROR) :]


def tree(directory: Path) -> list[str]:
    """Every path under *directory*, relative, sorted: what a command may have made."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# Options before and after the subcommand.


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path]:
    """Two layers that set one key, and each a runner of its own."""
    first = write(tmp_path / "first.ini", "[runner.work]\ninstances: 2\n[runner.one]\n")
    second = write(tmp_path / "second.ini", "[runner.work]\ninstances: 4\n[runner.two]\n")
    return first, second


def test_options_go_before_or_after_the_subcommand(
    tmp_path: Path, layers: tuple[Path, Path]
) -> None:
    first, _ = layers
    before = invoke("-C", str(first), "--var-dir", str(tmp_path / "v"), "conf", "--json")
    after = invoke("conf", "-C", str(first), "--var-dir", str(tmp_path / "v"), "--json")
    assert before.exit_code == after.exit_code == 0, before.stderr + after.stderr
    assert before.stdout == after.stdout
    sections = json.loads(before.stdout)["sections"]
    assert sections["runner.work"]["instances"]["layer"] == str(first)
    assert sections["paths"]["var_dir"]["value"] == str(tmp_path / "v")


@pytest.mark.parametrize(("order", "instances"), [((0, 1), "4"), ((1, 0), "2")])
def test_layers_in_both_places_are_pushed_the_groups_first(
    layers: tuple[Path, Path], order: tuple[int, int], instances: str
) -> None:
    group, command = (str(layers[index]) for index in order)
    result = invoke("-C", group, "conf", "-C", command, "runner.work", "instances")
    assert result.output == f"{instances}\n"
    listed = json.loads(invoke("-C", group, "conf", "-C", command, "--json").stdout)
    assert listed["layers"] == [
        "defaults",
        group,
        command,
    ]
    assert {"runner.one", "runner.two"} <= set(listed["sections"])


def test_a_var_dir_after_the_subcommand_wins(tmp_path: Path) -> None:
    result = invoke(
        "--var-dir", str(tmp_path / "before"), "conf", "--var-dir", str(tmp_path / "after"),
        "paths", "var_dir",
    )  # fmt: skip
    assert result.output == f"{tmp_path / 'after'}\n"


def test_the_command_line_replaces_the_environment_in_either_place(
    layers: tuple[Path, Path],
) -> None:
    first, second = layers
    env = {"RUNNERKIT_CONFIG": str(first)}
    assert invoke("conf", "runner.work", "instances", env=env).output == "2\n"
    for args in (("-C", str(second), "conf"), ("conf", "-C", str(second))):
        result = invoke(*args, "--json", env=env)
        assert json.loads(result.stdout)["layers"] == ["defaults", str(second)]


def test_every_command_over_a_site_takes_the_site_options_after_it() -> None:
    for path in (("conf",), ("qfile",), ("status",), ("queues",), ("lists", "list")):
        text = invoke(*path, "--help").stdout
        for option in ("-C, --config FILE", "--var-dir DIR", "--path DIR"):
            assert option in text, (path, option)
    text = invoke("--help").stdout
    for option in ("-C, --config FILE", "--var-dir DIR", "--path DIR"):
        assert option in text
    demo = invoke("demo", "--help").stdout
    assert "-C, --config FILE" in demo
    assert "--path DIR" in demo


def test_a_missing_path_directory_is_a_usage_error(tmp_path: Path) -> None:
    message = error_of(invoke("--path", str(tmp_path / "nope"), "conf"))
    assert "nope" in message
    assert "does not exist" in message


# The import path.


RUNNER_MODULE = """\
from runnerkit.message import message_from_string
from runnerkit.runner import Runner


class {name}(Runner):
    def _dispose(self, mlist, msg, msgdata):
        answer = message_from_string("Subject: {name}\\n\\nfrom {name}\\n")
        self.config.switchboards["outbox"].enqueue(answer)
        return False
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose runner classes live in three places: the project directory, a
    directory its configuration names, and one given with --path."""
    project = tmp_path / "project"
    write(project / "greeter.py", RUNNER_MODULE.format(name="Greeter"))
    write(project / "plugins" / "shouter.py", RUNNER_MODULE.format(name="Shouter"))
    write(tmp_path / "extra" / "whisperer.py", RUNNER_MODULE.format(name="Whisperer"))
    write(
        project / "project.ini",
        """\
        [runnerkit]
        import_path: plugins

        [runner.greeter]
        class: greeter.Greeter
        [runner.shouter]
        class: shouter.Shouter
        [runner.whisperer]
        class: whisperer.Whisperer
        [runner.outbox]
        start: no

        [runner.lmtp]
        start: no
        [runner.in]
        start: no
        [runner.pipeline]
        start: no
        [runner.out]
        start: no
        [runner.retry]
        start: no
        [master]
        stop_timeout: 10s
        """,
    )
    return project


@pytest.fixture
def masters(config: Site, tmp_path: Path) -> Iterator[MasterGroup]:
    """Kills, by pid, every master and runner over the test's var dir when it ends."""
    yield from kill_at_end(MasterGroup(config, tmp_path, tmp_path))


@pytest.mark.slow
def test_start_imports_from_the_directory_the_configuration_and_path(
    project: Path, config: Site, masters: MasterGroup
) -> None:
    var_dir = str(config.paths.var_dir)
    options = ("-C", "project.ini", "--var-dir", var_dir)
    # The console script, started in the project, finds greeter.py there (as python -m
    # does); plugins/ comes from the file, ../extra from --path.
    started = runnerkit("start", *options, "--path", "../extra", cwd=project)
    assert started.returncode == 0, started.stderr
    config.push_file(project / "project.ini")
    hello = message_from_string("Subject: hello\n\nhello\n")
    for name in ("greeter", "shouter", "whisperer"):
        config.switchboards[name].enqueue(hello)
    outbox = config.switchboards["outbox"]
    wait_for(lambda: len(outbox.files) == 3, "the three runner processes to answer")
    subjects = sorted(outbox.dequeue(base)[0]["subject"] for base in outbox.files)
    assert subjects == ["Greeter", "Shouter", "Whisperer"]
    assert runnerkit("stop", "--var-dir", var_dir, cwd=project).returncode == 0


def test_start_without_the_directory_on_the_path_names_the_module(
    project: Path, tmp_path: Path
) -> None:
    # From elsewhere, greeter.py is not on the import path: refused before anything starts.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    var_dir = tmp_path / "var"
    result = runnerkit(
        "start", "-C", str(project / "project.ini"), "--var-dir", str(var_dir), cwd=elsewhere
    )
    message = error_of(result)
    assert "cannot import module 'greeter'" in message
    assert not var_dir.exists()


def test_python_m_process_takes_path(project: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runnerkit.process", "-r", "whisperer", "-C", "project.ini",
         "--var-dir", str(tmp_path / "var"), "--path", str(tmp_path / "nope")],
        cwd=project, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--path: import path directory" in result.stderr
    assert str(tmp_path / "nope") in result.stderr


# Configuration errors, before anything starts.

#: Every command that builds a configuration, with the arguments it needs.
COMMANDS = [
    ("start",),
    ("stop",),
    ("restart",),
    ("status",),
    ("queues",),
    ("inject", "-"),
    ("unshunt",),
    ("lists", "list"),
    ("lists", "create", "ant@example.com"),
    ("lists", "delete", "ant@example.com"),
    ("members", "add", "ant@example.com", "anne@example.com"),
    ("members", "list", "ant@example.com"),
    ("members", "remove", "ant@example.com", "anne@example.com"),
    ("qfile", "1714564800.000000000+0000000000000000000000000000000000000000"),
    ("conf",),
    ("demo", "-n", "1"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("place", ["before", "after"])
def test_every_command_refuses_a_bad_layer_before_doing_anything(
    tmp_path: Path, args: tuple[str, ...], place: str
) -> None:
    ini = write(tmp_path / "port.ini", "[lmtp]\nport: 70000\n")
    var_dir = tmp_path / "var"
    options = ("-C", str(ini), "--var-dir", str(var_dir))
    length = 2 if args[0] in ("lists", "members") else 1  # the command's own words
    command = (*args[:length], *options, *args[length:])
    if place == "before":
        command = (*options, *args)
    elif args[0] == "demo":
        command = (*args, "-C", str(ini))  # the demo's --var-dir is its own
    message = error_of(invoke(*command))
    assert f"layer {str(ini)!r}, section [lmtp], key 'port', value '70000'" in message
    assert not var_dir.exists()


def test_a_bad_layer_in_the_environment_stops_the_demo_too(tmp_path: Path) -> None:
    # The demo's site is its own: the environment's layers do not apply to it, but
    # -C before 'demo' does, and is checked first.
    ini = write(tmp_path / "class.ini", "[runner.helper]\nclass: rk_no_such_module.Helper\n")
    message = error_of(invoke("-C", str(ini), "demo", "-n", "1"))
    assert "cannot import module 'rk_no_such_module'" in message


# Commands that only look.

#: Commands that only look at a site, with the arguments they need.
LOOKING = [
    ("status",),
    ("status", "--json"),
    ("queues",),
    ("lists", "list"),
    ("members", "list", "ant@example.com"),
    ("qfile", "1714564800.000000000+0000000000000000000000000000000000000000"),
]


@pytest.mark.parametrize("args", LOOKING, ids=" ".join)
def test_looking_at_a_var_dir_that_does_not_exist_is_an_error_naming_it(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    before = tree(tmp_path)
    result = runnerkit(*args, "--var-dir", "typo", cwd=tmp_path)
    message = error_of(result)
    assert f"the var dir {str(tmp_path / 'typo')!r} (from --var-dir) does not exist" in message
    assert tree(tmp_path) == before


def test_the_default_var_dir_is_named_as_the_default(tmp_path: Path) -> None:
    message = error_of(runnerkit("queues", cwd=tmp_path))
    assert f"the var dir {str(tmp_path / 'var')!r} (the default, ./var)" in message
    env = {"RUNNERKIT_VAR_DIR": str(tmp_path / "env")}
    message = error_of(runnerkit("queues", cwd=tmp_path, env=env))
    assert "(from $RUNNERKIT_VAR_DIR)" in message
    assert tree(tmp_path) == []


@pytest.mark.parametrize("args", [*LOOKING, ("conf",)], ids=" ".join)
def test_looking_at_an_empty_var_dir_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    result = invoke(*args, "--var-dir", str(var_dir))
    # 1: members list finds no list; 2: qfile finds no file; 3: status finds no master.
    assert result.exit_code in (0, 1, 2, 3), result.output
    assert tree(var_dir) == []


def test_looking_at_a_site_changes_nothing_in_it(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    assert invoke("lists", "create", "ant@example.com", "--var-dir", str(var_dir)).exit_code == 0
    assert invoke("members", "add", "ant@example.com", "a@example.com", "--var-dir", str(var_dir))
    before = {path: path.stat().st_mtime_ns for path in var_dir.rglob("*") if path.is_file()}
    for args in [*LOOKING, ("conf",)]:
        invoke(*args, "--var-dir", str(var_dir))
    assert invoke("members", "list", "ant@example.com", "--var-dir", str(var_dir)).output == (
        "ADDRESS        NAME  LANGUAGE\na@example.com  -     -\n"
    )
    # No queue directory, no SQLite -wal or -shm left: nothing new, no file touched.
    # (SQLite makes those two while it reads, and removes them.)
    assert set(var_dir.rglob("*")) == {*before, var_dir / "data"}
    assert {path: path.stat().st_mtime_ns for path in before} == before


# qfile and a file's base name.


def test_qfile_finds_a_file_of_a_queue_by_its_base_name(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    with Site.load((), var_dir) as site:
        filebase = site.switchboards["shunt"].enqueue(
            message_from_string("Subject: lost\n\nhi\n"), whichq="in"
        )
    for name in (filebase, f"{filebase}.pck"):
        result = invoke("qfile", name, "--var-dir", str(var_dir))
        assert result.exit_code == 0, result.stderr
        assert "Subject: lost" in result.stdout
        assert "whichq    : 'in'" in result.stdout


# restart and the master's layers.


@pytest.mark.slow
def test_restart_refuses_layers_the_master_does_not_run_with(
    tmp_path: Path, config: Site, masters: MasterGroup
) -> None:
    quiet = "".join(f"[runner.{name}]\nstart: no\n" for name in ("lmtp", "in", "pipeline", "out"))
    site_ini = write(tmp_path / "site.ini", quiet + "[master]\nstop_timeout: 10s\n")
    rest_ini = write(tmp_path / "rest.ini", "[runner.rest]\nstart: yes\n[rest]\nport: 0\n")
    var_dir = ("--var-dir", str(config.paths.var_dir))
    started = runnerkit("start", "-C", str(site_ini), *var_dir, cwd=tmp_path)
    assert started.returncode == 0, started.stderr

    refused = runnerkit(
        "restart", "-C", str(site_ini), "-C", str(rest_ini), *var_dir, cwd=tmp_path
    )
    message = error_of(refused)
    assert f"runs with -C {site_ini}, not -C {site_ini} -C {rest_ini}" in message
    assert "'runnerkit stop', then 'runnerkit start'" in message
    # The master runs with the directory it was started in on its import path, no other.
    other = tmp_path / "other"
    other.mkdir()
    message = error_of(runnerkit("restart", "--path", str(other), *var_dir, cwd=tmp_path))
    assert f"not --path {other}" in message
    layers = json.loads((config.paths.var_dir / "master.layers.json").read_text())
    assert layers["config_files"] == [str(site_ini)]

    # Its own layers, or none, find the master and restart its runners.
    for args in (("-C", str(site_ini)), ("-C", "site.ini"), ()):
        result = runnerkit("restart", *args, *var_dir, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("asked master ")
    assert runnerkit("stop", *var_dir, cwd=tmp_path).returncode == 0
    assert not (config.paths.var_dir / "master.layers.json").exists()


# conf.


def test_conf_names_the_layer_of_every_value(tmp_path: Path) -> None:
    ini = write(
        tmp_path / "site.ini",
        "[lmtp]\nport: 8025\n[runner.defaults]\nsleep_time: 2s\n[runner.in]\ninstances: 2\n",
    )
    env = {"RUNNERKIT_VAR_DIR": str(tmp_path / "env-var")}
    result = invoke("conf", "-C", str(ini), env=env)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"# layers, bottom first: defaults, {ini}, $RUNNERKIT_VAR_DIR"

    def line(prefix: str) -> str:
        [found] = [text for text in lines if text.startswith(prefix + " ")]
        return " ".join(found.split())

    assert line("[lmtp] port:") == f"[lmtp] port: 8025 # {ini}"
    assert line("[lmtp] host:") == "[lmtp] host: 127.0.0.1 # defaults"
    assert (
        line("[paths] var_dir:") == f"[paths] var_dir: {tmp_path / 'env-var'} # $RUNNERKIT_VAR_DIR"
    )
    assert (
        line("[paths] queue_dir:")
        == f"[paths] queue_dir: {tmp_path / 'env-var' / 'queue'} # defaults"
    )
    assert line("[runner.in] instances:") == f"[runner.in] instances: 2 # {ini}"
    assert line("[runner.in] sleep_time:") == (
        f"[runner.in] sleep_time: 2s # {ini} via [runner.defaults]"
    )
    assert line("[runner.retry] sleep_time:") == "[runner.retry] sleep_time: 1m # defaults"
    assert lines[-2:] == [
        "# runner classes are imported first from:",
        f"#   {Path.cwd()}  (the current directory)",
    ]
    assert not (tmp_path / "env-var").exists()


def test_conf_of_a_section_or_a_key(tmp_path: Path) -> None:
    ini = write(tmp_path / "site.ini", "[master]\nstop_timeout: 5s\n")
    section = invoke("conf", "-C", str(ini), "master")
    assert [text.split("  #")[0].strip() for text in section.stdout.splitlines()] == [
        "[master] restart_window: 10m",
        "[master] backoff_base: 500ms",
        "[master] backoff_max: 1m",
        "[master] stop_timeout: 5s",
        "[master] stuck_after: 10m",
        "[master] strict_modes: yes",
    ]
    assert invoke("conf", "-C", str(ini), "master", "stop_timeout").output == "5s\n"
    as_json = json.loads(invoke("conf", "-C", str(ini), "master", "stop_timeout", "--json").stdout)
    assert as_json == {"value": 5.0, "text": "5s", "layer": str(ini), "inherited": False}
    inherited = json.loads(invoke("conf", "runner.in", "--json").stdout)["start"]
    assert inherited == {"value": True, "text": "yes", "layer": "defaults", "inherited": True}


def test_conf_json_is_the_whole_configuration(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    result = invoke("--path", str(extra), "conf", "--var-dir", str(tmp_path / "v"), "--json")
    document = json.loads(result.stdout)
    assert document["layers"] == ["defaults", "--var-dir"]
    assert document["import_path"] == [
        {"path": str(extra), "origin": "--path"},
        {"path": str(Path.cwd()), "origin": "the current directory"},
    ]
    with Configuration() as config:
        assert list(document["sections"]) == list(config.sections)
    assert document["sections"]["lmtp"]["port"] == {
        "value": 8024, "text": "8024", "layer": "defaults", "inherited": False,
    }  # fmt: skip
    assert document["sections"]["paths"]["var_dir"]["value"] == str(tmp_path / "v")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("nosuch",), ("no section [nosuch]", "[lmtp]", "[runner.in]")),
        (
            ("lmtp", "nosuch"),
            ("section [lmtp] has no key 'nosuch'", "host, max_connections, max_message_size"),
        ),
        (("runner.nosuch", "start"), ("no [runner.nosuch] section", "known runners")),
    ],
)
def test_conf_of_an_unknown_section_or_key(
    args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    message = error_of(invoke("conf", *args))
    for fragment in fragments:
        assert fragment in message
