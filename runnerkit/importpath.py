"""Where runner classes are imported from: the import path of a configuration.

A runner class named in ``[runner.NAME] class`` lives in the operator's own module as
often as in runnerkit.  Every process that imports runner classes (``runnerkit start``,
the master, each runner process) puts the same directories at the front of
``sys.path`` first, so that all of them import the same classes:

- those given with ``--path DIR`` (the ``runnerkit`` command also adds the directory it
  was started in, as ``python -m`` does, and as rq and celery workers do);
- then ``[runnerkit] import_path``, one directory a line, relative to the file that
  sets it.

The master hands the whole list to each runner process it starts, as ``--path``
options, so a runner finds what ``runnerkit start`` found, wherever it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from runnerkit.config import Configuration
from runnerkit.errors import ConfigurationError


def use_import_path(config: Configuration) -> tuple[Path, ...]:
    """Put *config*'s import path at the front of ``sys.path``, in order.

    A directory already on ``sys.path`` moves to its place in front, so that the
    import path always comes first.

    :returns: the directories, as put on ``sys.path``.
    :raises ConfigurationError: a directory does not exist; the message names it and
        where it was given (``--path``, or the layer, section and key).
    """
    entries = config.import_path
    for entry in entries:
        if not entry.path.is_dir():
            problem = "is not a directory" if entry.path.exists() else "does not exist"
            raise ConfigurationError(
                f"{entry.origin}: import path directory {str(entry.path)!r} {problem}"
            )
    directories = tuple(entry.path for entry in entries)
    wanted = [str(path) for path in directories]
    sys.path[:] = wanted + [item for item in sys.path if item not in wanted]
    return directories
