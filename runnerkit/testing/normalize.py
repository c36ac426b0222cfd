"""Output normalisers: compare and accept output whose varying parts are masked.

Some output differs from run to run though nothing is wrong: a queue file base, a time,
a Message-ID made up on the spot, a process id, the world's temporary var dir.  A
normaliser rewrites such a part into a fixed placeholder, in the output an example got
and in the output it expected, before doctest compares the two; accept mode writes the
normalised output, so an accepted document passes on the next run too.

Each normaliser is a doctest option flag, turned on or off the way doctest's own are:
``# doctest: +NORMALIZE_VAR_DIR`` on an example, ``optionflags=`` for every document,
or a document's ``runnerkit-normalize`` line for each of its examples
(:func:`document_normalizers`).  The built-in ones, in the order they are applied:

``var-dir`` (``NORMALIZE_VAR_DIR``)
    The current configuration's var dir (in a spec, the world's), as given and as its
    real path, becomes ``$VAR_DIR`` where no name character follows it (a full stop
    counts only when a name character follows it).  Without a current configuration
    it does nothing.
``work-dir`` (``NORMALIZE_WORK_DIR``)
    The work dir of the world whose configuration is current, where its console
    commands run (:attr:`~runnerkit.testing.World.work_dir`), becomes ``$WORK_DIR`` in
    the same way.  Before the world has made one, it does nothing.
``message-ids`` (``NORMALIZE_MESSAGE_IDS``)
    Each msg-id ``<left@right>`` that follows the label ``Message-ID``,
    ``Resent-Message-ID``, ``In-Reply-To`` or ``References`` (any case, ``-`` or ``_``)
    and then ``:`` or ``=``, becomes ``<MESSAGE-ID>``: the header line, its folded
    lines, ``message_id : <...>`` in a metadata dump, ``'message-id': '<...>'`` in a
    dict, ``message_id=<...>`` in a log.  Addresses elsewhere are left alone.
``filebases`` (``NORMALIZE_FILEBASES``)
    A queue file base, ``<seconds>.<fraction>+<40 lowercase hex digits>``, becomes
    ``<FILEBASE>``; what follows it (``.pck``) stays.
``timestamps`` (``NORMALIZE_TIMESTAMPS``)
    An ISO 8601 date and time (``T`` or a space between them, minutes or seconds,
    a fraction after ``.`` or ``,``, a zone ``Z`` or ``+hh:mm``, ``t`` and ``z`` in
    lower case too, as RFC 3339 allows; or in the basic format, ``20261130T083053Z``,
    with a month, day, hour and minute that can be), an RFC 5322 date (``Mon, 30 Nov
    2026 08:30:53 +0000``, zone ``+hhmm``, ``GMT``, ``UT`` or ``UTC``), and a Common
    Log Format date (``30/Nov/2026:08:30:53 +0000``) becomes ``<TIMESTAMP>``, also
    after ``-``, ``_`` or ``:`` (in a file name, after a label).  A date alone, a time
    alone, and a number of seconds (such as a file base's) are left alone.
``pids`` (``NORMALIZE_PIDS``)
    A decimal number becomes ``<PID>`` after the word ``pid`` or a name ending in
    ``_pid`` (any case), followed by blanks, or by an optional quote and ``:`` or
    ``=``: ``pid 4242``, ``(pid=4242)``, ``"master_pid": 4242``.  So does the field
    after the time at the start of a log line (runnerkit's log format, time then pid).

``NORMALIZE_ALL`` turns on every built-in normaliser; ``-NORMALIZE_PIDS`` after it
still turns one off.  Normalisers of your own, made by :func:`user_normalizers` from
``collect_specs(normalizers={"ticket": (r"T-\\d+", "T-<N>")})``, are applied after the
built-in ones, in the order given.
"""

from __future__ import annotations

import copy
import doctest
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from sybil import Document, Region
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.evaluators.doctest import OutputChecker as SybilOutputChecker
from sybil.typing import Parser

from runnerkit.config import current_config
from runnerkit.errors import HarnessError, NoConfigurationError
from runnerkit.testing.fences import directive_text, is_markdown
from runnerkit.testing.world import work_dir_of

NORMALIZE_VAR_DIR = doctest.register_optionflag("NORMALIZE_VAR_DIR")
NORMALIZE_WORK_DIR = doctest.register_optionflag("NORMALIZE_WORK_DIR")
NORMALIZE_MESSAGE_IDS = doctest.register_optionflag("NORMALIZE_MESSAGE_IDS")
NORMALIZE_FILEBASES = doctest.register_optionflag("NORMALIZE_FILEBASES")
NORMALIZE_TIMESTAMPS = doctest.register_optionflag("NORMALIZE_TIMESTAMPS")
NORMALIZE_PIDS = doctest.register_optionflag("NORMALIZE_PIDS")
#: Every built-in normaliser at once.
NORMALIZE_ALL = doctest.register_optionflag("NORMALIZE_ALL")

#: The built-in normalisers' names, as a document's line spells them, and their flags,
#: in the order they are applied.
BUILTIN_FLAGS: Mapping[str, int] = {
    "var-dir": NORMALIZE_VAR_DIR,
    "work-dir": NORMALIZE_WORK_DIR,
    "message-ids": NORMALIZE_MESSAGE_IDS,
    "filebases": NORMALIZE_FILEBASES,
    "timestamps": NORMALIZE_TIMESTAMPS,
    "pids": NORMALIZE_PIDS,
}
#: The name of a document's line for all of them.
ALL = "all"

#: What each built-in normaliser writes instead of what it found.
VAR_DIR_PLACEHOLDER = "$VAR_DIR"
WORK_DIR_PLACEHOLDER = "$WORK_DIR"
MESSAGE_ID_PLACEHOLDER = "<MESSAGE-ID>"
FILEBASE_PLACEHOLDER = "<FILEBASE>"
TIMESTAMP_PLACEHOLDER = "<TIMESTAMP>"
PID_PLACEHOLDER = "<PID>"

#: What a document's normaliser line may name: a user normaliser's name too.
_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")

#: (pattern, replacement) of a user normaliser, as :func:`re.sub` takes them.
UserNormalizers: TypeAlias = Mapping[str, tuple["str | re.Pattern[str]", str]]
#: Where the var dir normaliser learns the var dir, when it applies.
VarDirSource: TypeAlias = Callable[[], "Path | None"]

_MSG_ID = r"<[^\s<>@]+@[^\s<>@]+>"
_MESSAGE_IDS = re.compile(
    r"(?<![\w-])(?:(?:resent[-_])?message[-_]id|in[-_]reply[-_]to|references)(?![\w-])"
    r"""["']?[ \t]*[:=][ \t]*["']?"""
    rf"(?P<ids>{_MSG_ID}(?:(?:[ \t]|\n[ \t])+{_MSG_ID})*)",
    re.IGNORECASE,
)
_ONE_MSG_ID = re.compile(_MSG_ID)
_FILEBASES = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\+[0-9a-f]{40}(?![0-9A-Za-z])")
#: The parts of a date and a time that can be: month, day, hour, minute, second.
_MONTH, _DAY = r"(?:0[1-9]|1[0-2])", r"(?:0[1-9]|[12]\d|3[01])"
_HOUR, _MINUTE = r"(?:[01]\d|2[0-3])", r"[0-5]\d"
_SECOND = r"(?:[0-5]\d|60)"
#: A zone offset that can be (-12:00 to +14:00), so that a range (15:15-17:45) is not
#: read as a time and its zone.
_OFFSET_HOUR = r"[+-](?:0\d|1[0-4])"
_ISO = (
    rf"\d{{4}}-{_MONTH}-{_DAY}[Tt ]{_HOUR}:{_MINUTE}(?::{_SECOND}(?:[.,]\d+)?)?"
    rf"(?:[Zz]| ?{_OFFSET_HOUR}(?::?{_MINUTE})?)?"
)
_RFC5322 = (
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),[ \t]+)?\d{1,2}[ \t]+"
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[ \t]+\d{4}[ \t]+"
    r"\d{2}:\d{2}(?::\d{2})?[ \t]+(?:[+-]\d{4}|GMT|UTC|UT)"
)
#: ISO 8601's basic format: ``20261130T151534Z``; a zone offset in four digits.
_ISO_BASIC = (
    rf"\d{{4}}{_MONTH}{_DAY}[Tt]{_HOUR}{_MINUTE}(?:{_SECOND}(?:[.,]\d+)?)?"
    rf"(?:[Zz]|{_OFFSET_HOUR}{_MINUTE})?"
)
#: The Common Log Format's (web servers' access logs): ``30/Nov/2026:15:15:34 +0000``.
_CLF = (
    r"\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}"
    r":\d{2}:\d{2}:\d{2}[ \t]+[+-]\d{4}"
)
#: Not inside a longer number or word; after ``-``, ``_``, ``:`` or a word's ``.`` it
#: may be, as in a file name (``backup-20261130T083053Z.tar``, ``app.log.2026...``) or
#: after a label (``ts:2026-11-30T08:30Z``).
_TIMESTAMPS = re.compile(
    rf"(?<![0-9A-Za-z+])(?<!\d\.)(?:{_ISO}|{_ISO_BASIC}|{_RFC5322}|{_CLF})(?![0-9A-Za-z])"
)
_PIDS = re.compile(
    r"""(?P<label>(?<![\w])(?:\w+_)?pid["']?(?:[ \t]+|[ \t]*[:=][ \t]*))(?P<pid>\d+)\b""",
    re.IGNORECASE,
)
_LOG_PIDS = re.compile(
    rf"^(?P<label>(?:{_ISO}|{re.escape(TIMESTAMP_PLACEHOLDER)})[ \t]+)(?P<pid>\d+)(?=[ \t])",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Normalizer:
    """One normaliser: its name, its doctest option flag, and what it does to text."""

    #: The name a document's ``runnerkit-normalize`` line gives it, such as ``var-dir``.
    name: str
    #: The option flag that turns it on, such as :data:`NORMALIZE_VAR_DIR`.
    flag: int
    #: Text in, normalised text out.
    substitute: Callable[[str], str]


def current_var_dir() -> Path | None:
    """The current configuration's var dir, or None when no configuration is current.

    A spec's world makes its configuration current for the examples it runs, so when
    an example's output is checked this is the var dir the output was made in.
    """
    try:
        return current_config().paths.var_dir
    except NoConfigurationError:
        return None


def normalize_var_dir(text: str, var_dir: Path | None) -> str:
    """*text* with *var_dir*, as given and as its real path, written ``$VAR_DIR``."""
    return _normalize_directory(text, var_dir, VAR_DIR_PLACEHOLDER)


def current_work_dir() -> Path | None:
    """The work dir of the world whose configuration is current (where its console
    commands run), or None when there is none, or it made none."""
    var_dir = current_var_dir()
    return None if var_dir is None else work_dir_of(var_dir)


def normalize_work_dir(text: str, work_dir: Path | None) -> str:
    """*text* with *work_dir*, as given and as its real path, written ``$WORK_DIR``."""
    return _normalize_directory(text, work_dir, WORK_DIR_PLACEHOLDER)


def _normalize_directory(text: str, directory: Path | None, placeholder: str) -> str:
    if directory is None:
        return text
    spellings = {str(directory), os.path.realpath(directory)}
    # The longest first, so that one spelling inside another is not half replaced.
    for spelling in sorted(spellings, key=len, reverse=True):
        if spelling in ("", os.sep):
            continue
        # Not the start of a longer name (``var-old``, ``var.bak``); a full stop that
        # ends a sentence is not a name's.
        text = re.sub(re.escape(spelling) + r"(?![\w-]|\.[\w-])", lambda _: placeholder, text)
    return text


def normalize_message_ids(text: str) -> str:
    """*text* with each labelled msg-id written ``<MESSAGE-ID>``."""

    def ids(match: re.Match[str]) -> str:
        whole, start = match.group(), match.start("ids") - match.start()
        return whole[:start] + _ONE_MSG_ID.sub(MESSAGE_ID_PLACEHOLDER, whole[start:])

    return _MESSAGE_IDS.sub(ids, text)


def normalize_filebases(text: str) -> str:
    """*text* with each queue file base written ``<FILEBASE>``."""
    return _FILEBASES.sub(FILEBASE_PLACEHOLDER, text)


def normalize_timestamps(text: str) -> str:
    """*text* with each ISO 8601 or RFC 5322 date and time written ``<TIMESTAMP>``."""
    return _TIMESTAMPS.sub(TIMESTAMP_PLACEHOLDER, text)


def normalize_pids(text: str) -> str:
    """*text* with each labelled process id written ``<PID>``."""
    text = _LOG_PIDS.sub(lambda m: m["label"] + PID_PLACEHOLDER, text)
    return _PIDS.sub(lambda m: m["label"] + PID_PLACEHOLDER, text)


def builtin_normalizers(var_dir: VarDirSource = current_var_dir) -> list[Normalizer]:
    """The built-in normalisers, in the order they are applied.

    :param var_dir: where ``var-dir`` learns the var dir, each time it applies.
    """
    return [
        Normalizer("var-dir", NORMALIZE_VAR_DIR, lambda text: normalize_var_dir(text, var_dir())),
        Normalizer(
            "work-dir",
            NORMALIZE_WORK_DIR,
            lambda text: normalize_work_dir(text, current_work_dir()),
        ),
        Normalizer("message-ids", NORMALIZE_MESSAGE_IDS, normalize_message_ids),
        Normalizer("filebases", NORMALIZE_FILEBASES, normalize_filebases),
        Normalizer("timestamps", NORMALIZE_TIMESTAMPS, normalize_timestamps),
        Normalizer("pids", NORMALIZE_PIDS, normalize_pids),
    ]


#: doctest's own option flags, whose names a normaliser may not take.
_DOCTEST_OWN_FLAGS = doctest.COMPARISON_FLAGS | doctest.REPORTING_FLAGS


def flag_name(name: str) -> str:
    """The option flag name of the normaliser *name*: ``order-id`` -> ``NORMALIZE_ORDER_ID``."""
    return "NORMALIZE_" + name.upper().replace("-", "_")


def user_normalizers(normalizers: UserNormalizers | None) -> list[Normalizer]:
    """Normalisers from ``{name: (pattern, replacement)}``, their flags registered.

    Each becomes the doctest option flag :func:`flag_name` of its name, registered
    here, so that examples can name it in a ``# doctest:`` directive; registering must
    happen before the documents are parsed, since doctest refuses an unknown option.

    :param normalizers: by name (lower case letters and digits, words joined by ``-``),
        a regular expression and its replacement, as :func:`re.sub` takes them.
    :raises HarnessError: a name is malformed or taken by a built-in normaliser or by
        a doctest option (``whitespace``), a pattern does not compile, a replacement
        refers to a group the pattern lacks, or normalising the replacement changes it.
    """
    made: list[Normalizer] = []
    for name, value in (normalizers or {}).items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise HarnessError(
                f"normalizer name {name!r} is malformed: use lower case letters and"
                " digits, words joined by '-', such as 'ticket' or 'order-id'"
            )
        if name in BUILTIN_FLAGS or name == ALL:
            raise HarnessError(
                f"normalizer name {name!r} is a built-in one's: choose another than"
                f" {', '.join([*BUILTIN_FLAGS, ALL])}"
            )
        taken = doctest.OPTIONFLAGS_BY_NAME.get(flag_name(name), 0)
        if taken & _DOCTEST_OWN_FLAGS:
            raise HarnessError(
                f"normalizer name {name!r} would be doctest's own option"
                f" {flag_name(name)}: choose another name"
            )
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str)):
            raise HarnessError(
                f"normalizer {name!r} must be a (pattern, replacement) pair of a regular"
                f" expression and a re.sub replacement string, not {value!r}"
            )
        pattern, replacement = value
        try:
            compiled = re.compile(pattern)
        except (re.error, TypeError) as error:
            raise HarnessError(
                f"normalizer {name!r} has a pattern that is not a regular expression:"
                f" {pattern!r}: {error}"
            ) from error
        try:
            compiled.sub(replacement, "")
        except (re.error, IndexError) as error:
            raise HarnessError(
                f"normalizer {name!r} has a replacement that re.sub cannot use with"
                f" {compiled.pattern!r}: {replacement!r}: {error}"
            ) from error
        if "\\" not in replacement and compiled.sub(replacement, replacement) != replacement:
            raise HarnessError(
                f"normalizer {name!r} changes its own replacement {replacement!r} again"
                f" (to {compiled.sub(replacement, replacement)!r}): an expected output"
                " that holds it would be normalised too, and never compare equal;"
                f" choose one the pattern leaves alone, such as '<{name.upper()}>'"
            )
        flag = doctest.register_optionflag(flag_name(name))

        def substitute(
            text: str, compiled: re.Pattern[str] = compiled, r: str = replacement
        ) -> str:
            return compiled.sub(r, text)

        made.append(Normalizer(name, flag, substitute))
    return made


class NormalizingOutputChecker(SybilOutputChecker):
    """Sybil's output checker, after the enabled normalisers have run on both outputs.

    The expected output is normalised too, so that it may hold the placeholders or
    the very values that normalise to them.  Failure reports show the normalised
    output, which is what accept mode writes.

    :param normalizers: user normalisers, applied after the built-in ones.
    :param var_dir: where ``var-dir`` learns the var dir; by default the current
        configuration's (:func:`current_var_dir`).
    """

    def __init__(
        self, normalizers: Sequence[Normalizer] = (), *, var_dir: VarDirSource = current_var_dir
    ) -> None:
        super().__init__()
        self.normalizers: tuple[Normalizer, ...] = (*builtin_normalizers(var_dir), *normalizers)

    def normalize(self, text: str, optionflags: int) -> str:
        """*text* with the normalisers that *optionflags* turn on applied, in order."""
        for normalizer in self.normalizers:
            builtin = normalizer.flag in BUILTIN_FLAGS.values()
            if optionflags & normalizer.flag or (builtin and optionflags & NORMALIZE_ALL):
                text = normalizer.substitute(text)
        return text

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return super().check_output(
            self.normalize(want, optionflags), self.normalize(got, optionflags), optionflags
        )

    def output_difference(self, example: doctest.Example, got: str, optionflags: int) -> str:
        example = copy.copy(example)
        example.want = self.normalize(example.want, optionflags)
        return super().output_difference(example, self.normalize(got, optionflags), optionflags)


def output_checker(
    normalizers: UserNormalizers | Sequence[Normalizer] | None = None,
    *,
    var_dir: VarDirSource = current_var_dir,
) -> NormalizingOutputChecker:
    """The output checker that examples of every kind are compared with.

    :param normalizers: user normalisers, as ``{name: (pattern, replacement)}`` or as
        :func:`user_normalizers` made them; the built-in ones are always known.
    :param var_dir: where ``var-dir`` learns the var dir.
    :raises HarnessError: as :func:`user_normalizers`.
    """
    if normalizers is None or isinstance(normalizers, Mapping):
        normalizers = user_normalizers(normalizers)
    return NormalizingOutputChecker(normalizers, var_dir=var_dir)


def doctest_evaluator(optionflags: int, checker: doctest.OutputChecker) -> DocTestEvaluator:
    """Sybil's doctest evaluator, comparing with *checker*."""
    evaluator = DocTestEvaluator(optionflags)
    # Sybil's runner takes no checker; doctest keeps it here.
    evaluator.runner._checker = checker  # type: ignore[attr-defined]
    return evaluator


def expand_all(optionflags: int) -> int:
    """*optionflags* with ``NORMALIZE_ALL`` replaced by every built-in normaliser's flag,
    so that an example can still turn one of them off."""
    if optionflags & NORMALIZE_ALL:
        optionflags &= ~NORMALIZE_ALL
        for flag in BUILTIN_FLAGS.values():
            optionflags |= flag
    return optionflags


#: ``.. runnerkit-normalize: NAMES``, a reStructuredText comment alone on its line.
_RST_LINE = re.compile(r"^\.\. runnerkit-normalize:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
#: ``<!-- runnerkit-normalize: NAMES -->``, a Markdown (HTML) comment alone on its line.
_MD_LINE = re.compile(r"^<!--[ \t]*runnerkit-normalize:[ \t]*(.*?)[ \t]*-->[ \t]*$", re.MULTILINE)


def document_normalizers(document: Document, known: Mapping[str, int]) -> dict[str, int]:
    """The normalisers *document* turns on for all of its examples, by name.

    A reStructuredText document names them in a comment line of its own,
    ``.. runnerkit-normalize: filebases, var-dir``; a Markdown one in
    ``<!-- runnerkit-normalize: filebases, var-dir -->``.  Names are separated by commas
    or blanks; ``all`` names every built-in one; several lines add up.

    :param known: the flag of each name the document may use.
    :raises HarnessError: a name is not known, or a line names none.
    """
    pattern = _MD_LINE if is_markdown(document.path) else _RST_LINE
    chosen: dict[str, int] = {}
    allowed = ", ".join([ALL, *sorted(known)])
    for match in pattern.finditer(directive_text(document)):
        names = [name for name in re.split(r"[,\s]+", match.group(1)) if name]
        line = document.text.count("\n", 0, match.start()) + 1
        if not names:
            raise HarnessError(
                f"{document.path}, line {line}: runnerkit-normalize names no normalizer:"
                f" name one or more of {allowed}"
            )
        for name in names:
            if name == ALL:
                chosen.update(BUILTIN_FLAGS)
            elif name in known:
                chosen[name] = known[name]
            else:
                raise HarnessError(
                    f"{document.path}, line {line}: unknown normalizer {name!r} in"
                    f" runnerkit-normalize: known ones are {allowed}"
                )
    return chosen


def with_document_normalizers(parser: Parser, known: Mapping[str, int]) -> Parser:
    """*parser*, whose doctest examples also get the flags of their document's
    ``runnerkit-normalize`` line (:func:`document_normalizers`), unless an example's
    own directive turned that flag on or off; ``NORMALIZE_ALL`` in a directive is
    expanded there the same way.

    :param known: the flag of each normaliser name.
    """

    def parse(document: Document) -> Iterator[Region]:
        flags = document_normalizers(document, known).values()
        for region in parser(document):
            # doctest examples and console commands keep their directive's flags alike.
            options = getattr(region.parsed, "options", None)
            if isinstance(options, dict):
                _add_flags(options, flags)
            yield region

    return parse


def _add_flags(options: dict[int, bool], flags: Iterable[int]) -> None:
    """Turn *flags* on in an example's *options* (flag: on) where its directive left
    them alone."""
    # The example's own directive first: its -NORMALIZE_ALL beats the document's line.
    if NORMALIZE_ALL in options:
        on = options[NORMALIZE_ALL]
        # Off as a flag of its own: its normalisers are now set one by one.
        options[NORMALIZE_ALL] = False
        for flag in BUILTIN_FLAGS.values():
            options.setdefault(flag, on)
    for flag in flags:
        options.setdefault(flag, True)
