"""The master: starts every runner process, watches them, and restarts the ones that die.

One module per job:

- :mod:`~runnerkit.master.supervisor`: the slots and the watch loop (:class:`Master`);
- :mod:`~runnerkit.master.policy`: the restart rule, a pure function of a slot's
  failures, the exit status and the time;
- :mod:`~runnerkit.master.watchdog`: which runners have been on one message too long;
- :mod:`~runnerkit.master.status`: the status record that ``master.json`` holds;
- :mod:`~runnerkit.master.files`: the master's lock, pid file and status file;
- :mod:`~runnerkit.master.output`: each runner process's output file, and the error
  line the master learns from it;
- :mod:`~runnerkit.master.client`: starting a master in the background, stopping it,
  and draining it;
- :mod:`~runnerkit.master.readiness`: waiting for a started master's runners to be up
  and its servers to listen.

``python -m runnerkit.master [-C FILE]... [--var-dir DIR]`` runs a master in the
foreground (:func:`main`).
"""

from runnerkit.errors import (
    MasterNotRunningError,
    MasterRunningError,
    MasterStartError,
    StatusFileError,
)
from runnerkit.master.client import (
    KEPT_QUEUES,
    DrainReport,
    RestartRequest,
    drain_master,
    restart_runners,
    signal_master,
    start_in_background,
    stop_master,
)
from runnerkit.master.files import (
    LOCK_RETRY_SECONDS,
    UNKNOWN_PID,
    MasterLayers,
    MasterLock,
    MasterPaths,
    lock_paths,
    read_layers,
    read_status,
    running_master_pid,
    write_status,
)
from runnerkit.master.output import output_path
from runnerkit.master.policy import Action, Decision, RestartPolicy
from runnerkit.master.readiness import listening_addresses, wait_until_ready
from runnerkit.master.status import MasterStatus, RunnerStatus
from runnerkit.master.supervisor import Master, Slot, main
from runnerkit.master.watchdog import STUCK_CHECK_SECONDS, Stuck, Watchdog

__all__ = [
    "KEPT_QUEUES",
    "LOCK_RETRY_SECONDS",
    "STUCK_CHECK_SECONDS",
    "UNKNOWN_PID",
    "Action",
    "Decision",
    "DrainReport",
    "Master",
    "MasterLayers",
    "MasterLock",
    "MasterNotRunningError",
    "MasterPaths",
    "MasterRunningError",
    "MasterStartError",
    "MasterStatus",
    "RestartPolicy",
    "RestartRequest",
    "RunnerStatus",
    "Slot",
    "StatusFileError",
    "Stuck",
    "Watchdog",
    "drain_master",
    "listening_addresses",
    "lock_paths",
    "main",
    "output_path",
    "read_layers",
    "read_status",
    "restart_runners",
    "running_master_pid",
    "signal_master",
    "start_in_background",
    "stop_master",
    "wait_until_ready",
    "write_status",
]
