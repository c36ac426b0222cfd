"""The SQLite database that holds mailing lists and their members."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from runnerkit.errors import DatabaseError
from runnerkit.fsio import FILE_MODE, make_directories
from runnerkit.typing import StrPath

SCHEMA = """\
CREATE TABLE IF NOT EXISTS mailing_list (
    id INTEGER PRIMARY KEY,
    list_name TEXT NOT NULL,
    mail_host TEXT NOT NULL,
    fqdn_listname TEXT NOT NULL UNIQUE,
    list_id TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    preferred_language TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS member (
    id INTEGER PRIMARY KEY,
    mailing_list INTEGER NOT NULL REFERENCES mailing_list(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    display_name TEXT NOT NULL,
    preferred_language TEXT,
    role TEXT NOT NULL,
    UNIQUE (mailing_list, email, role)
);
CREATE TABLE IF NOT EXISTS delivery_failure (
    id INTEGER PRIMARY KEY,
    list_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    code INTEGER,
    response TEXT NOT NULL,
    message_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at TEXT NOT NULL
);
"""


class Database:
    """One connection to the SQLite file at *path*, created with its schema if new.

    Work happens in a transaction that :meth:`commit` makes permanent and :meth:`abort`
    discards.  Several processes may share the file: it uses write-ahead logging and
    waits for a busy writer instead of failing at once.

    :param read_only: create nothing and write nothing: the file is opened only if it
        exists (a file that does not exist yet reads as an empty database, held in
        memory), and every write fails (SQLite refuses it: ``sqlite3.OperationalError``,
        "attempt to write a readonly database").  SQLite's
        ``-wal`` and ``-shm`` files, which any reader of the file needs, are removed
        again on :meth:`close` unless another connection still uses them.
    :raises DatabaseError: the file cannot be opened or initialized.
    """

    def __init__(self, path: StrPath, *, timeout: float = 30.0, read_only: bool = False) -> None:
        #: The database file.
        self.path = Path(path)
        #: Whether writes are refused.
        self.read_only = read_only
        if read_only:
            self.connection = self._open_read_only(timeout)
            return
        try:
            make_directories(self.path.parent)
            # Created with FILE_MODE, not SQLite's default; its -wal and -shm files follow.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
            self.connection = sqlite3.connect(self.path, timeout=timeout)
            self.connection.execute("PRAGMA foreign_keys = ON")
            self.connection.execute("PRAGMA journal_mode = WAL")
            self.connection.execute("PRAGMA synchronous = NORMAL")
            self.connection.executescript(SCHEMA)
            self.connection.commit()
        except (OSError, sqlite3.Error) as error:
            raise DatabaseError(f"cannot open database {str(self.path)!r}: {error}") from error

    def _open_read_only(self, timeout: float) -> sqlite3.Connection:
        try:
            if self.path.exists():
                # mode=rw, not ro: it never creates the file, and its connection,
                # the last to close, removes the -wal and -shm files it needed.
                uri = f"{self.path.absolute().as_uri()}?mode=rw"
                connection = sqlite3.connect(uri, uri=True, timeout=timeout)
            else:
                connection = sqlite3.connect(":memory:")
                connection.executescript(SCHEMA)
            connection.execute("PRAGMA query_only = ON")
        except (OSError, sqlite3.Error) as error:
            raise DatabaseError(
                f"cannot open database {str(self.path)!r} to read: {error}"
            ) from error
        return connection

    def __repr__(self) -> str:
        suffix = " (read-only)" if self.read_only else ""
        return f"<Database {str(self.path)!r}{suffix}>"

    def commit(self) -> None:
        """Make the current transaction permanent."""
        self.connection.commit()

    def abort(self) -> None:
        """Discard the current transaction."""
        self.connection.rollback()

    def close(self) -> None:
        """Discard any open transaction and close the connection."""
        self.connection.rollback()
        self.connection.close()
