"""Queue messages until the file system is full, then report what happened, as JSON.

``python -m hostilekit.fill_queue QUEUE_DIR``, run inside a private mount namespace where
QUEUE_DIR's file system is a small tmpfs.  That tmpfs disappears with the namespace, so
the report carries everything the test checks: each enqueued file's base name, tag and
SHA-256 as written, the error of the first failed enqueue, and every entry left in the
directory with its bytes (base64).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

from runnerkit.errors import QueueError
from runnerkit.message import message_from_string
from runnerkit.switchboard import Switchboard

#: A bound, so that a file system that never fills up ends the run.
MAX_MESSAGES = 10_000
#: Each message's body: large enough to fill the file system in a few dozen files.
BODY = "All work and no play makes a full disk.\n" * 100


def main() -> int:
    queue_dir = Path(sys.argv[1])
    switchboard = Switchboard("tiny", queue_dir)
    enqueued = []
    error: dict[str, object] | None = None
    for index in range(MAX_MESSAGES):
        msg = message_from_string(f"From: a@example.com\nSubject: m{index}\n\n{BODY}")
        try:
            filebase = switchboard.enqueue(msg, tag=index)
        except QueueError as failure:
            cause = failure.__cause__
            error = {
                "type": type(failure).__name__,
                "message": str(failure),
                "errno": getattr(cause, "errno", None),
            }
            break
        data = (queue_dir / f"{filebase}.pck").read_bytes()
        enqueued.append(
            {"filebase": filebase, "tag": index, "sha256": hashlib.sha256(data).hexdigest()}
        )
    entries = {
        path.name: base64.b64encode(path.read_bytes()).decode("ascii")
        for path in sorted(queue_dir.iterdir())
    }
    json.dump({"enqueued": enqueued, "error": error, "entries": entries}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
