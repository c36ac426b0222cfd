"""A :class:`World`: one isolated runnerkit installation for one spec or test.

A world owns a temporary var dir (queues, logs, database) and a
:class:`~runnerkit.site.Site` over it, and makes that site current while it is open.
Closing the world discards all of it, whatever layers were pushed, so nothing reaches
the next spec.
"""

from __future__ import annotations

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
            site.set_defaults(f"[queues]\nbackend: redis\nurl: {url}\nkey_prefix: {prefix}\n")
        self._config = site
        self._token = set_current_config(self._config)
        return self

    def _remove_temporary(self) -> None:
        temporary, self._temporary = self._temporary, None
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)

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
