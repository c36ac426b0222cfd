"""Whether a master that was just started is ready: its runners up, its servers listening.

``runnerkit start`` starts a master in the background
(:func:`~runnerkit.master.client.start_in_background`), which returns once the master
holds its lock.  :func:`wait_until_ready` then waits, for a bounded time, until the
master's status file shows every runner process started, and until each *listener* (a
runner that serves a port, such as the LMTP and REST runners) listens.  A runner
process that fails meanwhile ends the wait at once, with the error it wrote
(:mod:`runnerkit.master.output`): a busy LMTP port is then reported by ``start``, not
found later in a log.

Whether a process listens is read from ``/proc`` (Linux): the sockets among its open
files that the kernel's TCP tables show listening.  Only the process itself counts, so
another program on the port never passes for the runner.  Where ``/proc`` cannot tell,
a listener counts as ready once its process runs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import time
from collections.abc import Collection
from pathlib import Path

from runnerkit.config import Configuration
from runnerkit.errors import MasterStartError
from runnerkit.master.files import read_status, running_master_pid
from runnerkit.master.status import MasterStatus, RunnerStatus

#: How often the status file and the listeners are looked at while waiting.
POLL_SECONDS = 0.05
#: ``st`` of a listening socket in ``/proc/net/tcp``.
_LISTEN = "0A"
_SOCKET = re.compile(r"socket:\[(\d+)\]")


def listening_addresses(pid: int) -> list[str] | None:
    """The TCP addresses that process *pid* itself listens on, as ``HOST:PORT``.

    ``[HOST]:PORT`` for IPv6.  Read from ``/proc/PID/fd`` and ``/proc/PID/net/tcp``
    (and ``tcp6``).

    :returns: the addresses, in the kernel's order; ``[]`` when the process listens on
        none, is gone, or cannot be looked at; None when this system has no
        ``/proc/self/net/tcp`` to tell.
    """
    if not os.path.exists("/proc/self/net/tcp"):
        return None
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        # Gone, or a zombie the master has not reaped yet: it listens on nothing.
        return []
    inodes = set()
    for descriptor in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
        except OSError:
            continue
        match = _SOCKET.fullmatch(target)
        if match:
            inodes.add(match[1])
    addresses: list[str] = []
    for table in ("tcp", "tcp6") if inodes else ():
        try:
            text = Path(f"/proc/{pid}/net/{table}").read_text(encoding="ascii")
        except OSError:
            # No IPv6 on this machine, or the process is gone since.
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and fields[9] in inodes:
                addresses.append(_address(fields[1]))
    return addresses


def _address(field: str) -> str:
    """``HOST:PORT`` of a ``/proc/net/tcp`` address: hex, in the kernel's byte order."""
    host, _, port = field.partition(":")
    raw = bytes.fromhex(host)
    # The kernel prints each 32-bit word of the address in the machine's byte order.
    step = -1 if sys.byteorder == "little" else 1
    words = b"".join(raw[i : i + 4][::step] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return f"{ipaddress.IPv4Address(words)}:{int(port, 16)}"
    return f"[{ipaddress.IPv6Address(words)}]:{int(port, 16)}"


def _label(runner: RunnerStatus) -> str:
    return runner.name if runner.slice is None else f"{runner.name} slice {runner.slice}"


def _failures(status: MasterStatus, listeners: Collection[str]) -> list[str]:
    """What went wrong so far: runners whose process failed, listeners that stopped."""
    found = []
    for runner in status.runners:
        if runner.last_error:
            found.append(f"{_label(runner)}: {runner.last_error}")
        elif runner.name in listeners and runner.state == "down":
            found.append(f"{_label(runner)}: {runner.reason or 'down'}")
    return found


def wait_until_ready(
    config: Configuration,
    master_pid: int,
    listeners: Collection[str],
    timeout: float,
) -> dict[str, list[str]]:
    """Wait until master *master_pid* has started its runners and its *listeners* listen.

    Ready means: the status file is this master's; no runner waits to be started (one
    that stopped on purpose, with status 0, counts as started, unless it is a
    listener); and each running listener process listens on some TCP address.

    :param listeners: the names of the runners that serve a port.
    :param timeout: seconds to wait, at most.
    :returns: each listener's addresses, by runner name (``[]`` where ``/proc``
        cannot tell).
    :raises MasterStartError: a runner process failed (the message names it and gives
        its last error line), a listener stopped, the master exited, or *timeout*
        seconds passed first (the message names what was not ready).
    """
    deadline = time.monotonic() + timeout
    while True:
        if running_master_pid(config) != master_pid:
            errors = config.paths.log_dir / "master.err"
            raise MasterStartError(
                f"the master (pid {master_pid}) exited while its runners started; see {errors}"
            )
        status = read_status(config)
        waiting = ["its status file"]
        if status is not None and status.master_pid == master_pid:
            failures = _failures(status, listeners)
            if failures:
                raise MasterStartError("; ".join(failures))
            addresses: dict[str, list[str]] = {}
            waiting = []
            for runner in status.runners:
                if runner.state == "starting":
                    waiting.append(f"{_label(runner)} to start")
                elif runner.name in listeners and runner.pid is not None:
                    found = listening_addresses(runner.pid)
                    if found is None or found:
                        addresses[runner.name] = found or []
                    else:
                        waiting.append(f"{_label(runner)} (pid {runner.pid}) to listen")
            if not waiting:
                return addresses
        if time.monotonic() > deadline:
            raise MasterStartError(
                f"not ready within {timeout:g}s: still waiting for {', '.join(waiting)}"
            )
        time.sleep(POLL_SECONDS)
