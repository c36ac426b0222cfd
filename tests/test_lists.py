"""Error paths of mailing lists: bad addresses, duplicates, unknown names, rollbacks."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runnerkit.config import Configuration
from runnerkit.errors import (
    AlreadySubscribedError,
    InvalidAddressError,
    ListAlreadyExistsError,
    ListError,
    NoSuchListError,
    NotAMemberError,
    UnsafeNameError,
)
from runnerkit.fsio import path_in
from runnerkit.lists import MailingList, check_address
from runnerkit.message import message_from_string
from runnerkit.runners.outgoing import OutgoingRunner

CreateList = Callable[..., MailingList]

MALFORMED = [
    pytest.param("example.com", "no '@'", id="no-at"),
    pytest.param("", "no '@'", id="empty"),
    pytest.param("@example.com", "before '@' is empty", id="empty-local"),
    pytest.param("anne smith@example.com", "characters an address cannot use", id="space"),
    pytest.param(" anne@example.com", "characters an address cannot use", id="leading-space"),
    pytest.param("anne..smith@example.com", "characters an address cannot use", id="dot-dot"),
    pytest.param(".anne@example.com", "characters an address cannot use", id="leading-dot"),
    pytest.param("anne@", "is not a valid host name", id="empty-domain"),
    pytest.param("anne@example..com", "is not a valid host name", id="empty-label"),
    pytest.param("anne@-example.com", "is not a valid host name", id="leading-hyphen"),
    pytest.param("anne@exa_mple.com", "is not a valid host name", id="underscore"),
    pytest.param("anne@example.com ", "is not a valid host name", id="trailing-space"),
    pytest.param("anne@exam ple.com", "is not a valid host name", id="space-in-domain"),
    pytest.param("anne@" + "a" * 64 + ".com", "is not a valid host name", id="long-label"),
    pytest.param("anne@" + "a." * 127 + "com", "is not a valid host name", id="long-domain"),
    pytest.param("anne@example.com\n", "is not a valid host name", id="newline"),
    pytest.param("Anne Person <anne@example.com>", "display name separately", id="display-name"),
    pytest.param("<anne@example.com>", "display name separately", id="angle-brackets"),
]


@pytest.mark.parametrize(("address", "expected"), MALFORMED)
def test_check_address_refuses_malformed_addresses(address: str, expected: str) -> None:
    with pytest.raises(InvalidAddressError) as info:
        check_address(address)
    assert f"invalid email address {address!r}" in str(info.value)
    assert expected in str(info.value)


@pytest.mark.parametrize("address", [None, 42, b"anne@example.com", ["anne@example.com"]])
def test_check_address_refuses_non_strings(address: Any) -> None:
    with pytest.raises(InvalidAddressError, match="must be a str"):
        check_address(address)


def test_check_address_accepts_plain_addresses() -> None:
    assert check_address("anne.person+tag@mail.Example.com") == (
        "anne.person+tag",
        "mail.Example.com",
    )
    assert check_address("root@localhost") == ("root", "localhost")
    with pytest.raises(InvalidAddressError, match="not fully qualified"):
        check_address("root@localhost", fqdn=True)


@pytest.mark.parametrize(("address", "expected"), MALFORMED)
def test_create_list_refuses_malformed_names(
    config: Configuration, create_list: CreateList, address: str, expected: str
) -> None:
    with pytest.raises(InvalidAddressError, match="invalid email address"):
        create_list(address)
    assert config.lists.names == []


def test_create_list_needs_a_fully_qualified_name(
    config: Configuration, create_list: CreateList
) -> None:
    with pytest.raises(InvalidAddressError, match="needs a dot"):
        create_list("test@localhost")
    with pytest.raises(InvalidAddressError, match="must be a str"):
        create_list(None)
    assert config.lists.names == []


@pytest.mark.parametrize(("address", "expected"), MALFORMED)
def test_subscribe_refuses_malformed_addresses(
    create_list: CreateList, address: str, expected: str
) -> None:
    mlist = create_list("test@example.com")
    with pytest.raises(InvalidAddressError, match="invalid email address"):
        mlist.subscribe(address)
    assert mlist.members == []


def test_duplicate_list(config: Configuration, create_list: CreateList) -> None:
    create_list("test@example.com")
    for name in ("test@example.com", "TEST@Example.COM"):
        with pytest.raises(ListAlreadyExistsError) as info:
            create_list(name)
        assert f"cannot create list {name!r}" in str(info.value)
    assert config.lists.names == ["test@example.com"]


def test_duplicate_list_id(config: Configuration, create_list: CreateList) -> None:
    # Two different posting addresses, one list id: a.b.example.com.
    first = create_list("a.b@example.com")
    with pytest.raises(ListAlreadyExistsError, match=r"list id a\.b\.example\.com"):
        create_list("a@b.example.com")
    assert config.lists.names == ["a.b@example.com"]
    assert config.lists.get_by_list_id("a.b.example.com") == first


def test_errors_are_list_errors() -> None:
    for error in (
        InvalidAddressError,
        ListAlreadyExistsError,
        NoSuchListError,
        AlreadySubscribedError,
        NotAMemberError,
    ):
        assert issubclass(error, ListError)


def test_unknown_role(create_list: CreateList) -> None:
    mlist = create_list("test@example.com")
    with pytest.raises(ListError, match="unknown role 'admin'; roles are: member, owner"):
        mlist.subscribe("anne@example.com", role="admin")
    assert mlist.get_member("anne@example.com", role="admin") is None
    assert mlist.members == []


@pytest.mark.parametrize("language", ["English", "e", "en US", "EN", "fr_"])
def test_unknown_language(config: Configuration, create_list: CreateList, language: str) -> None:
    mlist = create_list("test@example.com")
    expected = re.escape(f"language {language!r}: expected a language code")
    with pytest.raises(ListError, match=expected):
        mlist.subscribe("anne@example.com", preferred_language=language)
    assert mlist.members == []
    with pytest.raises(ListError, match=expected):
        create_list("other@example.com", preferred_language=language)
    assert config.lists.names == ["test@example.com"]


def test_double_subscription(create_list: CreateList) -> None:
    mlist = create_list("test@example.com")
    mlist.subscribe("Anne@Example.com")
    with pytest.raises(
        AlreadySubscribedError, match=re.escape("already a member of test@example.com")
    ):
        mlist.subscribe("anne@example.COM")
    # Another role is another subscription.
    mlist.subscribe("anne@example.com", role="owner")
    assert [member.address for member in mlist.members] == ["Anne@Example.com"]
    assert [member.email for member in mlist.owners] == ["anne@example.com"]


def test_unsubscribe_of_a_non_member(create_list: CreateList) -> None:
    mlist = create_list("test@example.com")
    mlist.subscribe("anne@example.com", role="owner")
    with pytest.raises(NotAMemberError, match=re.escape("'anne@example.com' is not a member of")):
        mlist.unsubscribe("anne@example.com")
    with pytest.raises(NotAMemberError, match=re.escape("'bart@example.com' is not a owner of")):
        mlist.unsubscribe("bart@example.com", role="owner")
    assert [member.email for member in mlist.owners] == ["anne@example.com"]
    mlist.unsubscribe("ANNE@example.com", role="owner")
    assert mlist.owners == []
    with pytest.raises(NotAMemberError):
        mlist.unsubscribe("anne@example.com", role="owner")


def test_delete_of_a_missing_list(config: Configuration, create_list: CreateList) -> None:
    mlist = create_list("test@example.com")
    with pytest.raises(NoSuchListError, match=re.escape("no mailing list 'missing@example.com'")):
        config.lists.delete("missing@example.com")
    config.lists.delete(mlist)
    with pytest.raises(NoSuchListError):
        config.lists.delete(mlist)
    with pytest.raises(NoSuchListError):
        config.lists.delete("test@example.com")
    assert config.lists.names == []


def test_lookups_are_case_insensitive(config: Configuration, create_list: CreateList) -> None:
    mlist = create_list("Test@Example.COM")
    assert mlist.fqdn_listname == "test@example.com"
    assert mlist.list_id == "test.example.com"
    assert config.lists.get("TEST@EXAMPLE.COM") == mlist
    assert config.lists.get_by_list_id("Test.Example.Com") == mlist
    mlist.subscribe("Anne@Example.com", preferred_language="fr")
    member = mlist.get_member("aNNe@example.com")
    assert member is not None
    assert member.preferred_language == "fr"
    assert member.address == "Anne@Example.com"


def test_lookups_of_missing_lists(config: Configuration) -> None:
    assert config.lists.get("missing@example.com") is None
    assert config.lists.get_by_list_id("missing.example.com") is None
    assert config.lists.get(None) is None  # type: ignore[arg-type]
    assert config.lists.get_by_list_id(42) is None  # type: ignore[arg-type]


def test_lists_survive_abort(config: Configuration, create_list: CreateList) -> None:
    mlist = create_list("test@example.com")
    mlist.subscribe("anne@example.com")
    config.abort()
    assert config.lists.names == ["test@example.com"]
    assert [member.email for member in mlist.members] == ["anne@example.com"]
    # Another connection sees them: they were committed, not merely pending.
    other = sqlite3.connect(config.database.path)
    try:
        rows = other.execute("SELECT fqdn_listname FROM mailing_list").fetchall()
        members = other.execute("SELECT email FROM member").fetchall()
    finally:
        other.close()
    assert rows == [("test@example.com",)]
    assert members == [("anne@example.com",)]


def test_a_failed_create_leaves_the_database_usable(
    config: Configuration, create_list: CreateList
) -> None:
    create_list("test@example.com")
    with pytest.raises(ListAlreadyExistsError):
        create_list("test@example.com")
    create_list("other@example.com")
    config.abort()
    assert config.lists.names == ["other@example.com", "test@example.com"]


# Names that become paths.


@pytest.mark.parametrize(
    "name",
    [
        "/srv/elsewhere/x@example.com",
        "a/b@example.com",
        "ok.example.com/new/z@example.com",
        "../up@example.com",
        "..@example.com",
        ".hidden@example.com",
        "back\\slash@example.com",
        "plus+sign@example.com",
        "percent%x@example.com",
        "quote'x@example.com",
        "l" * 65 + "@example.com",
        "ants@" + ".".join(["d" * 63] * 3 + ["d" * 61]),
    ],
)
def test_a_list_name_must_be_safe_as_a_file_name(
    config: Configuration, create_list: CreateList, name: str
) -> None:
    with pytest.raises(InvalidAddressError, match=r"invalid (list name|email address)"):
        create_list(name)
    assert config.lists.names == []


def test_list_names_of_letters_digits_dashes_underscores_and_dots(
    create_list: CreateList,
) -> None:
    for name in ("a-b_c.d@example.com", "0day@example.com", "UPPER.case@Example.com"):
        create_list(name)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "it is empty"),
        (".", "it starts with a dot"),
        ("..", "it starts with a dot"),
        (".new", "it starts with a dot"),
        ("../etc", "it starts with a dot"),
        ("a/../../b", "it holds a path separator"),
        ("/etc/passwd", "it holds a path separator"),
        ("a\\b", "it holds a path separator"),
        ("a\0b", "it holds a NUL character"),
        ("x" * 256, "it is longer than 255 bytes"),
        ("\u00e9" * 128, "it is longer than 255 bytes"),
    ],
)
def test_path_in_keeps_a_name_inside_its_directory(
    tmp_path: Path, name: str, problem: str
) -> None:
    with pytest.raises(UnsafeNameError) as raised:
        path_in(tmp_path, name)
    assert str(raised.value) == (
        f"the name {name!r} cannot be an entry of {str(tmp_path)!r}: {problem}"
    )
    assert path_in(tmp_path, "ant.example.com") == tmp_path / "ant.example.com"


def test_a_list_id_that_is_not_a_safe_name_is_shunted_not_delivered_elsewhere(
    config: Configuration, create_list: CreateList, tmp_path: Path
) -> None:
    """A list made before names were checked: its delivery stops, with the reason."""
    mlist = create_list("ant@example.com")
    mlist.subscribe("anne@example.com")
    outside = tmp_path / "outside"
    config.lists.database.connection.execute(
        "UPDATE mailing_list SET list_id = ? WHERE list_id = 'ant.example.com'",
        (str(outside),),
    )
    config.commit()
    mlist = config.lists.get("ant@example.com")
    assert mlist is not None
    runner = OutgoingRunner("out")
    msg = message_from_string("From: anne@example.com\nSubject: hi\n\nhello\n")
    config.switchboards["out"].enqueue(msg, listid=mlist.list_id)
    runner.run_once()
    assert not outside.exists()
    assert len(config.switchboards["shunt"].files) == 1


def test_whether_a_domain_is_served_is_one_indexed_lookup(
    config: Configuration, create_list: CreateList
) -> None:
    """LMTP asks it for every recipient that is no list: with 20,001 lists, a scan of
    them all took 54 ms on the event loop, stalling every other session."""
    create_list("ants@Example.com")
    assert config.lists.serves_domain("EXAMPLE.COM")
    assert not config.lists.serves_domain("example.org")
    plan = config.lists.database.connection.execute(
        "EXPLAIN QUERY PLAN SELECT 1 FROM mailing_list WHERE mail_host = ? LIMIT 1",
        ("example.com",),
    ).fetchall()
    assert any("INDEX mailing_list_mail_host" in str(row[-1]) for row in plan), plan
