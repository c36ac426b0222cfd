"""Queue one message, but stop for ever inside the fsync of its temporary file.

``python -m hostilekit.paused_writer QUEUE_DIR PAUSED_MARKER``: the test waits for the
marker, then kills this process with SIGKILL, as a crash in mid-write would.  The
temporary file is then complete but never fsynced or renamed, and still locked until
the process dies.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from runnerkit import fsio
from runnerkit.message import message_from_string
from runnerkit.switchboard import Switchboard

#: How long to stay paused if nobody kills this process, so that it never outlives a
#: failed test by much.
PAUSE_SECONDS = 60.0


def main() -> int:
    queue_dir, marker = Path(sys.argv[1]), Path(sys.argv[2])
    switchboard = Switchboard("tally", queue_dir)

    def paused_fsync(fd: int) -> None:
        marker.write_text(f"{os.getpid()}\n", encoding="ascii")
        time.sleep(PAUSE_SECONDS)

    fsio.os.fsync = paused_fsync
    msg = message_from_string("From: a@example.com\nSubject: crashed\n\nNever queued.\n")
    switchboard.enqueue(msg, tag="crashed")
    return 3  # reached only if nobody killed this process


if __name__ == "__main__":
    sys.exit(main())
