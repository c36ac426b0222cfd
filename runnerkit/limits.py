"""Limits on what a message may be, checked where mail enters runnerkit.

The LMTP server and ``runnerkit inject`` read every message with :func:`read_message`,
so a message that runnerkit could never handle is refused at the door, with a reason,
instead of failing in a runner later.  The limits are those of ``[limits]``, with the
size limit of ``[lmtp] max_message_size``:

``max_message_size`` (``[lmtp]``, default 10,485,760 octets)
    The whole message, in octets.  10 MiB is Postfix's ``message_size_limit``
    (10,240,000) rounded to a power of two; RFC 5321 sets no limit.
``max_mime_depth`` (default 100, at most 100)
    How deep MIME parts may nest: a message without parts is level 0, a part of it
    level 1, and so on.  100 is Postfix's ``mime_nesting_limit``, and the most a queue
    file holds (:data:`runnerkit.msgtree.MAX_DEPTH`): the email parser and the queue
    file work one level at a time, so structures nested hundreds deep exhaust the
    interpreter's stack.
``max_header_fields`` (default 1,000; 0 for no limit)
    Header fields in one header block, the message's or a part's.  RFC 5322 sets no
    limit; real mail has tens, a message that went through 50 hops about 150
    (Postfix's ``hopcount_limit`` is 50 ``Received`` fields).  Every header look-up
    reads all of them, so thousands make each runner slow.
``max_header_field_size`` (default 102,400; 0 for no limit)
    Octets in one header field: its name, colon and value, continuation lines
    included, line ends (and the white space that starts the value) not counted.
    RFC 5322 limits lines, not fields; 102,400 is Postfix's ``header_size_limit``.
``max_line_length`` (default 0, no limit; else 998 or more)
    Octets in one line, its line end not counted.  RFC 5322 (section 2.1.1) says a
    line MUST NOT be longer than 998, but real mail has longer ones (HTML written on
    one line, long encoded words), and Postfix, Exim and GNU Mailman all accept
    them.  So does runnerkit, by default, keeping such lines as they are; only the
    message size bounds them.  A site that wants RFC 5322's limit sets 998.  (A
    smarthost that refuses long lines refuses them at delivery, as it would from any
    other sender.)

Every limit that a message goes beyond is refused for good, never "try again later":
the same message can never pass.  :class:`~runnerkit.errors.MessageLimitError` says
which limit, by its key, and how far beyond it the message is.
"""

from __future__ import annotations

import email.message
from collections.abc import Iterator

from runnerkit.config import LimitsSettings
from runnerkit.errors import MessageError, MessageLimitError
from runnerkit.message import Message, message_from_bytes


def read_message(data: bytes, limits: LimitsSettings, max_size: int = 0) -> Message:
    """*data* parsed into a :class:`~runnerkit.message.Message` that keeps within *limits*.

    :param data: the message, with LF or CRLF line ends.
    :param limits: the ``[limits]`` section.
    :param max_size: the largest message in octets (``[lmtp] max_message_size``);
        0 for no limit.
    :raises MessageLimitError: the message goes beyond a limit; its ``limit`` names
        the key (``max_message_size``, ``max_line_length``, ``max_mime_depth``,
        ``max_header_fields`` or ``max_header_field_size``).
    """
    if max_size and len(data) > max_size:
        raise MessageLimitError(
            f"the message is {len(data):,} octets, more than [lmtp] max_message_size "
            f"({max_size:,})",
            limit="max_message_size",
        )
    if limits.max_line_length:
        check_lines(data, limits.max_line_length)
    try:
        msg = message_from_bytes(data)
    except MessageError as error:
        # The parser gives up only on parts nested hundreds deep, far beyond the
        # deepest max_mime_depth allows.
        raise MessageLimitError(
            f"its MIME structure is too deep to parse: far more than [limits] "
            f"max_mime_depth ({limits.max_mime_depth}) levels of parts",
            limit="max_mime_depth",
        ) from error
    check_structure(msg, limits)
    return msg


def check_lines(data: bytes, max_length: int) -> None:
    """Refuse *data* if one of its lines is longer than *max_length* octets.

    Lines end where the email parser ends them (CRLF, LF or CR), and their line end
    is not counted.

    :raises MessageLimitError: naming the first such line, by number, and its length.
    """
    lines = data.splitlines()
    if max(map(len, lines), default=0) <= max_length:
        return
    number, line = next((n, line) for n, line in enumerate(lines, 1) if len(line) > max_length)
    raise MessageLimitError(
        f"line {number:,} is {len(line):,} octets long, more than [limits] max_line_length "
        f"({max_length:,}; RFC 5322 section 2.1.1 allows 998)",
        limit="max_line_length",
    )


def check_structure(msg: Message, limits: LimitsSettings) -> None:
    """Refuse *msg* if its parts nest too deep or a header block is too big.

    The parts are walked without recursion, so any depth is measured safely.

    :raises MessageLimitError: naming the limit and where the message goes beyond it
        (``the message``, or ``part 2.1``: the first part of its second part).
    """
    for part, where, depth in _parts(msg):
        if depth > limits.max_mime_depth:
            raise MessageLimitError(
                f"its MIME structure is too deep: more than [limits] max_mime_depth "
                f"({limits.max_mime_depth}) levels of parts",
                limit="max_mime_depth",
            )
        fields = len(part)
        if limits.max_header_fields and fields > limits.max_header_fields:
            raise MessageLimitError(
                f"{where} has {fields:,} header fields, more than [limits] "
                f"max_header_fields ({limits.max_header_fields:,})",
                limit="max_header_fields",
            )
        if limits.max_header_field_size:
            for name, value in part.raw_items():
                text = str(value)
                size = len(name) + 1 + len(text) - text.count("\n") - text.count("\r")
                if size > limits.max_header_field_size:
                    raise MessageLimitError(
                        f"{where} has a header field of {size:,} octets, more than "
                        f"[limits] max_header_field_size "
                        f"({limits.max_header_field_size:,})",
                        limit="max_header_field_size",
                    )


def _parts(msg: email.message.Message) -> Iterator[tuple[email.message.Message, str, int]]:
    """Each part of *msg*, *msg* first, with where it is and how deep: depth first."""
    stack: list[tuple[email.message.Message, str, int]] = [(msg, "", 0)]
    while stack:
        part, number, depth = stack.pop()
        yield part, f"part {number}" if number else "the message", depth
        payload = part.get_payload()
        if isinstance(payload, list):
            for index, child in reversed(list(enumerate(payload, 1))):
                if isinstance(child, email.message.Message):
                    where = f"{number}.{index}" if number else str(index)
                    stack.append((child, where, depth + 1))
