"""The spec report, part three: a document rendered as HTML, its examples marked.

reStructuredText is rendered by docutils, Markdown by markdown-it-py (CommonMark and
tables).  Neither writes the document's code blocks: each is handed, with the line of
the document it starts on, to a :class:`~runnerkit.testing.report_blocks.BlockMarker`,
which marks the examples in it.

Documents are rendered as text to read, never as a program: docutils may include no
file and pass no raw HTML through, and Markdown's raw HTML is shown as text (HTML
comments, where specs hide directives and invisible code, are left out).  Sphinx's
directives and roles, which docutils does not know, are rendered plainly rather than
as errors: ``code-block`` and ``sourcecode`` as code blocks, the others as a box
holding their content, unknown roles as literal text.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from typing import Any

from runnerkit.testing.fences import is_markdown
from runnerkit.testing.report_blocks import BlockMarker
from runnerkit.testing.report_outcomes import Example


@dataclass(frozen=True)
class Rendered:
    """A document as HTML: its body, and the examples its text does not show."""

    body: str
    hidden: str


def render(path: str, text: str, examples: Sequence[Example], source_page: str) -> Rendered:
    """*text*, the document at *path*, as HTML with *examples* marked in place.

    :param source_page: the relative link of the document's source page.
    """
    marker = BlockMarker(examples, source_page)
    if is_markdown(path):
        body = _markdown(text, marker)
    elif path.endswith((".rst", ".rest", ".txt")):
        body = _restructuredtext(path, text, marker)
    else:
        body = marker.block(text.splitlines(), 1)
    lines = text.splitlines()
    hidden = "".join(
        marker.hidden(example, "\n".join(lines[example.line - 1 : example.end_line]))
        for example in marker.unplaced()
    )
    return Rendered(body, hidden)


# -- Markdown ---------------------------------------------------------------------------


def _markdown(text: str, marker: BlockMarker) -> str:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    md.validateLink = safe_url  # type: ignore[method-assign]

    def fence(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        first = None if token.map is None else token.map[0] + 2
        language = token.info.split()[0] if token.info.strip() else ""
        return marker.block(token.content.rstrip("\n").split("\n"), first, language)

    def code_block(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        first = None if token.map is None else token.map[0] + 1
        return marker.block(token.content.rstrip("\n").split("\n"), first)

    def html_block(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        content = str(tokens[idx].content)
        if _only_comments(content):
            return ""
        return f'<pre class="raw-html">{escape(content)}</pre>'

    def html_inline(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        content = str(tokens[idx].content)
        return "" if _only_comments(content) else escape(content)

    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", code_block)
    md.add_render_rule("html_block", html_block)
    md.add_render_rule("html_inline", html_inline)
    return str(md.render(text))


_COMMENTS = re.compile(r"\A(?:\s*<!--.*?-->)*\s*\Z", re.DOTALL)


def _only_comments(html: str) -> bool:
    return bool(_COMMENTS.match(html))


# -- Links ----------------------------------------------------------------------------

#: The schemes a link or image of a document may have; any other (``javascript:``,
#: ``vbscript:``, ``data:``, ``file:``) is shown as text, not followed.
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})

_NOT_FOLLOWED = "not a link: the report follows no URL of this scheme: "

#: What browsers ignore in a URL: ASCII whitespace and control characters.
_IGNORED = re.compile(r"[\x00-\x20\x7f]+")


def safe_url(url: str) -> bool:
    """Whether *url* may be a link of the report: relative (a path, an ``#anchor``) or
    of one of the :data:`SAFE_SCHEMES`, read as a browser reads it."""
    text = _IGNORED.sub("", url)
    scheme, colon, _ = text.partition(":")
    if not colon or any(c in scheme for c in "/?#"):
        return True  # no scheme: relative
    return scheme.lower() in SAFE_SCHEMES


# -- reStructuredText -------------------------------------------------------------------

#: Sphinx's directives that hold code, rendered as code blocks.
_CODE_DIRECTIVES = ("code", "code-block", "sourcecode")

#: A directive at the start of a line: ``.. name::``.
_DIRECTIVE = re.compile(r"^[ \t]*\.\.[ \t]+([\w][\w:.+-]*)::", re.MULTILINE)
#: An interpreted text role: ``:name:`text```.
_ROLE = re.compile(r"(?<![\w`]):([\w][\w:.+-]*):`")


def _restructuredtext(path: str, text: str, marker: BlockMarker) -> str:
    from docutils import nodes
    from docutils.core import publish_parts
    from docutils.writers.html5_polyglot import HTMLTranslator, Writer

    source = text.splitlines()
    cursor = [0]

    class Translator(HTMLTranslator):  # type: ignore[misc]
        """docutils' HTML translator, but code blocks are written by the marker."""

        def visit_reference(self, node: Any) -> None:
            uri = node.get("refuri")
            if uri is None or safe_url(uri):
                super().visit_reference(node)
                return
            node["runnerkit_unsafe"] = True
            self.body.append(f'<span class="unsafe-link" title="{escape(_NOT_FOLLOWED + uri)}">')

        def depart_reference(self, node: Any) -> None:
            if node.get("runnerkit_unsafe"):
                uri = node["refuri"]
                self.body.append(f' <code class="unsafe-url">&lt;{escape(uri)}&gt;</code></span>')
                return
            super().depart_reference(node)

        def visit_image(self, node: Any) -> None:
            uri = node.get("uri", "")
            if safe_url(uri):
                super().visit_image(node)
                return
            self.body.append(
                '<span class="unsafe-image">image not shown:'
                f' <code class="unsafe-url">{escape(uri)}</code></span>'
            )
            raise nodes.SkipNode

        def visit_literal_block(self, node: Any) -> None:
            self._code(node)

        def visit_doctest_block(self, node: Any) -> None:
            self._code(node)

        def _code(self, node: Any) -> None:
            lines = node.astext().split("\n")
            hint = node.get("runnerkit_line") or node.line
            first = _locate(source, lines, hint, cursor[0])
            if first is not None:
                cursor[0] = first + len(lines) - 1
            classes = [c for c in node.get("classes", ()) if c != "code"]
            language = classes[0] if classes else ""
            self.body.append(marker.block(lines, first, language))
            raise nodes.SkipNode

    writer = Writer()
    writer.translator_class = Translator
    settings = {
        "file_insertion_enabled": False,
        "raw_enabled": False,
        "report_level": 5,
        "halt_level": 5,
        "warning_stream": io.StringIO(),
        "embed_stylesheet": False,
        "stylesheet_path": "",
        "stylesheet": "",
        "doctitle_xform": False,
        "syntax_highlight": "none",
        "input_encoding": "unicode",
        "output_encoding": "unicode",
        "_disable_config": True,
        "traceback": True,
    }
    with _sphinx_markup(text):
        parts = publish_parts(
            source=text, source_path=path, writer=writer, settings_overrides=settings
        )
    return str(parts["html_body"])


#: docutils' ``tab_width``: the source's tabs are expanded before it is parsed.
_TAB_WIDTH = 8


def _locate(
    source: Sequence[str], lines: Sequence[str], hint: int | None, cursor: int
) -> int | None:
    """The line (from 1) of *source* a code block of *lines* starts on.

    docutils' idea of the line (*hint*) is tried first, then the lines around it, then
    every line from *cursor* on (blocks come in the order of the text); lines are
    compared without their indentation, which docutils removes, and with their tabs
    expanded to every eighth column of the line, as docutils expands them.
    """
    wanted = [line.expandtabs(_TAB_WIDTH).strip() for line in lines]

    def fits(start: int) -> bool:
        if start < 1 or start + len(wanted) - 1 > len(source):
            return False
        return all(
            source[start - 1 + offset].expandtabs(_TAB_WIDTH).strip() == line
            for offset, line in enumerate(wanted)
        )

    if hint is not None:
        for start in (hint, hint - 1, hint + 1, hint - len(wanted), hint - len(wanted) - 1):
            if fits(start):
                return start
    for start in range(max(cursor, 1), len(source) + 1):
        if fits(start):
            return start
    return None


@contextmanager
def _sphinx_markup(text: str) -> Iterator[None]:
    """docutils knowing, while *text* is rendered, the directives and roles of Sphinx
    that *text* uses and docutils does not know, and ``code`` by its line."""
    from docutils.parsers.rst import directives, roles

    registry: dict[str, Any] = directives._directives
    role_registry: dict[str, Any] = roles._roles
    saved_directives = dict(registry)
    saved_roles = dict(role_registry)
    try:
        for name in _CODE_DIRECTIVES:
            directives.register_directive(name, _code_directive())
        known = set(directives._directive_registry) | set(registry)
        for name in set(_DIRECTIVE.findall(text)) - known:
            directives.register_directive(name, _box_directive())
        known_roles = set(roles._role_registry) | set(role_registry)
        for name in set(_ROLE.findall(text)) - known_roles:
            roles.register_local_role(name, _literal_role)
        yield
    finally:
        registry.clear()
        registry.update(saved_directives)
        role_registry.clear()
        role_registry.update(saved_roles)


class _AnyOptions(dict[str, Callable[[str | None], Any]]):
    """The options of a Sphinx directive: whatever they are called, kept as text."""

    def __missing__(self, name: str) -> Callable[[str | None], Any]:
        return _unchanged

    def __bool__(self) -> bool:
        return True


def _unchanged(argument: str | None) -> str:
    return argument or ""


def _code_directive() -> type[Any]:
    from docutils import nodes
    from docutils.parsers.rst import Directive

    class Code(Directive):  # type: ignore[misc]
        """``.. code-block:: python``: a literal block that knows its first line."""

        optional_arguments = 1
        final_argument_whitespace = True
        has_content = True
        option_spec = _AnyOptions()

        def run(self) -> list[Any]:
            text = "\n".join(self.content)
            node = nodes.literal_block(text, text)
            language = self.arguments[0].strip() if self.arguments else ""
            node["classes"] = ["code", *([language] if language else [])]
            node["runnerkit_line"] = self.content_offset + 1
            return [node]

    return Code


def _box_directive() -> type[Any]:
    from docutils import nodes
    from docutils.parsers.rst import Directive

    class Box(Directive):  # type: ignore[misc]
        """A directive docutils does not know: its name, arguments and content."""

        optional_arguments = 10
        final_argument_whitespace = True
        has_content = True
        option_spec = _AnyOptions()

        def run(self) -> list[Any]:
            box = nodes.container(classes=["directive", f"directive-{self.name}"])
            title = " ".join([self.name, *self.arguments]).strip()
            box += nodes.paragraph("", "", nodes.strong(title, title), classes=["directive-name"])
            if self.content and _holds_code(self.name):
                text = "\n".join(self.content)
                code = nodes.literal_block(text, text)
                code["runnerkit_line"] = self.content_offset + 1
                box += code
            elif self.content:
                self.state.nested_parse(self.content, self.content_offset, box)
            return [box]

    return Box


#: Directives of Sphinx and its extensions whose content is code, not prose.
_CODE_CONTENT = frozenset(
    {"doctest", "ipython", "jupyter-execute", "literalinclude", "prompt", "testoutput"}
)


def _holds_code(name: str) -> bool:
    """Whether the content of the directive *name* is code (``testcode``, ``doctest``...)."""
    return "code" in name or name.startswith("test") or name in _CODE_CONTENT


def _literal_role(
    name: str,
    rawtext: str,
    text: str,
    lineno: int,
    inliner: Any,
    options: dict[str, Any] | None = None,
    content: Sequence[str] = (),
) -> tuple[list[Any], list[Any]]:
    """A Sphinx role docutils does not know: its text, as literal text."""
    from docutils import nodes

    shown = text.split("<")[0].strip() if text.endswith(">") and "<" in text else text
    return [nodes.literal(rawtext, shown.lstrip("~!"), classes=["role", f"role-{name}"])], []
