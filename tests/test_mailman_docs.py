"""GNU Mailman's own core documents run on runnerkit, with only their imports changed.

The founding spec is Mailman's ``core/docs/runner.rst``; users with Mailman-style specs
expect Mailman's other core documents to run too.  This test reads them from an installed
GNU Mailman 3.3.10 (the ``bench`` extra installs it; CI installs it), rewrites their
``import`` statements to runnerkit's names and nothing else, and runs them through
runnerkit's harness as a project would, with ``collect_specs``.  No Mailman text is kept
in this project.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: The documents, and how many examples Sybil collects from each in Mailman 3.3.10 (a
#: guard against running nothing).
DOCUMENTS = {"runner.rst": 16, "switchboard.rst": 58}

#: Each Mailman import, as a whole statement, and what it becomes.
IMPORTS = {
    r"from mailman\.testing\.helpers import \(specialized_message_from_string\s*"
    r"(?:\.\.\.\s*)?as message_from_string\)": "from runnerkit.message import message_from_string",
    r"from mailman\.config import config": (
        "from runnerkit.site import current_site; config = current_site()"
    ),
    r"from mailman\.core\.switchboard import Switchboard": (
        "from runnerkit.switchboard import Switchboard"
    ),
    r"from mailman\.core\.runner import Runner": "from runnerkit.runner import Runner",
    r"from mailman\.testing\.documentation import dump_msgdata": (
        "from runnerkit.testing import dump_msgdata"
    ),
    r"from mailman\.app\.lifecycle import create_list": (
        "from runnerkit.testing import create_list"
    ),
}


def mailman_docs() -> Path | None:
    spec = importlib.util.find_spec("mailman")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "core" / "docs"


def rewrite_imports(text: str) -> str:
    """*text* with every Mailman import replaced; the rest is left byte for byte."""
    for pattern, replacement in IMPORTS.items():
        # An import may continue on a ``...`` line; the replacement is one line.
        text = re.sub(pattern, replacement, text)
    leftover = re.findall(r"^\s*(?:>>>|\.\.\.) .*\bmailman\b.*$", text, re.MULTILINE)
    assert not leftover, f"imports this test does not know how to rewrite: {leftover}"
    return text


def without_mailman_imports(text: str) -> str:
    for pattern in IMPORTS:
        text = re.sub(pattern, "", text)
    return text


def without_our_imports(text: str) -> str:
    for replacement in IMPORTS.values():
        text = text.replace(replacement, "")
    return text


@pytest.mark.skipif(
    mailman_docs() is None,
    reason="GNU Mailman 3.3.10 is not installed here (pip install -e '.[bench]'; CI installs it)",
)
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_mailmans_core_document_runs_with_only_its_imports_changed(
    pytester: pytest.Pytester, name: str
) -> None:
    docs = mailman_docs()
    assert docs is not None
    original = (docs / name).read_text(encoding="utf-8")
    rewritten = rewrite_imports(original)
    # Only import statements changed: without them, the two texts are the same.
    assert without_mailman_imports(original) == without_our_imports(rewritten)
    pytester.makefile(".rst", **{name.removesuffix(".rst"): rewritten})
    pytester.makeconftest(
        "from runnerkit.testing import collect_specs\n"
        "pytest_collect_file = collect_specs(['*.rst'])\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=DOCUMENTS[name])
