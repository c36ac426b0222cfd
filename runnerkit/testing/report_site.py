"""The spec report, part four: the static site, written to the report's directory.

``index.html`` counts the examples of each document by status and says when the run
was made, with which versions and which command.  Each document has two pages,
beside each other under the document's path relative to the root directory:
``docs/guide.rst.html``, the document rendered with its examples marked
(:mod:`runnerkit.testing.report_render`), and ``docs/guide.rst.source.html``, its
source with numbered lines, where each example's badge links to (``#L12``).  A
document outside the root directory goes under ``_outside/`` and its absolute path.

All links are relative and the pages need no script and nothing from the network, so
the report works opened from the file system.  Each file is written to a temporary
file and then renamed over the old one; files an earlier report wrote that this one
does not (a document since removed) are deleted, and no other file is touched.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html import escape
from importlib import metadata
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pytest

from runnerkit.testing.report_outcomes import (
    COUNTS_EXPLAINED,
    NOT_RUN,
    PRELUDE,
    STATUSES,
    Document,
    SpecOutcomes,
    ordered,
)
from runnerkit.testing.report_render import render

#: The file that lists what the report wrote, so the next report can remove it.
MANIFEST = ".runnerkit-spec-report"
STYLESHEET = "report.css"

#: The distributions whose versions the index shows.
_DISTRIBUTIONS = ("pytest", "runnerkit", "sybil", "docutils", "markdown-it-py", "pytest-xdist")


@dataclass(frozen=True)
class RunFacts:
    """When the run was made, with what, and how."""

    date: str
    versions: tuple[tuple[str, str], ...]
    command: str
    root: str
    #: The xdist workers that crashed during the run, and how.
    crashed: tuple[str, ...] = ()
    #: What stopped the run before it ran all it selected (``the run was
    #: interrupted (KeyboardInterrupt)``), or None.
    interruption: str | None = None
    #: pytest's own totals of the spec items (``("passed", 3)``), as its summary counts.
    totals: tuple[tuple[str, int], ...] = ()
    #: How many tests that are not spec examples ran.
    other_tests: int = 0

    @classmethod
    def now(
        cls,
        config: pytest.Config,
        crashed: Sequence[str] = (),
        *,
        interruption: str | None = None,
        totals: tuple[tuple[str, int], ...] = (),
        other_tests: int = 0,
    ) -> RunFacts:
        """The facts of the run *config* configures, dated now (UTC)."""
        versions = [("Python", sys.version.split()[0])]
        for name in _DISTRIBUTIONS:
            try:
                versions.append((name, metadata.version(name)))
            except metadata.PackageNotFoundError:
                continue
        args = [str(arg) for arg in config.invocation_params.args]
        return cls(
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            versions=tuple(versions),
            command=shlex.join(["pytest", *args]),
            root=str(config.rootpath),
            crashed=tuple(crashed),
            interruption=interruption,
            totals=totals,
            other_tests=other_tests,
        )


def write_site(
    directory: Path,
    outcomes: SpecOutcomes,
    facts: RunFacts,
    *,
    root: Path,
    texts: dict[str, str] | None = None,
) -> Path:
    """Write the report of *outcomes* to *directory*; return the index's path.

    :param root: the directory the documents' pages are laid out relative to.
    :param texts: documents' texts to show instead of those collected (accept mode's
        texts from before it rewrote them), by path.
    :raises OSError: a file cannot be written.
    """
    texts = texts or {}
    files: dict[str, str] = {STYLESHEET: STYLESHEET_TEXT}
    entries = []
    for document in ordered(outcomes.documents.values()):
        name = page_name(document.path, root)
        text = texts.get(document.path, document.text)
        if text is None:
            text = _read(document.path)
        try:
            files[f"{name}.html"] = document_page(document, name, text, facts.interruption)
        except Exception as error:  # one document must not cost the whole report
            files[f"{name}.html"] = document_page(
                _unrendered(document, error), name, None, facts.interruption
            )
        if text is not None:
            files[f"{name}.source.html"] = source_page(document, name, text)
        entries.append((name, document))
    index = index_page(entries, facts)
    # Every page is made before any is written, so that a page that cannot be made
    # leaves the last report as it was; the index goes last, once the pages it links
    # to are there.
    directory.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        _write(directory / relative, content)
    _write(directory / "index.html", index)
    files["index.html"] = index
    _remove_stale(directory, set(files))
    _write(directory / MANIFEST, "".join(f"{name}\n" for name in sorted(files)))
    return directory / "index.html"


#: Characters a page cannot hold as they are: C0 controls but tab, newline and
#: carriage return, DEL, and lone surrogates (which no encoding can write).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def printable(text: str) -> str:
    """*text* with its control characters shown as their Unicode pictures (ESC as
    ``\u241b``, so a colour code reads ``\u241b[31m``) and its lone surrogates as
    Python writes them (``\\udcff``)."""

    def shown(match: re.Match[str]) -> str:
        char = match.group()
        code = ord(char)
        if code < 0x20:
            return chr(0x2400 + code)
        if code == 0x7F:
            return "\u2421"
        return f"\\u{code:04x}"

    return _UNPRINTABLE.sub(shown, text)


def _unrendered(document: Document, error: Exception) -> Document:
    """*document*, with why its page could not be made in place of its text."""
    problem = f"the page could not be made: {type(error).__name__}: {error}"
    return replace(document, error=f"{document.error}\n{problem}" if document.error else problem)


def page_name(path: str, root: Path) -> str:
    """Where a document's pages go in the report: its path relative to *root*, with
    ``/`` separators, or ``_outside/`` and its absolute path when it is not below it."""
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(root.absolute()).as_posix()
    except ValueError:
        parts = [part for part in absolute.parts if part not in (absolute.anchor, "")]
        return PurePosixPath("_outside", *parts).as_posix()


def document_page(
    document: Document, name: str, text: str | None, interruption: str | None = None
) -> str:
    """The page of *document*, its examples marked where they stand; *interruption*
    says what stopped the run, when something did."""
    up = _up(name)
    base = PurePosixPath(name).name
    counts = document.counts()
    sections = []
    unfinished = document.unfinished()
    notice = _interruption(interruption, unfinished) if unfinished else ""
    reasons = sorted({e.reason for e in document.examples.values() if e.reason and not e.runs})
    if reasons:
        items = "".join(f"<li>{escape(NOT_RUN)}: {escape(reason)}</li>" for reason in reasons)
        sections.append(f'<ul class="legend">{items}</ul>')
    if document.error is not None:
        sections.append(
            '<section class="collect-error"><h2>Not collected</h2>'
            f'<pre class="message">{escape(document.error)}</pre></section>'
        )
    if text is not None:
        rendered = render(
            document.path, text, list(document.examples.values()), href(f"{base}.source.html")
        )
        sections.append(f'<article class="document">{rendered.body}</article>')
        if rendered.hidden:
            sections.append(
                '<section class="hidden-examples"><h2>Examples the text does not show</h2>'
                "<p>These examples are in comments or invisible code blocks.</p>"
                f"{rendered.hidden}</section>"
            )
        source_link = f' · <a href="{escape(href(base))}.source.html">source</a>'
    else:
        source_link = ""
    return _page(
        title=name,
        up=up,
        header=(
            f'<p class="nav"><a href="{up}index.html">spec report</a> · '
            f"<strong>{escape(name)}</strong>{source_link}</p>"
            f"{notice}{_counts_line(counts)}"
        ),
        body="".join(sections),
    )


def source_page(document: Document, name: str, text: str) -> str:
    """*document*'s source, each line numbered and anchored ``#L<n>``, the lines of
    its examples marked with their status."""
    status_of: dict[int, str] = {}
    for example in document.examples.values():
        for number in range(example.line, example.end_line + 1):
            status_of.setdefault(number, example.status)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        status = status_of.get(number)
        css = f' class="status-{status.replace(" ", "-")}"' if status else ""
        rows.append(
            f'<tr id="L{number}"{css}><td class="ln"><a href="#L{number}">{number}</a></td>'
            f"<td><pre>{escape(line)}</pre></td></tr>"
        )
    base = PurePosixPath(name).name
    up = _up(name)
    return _page(
        title=f"{name} (source)",
        up=up,
        header=(
            f'<p class="nav"><a href="{up}index.html">spec report</a> · '
            f'<a href="{escape(href(base))}.html">{escape(name)}</a> · source</p>'
        ),
        body=f'<table class="source">{"".join(rows)}</table>',
    )


def index_page(entries: list[tuple[str, Document]], facts: RunFacts) -> str:
    """The index: each document with its counts, the totals, and the run's facts."""
    totals = dict.fromkeys((*STATUSES, PRELUDE), 0)
    rows = []
    for name, document in entries:
        counts = document.counts()
        for status, count in counts.items():
            totals[status] += count
        worst = next((s for s in STATUSES if counts[s] and s != NOT_RUN), NOT_RUN)
        if document.error is not None:
            worst = "failed"
        cells = "".join(f'<td class="count">{counts[s] or ""}</td>' for s in totals)
        error = (
            '<div class="collect-error"><p>not collected:</p>'
            f'<pre class="message">{escape(short_error(document.error))}</pre></div>'
            if document.error is not None
            else ""
        )
        rows.append(
            f'<tr class="status-{worst.replace(" ", "-")}">'
            f'<td><a href="{escape(href(name))}.html">{escape(name)}</a>{error}</td>{cells}</tr>'
        )
    head = "".join(f"<th>{escape(status)}</th>" for status in totals)
    total_cells = "".join(f'<td class="count">{totals[s]}</td>' for s in totals)
    # Interrupted under -n before the workers sent what they collected, the
    # controller knows of no document: how many examples did not run is unknown.
    unfinished = sum(document.unfinished() for _, document in entries) if entries else None
    notice = _interruption(facts.interruption, unfinished)
    versions = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(version)}</td></tr>"
        for name, version in facts.versions
    )
    return _page(
        title="spec report",
        up="",
        header=(
            f"<h1>Spec report</h1>{notice}{_pytest_line(facts)}{_counts_line(totals)}"
            f'<p class="explained">per example: {escape(COUNTS_EXPLAINED)}</p>'
            f"{_no_documents(entries, facts)}{_crashes(facts.crashed)}"
        ),
        body=(
            '<table class="documents"><thead><tr><th>document</th>'
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
            f"<tfoot><tr><th>{_all_documents(len(entries))}</th>{total_cells}</tr></tfoot></table>"
            '<h2>The run</h2><table class="facts">'
            f"<tr><th>date (UTC)</th><td><time>{escape(facts.date)}</time></td></tr>"
            f"<tr><th>command</th><td><code>{escape(facts.command)}</code></td></tr>"
            f"<tr><th>root directory</th><td><code>{escape(facts.root)}</code></td></tr>"
            f"{versions}</table>"
        ),
    )


def _interruption(interruption: str | None, unfinished: int | None) -> str:
    """The notice that the run did not run all it selected, and why; *unfinished* is
    how many examples did not run, None when that is not known."""
    if interruption is None:
        return ""
    if unfinished is None:
        told = "the examples it collected are not known (the workers did not say)"
    else:
        told = f"{unfinished} {'example' if unfinished == 1 else 'examples'} did not run"
    return (
        f'<p class="interrupted"><strong>Partial report:</strong> {escape(interruption)}'
        f" — {told}.</p>"
    )


def _pytest_line(facts: RunFacts) -> str:
    """pytest's own totals of the spec items: what its summary line says of them."""
    if not facts.totals:
        return ""
    said = ", ".join(f"{count} {category}" for category, count in facts.totals)
    return f'<p class="pytest-totals">pytest, of the spec items: {escape(said)}</p>'


def _no_documents(entries: list[tuple[str, Document]], facts: RunFacts) -> str:
    """The hint, when no spec document was collected, of why there may be none."""
    if entries or facts.interruption:
        return ""
    tests = "test" if facts.other_tests == 1 else "tests"
    return (
        '<p class="hint">no spec documents were collected by runnerkit\'s collector'
        " (<code>collect_specs</code>/<code>make_sybil</code> patterns in"
        f" <code>conftest.py</code>); {facts.other_tests} other {tests} ran</p>"
    )


def _crashes(crashed: Sequence[str]) -> str:
    if not crashed:
        return ""
    workers = "worker" if len(crashed) == 1 else "workers"
    items = "".join(f"<li><code>{escape(line)}</code></li>" for line in crashed)
    return (
        f'<div class="crashed"><p>{len(crashed)} {workers} crashed during the run:'
        " the examples they were running failed, and what they would have run next"
        f" may not have run.</p><ul>{items}</ul></div>"
    )


def _all_documents(count: int) -> str:
    if count == 1:
        return "the 1 document"
    return f"all {count} documents"


def short_error(report: str) -> str:
    """What pytest's report of a collection error says last: its last ``E`` lines
    (the exception), else its last line; the page of the document has it all."""
    lines = report.rstrip().splitlines()
    last: list[str] = []
    for line in reversed(lines):
        if line.startswith("E "):
            last.insert(0, line[1:].strip())
        elif last:
            break
    if last:
        return "\n".join(last)
    return lines[-1].strip() if lines else report


def _counts_line(counts: dict[str, int]) -> str:
    shown = [
        f'<span class="count status-{status.replace(" ", "-")}">{counts[status]} {status}</span>'
        for status in counts
        if counts[status]
    ]
    return f'<p class="counts">{" ".join(shown) or "no examples"}</p>'


def _page(*, title: str, up: str, header: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="stylesheet" href="{up}{STYLESHEET}"></head>'
        f'<body><header>{header}</header><div class="content">{body}</div></body></html>\n'
    )


def href(name: str) -> str:
    """The relative link to the report's file *name*: each of its ``/``-separated
    parts percent-encoded, so that a ``#``, ``?``, ``%`` or space in a document's name
    is part of the link's path."""
    return quote(name, safe="/")


def _up(name: str) -> str:
    """The relative link from the page of *name* to the report's top directory."""
    return "../" * (len(PurePosixPath(name).parts) - 1)


def _read(path: str) -> str | None:
    """The text of a document that was not collected, as far as it can be read."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as output:
            output.write(printable(content))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_stale(directory: Path, keep: set[str]) -> None:
    """Delete the files the last report wrote there and this one did not."""
    try:
        listed = (directory / MANIFEST).read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for name in listed:
        if not name or name in keep or name.startswith("/") or ".." in PurePosixPath(name).parts:
            continue
        stale = directory / name
        stale.unlink(missing_ok=True)
        parent = stale.parent
        while parent != directory and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


STYLESHEET_TEXT = """\
:root { --passed: #1a7f37; --failed: #cf222e; --skipped: #6e7781; --accepted: #9a6700;
  --notrun: #8c959f; --ink: #1f2328; --paper: #ffffff; --code: #f6f8fa; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
  background: var(--paper); margin: 0 auto; max-width: 60rem; padding: 1rem 2rem; }
header { border-bottom: 1px solid #d0d7de; margin-bottom: 1rem; }
a { color: #0969da; }
pre, code { font: 14px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { margin: 0; white-space: pre; overflow-x: auto; }
.content { overflow-wrap: anywhere; }
table.source { table-layout: fixed; width: 100%; }
table.source td.ln { width: 4rem; }
code, .literal { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 90%;
  background: var(--code); padding: .1em .3em; border-radius: 4px; }
.counts .count { display: inline-block; padding: 0 .5em; margin-right: .3em;
  border-radius: 1em; color: #fff; font-size: 90%; }
.count.status-passed { background: var(--passed); }
.count.status-failed { background: var(--failed); }
.count.status-skipped { background: var(--skipped); }
.count.status-accepted { background: var(--accepted); }
.count.status-not-run { background: var(--notrun); }
div.code { background: var(--code); border-radius: 6px; padding: .5rem 0; margin: 1rem 0; }
div.code pre.plain { padding: 0 1rem; }
div.example { margin: .25rem 0; padding: .2rem .75rem .2rem .75rem;
  border-left: 6px solid var(--notrun); display: flow-root; }
div.example.status-passed { border-left-color: var(--passed); background: #dafbe1; }
div.example.status-failed { border-left-color: var(--failed); background: #ffebe9; }
div.example.status-skipped { border-left-color: var(--skipped); background: #eaeef2; }
div.example.status-accepted { border-left-color: var(--accepted); background: #fff8c5; }
div.example.status-not-run { border-left-color: var(--notrun); background: transparent; }
a.badge { float: right; margin: 0 0 .2rem 1rem; font-size: 75%; color: #fff;
  padding: 0 .5em; border-radius: 1em; text-decoration: none; background: var(--notrun); }
.status-passed > a.badge { background: var(--passed); }
.status-failed > a.badge { background: var(--failed); }
.status-skipped > a.badge { background: var(--skipped); }
.status-accepted > a.badge { background: var(--accepted); }
div.outcome { margin: .4rem 0 .2rem; padding: .4rem .6rem; border-radius: 4px;
  background: var(--paper); border: 1px solid #d0d7de; }
div.outcome.status-failed { border-color: var(--failed); color: var(--failed); }
div.outcome.status-accepted { border-color: var(--accepted); }
div.outcome p { margin: 0 0 .3rem; font-weight: 600; }
pre.diff span { display: block; }
pre.diff .del { color: var(--failed); background: #ffebe9; }
pre.diff .add { color: var(--passed); background: #dafbe1; }
pre.diff .head, pre.diff .hunk { color: var(--skipped); }
pre.diff .same { color: var(--ink); }
pre.message { color: var(--failed); }
pre.raw-html { background: var(--code); padding: .5rem 1rem; }
.interrupted { border-left: 6px solid var(--accepted); padding-left: .75rem; }
.count.status-ran-as-prelude { background: var(--skipped); }
.explained, .hint { font-size: 90%; color: var(--skipped); }
.crashed { border-left: 6px solid var(--failed); padding-left: .75rem; }
.collect-error { border-left: 6px solid var(--failed); padding-left: .75rem; }
.admonition { border-left: 4px solid #0969da; padding: 0 1rem; margin: 1rem 0;
  background: #f6f8fa; }
.admonition-title { font-weight: 600; }
.directive { border: 1px solid #d0d7de; border-radius: 6px; padding: 0 1rem; margin: 1rem 0; }
table { border-collapse: collapse; }
table.documents th, table.documents td, table.facts th, table.facts td {
  border-bottom: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; }
table.documents td.count { text-align: right; }
table.documents tr.status-failed td:first-child { border-left: 6px solid var(--failed); }
table.documents tr.status-passed td:first-child { border-left: 6px solid var(--passed); }
table.documents tr.status-skipped td:first-child,
table.documents tr.status-not-run td:first-child { border-left: 6px solid var(--skipped); }
table.documents tr.status-accepted td:first-child { border-left: 6px solid var(--accepted); }
table.source td { padding: 0 .5rem; vertical-align: top; }
table.source td.ln { text-align: right; user-select: none; }
table.source td.ln a { color: var(--skipped); text-decoration: none; }
table.source tr:target { background: #fff8c5; }
table.source tr.status-passed td.ln { border-right: 4px solid var(--passed); }
table.source tr.status-failed td.ln { border-right: 4px solid var(--failed); }
table.source tr.status-skipped td.ln { border-right: 4px solid var(--skipped); }
table.source tr.status-accepted td.ln { border-right: 4px solid var(--accepted); }
"""
