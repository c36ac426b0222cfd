"""GNU Mailman's switchboard, set up just enough to queue and drain messages.

Mailman's ``Switchboard`` reads three things from its global configuration object:
``create_paths`` and ``QFILE_SCHEMA_VERSION``, which the object sets when the package is
imported, and ``switchboards['bad']``, the queue that ``finish(preserve=True)`` moves
files to.  So the adapter registers a ``bad`` switchboard and loads no configuration
file: nothing else of Mailman (database, runners, i18n catalogs) is set up or measured.
Mailman is an optional dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import email
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Mailman:
    """Mailman's switchboard class, its message class and its configuration object."""

    version: str
    switchboard_class: Any
    message_class: Any
    config: Any

    def register_bad_queue(self, directory: Path) -> None:
        """Give Mailman the ``bad`` queue that finishing with ``preserve=True`` needs."""
        self.config.switchboards["bad"] = self.switchboard_class("bad", str(directory))

    def switchboard(
        self, name: str, directory: Path, slice: int | None = None, numslices: int = 1
    ) -> Any:
        """A Mailman switchboard over *directory*, or one slice of it."""
        return self.switchboard_class(name, str(directory), slice, numslices)

    def parse(self, data: bytes) -> Any:
        """*data* parsed into Mailman's message class, as its LMTP runner does."""
        return email.message_from_bytes(data, self.message_class)


def load_mailman() -> tuple[Mailman | None, str]:
    """Import Mailman if it is installed.

    :returns: the adapter, or None and the reason it cannot be had.
    """
    try:
        version = importlib.metadata.version("mailman")
    except importlib.metadata.PackageNotFoundError:
        return None, "Mailman is not installed (pip install -e '.[bench]')"
    try:
        from mailman.config import config  # type: ignore[import-not-found,unused-ignore]
        from mailman.core.switchboard import (  # type: ignore[import-not-found,unused-ignore]
            Switchboard,
        )
        from mailman.email.message import (  # type: ignore[import-not-found,unused-ignore]
            Message,
        )
    except Exception as error:  # any import-time failure means: no comparison
        return None, f"Mailman {version} is installed but does not import: {error!r}"
    return Mailman(version, Switchboard, Message, config), ""
