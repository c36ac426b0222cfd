"""A :class:`World`: one isolated runnerkit installation for one spec or test.

A world owns a temporary var dir (queues, logs, database) and a
:class:`~runnerkit.site.Site` over it, and makes that site current while it is open.
Closing the world discards all of it, whatever layers were pushed, so nothing reaches
the next spec.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from contextvars import Token
from pathlib import Path
from types import TracebackType

from runnerkit.config import Configuration, reset_current_config, set_current_config
from runnerkit.errors import WorldError
from runnerkit.site import Site
from runnerkit.streams import RedisCalls, delete_site_keys
from runnerkit.testing.redis import (
    BACKENDS,
    default_backend,
    fresh_prefix,
    redis_unavailable,
    server_url,
)
from runnerkit.typing import StrPath

#: The work dir of each open world that made one, by the world's var dir.
_WORK_DIRS: dict[str, Path] = {}


def work_dir_of(var_dir: Path) -> Path | None:
    """The :attr:`World.work_dir` of the open world whose var dir is *var_dir*, or None
    when there is no such world, or it has made no work dir yet."""
    return _WORK_DIRS.get(str(var_dir))


class World:
    """An isolated var dir and configuration, current from :meth:`open` to :meth:`close`.

    :param var_dir: use this directory (created if needed, kept afterwards) instead
        of a fresh temporary one that :meth:`close` removes.
    :param prefix: the temporary directory's name prefix.
    :param backend: where the world's queues live: ``file`` (its var dir) or ``redis``
        (the test Redis server, :func:`runnerkit.testing.redis.server_url`, under keys
        of the world's own, deleted when it closes; set as the site's defaults, so no
        layer shows it); by default
        ``$RUNNERKIT_TEST_BACKEND``, else ``file``.
    """

    def __init__(
        self,
        var_dir: StrPath | None = None,
        *,
        prefix: str = "runnerkit-",
        backend: str | None = None,
    ) -> None:
        self._given_var_dir = None if var_dir is None else Path(var_dir)
        self._prefix = prefix
        #: ``file`` or ``redis``.
        self.backend = default_backend() if backend is None else backend
        if self.backend not in BACKENDS:
            raise WorldError(f"no queue backend {self.backend!r}; expected file or redis")
        self._config: Site | None = None
        self._token: Token[Configuration | None] | None = None
        self._temporary: Path | None = None
        #: The server and key prefix of this world's queues on Redis, while open.
        self._redis_keys: tuple[str, str] | None = None
        #: The directory of :attr:`work_dir` and :meth:`config_files`, once made.
        self._outside: Path | None = None

    def __repr__(self) -> str:
        state = "open" if self._config is not None else "closed"
        return f"<World {state} at {str(self.var_dir) if self._config else '-'}>"

    @property
    def config(self) -> Site:
        """The world's configuration.

        :raises WorldError: the world is not open.
        """
        if self._config is None:
            raise WorldError("this World is not open; call open() or use it in a with block")
        return self._config

    @property
    def var_dir(self) -> Path:
        """The world's var dir."""
        return self.config.paths.var_dir

    @property
    def work_dir(self) -> Path:
        """A directory of the world's own for commands to run in: console sessions do.

        It is made empty the first time it is asked for, apart from the var dir, and
        removed, whatever it holds, when the world closes.

        :raises WorldError: the world is not open.
        """
        return self._outside_dir() / "work"

    def config_files(self) -> list[Path]:
        """The world's configuration as INI files, for a process started from here.

        The files hold the site's defaults the world set (its Redis queues), then each
        layer pushed on :attr:`config`, bottom first, each written as
        :meth:`~runnerkit.config.Configuration.layer_text` says, in a file named after
        its layer: ``.../layers/N/NAME.ini``, N counting from 0.  Each call brings them
        up to date with the stack as it is now, leaving alone the files that would not
        change (a running master may read them again); give them to a command with
        ``-C``, or joined with ``os.pathsep`` in ``RUNNERKIT_CONFIG``.

        :raises WorldError: the world is not open.
        """
        config = self.config
        layers = self._outside_dir() / "layers"
        texts: list[tuple[str, str]] = []
        if self._redis_keys is not None:
            texts.append(("world", _redis_defaults(*self._redis_keys)))
        texts.extend((name, config.layer_text(name)) for name in config.layers)
        files = []
        for number, (name, text) in enumerate(texts):
            path = layers / str(number) / f"{_file_name(name)}.ini"
            files.append(path)
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                continue
            shutil.rmtree(path.parent, ignore_errors=True)
            path.parent.mkdir(parents=True)
            path.write_text(text, encoding="utf-8")
        for old in layers.iterdir() if layers.is_dir() else ():
            if old not in {path.parent for path in files}:
                shutil.rmtree(old, ignore_errors=True)
        return files

    def _outside_dir(self) -> Path:
        """The directory of :attr:`work_dir` and the layer files, made on first use."""
        config = self.config
        if self._outside is None:
            outside = Path(tempfile.mkdtemp(prefix=f"{self._prefix}outside-"))
            (outside / "work").mkdir()
            self._outside = outside
            _WORK_DIRS[str(config.paths.var_dir)] = outside / "work"
        return self._outside

    def open(self) -> World:
        """Create the var dir and configuration, and make the configuration current.

        :raises WorldError: the world is open already.
        """
        if self._config is not None:
            raise WorldError("this World is open already")
        if self._given_var_dir is None:
            self._temporary = Path(tempfile.mkdtemp(prefix=self._prefix))
            var_dir = self._temporary
        else:
            var_dir = self._given_var_dir
            var_dir.mkdir(parents=True, exist_ok=True)
        site = Site(var_dir)
        if self.backend == "redis":
            reason = redis_unavailable()
            if reason is not None:
                site.close()
                self._remove_temporary()
                raise WorldError(f"this world's queues need Redis: {reason}")
            url = server_url()
            prefix = fresh_prefix()
            self._redis_keys = (url, prefix)
            # The site's defaults, not a layer: the stack a spec shows is the same on
            # both backends, and a layer the spec pushes still overrides them.
            site.set_defaults(_redis_defaults(url, prefix))
        self._config = site
        self._token = set_current_config(self._config)
        return self

    def _remove_temporary(self) -> None:
        if self._outside is not None:
            for var_dir, work_dir in list(_WORK_DIRS.items()):
                if work_dir.parent == self._outside:
                    del _WORK_DIRS[var_dir]
        for temporary in (self._temporary, self._outside):
            if temporary is not None:
                shutil.rmtree(temporary, ignore_errors=True)
        self._temporary = self._outside = None

    def close(self) -> None:
        """Stop making the configuration current, close it, and remove a temporary var dir."""
        config, self._config = self._config, None
        token, self._token = self._token, None
        try:
            if token is not None:
                try:
                    reset_current_config(token)
                except ValueError:
                    # Closed from another context than the one that opened it: at least
                    # make sure this world's configuration is no longer current.
                    set_current_config(None)
            if config is not None:
                config.close()
            if self._redis_keys is not None:
                _delete_keys(*self._redis_keys)
                self._redis_keys = None
        finally:
            self._remove_temporary()

    def __enter__(self) -> World:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _delete_keys(url: str, prefix: str) -> None:
    """Delete the keys under *prefix* on the server at *url*; a server gone took them."""
    try:
        calls = RedisCalls(url, prefix)
    except Exception:
        return
    try:
        delete_site_keys(calls)
    except Exception:
        pass
    finally:
        calls.close()


def _redis_defaults(url: str, prefix: str) -> str:
    """The site defaults that put a world's queues on Redis, under keys of its own."""
    return f"[queues]\nbackend: redis\nurl: {url}\nkey_prefix: {prefix}\n"


def _file_name(layer: str) -> str:
    """*layer*'s name as a file name: characters other than letters, digits, ``.``,
    ``_`` and ``-`` become ``_``."""
    return re.sub(r"[^\w.-]", "_", layer, flags=re.ASCII).lstrip(".") or "layer"
