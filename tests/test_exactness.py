"""A message leaves runnerkit as it came in: byte for byte, header for header.

The corpus below holds the messages that email software tends to alter: long and oddly
folded headers, raw 8-bit header bytes, encoded words, MIME structures, CRLF line ends,
a Unix From line, defects, and the eleven forms an outside test found altered in
transit.  Each one must come back from a queue file exactly (as bytes and as parsed
headers), keep every byte but the fields a pipeline edits, and pass through the whole
system (LMTP, ``in``, ``pipeline``, ``out`` to a Maildir) with only the list's own
headers and the Subject prefix changed.  A property test does the same for generated
messages, and old ``RKQ1`` files are still read.
"""

from __future__ import annotations

import base64
import email
import email.message
import hashlib
import json
import re
import smtplib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from email.header import Header, decode_header, make_header
from email.policy import compat32
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runnerkit import queuefile
from runnerkit.config import Configuration
from runnerkit.errors import MetadataError
from runnerkit.lists import MailingList
from runnerkit.message import Message, message_from_bytes
from runnerkit.runners.incoming import IncomingRunner
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.runners.outgoing import OutgoingRunner
from runnerkit.runners.pipeline import PipelineRunner
from runnerkit.switchboard import Switchboard

#: The bound on every wait of the LMTP test.
DEADLINE = 15.0

# The corpus.


def post(
    name: str, headers: bytes, body: bytes = b"Hello, ants.\n", unixfrom: bytes = b""
) -> bytes:
    """A corpus message: To, Message-ID and From, then *headers*, a blank line, *body*.

    The first three fields are the same in every item, so the edits of the tests
    can name them; the Message-ID names the item.
    """
    first = (
        b"To: ants@example.com\nMessage-ID: <%s@corpus.example>\nFrom: Anne <anne@example.org>\n"
    )
    return unixfrom + first % name.encode("ascii") + headers + b"\n" + body


def multipart(name: str, boundary: bytes, headers: bytes, body: bytes) -> bytes:
    """A corpus message whose *body* is MIME parts delimited by *boundary*."""
    mime = b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="%s"\n' % boundary
    return post(name, headers + mime, body)


#: A binary attachment, every byte value three times, base64-encoded in 76-column lines.
ATTACHMENT = base64.encodebytes(bytes(range(256)) * 3)

#: The eleven forms an outside test found altered in transit, by name.
ELEVEN: dict[str, bytes] = {
    # (1) The email parser reads a bare CR as a line end.
    "bare-cr-in-body": post(
        "bare-cr-in-body",
        b"Subject: a bare CR\n",
        b"one line\rwith a bare CR, and one at a line end\r\n.a line SMTP dot-stuffs\n",
    ),
    # (2) The parser ends the Subject at the CR and moves "after" (and all below) into
    # the body.
    "bare-cr-in-subject": post(
        "bare-cr-in-subject", b"Subject: before\rafter\nX-After: moved with it\n"
    ),
    # (3) One column past the 78 that the generator folds at.
    "header-of-79-columns": post(
        "header-of-79-columns", b"Subject: seventy-nine\nX-Width: " + b"w" * 70 + b"\n"
    ),
    # (4) A part's header that the generator would fold.
    "long-content-disposition": multipart(
        "long-content-disposition",
        b"b4",
        b"Subject: a long Content-Disposition\n",
        b"--b4\n"
        b"Content-Type: application/octet-stream\n"
        b'Content-Disposition: attachment; filename="'
        + b"a-very-long-file-name-"
        * 5
        + b'.bin"; size=2304; creation-date="Mon, 1 Jan 2024 00:00:00 +0000"\n'
        b"Content-Transfer-Encoding: base64\n"
        b"\n" + ATTACHMENT + b"--b4--\n",
    ),
    # (5) The generator would add the closing boundary.
    "missing-closing-boundary": multipart(
        "missing-closing-boundary",
        b"b5",
        b"Subject: no closing boundary\n",
        b"--b5\nContent-Type: text/plain\n\npart one\n"
        b"--b5\nContent-Type: text/plain\n\npart two\n",
    ),
    # (6) The generator would write the boundary lines without it.
    "white-space-after-boundary": multipart(
        "white-space-after-boundary",
        b"b6",
        b"Subject: white space after boundaries\n",
        b"--b6  \nContent-Type: text/plain\n\npart one\n--b6 \t\n\npart two\n--b6--  \n",
    ),
    # (7) The parser moves the line, and the headers after it, into the body.
    "non-header-line-in-header-block": post(
        "non-header-line-in-header-block",
        b"Subject: a stray line\nthis line is no header\nX-Later: moved into the body\n",
    ),
    # (8) A continuation line of white space only.
    "white-space-only-continuation": post(
        "white-space-only-continuation",
        b"Subject: white space continues\n   \nX-Next: after it\n",
    ),
    # (9)
    "long-subject": post(
        "long-subject",
        b"Subject: " + b"A rather long subject line that goes on and on " * 4 + b"\n",
    ),
    # (10)
    "list-unsubscribe-long-url": post(
        "list-unsubscribe-long-url",
        b"Subject: unsubscribe\nList-Unsubscribe: <https://lists.example.com/unsubscribe?"
        b"token=" + b"0123456789abcdef" * 8 + b"&list=ants>\n",
    ),
    # (11)
    "one-line-dkim-signature": post(
        "one-line-dkim-signature",
        b"Subject: signed\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
        b"d=example.org; s=sel; h=from:to:subject:message-id; bh="
        + b"Q" * 43
        + b"=; b="
        + b"Zm9vYmFy" * 43
        + b"\n",
    ),
}

#: Every item: the eleven forms and the rest of what email software tends to alter.
CORPUS: dict[str, bytes] = {
    **ELEVEN,
    "long-foldable-header": post(
        "long-foldable-header",
        b"Subject: long but foldable\nReceived: from mail.example.org (mail.example.org "
        b"[192.0.2.1]) by mx.example.com (Postfix) with ESMTPS id 4F2A1B3C4D for "
        b"<ants@example.com>; Mon, 1 Jan 2024 00:00:00 +0000 (UTC)\n",
    ),
    "header-of-998-columns": post(
        "header-of-998-columns", b"Subject: at the SMTP limit\nX-Limit: " + b"y" * 989 + b"\n"
    ),
    "header-over-998-columns": post(
        "header-over-998-columns", b"Subject: past the SMTP limit\nX-Huge: " + b"x" * 1200 + b"\n"
    ),
    "odd-folding": post(
        "odd-folding",
        b"Subject: folded\n\twith a tab\n   and spaces\n \t\n"
        b"X-Same: v\nX-Same:   v\nX-Same:\tv\nX-Empty:\nX-Trailing: white space   \n"
        b"x-lower-case: name\nX-No-Space:value\n",
    ),
    "utf-8-headers": post(
        "utf-8-headers",
        "Subject: Káva tento týden?\nX-Name: Zoë ☃ 雪\n".encode(),
        "Káva v pátek.\n".encode(),
    ),
    "latin-1-headers": post(
        "latin-1-headers",
        "Subject: café crème\nX-Name: Renée\n".encode("latin-1"),
        "Crème brûlée.\n".encode("latin-1"),
    ),
    "encoded-words": post(
        "encoded-words",
        b"Subject: =?utf-8?q?K=C3=A1va?= =?iso-8859-1?b?Y2Fm6Q==?=\n =?utf-8?q?_t=C3=BDden?=\n"
        b"X-Broken: =?unknown-8bit?q?=FF?= =?utf-8?q?unterminated\n",
    ),
    "multipart-with-attachments": multipart(
        "multipart-with-attachments",
        b"XYZ",
        b"Subject: files attached\n",
        b"A preamble.\n"
        b"--XYZ\n"
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        + "héllo\n".encode()
        + b"--XYZ\n"
        b'Content-Type: application/pdf; name="a.pdf"\nContent-Transfer-Encoding: base64\n'
        b'Content-Disposition: attachment; filename="a.pdf"\n\n' + ATTACHMENT + b"--XYZ\n"
        b'Content-Type: image/png; name="b.png"\nContent-Transfer-Encoding: base64\n'
        b'Content-Disposition: inline; filename="b.png"\n\n'
        + base64.encodebytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
        + b"--XYZ--\nAn epilogue.\n",
    ),
    "nested-message": multipart(
        "nested-message",
        b"outer",
        b"Subject: fwd: inner\n",
        b"--outer\nContent-Type: text/plain\n\nSee the attached message.\n"
        b"--outer\nContent-Type: message/rfc822\n\n"
        b"From: inner@example.org\nSubject: inner\nContent-Type: multipart/alternative;"
        b" boundary=inner\n\n--inner\nContent-Type: text/plain\n\ninner text\n"
        b"--inner\nContent-Type: text/html\n\n<p>inner html</p>\n--inner--\n"
        b"--outer--\n",
    ),
    "crlf-line-ends": post(
        "crlf-line-ends",
        b"Subject: CRLF line ends\nX-Folded: one\n two\n",
        b"line one\nline two\n",
    ).replace(b"\n", b"\r\n"),
    "unix-from-line": post(
        "unix-from-line",
        b"Subject: an envelope line\n",
        b"From the start of a line.\n",
        unixfrom=b"From anne@example.org Mon Jan  1 00:00:00 2024\n",
    ),
    "defects": post(
        "defects",
        b"Subject: broken MIME\nMIME-Version: 1.0\nContent-Type: multipart/mixed\n"
        b"Content-Transfer-Encoding: base64\n",
        b"no boundary, and no base64 either\n",
    ),
}

#: The items posted over LMTP: every one, the line over RFC 5322's 998 columns included
#: (accepted and kept, as ``[limits] max_line_length: 0`` says; see runnerkit.limits).
OVER_LMTP = list(CORPUS)

#: Decoded Subjects that the pipeline must produce, after the prefix.
PREFIXED_SUBJECTS = {
    "utf-8-headers": "[Ants] Káva tento týden?",
    "latin-1-headers": "[Ants] café crème",
    "encoded-words": "[Ants] Kávacafé týden",
    "bare-cr-in-subject": "[Ants] before",
}


def line_end(data: bytes) -> bytes:
    """The line end of a corpus item's header block."""
    return b"\r\n" if b"ants@example.com\r\n" in data else b"\n"


def policy_for(data: bytes) -> Any:
    """The compat32 policy that folds headers with *data*'s line ends."""
    return compat32.clone(linesep=line_end(data).decode("ascii"))


def field(data: bytes, name: bytes) -> bytes:
    """The first header field *name* of *data*, with its continuation lines and line ends.

    Lines end at CRLF, CR or LF, as the email parser reads them.
    """
    found = re.search(
        rb"(?:^|\n)("
        + re.escape(name)
        + rb":[^\r\n]*(?:\r\n|\r|\n)(?:[ \t][^\r\n]*(?:\r\n|\r|\n))*)",
        data,
    )
    assert found is not None, (name, data[:200])
    return found.group(1)


def unfolded(headers: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """Header pairs with the folding line breaks of their values removed."""
    return [(name, re.sub(r"(\r\n|\r|\n)(?=[ \t])", "", str(value))) for name, value in headers]


def round_trip(message: email.message.Message) -> Message:
    """*message* encoded into a queue file and decoded again."""
    return queuefile.decode(queuefile.encode(message, {})).message


def assert_same_headers(got: email.message.Message, want: email.message.Message) -> None:
    """The two messages hold the very same header pairs, as text, all the way down."""
    assert got._headers == want._headers  # type: ignore[attr-defined]
    assert all(type(value) is str for _, value in got._headers)  # type: ignore[attr-defined]
    assert got.get_unixfrom() == want.get_unixfrom()
    assert [type(defect) for defect in got.defects] == [type(defect) for defect in want.defects]
    if want.is_multipart():
        got_parts, want_parts = got.get_payload(), want.get_payload()
        assert isinstance(got_parts, list)
        assert isinstance(want_parts, list)
        assert len(got_parts) == len(want_parts)
        for got_part, want_part in zip(got_parts, want_parts, strict=True):
            assert_same_headers(got_part, want_part)


def part(message: email.message.Message, index: int) -> email.message.Message:
    """Part *index* of the multipart *message*."""
    found = message.get_payload(index)
    assert isinstance(found, email.message.Message)
    return found


# Round trips of the corpus.


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_item_comes_out_of_a_switchboard_exact(name: str, tmp_path: Path) -> None:
    data = CORPUS[name]
    board = Switchboard("test", tmp_path / "queue" / "test")
    original = message_from_bytes(data)
    filebase = board.enqueue(original, {"listid": "ants.example.com"})
    dequeued, metadata = board.dequeue(filebase)
    board.finish(filebase)
    assert metadata["listid"] == "ants.example.com"
    assert dequeued.as_bytes(unixfrom=True) == data
    assert dequeued.as_bytes() == original.as_bytes()
    assert dequeued.as_string() == original.as_string()
    assert_same_headers(dequeued, original)


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_item_survives_encode_and_decode_twice(name: str) -> None:
    data = CORPUS[name]
    original = message_from_bytes(data)
    twice = round_trip(round_trip(original))
    assert twice.as_bytes(unixfrom=True) == data
    assert_same_headers(twice, original)
    assert twice.original_size == len(data)


#: The items that the email generator writes otherwise than they came: the corpus tests
#: something only as long as they do.
ALTERED_BY_THE_GENERATOR = [
    *ELEVEN,
    "long-foldable-header",
    "header-of-998-columns",
    "header-over-998-columns",
    "odd-folding",
    "nested-message",
    "crlf-line-ends",
]


@pytest.mark.parametrize("name", ALTERED_BY_THE_GENERATOR)
def test_the_email_generator_alters_the_item(name: str) -> None:
    data = CORPUS[name]
    assert email.message_from_bytes(data).as_bytes() != data


def test_the_unix_from_line_comes_back_only_when_asked_for() -> None:
    data = CORPUS["unix-from-line"]
    dequeued = round_trip(message_from_bytes(data))
    assert dequeued.get_unixfrom() == "From anne@example.org Mon Jan  1 00:00:00 2024"
    assert dequeued.as_bytes(unixfrom=True) == data
    assert dequeued.as_bytes() == data.split(b"\n", 1)[1]


def rendered(message: email.message.Message) -> tuple[str, bytes | str]:
    """``as_bytes()``, or the error it raises and ``as_string()`` when it cannot be written.

    A message parsed from text may hold non-ASCII body text, which ``as_bytes()`` of
    the standard library refuses to encode.
    """
    try:
        return "bytes", message.as_bytes()
    except UnicodeEncodeError:
        return "UnicodeEncodeError", message.as_string()


STDLIB_PARSERS: dict[str, Callable[[bytes], email.message.Message]] = {
    "bytes": email.message_from_bytes,
    "text": lambda data: email.message_from_string(data.decode("utf-8", "surrogateescape")),
}


@pytest.mark.parametrize("parser", STDLIB_PARSERS)
@pytest.mark.parametrize("name", CORPUS)
def test_a_standard_library_message_comes_back_as_it_was(name: str, parser: str) -> None:
    original = STDLIB_PARSERS[parser](CORPUS[name])
    assert type(original) is email.message.Message
    dequeued = round_trip(original)
    assert rendered(dequeued) == rendered(original)
    # Asked for a Unix From line that it lacks, the generator makes one up from the clock.
    unixfrom = original.get_unixfrom() is not None
    assert dequeued.as_string(unixfrom=unixfrom) == original.as_string(unixfrom=unixfrom)
    assert_same_headers(dequeued, original)


# Header edits: every byte is kept but the edited fields.

#: A value that the generator folds when a test adds it.
LONG_VALUE = "a value long enough to be folded by the generator " * 3


def edit(message: email.message.Message) -> None:
    """Edit the top-level headers as a pipeline does: replace, delete and add."""
    message.replace_header("To", "Bees <bees@example.com>")
    del message["Message-ID"]
    message["X-Added"] = "yes"
    message["X-Added-Long"] = LONG_VALUE


def edited_bytes(data: bytes) -> tuple[bytes, bytes]:
    """What :func:`edit` must make of *data*: the bytes but the added fields, and those."""
    eol = line_end(data)
    name = re.search(rb"Message-ID: <([^@]*)@", data)
    assert name is not None
    kept = data.replace(b"To: ants@example.com" + eol, b"To: Bees <bees@example.com>" + eol, 1)
    kept = kept.replace(b"Message-ID: <%s@corpus.example>" % name.group(1) + eol, b"", 1)
    policy = policy_for(data)
    added = policy.fold_binary("X-Added", "yes") + policy.fold_binary("X-Added-Long", LONG_VALUE)
    return kept, added


def assert_edited(got: bytes, data: bytes, message: email.message.Message) -> None:
    """*got* is *data* edited by :func:`edit`, the new fields ending the header block."""
    kept, added = edited_bytes(data)
    assert got.count(added) == 1
    at = got.index(added)
    assert got[:at] + got[at + len(added) :] == kept
    # Parsed again, the fields are where the edits put them, and nothing else moved.
    again = email.message_from_bytes(got)
    assert unfolded(again._headers) == unfolded(message._headers)  # type: ignore[attr-defined]
    assert again.get_unixfrom() == message.get_unixfrom()


@pytest.mark.parametrize("name", CORPUS)
def test_header_edits_keep_every_other_byte(name: str) -> None:
    data = CORPUS[name]
    message = message_from_bytes(data)
    edit(message)
    got = message.as_bytes(unixfrom=True)
    assert_edited(got, data, message)
    if message.get_unixfrom() is not None:
        assert message.as_bytes() == got.split(b"\n", 1)[1]


@pytest.mark.parametrize("name", CORPUS)
def test_header_edits_survive_a_queue_round_trip(name: str, tmp_path: Path) -> None:
    data = CORPUS[name]
    message = message_from_bytes(data)
    edit(message)
    board = Switchboard("test", tmp_path / "queue" / "test")
    filebase = board.enqueue(message, {})
    dequeued, _ = board.dequeue(filebase)
    board.finish(filebase)
    assert dequeued.as_bytes(unixfrom=True) == message.as_bytes(unixfrom=True)
    assert_same_headers(dequeued, message)
    # And edits made after a round trip keep the bytes just the same.
    later = round_trip(message_from_bytes(data))
    edit(later)
    assert later.as_bytes(unixfrom=True) == message.as_bytes(unixfrom=True)
    assert_same_headers(round_trip(later), message)


@pytest.mark.parametrize("name", CORPUS)
def test_a_replaced_subject_stays_where_it_was(name: str) -> None:
    data = CORPUS[name]
    message = message_from_bytes(data)
    message.replace_header("Subject", "[Ants] a new subject")
    new = policy_for(data).fold_binary("Subject", "[Ants] a new subject")
    expected = data.replace(field(data, b"Subject"), new, 1)
    assert message.as_bytes(unixfrom=True) == expected
    assert round_trip(message).as_bytes(unixfrom=True) == expected


def test_a_header_added_after_a_last_line_without_its_line_end_gets_one() -> None:
    message = message_from_bytes(b"To: ants@example.com\nSubject: no line end")
    message["X-Added"] = "yes"
    expected = b"To: ants@example.com\nSubject: no line end\nX-Added: yes\n"
    assert message.as_bytes() == expected
    assert round_trip(message).as_bytes() == expected
    deleted = message_from_bytes(b"Subject: no line end\n folded")
    del deleted["Subject"]
    deleted["Subject"] = "new"
    assert deleted.as_bytes() == b"Subject: new\n"


def test_fields_with_equal_values_keep_their_own_bytes() -> None:
    data = b"X-Same: v\nX-Same:   v\nX-Same:\tv\n\nbody\n"
    message = message_from_bytes(data)
    assert [value for _, value in message.items()] == ["v", "v", "v"]
    message.replace_header("X-Same", "new")
    expected = b"X-Same: new\nX-Same:   v\nX-Same:\tv\n\nbody\n"
    assert message.as_bytes() == expected
    assert round_trip(message).as_bytes() == expected
    # Deleting other fields keeps them apart too.
    mixed = message_from_bytes(b"X-Same: v\nA: a\nX-Same:   v\nA: a\n\nbody\n")
    del mixed["A"]
    mixed.replace_header("X-Same", "new")
    assert mixed.as_bytes() == b"X-Same: new\nX-Same:   v\n\nbody\n"


def test_a_header_object_is_written_as_the_generator_writes_it() -> None:
    data = CORPUS["utf-8-headers"]
    message = message_from_bytes(data)
    value = Header("Káva tento týden " * 5, "utf-8", header_name="X-Coffee")
    message["X-Coffee"] = value  # type: ignore[assignment]
    folded = compat32.fold_binary("X-Coffee", value)  # type: ignore[arg-type]
    expected = data.replace(b"\n\n", b"\n" + folded + b"\n", 1)
    assert message.as_bytes() == expected
    dequeued = round_trip(message)
    assert dequeued.as_bytes() == expected
    # Stored as its parts, it comes back as an equal Header, not as text.
    assert isinstance(dequeued["X-Coffee"], Header)
    assert dequeued["X-Coffee"].encode() == value.encode()


def test_a_new_boundary_has_the_generator_write_the_parts() -> None:
    message = message_from_bytes(ELEVEN["missing-closing-boundary"])
    message.set_boundary("new-boundary")
    written = message.as_bytes()
    assert b"\n--new-boundary\n" in written
    assert b"--b5" not in written
    again = email.message_from_bytes(written)
    # The generator adds the closing boundary, which takes the last line end.
    assert [part(again, index).get_payload() for index in (0, 1)] == ["part one", "part two"]
    assert round_trip(message).as_bytes() == written


# Generated messages.

_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda name: name.lower() not in {"content-type", "mime-version"}
)
#: Bytes of one header line: anything but the line ends.
_LINE_BYTES = st.binary(max_size=40).map(lambda data: data.replace(b"\r", b"").replace(b"\n", b""))
_VALUE_LINES = st.lists(
    st.one_of(
        _LINE_BYTES,
        st.sampled_from([b"caf\xe9", "Káva týden ☃".encode(), b"=?utf-8?q?K=C3=A1va?="]),
        st.integers(70, 1200).map(lambda width: b"L" * width),
    ),
    min_size=1,
    max_size=4,
)
_CONTINUATIONS = st.sampled_from([b" ", b"\t", b"   ", b" \t"])
_AFTER_COLON = st.sampled_from([b" ", b"", b"\t", b"  "])


#: Names and values that parse into equal pairs from fields of different bytes.
_SAME_NAMES = st.sampled_from(["X-Same", "x-same", "Subject"])
_SAME_VALUE = st.just([b"v"])


@st.composite
def generated_fields(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Header fields as (name, bytes without the line end of the last line)."""
    fields = []
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.one_of(_NAMES, _SAME_NAMES))
        lines = draw(st.one_of(_VALUE_LINES, _SAME_VALUE))
        folded = lines[0]
        for line in lines[1:]:
            folded += b"\n" + draw(_CONTINUATIONS) + line
        fields.append((name, name.encode("ascii") + b":" + draw(_AFTER_COLON) + folded))
    return fields


#: A boundary that generated bodies do not hold.
_BOUNDARY = b"=_rk_generated_7f3a9c"


@dataclass(frozen=True)
class Generated:
    """A generated message in pieces, so that a test can say what its bytes must be."""

    #: (name, bytes) of each header field, without the line end of its last line.
    fields: list[tuple[str, bytes]]
    eol: bytes
    #: The Unix From line without its line end, or nothing.
    unixfrom: bytes
    #: What follows the fields: the blank line and the body, or nothing.
    rest: bytes
    #: Whether the last field ends the message without a line end.
    open_end: bool

    def data(self, fields: list[tuple[str, bytes]] | None = None, unixfrom: bool = True) -> bytes:
        """The message's bytes, with *fields* in place of its own."""
        fields = self.fields if fields is None else fields
        out = [self.unixfrom + self.eol] if unixfrom and self.unixfrom else []
        for field in fields:
            last = field is fields[-1] and field is self.fields[-1]
            out.append(field[1] if last and self.open_end else field[1] + self.eol)
        return b"".join(out) + self.rest


@st.composite
def generated_messages(draw: st.DrawFn) -> Generated:
    """Header fields, line ends, a Unix From line, and a body, MIME parts or nothing."""
    fields = draw(generated_fields())
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    unixfrom = draw(st.sampled_from([b"", b"From anne@example.org Mon Jan  1 00:00:00 2024"]))
    ending = draw(st.sampled_from(["body", "parts", "no body", "no line end"]))
    body = draw(st.binary(max_size=200))
    if ending == "parts":
        parts = draw(st.lists(st.binary(max_size=80), min_size=1, max_size=3))
        mime = b'Content-Type: multipart/mixed; boundary="%s"' % _BOUNDARY
        fields.append(("Content-Type", mime))
        body = b"".join(
            b"--%s%sContent-Type: application/octet-stream%s%s%s%s"
            % (_BOUNDARY, eol, eol, eol, part, eol)
            for part in parts
        )
        if draw(st.booleans()):
            body += b"--%s--%s" % (_BOUNDARY, eol)
    fields = [(name, raw.replace(b"\n", eol)) for name, raw in fields]
    rest = eol + body if ending in ("body", "parts") else b""
    return Generated(fields, eol, unixfrom, rest, ending == "no line end")


@settings(max_examples=150, deadline=None)
@given(generated_messages())
def test_generated_messages_come_back_exact(message: Generated) -> None:
    data = message.data()
    original = message_from_bytes(data)
    assert [name for name, _ in original.items()] == [name for name, _ in message.fields]
    dequeued = round_trip(original)
    assert dequeued.as_bytes(unixfrom=True) == data
    assert dequeued.as_bytes() == message.data(unixfrom=False)
    assert_same_headers(dequeued, original)


_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["add", "delete", "replace"]),
        st.integers(0, 20),
        st.sampled_from(["new", "[Ants] a new value", "x" * 100, "Ants <ants.example.com>"]),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(generated_messages(), _EDITS)
def test_generated_messages_keep_their_bytes_through_header_edits(
    message: Generated, edits: list[tuple[str, int, str]]
) -> None:
    original = message_from_bytes(message.data())
    if message.eol not in message.data():
        # One line without its end: new lines end as LF.
        message = replace(message, eol=b"\n")
    policy = compat32.clone(linesep=message.eol.decode("ascii"))

    def folded(name: str, value: str) -> tuple[str, bytes]:
        return name, policy.fold_binary(name, value).removesuffix(message.eol)

    expected = list(message.fields)
    for action, which, value in edits:
        editable = [name for name, _ in expected if name != "Content-Type"]
        if action == "add" or not editable:
            name = f"X-Edit-{which}"
            original[name] = value
            expected.append(folded(name, value))
            continue
        name = editable[which % len(editable)]
        if action == "delete":
            del original[name]
            expected = [field for field in expected if field[0].lower() != name.lower()]
        else:
            original.replace_header(name, value)
            at = next(i for i, (key, _) in enumerate(expected) if key.lower() == name.lower())
            expected[at] = folded(expected[at][0], value)
    assert original.as_bytes(unixfrom=True) == message.data(expected)
    dequeued = round_trip(original)
    assert dequeued.as_bytes(unixfrom=True) == message.data(expected)
    assert dequeued.as_bytes() == message.data(expected, unixfrom=False)
    assert_same_headers(dequeued, original)


# What a queue file cannot store exactly is refused, naming it.


def with_attribute(message: Message) -> None:
    message.note = "kept on the object"  # type: ignore[attr-defined]


def with_attribute_on_a_part(message: Message) -> None:
    part(message, 1).note = "kept on a part"  # type: ignore[attr-defined]


def with_an_int_header(message: Message) -> None:
    message["X-Count"] = 5  # type: ignore[assignment]


def with_a_nonstandard_policy(message: Message) -> None:
    message.policy = compat32.clone(linesep="\r\n")


def with_an_int_payload(message: Message) -> None:
    part(message, 0).set_payload(42)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (with_attribute, r"message has attributes .*: note"),
        (with_attribute_on_a_part, r"message part 1 has attributes .*: note"),
        (with_an_int_header, r"header 'X-Count' holds a int"),
        (with_a_nonstandard_policy, r"policy that is not one of the standard ones"),
        (with_an_int_payload, r"message part 0 has a payload of type int"),
    ],
)
def test_what_cannot_be_stored_exactly_is_refused(
    change: Callable[[Message], None], reason: str, tmp_path: Path
) -> None:
    message = message_from_bytes(CORPUS["multipart-with-attachments"])
    change(message)
    with pytest.raises(MetadataError, match=reason):
        queuefile.encode(message, {})
    board = Switchboard("test", tmp_path / "queue" / "test")
    with pytest.raises(MetadataError, match=reason):
        board.enqueue(message, {})
    assert list(board.queue_directory.iterdir()) == []


# Through the whole system.


class Server:
    """runnerkit's LMTP runner, serving in a thread of its own."""

    def __init__(self, config: Configuration) -> None:
        self.runner = LMTPRunner("lmtp", config=config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="lmtp-exactness")

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as error:
            self.error = error

    @contextmanager
    def serving(self) -> Iterator[int]:
        """Serve while the block runs; yield the port."""
        self.thread.start()
        try:
            if not self.runner.ready.wait(DEADLINE):
                pytest.fail(f"the LMTP runner did not listen within {DEADLINE} s: {self.error!r}")
            yield self.runner.port
        finally:
            self.runner.stop()
            self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the LMTP runner did not stop"
        assert self.error is None


def wire(lf: bytes) -> bytes:
    """*lf* as an MTA sends it, with CRLF line ends."""
    return lf.replace(b"\n", b"\r\n")


def received(name: str) -> bytes:
    """Corpus item *name* as runnerkit queues it: LF line ends (and a bare CR kept)."""
    data = CORPUS[name]
    return data.replace(b"\r\n", b"\n") if line_end(data) == b"\r\n" else data


@pytest.fixture
def ants(create_list: Callable[..., MailingList]) -> MailingList:
    """ants@example.com, display name Ants, with one member."""
    created = create_list("ants@example.com")
    created.subscribe("bea@example.net")
    return created


def test_the_corpus_passes_lmtp_the_pipeline_and_delivery_changing_only_list_headers(
    config: Configuration, ants: MailingList, make_testable_runner: Callable[..., Any]
) -> None:
    with config.pushed("lmtp-exactness", "[lmtp]\nport: 0\n"):
        with Server(config).serving() as port:
            client = smtplib.LMTP("127.0.0.1", port, timeout=DEADLINE)
            try:
                client.ehlo()
                for name in OVER_LMTP:
                    refused = client.sendmail(
                        "anne@example.org", ["ants@example.com"], wire(received(name))
                    )
                    assert refused == {}, name
            finally:
                client.close()
        make_testable_runner(IncomingRunner, "in").run()
        make_testable_runner(PipelineRunner).run()
        make_testable_runner(OutgoingRunner, "out").run()
    maildir = config.get("delivery", "maildir") / ants.list_id / "new"
    delivered: dict[str, bytes] = {}
    for path in maildir.iterdir():
        data = path.read_bytes()
        found = re.search(rb"Message-ID: <([^@]*)@corpus.example>", data)
        assert found is not None
        delivered[found.group(1).decode("ascii")] = data
    assert sorted(delivered) == sorted(OVER_LMTP)
    list_fields = b"".join(
        compat32.fold_binary(name, value)
        for name, value in (
            ("List-Id", "Ants <ants.example.com>"),
            ("List-Post", "<mailto:ants@example.com>"),
            ("X-Runnerkit-Version", version("runnerkit")),
            ("Precedence", "list"),
        )
    )
    for name in OVER_LMTP:
        sent = received(name)
        if name == "unix-from-line":
            sent = sent.split(b"\n", 1)[1]  # an envelope line, not delivered
        data = delivered[name]
        assert data.count(list_fields) == 1, name
        at = data.index(list_fields)
        without = data[:at] + data[at + len(list_fields) :]
        subject = field(without, b"Subject")
        assert without.replace(subject, field(sent, b"Subject"), 1) == sent, name
        # Parsed again: the list's fields end the header block, nothing else moved.
        again, before = email.message_from_bytes(data), email.message_from_bytes(sent)
        names = [key for key, _ in before.items()] + [
            "List-Id",
            "List-Post",
            "X-Runnerkit-Version",
            "Precedence",
        ]
        assert [key for key, _ in again.items()] == names, name
        text = str(make_header(decode_header(again["Subject"])))
        assert text.startswith("[Ants] "), (name, text)
        assert "\ufffd" not in text, (name, text)
        assert text == PREFIXED_SUBJECTS.get(name, text), name


# Old files.


def rkq1(
    body: bytes, metadata: dict[str, Any], *, kind: bytes = b"b", recoveries: int = 0
) -> bytes:
    """A queue file of the earlier format, as ``_decode_rkq1`` describes it."""
    meta = json.dumps(metadata).encode("utf-8")
    fields = b"%d %d %s %d %d" % (len(meta), len(body), kind, recoveries, len(body))
    digest = hashlib.sha256(fields + meta + body).hexdigest().encode("ascii")
    return b"RKQ1 " + fields + b" " + digest + b"\n" + meta + body + queuefile.END


@pytest.mark.parametrize("name", CORPUS)
def test_an_rkq1_file_still_decodes_and_is_rewritten_as_rkq2(name: str) -> None:
    data = CORPUS[name]
    metadata = {"listid": "ants.example.com", "_parsemsg": False, "version": 3}
    old = rkq1(data, metadata, recoveries=2)
    entry = queuefile.decode(old)
    assert entry.message.as_bytes(unixfrom=True) == data
    assert entry.metadata == metadata
    assert entry.recoveries == 2
    assert entry.message.original_size == len(data)
    new = queuefile.with_recoveries(old, 3)
    assert new.startswith(queuefile.MAGIC)
    again = queuefile.decode(new)
    assert again.message.as_bytes(unixfrom=True) == data
    assert_same_headers(again.message, entry.message)
    assert again.metadata == metadata
    assert again.recoveries == 3


def test_an_rkq1_text_file_still_decodes() -> None:
    text = CORPUS["utf-8-headers"].decode("utf-8")
    old = rkq1(text.encode("utf-8"), {"_parsemsg": True}, kind=b"t")
    entry = queuefile.decode(old)
    assert entry.message["Subject"] == "Káva tento týden?"
    assert entry.message.as_string() == email.message_from_string(text).as_string()
    again = queuefile.decode(queuefile.with_recoveries(old, 1))
    assert again.message.as_string() == entry.message.as_string()
    assert_same_headers(again.message, entry.message)


def test_a_switchboard_dequeues_an_rkq1_file(tmp_path: Path) -> None:
    data = CORPUS["bare-cr-in-subject"]
    board = Switchboard("test", tmp_path / "queue" / "test")
    filebase = "1700000000.000000001+" + "0" * 40
    (board.queue_directory / f"{filebase}.pck").write_bytes(rkq1(data, {"listid": "ants"}))
    assert board.files == [filebase]
    message, metadata = board.dequeue(filebase)
    board.finish(filebase)
    assert message.as_bytes() == data
    assert metadata == {"listid": "ants"}
