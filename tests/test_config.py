"""Error paths of the layered configuration: every way a push, a pop or a read can fail."""

from __future__ import annotations

import contextvars
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest

import runnerkit
from runnerkit.config import Configuration, current_config, use_config
from runnerkit.errors import ConfigurationError, NoConfigurationError
from runnerkit.runner import Runner, check_runner_classes, load_runner_class
from runnerkit.site import Site

#: The project root, so that subprocesses import this checkout of runnerkit.
PROJECT_ROOT = Path(runnerkit.__file__).resolve().parents[1]


class NoQueueRunner(Runner):
    """A runner that serves no queue, as a protocol server would."""

    is_queue_runner: ClassVar[bool] = False


def place(layer: str, section: str, key: str, value: str) -> str:
    """How an error message names the place of a bad value."""
    return f"layer {layer!r}, section [{section}], key {key!r}, value {value!r}"


State = tuple[tuple[str, ...], list[str], list[str]]


def state(config: Configuration) -> State:
    """The stack, the runners and the queues, to compare before and after a failure."""
    return config.layers, sorted(config.runners), sorted(config.switchboards)


@pytest.fixture
def before(config: Configuration) -> State:
    """The configuration's state when the test starts."""
    return state(config)


# Syntax, sections and keys.


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("start: yes\n", id="no-section-header"),
        pytest.param("[runner.test\nstart: yes\n", id="unterminated-header"),
        pytest.param("[runner.test]\nstart\n", id="no-delimiter"),
        pytest.param("[runner.test]\nstart: yes\nstart: no\n", id="duplicate-key"),
        pytest.param("[runner.test]\n[runner.test]\n", id="duplicate-section"),
    ],
)
def test_bad_ini_syntax(config: Configuration, before: State, text: str) -> None:
    with pytest.raises(ConfigurationError, match="layer 'broken' does not parse"):
        config.push("broken", text)
    assert state(config) == before


@pytest.mark.parametrize(
    "section", ["runners.test", "runner.Test", "runner.", "runner.a b", "Paths", "logs"]
)
def test_unknown_section(config: Configuration, before: State, section: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        config.push("odd", f"[{section}]\nstart: yes\n")
    assert f"layer 'odd': unknown section [{section}]" in str(info.value)
    assert "[runner.NAME]" in str(info.value)
    assert state(config) == before


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("paths", "queue_directory"),
        ("runner.test", "clas"),
        ("runner.defaults", "instance"),
        ("runnerkit", "language"),
        ("logging", "Level"),
    ],
)
def test_unknown_key(config: Configuration, before: State, section: str, key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        config.push("typo", f"[{section}]\n{key}: 1\n")
    message = str(info.value)
    assert place("typo", section, key, "1") in message
    assert "unknown key; known keys:" in message
    assert state(config) == before


def test_layer_text_and_name_are_checked(
    config: Configuration,
    before: State,
) -> None:
    with pytest.raises(ConfigurationError, match="must be a str, got bytes"):
        config.push("bytes", b"[runner.test]\n")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="non-empty name"):
        config.push("  ", "[runner.test]\n")
    assert state(config) == before


# Values.

BAD_VALUES = [
    # booleans
    ("runner.test", "start", "maybe", "expected yes or no"),
    ("runner.test", "start", "", "expected yes or no"),
    ("runner.test", "start", "2", "expected yes or no"),
    # counts
    ("runner.test", "max_restarts", "-1", "whole number"),
    ("runner.test", "max_restarts", "ten", "whole number"),
    ("runner.test", "max_restarts", "1.5", "whole number"),
    # powers of two
    ("runner.test", "instances", "0", "power of two from 1 to 1024"),
    ("runner.test", "instances", "3", "power of two from 1 to 1024"),
    ("runner.test", "instances", "6", "power of two from 1 to 1024"),
    ("runner.test", "instances", "2048", "power of two from 1 to 1024"),
    ("runner.test", "instances", "-2", "power of two from 1 to 1024"),
    ("runner.test", "instances", "two", "power of two from 1 to 1024"),
    ("runner.defaults", "instances", "1.0", "power of two from 1 to 1024"),
    # durations
    ("runner.test", "sleep_time", "-1", "duration of 0 or more"),
    ("runner.test", "sleep_time", "-0.5", "duration of 0 or more"),
    ("runner.test", "sleep_time", "-1s", "expected a duration such as"),
    ("runner.test", "sleep_time", "-500ms", "expected a duration such as"),
    ("runner.test", "sleep_time", "1m-30s", "expected a duration such as"),
    ("runner.test", "sleep_time", "soon", "expected a duration such as"),
    ("runner.test", "sleep_time", "1x", "expected a duration such as"),
    ("runner.test", "sleep_time", "s", "expected a duration such as"),
    ("runner.test", "sleep_time", "ms500", "expected a duration such as"),
    ("runner.test", "sleep_time", "1s2", "expected a duration such as"),
    ("runner.test", "sleep_time", "", "expected a duration such as"),
    ("runner.test", "sleep_time", "nan", "duration of 0 or more"),
    ("runner.test", "sleep_time", "inf", "too long"),
    ("runner.test", "sleep_time", "1e400", "too long"),
    ("runner.test", "sleep_time", "99999999999999d", "too long"),
    # dotted names
    ("runner.test", "class", "Runner", "dotted Python name"),
    ("runner.test", "class", "runnerkit..Runner", "dotted Python name"),
    ("runner.test", "class", "runnerkit.runner.Runner()", "dotted Python name"),
    ("runner.test", "class", "1runnerkit.Runner", "dotted Python name"),
    ("runner.test", "class", "runnerkit.runner.", "dotted Python name"),
    # languages
    ("runnerkit", "default_language", "English", "language code"),
    ("runnerkit", "default_language", "e", "language code"),
    ("runnerkit", "default_language", "EN", "language code"),
    ("runnerkit", "default_language", "en US", "language code"),
    # path templates
    ("paths", "queue_dir", "$NOPE/queue", "unknown variable $NOPE"),
    ("paths", "queue_dir", "$QUEUE_DIR/again", "unknown variable $QUEUE_DIR"),
    ("paths", "var_dir", "$VAR_DIR/var", "uses $VAR_DIR, but this path cannot use variables"),
    ("paths", "log_dir", "/srv/$", "stray '$'"),
    ("paths", "log_dir", "/srv/${VAR_DIR", "stray '$'"),
    ("paths", "data_dir", "/srv/$1", "stray '$'"),
    ("paths", "data_dir", "", "non-empty"),
    ("runner.test", "path", "$QUEUE_DIR/$nam", "unknown variable $nam"),
    ("runner.test", "path", "$queue_dir/x", "unknown variable $queue_dir"),
    ("logging", "path", "$QUEUE_DIR/$name.log", "unknown variable $name"),
    ("logging", "level", "", "expected one of debug, info, warning, error"),
    ("logging", "level", "verbose", "expected one of debug, info, warning, error"),
    # ports and other ranges
    ("lmtp", "port", "70000", "port number from 1 to 65535, or 0 for any free port"),
    ("lmtp", "port", "-1", "port number from 1 to 65535, or 0 for any free port"),
    ("lmtp", "port", "80.5", "port number from 1 to 65535, or 0 for any free port"),
    ("rest", "port", "65536", "port number from 1 to 65535, or 0 for any free port"),
    ("delivery", "smtp_port", "0", "port number from 1 to 65535"),
    ("delivery", "smtp_port", "65536", "port number from 1 to 65535"),
    ("delivery", "max_attempts", "0", "whole number, 1 or more"),
    ("delivery", "method", "pigeon", "expected one of maildir, smtp"),
    ("lmtp", "max_message_size", "-5", "whole number, 0 or more"),
    ("runner.test", "queue", "sometimes", "expected yes or no"),
    # numbers are ASCII digits: int() alone takes these
    ("lmtp", "port", "8_024", "port number from 1 to 65535"),
    ("lmtp", "port", "+8024", "port number from 1 to 65535"),
    ("lmtp", "port", "\u0668\u0660\u0662\u0664", "port number from 1 to 65535"),
    ("runner.test", "instances", "\uff14", "power of two from 1 to 1024"),
    ("runner.test", "max_restarts", "1_0", "whole number, 0 or more"),
    ("runner.test", "sleep_time", "1_0", "expected a duration such as"),
    ("runner.test", "sleep_time", "\u0661s", "expected a duration such as"),
    # hosts
    ("delivery", "smtp_host", "mail.example.com:2525", "without a port"),
    ("lmtp", "host", "bad host", "without a port"),
    ("rest", "host", "-leading.example.com", "without a port"),
]


@pytest.mark.parametrize(("section", "key", "value", "expected"), BAD_VALUES)
def test_bad_value(
    config: Configuration, before: State, section: str, key: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        config.push("bad-value", f"[{section}]\n{key}: {value}\n")
    message = str(info.value)
    assert place("bad-value", section, key, value) in message
    assert expected in message
    assert state(config) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", timedelta(seconds=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("2m", timedelta(minutes=2)),
        ("1m30s", timedelta(seconds=90)),
        ("1h 1s", timedelta(hours=1, seconds=1)),
        ("1.5", timedelta(seconds=1.5)),
        ("0", timedelta(0)),
        ("1W", timedelta(weeks=1)),
    ],
)
def test_good_durations(config: Configuration, text: str, expected: timedelta) -> None:
    # The refusals above mean something only if the same keys accept good values.
    config.push("good", f"[runner.test]\nsleep_time: {text}\n")
    assert config.runner("test").sleep_time == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("yes", True), ("No", False), ("TRUE", True), ("off", False), ("1", True), ("0", False)],
)
def test_good_booleans(config: Configuration, text: str, expected: bool) -> None:
    config.push("good", f"[runner.test]\nstart: {text}\n")
    assert config.runner("test").start is expected


@pytest.mark.parametrize(
    "text",
    ["Foo.Example, bar", "Foo.Example,bar", "Foo.Example bar", "Foo.Example\n  bar,"],
)
def test_allowed_hosts_are_separated_by_white_space_or_commas(
    config: Configuration, text: str
) -> None:
    config.push("good", f"[rest]\nallowed_hosts: {text}\n")
    assert config.rest.allowed_hosts == ("foo.example", "bar")


@pytest.mark.parametrize("instances", [1, 2, 4, 512, 1024])
def test_good_powers_of_two(config: Configuration, instances: int) -> None:
    config.push("good", f"[runner.test]\ninstances: {instances}\n")
    assert config.runner("test").instances == instances


# The stack.


def test_duplicate_layer_name(config: Configuration) -> None:
    config.push("one", "[runner.one]\n")
    with pytest.raises(ConfigurationError) as info:
        config.push("one", "[runner.two]\n")
    assert "cannot push layer 'one'" in str(info.value)
    assert "already on the stack" in str(info.value)
    assert config.layers == ("one",)
    assert "two" not in config.runners


def test_the_defaults_name_is_taken(
    config: Configuration,
    before: State,
) -> None:
    with pytest.raises(ConfigurationError, match="cannot push layer 'defaults'"):
        config.push("defaults", "[runner.test]\n")
    assert state(config) == before


def test_pop_of_a_layer_that_is_not_on_top(config: Configuration) -> None:
    config.push("a", "[runner.a]\n")
    config.push("b", "[runner.b]\n")
    with pytest.raises(ConfigurationError) as info:
        config.pop("a")
    assert "cannot pop layer 'a': it is not on top; the top layer is 'b'" in str(info.value)
    assert config.layers == ("a", "b")
    assert {"a", "b"} <= set(config.switchboards)


def test_pop_of_an_unknown_layer(config: Configuration) -> None:
    config.push("a", "[runner.a]\n")
    with pytest.raises(ConfigurationError, match="'zzz': it is not on the stack"):
        config.pop("zzz")
    assert config.layers == ("a",)


def test_pop_of_an_empty_stack(
    config: Configuration,
    before: State,
) -> None:
    with pytest.raises(ConfigurationError, match="cannot pop layer 'a': no layer"):
        config.pop("a")
    with pytest.raises(ConfigurationError, match="no layer"):
        config.pop("defaults")
    assert state(config) == before


def test_push_and_pop_return_none(config: Configuration) -> None:
    assert config.push("a", "[runner.a]\n") is None  # type: ignore[func-returns-value]
    assert config.pop("a") is None  # type: ignore[func-returns-value]


# Runner classes.


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        ("no_such_module_for_runnerkit.Runner", "cannot import module"),
        ("runnerkit.runner.NoSuchRunner", "has no attribute 'NoSuchRunner'"),
        ("runnerkit.config.Configuration", "not a subclass of runnerkit.runner.Runner"),
        ("os.path.join", "not a subclass of runnerkit.runner.Runner"),
        ("runnerkit.runner.log", "not a subclass of runnerkit.runner.Runner"),
    ],
)
def test_a_bad_runner_class_is_refused_when_it_is_loaded(
    config: Configuration, class_name: str, expected: str
) -> None:
    # Pushing imports nothing: the class is checked when a runner is about to be built.
    config.push("bad-class", f"[runner.test]\nclass: {class_name}\n")
    with pytest.raises(ConfigurationError) as info:
        load_runner_class(config.runner("test"))
    message = str(info.value)
    assert place("bad-class", "runner.test", "class", class_name) in message
    assert expected in message


def test_a_module_that_fails_at_import_is_a_configuration_error(
    config: Configuration, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "rk_raises_at_import.py").write_text("raise RuntimeError('boom')\n")
    (modules / "rk_bad_syntax.py").write_text("def broken(:\n")
    monkeypatch.syspath_prepend(str(modules))
    for module, expected in (("rk_raises_at_import", "boom"), ("rk_bad_syntax", "syntax")):
        with config.pushed("import-fails", f"[runner.test]\nclass: {module}.Runner\n"):
            assert module not in sys.modules
            with pytest.raises(ConfigurationError) as info:
                load_runner_class(config.runner("test"))
        assert "cannot import module" in str(info.value)
        assert expected in str(info.value)
    assert "rk_raises_at_import" not in sys.modules


def test_a_bad_class_in_runner_defaults_names_the_layer(config: Configuration) -> None:
    config.push("everyone", "[runner.defaults]\nclass: runnerkit.runner.Nope\n")
    with pytest.raises(ConfigurationError) as info:
        load_runner_class(config.runner("bad"))
    assert "layer 'everyone'" in str(info.value)
    assert "runnerkit.runner.Nope" in str(info.value)


def test_queue_key_decides_the_switchboards_without_importing(config: Configuration) -> None:
    config.push("servers", "[runner.server]\nclass: rk_never_imported.Server\nqueue: no\n")
    assert "server" in config.runners
    assert "server" not in config.switchboards
    assert "rk_never_imported" not in sys.modules
    assert not config.runner("lmtp").queue
    assert not config.runner("rest").queue
    assert {"in", "pipeline", "out", "retry", "bad", "shunt"} <= set(config.switchboards)


def test_a_queue_runner_class_refuses_queue_no(config: Configuration) -> None:
    config.push("confused", "[runner.confused]\nqueue: no\n")
    with pytest.raises(
        ConfigurationError,
        match=r"\[runner.confused\], key 'class'.*reads a queue, but the section says queue: no",
    ):
        Runner("confused")
    with pytest.raises(ConfigurationError, match=r"reads a queue"):
        load_runner_class(config.runner("confused"))


def test_the_base_class_is_not_a_runner_to_start(config: Configuration) -> None:
    config.push("held", "[runner.held]\n")
    with pytest.raises(
        ConfigurationError, match=r"only the base class.*implements no _dispose\(\)"
    ):
        load_runner_class(config.runner("held"))
    with pytest.raises(ConfigurationError, match=r"\[runner.held\].*_dispose"):
        check_runner_classes(config)
    config.push("unstarted", "[runner.held]\nstart: no\n")
    check_runner_classes(config)


def test_a_runner_needs_a_site_not_settings_only(tmp_path: Path) -> None:
    with Configuration(tmp_path) as settings:
        settings.push("plain", "[runner.plain]\n")
        with pytest.raises(ConfigurationError, match=r"needs a runnerkit.site.Site"):
            Runner("plain", config=settings)
        with use_config(settings), pytest.raises(NoConfigurationError, match="settings only"):
            Runner("plain")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[runner.defaults]\npath: $QUEUE_DIR/shared\n",
            r"section \[runner.defaults\], key 'path'.*queues 'bad' and 'bounces' would share",
            id="one-path-for-every-queue",
        ),
        pytest.param(
            "[runner.mine]\npath: $QUEUE_DIR/in\n",
            r"section \[runner.mine\], key 'path'.*queues 'in' and 'mine' would share",
            id="a-queue-in-another-queues-directory",
        ),
        pytest.param(
            "[runner.out]\npath: $QUEUE_DIR/x/../in/\n",
            r"section \[runner.out\], key 'path'.*queues 'in' and 'out' would share",
            id="the-same-directory-spelled-otherwise",
        ),
        pytest.param(
            "[runner.out]\npath: $QUEUE_DIR/in/out\n",
            r"section \[runner.out\], key 'path'.*queue 'out' .* is inside that of queue 'in'",
            id="a-queue-inside-another-queues-directory",
        ),
        pytest.param(
            "[paths]\nmetrics_dir: $VAR_DIR/data\n",
            r"section \[paths\], key 'metrics_dir'.*directory of \[paths\] data_dir",
            id="metrics-in-the-database-directory",
        ),
        pytest.param(
            "[paths]\nmetrics_dir: $VAR_DIR/queue/in\n",
            r"key 'metrics_dir'.*it is the directory of queue 'in'",
            id="metrics-in-a-queue",
        ),
        pytest.param(
            "[master]\nbackoff_base: 2m\n",
            r"section \[master\], key 'backoff_max'.*shorter than backoff_base",
            id="backoff-max-below-base",
        ),
        pytest.param(
            "[runner.rest]\nstart: yes\n[rest]\nport: 8024\n",
            r"section \[rest\], key 'port'.*LMTP server listens on port 8024 too",
            id="rest-on-the-lmtp-port",
        ),
    ],
)
def test_values_that_cannot_work_together_are_refused(
    config: Configuration, before: State, text: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        config.push("together", text)
    assert state(config) == before


def test_servers_may_share_a_port_when_one_is_not_started(config: Configuration) -> None:
    config.push("quiet", "[rest]\nport: 8024\n")  # [runner.rest] start: no by default
    assert config.rest.port == config.lmtp.port == 8024
    config.push("any", "[runner.rest]\nstart: yes\n[rest]\nport: 0\n[lmtp]\nport: 0\n")


def test_hosts_keep_ip_literals(config: Configuration) -> None:
    config.push("hosts", "[lmtp]\nhost: ::1\n[rest]\nhost: [::1]\n[delivery]\nsmtp_host: x.\n")
    assert (config.lmtp.host, config.rest.host, config.delivery.smtp_host) == ("::1", "::1", "x.")


def test_typed_sections_follow_the_stack(config: Configuration) -> None:
    assert config.lmtp.port == 8024
    assert config.master.stuck_after == timedelta(minutes=10)
    with config.pushed("site", "[lmtp]\nport: 0\n[pipeline]\nhandlers: list-headers\n"):
        assert config.lmtp.port == 0
        assert config.pipeline.handlers == ("list-headers",)
    assert config.pipeline.handlers == ("list-headers", "subject-prefix")
    assert config.delivery.maildir == config.paths.var_dir / "maildir"
    assert config.logging.path == config.paths.log_dir / "runnerkit.log"


def test_path_template_with_an_unknown_variable_in_runner_defaults(
    config: Configuration,
    before: State,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        config.push("defaults-path", "[runner.defaults]\npath: $QUEUE_DIR/$runner\n")
    assert place("defaults-path", "runner.defaults", "path", "$QUEUE_DIR/$runner") in str(
        info.value
    )
    assert state(config) == before


# Context manager and files.


def test_pushed_pops_on_error(
    config: Configuration,
    before: State,
) -> None:
    seen: list[object] = []

    def fail_inside() -> None:
        with config.pushed("temp", "[runner.temp]\n"):
            seen.extend([config.layers, "temp" in config.switchboards])
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        fail_inside()
    assert seen == [("temp",), True]
    assert state(config) == before


def test_pushed_reports_an_unbalanced_block(config: Configuration) -> None:
    with pytest.raises(ConfigurationError, match="not on top"), config.pushed("outer", ""):
        config.push("inner", "")
    assert config.layers == ("outer", "inner")
    config.pop("inner")
    config.pop("outer")


def test_pushed_with_bad_text_pushes_nothing(
    config: Configuration,
    before: State,
) -> None:
    entered = False
    with (
        pytest.raises(ConfigurationError, match="unknown section"),
        config.pushed("bad", "[nope]\n"),
    ):
        entered = True
    assert not entered
    assert state(config) == before


def test_push_file_of_a_missing_file(config: Configuration, before: State, tmp_path: Path) -> None:
    missing = tmp_path / "missing.cfg"
    with pytest.raises(ConfigurationError) as info:
        config.push_file(missing)
    assert f"cannot read configuration file {str(missing)!r}" in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert state(config) == before


def test_push_file_of_a_directory_or_non_utf8_file(
    config: Configuration, before: State, tmp_path: Path
) -> None:
    latin1 = tmp_path / "latin1.cfg"
    latin1.write_bytes(b"# caf\xe9\n[runner.test]\n")
    for path in (tmp_path, latin1):
        with pytest.raises(ConfigurationError, match="cannot read configuration file"):
            config.push_file(path)
    assert state(config) == before


def test_push_file_names_the_file_in_errors(config: Configuration, tmp_path: Path) -> None:
    path = tmp_path / "site.cfg"
    path.write_text("[runner.test]\ninstances: 3\n")
    with pytest.raises(ConfigurationError) as info:
        config.push_file(path)
    assert place(str(path), "runner.test", "instances", "3") in str(info.value)
    path.write_text("[runner.test]\ninstances: 4\n")
    config.push_file(path, name="site")
    assert config.layers == ("site",)
    assert config.runner("test").instances == 4


# Reads.


def test_get_of_unknown_sections_and_keys(config: Configuration) -> None:
    with pytest.raises(ConfigurationError, match=r"no section \[nowhere\]"):
        config.get("nowhere", "key")
    with pytest.raises(ConfigurationError, match=r"section \[paths\] has no key 'nope'"):
        config.get("paths", "nope")
    with pytest.raises(ConfigurationError, match=r"no \[runner.ghost\] section"):
        config.get("runner.ghost", "class")
    with pytest.raises(ConfigurationError, match=r"no \[runner.ghost\] section"):
        config.runner("ghost")
    assert config.get("runner.defaults", "instances") == 1


# The current configuration.


def test_no_configuration_at_import_time(tmp_path: Path) -> None:
    script = """\
import runnerkit, runnerkit.runner, runnerkit.switchboard, runnerkit.lists
import runnerkit.process, runnerkit.testing, runnerkit.testing.plugin
import runnerkit.config.current as current
print(current._current.get())
try:
    runnerkit.current_config()
except runnerkit.config.current.NoConfigurationError as error:
    print("refused:", type(error).__name__)
"""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["None", "refused: NoConfigurationError"]
    # Importing built nothing on disk either: no var dir appeared.
    assert list(tmp_path.iterdir()) == []


def test_current_config_without_a_world() -> None:
    def ask() -> Configuration:
        return current_config()

    with pytest.raises(NoConfigurationError, match="no runnerkit configuration is current"):
        contextvars.Context().run(ask)
    assert issubclass(NoConfigurationError, ConfigurationError)


def test_runner_without_a_configuration() -> None:
    def build() -> Runner:
        return Runner("test")

    with pytest.raises(NoConfigurationError):
        contextvars.Context().run(build)


def test_use_config_restores_the_previous_one(tmp_path: Path) -> None:
    def check() -> None:
        with Configuration(tmp_path / "var") as mine:
            try:
                with use_config(mine):
                    assert current_config() is mine
                    raise RuntimeError("inside")
            except RuntimeError:
                pass
            with pytest.raises(NoConfigurationError):
                current_config()

    contextvars.Context().run(check)


# Switchboards stay in step with the stack.


def test_switchboards_follow_push_and_pop(config: Configuration) -> None:
    queues = set(config.switchboards)
    assert {"bad", "shunt"} <= queues
    assert "test" not in queues
    config.push("test", "[runner.test]\n")
    assert set(config.switchboards) == queues | {"test"}
    board = config.switchboards["test"]
    assert board.queue_directory == config.paths.queue_dir / "test"
    assert board.queue_directory.is_dir()

    config.push("moved", "[runner.test]\npath: $VAR_DIR/elsewhere/$name\n")
    assert config.switchboards["test"].queue_directory == config.paths.var_dir / "elsewhere/test"
    config.pop("moved")
    assert config.switchboards["test"].queue_directory == board.queue_directory

    config.pop("test")
    assert "test" not in config.switchboards
    with pytest.raises(KeyError):
        config.switchboards["test"]
    assert set(config.switchboards) == queues
    assert len(config.switchboards) == len(queues)


def test_switchboards_follow_the_queue_dir(config: Configuration) -> None:
    before = config.switchboards["bad"].queue_directory
    with config.pushed("queues", "[paths]\nqueue_dir: $VAR_DIR/q2\n"):
        assert config.switchboards["bad"].queue_directory == config.paths.var_dir / "q2/bad"
    assert config.switchboards["bad"].queue_directory == before


def test_runners_without_a_queue_have_no_switchboard(config: Configuration) -> None:
    config.push("noqueue", f"[runner.noqueue]\nclass: {__name__}.NoQueueRunner\nqueue: no\n")
    assert "noqueue" in config.runners
    assert "noqueue" not in config.switchboards
    runner = NoQueueRunner("noqueue", config=config)
    assert runner.switchboard is None
    assert runner.queue_directory is None
    assert runner._one_iteration() == 0
    # A section that does not say queue: no would give it a queue it never reads.
    config.push("forgot", "[runner.forgot]\n")
    with pytest.raises(
        ConfigurationError, match=r"layer .*, key 'class', .*reads no queue.*set queue: no"
    ):
        NoQueueRunner("forgot", config=config)


# A closed configuration.


def test_a_closed_site_refuses_work(tmp_path: Path) -> None:
    config = Site(tmp_path / "var")
    site = tmp_path / "site.cfg"
    site.write_text("[runner.test]\n")
    assert config.lists.names == []
    config.close()
    config.close()  # closing twice is harmless
    for use in (
        lambda: config.push("late", "[runner.test]\n"),
        lambda: config.push_file(site),
        lambda: config.database,
        lambda: config.lists,
    ):
        with pytest.raises(ConfigurationError, match="is closed"):
            use()
    assert config.layers == ()


def test_load_pushes_files_in_order_and_an_explicit_var_dir_wins(tmp_path: Path) -> None:
    first = tmp_path / "first.ini"
    first.write_text(f"[paths]\nvar_dir: {tmp_path / 'from-file'}\n[runner.work]\ninstances: 2\n")
    second = tmp_path / "second.ini"
    second.write_text("[runner.work]\ninstances: 4\n")
    with Configuration.load([first, second]) as from_files:
        assert from_files.paths.var_dir == tmp_path / "from-file"
        assert from_files.runner("work").instances == 4
    with Configuration.load([first, second], tmp_path / "typed") as typed:
        assert typed.paths.var_dir == tmp_path / "typed"
        assert typed.layers == (str(first), str(second), "--var-dir")


def test_a_closed_configuration_refuses_pop(tmp_path: Path) -> None:
    config = Configuration(tmp_path)
    config.push("layer", "[runner.work]\n")
    config.close()
    with pytest.raises(ConfigurationError, match="is closed"):
        config.pop("layer")


def test_a_symbolic_link_does_not_hide_a_shared_queue_directory(
    config: Configuration, before: State, tmp_path: Path
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    text = f"[runner.in]\npath: {tmp_path / 'real'}\n[runner.out]\npath: {tmp_path / 'link'}\n"
    with pytest.raises(ConfigurationError, match="queues 'in' and 'out' would share"):
        config.push("linked", text)
    assert state(config) == before


def test_a_runner_without_a_queue_may_share_a_queues_path(config: Configuration) -> None:
    # Only queues own their directories; a server's path is never read as a queue.
    config.push("server", "[runner.server]\nqueue: no\npath: $QUEUE_DIR/in\n")
    assert config.runner("server").path == config.runner("in").path
