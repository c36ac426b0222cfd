"""The log file and the database are no more writable than the queue files.

Under umask 0, files created with the default modes would be writable by everyone;
runnerkit creates its log file and its SQLite database with mode 0o640 instead.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

CHILD = """
import logging, os, sys
os.umask(0)
from runnerkit.site import Site
from runnerkit.logs import configure_logging
with Site(sys.argv[1]) as config:
    configure_logging(config)
    logging.getLogger("runnerkit.test").warning("a line")
    config.lists.create("ants@example.com")
"""


def test_under_umask_0_the_log_and_the_database_are_not_writable_by_others(
    tmp_path: Path,
) -> None:
    var_dir = tmp_path / "var"
    subprocess.run([sys.executable, "-c", CHILD, str(var_dir)], check=True, timeout=60)
    log = var_dir / "logs" / "runnerkit.log"
    database = var_dir / "data" / "runnerkit.db"
    assert "a line" in log.read_text(encoding="utf-8")
    modes = {
        path.relative_to(var_dir).as_posix(): stat.S_IMODE(os.stat(path).st_mode)
        for path in (log, database)
    }
    assert modes == {"logs/runnerkit.log": 0o640, "data/runnerkit.db": 0o640}
    for directory in (log.parent, database.parent):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o750
