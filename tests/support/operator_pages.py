"""A REST runner in a thread for the operator page's tests, and a client for its page.

The runner listens on a free port (``[rest] port: 0``); :class:`PageServer` starts it,
waits until it is ready, and stops it; its methods send one request each over
:mod:`http.client`, as a browser would (``Accept: text/html``, and an ``Origin`` on a
``POST``).  Every wait is bounded.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from runnerkit.runners.rest import RESTRunner
from runnerkit.site import Site

#: The bound on every wait.
DEADLINE = 15.0
#: What a browser sends as ``Accept`` for a page.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class Reply:
    """One answer: status, headers (names as sent), body decoded as UTF-8."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = headers
        self.headers = {name.lower(): value for name, value in headers}
        self.text = body.decode("utf-8")

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.text[:2000]!r}>"


class PageServer:
    """A :class:`RESTRunner` of *site* serving in a thread."""

    def __init__(self, site: Site) -> None:
        site.push("operator-page-port", "[rest]\nport: 0\n")
        self.site = site
        self.runner = RESTRunner("rest", config=site)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="test-operator-page")
        self.stopped = False

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as error:
            self.errors.append(error)

    def start(self) -> PageServer:
        self.thread.start()
        if not self.runner.ready.wait(DEADLINE):
            pytest.fail(f"the REST runner was not ready in {DEADLINE} s: {self.errors}")
        return self

    def stop(self) -> None:
        """Stop the runner and wait for it (once; again does nothing)."""
        if self.stopped:
            return
        self.stopped = True
        self.runner.stop()
        self.thread.join(DEADLINE)
        if self.thread.is_alive():
            pytest.fail(f"the REST runner's run() did not return {DEADLINE} s after stop()")
        self.site.pop("operator-page-port")

    @property
    def port(self) -> int:
        return self.runner.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def token_file(self) -> Path:
        return self.runner.token_file

    def token(self) -> str:
        """The token, read from its file as an operator would (``cat``)."""
        return self.token_file.read_text(encoding="ascii").strip()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return Reply(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    def page(self, query: str = "") -> Reply:
        """``GET /`` as a browser asks for it."""
        return self.request("GET", f"/{query}", headers={"Accept": BROWSER_ACCEPT})

    def confirm(self, action: str, queue: str, entry_id: str) -> Reply:
        """The confirmation page of *action* on *entry_id* of *queue*."""
        query = urlencode({"action": action, "queue": queue, "id": entry_id})
        return self.request("GET", f"/entries/confirm?{query}", headers={"Accept": BROWSER_ACCEPT})

    def post(
        self,
        action: str,
        fields: Mapping[str, str],
        *,
        origin: str | None = "",
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """``POST /entries/ACTION`` with the form *fields*, from the page's own origin
        (*origin* ``""``), another one, or none (None)."""
        sent = {"Content-Type": "application/x-www-form-urlencoded"}
        if origin is not None:
            sent["Origin"] = origin or f"http://127.0.0.1:{self.port}"
        sent |= dict(headers or {})
        body = urlencode(fields, quote_via=quote).encode("ascii")
        return self.request("POST", f"/entries/{action}", body, sent)
