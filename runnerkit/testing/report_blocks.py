"""The spec report, part two: a code block of a document, its examples marked in place.

A document's renderer (:mod:`runnerkit.testing.report_render`) knows on which line of
the document each code block starts; :class:`BlockMarker` writes the block one source
line at a time, so that the lines of each example are wrapped in an element of the
example's status, with a badge that links to the example's line on the document's
source page, and what went wrong written right under its last line.  Everything taken
from the document or from the run is HTML-escaped.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from html import escape

from runnerkit.testing.report_outcomes import (
    ACCEPTED,
    FAILED,
    NOT_RUN,
    PASSED,
    SKIPPED,
    Example,
    Run,
)


class BlockMarker:
    """Writes a document's code blocks with its examples marked.

    :param examples: the document's examples.
    :param source_page: the relative link of the document's source page, whose lines
        have the anchors ``#L1``, ``#L2``...
    """

    def __init__(self, examples: Iterable[Example], source_page: str) -> None:
        self.examples = sorted(examples, key=lambda example: example.line)
        self.source_page = source_page
        self._by_line: dict[int, Example] = {}
        for example in self.examples:
            for line in range(example.line, example.end_line + 1):
                self._by_line.setdefault(line, example)
        #: The examples written so far, by first line.
        self.placed: set[int] = set()

    def block(self, lines: Sequence[str], first_line: int | None, language: str = "") -> str:
        """The HTML of a code block whose *lines* start on *first_line* of the document
        (None when that is not known: then nothing is marked)."""
        classes = "code" + (f" language-{_token(language)}" if language else "")
        parts = [f'<div class="{classes}">']
        group: list[str] = []
        current: Example | None = None

        def flush() -> None:
            if not group:
                return
            text = "\n".join(escape(line) for line in group)
            if current is None:
                parts.append(f'<pre class="plain">{text}</pre>')
            else:
                parts.append(self._example(current, text))
            group.clear()

        for offset, line in enumerate(lines):
            number = None if first_line is None else first_line + offset
            example = None if number is None else self._by_line.get(number)
            # An example whose first lines are not in the block (a directive's or a
            # fence's opening line) is shown with the block, unless shown already.
            if (
                example is not None
                and example is not current
                and example.line != number
                and example.line in self.placed
            ):
                example = None
            if example is not current:
                flush()
                current = example
                if example is not None:
                    self.placed.add(example.line)
            group.append(line)
        flush()
        parts.append("</div>")
        return "".join(parts)

    def unplaced(self) -> list[Example]:
        """The examples no block held (in comments, hidden blocks): shown apart."""
        return [example for example in self.examples if example.line not in self.placed]

    def hidden(self, example: Example, text: str) -> str:
        """The HTML of an example the document does not show, with its source *text*."""
        return self._example(example, escape(text))

    def _example(self, example: Example, code: str) -> str:
        status = example.status
        link = f"{self.source_page}#L{example.line}"
        title = f"line {example.line} of the source"
        preludes = sorted({run.prelude_of for run in example.runs.values() if run.prelude_of})
        if preludes:
            of = ", ".join(str(line) for line in preludes)
            title += f"; not selected: ran as the prelude of the example at line {of}"
        if not example.runs and example.reason:
            title += f"; {NOT_RUN}: {example.reason}"
        badge = (
            f'<a class="badge" href="{escape(link)}" title="{escape(title)}">'
            f"{_badge_text(example)}</a>"
        )
        details = "".join(outcome(run) for run in _runs(example) if run.status != PASSED)
        return (
            f'<div class="example {_css(status)}" id="example-L{example.line}"'
            f' data-status="{escape(status)}" data-line="{example.line}">'
            f"{badge}<pre>{code}</pre>{details}</div>"
        )


def outcome(run: Run) -> str:
    """The HTML of what went wrong in *run*, or what became of it (skipped, accepted)."""
    label = run.status + (f" [{escape(run.run)}]" if run.run else "")
    parts = [f'<div class="outcome {_css(run.status)}"><p class="label">{label}']
    if run.status == SKIPPED and run.message:
        parts.append(f": {escape(run.message)}")
    parts.append("</p>")
    if run.status in (FAILED, ACCEPTED):
        if run.want is not None and run.got is not None:
            parts.append(diff(run.want, run.got))
        elif run.message:
            parts.append(f'<pre class="message">{escape(run.message)}</pre>')
        if run.accepted is not None:
            verb = "wrote" if run.status == ACCEPTED else "would write"
            parts.append(
                f'<p class="accepted-note">accept mode {verb} the expected output:</p>'
                f'<pre class="accepted-output">{escape(run.accepted)}</pre>'
            )
        if run.note:
            parts.append(f'<p class="note">{escape(run.note)}</p>')
        if run.want is not None and run.got is not None and run.message:
            parts.append(
                "<details><summary>the failure as reported</summary>"
                f'<pre class="message">{escape(run.message)}</pre></details>'
            )
    parts.append("</div>")
    return "".join(parts)


def diff(want: str, got: str) -> str:
    """The unified diff of the expected and the actual output, as HTML."""
    lines = list(
        difflib.unified_diff(
            want.splitlines(), got.splitlines(), "expected", "got", lineterm="", n=3
        )
    )
    if not lines:
        # The same text: the difference is in what the comparison ignores or needs.
        lines = ["--- expected", "+++ got", *(f" {line}" for line in want.splitlines())]
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            kind = "head"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("-"):
            kind = "del"
        elif line.startswith("+"):
            kind = "add"
        else:
            kind = "same"
        out.append(f'<span class="{kind}">{escape(line)}</span>')
    return f'<pre class="diff">{"".join(out)}</pre>'


def _runs(example: Example) -> list[Run]:
    """*example*'s runs, in the order its document's runs were collected."""
    return list(example.runs.values())


def _badge_text(example: Example) -> str:
    runs = _runs(example)
    if not runs:
        return f"line {example.line} · {NOT_RUN}"
    if len(runs) == 1 and runs[0].run is None:
        return f"line {example.line} · {escape(runs[0].status)}"
    each = " · ".join(f"{escape(run.status)} [{escape(run.run or '')}]" for run in runs)
    return f"line {example.line} · {each}"


def _css(status: str) -> str:
    return "status-" + status.replace(" ", "-")


def _token(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum() or ch in "-_")
