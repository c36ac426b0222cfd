"""The REST runner's operator page, over real HTTP: what it shows, and its two actions.

Each test runs a REST runner of the test's world on a free port in a thread
(:mod:`operator_pages`), fills the world's queues through its switchboards, and reads
the page as a browser asks for it.  The actions are posted as the page's forms post
them; what they did is checked on the filesystem (or the queues' streams) too.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from collections.abc import Callable, Iterator
from html import escape as html_escape
from html import unescape
from urllib.parse import urlencode

import pytest
from operator_pages import BROWSER_ACCEPT, PageServer, Reply

from runnerkit import queuefile
from runnerkit.master import lock_paths
from runnerkit.message import message_from_bytes
from runnerkit.runners.operator_page import _STYLE, MAX_BODY, PAGE_SIZE, wants_html
from runnerkit.site import Site

MESSAGE = (
    "From: anne@example.com\nTo: ant@example.com\nSubject: {subject}\n"
    "Message-ID: <{number}@example.com>\n\nHello.\n"
)
#: An entry id that is none of the queue's.
GHOST = f"1700000000.000000000+{'c' * 40}"


def message(subject: str, number: int = 1) -> str:
    return MESSAGE.format(subject=subject, number=number)


@pytest.fixture
def serve(config: Site) -> Iterator[Callable[[], PageServer]]:
    started: list[PageServer] = []

    def start() -> PageServer:
        server = PageServer(config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def preserve(site: Site, queue: str, subject: str, reason: str = "ValueError: x") -> str:
    """Put a message in bad as a runner of *queue* does when it fails: a ``.psv`` with
    its reason.  Its file base."""
    switchboard = site.switchboards[queue]
    filebase = switchboard.enqueue(message(subject), listid="ant.example.com")
    switchboard.dequeue(filebase)
    switchboard.finish(filebase, preserve=True, reason=reason)
    return filebase


def bad_names(site: Site) -> list[str]:
    """The entries of bad, by file base and extension: what ``ls`` shows (file backend),
    or the ids a listing gives."""
    bad = site.switchboards["bad"]
    if bad.queue_directory is None:
        return sorted(f"{fb}.psv" for fb in bad.get_files(".psv"))
    return sorted(path.name for path in bad.queue_directory.iterdir() if path.is_file())


def depth_cell(reply: Reply, queue: str) -> str:
    found = re.search(
        rf'<tr data-queue="{queue}"><td>{queue}</td><td class="num depth">([^<]*)</td>',
        reply.text,
    )
    assert found, reply
    return found.group(1)


def entry_ids(reply: Reply) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)">', reply.text)


# The page.


def test_a_browser_gets_the_page_and_a_client_the_json_index(
    serve: Callable[[], PageServer],
) -> None:
    server = serve()
    reply = server.page()
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.text.startswith("<!DOCTYPE html>")
    for accept in (None, "*/*", "application/json", "application/json, text/html;q=0.5"):
        headers = {} if accept is None else {"Accept": accept}
        answer = server.request("GET", "/", headers=headers)
        assert answer.status == 200, accept
        assert answer.headers["content-type"] == "application/json", accept
        assert json.loads(answer.text)["endpoints"] == [
            "/lists",
            "/metrics",
            "/queues",
            "/runners",
        ]
    head = server.request("HEAD", "/", headers={"Accept": "text/html"})
    assert (head.status, head.text) == (200, "")
    assert head.headers["content-type"] == "text/html; charset=utf-8"


def test_wants_html_reads_the_accept_header() -> None:
    assert wants_html("text/html")
    assert wants_html("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert not wants_html(None)
    assert not wants_html("*/*")
    assert not wants_html("text/html;q=0")
    assert not wants_html("application/json, text/html")
    assert wants_html("application/json;q=0.5, text/html")


def test_the_page_is_sent_with_strict_headers(serve: Callable[[], PageServer]) -> None:
    headers = serve().page().headers
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "form-action 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # nothing may run
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    # Nothing to other sites; the page's own forms post with their Origin (under
    # no-referrer, Chromium posts "Origin: null").
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-content-type-options"] == "nosniff"


def test_the_page_shows_queues_runners_and_the_entries_of_bad_and_shunt(
    serve: Callable[[], PageServer], config: Site
) -> None:
    switchboards = config.switchboards
    for number in range(3):
        switchboards["in"].enqueue(message("waiting", number), listid="ant.example.com")
    shunted = switchboards["shunt"].enqueue(
        message("shunted"), whichq="pipeline", shunt_reason="KeyError: 'x'"
    )
    preserved = preserve(config, "out", "preserved", reason="ConnectionRefusedError: smtp")
    lock_paths(config).status.write_text(
        json.dumps(
            {
                "draining": False,
                "master_pid": 4242,
                "runners": [
                    {"name": "in", "slice": 0, "count": 2, "pid": 4243, "state": "running"}
                    | {"restarts": 1, "reason": "", "last_error": ""},
                    {"name": "out", "slice": None, "count": 1, "pid": None, "state": "down"}
                    | {"restarts": 11, "reason": "failed 11 times", "last_error": "no smtp"},
                ],
            }
        ),
        encoding="utf-8",
    )
    reply = serve().page()
    assert reply.status == 200
    assert depth_cell(reply, "in") == "3"
    assert depth_cell(reply, "shunt") == "1"
    assert depth_cell(reply, "bad") == "1"  # preserved files count
    assert depth_cell(reply, "out") == "0"
    assert re.search(r'<tr data-queue="in">.*?<td class="age">\d+s</td>', reply.text)
    # The runners, as the master's status says.
    assert "Master pid 4242" in reply.text
    assert '<td>in</td><td>0/2</td><td class="num">4243</td>' in reply.text
    assert '<td class="state-down">down (failed 11 times)</td>' in reply.text
    assert '<td class="num">11</td><td class="reason">no smtp</td>' in reply.text
    # The entries, with where they came from, their reason, subject and Message-ID.
    assert entry_ids(reply) == [preserved, shunted]
    bad_row = reply.text[reply.text.index(f'<tr data-id="{preserved}">') :]
    bad_row = bad_row[: bad_row.index("</tr>")]
    for text in ("(preserved)", "<td>out</td>", "ConnectionRefusedError: smtp", "preserved"):
        assert text in bad_row
    assert "&lt;1@example.com&gt;" in bad_row
    assert 'name="action" value="requeue"' in bad_row
    assert 'name="action" value="discard"' in bad_row
    assert "KeyError: &#x27;x&#x27;" in reply.text
    # Neither the token nor its value is in the page: only where to find it.
    assert server_token(config) not in reply.text
    assert str(config.paths.var_dir / "rest.token") in reply.text


def server_token(site: Site) -> str:
    return (site.paths.var_dir / "rest.token").read_text(encoding="ascii").strip()


def test_without_a_master_the_page_says_so(serve: Callable[[], PageServer]) -> None:
    reply = serve().page()
    assert "No master's status: no master runs on this var dir." in reply.text
    assert "<p>No entries.</p>" in reply.text


def test_a_broken_status_file_is_shown_not_a_500(
    serve: Callable[[], PageServer], config: Site
) -> None:
    lock_paths(config).status.write_text("{half", encoding="utf-8")
    reply = serve().page()
    assert reply.status == 200
    assert re.search(r'<h2>Runners</h2><p class="problem">[^<]*master\.json', reply.text)
    assert depth_cell(reply, "in") == "0"  # the rest of the page is there


def test_everything_shown_is_escaped(serve: Callable[[], PageServer], config: Site) -> None:
    evil = "<script>alert(1)</script>"
    shunted = config.switchboards["shunt"].enqueue(
        message(evil), whichq="pipeline", shunt_reason=f'{evil}" onmouseover="x'
    )
    preserve(config, "out", evil, reason=evil)
    server = serve()
    reply = server.page()
    assert "<script" not in reply.text
    assert reply.text.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 4  # subjects, reasons
    assert 'onmouseover="x' not in reply.text
    assert unescape(reply.text).count(evil) == 4  # shown as it is, as text
    confirm = server.confirm("requeue", "shunt", shunted)
    assert confirm.status == 200
    assert "<script" not in confirm.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in confirm.text


def test_8bit_header_bytes_are_shown_as_utf8_and_stray_bytes_escaped(
    serve: Callable[[], PageServer], config: Site
) -> None:
    msg = message_from_bytes(
        b"From: <ren\xc3\xa9e@example.com>\nSubject: \xc3\xa9t\xc3\xa9 \xff\xfe bytes\n"
        b"Message-ID: <caf\xc3\xa9\xff@example.com>\n\nHello.\n"
    )
    filebase = config.switchboards["shunt"].enqueue(msg, whichq="in")
    server = serve()
    for reply in (server.page(), server.confirm("discard", "shunt", filebase)):
        assert reply.status == 200, reply
        assert "été \\xff\\xfe bytes" in reply.text
        assert "&lt;café\\xff@example.com&gt;" in reply.text
        assert "\u00c3" not in reply.text
        assert "\ufffd" not in reply.text
    assert "<th>Sender</th><td>renée@example.com</td>" in reply.text


def test_the_page_reloads_itself_unless_told_not_to(
    serve: Callable[[], PageServer], config: Site
) -> None:
    server = serve()
    assert '<meta http-equiv="refresh" content="5">' in server.page().text
    assert '<meta http-equiv="refresh" content="30">' in server.page("?refresh=30").text
    stopped = server.page("?refresh=0").text
    assert 'http-equiv="refresh"' not in stopped
    assert "Does not reload" in stopped
    for wrong in ("?refresh=-1", "?refresh=abc", "?refresh=99999999", "?bad_page=0"):
        reply = server.page(wrong)
        assert reply.status == 400, wrong
        assert "must be a whole number" in reply.text
    crowded = server.page("?" + "&".join(f"x{number}=1" for number in range(30)))
    assert crowded.status == 400
    assert "the query cannot be read" in crowded.text
    server.stop()
    config.push("slow", "[rest]\npage_refresh: 1m\n")
    slow = PageServer(config).start()
    try:
        assert '<meta http-equiv="refresh" content="60">' in slow.page().text
    finally:
        slow.stop()
        config.pop("slow")


@pytest.mark.runnerkit_backend("file")
def test_thousands_of_entries_are_paged(serve: Callable[[], PageServer], config: Site) -> None:
    bad = config.switchboards["bad"]
    directory = bad.queue_directory
    assert directory is not None  # written straight into the file backend's bad
    directory.mkdir(parents=True, exist_ok=True)
    data = queuefile.encode(message("many"), {"whichq": "in", "listid": "ant.example.com"})
    names = [f"{1700000000 + number}.000000000+{number:040x}" for number in range(3000)]
    for name in names:
        (directory / f"{name}.psv").write_bytes(data)
    server = serve()
    reply = server.page()
    assert reply.status == 200
    assert depth_cell(reply, "bad") == "3000"
    assert "3000 entries, oldest first; 1 to 50 shown (page 1 of 60)." in reply.text
    assert entry_ids(reply) == names[:PAGE_SIZE]
    assert '<nav class="pages" data-queue="bad">' in reply.text
    assert 'href="/?bad_page=60&amp;refresh=5#bad">60</a>' in reply.text
    last = server.page("?bad_page=60")
    assert "2951 to 3000 shown (page 60 of 60)." in last.text
    assert entry_ids(last) == names[-PAGE_SIZE:]
    past = server.page("?bad_page=61")
    assert "page 61 is past the end; showing page 60 of 60." in past.text
    assert entry_ids(past) == names[-PAGE_SIZE:]


def test_only_the_entries_of_the_page_shown_are_read(
    serve: Callable[[], PageServer], config: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing thousands of names is cheap; reading thousands of files is not."""
    for number in range(PAGE_SIZE * 3):
        preserve(config, "out", f"m{number}")
    read: list[str] = []
    real = type(config.switchboards["bad"]).read_document

    def counting(self: object, filebase: str, extension: str = ".pck") -> bytes:
        read.append(filebase)
        return real(self, filebase, extension)  # type: ignore[arg-type]

    monkeypatch.setattr(type(config.switchboards["bad"]), "read_document", counting)
    reply = serve().page("?bad_page=2")
    assert f"{PAGE_SIZE * 3} entries" in reply.text
    assert len(read) == PAGE_SIZE
    assert read == entry_ids(reply)


# The actions.


def test_requeue_asks_for_confirmation_then_moves_the_entry_back(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "send me again")
    server = serve()
    assert filebase in entry_ids(server.page())
    confirm = server.confirm("requeue", "bad", filebase)
    assert confirm.status == 200
    assert f"Requeue entry {filebase} from bad to out?" in confirm.text
    assert (
        '<input type="password" name="token" id="token" autocomplete="current-password" required>'
        in confirm.text
    )
    # The site, named for a password manager; the page never holds the token.
    site = re.escape(html_escape(str(config.paths.var_dir)))
    assert re.search(
        rf'<input type="text" name="site" id="site" autocomplete="username" '
        rf'value="{site}" readonly',
        confirm.text,
    )
    assert server.token() not in confirm.text
    assert 'method="post" action="/entries/requeue"' in confirm.text
    assert bad_names(config) == [f"{filebase}.psv"]
    assert config.switchboards["out"].files == []
    reply = server.post(
        "requeue", {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
    )
    assert reply.status == 200, reply
    [new_id] = config.switchboards["out"].files
    assert f"requeued {filebase} from &#x27;bad&#x27; to &#x27;out&#x27; as {new_id}" in reply.text
    assert bad_names(config) == []
    if config.switchboards["bad"].queue_directory is not None:
        assert not (config.switchboards["bad"].queue_directory / f"{filebase}.psv").exists()
        assert (config.switchboards["out"].queue_directory / f"{new_id}.pck").is_file()
    msg, metadata = config.switchboards["out"].dequeue(new_id)
    assert str(msg["Subject"]) == "send me again"
    assert metadata["listid"] == "ant.example.com"
    assert "set-cookie" not in reply.headers
    # Gone from the page; a second requeue finds nothing.
    page = server.page()
    assert filebase not in entry_ids(page)
    assert depth_cell(page, "out") == "0"  # taken above by the test's dequeue
    again = server.post(
        "requeue", {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
    )
    assert again.status == 404
    assert "no entry" in again.text


def test_discard_removes_the_entry_and_its_reason(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "throw me away")
    server = serve()
    confirm = server.confirm("discard", "bad", filebase)
    assert f"Discard entry {filebase} from bad for good?" in confirm.text
    reply = server.post(
        "discard", {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
    )
    assert reply.status == 200, reply
    assert f"discarded {filebase} from &#x27;bad&#x27;" in reply.text
    assert bad_names(config) == []
    directory = config.switchboards["bad"].queue_directory
    if directory is not None:
        assert list(directory.rglob(f"{filebase}*")) == []  # the reason went too
    assert config.switchboards["out"].files == []


def test_no_answer_sets_a_cookie_and_a_cookie_stands_for_no_token(
    serve: Callable[[], PageServer], config: Site
) -> None:
    """A cookie cannot be scoped to a port: every other service on 127.0.0.1 would get
    it.  So none is set, and the one older versions set is worth nothing."""
    first = preserve(config, "out", "one")
    second = preserve(config, "out", "two")
    server = serve()
    token = server.token()
    replies = [
        server.page(),
        server.request("GET", "/"),
        server.request("GET", "/queues"),
        server.request("GET", "/metrics"),
        server.request("GET", "/nope", headers={"Accept": "text/html"}),
        server.confirm("discard", "bad", first),
        server.post("discard", {"queue": "bad", "id": first, "confirm": "yes", "token": token}),
        server.post("discard", {"queue": "bad", "id": GHOST, "confirm": "yes", "token": token}),
        server.post("discard", {"queue": "bad", "id": second, "confirm": "yes"}),
    ]
    for reply in replies:
        assert "set-cookie" not in reply.headers, reply
        assert all(name.lower() != "set-cookie" for name, _ in reply.header_list)
    assert bad_names(config) == [f"{second}.psv"]
    # The old cookie, with the real token, and no token field: refused, nothing moves.
    confirm = server.request(
        "GET",
        f"/entries/confirm?action=discard&queue=bad&id={second.replace('+', '%2B')}",
        headers={"Cookie": f"runnerkit_token={token}", "Accept": "text/html"},
    )
    assert '<input type="password" name="token"' in confirm.text
    reply = server.post(
        "discard",
        {"queue": "bad", "id": second, "confirm": "yes"},
        headers={"Cookie": f"runnerkit_token={token}"},
    )
    assert reply.status == 403
    assert "no token: to discard" in reply.text
    assert bad_names(config) == [f"{second}.psv"]


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "no token: to requeue, give the token from "), ("nope", "wrong token: ")],
)
def test_an_action_without_the_token_is_refused_and_changes_nothing(
    serve: Callable[[], PageServer], config: Site, token: str | None, message: str
) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    fields = {"queue": "bad", "id": filebase, "confirm": "yes"}
    if token is not None:
        fields["token"] = token
    reply = server.post("requeue", fields)
    assert reply.status == 403
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert message in reply.text
    assert "set-cookie" not in reply.headers
    assert bad_names(config) == [f"{filebase}.psv"]
    assert config.switchboards["out"].files == []


def test_the_token_differs_by_a_character_is_wrong(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    token = server.token()
    almost = token[:-1] + ("A" if token[-1] != "A" else "B")
    fields = {"queue": "bad", "id": filebase, "confirm": "yes", "token": almost}
    assert server.post("discard", fields).status == 403
    assert server.post("discard", fields | {"token": token + "x"}).status == 403
    assert config.switchboards["bad"].depth() == 1


def test_the_token_file_is_the_owners_alone_and_new_at_each_start(
    serve: Callable[[], PageServer], config: Site
) -> None:
    server = serve()
    path = server.token_file
    assert path == config.paths.var_dir / "rest.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == os.getuid()
    first = server.token()
    assert len(first) >= 40
    server.stop()
    assert not path.exists()  # removed when the runner stops
    other = serve()
    assert other.token() != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_action_needs_confirmation(serve: Callable[[], PageServer], config: Site) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    for confirm in ({}, {"confirm": "no"}, {"confirm": ""}):
        reply = server.post(
            "requeue", {"queue": "bad", "id": filebase, "token": server.token()} | confirm
        )
        assert reply.status == 400, confirm
        assert "not confirmed: requeue asks first" in reply.text
    assert config.switchboards["bad"].depth() == 1
    assert config.switchboards["out"].files == []


def test_a_post_from_another_origin_is_refused(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    fields = {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
    for origin in (
        "http://evil.example",
        "null",
        f"https://127.0.0.1:{server.port}",
        f"http://127.0.0.1:{server.port + 1}",
    ):
        reply = server.post("discard", fields, origin=origin)
        assert reply.status == 403, origin
        assert "comes from another page" in reply.text
    reply = server.post(
        "discard", fields, origin=None, headers={"Referer": "http://evil.example/x"}
    )
    assert reply.status == 403
    assert config.switchboards["bad"].depth() == 1
    # The page's own origin, or none at all (not a browser): done.
    assert server.post("discard", fields, origin=None).status == 200


def test_a_post_with_a_host_it_does_not_answer_to_is_refused(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    fields = {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
    reply = server.post(
        "discard", fields, origin="http://evil.example", headers={"Host": "evil.example"}
    )
    assert reply.status == 403
    assert "allowed_hosts" in reply.text
    assert config.switchboards["bad"].depth() == 1


def test_a_big_body_is_a_413_and_is_not_read(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    padding = "x" * (MAX_BODY + 1)
    fields = {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
    reply = server.post("discard", fields | {"padding": padding})
    assert reply.status == 413
    assert f"at most {MAX_BODY}" in reply.text
    assert config.switchboards["bad"].depth() == 1


def test_malformed_actions_get_clear_errors(serve: Callable[[], PageServer], config: Site) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    token = server.token()
    good = {"queue": "bad", "id": filebase, "confirm": "yes", "token": token}
    cases = [
        (good | {"queue": "nosuch"}, 400, "no queue &#x27;nosuch&#x27;; queues are: "),
        (good | {"id": "../../etc/passwd"}, 400, "id must be an entry&#x27;s id"),
        (good | {"id": GHOST}, 404, f"no entry &#x27;{GHOST}&#x27; in queue"),
    ]
    for fields, status, text in cases:
        reply = server.post("requeue", fields)
        assert reply.status == status, fields
        assert text in reply.text, reply
    not_a_form = server.request(
        "POST",
        "/entries/requeue",
        json.dumps(good).encode(),
        {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{server.port}"},
    )
    assert not_a_form.status == 415
    twice = server.request(
        "POST",
        "/entries/requeue",
        b"queue=bad&queue=shunt",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twice.status == 400
    assert "more than once" in twice.text
    get = server.request("GET", "/entries/requeue")
    assert (get.status, get.headers["allow"]) == (405, "POST")
    bad_confirm = server.request("GET", "/entries/confirm?action=explode&queue=bad&id=x")
    assert bad_confirm.status == 400
    assert "action must be requeue or discard" in bad_confirm.text
    assert config.switchboards["bad"].depth() == 1


@pytest.mark.runnerkit_backend("file")
def test_a_damaged_entry_is_not_requeued_and_stays(
    serve: Callable[[], PageServer], config: Site
) -> None:
    bad = config.switchboards["bad"]
    directory = bad.queue_directory
    assert directory is not None  # damaged by writing bytes into the file backend's bad
    directory.mkdir(parents=True, exist_ok=True)
    filebase = f"1700000000.000000000+{'d' * 40}"
    (directory / f"{filebase}.psv").write_bytes(b"not a queue file at all")
    server = serve()
    page = server.page()
    assert "unreadable: " in page.text
    reply = server.post(
        "requeue", {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
    )
    assert reply.status == 409
    assert f"{filebase} not requeued: it cannot be read (" in reply.text
    assert (directory / f"{filebase}.psv").read_bytes() == b"not a queue file at all"
    # It can be discarded, as with the CLI.
    reply = server.post(
        "discard", {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
    )
    assert reply.status == 200
    assert not (directory / f"{filebase}.psv").exists()


def test_an_entry_without_a_queue_to_go_to_is_refused_with_the_cli_to_use(
    serve: Callable[[], PageServer], config: Site
) -> None:
    shunt = config.switchboards["shunt"]
    filebase = shunt.enqueue(message("nowhere"), listid="ant.example.com")
    server = serve()
    reply = server.post(
        "requeue", {"queue": "shunt", "id": filebase, "confirm": "yes", "token": server.token()}
    )
    assert reply.status == 409
    assert "its metadata names no queue it came from" in reply.text
    assert f"runnerkit queue requeue shunt {filebase} --to QUEUE" in reply.text
    assert shunt.files == [filebase]


def test_an_entry_being_processed_is_not_touched(
    serve: Callable[[], PageServer], config: Site
) -> None:
    shunt = config.switchboards["shunt"]
    filebase = shunt.enqueue(message("busy"), whichq="pipeline")
    server = serve()
    shunt.dequeue(filebase)  # a runner took it
    for action in ("requeue", "discard"):
        reply = server.post(
            action, {"queue": "shunt", "id": filebase, "confirm": "yes", "token": server.token()}
        )
        assert reply.status == 409, (action, reply)
        assert "being processed" in reply.text
    shunt.put_back(filebase)
    assert shunt.files == [filebase]
    assert config.switchboards["pipeline"].files == []


def test_a_shunted_entry_is_requeued_to_the_queue_it_came_from(
    serve: Callable[[], PageServer], config: Site
) -> None:
    shunt = config.switchboards["shunt"]
    filebase = shunt.enqueue(
        message("again"), whichq="pipeline", shunt_reason="KeyError: 'x'", listid="a.b"
    )
    server = serve()
    assert "Requeue entry" in server.confirm("requeue", "shunt", filebase).text
    reply = server.post(
        "requeue", {"queue": "shunt", "id": filebase, "confirm": "yes", "token": server.token()}
    )
    assert reply.status == 200, reply
    assert shunt.files == []
    [new_id] = config.switchboards["pipeline"].files
    _, metadata = config.switchboards["pipeline"].dequeue(new_id)
    assert "shunt_reason" not in metadata
    assert "whichq" not in metadata


def test_the_json_api_stays_read_only(serve: Callable[[], PageServer]) -> None:
    server = serve()
    reply = server.request("POST", "/queues", b"", {"Content-Type": "text/plain"})
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"


def test_the_page_state_goes_through_the_confirmation_and_back(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "where was I")
    server = serve()
    page = server.page("?bad_page=1&shunt_page=2&refresh=0")
    # Each row's buttons carry the page's state to the confirmation page.
    row = re.search(rf'<tr data-id="{re.escape(filebase)}">.*?</tr>', page.text)
    assert row, page
    assert '<input type="hidden" name="refresh" value="0">' in row.group()
    # shunt has one page (none past the end are shown): its page 2 is not carried on.
    assert 'name="shunt_page"' not in row.group()
    query = urlencode(
        {"action": "discard", "queue": "bad", "id": filebase, "shunt_page": 2, "refresh": 0}
    )
    confirm = server.request("GET", f"/entries/confirm?{query}", headers={"Accept": "text/html"})
    assert confirm.status == 200, confirm
    assert '<a href="/?refresh=0&amp;shunt_page=2#bad" id="cancel">Cancel</a>' in confirm.text
    form = re.search(r'<form method="post".*?</form>', confirm.text)
    assert form, confirm
    assert '<input type="hidden" name="refresh" value="0">' in form.group()
    assert '<input type="hidden" name="shunt_page" value="2">' in form.group()
    assert 'name="bad_page"' not in form.group()  # page 1 goes without saying
    reply = server.post(
        "discard",
        {"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()}
        | {"refresh": "0", "shunt_page": "2", "bad_page": "37"},
    )
    assert reply.status == 200, reply
    assert '<a href="/?bad_page=37&amp;refresh=0&amp;shunt_page=2#bad" id="back">' in reply.text
    # A refusal leads back there too.
    state = {"refresh": "0", "bad_page": "3"}
    for fields in (
        {"queue": "bad", "id": GHOST, "confirm": "yes", "token": server.token()},
        {"queue": "bad", "id": GHOST, "confirm": "yes", "token": "wrong"},
    ):
        refused = server.post("discard", fields | state)
        assert refused.status in (403, 404), refused
        assert '<a href="/?bad_page=3&amp;refresh=0#bad" id="back">' in refused.text
    # Checked as the page's own query is: a bad value is a 400, and nothing is done.
    other = preserve(config, "out", "stay")
    for field, value in (("refresh", "-1"), ("bad_page", "0"), ("shunt_page", "x")):
        query = urlencode({"action": "discard", "queue": "bad", "id": other, field: value})
        bad = server.request("GET", f"/entries/confirm?{query}", headers={"Accept": "text/html"})
        assert bad.status == 400, (field, bad)
        assert f"{field} must be a whole number" in bad.text
        posted = server.post(
            "discard",
            {"queue": "bad", "id": other, "confirm": "yes", "token": server.token(), field: value},
        )
        assert posted.status == 400, (field, posted)
    assert bad_names(config) == [f"{other}.psv"]


@pytest.mark.parametrize(
    ("queue", "whichq", "refusal"),
    [
        ("bad", "nosuch", "it came from queue &#x27;nosuch&#x27;, which is not one to requeue to"),
        ("shunt", "lmtp", "it came from queue &#x27;lmtp&#x27;, which is not one to requeue to"),
        ("shunt", "shunt", "it is already waiting in &#x27;shunt&#x27;"),
    ],
)
def test_a_requeue_certain_to_be_refused_is_said_at_once_with_no_confirm_button(
    serve: Callable[[], PageServer], config: Site, queue: str, whichq: str, refusal: str
) -> None:
    assert whichq not in config.switchboards or whichq == queue
    filebase = config.switchboards[queue].enqueue(message("stuck"), whichq=whichq)
    server = serve()
    confirm = server.confirm("requeue", queue, filebase)
    assert confirm.status == 200, confirm
    assert f"not requeued: {refusal}" in confirm.text
    assert 'id="confirm"' not in confirm.text
    assert "<form" not in confirm.text
    assert f"runnerkit queue requeue {queue} {filebase} --to QUEUE" in confirm.text
    discard = re.search(r'<a href="([^"]+)" id="discard">', confirm.text)
    assert discard, confirm
    target = unescape(discard.group(1))
    assert target.startswith("/entries/confirm?action=discard&")
    assert "Discard entry" in server.request("GET", target, headers={"Accept": "text/html"}).text
    # The requeue itself says the same.
    reply = server.post(
        "requeue", {"queue": queue, "id": filebase, "confirm": "yes", "token": server.token()}
    )
    assert reply.status == 409
    assert refusal in reply.text
    assert config.switchboards[queue].depth() == 1


def test_long_text_wraps_wherever_it_is_shown() -> None:
    # The rule of the stylesheet that every page (the list, the confirmation, the
    # answers) shares: a 3,000-character word wraps instead of widening the page.
    rules = _STYLE.replace(" ", "").replace("\n", "")
    assert "td.subject,#entrytd,h2,p,code{overflow-wrap:anywhere}" in rules
    assert "td.reason{min-width:11em;max-width:26em;overflow-wrap:anywhere}" in rules
    assert "td.id{max-width:19em;overflow-wrap:anywhere}" in rules


@pytest.mark.parametrize("queue", ["in", "out", "pipeline"])
def test_the_page_acts_on_bad_and_shunt_only(
    serve: Callable[[], PageServer], config: Site, queue: str
) -> None:
    filebase = config.switchboards[queue].enqueue(message("waiting"), listid="ant.example.com")
    server = serve()
    for action in ("requeue", "discard"):
        confirm = server.confirm(action, queue, filebase)
        assert confirm.status == 403, confirm
        assert "acts on the entries of bad and shunt only" in confirm.text
        assert f"runnerkit queue discard {queue} ID" in confirm.text
        reply = server.post(
            action, {"queue": queue, "id": filebase, "confirm": "yes", "token": server.token()}
        )
        assert reply.status == 403, reply
        assert f"runnerkit queue requeue {queue} ID --to QUEUE" in reply.text
    assert config.switchboards[queue].files == [filebase]


def test_a_browser_gets_errors_as_html_and_other_clients_as_json(
    serve: Callable[[], PageServer],
) -> None:
    server = serve()
    cases = [
        ("GET", "/nope", {}, 404, "no resource &#x27;/nope&#x27;"),
        ("GET", "/entries/discard", {}, 405, "takes POST only"),
        ("DELETE", "/queues", {}, 405, "the API is read-only"),
        ("GET", "/", {"Host": "evil.example"}, 403, "allowed_hosts"),
    ]
    for method, path, headers, status, text in cases:
        page = server.request(method, path, headers={"Accept": BROWSER_ACCEPT} | headers)
        assert page.status == status, (path, page)
        assert page.headers["content-type"] == "text/html; charset=utf-8", path
        assert page.text.startswith("<!DOCTYPE html>")
        assert '<p class="problem" id="error">' in page.text
        assert text in page.text, page
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert page.headers["x-frame-options"] == "DENY"
        for accept in (None, "*/*", "application/json"):
            sent = headers | ({} if accept is None else {"Accept": accept})
            answer = server.request(method, path, headers=sent)
            assert answer.status == status, (path, accept)
            assert answer.headers["content-type"] == "application/json", (path, accept)
            assert unescape(text) in json.loads(answer.text)["error"]
    assert server.request("GET", "/entries/discard").headers["allow"] == "POST"
    page = server.request("GET", "/entries/discard", headers={"Accept": BROWSER_ACCEPT})
    assert page.headers["allow"] == "POST"
    # What a message says is escaped on the page.
    odd = server.request("GET", "/<b>x</b>", headers={"Accept": BROWSER_ACCEPT})
    assert "<b>x</b>" not in odd.text
    assert "&lt;b&gt;x&lt;/b&gt;" in odd.text


def test_every_answer_says_nosniff(serve: Callable[[], PageServer]) -> None:
    server = serve()
    replies = [
        server.page(),
        server.request("GET", "/"),
        server.request("GET", "/queues"),
        server.request("GET", "/runners"),
        server.request("GET", "/metrics"),
        server.request("HEAD", "/queues"),
        server.request("GET", "/nope"),
        server.request("POST", "/queues", b""),
        server.request("GET", "/", headers={"Host": "evil.example"}),
        server.request("BREW", "/"),  # the standard library's own 501
    ]
    for reply in replies:
        assert reply.headers.get("x-content-type-options") == "nosniff", reply
        names = [name.lower() for name, _ in reply.header_list]
        assert names.count("x-content-type-options") == 1, reply


# The tester's findings.


def test_a_page_past_the_end_shows_the_last_page_and_links_carry_it(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "only one")
    server = serve()
    reply = server.page("?shunt_page=3&bad_page=7")
    assert reply.status == 200
    assert "page 7 is past the end; showing page 1 of 1." in reply.text
    assert "page 3 is past the end; showing page 1 of 1." in reply.text
    assert "1 entry, oldest first; 1 to 1 shown (page 1 of 1)." in reply.text
    assert entry_ids(reply) == [filebase]
    assert "bad_page=7" not in reply.text
    assert "shunt_page=3" not in reply.text


def raw(server: PageServer, data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send *data* as it is; the status line, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, body


@pytest.mark.parametrize("accept", ["application/json", BROWSER_ACCEPT])
def test_the_standard_librarys_errors_carry_the_headers_and_are_the_runners_own(
    serve: Callable[[], PageServer], accept: str
) -> None:
    server = serve()
    cases = [
        ("FOO", "/", {}, 501, "Unsupported method"),
        ("GET", "/" + "a" * 70000, {}, 414, "URI Too Long"),
        ("GET", "/", {"X-Long": "a" * 70000}, 431, "Line too long"),
        ("GET", "/", {f"X-{n}": "1" for n in range(101)}, 431, "Too many headers"),
    ]
    for method, path, headers, status, text in cases:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Accept: {accept}"]
        head += [f"{key}: {value}" for key, value in headers.items()]
        line, answer, body = raw(server, ("\r\n".join([*head, "", ""])).encode("ascii"))
        assert line.split()[1] == str(status), (method, line)
        assert answer["x-content-type-options"] == "nosniff", status
        assert "script-src" not in answer["content-security-policy"]
        assert answer["content-security-policy"].startswith("default-src 'none'")
        assert answer["x-frame-options"] == "DENY", status
        assert answer["cache-control"] == "no-store", status
        assert b"Error response" not in body, status
        if accept == BROWSER_ACCEPT and status == 501:
            # Before its headers are read (414, 431) a browser's request is not told
            # from another's: those get the JSON error.
            assert answer["content-type"] == "text/html; charset=utf-8", status
            assert 'id="error"' in body.decode(), status
            assert text in unescape(body.decode()), status
        else:
            assert answer["content-type"] == "application/json", status
            assert text in json.loads(body)["error"], status


def test_the_page_and_the_actions_need_a_host_the_json_api_does_not(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    line, _, body = raw(server, f"GET / HTTP/1.0\r\nAccept: {BROWSER_ACCEPT}\r\n\r\n".encode())
    assert line.split()[1] == "400", line
    assert "needs a Host header" in unescape(body.decode())
    query = urlencode({"action": "discard", "queue": "bad", "id": filebase})
    line, _, _ = raw(server, f"GET /entries/confirm?{query} HTTP/1.0\r\n\r\n".encode())
    assert line.split()[1] == "400", line
    form = urlencode({"queue": "bad", "id": filebase, "confirm": "yes", "token": server.token()})
    post = (
        "POST /entries/discard HTTP/1.0\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form)}\r\n\r\n{form}"
    )
    line, _, body = raw(server, post.encode("ascii"))
    assert line.split()[1] == "400", line
    assert "needs a Host header" in unescape(body.decode())
    assert bad_names(config) == [f"{filebase}.psv"]
    # The JSON API answers an HTTP/1.0 client without a Host, as documented.
    line, _, body = raw(server, b"GET /queues HTTP/1.0\r\n\r\n")
    assert line.split()[1] == "200", line
    assert json.loads(body)["queues"]["bad"] == 1


@pytest.mark.parametrize("change", ["replaced", "removed"])
def test_a_changed_or_removed_token_file_refuses_every_action_and_says_why(
    serve: Callable[[], PageServer], config: Site, change: str
) -> None:
    filebase = preserve(config, "out", "stay")
    server = serve()
    old = server.token()
    if change == "replaced":
        server.token_file.write_text("a-new-token-from-elsewhere\n", encoding="ascii")
    else:
        server.token_file.unlink()
    fields = {"queue": "bad", "id": filebase, "confirm": "yes"}
    for token in (old, "a-new-token-from-elsewhere"):
        reply = server.post("discard", fields | {"token": token})
        assert reply.status == 503, reply
        text = unescape(reply.text)
        assert "was changed or removed since this REST runner started" in text
        assert "runnerkit restart" in text
        assert "wrong token" not in text
    assert bad_names(config) == [f"{filebase}.psv"]
    page = server.page()
    assert 'id="token-problem"' in page.text
    assert "Actions need the token in" not in page.text
    assert 'id="token-problem"' in server.confirm("discard", "bad", filebase).text


def test_a_pasted_token_with_surrounding_white_space_is_taken(
    serve: Callable[[], PageServer], config: Site
) -> None:
    filebase = preserve(config, "out", "go")
    server = serve()
    assert 'id="token-problem"' not in server.page().text
    fields = {"queue": "bad", "id": filebase, "confirm": "yes"}
    reply = server.post("discard", fields | {"token": f" \t{server.token()}\r\n "})
    assert reply.status == 200, reply
    assert bad_names(config) == []
