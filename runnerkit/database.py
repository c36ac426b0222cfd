"""The SQLite database that holds mailing lists, their members and their mail's fate.

A file made by an earlier schema is brought up to date when it is opened for writing
(:data:`MIGRATIONS`): new tables are created, new columns added.  A read-only
connection changes nothing; code that reads a column added later must cope with its
absence there.
"""

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
-- The LMTP server asks whether a domain is a list's for every unknown recipient.
CREATE INDEX IF NOT EXISTS mailing_list_mail_host ON mailing_list (mail_host);
CREATE TABLE IF NOT EXISTS member (
    id INTEGER PRIMARY KEY,
    mailing_list INTEGER NOT NULL REFERENCES mailing_list(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    display_name TEXT NOT NULL,
    preferred_language TEXT,
    role TEXT NOT NULL,
    bounce_score INTEGER NOT NULL DEFAULT 0,
    last_bounce_received TEXT,
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
CREATE TABLE IF NOT EXISTS bounce_event (
    id INTEGER PRIMARY KEY,
    list_id TEXT NOT NULL,
    email TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    status TEXT NOT NULL,
    action TEXT NOT NULL,
    message_id TEXT NOT NULL,
    context TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pended (
    token TEXT PRIMARY KEY,
    list_id TEXT NOT NULL,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    action TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expiration_date TEXT NOT NULL
);
"""

#: Columns added to tables after their first release: (table, column, its definition).
#: A file made before them gets them on opening; new tables need no entry (SCHEMA
#: creates what is missing).
MIGRATIONS = (
    ("member", "bounce_score", "INTEGER NOT NULL DEFAULT 0"),
    ("member", "last_bounce_received", "TEXT"),
)


def migrate(connection: sqlite3.Connection) -> list[str]:
    """Add every column of :data:`MIGRATIONS` that a table lacks, in the open transaction.

    :returns: the columns added, as ``table.column``.
    """
    added = []
    for table, column, definition in MIGRATIONS:
        columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            added.append(f"{table}.{column}")
    return added


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
            # Another process may open the same old file at once: one migrates, under
            # the write lock, and the other then finds nothing left to do.
            self.connection.execute("BEGIN IMMEDIATE")
            migrate(self.connection)
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
