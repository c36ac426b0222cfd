"""The client side of the master: start one in the background, stop one.

``runnerkit start`` and ``runnerkit stop`` (and the demo) use these; they talk to the
master only through its lock (:mod:`runnerkit.master.files`) and signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from runnerkit.config import Configuration
from runnerkit.errors import MasterRunningError, MasterStartError
from runnerkit.fsio import make_directories
from runnerkit.master.files import running_master_pid

#: How often the client looks at the master's lock while it waits.
POLL_SECONDS = 0.02


def start_in_background(
    config: Configuration, config_files: Sequence[Path] = (), wait: float = 15.0
) -> int:
    """Start a master on *config*'s var dir in a new session, and wait until it holds its lock.

    The master runs ``python -m runnerkit.master --var-dir VAR [-C FILE]...``; its
    standard output and error go to ``LOG_DIR/master.err``.

    :param wait: seconds to wait for the master to take its lock.
    :returns: the master's pid.
    :raises MasterRunningError: another master holds the lock (it may have won a race).
    :raises MasterStartError: the master exited at once, or did not take its lock in time.
    """
    command = [sys.executable, "-m", "runnerkit.master", "--var-dir", str(config.paths.var_dir)]
    for path in config_files:
        command += ["-C", str(Path(path).absolute())]
    make_directories(config.paths.log_dir)
    errors = config.paths.log_dir / "master.err"
    with open(errors, "ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pid = running_master_pid(config)
        if pid == process.pid:
            return pid
        if process.poll() is not None:
            other = running_master_pid(config)
            if other is not None:
                # Another start won the race for the lock.
                raise MasterRunningError(
                    f"a master is already running with pid {other}; use 'runnerkit stop' or "
                    "'runnerkit restart'"
                )
            raise MasterStartError(
                f"the master exited at once with status {process.returncode}; see {errors}"
            )
        time.sleep(POLL_SECONDS)
    raise MasterStartError(f"the master (pid {process.pid}) did not take its lock in {wait:.0f}s")


def stop_master(config: Configuration, pid: int, timeout: float) -> bool:
    """Send SIGTERM to the master *pid* and wait until *config*'s lock is free.

    :param timeout: seconds to wait.
    :returns: whether the master stopped within *timeout* seconds.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return running_master_pid(config) is None
    deadline = time.monotonic() + timeout
    while running_master_pid(config) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True
