"""A message as plain data, and back: what a queue file stores instead of regenerated text.

:func:`to_tree` turns an :class:`email.message.Message` (runnerkit's or the standard
library's, of any standard policy) into nested lists of ``str``, ``bytes``, ``int`` and
``None``: for each part, its header (name, value) pairs exactly as the message holds
them, its payload (text, bytes, a list of sub-parts, or nothing), its preamble,
epilogue, Unix From line, default type, charset and defects.  :func:`from_tree` builds
the message again from those values alone, without the email parser, so it is both
exact and cheap: the header values come back as identical strings.

Nothing here runs code named by the data: a tree holds only data, policies are chosen
by name from the standard ones, defects by name from :mod:`email.errors`.

What a tree cannot hold exactly is refused with :class:`~runnerkit.errors.MetadataError`
naming what and why: a header value of an unknown type, a policy that is not a standard
one, an attribute set on the message object.  One conversion is documented and
lossless for the message's bytes: an :class:`email.header.Header` value is stored as
its parts (each text and its charset, and its folding settings) and rebuilt as an equal
``Header``, which the generator writes as it wrote the original.
"""

from __future__ import annotations

import email.errors
import email.message
import email.policy
from email.charset import Charset
from email.header import Header
from email.policy import Policy
from typing import Any

from runnerkit.errors import MetadataError, QueueFileError
from runnerkit.message import Message

#: The standard policies, by the names a tree stores.
POLICIES: dict[str, Policy] = {
    "compat32": email.policy.compat32,
    "default": email.policy.default,
    "SMTP": email.policy.SMTP,
    "SMTPUTF8": email.policy.SMTPUTF8,
    "HTTP": email.policy.HTTP,
    "strict": email.policy.strict,
}
_POLICY_NAMES = {id(policy): name for name, policy in POLICIES.items()}

#: The attributes of a message object that a tree holds; any other is refused.
_KNOWN_ATTRIBUTES = frozenset(
    {
        "policy",
        "_headers",
        "_unixfrom",
        "_payload",
        "_charset",
        "preamble",
        "epilogue",
        "defects",
        "_default_type",
        # runnerkit's Message: kept by the queue file's own fields, or rebuilt.
        "_original_size",
        "parsed_from_bytes",
        "_raw",
        "_pristine",
        "_payload_is_suffix",
    }
)

# The fields of one node, in order.
_HEADERS, _PAYLOAD, _UNIXFROM, _PREAMBLE, _EPILOGUE, _DEFAULT_TYPE, _CHARSET, _DEFECTS = range(8)
_POLICY = 8
_TEXT_ONLY = frozenset({str})
#: Marks a header value that the message's policy parsed into a header object.
_PARSED = "parsed"
#: The deepest MIME structure a tree holds: far beyond real mail, and well inside the
#: interpreter's recursion limit, so that building and rebuilding never exhaust it.
MAX_DEPTH = 100


def to_tree(message: email.message.Message) -> list[Any]:
    """The message as nested lists of plain values (see the module's documentation).

    :raises MetadataError: the message holds something a tree cannot store exactly.
    """
    return _node(message, id(message.policy), "message", 0)


def from_tree(tree: Any) -> Message:
    """Build the message that :func:`to_tree` described; every part a runnerkit Message.

    :raises QueueFileError: the tree is not one :func:`to_tree` makes.
    """
    try:
        policy = _policy_of(tree, email.policy.compat32)
        return _build(tree, policy, 0)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, RecursionError) as error:
        raise QueueFileError(f"the stored message is malformed: {error!r}") from error


def _node(message: email.message.Message, top_policy: int, where: str, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise MetadataError(
            f"the message's MIME structure is too deep: more than {MAX_DEPTH} levels of parts"
        )
    state = message.__dict__
    extra = state.keys() - _KNOWN_ATTRIBUTES
    if extra:
        raise MetadataError(
            f"{where} has attributes a queue file cannot store: "
            f"{', '.join(sorted(extra))} (set on the message object; keep such values "
            "in the metadata instead)"
        )
    headers = message._headers  # type: ignore[attr-defined]
    flat: list[Any] = [item for header in headers for item in header]
    if not _TEXT_ONLY.issuperset(map(type, flat)):
        flat = []
        for name, value in headers:
            if type(name) is not str:
                raise MetadataError(f"{where} has a header name that is not text: {name!r}")
            flat += (name, value if type(value) is str else _header_text(name, value, where))
    payload = message._payload  # type: ignore[attr-defined]
    if isinstance(payload, list):
        stored: Any = [
            _node(part, top_policy, f"{where} part {index}", depth + 1)
            for index, part in enumerate(payload)
        ]
    elif payload is None or type(payload) is str or type(payload) is bytes:
        stored = payload
    else:
        raise MetadataError(
            f"{where} has a payload of type {type(payload).__name__}, which a queue file "
            "cannot store (text, bytes, a list of parts or None)"
        )
    charset = message._charset  # type: ignore[attr-defined]
    defects = message.defects
    node = [
        flat,
        stored,
        message._unixfrom,  # type: ignore[attr-defined]
        _text_or_none(message.preamble, "preamble", where),
        _text_or_none(message.epilogue, "epilogue", where),
        message._default_type,  # type: ignore[attr-defined]
        None if charset is None else str(charset.input_charset),
        [type(defect).__name__ for defect in defects] if defects else None,
    ]
    policy = id(message.policy)
    if policy != top_policy or where == "message":
        name = _POLICY_NAMES.get(policy)
        if name is None:
            raise MetadataError(
                f"{where} uses a policy that is not one of the standard ones "
                f"({', '.join(POLICIES)}); a queue file stores policies by name"
            )
        node.append(name)
    return node


def _header_text(name: str, value: object, where: str) -> Any:
    if type(value) is Header:
        # Its parts, as data: [[text, charset name]..., default charset, continuation
        # white space, line length, header name length]; rebuilt by _header_object.
        state = value.__dict__
        return [
            [[text, str(charset)] for text, charset in state["_chunks"]],
            str(state["_charset"]),
            state["_continuation_ws"],
            state["_maxlinelen"],
            state["_headerlen"],
        ]
    if isinstance(value, str) and hasattr(value, "name"):
        # A modern policy's header object: its text, which the policy parses again on
        # read (header_store_parse), so that it is folded and encoded as before.
        return [_PARSED, str.__str__(value)]
    raise MetadataError(
        f"{where} header {name!r} holds a {type(value).__name__}, which a queue file "
        "cannot store; use a str (or an email.header.Header)"
    )


def _header_value(policy: Policy, name: str, state: Any) -> Any:
    """The header value that :func:`_header_text` stored as data."""
    if type(state) is list and len(state) == 2 and state[0] == _PARSED:
        if type(state[1]) is not str:
            raise ValueError("a parsed header whose text is not text")
        return policy.header_store_parse(name, state[1])[1]
    return _header_object(state)


def _header_object(state: Any) -> Header:
    """The :class:`email.header.Header` that :func:`_header_text` took apart."""
    chunks, charset, continuation, line_length, name_length = state
    if not (type(continuation) is str and type(line_length) is int and type(name_length) is int):
        raise ValueError("a header object whose settings are not what they should be")
    header = Header(charset=Charset(str(charset)), continuation_ws=continuation)
    header.__dict__.update(
        _chunks=[(str(text), Charset(str(name))) for text, name in chunks],
        _maxlinelen=line_length,
        _headerlen=name_length,
    )
    return header


def _text_or_none(value: object, what: str, where: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise MetadataError(f"{where} {what} is a {type(value).__name__}, not text")


def _policy_of(node: list[Any], inherited: Policy) -> Policy:
    if len(node) > _POLICY:
        return POLICIES[node[_POLICY]]
    return inherited


def _build(node: list[Any], inherited: Policy, depth: int) -> Message:
    if depth > MAX_DEPTH:
        raise ValueError(f"parts nested more than {MAX_DEPTH} deep")
    policy = _policy_of(node, inherited)
    message = Message.__new__(Message)
    flat = node[_HEADERS]
    payload = node[_PAYLOAD]
    if isinstance(payload, list):
        payload = [_build(part, policy, depth + 1) for part in payload]
    elif not (payload is None or type(payload) is str or type(payload) is bytes):
        raise ValueError(f"a payload of type {type(payload).__name__}")
    charset = node[_CHARSET]
    defects = node[_DEFECTS]
    unixfrom, preamble, epilogue, default_type = node[_UNIXFROM : _DEFAULT_TYPE + 1]
    for text in (unixfrom, preamble, epilogue):
        if text is not None and type(text) is not str:
            raise ValueError(f"a {type(text).__name__} where text belongs")
    if type(default_type) is not str:
        raise ValueError("a default type that is not text")
    headers = list(zip(flat[::2], flat[1::2], strict=True))
    if not _TEXT_ONLY.issuperset(map(type, flat)):
        if not _TEXT_ONLY.issuperset(map(type, flat[::2])):
            raise ValueError("a header name that is not text")
        headers = [
            (name, value if type(value) is str else _header_value(policy, name, value))
            for name, value in headers
        ]
    message.__dict__ = {
        "policy": policy,
        "_headers": headers,
        "_unixfrom": unixfrom,
        "_payload": payload,
        "_charset": None if charset is None else Charset(charset),
        "preamble": preamble,
        "epilogue": epilogue,
        "defects": [_defect(name) for name in defects] if defects else [],
        "_default_type": default_type,
    }
    return message


def _defect(name: str) -> email.errors.MessageDefect:
    cls = getattr(email.errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, email.errors.MessageDefect)):
        raise ValueError(f"{name!r} is not a defect of email.errors")
    return cls()
