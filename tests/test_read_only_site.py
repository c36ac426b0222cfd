"""A read-only site: for commands that only look, and must change nothing.

``Site.open_existing`` needs a var dir that exists; its switchboards create no
directory, its database is read only if its file exists, and refuses writes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from runnerkit.errors import ConfigurationError
from runnerkit.site import Site
from runnerkit.switchboard import Switchboard


def tree(directory: Path) -> list[str]:
    """Every path under *directory*, relative, sorted."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def test_a_var_dir_that_does_not_exist_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Site.open_existing((), tmp_path / "typo")
    assert f"the var dir {str(tmp_path / 'typo')!r} (from --var-dir) does not exist" in str(
        raised.value
    )
    (tmp_path / "file").touch()
    with pytest.raises(ConfigurationError, match="is not a directory"):
        Site.open_existing((), tmp_path / "file")
    assert tree(tmp_path) == ["file"]


def test_a_switchboard_that_may_not_create_lists_nothing(tmp_path: Path) -> None:
    switchboard = Switchboard("in", tmp_path / "queue" / "in", create=False)
    assert switchboard.files == []
    assert switchboard.depth() == 0
    assert tree(tmp_path) == []


def test_a_read_only_site_creates_nothing_and_refuses_writes(tmp_path: Path) -> None:
    with Site.load((), tmp_path / "var") as site:
        site.lists.create("ant@example.com")
    with Site.open_existing((), tmp_path / "var") as site:
        assert site.read_only
        assert site.switchboards["in"].depth() == 0
        assert [mlist.fqdn_listname for mlist in site.lists] == ["ant@example.com"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            site.lists.create("bee@example.com")
        with pytest.raises(ConfigurationError, match="read-only"):
            site.switchboard("in", recover=True)
    assert tree(tmp_path / "var") == ["data", "data/runnerkit.db"]


def test_a_read_only_site_without_a_database_has_no_lists(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    with Site.open_existing((), tmp_path / "var") as site:
        assert list(site.lists) == []
    assert tree(tmp_path) == ["var"]
