"""Each runner process's output file, and the error line the master learns from it.

The master sends the standard output and error of each runner process to a file of
that runner's slot, appending: ``LOG_DIR/runners/NAME.err`` for a runner without a
queue, ``LOG_DIR/runners/NAME.SLICE.err`` for a slice of a queue runner.  The runners
log to the shared log; what reaches these files is what a process could not log, above
all the traceback of the exception that ended it.

When a process fails, the master reads what it wrote since it was started (the file's
size at the start marks where) and keeps the last line that is not blank: for an
uncaught exception, the exception itself.  That line is the slot's ``last_error`` in
the status file.  The design holds across the ways a process ends: a process killed by
SIGKILL writes nothing, so its exit status speaks instead; the files outlive a master
killed outright; and each restart reads only its own process's part of the file, so an
old traceback is never shown for a new failure.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

#: The most of a file's end that is read for its last line, in bytes.
TAIL_BYTES = 16384
#: The longest error line kept, in characters; a longer one is cut, ending in ``...``.
MAX_LINE = 400

#: What a line may start with that names the error's class or the program, not the
#: error: ``runnerkit.errors.RunnerError: `` (a traceback's last line) and
#: ``runnerkit: `` (a process that could not set its runner up).
_NOISE = re.compile(r"(?:runnerkit(?:\.[A-Za-z_]\w*)+|runnerkit): ")
#: A runner's own name at the start of its message: ``<LMTPRunner 'lmtp'>: ``.
_RUNNER_REPR = re.compile(r"<\w+ '[a-z0-9_-]+'(?: slice \d+)?>: ")
#: Characters that would act on a terminal, or break a status line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def output_path(log_dir: Path, name: str, slice: int | None) -> Path:
    """The output file of runner *name*'s *slice* (None: a runner without a queue).

    Runner names are ``[a-z0-9][a-z0-9_-]*``, so the two forms never meet.
    """
    base = name if slice is None else f"{name}.{slice}"
    return log_dir / "runners" / f"{base}.err"


def file_size(path: Path) -> int:
    """The size of *path* in bytes; 0 if it does not exist or cannot be seen."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def last_line(path: Path, start: int = 0) -> str:
    """The last line that is not blank among the bytes of *path* from *start* on, cleaned.

    Only the last :data:`TAIL_BYTES` are read.  The line is decoded as UTF-8 (bad bytes
    replaced), stripped of what names the class or the program rather than the error
    (``runnerkit.errors.RunnerError: ``, ``runnerkit: ``, ``<LMTPRunner 'lmtp'>: ``),
    its control characters shown as ``?``, and cut to :data:`MAX_LINE` characters.

    :param start: the byte offset where the process's output starts.
    :returns: the line, or ``""`` when there is none (or the file cannot be read).
    """
    try:
        with open(path, "rb") as file:
            end = file.seek(0, os.SEEK_END)
            begin = max(start, end - TAIL_BYTES)
            if begin >= end:
                return ""
            file.seek(begin)
            data = file.read(end - begin)
    except OSError:
        return ""
    for raw in reversed(data.decode("utf-8", "replace").splitlines()):
        if raw.strip():
            return clean_line(raw)
    return ""


def clean_line(line: str) -> str:
    """*line* as :func:`last_line` shows it."""
    line = line.strip()
    line = _NOISE.sub("", line, count=1)
    line = _RUNNER_REPR.sub("", line, count=1)
    line = _CONTROL.sub("?", line)
    if len(line) > MAX_LINE:
        line = line[: MAX_LINE - 3] + "..."
    return line


def describe_end(status: int) -> str:
    """How a process ended, for an operator: ``exited with status 1``, ``killed by SIGKILL``.

    :param status: the exit status, as :attr:`subprocess.Popen.returncode` gives it
        (negative for death by a signal).
    """
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"killed by {name}"
