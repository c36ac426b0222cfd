"""Run the pipeline runner while its file system is full, then with room again; report.

``python -m hostilekit.full_pipeline VAR_DIR``, run inside a private mount namespace
where VAR_DIR is a small tmpfs (it disappears with the namespace, so the report says
what the test checks, as JSON).  Seven accepted messages wait in ``pipeline``; a filler
file takes the rest of the space; the pipeline runner makes one pass, which cannot
write a single message to ``out``; the filler goes; the runner runs again.  Where the
messages are after each pass is the report.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from runnerkit.message import message_from_string
from runnerkit.runners.pipeline import PipelineRunner
from runnerkit.site import Site

#: The accepted messages, as in the chaos run that found the fault.
MESSAGES = 7


def where(site: Site) -> dict[str, int]:
    """How many messages each queue holds (bad's preserved ones included)."""
    return {name: site.switchboards[name].depth() for name in ("pipeline", "out", "shunt", "bad")}


def fill(path: Path) -> None:
    """Write *path* until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)


def main() -> int:
    var_dir = Path(sys.argv[1])
    site = Site(var_dir)
    site.push("quick", "[runner.pipeline]\nsleep_time: 10ms\n[master]\nstrict_modes: no\n")
    mlist = site.lists.create("ants@example.com")
    for index in range(MESSAGES):
        site.switchboards["pipeline"].enqueue(
            message_from_string(f"From: a@example.com\nSubject: m{index}\n\n" + "x" * 2000),
            listid=mlist.list_id,
        )
    site.commit()
    filler = var_dir / "filler"
    fill(filler)
    runner = PipelineRunner("pipeline", config=site)
    runner.run_once()
    full = where(site)
    os.unlink(filler)
    runner.run(until=lambda runner: not site.switchboards["pipeline"].files)
    json.dump({"full": full, "after": where(site)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
