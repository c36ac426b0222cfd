"""Which Sybil parsers read a spec, chosen by name and by the document's file suffix.

A spec names the kinds of example it holds (``doctest``, ``codeblock``, ``skip``,
``clear-namespace``); :class:`SpecParser` turns those names into Sybil's reStructuredText
parsers for ``.rst`` (and any other suffix) and its Markdown parsers for ``.md``, so one
Sybil, with one set of patterns, reads both kinds of document.
"""

from __future__ import annotations

import doctest
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sybil import Document, Example, Region
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.parsers import markdown, rest
from sybil.parsers.abstract import AbstractClearNamespaceParser, DocTestStringParser
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer
from sybil.parsers.rest.lexers import DirectiveInCommentLexer
from sybil.typing import Parser

from runnerkit.errors import UnknownParserError
from runnerkit.testing.awaiting import AwaitEvaluators
from runnerkit.testing.console import ConsoleParser, markdown_lexers, rest_lexers
from runnerkit.testing.console_session import DEFAULT_TIMEOUT
from runnerkit.testing.fences import fences_by_language, is_markdown, only_real_blocks, real_blocks
from runnerkit.testing.normalize import (
    BUILTIN_FLAGS,
    Normalizer,
    NormalizingOutputChecker,
    doctest_evaluator,
    with_document_normalizers,
)
from runnerkit.testing.pycon import PyconParser

#: The kinds of example a spec can hold, in the order Sybil is given their parsers.
PARSER_NAMES = ("doctest", "codeblock", "skip", "clear-namespace", "console")


#: Where a document keeps the names it started with, for ``clear-namespace``.
BASE_NAMESPACE = "__runnerkit_base_namespace__"


class ClearToBaseParser(AbstractClearNamespaceParser):
    """``clear-namespace`` that forgets what the document defined, but not its world.

    Sybil's own version empties the namespace, which would drop ``config``, ``cleanups``
    and the world itself.  This one puts back the names the document started with
    (the world's helpers, extra names), so the document goes on in the same world
    with none of its own names.
    """

    @staticmethod
    def evaluate(example: Example) -> None:
        namespace = example.document.namespace
        base = namespace.get(BASE_NAMESPACE, {})
        namespace.clear()
        namespace.update(base)
        namespace[BASE_NAMESPACE] = base


def _only_doctests(parser: Parser, keep_doctests: bool) -> Parser:
    """Keep only the doctest regions of *parser*, or only the others."""

    def parse(document: Document) -> Iterator[Region]:
        for region in parser(document):
            if isinstance(region.evaluator, DocTestEvaluator) == keep_doctests:
                yield region

    return parse


def rest_parsers(
    names: Sequence[str],
    optionflags: int,
    checker: doctest.OutputChecker | None = None,
    console_timeout: float = DEFAULT_TIMEOUT,
) -> list[Parser]:
    """Sybil's reStructuredText parsers for the example kinds *names*.

    :param checker: what doctest examples and console commands are compared with;
        Sybil's own by default.
    :param console_timeout: seconds a console command may run unless it says otherwise.
    """
    doctests = rest.DocTestParser(optionflags=optionflags)
    if checker is not None:
        doctests.string_parser = DocTestStringParser(doctest_evaluator(optionflags, checker))
    made: dict[str, Parser] = {
        "console": ConsoleParser(rest_lexers(), optionflags, console_timeout, checker),
        "doctest": doctests,
        "codeblock": rest.PythonCodeBlockParser(),
        "skip": rest.SkipParser(),
        "clear-namespace": ClearToBaseParser([DirectiveInCommentLexer("clear-namespace")]),
    }
    return [made[name] for name in PARSER_NAMES if name in names]


def markdown_parsers(
    names: Sequence[str],
    optionflags: int,
    checker: doctest.OutputChecker | None = None,
    console_timeout: float = DEFAULT_TIMEOUT,
) -> list[Parser]:
    """Sybil's Markdown parsers for the example kinds *names*.

    In Markdown, doctests live in fenced ``python`` blocks that start with ``>>>``, and
    one Sybil parser reads both kinds of ``python`` block; it is split here, so that
    ``doctest`` and ``codeblock`` can be chosen apart.  ``doctest`` also reads the
    ``pycon`` fences (:class:`~runnerkit.testing.pycon.PyconParser`).

    :param checker: what doctest examples and console commands are compared with;
        Sybil's own by default.
    :param console_timeout: seconds a console command may run unless it says otherwise.
    """
    python = markdown.PythonCodeBlockParser(doctest_optionflags=optionflags)
    evaluator = python.doctest_parser.evaluator
    if checker is not None:
        evaluator = doctest_evaluator(optionflags, checker)
        python.doctest_parser = DocTestStringParser(evaluator)
    pycon = PyconParser(evaluator)
    skip = markdown.SkipParser()
    # Sybil's lexers take a fence shown inside another fence (or a comment shown in
    # one) for a real one: keep only what CommonMark reads as a block.
    only_real_blocks(python.codeblock_parser)
    fences_by_language(python.codeblock_parser)
    only_real_blocks(skip)
    made: dict[str, Parser] = {
        "skip": skip,
        "console": ConsoleParser(markdown_lexers(), optionflags, console_timeout, checker),
        "clear-namespace": ClearToBaseParser(
            [real_blocks(DirectiveInHTMLCommentLexer("clear-namespace"))]
        ),
    }
    wanted = [name for name in PARSER_NAMES if name in names]
    if "doctest" in wanted and "codeblock" in wanted:
        made["doctest"] = _both(python, pycon)
        wanted.remove("codeblock")
    else:
        made["doctest"] = _both(_only_doctests(python, keep_doctests=True), pycon)
        made["codeblock"] = _only_doctests(python, keep_doctests=False)
    return [made[name] for name in wanted]


def _both(first: Parser, second: Parser) -> Parser:
    """One parser that yields the regions of *first*, then those of *second*."""

    def parse(document: Document) -> Iterator[Region]:
        yield from first(document)
        yield from second(document)

    return parse


class SpecParser:
    """One Sybil parser that reads ``.md`` documents as Markdown and others as reST.

    :param parsers: example kinds from :data:`PARSER_NAMES`, or parser callables of
        your own, which are given every document whatever its suffix.
    :param optionflags: doctest option flags for ``>>>`` examples and console commands.
    :param normalizers: user normalisers, which doctest examples, console commands and
        documents may turn on besides the built-in ones (:mod:`runnerkit.testing.normalize`).
    :param console_timeout: seconds a console command may run unless it says otherwise.
    :raises UnknownParserError: a name is not one of :data:`PARSER_NAMES`.
    """

    def __init__(
        self,
        parsers: Iterable[str | Parser],
        optionflags: int,
        normalizers: Sequence[Normalizer] = (),
        *,
        console_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        names: list[str] = []
        custom: list[Parser] = []
        for parser in parsers:
            if isinstance(parser, str):
                if parser not in PARSER_NAMES:
                    allowed = ", ".join(repr(name) for name in PARSER_NAMES)
                    raise UnknownParserError(
                        f"unknown spec parser {parser!r}: use one of {allowed},"
                        " or pass a Sybil parser object"
                    )
                names.append(parser)
            else:
                custom.append(parser)
        self.names: tuple[str, ...] = tuple(names)
        #: What doctest examples are compared with, whatever their kind.
        self.checker = NormalizingOutputChecker(normalizers)
        known = {**BUILTIN_FLAGS, **{n.name: n.flag for n in normalizers}}
        self._rest = [
            with_document_normalizers(parser, known)
            for parser in [
                *rest_parsers(names, optionflags, self.checker, console_timeout),
                *custom,
            ]
        ]
        self._markdown = [
            with_document_normalizers(parser, known)
            for parser in [
                *markdown_parsers(names, optionflags, self.checker, console_timeout),
                *custom,
            ]
        ]
        #: Lets examples, yours included, ``await`` (:mod:`runnerkit.testing.awaiting`).
        self._await = AwaitEvaluators()

    def __repr__(self) -> str:
        return f"<SpecParser {', '.join(self.names)}>"

    def parsers_for(self, path: str) -> list[Parser]:
        """The parsers that read the document at *path*."""
        return self._markdown if is_markdown(path) else self._rest

    def __call__(self, document: Document) -> Iterator[Region]:
        for parser in self.parsers_for(document.path):
            yield from self._await.regions(parser(document))


def remember_base_namespace(namespace: dict[str, Any]) -> None:
    """Record *namespace* as what ``clear-namespace`` goes back to."""
    namespace[BASE_NAMESPACE] = {
        name: value for name, value in namespace.items() if name != BASE_NAMESPACE
    }
