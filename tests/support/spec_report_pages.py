"""Reading the pages of a spec report (``pytest --spec-report``) back, for the tests.

:func:`marked_examples` finds each marked example of a document's page: its status,
its line, its badge and code as text, and what is written under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path


@dataclass
class Marked:
    """An example as a document's page shows it."""

    status: str
    line: int
    classes: list[str]
    badge: str = ""
    code: str = ""
    #: The text of what is written under its code (failure, skip reason...).
    outcome: str = ""
    #: The href of its badge.
    link: str = ""
    #: Whether it is in the section of examples the text does not show.
    hidden: bool = False
    #: The text of everything in the example's element.
    text: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.examples: list[Marked] = []
        self.depth = 0
        self.current: Marked | None = None
        self.start_depth = 0
        self.where: str | None = None
        self.hidden = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = attributes.get("class", "").split()
        if tag == "section" and "hidden-examples" in classes:
            self.hidden = True
        if tag == "div":
            self.depth += 1
            if "example" in classes and self.current is None:
                self.current = Marked(
                    attributes["data-status"],
                    int(attributes["data-line"]),
                    classes,
                    hidden=self.hidden,
                )
                self.start_depth = self.depth
                self.where = None
                return
        if self.current is None:
            return
        if tag == "a" and "badge" in classes:
            self.where = "badge"
            self.current.link = attributes.get("href", "")
        elif tag == "pre" and self.depth == self.start_depth and not self.current.code:
            self.where = "code"
        elif tag == "div" and "outcome" in classes:
            self.where = "outcome"

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            if self.current is not None and self.depth == self.start_depth:
                self.examples.append(self.current)
                self.current = None
            self.depth -= 1
        elif tag in ("a", "pre") and self.where in ("badge", "code"):
            self.where = None

    def handle_data(self, data: str) -> None:
        if self.current is None:
            return
        self.current.text.append(data)
        if self.where == "badge":
            self.current.badge += data
        elif self.where == "code":
            self.current.code += data
        elif self.where == "outcome":
            self.current.outcome += data


def marked_examples(page: Path | str) -> list[Marked]:
    """The marked examples of a document's page (a path, or the HTML itself)."""
    html = page.read_text(encoding="utf-8") if isinstance(page, Path) else page
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.examples


def statuses(page: Path | str) -> list[tuple[int, str]]:
    """Each marked example's line and status, in the page's order."""
    return [(example.line, example.status) for example in marked_examples(page)]
