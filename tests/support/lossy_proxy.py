"""A TCP proxy in front of a Redis server that can lose the answer to one script call.

:meth:`LossyProxy.lose_next_answer` arms it: the next request that sends a script
(``EVALSHA``) reaches the server, which runs it, but the connection is cut before the
answer comes back, as when a network fails at the worst moment.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class LossyProxy:
    """Forwards connections from a free port of 127.0.0.1 to *port* of 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._armed = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        #: How many answers were lost.
        self.lost = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"

    def lose_next_answer(self) -> None:
        self._armed.set()

    def close(self) -> None:
        self._listener.close()
        for each in self._sockets:
            each.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._sockets += [client, upstream]
            dropping = threading.Event()
            threading.Thread(
                target=self._pump, args=(client, upstream, dropping, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, dropping, False), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, dropping: threading.Event, up: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                if up and self._armed.is_set() and b"EVALSHA" in data:
                    self._armed.clear()
                    dropping.set()
                if not up and dropping.is_set():
                    # The server ran the script; its answer goes nowhere.
                    self.lost += 1
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # shutdown() sends the FIN now, and wakes the other pump's recv().
            for each in (source, sink):
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)
                each.close()
