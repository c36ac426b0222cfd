"""Text from messages made fit for a log line: one line, and bounded in length.

A message's header fields are written by strangers: they may be folded over several
lines, hold CR, LF, NUL or terminal escape sequences, bytes that are not UTF-8, or run
for megabytes.  Written to a log as they are, they split one record over several
lines (a reader, or a log shipper, then sees a forged record), garble an operator's
terminal, or lose the record altogether (a stray surrogate cannot be encoded).

runnerkit's log formatter (:class:`runnerkit.logs.OneLineFormatter`) applies
:func:`one_line` to every record, so no call site can forget; :func:`header_for_log`
is for call sites that name a message by a header field (Message-ID, Subject, From).
"""

from __future__ import annotations

import re

from runnerkit.message import Message, read_header

#: The longest value shown whole, in characters; the rest is cut and counted.
MAX_VALUE = 1000
#: The longest header value shown whole by :func:`header_for_log`, in characters.
MAX_HEADER = 200

#: What :func:`escape` replaces: control characters (C0, DEL, C1; among them every
#: character ``str.splitlines`` ends a line at, but for the two Unicode separators
#: below), the Unicode line and paragraph separators, the bidirectional controls that
#: make a terminal show text out of order, and lone surrogates (bytes that were not
#: UTF-8, as ``surrogateescape`` keeps them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: A line break followed by white space: folding (RFC 5322, section 2.2.3).
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")


def escape(text: str) -> str:
    """*text* with every character of :data:`_UNSAFE` written as a backslash escape.

    ``\\n``, ``\\r`` and ``\\t`` by name; a byte kept as a surrogate as ``\\xNN``, the
    byte; any other as ``\\xNN`` or ``\\uNNNN``, its code point.  Backslashes are left
    as they are: the result is for reading, not for decoding.
    """
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def bounded(text: str, limit: int = MAX_VALUE) -> str:
    """*text*, cut after *limit* characters with a note of how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit:,} more characters]"


def one_line(value: object, limit: int = MAX_VALUE) -> str:
    """*value* as text for a log line: cut to *limit* characters, then :func:`escape`-d.

    The result holds no line break or other control character, and is at most
    ``6 * limit`` characters long plus the note of what was cut (every character may
    become a six-character escape).
    """
    text = value if isinstance(value, str) else str(value)
    return escape(bounded(text, limit))


def header_for_log(
    msg: Message, name: str, missing: str = "(none)", *, keep_undecodable: bool = False
) -> str:
    """The first *name* header field of *msg* as a log shows it, or *missing*.

    The value is read as :func:`~runnerkit.message.read_header` reads it (8-bit bytes
    and RFC 2047 encoded words decoded), unfolded (RFC 5322, section 2.2.3), stripped,
    and made :func:`one_line`, at most :data:`MAX_HEADER` characters before escaping.

    :param keep_undecodable: read 8-bit bytes as UTF-8 (RFC 6532) where they are, and
        show each byte that is not as ``\\xNN``, as a message's body is shown, rather
        than reading a value that is not all UTF-8 as Latin-1.  The entries of a queue
        (:mod:`runnerkit.entries`: the operator page, ``runnerkit queue list`` and
        ``show``) are shown so: ``été \\xff\\xfe``, not ``Ã©tÃ© ÿþ``.
    """
    value = read_header(msg, name, keep_undecodable=keep_undecodable)
    if value is None:
        return missing
    return one_line(_FOLD.sub("", value).strip(), MAX_HEADER)
