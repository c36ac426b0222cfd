"""The pipeline's handlers: small steps that change a list message on its way out.

A handler is built once per pipeline runner from the configuration, so that a bad
setting fails when the runner starts rather than on the first message.  It is then
called as ``handler(mlist, msg, msgdata)`` for every message, in the order that
``[pipeline] handlers`` names them, and changes *msg* (or *msgdata*) in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from email.header import Header
from email.utils import formataddr
from importlib.metadata import PackageNotFoundError, version

from runnerkit.config import Configuration
from runnerkit.errors import ConfigurationError
from runnerkit.lists import MailingList
from runnerkit.message import Message, read_header
from runnerkit.typing import MsgData

#: One step of the pipeline: changes the message (and its metadata) in place.
Handler = Callable[[MailingList, Message, MsgData], None]
#: Builds a handler from the configuration, checking the settings it uses.
HandlerFactory = Callable[[Configuration], Handler]

#: The value of ``[pipeline] subject_prefix`` that turns the prefix off.
NO_PREFIX = "none"
#: The Subject given to a message that has none, after the prefix.
NO_SUBJECT = "(no subject)"


def list_headers(config: Configuration) -> Handler:
    """Build the ``list-headers`` handler.

    It sets ``List-Id`` (RFC 2919, with the list's display name), ``List-Post``
    (RFC 2369), ``X-Runnerkit-Version``, and ``Precedence: list`` unless the sender
    chose a precedence already.  Earlier values of the other three are replaced, so a
    message that passes through a list twice carries one of each.
    """
    try:
        runnerkit_version = version("runnerkit")
    except PackageNotFoundError:  # pragma: no cover - runnerkit is always installed
        runnerkit_version = "unknown"

    def add_list_headers(mlist: MailingList, msg: Message, msgdata: MsgData) -> None:
        _set_header(msg, "List-Id", formataddr((mlist.display_name, mlist.list_id)))
        _set_header(msg, "List-Post", f"<mailto:{mlist.posting_address}>")
        _set_header(msg, "X-Runnerkit-Version", runnerkit_version)
        if msg.get("Precedence") is None:
            msg["Precedence"] = "list"

    return add_list_headers


def subject_prefix(config: Configuration) -> Handler:
    """Build the ``subject-prefix`` handler from ``[pipeline] subject_prefix``.

    The prefix may use ``{list_name}`` and ``{display_name}``; the value ``none`` (or
    an empty one) turns it off.  A Subject that carries the prefix already, as replies
    do, is left alone, so the prefix appears once.

    :raises ConfigurationError: the prefix uses another field or is not a valid format.
    """
    template = config.pipeline.subject_prefix.strip()
    if template.lower() == NO_PREFIX:
        template = ""
    try:
        template.format(list_name="list", display_name="List")
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigurationError(
            f"[pipeline] subject_prefix {template!r} is not a valid prefix ({error!r}); "
            "it may use {list_name} and {display_name}, or be 'none'"
        ) from error

    def add_subject_prefix(mlist: MailingList, msg: Message, msgdata: MsgData) -> None:
        prefix = template.format(list_name=mlist.list_name, display_name=mlist.display_name)
        if not prefix:
            return
        subject = read_header(msg, "Subject") or ""
        if prefix.casefold() in subject.casefold():
            return
        _set_header(msg, "Subject", f"{prefix} {subject or NO_SUBJECT}")

    return add_subject_prefix


#: Every handler, by the name ``[pipeline] handlers`` uses.
HANDLERS: Mapping[str, HandlerFactory] = {
    "list-headers": list_headers,
    "subject-prefix": subject_prefix,
}


def load_handlers(config: Configuration) -> list[tuple[str, Handler]]:
    """Build the handlers that ``[pipeline] handlers`` names, in its order.

    :raises ConfigurationError: a name is not a known handler, or a handler's own
        settings are wrong.
    """
    names = config.pipeline.handlers
    unknown = [name for name in names if name not in HANDLERS]
    if unknown:
        raise ConfigurationError(
            f"[pipeline] handlers names unknown handler(s) {', '.join(map(repr, unknown))}; "
            f"known handlers: {', '.join(sorted(HANDLERS))}"
        )
    return [(name, HANDLERS[name](config)) for name in names]


def _set_header(msg: Message, name: str, value: str) -> None:
    """Give *msg* exactly one *name* header, where the first one was if there was one.

    Non-ASCII text becomes an RFC 2047 encoded word, which every reader decodes (raw
    8-bit text is read as U+FFFD by a compat32 reader).  The other headers are kept as
    they are, and so, byte for byte, as received.
    """
    wanted = name.lower()
    fields = msg._headers
    places = [index for index, (key, _) in enumerate(fields) if key.lower() == wanted]
    stored = value if value.isascii() else Header(value, "utf-8", header_name=name).encode()
    if not places:
        msg[name] = stored
        return
    first = places[0]
    fields[first] = (fields[first][0], stored)
    for index in reversed(places[1:]):
        del fields[index]
