"""Accept mode, part two: rewrite expected outputs in a document, and read it back.

Sybil reads documents with universal newlines, so its offsets count a ``\\r\\n`` as
one character.  A rewrite reads the file again without translation, checks that it
is still the text the examples were collected from, finds each example's expected
output, replaces it with the new output at the example's indentation and in the
file's line endings, and leaves every other byte alone.

Nothing is written on trust: each rewritten document is parsed again by the parsers
that collected it, exactly as Sybil would read it from disk, and an example is
accepted only if the document then reads back with that example's new output and
the same source, and with every other example as it was.
"""

from __future__ import annotations

import bisect
import difflib
import doctest
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sybil import Document, Region
from sybil.parsers.abstract.doctest import DocTestStringParser
from sybil.typing import Parser

from runnerkit.testing.accept_record import Acceptance, Refusal, record_from_dict
from runnerkit.testing.console_session import Command

_NEWLINE = re.compile(r"\r\n|\r|\n")
_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


def digest(text: str) -> str:
    """The sha256 of *text*, which records name a document's text by."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class DocumentReader:
    """How Sybil read a document: its document type, its parsers and its encoding.

    :param path: the document's path, which parsers may look at (Markdown or reST).
    """

    path: str
    document_type: type[Document]
    parsers: Sequence[Parser]
    encoding: str

    def regions(self, text: str) -> list[Region]:
        """The regions the parsers find in *text*, in document order, as
        :meth:`sybil.Document.parse` would find them.

        :raises Exception: whatever a parser raises for text it cannot parse.
        """
        document = self.document_type(text, self.path)
        for parser in self.parsers:
            for region in parser(document):
                document.add(region)
        return [region for _, region in document.regions]

    def read(self, raw: str) -> list[Region]:
        """The regions of *raw*, the file's text, read the way Sybil reads a file:
        encoded, decoded, and with universal newlines.

        :raises Exception: *raw* cannot be encoded, or a parser cannot parse it.
        """
        text = raw.encode(self.encoding).decode(self.encoding)
        return self.regions(_translate(text)[0])


@dataclass
class FileChange:
    """The rewrite of one document: its text before and after, and what was left out."""

    path: Path
    encoding: str
    old: str
    new: str
    #: The rewritten examples, each with the line it really starts on.
    accepted: list[tuple[int, Acceptance]] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def diff(self, name: str) -> list[str]:
        """The unified diff of the rewrite, as lines without line endings."""
        return list(
            difflib.unified_diff(
                _lines(self.old),
                _lines(self.new),
                f"a/{name}",
                f"b/{name}",
                lineterm="",
            )
        )

    def write(self) -> None:
        """Replace the document with the new text, unless it changed on disk meanwhile.

        :raises OSError: the document changed, or cannot be written.
        """
        target = self.path.resolve()
        with open(target, encoding=self.encoding, newline="") as current:
            if current.read() != self.old:
                raise OSError(f"{str(self.path)!r} changed while accept mode was rewriting it")
        mode = target.stat().st_mode
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding=self.encoding, newline="") as output:
                output.write(self.new)
                output.flush()
                os.fsync(output.fileno())
            os.chmod(tmp, mode & 0o7777)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def as_dict(self) -> dict[str, Any]:
        """The change as plain data, for xdist's ``workeroutput``."""
        return {
            "path": str(self.path),
            "encoding": self.encoding,
            "old": self.old,
            "new": self.new,
            "accepted": [[line, acceptance.as_dict()] for line, acceptance in self.accepted],
            "refused": [refusal.as_dict() for refusal in self.refused],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileChange:
        """Rebuild a change that :meth:`as_dict` made."""
        accepted = [(line, record_from_dict(record)) for line, record in data["accepted"]]
        refused = [record_from_dict(record) for record in data["refused"]]
        return cls(
            Path(data["path"]),
            data["encoding"],
            data["old"],
            data["new"],
            [(line, a) for line, a in accepted if isinstance(a, Acceptance)],
            [r for r in refused if isinstance(r, Refusal)],
        )


@dataclass(frozen=True)
class _Span:
    """Where an example's expected output is, in the translated text."""

    #: Where the example starts: its first source line.
    example: int
    #: Where its expected output starts and ends.
    start: int
    end: int
    #: The text before each line of the example.
    indent: str


def plan(path: Path, acceptances: Sequence[Acceptance], reader: DocumentReader) -> FileChange:
    """Work out the rewrite of the document at *path* for *acceptances*, keeping only
    the rewrites that read back.

    :param reader: how the document was read, to read the rewrite back the same way.
    :raises OSError: the document cannot be read.
    :raises UnicodeError: the document cannot be decoded.
    """
    encoding = reader.encoding
    with open(path, encoding=encoding, newline="") as source:
        raw = source.read()
    change = FileChange(path, encoding, raw, raw)
    text, crlf = _translate(raw)
    unchanged = [a for a in acceptances if a.digest == digest(text)]
    change.refused.extend(
        _refusal(a, "the document changed during the run")
        for a in acceptances
        if a.digest != digest(text)
    )
    if not unchanged:
        return change
    try:
        regions = reader.regions(text)
        baseline = [_reading(region) for region in regions]
    except Exception as error:  # a parser may raise anything
        reason = f"the document cannot be read back: {_first_line(error)}"
        change.refused.extend(_refusal(a, reason) for a in unchanged)
        return change
    candidates = _candidates(
        text, str(path), [regions[a.index] for a in unchanged if a.index < len(regions)]
    )
    chosen: list[tuple[_Span, Acceptance]] = []
    for acceptance in sorted(unchanged, key=lambda a: a.index):
        parsed = regions[acceptance.index].parsed if acceptance.index < len(regions) else None
        if isinstance(parsed, Command):
            spans = _command_spans(regions[acceptance.index].start, parsed, acceptance)
        else:
            spans = _locate(text, candidates, acceptance)
        if not spans:
            change.refused.append(_refusal(acceptance, "its expected output cannot be located"))
            continue
        problem = None
        for span in spans:
            if any(_overlap(span, other) for other, _ in chosen):
                problem = problem or "it overlaps another rewrite"
                continue
            trial = [*chosen, (span, acceptance)]
            problem = _read_back(reader, _apply(raw, text, crlf, trial), baseline, trial)
            if problem is None:
                chosen.append((span, acceptance))
                break
        if problem is not None:
            change.refused.append(_refusal(acceptance, problem))
    change.new = _apply(raw, text, crlf, chosen)
    change.accepted = [
        (text.count("\n", 0, span.example) + 1, acceptance)
        for span, acceptance in sorted(chosen, key=lambda c: c[0].start)
    ]
    return change


def plan_all(
    acceptances: Iterable[Acceptance], readers: Mapping[str, DocumentReader]
) -> tuple[list[FileChange], list[Refusal]]:
    """:func:`plan` each document with acceptances, in path order.

    :param readers: how each document was read, by path.
    :returns: the changes, and refusals for documents that could not be read.
    """
    by_path: dict[str, list[Acceptance]] = {}
    for acceptance in acceptances:
        by_path.setdefault(acceptance.path, []).append(acceptance)
    changes: list[FileChange] = []
    refused: list[Refusal] = []
    for path in sorted(by_path):
        reader = readers.get(path)
        if reader is None:
            reason = "the parsers that read the document are unknown, so it cannot be read back"
            refused.extend(_refusal(a, reason) for a in by_path[path])
            continue
        try:
            changes.append(plan(Path(path), by_path[path], reader))
        except (OSError, UnicodeError) as error:
            refused.extend(
                _refusal(a, f"cannot read the document: {error}") for a in by_path[path]
            )
    return changes, refused


#: A line with nothing but blanks on it, and the newline before it.
_BLANK_LINE = re.compile(r"\n[ \t]*(?:\n|\Z)")


def _candidates(text: str, path: str, wanted: Sequence[Region]) -> list[tuple[int, int, Any]]:
    """Where doctest finds examples in *text*: (start, end, example).

    Read from the whole text where doctest can read it; where it cannot (a block of
    ``>>>`` lines that no parser collects, indented unevenly, as in a Markdown fence of
    another language), from the lines of the *wanted* regions alone.
    """
    try:
        return [
            (region.start, region.end, region.parsed)
            for region in DocTestStringParser()(text, path)
        ]
    except ValueError:
        pass
    found: list[tuple[int, int, Any]] = []
    for wanted_region in wanted:
        # The example, from the start of its line to the blank line that ends it.
        line_start = text.rfind("\n", 0, wanted_region.start) + 1
        blank = _BLANK_LINE.search(text, wanted_region.start)
        end = len(text) if blank is None else blank.start() + 1
        try:
            regions = DocTestStringParser()(text[line_start:end], path)
        except ValueError:
            continue
        found.extend(
            (line_start + region.start, line_start + region.end, region.parsed)
            for region in regions
        )
    return found


def _lines(text: str) -> list[str]:
    """The lines of *text*, without their endings, in any line ending style."""
    lines = _NEWLINE.split(text)
    return lines[:-1] if lines[-1] == "" else lines


def _first_line(error: BaseException) -> str:
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__


def _refusal(acceptance: Acceptance, reason: str) -> Refusal:
    return Refusal(acceptance.path, acceptance.line, reason)


def _translate(raw: str) -> tuple[str, list[int]]:
    """*raw* with universal newlines, and where each ``\\r\\n`` became ``\\n``."""
    crlf = [match.start() - n for n, match in enumerate(re.finditer("\r\n", raw))]
    return raw.replace("\r\n", "\n").replace("\r", "\n"), crlf


def _raw_offset(crlf: list[int], offset: int) -> int:
    """The offset in the raw text of *offset* in the translated text."""
    return offset + bisect.bisect_left(crlf, offset)


def _newline_of(raw: str, start: int, end: int) -> str:
    """The line ending the example at *start*..*end* uses, else the file's first."""
    for text in (raw[start:end], raw):
        match = _NEWLINE.search(text)
        if match:
            return match.group()
    return "\n"


def _reading(region: Region) -> tuple[Any, ...]:
    """What a region says, to compare a document with its rewrite.

    A doctest example is its source, its expected output and its options; other
    regions are compared by kind, and by their text where they are text.
    """
    parsed = region.parsed
    if isinstance(parsed, doctest.Example):
        return ("doctest", parsed.source, parsed.want, parsed.options)
    if isinstance(parsed, Command):
        return parsed.reading()
    return (type(parsed).__name__, str(parsed) if isinstance(parsed, str) else None)


def _locate(
    text: str, candidates: Sequence[tuple[int, int, Any]], acceptance: Acceptance
) -> list[_Span]:
    """Where the example's expected output may be in *text*, most likely first.

    The candidates are the doctest examples doctest's parser finds in the whole text
    that have the example's source and start with its output.  Sybil's region is
    exact for an example it parsed from the document's text, and that candidate comes
    first.  For an example inside a lexed block (a Markdown fence, a code-block
    directive) the region's start falls short when the block was dedented, and its
    end leaves out the block's opening; the candidates nearest its start come first.
    Which one is right is settled by reading the rewrite back.
    """
    spans = []
    for start, end, parsed in candidates:
        # Seen whole, a fenced example's output runs on into the closing fence.
        if parsed.source != acceptance.source or not parsed.want.startswith(acceptance.want):
            continue
        lines = _LINE.findall(text, start, end)
        source_lines = len(lines) - parsed.want.count("\n")
        want_start = start + sum(len(line) for line in lines[:source_lines])
        want_end = want_start + sum(
            len(line) for line in lines[source_lines : source_lines + acceptance.want.count("\n")]
        )
        spans.append(_Span(start, want_start, want_end, " " * parsed.indent))
    exact = (acceptance.start, acceptance.end)
    return sorted(
        spans, key=lambda s: ((s.example, s.end) != exact, abs(s.example - acceptance.start))
    )


def _command_spans(start: int, command: Command, acceptance: Acceptance) -> list[_Span]:
    """Where a console command's expected output is: its parser knows exactly."""
    if command.source != acceptance.source or command.want != acceptance.want:
        return []
    return [_Span(start, command.want_start, command.want_end, command.indent)]


def _overlap(one: _Span, other: _Span) -> bool:
    return one.example < other.end and other.example < one.end


def _apply(
    raw: str, text: str, crlf: list[int], chosen: Sequence[tuple[_Span, Acceptance]]
) -> str:
    """*raw* with the expected output of each chosen example replaced."""
    new = raw
    for span, acceptance in sorted(chosen, key=lambda c: -c[0].start):
        replacement = _indented(text, span.start, span.end, span.indent, acceptance.new_want)
        raw_start, raw_end = _raw_offset(crlf, span.start), _raw_offset(crlf, span.end)
        newline = _newline_of(raw, _raw_offset(crlf, span.example), raw_end)
        new = new[:raw_start] + replacement.replace("\n", newline) + new[raw_end:]
    return new


def _read_back(
    reader: DocumentReader,
    new: str,
    baseline: Sequence[tuple[Any, ...]],
    chosen: Sequence[tuple[_Span, Acceptance]],
) -> str | None:
    """Why *new* does not read back as *baseline* with the chosen outputs, or None."""
    try:
        regions = reader.read(new)
    except UnicodeError:
        return f"its output cannot be written in the document's encoding, {reader.encoding}"
    except Exception as error:  # a parser may raise anything
        return f"the rewritten document would not read back: {_first_line(error)}"
    if len(regions) != len(baseline):
        return (
            f"the rewritten document would not read back: it would hold {len(regions)}"
            f" examples instead of {len(baseline)}"
        )
    expected = list(baseline)
    for _, acceptance in chosen:
        kind, source, _, options = expected[acceptance.index]
        expected[acceptance.index] = (kind, source, acceptance.new_want, options)
    for index, (region, wanted) in enumerate(zip(regions, expected, strict=True)):
        if _reading(region) != wanted:
            which = "its output" if index == chosen[-1][1].index else "another example"
            return f"the rewritten document would not read back: {which} would read differently"
    return None


def _indented(text: str, start: int, end: int, indent: str, want: str) -> str:
    """*want* at *indent*, fitted to the text around *start*..*end*.

    The last line keeps the old output's lack of a final newline at the end of the
    file, and output after a last source line that has no newline gets one first.
    """
    # A blank line, which only a console command's output keeps as it is, gets no
    # trailing whitespace from the indentation.
    lines = "".join(
        (indent + line if line else indent.rstrip(" \t")) + "\n" for line in want.split("\n")[:-1]
    )
    if not lines:
        return ""
    at_end = end == len(text) and not text.endswith("\n")
    if start == end and start > 0 and text[start - 1] != "\n":
        return "\n" + lines[:-1]
    return lines[:-1] if at_end else lines
