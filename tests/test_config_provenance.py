"""Where each value of a configuration came from, and the import path it names.

``Configuration.setting()`` gives a value with the layer that set it (what ``runnerkit
conf`` prints); ``[runnerkit] import_path`` is relative to the file that sets it, and
:func:`runnerkit.importpath.use_import_path` puts it, after ``--path``, at the front of
``sys.path``.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from runnerkit.config import Configuration, ImportDir
from runnerkit.errors import ConfigurationError
from runnerkit.importpath import use_import_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_load_names_each_file_layer_and_the_var_dir_layer(tmp_path: Path) -> None:
    ini = write(tmp_path / "site.ini", "[lmtp]\nport: 8025\n")
    with Configuration.load([ini], tmp_path / "v", var_dir_layer="$RUNNERKIT_VAR_DIR") as config:
        assert config.layers == (str(ini), "$RUNNERKIT_VAR_DIR")
        port = config.setting("lmtp", "port")
        assert (port.value, port.text, port.layer, port.inherited) == (
            8025,
            "8025",
            str(ini),
            False,
        )
        var_dir = config.setting("paths", "var_dir")
        assert (var_dir.value, var_dir.layer) == (tmp_path / "v", "$RUNNERKIT_VAR_DIR")
        queue_dir = config.setting("paths", "queue_dir")
        assert (queue_dir.value, queue_dir.text) == (tmp_path / "v" / "queue", "$VAR_DIR/queue")
        assert config.setting("lmtp", "host").layer == "defaults"


def test_a_var_dir_with_a_dollar_sign_is_kept_as_given(tmp_path: Path) -> None:
    with Configuration.load((), tmp_path / "$HOME" / "var") as config:
        assert config.paths.var_dir == tmp_path / "$HOME" / "var"
        assert config.paths.queue_dir == tmp_path / "$HOME" / "var" / "queue"


def test_settings_list_every_section_in_order(tmp_path: Path) -> None:
    with Configuration(tmp_path) as config:
        config.push("extra", "[runner.zzz]\n[runner.aaa]\n")
        sections = config.sections
        assert sections[:2] == ("runnerkit", "paths")
        assert sections[sections.index("runner.defaults") :][:3] == (
            "runner.defaults",
            "runner.aaa",
            "runner.bad",
        )
        assert sections[-1] == "runner.zzz"
        assert config.settings()[0].section == "runnerkit"
        with pytest.raises(ConfigurationError, match=r"no section \[nosuch\]"):
            config.settings("nosuch")
        with pytest.raises(ConfigurationError, match="known runners"):
            config.setting("runner.nosuch", "start")


def test_import_path_of_a_file_is_relative_to_the_file(tmp_path: Path) -> None:
    ini = write(tmp_path / "etc" / "site.ini", "[runnerkit]\nimport_path: plugins\n  ../lib\n")
    given = ImportDir(tmp_path / "given", "--path")
    with Configuration.load([ini], import_path=[given]) as config:
        assert config.general.import_path == (tmp_path / "etc" / "plugins", tmp_path / "lib")
        assert [entry.path for entry in config.import_path] == [
            tmp_path / "given",
            tmp_path / "etc" / "plugins",
            tmp_path / "lib",
        ]
        origin = config.import_path[1].origin
        assert str(ini) in origin
        assert "[runnerkit]" in origin
        assert "import_path" in origin


def test_use_import_path_refuses_a_missing_directory_naming_its_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    ini = write(tmp_path / "site.ini", "[runnerkit]\nimport_path: typo\n")
    with Configuration.load([ini]) as config, pytest.raises(ConfigurationError) as raised:
        use_import_path(config)
    message = str(raised.value)
    assert str(tmp_path / "typo") in message
    assert f"layer {str(ini)!r}" in message
    assert "does not exist" in message


def test_use_import_path_puts_the_directories_first_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    monkeypatch.setattr(sys, "path", ["/somewhere", str(two)])
    given = [ImportDir(one, "--path"), ImportDir(two, "--path")]
    with Configuration.load(import_path=given) as config:
        assert use_import_path(config) == (one, two)
    assert sys.path == [str(one), str(two), "/somewhere"]


def test_settings_of_pushed_layers_name_them(tmp_path: Path) -> None:
    with Configuration(tmp_path) as config:
        config.push("mine", "[runner.work]\nsleep_time: 3s\n")
        config.push("theirs", "[runner.defaults]\nsleep_time: 4s\n")
        work = config.setting("runner.work", "sleep_time")
        assert (work.layer, work.text, work.inherited) == ("mine", "3s", False)
        other = config.setting("runner.in", "sleep_time")
        assert (other.layer, other.text, other.inherited) == ("theirs", "4s", True)
        config.pop("theirs")
        assert config.setting("runner.in", "sleep_time").layer == "defaults"
        assert [s.key for s in config.settings("runner.work")] == [
            "class", "path", "instances", "start", "max_restarts", "sleep_time", "queue",
            "slices",
        ]  # fmt: skip
