"""Mailing lists and their members, stored in the :class:`~runnerkit.database.Database`."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runnerkit.database import Database
from runnerkit.errors import (
    AlreadySubscribedError,
    InvalidAddressError,
    ListAlreadyExistsError,
    ListError,
    NoSuchListError,
    NotAMemberError,
)
from runnerkit.language import check_language

_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"({_LABEL}\.)*{_LABEL}")

#: The roles a member can have on a list.
ROLES = ("member", "owner", "moderator")

#: The name of a list, its posting address's part before the '@', lower-cased: a
#: dot-atom (RFC 5322, section 3.2.3) of letters, digits, '-' and '_' only (the
#: characters GNU Mailman accepts in list names by default), so that it is safe as a
#: file name, in a list id (RFC 2919) and before a sub-address suffix (``-bounces``).
_LIST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
#: The longest list name (a posting address's local part), in octets: RFC 5321,
#: section 4.5.3.1.1.
MAX_LIST_NAME = 64
#: The longest list id, which names the list's Maildir: a file name of Linux's file
#: systems (NAME_MAX).
MAX_LIST_ID = 255
#: The longest display name, in characters: it becomes part of header fields
#: (``Subject`` prefix, ``List-Id`` phrase), whose lines RFC 5322 (section 2.1.1)
#: keeps under 998 characters.
MAX_DISPLAY_NAME = 200
#: What a display name cannot hold: control characters (C0, DEL, C1) and Unicode line
#: and paragraph separators, which would break or forge a header field.
_NOT_IN_A_DISPLAY_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_display_name(display_name: str, *, what: str = "display name") -> str:
    """Return *display_name* if it can become part of a header field, else refuse it.

    :raises ListError: it is not a str, holds a control character or line separator
        (a newline would start a forged header field), or is longer than
        :data:`MAX_DISPLAY_NAME` characters; the message names the value.
    """
    if not isinstance(display_name, str):
        raise ListError(f"a {what} must be a str, got {type(display_name).__name__}")
    bad = _NOT_IN_A_DISPLAY_NAME.search(display_name)
    if bad is not None:
        raise ListError(
            f"{what} {display_name!r}: it holds the control character {bad.group()!r}, "
            "which cannot be part of a header field"
        )
    if len(display_name) > MAX_DISPLAY_NAME:
        raise ListError(
            f"{what} {display_name[:40]!r}...: {len(display_name)} characters, more than "
            f"the {MAX_DISPLAY_NAME} a display name may have"
        )
    return display_name


def check_address(address: str, *, fqdn: bool = False) -> tuple[str, str]:
    """Split a plain email address into (local part, domain), checking both.

    :param fqdn: require a domain with at least one dot, as list names need.
    :raises InvalidAddressError: the address is malformed; the message says how.
    """
    if not isinstance(address, str):
        raise InvalidAddressError(f"an address must be a str, got {type(address).__name__}")
    local, at, domain = address.rpartition("@")
    problem = None
    if not at:
        problem = "it has no '@'"
    elif not local:
        problem = "the part before '@' is empty"
    elif not _LOCAL_PART.fullmatch(local):
        problem = f"the part before '@' ({local!r}) has characters an address cannot use"
    elif len(domain) > 253 or not _DOMAIN.fullmatch(domain):
        problem = f"the domain {domain!r} is not a valid host name"
    elif fqdn and "." not in domain:
        problem = f"the domain {domain!r} is not fully qualified (it needs a dot)"
    if problem is not None:
        hint = " (give only the address, and a display name separately)" if "<" in address else ""
        raise InvalidAddressError(f"invalid email address {address!r}: {problem}{hint}")
    return local, domain


@dataclass(frozen=True)
class Member:
    """One subscription of an address to a list in a role."""

    #: The address as it was given.
    address: str
    #: The address lower-cased, as it is matched.
    email: str
    display_name: str
    #: The member's own language, or None to use the list's.
    preferred_language: str | None
    role: str
    #: The fqdn_listname of the list.
    list_name: str


class MailingList:
    """A mailing list; a view of its row in the database."""

    def __init__(self, manager: ListManager, row: tuple[Any, ...]) -> None:
        self._manager = manager
        self._id: int = row[0]
        (
            self.list_name,
            self.mail_host,
            self.fqdn_listname,
            self.list_id,
            self.display_name,
            self.preferred_language,
        ) = (str(value) for value in row[1:7])

    #: The part of the posting address before the '@'.
    list_name: str
    #: The domain of the posting address.
    mail_host: str
    #: The posting address, ``list_name@mail_host``, lower-cased.
    fqdn_listname: str
    #: The RFC 2919 list identifier, ``list_name.mail_host``.
    list_id: str
    display_name: str
    #: The list's language, used for senders who are not members or have none.
    preferred_language: str

    def __repr__(self) -> str:
        return f"<MailingList {self.fqdn_listname!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MailingList) and other.list_id == self.list_id

    def __hash__(self) -> int:
        return hash(self.list_id)

    @property
    def posting_address(self) -> str:
        """The address members post to."""
        return self.fqdn_listname

    # The list's other addresses, as Mailman names them: ``<list_name>-<suffix>@<mail_host>``.

    def _subaddress(self, suffix: str) -> str:
        return f"{self.list_name}-{suffix}@{self.mail_host}"

    @property
    def bounces_address(self) -> str:
        """Where delivery status notifications come back: the envelope sender of list mail."""
        return self._subaddress("bounces")

    @property
    def owner_address(self) -> str:
        """The address that reaches the list's owners."""
        return self._subaddress("owner")

    @property
    def request_address(self) -> str:
        """The address that takes commands (join, leave, help) in a message."""
        return self._subaddress("request")

    @property
    def join_address(self) -> str:
        """A message here asks to join the list as its sender."""
        return self._subaddress("join")

    @property
    def leave_address(self) -> str:
        """A message here asks to leave the list as its sender."""
        return self._subaddress("leave")

    def confirm_address(self, token: str) -> str:
        """The address a reply confirming the request of *token* goes to."""
        return self._subaddress(f"confirm+{token}")

    def subscribe(
        self,
        address: str,
        *,
        display_name: str = "",
        preferred_language: str | None = None,
        role: str = "member",
    ) -> Member:
        """Subscribe *address* in *role*, and commit.

        :raises InvalidAddressError: the address is malformed.
        :raises AlreadySubscribedError: it is subscribed in that role already.
        :raises ListError: the role or language is unknown, or the display name cannot
            be part of a header field (:func:`check_display_name`).
        """
        check_address(address)
        check_display_name(display_name, what="the member's display name")
        if role not in ROLES:
            raise ListError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
        if preferred_language is not None:
            try:
                check_language(preferred_language)
            except ValueError as error:
                raise ListError(f"language {preferred_language!r}: {error}") from None
        db = self._manager.database
        try:
            db.connection.execute(
                "INSERT INTO member (mailing_list, email, address, display_name,"
                " preferred_language, role) VALUES (?, ?, ?, ?, ?, ?)",
                (self._id, address.lower(), address, display_name, preferred_language, role),
            )
        except sqlite3.IntegrityError as error:
            db.abort()
            raise AlreadySubscribedError(
                f"{address!r} is already a {role} of {self.fqdn_listname}"
            ) from error
        db.commit()
        return Member(
            address, address.lower(), display_name, preferred_language, role, self.fqdn_listname
        )

    def unsubscribe(self, address: str, *, role: str = "member") -> None:
        """Remove *address* from the list in *role*, and commit.

        :raises NotAMemberError: it is not subscribed in that role.
        """
        db = self._manager.database
        cursor = db.connection.execute(
            "DELETE FROM member WHERE mailing_list = ? AND email = ? AND role = ?",
            (self._id, address.lower(), role),
        )
        if cursor.rowcount == 0:
            db.abort()
            raise NotAMemberError(f"{address!r} is not a {role} of {self.fqdn_listname}")
        db.commit()

    def get_member(self, address: str, *, role: str = "member") -> Member | None:
        """The subscription of *address* in *role*, or None."""
        row = self._manager.database.connection.execute(
            "SELECT address, email, display_name, preferred_language, role FROM member"
            " WHERE mailing_list = ? AND email = ? AND role = ?",
            (self._id, address.lower(), role),
        ).fetchone()
        return None if row is None else self._member(row)

    def get_members(self, role: str = "member") -> list[Member]:
        """Everyone subscribed in *role*, by address."""
        rows = self._manager.database.connection.execute(
            "SELECT address, email, display_name, preferred_language, role FROM member"
            " WHERE mailing_list = ? AND role = ? ORDER BY email",
            (self._id, role),
        ).fetchall()
        return [self._member(row) for row in rows]

    def _member(self, row: tuple[Any, ...]) -> Member:
        address, email, display_name, language, role = row
        return Member(address, email, display_name, language, role, self.fqdn_listname)

    @property
    def members(self) -> list[Member]:
        """Everyone subscribed as a plain member, by address."""
        return self.get_members("member")

    @property
    def owners(self) -> list[Member]:
        """The list's owners, by address."""
        return self.get_members("owner")


_LIST_COLUMNS = (
    "id, list_name, mail_host, fqdn_listname, list_id, display_name, preferred_language"
)


class ListManager:
    """Creates, finds and deletes mailing lists in one database."""

    def __init__(self, database: Database, *, default_language: str = "en") -> None:
        #: Where the lists live.
        self.database = database
        #: The language of new lists that are not given one.
        self.default_language = default_language

    def create(
        self,
        fqdn_listname: str,
        *,
        display_name: str | None = None,
        preferred_language: str | None = None,
    ) -> MailingList:
        """Create the list whose posting address is *fqdn_listname*, and commit.

        :raises InvalidAddressError: the name is not a fully qualified address, or its
            part before '@' is not a safe list name (letters, digits, '-', '_', dots).
        :raises ListError: the display name cannot be part of a header field
            (:func:`check_display_name`), or the language is unknown.
        :raises ListAlreadyExistsError: a list with that name or list id exists.
        """
        local, domain = check_address(fqdn_listname, fqdn=True)
        local, domain = local.lower(), domain.lower()
        if not _LIST_NAME.fullmatch(local):
            raise InvalidAddressError(
                f"invalid list name {fqdn_listname!r}: the part before '@' may use only "
                "letters, digits, '-', '_' and dots between them (it names the list's "
                "files and addresses)"
            )
        if len(local) > MAX_LIST_NAME or len(f"{local}.{domain}") > MAX_LIST_ID:
            raise InvalidAddressError(
                f"invalid list name {fqdn_listname!r}: the part before '@' may have at most "
                f"{MAX_LIST_NAME} characters (RFC 5321, 4.5.3.1.1), and the list id "
                f"(name.domain), which names its Maildir, at most {MAX_LIST_ID}"
            )
        if display_name is not None:
            check_display_name(display_name, what="the list's display name")
        language = preferred_language or self.default_language
        try:
            check_language(language)
        except ValueError as error:
            raise ListError(f"language {language!r}: {error}") from None
        try:
            self.database.connection.execute(
                "INSERT INTO mailing_list (list_name, mail_host, fqdn_listname, list_id,"
                " display_name, preferred_language, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    local,
                    domain,
                    f"{local}@{domain}",
                    f"{local}.{domain}",
                    display_name if display_name is not None else local.capitalize(),
                    language,
                    datetime.now(UTC).isoformat(),
                ),
            )
        except sqlite3.IntegrityError as error:
            self.database.abort()
            raise ListAlreadyExistsError(
                f"cannot create list {fqdn_listname!r}: a list with the posting address "
                f"{local}@{domain} or the list id {local}.{domain} exists already"
            ) from error
        self.database.commit()
        return self._require(f"{local}@{domain}")

    def get(self, fqdn_listname: str) -> MailingList | None:
        """The list with posting address *fqdn_listname*, or None."""
        return self._one("fqdn_listname", fqdn_listname)

    def get_by_list_id(self, list_id: str) -> MailingList | None:
        """The list with RFC 2919 identifier *list_id*, or None."""
        return self._one("list_id", list_id)

    def find(self, name: str) -> MailingList | None:
        """The list whose posting address or list id is *name*, or None."""
        return self.get(name) or self.get_by_list_id(name)

    def delete(self, mlist: MailingList | str) -> None:
        """Delete a list (and its members), given as a list or its posting address.

        :raises NoSuchListError: there is no such list.
        """
        name = mlist.fqdn_listname if isinstance(mlist, MailingList) else mlist
        cursor = self.database.connection.execute(
            "DELETE FROM mailing_list WHERE fqdn_listname = ?", (str(name).lower(),)
        )
        if cursor.rowcount == 0:
            self.database.abort()
            raise NoSuchListError(f"no mailing list {name!r}")
        self.database.commit()

    def __iter__(self) -> Iterator[MailingList]:
        rows = self.database.connection.execute(
            f"SELECT {_LIST_COLUMNS} FROM mailing_list ORDER BY fqdn_listname"
        ).fetchall()
        return iter([MailingList(self, row) for row in rows])

    @property
    def names(self) -> list[str]:
        """Every list's posting address, sorted."""
        return [mlist.fqdn_listname for mlist in self]

    def _require(self, fqdn_listname: str) -> MailingList:
        mlist = self.get(fqdn_listname)
        if mlist is None:
            raise NoSuchListError(f"no mailing list {fqdn_listname!r}")
        return mlist

    def serves_domain(self, domain: str) -> bool:
        """Whether a list has its posting address at *domain* (any case), by an index:
        the LMTP server asks it of every recipient that is not a list."""
        row = self.database.connection.execute(
            "SELECT 1 FROM mailing_list WHERE mail_host = ? LIMIT 1", (domain.lower(),)
        ).fetchone()
        return row is not None

    def _one(self, column: str, value: str) -> MailingList | None:
        if not isinstance(value, str):
            return None
        row = self.database.connection.execute(
            f"SELECT {_LIST_COLUMNS} FROM mailing_list WHERE {column} = ?", (value.lower(),)
        ).fetchone()
        return None if row is None else MailingList(self, row)
