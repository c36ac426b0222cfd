"""Converters from configuration text to typed values.

Each converter takes the raw text of one value and returns the typed value, or raises
:class:`ValueError` with a message that says what was expected.  The configuration
wraps that message with the layer, section and key it came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from datetime import timedelta
from string import Template
from typing import Any

from runnerkit.language import check_language

#: Converter signature: raw text in, typed value out, ValueError on bad input.
Converter = Callable[[str], Any]

_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})

_DURATION_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)[ \t]*(ms|s|m|h|d|w)")
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")

#: The substitution variables a path template may use, besides ``$name`` in runners.
PATH_VARIABLES = ("VAR_DIR", "QUEUE_DIR", "LOG_DIR", "DATA_DIR", "LOCK_DIR")


def as_text(value: str) -> str:
    """Any non-empty text, stripped."""
    text = value.strip()
    if not text:
        raise ValueError("expected a non-empty value")
    return text


def as_bool(value: str) -> bool:
    """``yes``/``no``, ``true``/``false``, ``on``/``off`` or ``1``/``0``."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected yes or no (also true/false, on/off, 1/0)")


_WHOLE_NUMBER = re.compile(r"[0-9]{1,20}")


def _whole_number(value: str, low: int, high: int | None, expected: str) -> int:
    """*value* as an int from *low* to *high* (None: no bound), in ASCII digits only.

    :func:`int` alone would also take ``8_024``, ``+80`` and digits of other scripts
    (``٨٠٢٤``), which no operator means as a number in a configuration file.
    """
    text = value.strip()
    if not _WHOLE_NUMBER.fullmatch(text):
        raise ValueError(expected)
    number = int(text)
    if number < low or (high is not None and number > high):
        raise ValueError(expected)
    return number


def as_count(value: str) -> int:
    """A whole number, zero or more."""
    return _whole_number(value, 0, None, "expected a whole number, 0 or more")


def as_positive_count(value: str) -> int:
    """A whole number, 1 or more."""
    return _whole_number(value, 1, None, "expected a whole number, 1 or more")


def as_port(value: str) -> int:
    """A TCP port to connect to: 1 to 65535 (RFC 6335, section 6)."""
    return _whole_number(value, 1, 65535, "expected a port number from 1 to 65535")


def as_listen_port(value: str) -> int:
    """A TCP port to listen on: 1 to 65535, or 0 for any free port the system picks."""
    return _whole_number(
        value, 0, 65535, "expected a port number from 1 to 65535, or 0 for any free port"
    )


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def as_host(value: str) -> str:
    """A host name (RFC 1123 labels) or an IPv4 or IPv6 address, without a port."""
    text = as_text(value)
    expected = (
        "expected a host name or an IP address, without a port (the port has a key of its own)"
    )
    try:
        ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        labels = text.removesuffix(".").split(".")
        if len(text) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise ValueError(expected) from None
        return text
    return text.removeprefix("[").removesuffix("]")


def as_hosts(value: str) -> tuple[str, ...]:
    """Host names or IP addresses (each as :func:`as_host`), separated by white space or
    commas; none when empty.  Kept lower-cased, as host names compare."""
    return tuple(as_host(word).lower() for word in value.replace(",", " ").split())


def one_of(*choices: str) -> Converter:
    """Make a converter that accepts one of *choices*, case-insensitively, as lower case."""

    def as_choice(value: str) -> str:
        word = value.strip().lower()
        if word not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return word

    return as_choice


#: The deepest MIME structure a queue file holds (``runnerkit.msgtree.MAX_DEPTH``),
#: and so the highest ``[limits] max_mime_depth``.
MIME_DEPTH_CEILING = 100
#: The longest line RFC 5322 (section 2.1.1) allows, CRLF not counted.
RFC5322_LINE_LENGTH = 998


def as_mime_depth(value: str) -> int:
    """Levels of nested MIME parts: 1 to :data:`MIME_DEPTH_CEILING`."""
    return _whole_number(
        value,
        1,
        MIME_DEPTH_CEILING,
        f"expected a whole number from 1 to {MIME_DEPTH_CEILING} "
        "(a queue file holds no deeper structure)",
    )


def as_line_length(value: str) -> int:
    """A line length limit in octets: 0 for none, else :data:`RFC5322_LINE_LENGTH` or more.

    A lower limit would refuse mail that RFC 5322 allows.
    """
    expected = (
        f"expected 0 (no limit) or a whole number of {RFC5322_LINE_LENGTH} or more "
        f"(RFC 5322 allows lines of {RFC5322_LINE_LENGTH} octets)"
    )
    number = _whole_number(value, 0, None, expected)
    if 0 < number < RFC5322_LINE_LENGTH:
        raise ValueError(expected)
    return number


def as_power_of_two(value: str) -> int:
    """A power of two from 1 to 1024: slices split the digest space exactly."""
    number = _whole_number(value, 1, 1024, "expected a power of two from 1 to 1024")
    if number & (number - 1):
        raise ValueError("expected a power of two from 1 to 1024")
    return number


def as_slices(value: str) -> tuple[int, ...] | None:
    """``all`` (None), or slice numbers and ranges such as ``0-1`` or ``2,3``: sorted,
    each once.  Checked against the runner's ``instances`` when the stack resolves."""
    text = value.strip().lower()
    if text == "all":
        return None
    expected = "expected all, or slice numbers and ranges such as 0-1 or 2,3"
    numbers: set[int] = set()
    for part in text.replace(" ", "").split(","):
        low_text, dash, high_text = part.partition("-")
        low = _whole_number(low_text, 0, 1023, expected)
        high = _whole_number(high_text, 0, 1023, expected) if dash else low
        if high < low:
            raise ValueError(f"{expected}; {part!r} runs backwards")
        numbers.update(range(low, high + 1))
    return tuple(sorted(numbers))


#: The schemes redis-py connects with.
REDIS_SCHEMES = ("redis", "rediss", "unix")


def as_redis_url(value: str) -> str:
    """Empty, or a Redis URL: ``redis://``, ``rediss://`` or ``unix://`` (redis-py's
    ``Redis.from_url`` schemes)."""
    text = value.strip()
    if not text:
        return ""
    scheme, separator, rest = text.partition("://")
    if not separator or scheme.lower() not in REDIS_SCHEMES or not rest:
        raise ValueError(
            "expected a Redis URL: redis://HOST:PORT/DB, rediss://HOST:PORT/DB or "
            "unix:///PATH?db=N"
        )
    return text


def as_key_prefix(value: str) -> str:
    """Printable ASCII without white space, 1 to 100 characters: the prefix of a site's
    Redis keys."""
    text = value.strip()
    if not 1 <= len(text) <= 100 or not all("!" <= char <= "~" for char in text):
        raise ValueError("expected 1 to 100 printable ASCII characters without spaces")
    return text


def as_duration(value: str) -> timedelta:
    """A duration such as ``1s``, ``500ms``, ``2m`` or ``1m30s``; a bare number is seconds."""
    text = value.strip().lower()
    try:
        # float() also takes "1_0" and digits of other scripts: not numbers here.
        seconds = float(text) if text.isascii() and "_" not in text else None
    except ValueError:
        seconds = None
    if seconds is not None:
        if not seconds >= 0:  # also refuses nan
            raise ValueError("expected a duration of 0 or more")
        try:
            return timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError("the duration is too long") from None
    total = timedelta()
    position = 0
    for match in _DURATION_PART.finditer(text.replace(" ", "")):
        if match.start() != position:
            break
        try:
            total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        except OverflowError:
            raise ValueError("the duration is too long") from None
        position = match.end()
    if position == 0 or position != len(text.replace(" ", "")):
        raise ValueError("expected a duration such as 1s, 500ms, 2m, 1h, 1d, 1w or 1m30s")
    return total


def as_dotted_name(value: str) -> str:
    """A dotted Python name such as ``package.module.Class``."""
    name = value.strip()
    if not _DOTTED_NAME.fullmatch(name):
        raise ValueError("expected a dotted Python name such as package.module.Class")
    return name


#: A language code such as ``en``, ``fr`` or ``pt_BR``.
as_language: Converter = check_language


def path_template(allowed: tuple[str, ...]) -> Converter:
    """Make a converter for path text that may use ``$VARIABLES`` from *allowed*."""

    def as_path_template(value: str) -> str:
        text = as_text(value)
        template = Template(text)
        if not template.is_valid():
            raise ValueError("has a stray '$'; write $$ for a literal dollar sign")
        unknown = sorted(set(template.get_identifiers()) - set(allowed))
        if unknown and not allowed:
            raise ValueError(f"uses ${unknown[0]}, but this path cannot use variables")
        if unknown:
            raise ValueError(
                f"uses unknown variable ${unknown[0]}; "
                f"known: {', '.join('$' + name for name in allowed)}"
            )
        return text

    return as_path_template


def as_directories(value: str) -> tuple[str, ...]:
    """Directories, one a line (continuation lines indented); none when empty.

    Each is kept as written, ``~`` expanded; a relative one is relative to the directory
    of the file that sets it (see :attr:`~runnerkit.config.layers.Layer.base`).  A line
    is one directory, spaces included, so that any directory name can be written.
    """
    directories = []
    for line in value.splitlines():
        text = line.strip()
        if not text:
            continue
        if "\0" in text:
            raise ValueError("a directory name cannot hold a NUL character")
        directories.append(os.path.expanduser(text))
    return tuple(directories)
