"""Type aliases shared across runnerkit."""

from __future__ import annotations

import os
from typing import Any, TypeAlias

#: The metadata that travels with a queued message.
MsgData: TypeAlias = dict[str, Any]

#: Anything that names a file system path.
StrPath: TypeAlias = str | os.PathLike[str]
