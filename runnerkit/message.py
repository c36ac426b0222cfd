"""runnerkit's :class:`Message`, an :class:`email.message.Message` that knows its sender."""

from __future__ import annotations

import email
import email.message
import io
import re
from email.errors import HeaderParseError
from email.generator import Generator
from email.header import decode_header
from email.policy import compat32
from email.utils import getaddresses
from typing import Any

from runnerkit.errors import MessageError

#: Where the email parser breaks lines (``email.feedparser``): CRLF, CR or LF.
_LINE_END = re.compile(rb"\r\n|\r|\n")
#: An RFC 2047 encoded word, and the white space between two of them.
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_BETWEEN_WORDS = re.compile(r"(?<=\?=)[ \t\r\n]+(?==\?[^?\s]+\?[bBqQ]\?)")
#: A header line as the parser reads one (``email.feedparser.headerRE``), or its name.
_HEADER_NAME = re.compile(rb"[\041-\071\073-\176]*:")

#: Why a message nested hundreds of MIME levels deep cannot be read.
TOO_DEEP_TO_PARSE = "the message cannot be read: its MIME structure is too deep to parse"

#: The headers that name a message's sender, in order of preference.  ``from_`` is the
#: envelope sender of a Unix ``From `` line.
SENDER_HEADERS = ("from", "from_", "reply-to", "sender")


class _VerbatimHeaderGenerator(Generator):
    """A generator that writes non-ASCII header text as it is, not RFC 2047-encoded.

    A message parsed from text keeps its header values as text; the stock generator
    would encode any non-ASCII value, so ``From: Zoë <zoe@example.com>`` would come
    back as an encoded word and no longer name its sender plainly.
    """

    def _write_headers(self, msg: email.message.Message) -> None:
        newline: str = self._NL  # type: ignore[attr-defined]  # set by flatten()
        policy = self.policy if self.policy is not None else msg.policy
        for name, value in msg.raw_items():
            if isinstance(value, str) and not value.isascii():
                self.write(f"{name}: {value}{newline}")
            else:
                self.write(policy.fold(name, value))
        self.write(newline)


class Message(email.message.Message):
    """An email message with the conveniences runners need.

    ``original_size`` is the size in bytes of the text it was parsed from, when known,
    and otherwise the size of its serialized form.

    A message parsed from bytes keeps those bytes.  As long as only its top-level
    headers change (a pipeline adds ``List-Id``, rewrites ``Subject`` ...),
    :meth:`as_bytes` gives the received bytes with those edits applied, as an MTA edits
    a queue file: every other byte is the sender's, even where the email parser and
    generator would change it (long or oddly folded headers, a bare CR, a missing
    closing boundary, a stray line in the header block).  Once its body or its parts
    change, it is written by the generator, as any message.
    """

    _original_size: int | None = None
    #: True when parsed from bytes: then :meth:`as_bytes` reproduces it faithfully,
    #: while a message parsed from text is reproduced faithfully by :meth:`as_string`.
    parsed_from_bytes = False
    #: The bytes it was parsed from, and what it looked like then (see :func:`_state`).
    _raw: bytes | None = None
    _pristine: Any = None
    #: Whether the (text) payload, as parsed, is the tail of :attr:`_raw`.
    _payload_is_suffix = False

    def keep_raw(self, data: bytes) -> None:
        """Remember *data* as the bytes this message was parsed from, as it is now."""
        self._raw = data
        self._pristine = _state(self)

    def exact_bytes(self, unixfrom: bool = False) -> bytes | None:
        """The received bytes with the header edits made since, or None.

        None when the message was not parsed from bytes, when more than its top-level
        headers changed, or when its header block cannot be matched to the parsed
        headers line by line (then the generator writes it).
        """
        raw, pristine = self._raw, self._pristine
        if raw is None or not _same_body(self, pristine):
            return None
        headers, envelope = self._headers, self._unixfrom  # type: ignore[attr-defined]
        unchanged = tuple(headers) == pristine[0] and envelope == pristine[2]
        if unchanged and (unixfrom or envelope is None):
            return raw
        if _is_multipart(self) and self.get_boundary() != _boundary_of(pristine[0]):
            # The received parts are delimited by the old boundary: only the generator
            # writes them with the new one.
            return None
        return _edited(self, raw, pristine, unixfrom)

    def __delitem__(self, name: str) -> None:
        """Delete every *name* header; the others stay the very pairs they were.

        The standard library makes each kept pair anew, and then fields with equal
        pairs (``X: v`` and ``X:   v``) could no longer be told apart by
        :meth:`exact_bytes`.
        """
        wanted = name.lower()
        kept = [pair for pair in self._headers if pair[0].lower() != wanted]  # type: ignore[has-type]
        self._headers = kept

    def as_bytes(self, unixfrom: bool = False, policy: Any = None) -> bytes:
        """The message as bytes: :meth:`exact_bytes` when it has them, else generated.

        With a *policy*, always generated under that policy.
        """
        if policy is None:
            exact = self.exact_bytes(unixfrom)
            if exact is not None:
                return exact
        return super().as_bytes(unixfrom=unixfrom, policy=policy)

    @property
    def original_size(self) -> int:
        """Size in bytes of the text this message was parsed from."""
        if self._original_size is None:
            return len(self.as_bytes())
        return self._original_size

    @original_size.setter
    def original_size(self, size: int) -> None:
        self._original_size = size

    def as_text(self, unixfrom: bool = False) -> str:
        """The message as text, with non-ASCII header values written as they are."""
        buffer = io.StringIO()
        _VerbatimHeaderGenerator(buffer, mangle_from_=False).flatten(self, unixfrom=unixfrom)
        return buffer.getvalue()

    @property
    def senders(self) -> list[str]:
        """Every sender address, lower-cased, in the order of :data:`SENDER_HEADERS`."""
        found: list[str] = []
        for header in SENDER_HEADERS:
            if header == "from_":
                unixfrom = self.get_unixfrom()
                values = [unixfrom.split()[1]] if unixfrom and len(unixfrom.split()) > 1 else []
            else:
                values = [str(value) for value in self.get_all(header, [])]
            for _, address in getaddresses(values):
                if address and address.lower() not in found:
                    found.append(address.lower())
        return found

    @property
    def sender(self) -> str:
        """The first of :attr:`senders`, or ``''`` when the message names none."""
        senders = self.senders
        return senders[0] if senders else ""


def read_header(
    message: email.message.Message, name: str, *, keep_undecodable: bool = False
) -> str | None:
    """The text of *message*'s first *name* header (see :func:`header_text`), or None.

    Read from the header as stored, not through ``message[name]``: compat32 hands out
    a header with 8-bit bytes as an :class:`email.header.Header` whose text has each
    such byte replaced by U+FFFD.
    """
    wanted = name.lower()
    for key, value in message.raw_items():
        if key.lower() == wanted:
            return header_text(value, keep_undecodable=keep_undecodable)
    return None


def shown_sender(message: Message) -> str:
    """The first address of :attr:`Message.senders`, as an operator is shown it: read
    from the headers as stored, 8-bit bytes as :func:`header_text` reads them with
    *keep_undecodable* (``josé@example.com``, not ``jos\ufffd\ufffd@example.com``);
    ``''`` when the message names none."""
    for header in SENDER_HEADERS:
        if header == "from_":
            unixfrom = message.get_unixfrom()
            values = [unixfrom.split()[1]] if unixfrom and len(unixfrom.split()) > 1 else []
        else:
            values = [
                header_text(value, keep_undecodable=True)
                for key, value in message.raw_items()
                if key.lower() == header
            ]
        for _, address in getaddresses(values):
            if address:
                return address.lower()
    return ""


def header_text(value: object, *, keep_undecodable: bool = False) -> str:
    """A header value as the text a reader sees: 8-bit bytes and RFC 2047 words decoded.

    A message parsed from bytes keeps a header's raw 8-bit bytes as surrogate escapes
    (compat32); they are read as UTF-8 (RFC 6532), else as Latin-1, never replaced by
    U+FFFD.  With *keep_undecodable* (for showing a value to an operator), every run
    of bytes that is UTF-8 is decoded and each byte that is not stays a surrogate
    escape, which :func:`runnerkit.logtext.escape` shows as ``\\xNN``: ``été \\xff``,
    never a whole value turned to Latin-1 mojibake (``Ã©tÃ©``) for one stray byte.
    Encoded words (RFC 2047) are decoded as far as their charsets allow.
    """
    text = str(value)
    if not text.isascii():
        raw = text.encode("utf-8", "surrogateescape")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = (
                raw.decode("utf-8", "surrogateescape")
                if keep_undecodable
                else raw.decode("latin-1")
            )
    if "=?" not in text:
        return text
    # Each encoded word on its own: the text around them may be non-ASCII already,
    # which decode_header() would mangle; white space between two words goes (RFC 2047
    # section 6.2).
    return _ENCODED_WORD.sub(_decoded_word, _BETWEEN_WORDS.sub("", text))


def _decoded_word(match: re.Match[str]) -> str:
    word = match.group(0)
    try:
        ((data, charset),) = decode_header(word)
        if isinstance(data, str):
            return data
        return str(data.decode(charset or "ascii", "replace"))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return word  # an unknown charset: the word stays as it was written


def message_from_string(text: str) -> Message:
    """Parse *text* into a :class:`Message`, recording its size."""
    if not isinstance(text, str):
        raise TypeError(f"message_from_string() needs a str, got {type(text).__name__}")
    message = _parsed(email.message_from_string, text)
    message.original_size = len(text.encode("utf-8", "surrogateescape"))
    return message


def message_from_bytes(data: bytes) -> Message:
    """Parse *data* into a :class:`Message`, recording its size."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"message_from_bytes() needs bytes, got {type(data).__name__}")
    raw = bytes(data)
    message = _parsed(email.message_from_bytes, raw)
    message.parsed_from_bytes = True
    message.original_size = len(raw)
    try:
        message.keep_raw(raw)
    except RecursionError:
        # Recording the parts recurses once per level, as the parser does: a structure
        # the parser only just managed is too deep here.
        raise MessageError(TOO_DEEP_TO_PARSE) from None
    payload = message._payload  # type: ignore[attr-defined]
    if type(payload) is str and raw.endswith(payload.encode("ascii", "surrogateescape")):
        # The body is the bytes' tail, as it usually is: a queue file stores it once.
        message._payload_is_suffix = True
    return message


def _parsed(parse: Any, source: str | bytes) -> Message:
    """*source* parsed into a :class:`Message` by *parse*.

    :raises MessageError: the parser gives up: it recurses once per level of MIME
        parts, so a structure nested hundreds deep exhausts the interpreter's stack.
    """
    try:
        message: Message = parse(source, Message)
    except RecursionError:
        raise MessageError(TOO_DEEP_TO_PARSE) from None
    return message


def _state(message: email.message.Message) -> tuple[Any, ...]:
    """What a message looks like now, to tell later whether it changed (and how)."""
    payload = message._payload  # type: ignore[attr-defined]
    parts = tuple((part, _state(part)) for part in payload) if isinstance(payload, list) else None
    return (
        tuple(message._headers),  # type: ignore[attr-defined]
        payload,
        message._unixfrom,  # type: ignore[attr-defined]
        message.preamble,
        message.epilogue,
        message._charset,  # type: ignore[attr-defined]
        message._default_type,  # type: ignore[attr-defined]
        parts,
    )


def _same_body(message: email.message.Message, state: tuple[Any, ...]) -> bool:
    """Whether everything but the top-level headers and Unix From is as in *state*."""
    payload = message._payload  # type: ignore[attr-defined]
    if payload is not state[1] or message.preamble != state[3] or message.epilogue != state[4]:
        return False
    if message._charset is not state[5] or message._default_type != state[6]:  # type: ignore[attr-defined]
        return False
    parts = state[7]
    if parts is None:
        return True
    if len(payload) != len(parts):
        return False
    for part, (was, part_state) in zip(payload, parts, strict=True):
        if part is not was or not _same_body(part, part_state):
            return False
        if tuple(part._headers) != part_state[0] or part._unixfrom != part_state[2]:
            return False
    return True


def _header_fields(raw: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    """Split *raw* as the email parser reads it: (Unix From line, header fields, rest).

    Each field is a header line with its continuation lines, line ends included; the
    rest is everything after the last field (the blank line, or the first line that is
    no header, and the body).  None when the parser would drop or move a line of the
    header block in a way the fields cannot follow.
    """
    unixfrom = b""
    fields: list[bytes] = []
    position = 0
    first = True
    while position < len(raw):
        end = _LINE_END.search(raw, position)
        stop = len(raw) if end is None else end.end()
        line = raw[position:stop]
        content = line if end is None else raw[position : end.start()]
        if first and content.startswith(b"From "):
            unixfrom = line
        elif content[:1] in (b" ", b"\t") and content:
            if not fields:
                return None  # a first line that continues nothing: the parser drops it
            fields[-1] += line
        elif not content:
            break  # the blank line that ends the header block
        elif content.startswith(b"From "):
            return None  # a misplaced envelope line: the parser drops it
        elif _HEADER_NAME.match(content):
            fields.append(line)
        else:
            break  # no header: the parser moves it, and all after it, into the body
        first = False
        position = stop
    return unixfrom, fields, raw[position:]


def _is_multipart(message: email.message.Message) -> bool:
    """Whether *message* holds parts that a boundary delimits."""
    parts = isinstance(message._payload, list)  # type: ignore[attr-defined]
    return parts and message.get_content_maintype() == "multipart"


def _boundary_of(headers: tuple[tuple[str, Any], ...]) -> str | None:
    """The multipart boundary that the header fields *headers* declare, if any."""
    probe = email.message.Message()
    probe._headers = list(headers)  # type: ignore[attr-defined]
    return probe.get_boundary()


def _edited(
    message: Message, raw: bytes, pristine: tuple[Any, ...], unixfrom: bool
) -> bytes | None:
    """The received bytes with the header edits applied, or None if they do not align."""
    split = _header_fields(raw)
    if split is None:
        return None
    raw_from, fields, rest = split
    before = pristine[0]
    if len(fields) != len(before):
        return None
    for (name, _value), field in zip(before, fields, strict=True):
        if field[: len(name) + 1] != f"{name}:".encode("ascii", "surrogateescape"):
            return None
    headers = message._headers
    # Which received field each header is.  A header kept since parsing is the very
    # pair parsed from its field; fields with equal pairs ("X: v" and "X:   v") differ
    # in their bytes, so equality only decides for pairs made anew (an edit that set
    # the same value), and never for a value that is not text (an unhashable Header).
    source: list[int | None] = [None] * len(headers)
    free = set(range(len(before)))
    where = {id(pair): index for index, pair in enumerate(before)}
    for position, header in enumerate(headers):
        index = where.get(id(header))
        if index is not None and index in free and before[index] is header:
            source[position] = index
            free.discard(index)
    unused: dict[tuple[str, str], list[int]] = {}
    for index in sorted(free):
        unused.setdefault(before[index], []).append(index)
    for position, header in enumerate(headers):
        if source[position] is None and type(header[1]) is str:
            indices = unused.get(header)
            if indices:
                source[position] = indices.pop(0)
    # New fields end their lines as the message's first line does (LF if none does).
    first = _LINE_END.search(raw)
    linesep = "\r\n" if first is not None and first.group() == b"\r\n" else "\n"
    policy = compat32 if linesep == "\n" else compat32.clone(linesep=linesep)
    out: list[bytes] = []
    if unixfrom and message._unixfrom is not None:  # type: ignore[attr-defined]
        if message._unixfrom == pristine[2] and raw_from:  # type: ignore[attr-defined]
            out.append(raw_from)
        else:
            out.append(f"{message._unixfrom}{linesep}".encode("ascii", "surrogateescape"))  # type: ignore[attr-defined]
    for header, index in zip(headers, source, strict=True):
        out.append(policy.fold_binary(*header) if index is None else fields[index])
    if rest:
        out.append(rest)
    # Only the last line of the received bytes may lack its line end, and it may no
    # longer be last: "Subject: x" at the very end, then an added header.
    end = linesep.encode("ascii")
    for position, piece in enumerate(out[:-1]):
        if not piece.endswith((b"\n", b"\r")):
            out[position] = piece + end
    return b"".join(out)
