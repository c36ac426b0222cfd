"""The operator page: the REST runner's HTML page at ``/``, and its two actions.

The page shows, as of the moment it is asked for,

- every queue: its depth (``bad`` counting its preserved entries) and the age of its
  oldest entry;
- every runner process the master keeps (:func:`runnerkit.master.read_status`): name,
  slice, pid, state, restarts, and the last error;
- the entries of ``bad`` and ``shunt`` (:data:`ENTRY_QUEUES`), oldest first,
  :data:`PAGE_SIZE` a page (``?bad_page=N``, ``?shunt_page=N``; a page past the end
  shows the last one, and the links carry that one), each with its id, the
  queue it came from, the reason, its age and time, subject and Message-ID, and a
  Requeue and a Discard button.

It reloads itself every ``[rest] page_refresh`` (5 s by default) with an HTML ``<meta
http-equiv="refresh">``, no script; ``?refresh=N`` sets another period, ``?refresh=0``
stops it.  Only the listed page's entries are read; the other entries' names only.

An action goes in two steps, neither needing JavaScript.  The button opens a
confirmation page (``GET /entries/confirm?action=requeue&queue=bad&id=ID``), which
names the entry and where it would go; its Confirm button ``POST``\\s
``/entries/requeue`` or ``/entries/discard`` with the fields ``queue``, ``id``,
``confirm=yes`` and ``token`` (and the page's state, ``refresh``, ``bad_page`` and
``shunt_page``, so that Cancel and Back return to the page the operator was on).  A
requeue the entry's metadata makes certain to be refused (no queue it came from, a
queue that is none, or the queue it is waiting in) is said on the confirmation page,
which then has no Confirm button.  Only the entries of :data:`ENTRY_QUEUES` are acted
on: a waiting message of another queue is the CLI's (``runnerkit queue``).

The token is a secret the REST runner writes at start to ``VAR_DIR/rest.token``
(:data:`TOKEN_FILE`), mode 0600: whoever can read the var dir can act, anyone else who
reaches the port can only look.  The page never contains it, and it is given with
every action: no cookie keeps it.  A cookie cannot be scoped to a port, so every other
HTTP service on the same host name (another site's REST runner, a development server)
would receive it and could replay it; without HTTPS there is no safe variant.  The
runner keeps the token it wrote at start; the file is read again at each action
and page, and once it no longer holds that token (changed or removed) every action is
refused (503) and the pages say so, until the runner is restarted.  White space around
a pasted token is ignored (a token has none).  The
token field is a password field beside a read-only field naming the site
(``autocomplete="username"``), so that a browser's password manager may offer to
remember the token for that site, if the operator wants it to.  A ``POST`` is also
refused when its
``Origin`` (or ``Referer``) is not the page's own (cross-site request forgery), when
its body is larger than :data:`MAX_BODY` (413), and, like every request, when its
``Host`` is not one the runner answers to.

Requeueing and discarding are :func:`runnerkit.entries.requeue_entry` and
:func:`runnerkit.entries.discard_entry`, as ``runnerkit queue requeue`` and ``discard``
do them: an entry that cannot be read is not requeued, one being processed is not
touched, and a requeue that is refused leaves the entry where it was.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

from runnerkit.entries import (
    PRESERVED,
    TAKEN,
    Entry,
    discard_entry,
    entry_page,
    find_entry,
    format_age,
    is_filebase,
    iso_time,
    oldest_time,
    requeue_entry,
    requeue_refusal,
)
from runnerkit.errors import (
    EntryRefusedError,
    QueueError,
    QueueUnavailableError,
    RunnerError,
    RunnerkitError,
)
from runnerkit.logtext import one_line
from runnerkit.master import read_status
from runnerkit.switchboard import read_depths

if TYPE_CHECKING:
    from runnerkit.master.status import MasterStatus
    from runnerkit.site import Site

log = logging.getLogger(__name__)

#: The token file's name in the var dir.
TOKEN_FILE = "rest.token"
#: The queues whose entries the page lists, with actions.
ENTRY_QUEUES = ("bad", "shunt")
#: Entries a page.
PAGE_SIZE = 50
#: The largest request body an action takes, in bytes (a form of three short fields).
MAX_BODY = 64 * 1024
#: The reload period offered when the configuration sets none, in seconds.
DEFAULT_REFRESH = 5
#: The longest a ``refresh`` may be asked for, in seconds (a day).
MAX_REFRESH = 86400
#: The actions, by the path they are posted to.
ACTIONS = {"/entries/requeue": "requeue", "/entries/discard": "discard"}
#: The path of the confirmation page.
CONFIRM = "/entries/confirm"

#: The headers of every answer of the REST runner, HTML or not, its server's own errors
#: included: nothing runs, nothing loads, nothing frames it, nothing keeps it (with
#: :data:`NOSNIFF`).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    # Not no-referrer: under it Chromium posts the page's forms with "Origin: null",
    # which cross_site() must refuse.  same-origin tells nothing to any other site.
    "Referrer-Policy": "same-origin",
}


#: The header every answer of the REST runner carries, JSON and metrics included.
NOSNIFF = ("X-Content-Type-Options", "nosniff")


class PageError(RunnerkitError):
    """A request the page refuses: :attr:`status` and a message for the operator."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        #: Where the error page's "Back to the queues" leads: the page the operator
        #: was on, when the request said (:meth:`OperatorPage.act`).
        self.back = "/"


# The token.


def token_path(site: Site) -> Path:
    """Where the REST runner of *site*'s var dir keeps its token."""
    return site.paths.var_dir / TOKEN_FILE


def write_token(path: Path) -> str:
    """Make a new token and write it to *path*, readable by the owner alone (0600).

    The file is written under another name and renamed, so that a reader sees the old
    token or the new one, and it is never readable by others, not even for an instant.

    :returns: the token.
    :raises RunnerError: the file cannot be written.
    """
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, f"{token}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError, UnicodeError):
            temporary.unlink()
        raise RunnerError(
            f"cannot write the operator page's token to {str(path)!r}: {error.strerror or error}"
        ) from error
    return token


def remove_token(path: Path, token: str) -> None:
    """Remove the token file at *path* if it still holds *token* (a REST runner started
    since on the same var dir wrote its own: that one stays)."""
    with contextlib.suppress(OSError, UnicodeError):
        if path.read_text(encoding="ascii").strip() == token:
            path.unlink()


# Requests.


@dataclass(frozen=True)
class PageQuery:
    """What a ``GET /`` asks for: the refresh period and a page of each entry queue."""

    #: Seconds between reloads; 0 for none.
    refresh: int
    #: The page (from 1) of each queue of :data:`ENTRY_QUEUES` asked for.
    pages: Mapping[str, int] = field(default_factory=dict)

    def link(self, **changes: int) -> str:
        """The page's URL with *changes* (``refresh=0``, ``bad_page=3``) made."""
        values = {"refresh": self.refresh} | {f"{q}_page": p for q, p in self.pages.items()}
        values |= changes
        query = {
            key: value for key, value in values.items() if not key.endswith("_page") or value != 1
        }
        return "/?" + urlencode(sorted(query.items()))

    def fields(self) -> str:
        """The page's state as the hidden fields of a form, which a confirmation page
        and an action's answer read back (:func:`parse_page_query`) for their links."""
        values = {"refresh": self.refresh} | {
            f"{q}_page": p for q, p in self.pages.items() if p != 1
        }
        return "".join(
            f'<input type="hidden" name="{escape(key)}" value="{value}">'
            for key, value in sorted(values.items())
        )


def parse_page_query(query: str, default_refresh: int) -> PageQuery:
    """Read the query of a ``GET /``: ``refresh``, ``bad_page``, ``shunt_page``.

    :raises PageError: a value is not a whole number in range (400).
    """
    return page_state(query_fields(query), default_refresh)


def page_state(fields: Mapping[str, str], default_refresh: int) -> PageQuery:
    """The page's state in *fields* (a query's or a form's): ``refresh``, ``bad_page``,
    ``shunt_page``, each checked as :func:`parse_page_query` checks them.

    :raises PageError: a value is not a whole number in range (400).
    """
    refresh = _whole(fields, "refresh", default_refresh, 0, MAX_REFRESH)
    pages = {name: _whole(fields, f"{name}_page", 1, 1, 10**9) for name in ENTRY_QUEUES}
    return PageQuery(refresh, pages)


def query_fields(query: str) -> dict[str, str]:
    """The fields of a URL's *query*, the last of each name.

    :raises PageError: more than 20 of them (400).
    """
    try:
        return dict(parse_qsl(query, max_num_fields=20))
    except ValueError as error:
        raise PageError(HTTPStatus.BAD_REQUEST, f"the query cannot be read: {error}") from None


def _whole(fields: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    text = fields.get(key)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise PageError(
            HTTPStatus.BAD_REQUEST,
            f"{key} must be a whole number from {low} to {high}, not {text!r}",
        )
    return int(text)


def parse_form(body: bytes) -> dict[str, str]:
    """The fields of a form posted as ``application/x-www-form-urlencoded``.

    :raises PageError: the body is not such a form, or gives a field twice (400).
    """
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=20,
            strict_parsing=bool(body),
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise PageError(HTTPStatus.BAD_REQUEST, f"the form cannot be read: {error}") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise PageError(HTTPStatus.BAD_REQUEST, f"the form gives {key!r} more than once")
        form[key] = value
    return form


def cross_site(origin: str | None, referer: str | None, host: str | None) -> str | None:
    """Why a ``POST`` with these ``Origin``, ``Referer`` and ``Host`` headers comes from
    another site, or None when it does not.

    Its ``Origin``, else its ``Referer``, when it sends one, must name the scheme
    ``http`` and the *host* it was sent to.  A browser sends ``Origin`` with every form
    it posts; ``null`` (a sandboxed frame, a ``data:`` page) is refused.
    """
    for name, value in (("Origin", origin), ("Referer", referer)):
        if value is None:
            continue
        parts = urlsplit(value.strip())
        if parts.scheme != "http" or not parts.netloc or host is None:
            return f"{name} {value!r} is not this page's"
        if parts.netloc.lower() != host.strip().lower():
            return f"{name} {value!r} is not this page's (http://{host})"
        return None
    return None


def wants_html(accept: str | None) -> bool:
    """Whether an ``Accept`` header prefers HTML to JSON (a browser's does; no header,
    ``*/*`` and ``application/json`` do not)."""
    html_q = json_q = 0.0
    for item in (accept or "").split(","):
        media, *parameters = (piece.strip() for piece in item.split(";"))
        q = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == "text/html":
            html_q = max(html_q, q)
        elif media == "application/json":
            json_q = max(json_q, q)
    return html_q > 0 and html_q > json_q


# The page.


@dataclass
class _Listing:
    """A page of a queue's entries, as read: the page's number (the last one when the
    one asked for is past the end), the queue's number of entries, and the page's."""

    number: int
    total: int = 0
    entries: list[Entry] = field(default_factory=list)
    #: Why the queue could not be listed.
    problem: str | None = None
    #: The site has no such queue.
    missing: bool = False


@dataclass
class Answer:
    """An HTML answer: its status and its document (never a cookie: see the module)."""

    status: HTTPStatus
    document: str


class OperatorPage:
    """The page and the actions of one REST runner over *site*.

    :param site: the site whose queues and runners are shown, and acted on.
    :param token: the secret the actions need (:func:`write_token`).
    :param lock: held while the site's switchboards are used (handler threads share them).
    :param refresh: the default seconds between reloads (``[rest] page_refresh``).
    """

    def __init__(self, site: Site, token: str, lock: threading.Lock, refresh: int) -> None:
        self.site = site
        self.token = token
        self.lock = lock
        self.refresh = refresh

    # Reading.

    def page(self, query: str) -> Answer:
        """``GET /``: the page, as :func:`parse_page_query` reads *query*.

        :raises PageError: the query is wrong (400).
        """
        asked = parse_page_query(query, self.refresh)
        now = time.time()
        with self.lock:
            queues = self._queue_rows(now)
            listed = {name: self._listing(name, asked) for name in ENTRY_QUEUES}
        # A page past the end (entries went since the link was made) shows the last
        # one, and every link carries the page shown.
        shown = PageQuery(
            asked.refresh,
            {name: listing.number for name, listing in listed.items()},
        )
        sections = [
            self._section(name, listed[name], asked.pages.get(name, 1), shown, now)
            for name in ENTRY_QUEUES
        ]
        status, status_problem = self._status()
        body = [
            _queues_table(queues),
            _runners_table(status, status_problem),
            *sections,
        ]
        every = self.refresh or DEFAULT_REFRESH
        refresh_note = (
            f'Reloads every {shown.refresh} s (<a href="{escape(shown.link(refresh=0))}" '
            'id="stop-refresh">stop</a>).'
            if shown.refresh
            else f'Does not reload (<a href="{escape(shown.link(refresh=every))}">'
            f"reload every {every} s</a>)."
        )
        problem = self.token_file_problem()
        token_note = (
            f'</p><p class="problem" id="token-problem">Actions are refused: {escape(problem)}.'
            if problem is not None
            else f"Actions need the token in <code>{escape(str(token_path(self.site)))}</code>."
        )
        header = f'<p class="meta">As of {escape(iso_time(now))}. {refresh_note} {token_note}</p>'

        return Answer(
            HTTPStatus.OK,
            _document("queues and runners", [header, *body], refresh=shown.refresh),
        )

    def _queue_rows(self, now: float) -> list[tuple[str, int | None, str, str]]:
        """(name, depth, oldest entry's age, problem) of each queue."""
        depths, problems = read_depths(self.site.switchboards)
        rows = []
        for name, depth in depths.items():
            age, problem = "", ""
            if depth is None:
                problem = "depth unknown"
            elif depth:
                try:
                    oldest = oldest_time(self.site.switchboards[name])
                except QueueError as error:
                    problem = one_line(str(error), 200)
                else:
                    age = "" if oldest is None else format_age(max(0.0, now - oldest))
            rows.append((name, depth, age, problem))
        if problems:
            rows.append(("", None, "", "; ".join(problems)))
        return rows

    def _status(self) -> tuple[MasterStatus | None, str]:
        try:
            return read_status(self.site), ""
        except RunnerkitError as error:
            return None, str(error)

    def _listing(self, name: str, asked: PageQuery) -> _Listing:
        """The entries of queue *name* on the page *asked* for, or on its last page when
        that one is past the end."""
        switchboard = self.site.switchboards.get(name)
        number = asked.pages.get(name, 1)
        if switchboard is None:
            return _Listing(number, missing=True)
        try:
            total, entries = entry_page(switchboard, (number - 1) * PAGE_SIZE, PAGE_SIZE)
            pages = max(1, math.ceil(total / PAGE_SIZE))
            if number > pages:
                number = pages
                total, entries = entry_page(switchboard, (number - 1) * PAGE_SIZE, PAGE_SIZE)
                pages = max(1, math.ceil(total / PAGE_SIZE))
                number = min(number, pages)
        except QueueError as error:
            return _Listing(1, problem=str(error))
        return _Listing(number, total, entries)

    def _section(
        self, name: str, listing: _Listing, wanted: int, shown: PageQuery, now: float
    ) -> str:
        """The entries of queue *name*: *listing*, asked for as page *wanted*."""
        title = f'<h2 id="{escape(name)}">{escape(name)}</h2>'
        if listing.missing:
            return f"{title}<p>No queue {escape(name)} in this site.</p>"
        if listing.problem is not None:
            return f'{title}<p class="problem">Cannot list it: {escape(listing.problem)}</p>'
        number, total, entries = listing.number, listing.total, listing.entries
        pages = max(1, math.ceil(total / PAGE_SIZE))
        clamped = (
            f'<p class="meta" id="{escape(name)}-past-end">page {wanted} is past the end; '
            f"showing page {number} of {pages}.</p>"
            if wanted != number
            else ""
        )
        if total == 0:
            return f"{title}{clamped}<p>No entries.</p>"
        first = (number - 1) * PAGE_SIZE + 1
        summary = (
            f"<p>{total} entr{'y' if total == 1 else 'ies'}, oldest first; "
            f"{first} to {first + len(entries) - 1} shown (page {number} of {pages}).</p>"
        )
        rows = "".join(_entry_row(item, now, shown) for item in entries)
        table = (
            f'<table class="entries" data-queue="{escape(name)}"><thead><tr><th>ID</th>'
            "<th>From</th><th>Reason</th><th>Age</th><th>Subject</th><th>Message-ID</th>"
            f"<th>Actions</th></tr></thead><tbody>{rows}</tbody></table>"
        )
        return title + clamped + summary + table + _pager(name, number, pages, shown)

    # Acting.

    def confirmation(self, query: str) -> Answer:
        """``GET /entries/confirm?action=A&queue=Q&id=ID``: what the action would do, and
        the form that does it; or, for a requeue that :func:`requeue_refusal` says would
        be refused, why, with no form.  The page's state in the query (``refresh``,
        ``bad_page``, ``shunt_page``) goes on to the form and the Cancel link.

        :raises PageError: the query is wrong (400), names a queue whose entries the
            page does not act on (403), or names no entry (404).
        """
        fields = query_fields(query)
        action = fields.get("action", "")
        if action not in ACTIONS.values():
            raise PageError(
                HTTPStatus.BAD_REQUEST, f"action must be requeue or discard, not {action!r}"
            )
        asked = page_state(fields, self.refresh)
        name, entry_id = self._names(fields)
        with self.lock:
            item = self._entry(name, entry_id)
        back = escape(asked.link()) + f"#{escape(name)}"
        details = _details(item, time.time())
        if action == "requeue":
            refusal = requeue_refusal(
                self.site.switchboards, item, choose=self._choose(name, item)
            )
            if refusal is not None:
                return self._refused(name, item, refusal, asked, details)
            question = f"Requeue entry {item.filebase} from {name} to {item.origin}?"
        else:
            question = f"Discard entry {item.filebase} from {name} for good?"
        site = str(self.site.paths.var_dir)
        token_field = (
            # The site's name and a password field: a browser's password manager may
            # offer to keep the token for this site.  The page never holds the token.
            '<p><label>Site: <input type="text" name="site" id="site" '
            f'autocomplete="username" value="{escape(site)}" readonly size="40"></label></p>'
            "<p><label>Token (<code>cat "
            f"{escape(str(token_path(self.site)))}</code>): "
            '<input type="password" name="token" id="token" '
            'autocomplete="current-password" required></label></p>'
        )
        form = (
            f'<form method="post" action="/entries/{escape(action)}" class="confirm">'
            f'<input type="hidden" name="queue" value="{escape(name)}">'
            f'<input type="hidden" name="id" value="{escape(item.filebase)}">'
            '<input type="hidden" name="confirm" value="yes">'
            f"{asked.fields()}{token_field}"
            f'<p><button type="submit" id="confirm" class="{escape(action)}">Confirm: '
            f'{escape(action)}</button> <a href="{back}" id="cancel">Cancel</a></p></form>'
        )
        return Answer(
            HTTPStatus.OK,
            _document(
                f"{action} {item.filebase}",
                [f"<h2>{escape(question)}</h2>", details, self._token_warning(), form],
            ),
        )

    def _token_warning(self) -> str:
        """A warning that actions are refused (:meth:`token_file_problem`), or nothing."""
        problem = self.token_file_problem()
        if problem is None:
            return ""
        return f'<p class="problem" id="token-problem">Actions are refused: {escape(problem)}.</p>'

    def _choose(self, name: str, item: Entry) -> str:
        """What a refused requeue tells to do instead: the CLI, with a queue to name."""
        return (
            "the page requeues an entry only to the queue it came from; use "
            f"'runnerkit queue requeue {name} {item.filebase} --to QUEUE'"
        )

    def _refused(
        self, name: str, item: Entry, refusal: str, asked: PageQuery, details: str
    ) -> Answer:
        """The confirmation page of a requeue that would be refused: why, and the
        other ways (Discard, the CLI), with no Confirm button."""
        discard = (
            CONFIRM
            + "?"
            + urlencode(
                {"action": "discard", "queue": name, "id": item.filebase}
                | {"refresh": asked.refresh}
                | {f"{q}_page": p for q, p in asked.pages.items() if p != 1}
            )
        )
        back = escape(asked.link()) + f"#{escape(name)}"
        parts = [
            f"<h2>Entry {escape(item.filebase)} of {escape(name)} cannot be requeued</h2>",
            f'<p class="problem" id="refused">{escape(f"not requeued: {refusal}")}</p>',
            details,
            "<p>To put it in a queue of your choice: <code>"
            f"runnerkit queue requeue {escape(name)} {escape(item.filebase)} --to QUEUE"
            "</code>.</p>",
            (
                f'<p><a href="{escape(discard)}" id="discard">Discard it</a> or '
                f'<a href="{back}" id="cancel">go back</a>.</p>'
                if item.state != TAKEN
                else f'<p><a href="{back}" id="cancel">Back to the queues</a></p>'
            ),
        ]
        return Answer(HTTPStatus.OK, _document(f"requeue {item.filebase}", parts))

    def act(self, path: str, form: Mapping[str, str], client: str) -> Answer:
        """:meth:`_act`, whose refusals lead back to the page the operator was on (the
        form's page state, when it reads)."""
        try:
            return self._act(path, form, client)
        except PageError as error:
            with contextlib.suppress(PageError):
                error.back = page_state(form, self.refresh).link()
                if form.get("queue") in ENTRY_QUEUES:
                    error.back += f"#{form['queue']}"
            raise

    def _act(self, path: str, form: Mapping[str, str], client: str) -> Answer:
        """``POST /entries/requeue`` or ``/entries/discard``, with the fields *form*.

        The token is the form's ``token`` field, and nothing else (no cookie: see the
        module).

        :param client: who asks, for the log.
        :raises PageError: not confirmed, no such queue or id, or a bad page state
            (400), no token or the wrong one, or a queue whose entries the page does not
            act on (403), no such entry (404), refused (409), the queues' server cannot
            be reached (503).
        """
        action = ACTIONS[path]
        # A pasted token may bring a space or a line end along; a token has none.
        given = form.get("token", "").strip() or None
        problem = self.token_file_problem()
        if problem is not None:
            log.warning("operator page (%s): %s refused: %s", client, action, problem)
            raise PageError(HTTPStatus.SERVICE_UNAVAILABLE, f"{action} refused: {problem}")
        if given is None:
            raise PageError(
                HTTPStatus.FORBIDDEN,
                f"no token: to {action}, give the token from "
                f"{str(token_path(self.site))!r} (readable by the site's owner only)",
            )
        if not self.token_matches(given):
            raise PageError(
                HTTPStatus.FORBIDDEN,
                f"wrong token: it is not the one in {str(token_path(self.site))!r} "
                "(the REST runner writes a new one each time it starts)",
            )
        if form.get("confirm") != "yes":
            raise PageError(
                HTTPStatus.BAD_REQUEST,
                f"not confirmed: {action} asks first; use the confirmation page "
                f"({CONFIRM}?action={action}&queue=QUEUE&id=ID), or send confirm=yes",
            )
        name, entry_id = self._names(form)
        asked = page_state(form, self.refresh)
        with self.lock:
            item = self._entry(name, entry_id)
            message = self._do(action, name, item)
        log.info("operator page (%s): %s", client, message)
        href = escape(asked.link()) + f"#{escape(name)}"
        back = f'<p><a href="{href}" id="back">Back to the queues</a></p>'
        return Answer(
            HTTPStatus.OK,
            _document(action, [f'<p class="done" id="result">{escape(message)}</p>', back]),
        )

    def _do(self, action: str, name: str, item: Entry) -> str:
        """Requeue or discard *item*; what was done, for the operator and the log."""
        switchboard = self.site.switchboards[name]
        if action == "requeue":
            try:
                destination, new_id = requeue_entry(
                    self.site.switchboards,
                    switchboard,
                    item,
                    choose=self._choose(name, item),
                )
            except EntryRefusedError as error:
                log.warning(
                    "operator page: %s from %r not requeued: %s", item.filebase, name, error
                )
                raise PageError(
                    HTTPStatus.CONFLICT, f"{item.filebase} not requeued: {error}"
                ) from error
            except QueueUnavailableError as error:
                raise PageError(HTTPStatus.SERVICE_UNAVAILABLE, str(error)) from error
            return f"requeued {item.filebase} from {name!r} to {destination!r} as {new_id}"
        if item.state == TAKEN:
            raise PageError(
                HTTPStatus.CONFLICT,
                f"{item.filebase} not discarded: it is being processed; left to its runner",
            )
        try:
            discard_entry(switchboard, item)
        except QueueUnavailableError as error:
            raise PageError(HTTPStatus.SERVICE_UNAVAILABLE, str(error)) from error
        except QueueError as error:
            raise PageError(
                HTTPStatus.NOT_FOUND, f"{item.filebase} not discarded: it is gone ({error})"
            ) from error
        return f"discarded {item.filebase} from {name!r}"

    def token_file_problem(self) -> str | None:
        """Why the token file no longer holds this runner's token (changed or removed
        since it started), or None when it does.  Read at each action and page: it is
        tiny, and the file is what the operator is told to ``cat``."""
        path = token_path(self.site)
        try:
            held = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeError):
            held = None
        if held is not None and hmac.compare_digest(
            held.encode("ascii"), self.token.encode("ascii")
        ):
            return None
        return (
            f"the token file {str(path)!r} was changed or removed since this REST runner "
            "started, so no token can be checked against it; restart the runner "
            "(runnerkit restart) to write a new one"
        )

    def token_matches(self, given: str | None) -> bool:
        """Whether *given* is the token, compared in constant time."""
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def _names(self, fields: Mapping[str, str]) -> tuple[str, str]:
        """The queue and the entry id *fields* name.

        :raises PageError: a queue that is not one, or an id that is not a file base
            (400); a queue not of :data:`ENTRY_QUEUES` (403).
        """
        name = fields.get("queue", "")
        if name not in self.site.switchboards:
            raise PageError(
                HTTPStatus.BAD_REQUEST,
                f"no queue {name!r}; queues are: {', '.join(sorted(self.site.switchboards))}",
            )
        if name not in ENTRY_QUEUES:
            raise PageError(
                HTTPStatus.FORBIDDEN,
                f"the page acts on the entries of {' and '.join(ENTRY_QUEUES)} only, not of "
                f"queue {name!r}: for a message waiting there, use 'runnerkit queue list "
                f"{name}', 'runnerkit queue requeue {name} ID --to QUEUE' or "
                f"'runnerkit queue discard {name} ID'",
            )
        entry_id = fields.get("id", "")
        if not is_filebase(entry_id):
            raise PageError(
                HTTPStatus.BAD_REQUEST,
                f"id must be an entry's id, <time>+<40 hex digits>, not {entry_id!r}",
            )
        return name, entry_id

    def _entry(self, name: str, entry_id: str) -> Entry:
        """The entry *entry_id* of queue *name*.

        :raises PageError: it is not there (404), or the server cannot be reached (503).
        """
        try:
            item = find_entry(self.site.switchboards[name], entry_id)
        except QueueUnavailableError as error:
            raise PageError(HTTPStatus.SERVICE_UNAVAILABLE, str(error)) from error
        if item is None:
            raise PageError(
                HTTPStatus.NOT_FOUND,
                f"no entry {entry_id!r} in queue {name!r}: requeued or discarded already?",
            )
        return item


def error_page(status: HTTPStatus, message: str, back: str = "/") -> str:
    """The HTML page of a refusal or failure: the status and *message*, and a link
    *back* to the queues."""
    return _document(
        f"{status.value} {status.phrase}",
        [
            f'<p class="problem" id="error">{escape(message)}</p>',
            f'<p><a href="{escape(back)}" id="back">Back to the queues</a></p>',
        ],
    )


# HTML.

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em 2em;color:#1d2330;background:#f7f8fa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;margin:.3em 0}
th,td{padding:.35em .7em;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.id{font-family:ui-monospace,monospace;font-size:.85em}
td.id{max-width:19em;overflow-wrap:anywhere}td.actions{white-space:nowrap}
.meta{color:#5a6270}.problem{color:#a8200d}.done{color:#176b2c;font-weight:600}
.state-running{color:#176b2c}.state-down,.state-stuck{color:#a8200d}.state-starting{color:#8a5a00}
td.reason{min-width:11em;max-width:26em;overflow-wrap:anywhere}form{display:inline;margin:0}
button{font:inherit;padding:.15em .6em;border:1px solid #9aa3b0;border-radius:3px;
 background:#fff;cursor:pointer}
button.discard{border-color:#c9736a;color:#8f1d10}nav.pages a,nav.pages span{margin-right:.5em}
td.subject{min-width:8em;max-width:22em}
td.subject,#entry td,h2,p,code{overflow-wrap:anywhere}
"""


def _document(title: str, parts: Iterable[str], *, refresh: int = 0) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{escape(title)}: runnerkit</title><style>{_STYLE}</style></head>"
        '<body><h1><a href="/" style="color:inherit;text-decoration:none">runnerkit</a></h1>'
        + "".join(parts)
        + "</body></html>\n"
    )


def _queues_table(rows: list[tuple[str, int | None, str, str]]) -> str:
    cells = []
    for name, depth, age, problem in rows:
        if not name:
            cells.append(f'<tr><td colspan="3" class="problem">{escape(problem)}</td></tr>')
            continue
        shown = "?" if depth is None else str(depth)
        note = f' <span class="problem">({escape(problem)})</span>' if problem else ""
        cells.append(
            f'<tr data-queue="{escape(name)}"><td>{escape(name)}</td>'
            f'<td class="num depth">{shown}</td>'
            f'<td class="age">{escape(age) or "-"}{note}</td></tr>'
        )
    return (
        '<h2>Queues</h2><table id="queues"><thead><tr><th>Queue</th><th>Depth</th>'
        f"<th>Oldest entry</th></tr></thead><tbody>{''.join(cells)}</tbody></table>"
    )


def _runners_table(status: MasterStatus | None, problem: str) -> str:
    title = "<h2>Runners</h2>"
    if problem:
        return f'{title}<p class="problem">{escape(problem)}</p>'
    if status is None:
        return f"{title}<p>No master's status: no master runs on this var dir.</p>"
    rows = "".join(
        f"<tr><td>{escape(runner.name)}</td><td>{escape(runner.where)}</td>"
        f'<td class="num">{"-" if runner.pid is None else runner.pid}</td>'
        f'<td class="state-{escape(runner.state)}">{escape(runner.state)}'
        + (f" ({escape(runner.reason)})" if runner.reason else "")
        + f'</td><td class="num">{runner.restarts}</td>'
        f'<td class="reason">{escape(runner.last_error) or "-"}</td></tr>'
        for runner in status.runners
    )
    draining = " (draining)" if status.draining else ""
    return (
        f'{title}<p class="meta">Master pid {status.master_pid}{draining}.</p>'
        '<table id="runners"><thead><tr><th>Runner</th><th>Slice</th><th>Pid</th>'
        "<th>State</th><th>Restarts</th><th>Last error</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _entry_row(item: Entry, now: float, asked: PageQuery) -> str:
    buttons = ""
    if item.state != TAKEN:
        buttons = "".join(
            f'<form method="get" action="{CONFIRM}">'
            f'<input type="hidden" name="action" value="{action}">'
            f'<input type="hidden" name="queue" value="{escape(item.queue)}">'
            f'<input type="hidden" name="id" value="{escape(item.filebase)}">'
            f"{asked.fields()}"
            f'<button type="submit" class="{action}">{action.capitalize()}</button></form> '
            for action in ("requeue", "discard")
        )
    state = "" if item.state != PRESERVED else ' <span class="meta">(preserved)</span>'
    return (
        f'<tr data-id="{escape(item.filebase)}"><td class="id">{escape(item.filebase)}{state}</td>'
        f"<td>{escape(item.origin or '-')}</td>"
        f'<td class="reason">{escape(item.reason) or "-"}</td>'
        f'<td title="{escape(iso_time(item.since))}">{escape(format_age(item.age(now)))}</td>'
        f'<td class="subject">{escape(item.subject) or "-"}</td>'
        f'<td class="id">{escape(item.message_id) or "-"}</td>'
        f'<td class="actions">{buttons}</td></tr>'
    )


def _details(item: Entry, now: float) -> str:
    rows = [
        ("Queue", item.queue),
        ("ID", item.filebase),
        ("State", item.state),
        ("Came from", item.origin or "-"),
        ("Reason", item.reason or "-"),
        ("Since", f"{iso_time(item.since)} ({format_age(item.age(now))} ago)"),
        ("List", item.listname or "-"),
        ("Sender", item.sender or "-"),
        ("Subject", item.subject or "-"),
        ("Message-ID", item.message_id or "-"),
    ]
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table id="entry">{cells}</table>'


def _pager(name: str, number: int, pages: int, asked: PageQuery) -> str:
    if pages <= 1:
        return ""
    shown = sorted({1, pages, *range(max(1, number - 2), min(pages, number + 2) + 1)})
    links: list[str] = []
    previous = 0
    for page in shown:
        if page > previous + 1:
            links.append("<span>...</span>")
        if page == number:
            links.append(f"<span><strong>{page}</strong></span>")
        else:
            href = escape(asked.link(**{f"{name}_page": page})) + f"#{escape(name)}"
            links.append(f'<a href="{href}">{page}</a>')
        previous = page
    return f'<nav class="pages" data-queue="{escape(name)}">Pages: {"".join(links)}</nav>'
