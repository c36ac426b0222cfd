"""The ``rest`` runner: a JSON status API over HTTP, and an operator page beside it.

It listens on ``[rest] host`` and ``port`` (127.0.0.1 by default; port 0 picks a free
port, which :attr:`RESTRunner.port` then tells).  The JSON API is read-only: it answers
``GET`` (and ``HEAD``) only:

- ``/queues``: ``{"queues": {NAME: DEPTH, ...}}``, every queue, ``shunt`` and ``bad``
  included; ``bad`` counts its preserved files too;
- ``/runners``: the master's status file (``{"master_pid": ..., "runners": [...]}``), or
  ``{"master_pid": null, "runners": []}`` when there is none;
- ``/lists``: ``{"lists": [{"fqdn_listname", "list_id", "display_name",
  "preferred_language", "members"}, ...]}``, ``members`` being the number of members;
- ``/metrics``: the Prometheus metrics of every runner process of the site, in
  Prometheus's text exposition format (:mod:`runnerkit.metrics` lists them);
- ``/``: the endpoints above, ``{"endpoints": [...]}``, to a client that does not ask
  for HTML (no ``Accept``, ``*/*``, ``application/json``).

A browser (``Accept: text/html``) gets the operator page at ``/`` instead
(:mod:`runnerkit.runners.operator_page`): the queues, the runners, and the entries of
``bad`` and ``shunt``, with Requeue and Discard buttons.  Those lead to a confirmation
page, ``GET /entries/confirm``, whose form posts to ``POST /entries/requeue`` or
``POST /entries/discard``; the only requests that change anything.  They need the token
the runner writes to ``VAR_DIR/rest.token`` (mode 0600) each time it starts: ``cat`` it,
and paste it in the form, at each action (no cookie keeps it: a cookie would go to
every other service on the same host, whatever its port).  They act on the entries of
``bad`` and ``shunt`` only.

Any other path is a 404, any other method a 405; both with a JSON ``error``, or an
HTML page of the error for a browser (the ``Accept`` negotiation of ``/``).  Every
request whose ``Host`` is not the runner's address, a local name or one of ``[rest]
allowed_hosts`` is a 403 (a defence against DNS rebinding), JSON or HTML alike; a
request for the page, a confirmation page or an action without a ``Host`` is a 400
(the JSON endpoints answer HTTP/1.0 clients without one).  The errors the standard
library's server writes itself (501 for an unknown method, 414, 431, 400) are answered
the same way (:meth:`_Handler.send_error`).  Every answer carries ``X-Content-Type-Options:
nosniff`` and the :data:`~runnerkit.runners.operator_page.SECURITY_HEADERS`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from runnerkit.database import Database
from runnerkit.errors import QueueUnavailableError, RunnerError
from runnerkit.master import read_status
from runnerkit.metrics import QueueCollector, RestartCollector, exposition
from runnerkit.runner import Runner, Until, refuse_until
from runnerkit.runners.operator_page import (
    ACTIONS,
    CONFIRM,
    MAX_BODY,
    NOSNIFF,
    SECURITY_HEADERS,
    Answer,
    OperatorPage,
    PageError,
    cross_site,
    error_page,
    parse_form,
    remove_token,
    token_path,
    wants_html,
    write_token,
)
from runnerkit.switchboard import queue_depths

if TYPE_CHECKING:
    from collections.abc import Callable

    from runnerkit.config import Configuration

log = logging.getLogger(__name__)

#: The methods the API answers; every other one gets a 405.
ALLOWED = "GET, HEAD"
#: The path of the Prometheus metrics, which are text, not JSON.
METRICS = "/metrics"


class RESTRunner(Runner):
    """Serve the status API until :meth:`stop`.

    :param name: the runner's section name, normally ``rest``.
    :param slice: unused: the runner reads no queue.
    :param config: the configuration to report on; by default the current one.
    """

    is_queue_runner = False
    #: It serves status and metrics through a drain: it takes no work in.
    intake = False

    def __init__(
        self, name: str, slice: int | None = None, *, config: Configuration | None = None
    ) -> None:
        super().__init__(name, slice, config=config)
        #: The address the server listens on.
        self.host: str = self.config.rest.host
        #: The Host header names answered (lower case, without a port): the address
        #: it listens on, the local names, and ``[rest] allowed_hosts``.
        self.allowed_hosts = frozenset(
            {self.host.lower(), *LOCAL_HOSTS, *self.config.rest.allowed_hosts}
        )
        #: The port: the configured one, then the bound one once :attr:`ready` is set.
        self.port: int = self.config.rest.port
        #: Set once the server listens, so that :attr:`port` is the bound port.
        self.ready = threading.Event()
        # Handler threads share the configuration's switchboards; one request at a time.
        self._lock = threading.Lock()
        #: The file the actions' token is written to when the runner starts.
        self.token_file = token_path(self.config)
        #: The operator page, made when the runner starts (with its token).
        self.page: OperatorPage | None = None
        self._routes: dict[str, Callable[[], Any]] = {
            "/": self.index,
            "/queues": self.queues,
            "/runners": self.runners,
            "/lists": self.lists,
        }

    def run(self, until: Until | None = None) -> None:
        """Serve until :meth:`stop` is called, then close the server.

        :raises RunnerError: the server cannot listen on the configured address, or
            *until* was given (a server takes no condition).
        """
        refuse_until(self, until)
        token: str | None = None
        try:
            token = write_token(self.token_file)
            refresh = math.ceil(self.config.rest.page_refresh.total_seconds())
            self.page = OperatorPage(self.config, token, self._lock, refresh)
            server = self._make_server()
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="rest-server"
            )
            thread.start()
            try:
                self.port = server.server_address[1]
                log.info("%s: serving on http://%s:%d/", self, self.host, self.port)
                log.info(
                    "%s: the operator page's actions need the token in %s",
                    self,
                    self.token_file,
                )
                self.ready.set()
                self._stop.wait()
            finally:
                server.shutdown()
                thread.join()
                server.server_close()
        finally:
            if token is not None:
                remove_token(self.token_file, token)
            self._clean_up()

    def _make_server(self) -> ThreadingHTTPServer:
        runner = self

        class Handler(_Handler):
            rest = runner

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            request_queue_size = LISTEN_BACKLOG
            slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

            def process_request(self, request: Any, client_address: Any) -> None:
                # One thread a connection, at most MAX_CONNECTIONS of them: a client
                # that trickles its headers holds one, never the whole machine.
                if not self.slots.acquire(blocking=False):
                    with contextlib.suppress(OSError):
                        request.sendall(BUSY)
                    self.shutdown_request(request)
                    return
                try:
                    super().process_request(request, client_address)
                except BaseException:
                    self.slots.release()
                    raise

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    self.slots.release()

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that went away mid-answer: one line, not a traceback on
                # standard error for every impatient client.
                error = sys.exc_info()[1]
                log.debug("%s: request from %s failed: %s", runner, client_address, error)

        try:
            return Server((self.host, self.port), Handler)
        except OSError as error:
            raise RunnerError(
                f"{self}: cannot listen on {self.host}:{self.port} ([rest] host and port): "
                f"{error.strerror or error}"
            ) from error

    # The resources.

    def index(self) -> dict[str, Any]:
        """``/``: the endpoints."""
        return {"endpoints": sorted([METRICS, *(path for path in self._routes if path != "/")])}

    def metrics_exposition(self) -> tuple[bytes, str]:
        """``/metrics``: the metrics, and their content type (:mod:`runnerkit.metrics`)."""
        with self._lock:
            return exposition(
                self.config.paths.metrics_dir,
                (QueueCollector(self.config.switchboards), RestartCollector(self._restarts)),
            )

    def _restarts(self) -> dict[str, int]:
        """Each runner's restarts, summed over its slices, as the master's status says."""
        status = read_status(self.config)
        restarts: dict[str, int] = {}
        for runner in status.runners if status is not None else ():
            restarts[runner.name] = restarts.get(runner.name, 0) + runner.restarts
        return restarts

    def queues(self) -> dict[str, Any]:
        """``/queues``: every queue's number of waiting files."""
        with self._lock:
            return {"queues": queue_depths(self.config.switchboards)}

    def runners(self) -> dict[str, Any]:
        """``/runners``: the master's status file, if a master wrote one.

        :raises StatusFileError: the file is not a master's status (a 500).
        """
        status = read_status(self.config)
        if status is None:
            return {"master_pid": None, "runners": []}
        return status.to_dict()

    def lists(self) -> dict[str, Any]:
        """``/lists``: every list with its number of members."""
        # A connection of its own: SQLite connections belong to the thread that made them.
        database = Database(self.config.database_path)
        try:
            manager = self.config.lists_in(database)
            return {
                "lists": [
                    {
                        "fqdn_listname": mlist.fqdn_listname,
                        "list_id": mlist.list_id,
                        "display_name": mlist.display_name,
                        "preferred_language": mlist.preferred_language,
                        "members": len(mlist.members),
                    }
                    for mlist in manager
                ]
            }
        finally:
            database.close()


#: The Host names a local client uses, always answered.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Seconds an idle connection is kept.
IDLE_TIMEOUT = 10.0
#: Connections the kernel keeps waiting to be accepted (the standard library's 5 is
#: for toys).
LISTEN_BACKLOG = 128
#: Connections served at once, a thread each; one more gets :data:`BUSY`.
MAX_CONNECTIONS = 64
#: The answer beyond :data:`MAX_CONNECTIONS` (RFC 9110, 15.6.4).
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
)


def _host_name(host: str) -> str | None:
    """The name of a ``Host`` value, ``NAME[:PORT]`` or ``[IPV6][:PORT]`` (RFC 9110,
    7.2), lower-cased; None when it is not one."""
    match = _HOST.fullmatch(host.strip().lower())
    if match is None:
        return None
    return match.group(1) or match.group(2)


#: A ``Host`` value: a bracketed IPv6 address or a name, and an optional port.
_HOST = re.compile(r"(?:\[([0-9a-f:.]+)\]|([^:\[\]/@\s]+))(?::\d{1,5})?")


class _Handler(BaseHTTPRequestHandler):
    """Answers one request from the :class:`RESTRunner` :attr:`rest`."""

    rest: RESTRunner
    server_version = "runnerkit-rest"
    #: Seconds a connection may stay silent before it is closed (an idle client
    #: would otherwise hold a thread for ever).
    timeout = IDLE_TIMEOUT

    def version_string(self) -> str:
        """The ``Server`` header: the name alone, not Python's version."""
        return self.server_version

    def _host_allowed(self) -> bool:
        """Whether the request's ``Host`` is one this API answers to (no Host, as in
        HTTP/1.0, is a local client's)."""
        hosts = self.headers.get_all("Host") or []
        # An absolute request target names its host too (RFC 9112, 3.2.2).
        target = urlsplit(self.path).netloc
        if target:
            hosts.append(target)
        if not hosts:
            return True
        names = {_host_name(host) for host in hosts}
        return len(names) == 1 and names <= self.rest.allowed_hosts

    def handle_one_request(self) -> None:
        # A request's errors must not read the headers of the connection's previous
        # request (a 414 or 431 comes before this one's are read).
        vars(self).pop("headers", None)
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self._host_allowed():
            return True
        host = self.headers.get("Host", "")
        self._send(
            HTTPStatus.FORBIDDEN,
            {
                "error": f"Host {host!r} is not one this API answers to (a defence against "
                "DNS rebinding); add its name to [rest] allowed_hosts"
            },
            body=self.command != "HEAD",
        )
        self.close_connection = True
        return False

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _not_allowed(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path in ACTIONS:
            self._send(
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"error": f"method {self.command} not allowed: {path} takes POST only"},
                extra_headers={"Allow": "POST"},
            )
            return
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"error": f"method {self.command} not allowed: the API is read-only; use GET"},
            extra_headers={"Allow": ALLOWED},
        )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def _no_host(self, path: str) -> PageError | None:
        """The 400 of a request for the page or an action without a ``Host`` (HTTP/1.1
        requires one, RFC 9112, 3.2; without it the origin of a form cannot be
        checked); None when it has one.  The JSON API still answers HTTP/1.0 clients
        that send none."""
        if self.headers.get("Host"):
            return None
        return PageError(
            HTTPStatus.BAD_REQUEST,
            f"{self.command} {path} needs a Host header (HTTP/1.1 requires one); "
            "the operator page and its actions are not served without it",
        )

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path not in ACTIONS or self.rest.page is None:
            self._not_allowed()
            return
        no_host = self._no_host(path)
        if no_host is not None:
            self.close_connection = True
            status = no_host.status
            self._send_html(Answer(status, error_page(status, str(no_host))))
            return
        try:
            answer = self.rest.page.act(path, self._form(), self.address_string())
        except PageError as error:
            if error.status in (HTTPStatus.FORBIDDEN, HTTPStatus.BAD_REQUEST):
                log.warning("%s: POST %s refused: %s", self.rest, path, error)
            self._send_html(Answer(error.status, error_page(error.status, str(error), error.back)))
            return
        except Exception as error:
            log.exception("%s: POST %s failed", self.rest, path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            self._send_html(Answer(status, error_page(status, f"POST {path} failed: {error}")))
            return
        self._send_html(answer)

    def _form(self) -> dict[str, str]:
        """The form of a ``POST``, once its origin, length and type are checked.

        :raises PageError: another site's request (403), no length (411), a bad length
            (400), too long a body (413), not a form (415).
        """
        headers = self.headers
        problem = cross_site(headers.get("Origin"), headers.get("Referer"), headers.get("Host"))
        if problem is not None:
            self.close_connection = True
            raise PageError(
                HTTPStatus.FORBIDDEN,
                f"refused: the request comes from another page ({problem}); the actions are "
                "taken from the operator page itself",
            )
        length_text = self.headers.get("Content-Length")
        if length_text is None or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise PageError(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
        if not (length_text.strip().isascii() and length_text.strip().isdigit()):
            self.close_connection = True
            raise PageError(
                HTTPStatus.BAD_REQUEST, f"Content-Length {length_text!r} is not a length"
            )
        length = int(length_text)
        if length > MAX_BODY:
            self.close_connection = True  # the body is not read
            raise PageError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body has {length} bytes; an action's form has at most {MAX_BODY}",
            )
        body = self.rfile.read(length)
        kind = self.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise PageError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"the body must be a form (application/x-www-form-urlencoded), not {kind!r}",
            )
        return parse_form(body)

    def _page(self, path: str, *, body: bool) -> bool:
        """Answer a request for the operator page or a confirmation page; whether it was one."""
        page = self.rest.page
        wanted = path == CONFIRM or (path == "/" and wants_html(self.headers.get("Accept")))
        if page is None or not wanted:
            return False
        query = urlsplit(self.path).query
        try:
            no_host = self._no_host(path)
            if no_host is not None:
                raise no_host
            answer = page.confirmation(query) if path == CONFIRM else page.page(query)
        except PageError as error:
            answer = Answer(error.status, error_page(error.status, str(error)))
        except Exception as error:
            log.exception("%s: GET %s failed", self.rest, path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            answer = Answer(status, error_page(status, f"GET {path} failed: {error}"))
        self._send_html(answer, body=body)
        return True

    def end_headers(self) -> None:
        # Every answer, HTML, JSON, metrics or an error: nosniff, and the headers that
        # let nothing run, frame or cache it (harmless on JSON, needed on any HTML).
        self.send_header(*NOSNIFF)
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        super().end_headers()

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """The standard library's errors (501 for an unknown method, 414 for too long a
        URL, 431 for too long or too many headers, 400 for a malformed request line),
        answered as the runner's own: an HTML page for a browser, JSON for others."""
        status = HTTPStatus(code)
        text = message or status.phrase
        if explain and explain != text:
            text = f"{text}: {explain}"
        self.log_error("code %d, message %s", code, text)
        self.close_connection = True
        no_body = self.command == "HEAD" or code < 200 or code in (204, 205, 304)
        self._send(
            status, {"error": text}, body=not no_body, extra_headers={"Connection": "close"}
        )

    def _send_html(
        self, answer: Answer, *, body: bool = True, extra_headers: dict[str, str] | None = None
    ) -> None:
        payload = answer.document.encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Vary", "Accept")
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()  # with SECURITY_HEADERS
        if body:
            self.wfile.write(payload)

    def _answer(self, *, body: bool) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if self._page(path, body=body):
            return
        if path in ACTIONS:
            self._not_allowed()
            return
        if path == METRICS:
            self._send_metrics(body=body)
            return
        resource = self.rest._routes.get(path)
        if resource is None:
            known = ", ".join(sorted([*self.rest._routes, METRICS]))
            self._send(
                HTTPStatus.NOT_FOUND,
                {"error": f"no resource {path!r}; resources are: {known}"},
                body=body,
            )
            return
        try:
            document = resource()
        except QueueUnavailableError as error:
            self._send_unavailable(path, error, body=body)
            return
        except Exception as error:
            log.exception("%s: GET %s failed", self.rest, path)
            self._send(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"GET {path} failed: {error}"},
                body=body,
            )
            return
        self._send(HTTPStatus.OK, document, body=body)

    def _send_unavailable(self, path: str, error: QueueUnavailableError, *, body: bool) -> None:
        """A 503: the queues' server (Redis) cannot be reached now; try again soon."""
        log.warning("%s: GET %s: %s", self.rest, path, error)
        self._send(
            HTTPStatus.SERVICE_UNAVAILABLE,
            {"error": f"GET {path} failed: {error}"},
            body=body,
            extra_headers={"Retry-After": "1"},
        )

    def _send_metrics(self, *, body: bool) -> None:
        try:
            payload, content_type = self.rest.metrics_exposition()
        except QueueUnavailableError as error:
            self._send_unavailable(METRICS, error, body=body)
            return
        except Exception as error:
            log.exception("%s: GET %s failed", self.rest, METRICS)
            self._send(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"GET {METRICS} failed: {error}"},
                body=body,
            )
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _send(
        self,
        status: HTTPStatus,
        document: Any,
        *,
        body: bool = True,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        if status >= HTTPStatus.BAD_REQUEST and self._wants_html():
            # A browser gets its error as a page, as it gets the page at / (the same
            # Accept negotiation); any other client the JSON below.
            message = str(document.get("error", status.phrase))
            self._send_html(
                Answer(status, error_page(status, message)), body=body, extra_headers=extra_headers
            )
            return
        payload = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Vary", "Accept")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _wants_html(self) -> bool:
        """Whether the request's ``Accept`` asks for HTML (:func:`wants_html`)."""
        headers = getattr(self, "headers", None)
        return headers is not None and wants_html(headers.get("Accept"))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: %s %s", self.rest, self.address_string(), format % args)
