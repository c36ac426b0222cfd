"""Accept mode, part two: rewrite expected outputs in a document, byte for byte.

Sybil reads documents with universal newlines, so its offsets count a ``\\r\\n`` as
one character.  A rewrite reads the file again without translation, checks that it
is still the text the examples were collected from, finds each example's expected
output, replaces it with the new output at the example's indentation and in the
file's line endings, and leaves every other byte alone.
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runnerkit.testing.accept_record import Acceptance, Refusal

# The source part of doctest's example pattern: a ``>>>`` line and its ``...`` lines.
_SOURCE = re.compile(
    r"(?P<source>^(?P<indent>[ ]*)>>>.*(?:\n[ ]*\.\.\..*)*)\n?",
    re.MULTILINE,
)
_PROMPT_LINE = re.compile(r"^[ ]*>>>", re.MULTILINE)
_NEWLINE = re.compile(r"\r\n|\r|\n")


def digest(text: str) -> str:
    """The sha256 of *text*, which records name a document's text by."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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
        """Replace the document with the new text, unless it changed on disk meanwhile."""
        target = self.path.resolve()
        with open(target, encoding=self.encoding, newline="") as current:
            if current.read() != self.old:
                raise OSError(f"{str(self.path)!r} changed while accept mode was rewriting it")
        mode = target.stat().st_mode
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding=self.encoding, newline="") as output:
                output.write(self.new)
            os.chmod(tmp, mode & 0o7777)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def plan(path: Path, acceptances: Sequence[Acceptance]) -> FileChange:
    """Work out the rewrite of the document at *path* for *acceptances*.

    :raises OSError: the document cannot be read.
    """
    encoding = acceptances[0].encoding
    with open(path, encoding=encoding, newline="") as source:
        raw = source.read()
    change = FileChange(path, encoding, raw, raw)
    text, crlf = _translate(raw)
    spans: list[tuple[int, int, int, str, Acceptance]] = []
    for acceptance in acceptances:
        if acceptance.digest != digest(text):
            change.refused.append(_refusal(acceptance, "the document changed during the run"))
            continue
        found = _locate(text, acceptance)
        if found is None:
            change.refused.append(_refusal(acceptance, "its expected output cannot be located"))
            continue
        example, start, end, indent = found
        replacement = _indented(text, start, end, indent, acceptance.new_want)
        spans.append((example, start, end, replacement, acceptance))
    new = raw
    limit = len(text) + 1
    for example, start, end, replacement, acceptance in sorted(spans, key=lambda s: -s[0]):
        if end > limit:
            change.refused.append(_refusal(acceptance, "it overlaps another rewrite"))
            continue
        limit = start
        raw_start, raw_end = _raw_offset(crlf, start), _raw_offset(crlf, end)
        newline = _newline_of(raw, _raw_offset(crlf, example), raw_end)
        new = new[:raw_start] + replacement.replace("\n", newline) + new[raw_end:]
        change.accepted.append((text.count("\n", 0, example) + 1, acceptance))
    change.accepted.reverse()
    change.new = new
    return change


def plan_all(acceptances: Iterable[Acceptance]) -> tuple[list[FileChange], list[Refusal]]:
    """:func:`plan` each document with acceptances, in path order.

    :returns: the changes, and refusals for documents that could not be read.
    """
    by_path: dict[str, list[Acceptance]] = {}
    for acceptance in acceptances:
        by_path.setdefault(acceptance.path, []).append(acceptance)
    changes: list[FileChange] = []
    refused: list[Refusal] = []
    for path in sorted(by_path):
        try:
            changes.append(plan(Path(path), by_path[path]))
        except (OSError, UnicodeError) as error:
            refused.extend(
                _refusal(a, f"cannot read the document: {error}") for a in by_path[path]
            )
    return changes, refused


def _lines(text: str) -> list[str]:
    """The lines of *text*, without their endings, in any line ending style."""
    lines = _NEWLINE.split(text)
    return lines[:-1] if lines[-1] == "" else lines


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


def _locate(text: str, acceptance: Acceptance) -> tuple[int, int, int, str] | None:
    """Where the example is in *text*: its start, its output's start and end, its indent.

    Sybil's offsets are exact for examples it parsed from the document's text.  For
    examples inside a lexed block (a Markdown fence, a code-block directive) they are
    not: the region's start falls short when the block was dedented, and its end
    leaves out the block's opening.  Such an example is found as the same occurrence
    of its source and output as Sybil counted, provided the text holds exactly as many;
    failing that, as the only one from the region's start on.
    """
    found = _match_at(text, acceptance.start, acceptance)
    if found is not None and found[2] == acceptance.end:
        return found
    everywhere = []
    for prompt in _PROMPT_LINE.finditer(text):
        found = _match_at(text, prompt.start(), acceptance)
        if found is not None:
            everywhere.append(found)
    if len(everywhere) == acceptance.occurrences:
        return everywhere[acceptance.occurrence]
    after = [found for found in everywhere if found[0] >= acceptance.start]
    return after[0] if len(after) == 1 else None


def _match_at(
    text: str, position: int, acceptance: Acceptance
) -> tuple[int, int, int, str] | None:
    """The example's expected output if the example is at *position*, else None."""
    if position and text[position - 1] != "\n":
        return None
    match = _SOURCE.match(text, position)
    if match is None:
        return None
    indent = match["indent"]
    margin = len(indent) + 4
    source = "".join(line[margin:] + "\n" for line in match["source"].split("\n"))
    if source != acceptance.source:
        return None
    start = end = match.end()
    for line in acceptance.want.split("\n")[:-1]:
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end + 1
        if text[end:line_end].rstrip("\n") != indent + line:
            return None
        end = line_end
    return position, start, end, indent


def _indented(text: str, start: int, end: int, indent: str, want: str) -> str:
    """*want* at *indent*, fitted to the text around *start*..*end*.

    The last line keeps the old output's lack of a final newline at the end of the
    file, and output after a last source line that has no newline gets one first.
    """
    lines = "".join(indent + line + "\n" for line in want.split("\n")[:-1])
    if not lines:
        return ""
    at_end = end == len(text) and not text.endswith("\n")
    if start == end and start > 0 and text[start - 1] != "\n":
        return "\n" + lines[:-1]
    return lines[:-1] if at_end else lines
