"""Language codes, as lists, members and the ``[runnerkit] default_language`` setting use them."""

from __future__ import annotations

import re

#: A language code: two or three lower-case letters, then optional subtags such as
#: ``_BR`` or ``-Latn`` (the shape of RFC 5646 tags and of gettext locale names).
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}([_-][A-Za-z0-9]{2,8})*")


def check_language(value: str) -> str:
    """Return *value*, stripped, if it is a language code such as ``en``, ``fr`` or ``pt_BR``.

    :raises ValueError: it is not; the message says what was expected.
    """
    code = value.strip()
    if not LANGUAGE_CODE.fullmatch(code):
        raise ValueError("expected a language code such as en, fr or pt_BR")
    return code
