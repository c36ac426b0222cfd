"""The spec harness keeps documents apart, keeps each one whole, and runs it once.

Each test builds a small project with pytester: a ``conftest.py`` that wires Sybil the
way a user would, and a few ``.rst`` documents whose examples only pass when the
harness does its job.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runnerkit.config import current_config
from runnerkit.errors import NoConfigurationError

pytest_plugins = ["pytester"]

CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["*.rst"])
"""


def make_project(pytester: pytest.Pytester, **documents: str) -> None:
    """Write the conftest and each document ``name=text`` as ``name.rst``."""
    pytester.makeconftest(CONFTEST)
    for name, text in documents.items():
        path = pytester.path / f"{name}.rst"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def leaky_document(name: str, record: Path) -> str:
    """A document that checks it starts clean, then leaves a mess behind on purpose.

    It pushes a layer it never pops, creates a list, queues a message, and records
    its var dir in *record*; its cleanups write ``<record>.closed``.
    """
    return f"""\
        {name}
        {"=" * len(name)}

        Whatever ran before, this document starts from nothing.

            >>> config.layers
            ()
            >>> 'leaky' in config.switchboards
            False
            >>> config.lists.names
            []
            >>> from runnerkit.config import current_config
            >>> current_config() is config
            True

        Now it makes a mess and walks away.

            >>> config.push('leaky', '[runner.leaky]')
            >>> create_list('leak@example.com')
            <MailingList 'leak@example.com'>
            >>> filebase = config.switchboards['leaky'].enqueue(
            ...     message_from_string('Subject: left behind\\n\\n'))
            >>> from pathlib import Path
            >>> record = Path({str(record)!r})
            >>> _ = record.write_text(str(world.var_dir))
            >>> _ = cleanups.callback(Path({str(record) + ".closed"!r}).write_text, 'closed')
            >>> Path({str(record) + ".closed"!r}).exists()
            False
        """


def test_a_document_that_never_pops_does_not_leak(pytester: pytest.Pytester) -> None:
    first, second = pytester.path / "first.txt", pytester.path / "second.txt"
    make_project(
        pytester,
        first=leaky_document("First", first),
        second=leaky_document("Second", second),
    )
    result = pytester.runpytest("-p", "no:doctest", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=26)

    # Each document had a var dir of its own, and it is gone with its world.
    first_var_dir, second_var_dir = Path(first.read_text()), Path(second.read_text())
    assert first_var_dir != second_var_dir
    assert not first_var_dir.exists()
    assert not second_var_dir.exists()
    # Each document's cleanups stack was closed when the document ended.
    assert Path(f"{first}.closed").read_text() == "closed"
    assert Path(f"{second}.closed").read_text() == "closed"
    # And no world stays current once the documents are done.
    with pytest.raises(NoConfigurationError):
        current_config()


def chained_document(name: str, log: Path, examples: int) -> str:
    """A document of *examples* examples, each needing the one before it.

    Every example also logs ``<name> <worker>`` to *log*, one line per example.
    """
    lines = [
        name,
        "=" * len(name),
        "",
        "    >>> import os",
        "    >>> def note():",
        "    ...     worker = os.environ.get('PYTEST_XDIST_WORKER', 'main')",
        f"    ...     with open({str(log)!r}, 'a') as file:",
        f"    ...         _ = file.write(f'{name} {{worker}}\\n')",
        "    >>> step = 0",
        "",
    ]
    for number in range(1, examples + 1):
        lines += ["    >>> step += 1; note(); step", f"    {number}", ""]
    return "\n".join(lines)


def xdist_project(pytester: pytest.Pytester) -> Path:
    log = pytester.path / "workers.log"
    make_project(
        pytester,
        alpha=chained_document("alpha", log, 12),
        beta=chained_document("beta", log, 12),
    )
    return log


def workers_by_document(log: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        document, worker = line.split()
        found.setdefault(document, set()).add(worker)
    return found


@pytest.mark.slow
def test_xdist_keeps_each_document_on_one_worker(pytester: pytest.Pytester) -> None:
    log = xdist_project(pytester)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "xdist", "-p", "no:doctest", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2 * (3 + 12))
    workers = workers_by_document(log)
    assert set(workers) == {"alpha", "beta"}
    assert all(len(used) == 1 for used in workers.values()), workers
    assert len(log.read_text().splitlines()) == 2 * 12


@pytest.mark.slow
def test_without_the_document_scheduler_xdist_splits_documents(
    pytester: pytest.Pytester,
) -> None:
    """The control for the test above: its documents really would be split."""
    xdist_project(pytester)
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "-p",
        "xdist",
        "-p",
        "no:runnerkit",
        "-p",
        "no:doctest",
        "-p",
        "no:cacheprovider",
    )
    assert result.parseoutcomes().get("failed", 0) > 0


def test_running_one_document_runs_it_once_through_sybil(pytester: pytest.Pytester) -> None:
    runs = pytester.path / "runs.log"
    make_project(
        pytester,
        **{
            "doctests/x": f"""\
                Once
                ====

                    >>> with open({str(runs)!r}, 'a') as runs: _ = runs.write('ran\\n')
                    >>> 6 * 7
                    42
                    >>> config.layers
                    ()
                """
        },
    )
    collected = pytester.runpytest("doctests/x.rst", "-p", "no:doctest", "--collect-only", "-q")
    items = [line for line in collected.outlines if "::" in line]
    assert items == [
        "doctests/x.rst::line:4,column:1",
        "doctests/x.rst::line:5,column:1",
        "doctests/x.rst::line:7,column:1",
    ]

    result = pytester.runpytest("doctests/x.rst", "-p", "no:doctest")
    result.assert_outcomes(passed=3)
    assert runs.read_text() == "ran\n"
