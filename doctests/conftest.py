"""pytest fixtures for the specs in this directory, as doctests/fixtures.rst teaches them.

Fixtures defined here are visible to every document in ``doctests/``, and the autouse
one applies to every example of every one of them, as it would to a test function here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runnerkit.site import current_site


@pytest.fixture(scope="session")
def spec_log() -> list[str]:
    """What :func:`log_spec_runs` noted, in order, for the whole session."""
    return []


@pytest.fixture(autouse=True)
def log_spec_runs(request: pytest.FixtureRequest, spec_log: list[str]) -> Iterator[None]:
    """Note in ``spec_log`` when each run of a document starts and ends.

    It is function-scoped, so for a spec it lives for one run of one document: set up
    before the run's first example, torn down after its last.
    """
    document = request.node.nodeid.partition("::")[0]
    callspec = getattr(request.node, "callspec", None)
    run = document if callspec is None else f"{document}[{callspec.id}]"
    spec_log.append(f"start {run}")
    yield
    spec_log.append(f"end {run}")


@pytest.fixture(params=["en", "fr"])
def list_language(request: pytest.FixtureRequest) -> str:
    """A language for a new mailing list: a document that uses it runs once for each."""
    language: str = request.param
    return language


@pytest.fixture
def german_site() -> Iterator[None]:
    """German as the site's default language, while the document runs.

    A function-scoped fixture of a spec is set up inside the document's world, whose
    configuration is then the current one.
    """
    config = current_site()
    config.push("german-site", "[runnerkit]\ndefault_language: de\n")
    yield
    config.pop("german-site")
