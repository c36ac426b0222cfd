"""The queue file format: exact round trips, and refusal of every damaged or hostile file."""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import random
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from runnerkit import queuefile
from runnerkit.config import Configuration
from runnerkit.errors import MetadataError, QueueError, QueueFileError
from runnerkit.message import Message, message_from_bytes, message_from_string
from runnerkit.message import header_text as text_of_header
from runnerkit.switchboard import Switchboard

#: An 8-bit message, as it would arrive over SMTP: Latin-1 bytes in a header and the body.
RAW_8BIT = (
    b"From nobody Mon Jan  1 00:00:00 2024\n"
    b"From: Ren\xe9 <rene@example.com>\n"
    b"To: test@example.com\n"
    b"Subject: caf\xe9 cr\xe8me\n"
    b"Content-Type: text/plain; charset=iso-8859-1\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"Cr\xe8me br\xfbl\xe9e, \xa4 and \xff.\n"
)

#: A message parsed from text whose headers and body hold non-ASCII characters.
TEXT_NON_ASCII = """\
From: Zoë Person <zoe@example.com>
To: test@example.com
Subject: héllo ☃

Grüße, 雪.
"""

#: Metadata with every type a queue file can hold, nested.
METADATA: dict[str, Any] = {
    "none": None,
    "bool": True,
    "int": -(2**70),
    "float": 1.5,
    "str": "héllo ☃ \x00 \n",
    "list": [1, "two", None, [3.25]],
    "tuple": (1, "two", (3, 4), ()),
    "set": {1, "a", (2, 3)},
    "frozenset": frozenset({1, frozenset({2, 3})}),
    "bytes": b"\x00\xff raw \n",
    "datetime": datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "datetime_offset": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
    "naive_datetime": datetime(2024, 1, 2, 3, 4, 5),
    "date": date(2024, 2, 29),
    "timedelta": timedelta(days=-1, seconds=5, microseconds=7),
    "inf": math.inf,
    "minus_inf": -math.inf,
    "keys": {
        1: "int",
        None: "none",
        (1, "x"): "tuple",
        b"k": "bytes",
        frozenset({1}): "frozenset",
        date(2024, 1, 1): "date",
        1.5: "float",
        "1": "str",
    },
    "tag_as_key": {"__rk__": "tuple", "items": "not a tag"},
    "nested": {"a": [{"b": (b"\x01", {2, 3})}, {"c": {4: [timedelta(0), (None,)]}}]},
    "empty": {},
    "_parsemsg": False,
}


def assert_same(got: Any, want: Any) -> None:
    """Assert that *got* equals *want* with the very same types, all the way down."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, dict):
        assert len(got) == len(want)
        for key, value in want.items():
            matches = [k for k in got if type(k) is type(key) and k == key]
            assert len(matches) == 1, (key, got)
            assert_same(matches[0], key)
            assert_same(got[matches[0]], value)
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for got_item, want_item in zip(got, want, strict=True):
            assert_same(got_item, want_item)
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want
        if isinstance(want, datetime):
            assert got.utcoffset() == want.utcoffset()


def craft(
    meta: bytes,
    body: bytes = b"Subject: crafted\n\nhi\n",
    *,
    kind: bytes = b"b",
    recoveries: bytes = b"0",
    size: bytes = b"-1",
) -> bytes:
    """A queue file with a correct checksum around whatever *meta* and *body* hold."""
    fields = b"%d %d %s %s %s" % (len(meta), len(body), kind, recoveries, size)
    digest = hashlib.sha256(fields + meta + body).hexdigest().encode("ascii")
    return b"RKQ1 " + fields + b" " + digest + b"\n" + meta + body + b"\nRKQ-END\n"


@pytest.fixture
def encoded() -> bytes:
    """A valid queue file of moderate size, with metadata of many types."""
    return queuefile.encode(message_from_bytes(RAW_8BIT), METADATA)


# Round trips.


def test_round_trip_of_an_8bit_message_parsed_from_bytes() -> None:
    msg = message_from_bytes(RAW_8BIT)
    data = queuefile.encode(msg, {"listid": "test.example.com"})
    entry = queuefile.decode(data)
    assert entry.message.as_bytes(unixfrom=True) == RAW_8BIT
    assert entry.message.original_size == len(RAW_8BIT)
    assert entry.message.get_payload(decode=True) == "Crème brûlée, ¤ and ÿ.\n".encode("latin-1")
    assert entry.metadata == {"listid": "test.example.com"}
    assert entry.recoveries == 0
    assert isinstance(entry.message, Message)


def header_text(value: str) -> str:
    """A header's text with any RFC 2047 encoded words decoded."""
    return str(make_header(decode_header(value)))


def test_round_trip_of_a_text_message_with_non_ascii() -> None:
    msg = message_from_string(TEXT_NON_ASCII)
    entry = queuefile.decode(queuefile.encode(msg, {}))
    # The generator may write non-ASCII headers as encoded words; the text is the same.
    assert [(name, header_text(value)) for name, value in entry.message.items()] == [
        ("From", "Zoë Person <zoe@example.com>"),
        ("To", "test@example.com"),
        ("Subject", "héllo ☃"),
    ]
    assert entry.message.get_payload() == "Grüße, 雪.\n"
    assert entry.message.original_size == len(TEXT_NON_ASCII.encode("utf-8"))


def test_round_trip_of_plaintext_and_raw_bytes() -> None:
    text = "From: anne@example.com\nSubject: plain\n\nJust text, ü.\n"
    entry = queuefile.decode(queuefile.encode(text, {"_parsemsg": True}))
    assert entry.message.as_string() == text
    assert entry.message.get_payload() == "Just text, ü.\n"
    assert entry.metadata == {"_parsemsg": True}
    entry = queuefile.decode(queuefile.encode(RAW_8BIT, {}))
    assert entry.message.as_bytes(unixfrom=True) == RAW_8BIT


@pytest.mark.parametrize("parse", [message_from_string, message_from_bytes])
def test_no_unix_from_line_is_invented(parse: Any) -> None:
    text = "To: test@example.com\nSubject: no sender\n\nbody\n"
    msg = parse(text.encode("ascii") if parse is message_from_bytes else text)
    entry = queuefile.decode(queuefile.encode(msg, {}))
    assert entry.message.get_unixfrom() is None
    assert entry.message.sender == ""
    assert entry.message.as_string() == text


def test_round_trip_of_every_metadata_type() -> None:
    nan_data = {"nan": math.nan, "deep": [{"nan": (math.nan,)}]}
    entry = queuefile.decode(queuefile.encode("Subject: x\n\n", {**METADATA, **nan_data}))
    assert_same(entry.metadata, {**METADATA, **nan_data})


def test_assert_same_sees_type_changes() -> None:
    # The round-trip test is only as good as its comparison.
    for got, want in (
        ((1, 2), [1, 2]),
        ({1}, frozenset({1})),
        ({1: "a"}, {"1": "a"}),
        (1, True),
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1)),
    ):
        with pytest.raises(AssertionError):
            assert_same(got, want)


@pytest.mark.parametrize(
    ("metadata", "key", "type_name"),
    [
        ({"obj": object()}, "obj", "object"),
        ({"ok": 1, "array": bytearray(b"x")}, "array", "bytearray"),
        ({"path": Path("/tmp")}, "path", "PosixPath"),
        ({"number": 1j}, "number", "complex"),
        ({"nested": [1, {"deep": (2, {3: object()})}]}, "nested", "object"),
        ({"message": Message()}, "message", "Message"),
        ({"odd_key": {object(): 1}}, "odd_key", "object"),
        ({"gen": (i for i in range(3))}, "gen", "generator"),
    ],
)
def test_unsupported_metadata_is_refused(
    metadata: dict[str, Any], key: str, type_name: str
) -> None:
    with pytest.raises(MetadataError) as info:
        queuefile.encode("Subject: x\n\n", metadata)
    assert f"metadata key {key!r} holds a {type_name}" in str(info.value)
    assert isinstance(info.value, QueueError)


def test_with_recoveries_keeps_the_message_and_metadata_bytes(encoded: bytes) -> None:
    updated = queuefile.with_recoveries(encoded, 2)
    assert updated != encoded
    header, payload = encoded.split(b"\n", 1)
    new_header, new_payload = updated.split(b"\n", 1)
    assert new_payload == payload
    # RKQ2 <length> <recoveries> <crc32>: the length stays, the count and check change.
    assert new_header.split(b" ")[:2] == header.split(b" ")[:2]
    assert new_header.split(b" ")[2] == b"2"
    entry = queuefile.decode(updated)
    assert entry.recoveries == 2
    assert entry.message.as_bytes(unixfrom=True) == RAW_8BIT
    assert_same(entry.metadata, METADATA)


def test_with_recoveries_refuses_a_bad_file(encoded: bytes) -> None:
    with pytest.raises(QueueFileError):
        queuefile.with_recoveries(encoded[:-1], 1)
    with pytest.raises(QueueFileError):
        queuefile.with_recoveries(b"garbage", 1)


# Damaged files.


def test_every_truncation_is_refused(encoded: bytes) -> None:
    assert queuefile.decode(encoded).metadata  # the whole file is fine
    for length in range(len(encoded)):
        with pytest.raises(QueueFileError, match="not a valid runnerkit queue file"):
            queuefile.decode(encoded[:length], source=f"cut at {length}")


def test_extra_bytes_are_refused(encoded: bytes) -> None:
    for tail in (b"\n", b"x", b"\nRKQ-END\n", encoded):
        with pytest.raises(QueueFileError):
            queuefile.decode(encoded + tail)


def test_random_bit_flips_are_refused(encoded: bytes) -> None:
    original = queuefile.decode(encoded)
    rng = random.Random(20240229)
    refused = 0
    for _ in range(1000):
        damaged = bytearray(encoded)
        position = rng.randrange(len(damaged))
        damaged[position] ^= 1 << rng.randrange(8)
        try:
            entry = queuefile.decode(bytes(damaged))
        except QueueFileError:
            refused += 1
        else:  # pragma: no cover - the checksum should have caught it
            assert entry.message.as_bytes() == original.message.as_bytes()
            assert_same(entry.metadata, original.metadata)
    assert refused == 1000


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "does not start with", id="empty"),
        pytest.param(b"\x00" * 64, "does not start with", id="zeros"),
        pytest.param(bytes(range(256)) * 4, "does not start with", id="garbage"),
        pytest.param(b"RKQ3 1 2 b 0 -1 ab\n", "does not start with", id="wrong-version"),
        pytest.param(b"RKQ2", "does not start with", id="current-magic-only-cut"),
        pytest.param(b"RKQ2 ", "header line is missing", id="current-no-header"),
        pytest.param(b"RKQ2 1 0\n", "malformed", id="current-too-few-fields"),
        pytest.param(b"RKQ2 1 0 abc\n", "malformed", id="current-short-check"),
        pytest.param(b"RKQ2 a 0 00000000\n", "bad number", id="current-not-a-number"),
        pytest.param(b"RKQ2 -1 0 00000000\n", "negative", id="current-negative"),
        pytest.param(b"RKQ2 +1 0 00000000\n", "signed", id="current-signed"),
        pytest.param(b"RKQ2 1 0 0000000g\n", "bad number", id="current-bad-check"),
        pytest.param(b"RKQ2 %d 0 00000000\n" % 10**30, "truncated", id="current-huge"),
        pytest.param(b"rkq1 1 2 b 0 -1 ab\n", "does not start with", id="lower-case-magic"),
        pytest.param(b"RKQ1", "does not start with", id="magic-only-cut"),
        pytest.param(b"RKQ1 ", "header line is missing", id="no-header"),
        pytest.param(b"RKQ1 " + b"9" * 1000 + b"\n{}", "too long", id="huge-header-line"),
        pytest.param(b"RKQ1 1 2 b 0\n", "malformed", id="too-few-fields"),
        pytest.param(b"RKQ1 1 2 x 0 -1 ab\n", "malformed", id="unknown-kind"),
        pytest.param(b"RKQ1 a 2 b 0 -1 ab\n", "bad number", id="not-a-number"),
        pytest.param(b"RKQ1 1 2 b -1 -1 ab\n", "negative", id="negative"),
        pytest.param(b"RKQ1 %d 2 b 0 -1 ab\n" % 10**30, "truncated or damaged", id="huge"),
        pytest.param(b"From nobody\nSubject: an mbox message\n\n", "does not start", id="mbox"),
        pytest.param(pickle.dumps({"version": 3}), "does not start with", id="pickle"),
    ],
)
def test_foreign_and_malformed_files_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(QueueFileError) as info:
        queuefile.decode(data, source="/queue/x.pck")
    assert "/queue/x.pck is not a valid runnerkit queue file" in str(info.value)
    assert reason in str(info.value)


def test_crafted_files_with_a_good_checksum() -> None:
    # Sanity: the crafting helper makes files that decode.
    assert queuefile.decode(craft(b'{"a":1}')).metadata == {"a": 1}
    crafted = {
        b"[]": "not a mapping",
        b'"text"': "not a mapping",
        b"{": "does not decode",
        b"\xff{}": "does not decode",
        b'{"a":NaN}': "",  # JSON extensions are harmless: they are just floats
        b'{"a":{"__rk__":"pickle","data":"gASV"}}': "unknown tag 'pickle'",
        b'{"a":{"__rk__":"bytes","b64":"!!!"}}': "does not decode",
        b'{"a":{"__rk__":"datetime"}}': "does not decode",
        b'{"a":{"__rk__":"datetime","value":"yesterday"}}': "does not decode",
        b'{"a":{"__rk__":"timedelta","value":[1]}}': "does not decode",
        b'{"a":{"__rk__":"timedelta","value":5}}': "does not decode",
        b'{"a":{"__rk__":"float","value":"one"}}': "does not decode",
        b'{"a":{"__rk__":"set","items":[[1]]}}': "does not decode",
        b'{"a":{"__rk__":"dict","items":[[{"k":1},2]]}}': "does not decode",
        b"[" * 100_000 + b"]" * 100_000: "does not decode",
    }
    for meta, reason in crafted.items():
        if not reason:
            assert math.isnan(queuefile.decode(craft(meta)).metadata["a"])
            continue
        with pytest.raises(QueueFileError) as info:
            queuefile.decode(craft(meta))
        assert reason in str(info.value), meta[:60]
    with pytest.raises(QueueFileError, match="negative"):
        queuefile.decode(craft(b"{}", recoveries=b"-1"))


def test_a_deeply_nested_message_is_refused() -> None:
    body = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (level, level)
        for level in range(3000)
    )
    with pytest.raises(QueueFileError):
        queuefile.decode(craft(b"{}", body))


def make_exploit(marker: Path) -> bytes:
    """A pickle that creates the directory *marker* when it is loaded."""

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(marker),))

    return pickle.dumps(Exploit())


def test_a_crafted_pickle_never_runs(
    config: Configuration, test_queue: Switchboard, tmp_path: Path
) -> None:
    # Sanity: the payload is live, so that its silence below means something.
    proof = tmp_path / "proof"
    pickle.loads(make_exploit(proof))
    assert proof.is_dir()

    marker = tmp_path / "pwned"
    payload = make_exploit(marker)
    filebase = f"1700000000.000000001+{'ab' * 20}"
    (test_queue.queue_directory / f"{filebase}.pck").write_bytes(payload)
    assert test_queue.files == [filebase]
    with pytest.raises(QueueFileError, match="not a valid runnerkit queue file"):
        test_queue.dequeue(filebase)
    test_queue.finish(filebase, preserve=True)
    preserved = config.switchboards["bad"].queue_directory / f"{filebase}.psv"
    assert preserved.read_bytes() == payload

    # Recovery reads .bak files too, and must not run them either.
    (test_queue.queue_directory / f"{filebase}.bak").write_bytes(payload)
    preserved.unlink()
    test_queue.recover_backup_files()
    assert preserved.read_bytes() == payload
    assert test_queue.files == []
    assert not marker.exists()


def test_a_text_message_keeps_its_non_ascii_headers_and_sender_through_a_queue() -> None:
    original = message_from_string(
        "From: Zoë Person <zoe@example.com>\nSubject: héllo\n  wörld\n\nbody é\n"
    )
    entry = queuefile.decode(queuefile.encode(original, {}))
    assert entry.message["From"] == "Zoë Person <zoe@example.com>"
    assert entry.message["Subject"] == "héllo\n  wörld"
    assert entry.message.sender == "zoe@example.com"
    assert entry.message.as_text() == original.as_text()


def test_datetimes_keep_their_zone_and_fold() -> None:
    values = {
        "zoned": datetime(2021, 3, 13, 11, 0, tzinfo=ZoneInfo("America/New_York")),
        "folded": datetime(2021, 11, 7, 1, 30, fold=1),
        "fixed": datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        "utc": datetime(2020, 1, 1, tzinfo=UTC),
    }
    back = queuefile.decode(queuefile.encode(message_from_string("S: x\n\n"), values)).metadata
    for key, value in values.items():
        assert back[key] == value
        assert back[key].tzinfo == value.tzinfo, key
        assert back[key].fold == value.fold, key
    # A day later across the daylight-saving change, as the sender would compute it.
    assert back["zoned"] + timedelta(days=1) == values["zoned"] + timedelta(days=1)
    assert (back["zoned"] + timedelta(days=1)).utcoffset() == timedelta(hours=-4)


def test_a_time_zone_that_cannot_be_rebuilt_is_refused() -> None:
    class Odd(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta:
            return timedelta(0)

    with pytest.raises(MetadataError, match=r"'when'.*time zone of type Odd"):
        queuefile.encode(
            message_from_string("S: x\n\n"), {"when": datetime(2020, 1, 1, tzinfo=Odd())}
        )


def test_the_tag_key_is_reserved_at_the_top_of_the_metadata() -> None:
    with pytest.raises(MetadataError, match="reserved"):
        queuefile.encode(message_from_string("S: x\n\n"), {"__rk__": "mine"})
    # Nested, it is stored like any other key.
    nested = {"inner": {"__rk__": "mine"}}
    assert (
        queuefile.decode(queuefile.encode(message_from_string("S: x\n\n"), nested)).metadata
        == nested
    )


def test_a_mime_structure_too_deep_is_refused_by_name() -> None:
    text = "Subject: deep\n"
    for level in range(150):
        text += f'Content-Type: multipart/mixed; boundary="b{level}"\n\n--b{level}\n'
    text += "Content-Type: text/plain\n\nleaf\n"
    with pytest.raises(MetadataError, match="too deep"):
        queuefile.encode(message_from_string(text), {})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(
            "\U0001f381 =?UTF-8?B?Q2xhaW0geW91ciBwcml6ZQ==?= \U0001f381 aujourd\u2019hui",
            "\U0001f381 Claim your prize \U0001f381 aujourd\u2019hui",
            id="utf8-text-around-a-word",
        ),
        pytest.param(
            "R\xe9ponse =?utf-8?q?caf=C3=A9?= offre", "R\xe9ponse caf\xe9 offre", id="latin-1-text"
        ),
        pytest.param("=?utf-8?q?a?= =?utf-8?q?b?=", "ab", id="adjacent-words"),
        pytest.param("=?x-unknown?q?zz?= ok", "=?x-unknown?q?zz?= ok", id="unknown-charset"),
        pytest.param("K\udcc3\udca1va", "K\xe1va", id="raw-utf8-bytes"),
        pytest.param("caf\udce9", "caf\xe9", id="raw-latin-1-bytes"),
    ],
)
def test_header_text_decodes_raw_bytes_and_each_encoded_word(value: str, text: str) -> None:
    assert text_of_header(value) == text


def test_enqueue_errors_name_the_problem() -> None:
    msg = message_from_string("Subject: x\n\n")
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(MetadataError, match="nested too deep"):
        queuefile.encode(msg, {"deep": deep})
    injected = message_from_bytes(b"Subject: x\n\n")
    injected["X-Bad"] = "a\nInjected: yes"
    with pytest.raises(MetadataError, match="header of the message cannot be written"):
        queuefile.encode(injected, {})


def test_a_messagepack_timestamp_in_the_metadata_is_refused() -> None:
    import zlib

    import msgpack

    document = msgpack.packb(
        [{"ts": msgpack.Timestamp(1_700_000_000, 5)}, "text", "Subject: x\n\n", None, -1]
    )
    fields = b"%d 0" % len(document)
    check = zlib.crc32(document, zlib.crc32(fields))
    data = b"RKQ2 " + fields + b" %08x\n" % check + document + queuefile.END
    with pytest.raises(QueueFileError, match="MessagePack extension"):
        queuefile.decode(data)
