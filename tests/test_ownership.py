"""Strict modes: no master on a site that another user could write (runnerkit.ownership)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runnerkit.errors import UnsafeSiteError
from runnerkit.ownership import check_strict_modes, unsafe_paths
from runnerkit.site import Site

RUNNERKIT = Path(sys.executable).with_name("runnerkit")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    made = Site(tmp_path / "var")
    assert made.switchboards["in"].files == []  # makes the queue directory, as a runner does
    assert made.lists.names == []  # and the database
    return made


def test_a_site_runnerkit_made_is_safe(site: Site) -> None:
    assert unsafe_paths(site) == []
    check_strict_modes(site)


def test_a_directory_others_may_write_is_refused(site: Site) -> None:
    queue = site.runner("in").path
    queue.chmod(0o777)
    site.paths.var_dir.chmod(0o770)
    assert unsafe_paths(site) == [
        f"{str(site.paths.var_dir)!r} is writable by its group (mode 0770; fix: chmod go-w "
        f"{site.paths.var_dir})",
        f"{str(queue)!r} is writable by its group and others (mode 0777; fix: chmod go-w {queue})",
    ]
    with pytest.raises(UnsafeSiteError, match=r"^refusing to start: another user could"):
        check_strict_modes(site)
    site.push("lenient", "[master]\nstrict_modes: no\n")
    check_strict_modes(site)


def test_a_directory_another_user_owns_is_refused(site: Site) -> None:
    queue = site.runner("in").path
    if os.geteuid() == 0:
        os.chown(queue, 4242, -1)
        me = 0
    else:
        me = os.geteuid() + 1  # as if another user ran runnerkit here
    problems = unsafe_paths(site, uid=me)
    assert any(
        problem.startswith(f"{str(queue)!r} is owned by ") and "(fix: chown " in problem
        for problem in problems
    ), problems


def test_start_refuses_an_unsafe_var_dir_and_names_the_fix(site: Site) -> None:
    site.paths.var_dir.chmod(0o777)
    result = subprocess.run(
        [str(RUNNERKIT), "start", "--var-dir", str(site.paths.var_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("runnerkit: error: refusing to start: another user could")
    assert f"fix: chmod go-w {site.paths.var_dir}" in result.stderr
    assert not (site.paths.var_dir / "master.pid").exists()


def test_a_configuration_file_others_may_write_is_refused(site: Site, tmp_path: Path) -> None:
    """A -C file names runner classes and an import path: whoever writes it runs code."""
    ini = tmp_path / "site.ini"
    ini.write_text("[runner.rest]\nstart: no\n", encoding="utf-8")
    ini.chmod(0o646)
    assert unsafe_paths(site, config_files=[ini]) == [
        f"{str(ini)!r} is writable by others (mode 0646; fix: chmod go-w {ini})"
    ]
    with pytest.raises(UnsafeSiteError):
        check_strict_modes(site, [ini])


def test_the_metrics_and_maildir_directories_are_checked_too(site: Site) -> None:
    for directory in (site.paths.metrics_dir, site.delivery.maildir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)
    problems = unsafe_paths(site)
    assert [problem.split("'")[1] for problem in problems] == [
        str(site.paths.metrics_dir),
        str(site.delivery.maildir),
    ]
