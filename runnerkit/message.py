"""runnerkit's :class:`Message`, an :class:`email.message.Message` that knows its sender."""

from __future__ import annotations

import email
import email.message
import io
from email.generator import Generator
from email.utils import getaddresses

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
    """

    _original_size: int | None = None
    #: True when parsed from bytes: then :meth:`as_bytes` reproduces it faithfully,
    #: while a message parsed from text is reproduced faithfully by :meth:`as_string`.
    parsed_from_bytes = False

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


def message_from_string(text: str) -> Message:
    """Parse *text* into a :class:`Message`, recording its size."""
    if not isinstance(text, str):
        raise TypeError(f"message_from_string() needs a str, got {type(text).__name__}")
    message = email.message_from_string(text, Message)
    message.original_size = len(text.encode("utf-8", "surrogateescape"))
    return message


def message_from_bytes(data: bytes) -> Message:
    """Parse *data* into a :class:`Message`, recording its size."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"message_from_bytes() needs bytes, got {type(data).__name__}")
    message = email.message_from_bytes(bytes(data), Message)
    message.parsed_from_bytes = True
    message.original_size = len(data)
    return message
