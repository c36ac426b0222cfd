"""Where the benchmark writes: a directory on this machine's disk, and one on tmpfs."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: File systems that live in memory: no good for measuring "the disk".
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})


def file_system(path: Path) -> tuple[str, str]:
    """(type, device) of the file system holding *path*, from ``/proc/mounts``."""
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown", "unknown"
    real = os.path.realpath(path)
    best = ("", "unknown", "unknown")
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount_point, kind = fields[0], fields[1], fields[2]
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[0]):
            best = (mount_point, kind, device)
    return best[1], best[2]


def default_disk_directory() -> Path:
    """The temporary directory, unless it is in memory; then the current directory."""
    for candidate in (Path(tempfile.gettempdir()), Path.cwd()):
        if file_system(candidate)[0] not in MEMORY_FILE_SYSTEMS:
            return candidate
    return Path.cwd()


@dataclass
class Place:
    """A scratch directory on one file system, removed by :meth:`close`.

    :param label: ``disk`` or ``tmpfs``, for the table.
    :param parent: where to create the scratch directory.
    """

    label: str
    parent: Path

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="runnerkit-bench-", dir=self.parent))
        self.kind, self.device = file_system(self.root)
        self._count = 0

    def __str__(self) -> str:
        return f"{self.label} ({self.kind} on {self.device}, {self.parent})"

    def fresh(self, name: str) -> Path:
        """A new, empty directory in the scratch directory."""
        self._count += 1
        path = self.root / f"{name}-{self._count}"
        path.mkdir()
        return path

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
