"""A runner process that polls: ``python -m runnerkit.process`` without its queue watcher.

Runs exactly as ``python -m runnerkit.process`` does, with the same arguments, except
that it never watches its queue directory, so an idle runner only notices new files
when its ``sleep_time`` ends, the way Mailman's runners do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from runnerkit import process


def _no_watcher(directory: Path, callback: Callable[[], object]) -> None:
    return None


def main(argv: Sequence[str] | None = None) -> int:
    process.watch_queue = _no_watcher  # type: ignore[attr-defined]
    return process.main(argv)


if __name__ == "__main__":
    sys.exit(main())
