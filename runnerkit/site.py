"""The :class:`Site`: one running system, its configuration and everything built from it.

A configuration is settings only.  A site is a configuration put to work over its var
dir: it owns the switchboards of its queues (all stamped by one clock, so FIFO holds
across them), this thread's connection to the SQLite database, the mailing lists in it,
and the transaction that a runner commits or aborts once per message.  Whoever runs
code against a var dir makes one site and closes it: a world in the harness, a runner
process, the master and each CLI command.

The site whose code is running is the *current* one (:func:`current_site`); runners
built without ``config=`` use it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Self

from runnerkit.config import Configuration, ImportDir, current_config
from runnerkit.database import Database
from runnerkit.errors import ConfigurationError, NoConfigurationError
from runnerkit.fsio import max_queue_file_size
from runnerkit.lists import ListManager
from runnerkit.streams import RedisCalls, StreamSwitchboard, redis_url
from runnerkit.switchboard import QueueClock, Switchboard
from runnerkit.typing import StrPath

#: A switchboard of either backend: a directory of files, or Redis Streams.
AnySwitchboard = Switchboard | StreamSwitchboard


class Site(Configuration):
    """A configuration and the running system over its var dir.

    Everything a :class:`~runnerkit.config.Configuration` does (``push``, ``pop``,
    typed sections, ``runner(name)``) works the same; a site adds what is built from it.
    Nothing is created on disk until it is used: a switchboard's directory when the
    switchboard is first looked up, the database when it is first opened.  A
    *read-only* site (:meth:`open_existing`) creates nothing at all.

    :param var_dir: as for :class:`~runnerkit.config.Configuration`.
    """

    def __init__(self, var_dir: StrPath | None = None) -> None:
        super().__init__(var_dir)
        self._switchboard_cache: dict[tuple[object, ...], AnySwitchboard] = {}
        self._redis: RedisCalls | None = None
        self._database: Database | None = None
        self._read_only = False
        #: The clock that stamps queue file names, shared by all of this site's queues.
        self.clock = QueueClock()
        #: Every queue's switchboard by name, ``bad`` and ``shunt`` included; a live
        #: view, in step with the stack.
        self.switchboards: Mapping[str, AnySwitchboard] = _Switchboards(self)

    @classmethod
    def open_existing(
        cls,
        config_files: Sequence[StrPath] = (),
        var_dir: StrPath | None = None,
        *,
        import_path: Iterable[ImportDir] = (),
        var_dir_layer: str = "--var-dir",
        read_only: bool = True,
    ) -> Self:
        """A site over a var dir that exists: by default read-only, for a look that
        changes nothing.

        The other arguments are those of :meth:`~runnerkit.config.Configuration.load`.
        A read-only site's switchboards create no directory (a queue whose directory is
        missing is empty) and recover nothing; its database is opened only if its file
        exists (else it is empty) and refuses writes.

        :param read_only: False for a command that changes an existing site (requeue,
            discard, unshunt): a var dir given by mistake is then an error, not a new
            empty site in which it finds nothing to do.
        :raises ConfigurationError: a layer is bad, or the var dir does not exist; the
            message names the directory and the layer that set it.
        """
        site = cls.load(
            config_files, var_dir, import_path=import_path, var_dir_layer=var_dir_layer
        )
        site._read_only = read_only
        var_dir_path = site.paths.var_dir
        if not var_dir_path.is_dir():
            layer = site.setting("paths", "var_dir").layer
            given = "the default, ./var" if layer == "defaults" else f"from {layer}"
            problem = "is not a directory" if var_dir_path.exists() else "does not exist"
            site.close()
            does = "only looks, and creates nothing" if read_only else "works on a site"
            raise ConfigurationError(
                f"the var dir {str(var_dir_path)!r} ({given}) {problem}; this command {does}: "
                "give the var dir of a site (--var-dir, $RUNNERKIT_VAR_DIR, [paths] var_dir)"
            )
        return site

    @property
    def read_only(self) -> bool:
        """Whether this site creates and writes nothing (:meth:`open_existing`)."""
        return self._read_only

    def switchboard(
        self, name: str, slice: int | None = None, numslices: int = 1, *, recover: bool = False
    ) -> AnySwitchboard:
        """A new switchboard over queue *name*, for one *slice* of it.

        It is of the ``[queues] backend``: a :class:`~runnerkit.switchboard.Switchboard`
        over the queue's directory, or a :class:`~runnerkit.streams.StreamSwitchboard`
        on the Redis server.  It shares this site's clock and ``bad`` queue.  A runner
        builds its own this way.  A read-only site's switchboards neither create nor
        record anything, nor recover.

        :raises ConfigurationError: there is no ``[runner.NAME]`` section, or a
            read-only site is asked to recover.
        :raises QueueError: the slice is impossible, or the directory cannot be created.
        """
        if recover and self._read_only:
            raise ConfigurationError(f"{self!r} is read-only: it cannot recover queue {name!r}")
        settings = self.runner(name)
        max_file_size = max_queue_file_size(self.lmtp.max_message_size)
        if self.queues.backend == "redis":
            return StreamSwitchboard(
                name,
                self.redis,
                slice,
                numslices,
                recover=recover,
                layout=settings.instances,
                clock=self.clock,
                max_file_size=max_file_size,
                create=not self._read_only,
            )
        return Switchboard(
            name,
            settings.path,
            slice,
            numslices,
            recover=recover,
            bad=self.runner("bad").path,
            clock=self.clock,
            create=not self._read_only,
            max_file_size=max_file_size,
        )

    @property
    def redis(self) -> RedisCalls:
        """This site's client of its Redis server (``[queues] url``), made on first use.

        :raises ConfigurationError: the site is closed, or redis-py is missing.
        """
        self._check_open()
        url, prefix = redis_url(self.queues.url), self.queues.key_prefix
        if self._redis is not None and (self._redis.url, self._redis.prefix) != (url, prefix):
            # A layer pushed or popped since: the queues are another server's, or keys.
            self._redis.close()
            self._redis = None
        if self._redis is None:
            self._redis = RedisCalls(url, prefix)
        return self._redis

    @property
    def database(self) -> Database:
        """This thread's connection to the database, opened on first use.

        SQLite connections belong to the thread that opened them; a thread of its own
        (a server thread, say) opens another with ``Database(site.database_path)``.

        :raises ConfigurationError: the site is closed.
        :raises DatabaseError: the database cannot be opened.
        """
        self._check_open()
        if self._database is None:
            self._database = Database(self.database_path, read_only=self._read_only)
        return self._database

    @property
    def lists(self) -> ListManager:
        """The mailing lists in this site's database."""
        return self.lists_in(self.database)

    def lists_in(self, database: Database) -> ListManager:
        """The mailing lists in *database*, a connection of another thread's own."""
        return ListManager(database, default_language=self.general.default_language)

    def commit(self) -> None:
        """Commit the database transaction, if the database has been opened."""
        if self._database is not None:
            self._database.commit()

    def abort(self) -> None:
        """Roll back the database transaction, if the database has been opened."""
        if self._database is not None:
            self._database.abort()

    def reconnect(self) -> None:
        """Drop the database connection, discarding its transaction; the next use of
        :attr:`database` opens the file afresh.

        After a database error: a file damaged and then restored, or replaced, is only
        seen whole again through a new connection.
        """
        if self._database is not None:
            database, self._database = self._database, None
            with contextlib.suppress(sqlite3.Error):
                database.close()

    def close(self) -> None:
        """Release the database connection; the site cannot be used afterwards."""
        if self._database is not None:
            self._database.close()
            self._database = None
        for switchboard in self._switchboard_cache.values():
            switchboard.close()
        self._switchboard_cache.clear()
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        super().close()

    def _cached_switchboard(self, name: str) -> AnySwitchboard:
        queues = self.queues
        key = (name, self.runner(name).path, queues.backend, queues.url, queues.key_prefix)
        switchboard = self._switchboard_cache.get(key)
        if switchboard is None:
            switchboard = self.switchboard(name)
            self._switchboard_cache[key] = switchboard
        return switchboard


class _Switchboards(Mapping[str, AnySwitchboard]):
    """A live view of a site's switchboards, in step with its stack."""

    def __init__(self, site: Site) -> None:
        self._site = site

    def __getitem__(self, name: str) -> AnySwitchboard:
        if name not in self._site.queue_names:
            raise KeyError(name)
        return self._site._cached_switchboard(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._site.queue_names)

    def __len__(self) -> int:
        return len(self._site.queue_names)

    def __repr__(self) -> str:
        return f"<switchboards {sorted(self)!r}>"


def current_site() -> Site:
    """The site whose code is running: the current configuration, which must be a site.

    :raises NoConfigurationError: nothing is current, or only a plain configuration.
    """
    config = current_config()
    if not isinstance(config, Site):
        raise NoConfigurationError(
            f"the current configuration {config!r} is settings only; runners, queues and "
            "lists need a runnerkit.site.Site: make one current with use_config(site)"
        )
    return config
