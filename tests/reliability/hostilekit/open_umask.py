"""Create queues, queue files, backups and preserved files under umask 0.

``python -m hostilekit.open_umask BASE``: with the umask at 0, only runnerkit's own modes
stand between the files and other users.  Everything is created under BASE, which does
not exist yet, several levels deep, so that missing parents are created too.  The test
then checks the mode of every entry under BASE.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from runnerkit.config import use_config
from runnerkit.message import message_from_string
from runnerkit.site import Site
from runnerkit.switchboard import Switchboard


def main() -> int:
    os.umask(0)
    base = Path(sys.argv[1])
    with Site(base / "deep" / "var") as config, use_config(config):
        # A queue at a path of its own, with missing parents; preserving a file in bad
        # creates a queue of the configuration, var/queue/bad, and its parents.
        queue = Switchboard(
            "modes",
            base / "elsewhere" / "a" / "b" / "modes",
            bad=config.runner("bad").path,
            clock=config.clock,
        )
        msg = message_from_string("From: a@example.com\nSubject: modes\n\nModes.\n")
        _kept, preserved, recovered, taken = (queue.enqueue(msg, tag=tag) for tag in range(4))
        queue.dequeue(preserved)
        queue.finish(preserved, preserve=True)  # a .psv in bad
        queue.dequeue(recovered)
        queue.recover_backup_files()  # writes the .pck again from its .bak
        queue.dequeue(taken)  # a .bak, left in place
    return 0


if __name__ == "__main__":
    sys.exit(main())
