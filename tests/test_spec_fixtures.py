"""pytest fixtures in specs, tried the way another project meets them.

Each test builds a throwaway project with pytester whose ``conftest.py`` wires its specs
with one line, :func:`~runnerkit.testing.collect_specs`, and defines fixtures: autouse
ones, ones a document names with ``runnerkit-fixtures`` or ``runnerkit-usefixtures``,
parametrized ones.  The documents and fixtures note what they do in ``events.log``, and
the tests read the order back.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _pytest.scope import Scope

from runnerkit.testing.durations import read_durations
from runnerkit.testing.specfixtures import parametrize

pytest_plugins = ["pytester"]

#: Options every inner run gets: no cache files in the throwaway project.
QUIET = ("-p", "no:cacheprovider")

CONFTEST = """\
import pytest
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["docs/*.rst", "docs/*.md"])


def note(text):
    with open('events.log', 'a') as log:
        print(text, file=log)


@pytest.fixture(autouse=True)
def auto(request):
    note(f'auto set up by {request.node.nodeid}')
    yield 'auto'
    note('auto torn down')


@pytest.fixture
def greeting():
    note('greeting set up')
    yield 'hello'
    note('greeting torn down')


@pytest.fixture
def quietly():
    note('quietly set up')
    yield 'unseen'
    note('quietly torn down')


@pytest.fixture(params=['file', 'memory'])
def store(request):
    note(f'store set up {request.param}')
    yield request.param
    note(f'store torn down {request.param}')
"""

#: A document that names fixtures, notes its examples, and puts a cleanup on ``cleanups``.
NAMED = """\
Named
=====

.. runnerkit-fixtures: greeting
.. runnerkit-usefixtures: quietly

    >>> from conftest import note
    >>> note(f'example 1 sees {greeting}')
    >>> _ = cleanups.callback(note, 'cleanups closed')

.. clear-namespace

Again:

    >>> from conftest import note
    >>> note(f'example 2 sees {greeting}')
    >>> 'quietly' in globals(), 'auto' in globals()
    (False, False)
"""

#: A document without directives: only the autouse fixture applies to it.
PLAIN = """\
Plain
=====

    >>> from conftest import note
    >>> note('plain example')
"""

#: A document that a parametrized fixture runs twice.
PARAMETRIZED = """\
Parametrized
============

.. runnerkit-fixtures: store

    >>> from conftest import note
    >>> 'first' in globals()
    False
    >>> first = store
    >>> note(f'{store} example in {world.var_dir}')
    >>> note(f'{store} again in {world.var_dir}')
"""

#: The node ids of PARAMETRIZED's examples, in collection order.
PARAMETRIZED_IDS = [
    f"docs/param.rst::line:{line},column:1[{run}]"
    for run in ("file", "memory")
    for line in (6, 7, 9, 10, 11)
]


def write(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    """Write each ``path: text`` into the project, dedented."""
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def events(pytester: pytest.Pytester) -> list[str]:
    """What the inner run noted, in order."""
    log = Path(pytester.path, "events.log")
    return log.read_text().splitlines() if log.exists() else []


# -- Autouse, named and used fixtures ----------------------------------------------------


def test_fixtures_live_for_the_whole_document_and_end_after_its_cleanups(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/named.rst": NAMED, "docs/plain.rst": PLAIN})
    result = pytester.runpytest(*QUIET, "-p", "no:randomly")
    result.assert_outcomes(passed=9)
    assert events(pytester) == [
        # Autouse first, then the used and the named fixtures in the order named.
        "auto set up by docs/named.rst::line:7,column:1",
        "quietly set up",
        "greeting set up",
        "example 1 sees hello",
        # clear-namespace keeps the fixtures' values, as it keeps the world.
        "example 2 sees hello",
        # The examples' cleanups, then the fixtures, in the opposite order.
        "cleanups closed",
        "greeting torn down",
        "quietly torn down",
        "auto torn down",
        "auto set up by docs/plain.rst::line:4,column:1",
        "plain example",
        "auto torn down",
    ]


def test_the_usefixtures_option_applies_to_every_document(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/plain.rst": PLAIN})
    pytester.makeini("[pytest]\nusefixtures = greeting\n")
    result = pytester.runpytest(*QUIET, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    # As for a test, the option's fixtures come before the autouse ones of conftest.py.
    assert events(pytester) == [
        "greeting set up",
        "auto set up by docs/plain.rst::line:4,column:1",
        "plain example",
        "auto torn down",
        "greeting torn down",
    ]


def test_markdown_names_fixtures_in_html_comments(pytester: pytest.Pytester) -> None:
    markdown = """\
    # Named

    <!-- runnerkit-fixtures: greeting -->

    ```python
    >>> greeting
    'hello'
    ```
    """
    write(pytester, {"conftest.py": CONFTEST, "docs/named.md": markdown})
    pytester.runpytest(*QUIET).assert_outcomes(passed=1)


def test_wider_fixtures_are_set_up_before_the_world_and_are_not_taken_for_leftovers(
    pytester: pytest.Pytester,
) -> None:
    conftest = """\
    import os
    import pytest
    from runnerkit.testing import collect_specs

    pytest_collect_file = collect_specs(["docs/*.rst"])


    @pytest.fixture(scope='session', autouse=True)
    def session_env():
        os.environ['SESSION_SETTING'] = 'on'
        yield
        del os.environ['SESSION_SETTING']


    @pytest.fixture
    def document_env(monkeypatch):
        monkeypatch.setenv('DOCUMENT_SETTING', 'on')
    """
    spec = """\
    .. runnerkit-usefixtures: document_env

        >>> import os
        >>> os.environ['SESSION_SETTING'], os.environ['DOCUMENT_SETTING']
        ('on', 'on')
    """
    write(pytester, {"conftest.py": conftest, "docs/a.rst": spec, "docs/b.rst": spec})
    # Not every warning: an in-process run may warn that runnerkit, imported already,
    # cannot be rewritten.
    result = pytester.runpytest(
        *QUIET, "-W", "error::runnerkit.testing.isolation.IsolationWarning"
    )
    result.assert_outcomes(passed=4)
    assert "IsolationWarning" not in result.stdout.str()


# -- A parametrized fixture --------------------------------------------------------------


def test_a_parametrized_fixture_runs_the_document_once_per_parameter_in_fresh_worlds(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "-p", "no:randomly", "-rA")
    result.assert_outcomes(passed=10)
    assert [line.split()[1] for line in result.outlines if line.startswith("PASSED")] == (
        PARAMETRIZED_IDS
    )
    noted = events(pytester)
    file_examples = [line for line in noted if line.startswith("file ")]
    memory_examples = [line for line in noted if line.startswith("memory ")]
    # One world per run: the same var dir within a run, another in the next.
    file_dirs = {line.split(" in ")[1] for line in file_examples}
    memory_dirs = {line.split(" in ")[1] for line in memory_examples}
    assert len(file_dirs) == len(memory_dirs) == 1
    assert file_dirs != memory_dirs
    assert noted.index("store torn down file") < noted.index("store set up memory")


def test_parametrized_runs_show_their_ids_in_node_ids(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "--collect-only", "-q")
    assert result.outlines[: len(PARAMETRIZED_IDS)] == PARAMETRIZED_IDS


def test_fixtures_per_test_and_setup_show_describe_examples(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "--fixtures-per-test")
    assert result.ret == pytest.ExitCode.OK
    # At the example's line (pytest 8.0 shows the line after it).
    result.stdout.fnmatch_lines(
        ["*fixtures used by line:6,column:1?file?*", "*(docs/param.rst:[67])*"]
    )
    result = pytester.runpytest(*QUIET, "--setup-show", "-k", "file")
    result.stdout.fnmatch_lines(
        [
            "*SETUP    F store?'file'?",
            "*docs/param.rst::line:11,column:1?file?*",
            "*TEARDOWN F store*",
        ]
    )
    # Set up once for the whole run of the document.
    assert result.stdout.str().count("SETUP    F store") == 1


def test_one_example_of_one_run_is_selected_by_node_id(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "-rA", "docs/param.rst::line:11,column:1[memory]")
    result.assert_outcomes(passed=1)
    noted = [line.split(" in ")[0] for line in events(pytester)]
    # The examples before it in its own run ran first; the other run did not run.
    assert noted == [
        "auto set up by docs/param.rst::line:11,column:1[memory]",
        "store set up memory",
        "memory example",
        "memory again",
        "store torn down memory",
        "auto torn down",
    ]


def test_an_example_selected_without_an_id_runs_in_every_run(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "-rA", "docs/param.rst::line:11,column:1")
    result.assert_outcomes(passed=2)


def test_k_selects_a_run_by_its_id(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "-rA", "-k", "memory")
    result.assert_outcomes(passed=5, deselected=5)
    assert not [line for line in events(pytester) if line.startswith("file")]


def test_two_parametrized_fixtures_make_a_run_for_each_combination(
    pytester: pytest.Pytester,
) -> None:
    conftest = CONFTEST + textwrap.dedent(
        """\


        class Colour:
            pass


        @pytest.fixture(params=[1, pytest.param(Colour, id='colour'), object()], autouse=True)
        def shade(request):
            return request.param
        """
    )
    write(pytester, {"conftest.py": conftest, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "--collect-only", "-q")
    runs = sorted({line.partition("[")[2] for line in result.outlines if "::" in line})
    assert runs == [
        f"{shade}-{store}]"
        for shade in ("1", "colour", "shade2")
        for store in (
            "file",
            "memory",
        )
    ]


SHUFFLER = """\


import random


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    random.Random(4).shuffle(items)
    items.reverse()
"""


def test_shuffled_runs_are_each_put_back_in_order(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST + SHUFFLER, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "-rA")
    result.assert_outcomes(passed=10)
    ran = [line.split()[1] for line in result.outlines if line.startswith("PASSED")]
    for run in (PARAMETRIZED_IDS[:5], PARAMETRIZED_IDS[5:]):
        start = ran.index(run[0])
        assert ran[start : start + 5] == run


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["load", "loadfile"])
def test_runs_stay_whole_on_two_workers(pytester: pytest.Pytester, mode: str) -> None:
    more = PARAMETRIZED.replace("Parametrized\n", "More\n")
    write(
        pytester,
        {
            "conftest.py": CONFTEST,
            "docs/param.rst": PARAMETRIZED,
            "docs/more.rst": more,
            "docs/named.rst": NAMED,
        },
    )
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--dist", mode)
    result.assert_outcomes(passed=27)
    by_run: dict[str, set[str]] = {}
    for line in events(pytester):
        if " example in " in line or " again in " in line:
            run, _, var_dir = line.partition(" ")[0], None, line.split(" in ")[1]
            by_run.setdefault(run, set()).add(var_dir)
    # Two documents, two runs each: each run in one world, every world its own.
    assert all(len(dirs) == 2 for dirs in by_run.values()), by_run


@pytest.mark.slow
def test_every_worker_runs_every_run_under_dist_each(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--dist", "each", "-rA")
    result.assert_outcomes(passed=20)
    passed = [line.split()[1] for line in result.outlines if line.startswith("PASSED")]
    assert sorted(passed) == sorted(PARAMETRIZED_IDS * 2)
    by_run: dict[str, set[str]] = {}
    for line in events(pytester):
        if " example in " in line or " again in " in line:
            by_run.setdefault(line.partition(" ")[0], set()).add(line.split(" in ")[1])
    # Each worker runs each run in a fresh world of its own.
    assert sorted(len(dirs) for dirs in by_run.values()) == [2, 2], by_run


# -- Failures ----------------------------------------------------------------------------


def test_an_unknown_fixture_fails_each_example_naming_the_document_line(
    pytester: pytest.Pytester,
) -> None:
    spec = """\
    Unknown
    =======

    .. runnerkit-fixtures: greeting, nonesuch

        >>> 1
        1
        >>> 2
        2
    """
    write(pytester, {"conftest.py": CONFTEST, "docs/unknown.rst": spec, "docs/plain.rst": PLAIN})
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of unknown.rst line=6 column=1*",
            "fixture 'nonesuch' named by docs/unknown.rst, line 4",
            "E       fixture 'nonesuch' not found",
            ">       available fixtures: *greeting*",
        ]
    )


def test_a_fixture_that_fails_to_set_up_is_an_error_of_each_example(
    pytester: pytest.Pytester,
) -> None:
    conftest = CONFTEST + textwrap.dedent(
        """\


        @pytest.fixture
        def broken():
            raise RuntimeError('cannot set up')
        """
    )
    spec = """\
    .. runnerkit-usefixtures: broken

        >>> 1
        1
        >>> 2
        2
    """
    write(pytester, {"conftest.py": conftest, "docs/broken.rst": spec, "docs/plain.rst": PLAIN})
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of broken.rst line=3 column=1*", "E       RuntimeError: cannot set up"]
    )
    # Its traceback is the fixture's, not pytest's or the harness's.  (Only the errors
    # section: the warnings summary of an in-process run may name pytest's files.)
    errors = result.stdout.str().partition("= ERRORS =")[2].partition("warnings summary")[0]
    assert "RuntimeError: cannot set up" in errors
    assert "_pytest" not in errors
    assert "specnodes.py" not in errors


def test_a_malformed_directive_is_a_collection_error(pytester: pytest.Pytester) -> None:
    spec = """\
    .. runnerkit-fixtures: greeting quietly

        >>> 1
        1
    """
    write(pytester, {"conftest.py": CONFTEST, "docs/bad.rst": spec})
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*HarnessError: docs/bad.rst, line 1: runnerkit-fixtures: 'greeting quietly' is"
            " not a list of fixture names*"
        ]
    )


def test_a_fixture_may_not_hide_a_name_of_the_document(pytester: pytest.Pytester) -> None:
    spec = """\
    .. runnerkit-fixtures: create_list

        >>> create_list
    """
    write(pytester, {"conftest.py": CONFTEST, "docs/hides.rst": spec})
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*HarnessError: docs/hides.rst names fixture 'create_list', a name its namespace"
            " already has*"
        ]
    )


# -- Accept mode -------------------------------------------------------------------------

#: A parametrized document with an example whose output is the same in both runs, one
#: whose output differs, and one that passes in one run only.
ACCEPT_SPEC = """\
Accept
======

.. runnerkit-fixtures: store

    >>> print('same in both')
    wrong
    >>> store
    'neither'
    >>> store == 'file'
    True
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_accept_rewrites_only_what_every_run_agrees_on(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/accept.rst": ACCEPT_SPEC})
    result = pytester.runpytest_subprocess(*QUIET, *workers, "--spec-accept")
    result.assert_outcomes(passed=1, failed=5)
    result.stdout.fnmatch_lines(
        [
            "docs/accept.rst: rewrote 1 example (line 6)",
            "docs/accept.rst:8: not accepted: the runs of its document ([file], [memory])"
            " printed different output",
            "docs/accept.rst:10: not accepted: it passed in run [file] of its document,"
            " which the rewrite would fail",
        ]
    )
    text = Path(pytester.path, "docs/accept.rst").read_text()
    assert text == textwrap.dedent(ACCEPT_SPEC).replace("    wrong\n", "    same in both\n")


def test_accept_refuses_when_only_some_runs_ran(pytester: pytest.Pytester) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/accept.rst": ACCEPT_SPEC})
    result = pytester.runpytest(*QUIET, "--spec-accept", "-k", "memory")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "docs/accept.rst:6: not accepted: its document runs once per parameter and only"
            " 1 of its 2 runs ran it; run them all to accept it",
        ]
    )
    assert Path(pytester.path, "docs/accept.rst").read_text() == textwrap.dedent(ACCEPT_SPEC)


# -- Run ids, as pytest makes them -------------------------------------------------------


def fixturedef(name: str, params: list[Any], ids: Any = None, scope: str = "function") -> Any:
    """A stand-in for pytest's ``FixtureDef``, with what :func:`parametrize` reads."""
    return SimpleNamespace(argname=name, params=params, ids=ids, scope=scope, argnames=())


def run_ids(*defs: Any) -> list[str]:
    closure = [each.argname for each in defs]
    return [params.id for params, _ in parametrize(closure, {d.argname: [d] for d in defs})]


def test_ids_follow_pytest() -> None:
    assert run_ids(fixturedef("n", [1, 2.5, None, True, "é"])) == [
        "1",
        "2.5",
        "None",
        "True",
        "\\xe9",
    ]
    assert run_ids(fixturedef("n", [object(), [1]])) == ["n0", "n1"]
    assert run_ids(fixturedef("n", [1, 2], ids=["one", None])) == ["one", "2"]
    assert run_ids(fixturedef("n", [1, 2], ids=lambda value: f"v{value}")) == ["v1", "v2"]
    assert run_ids(fixturedef("n", [pytest.param(1, id="uno"), 2])) == ["uno", "2"]
    assert run_ids(fixturedef("n", ["a", "a", "b"])) == ["a0", "a1", "b"]
    assert run_ids(fixturedef("n", [1, 1])) == ["1_0", "1_1"]
    assert run_ids(fixturedef("a", ["x", "y"]), fixturedef("b", [1, 2])) == [
        "x-1",
        "x-2",
        "y-1",
        "y-2",
    ]


def test_a_run_carries_what_pytest_reads_from_a_callspec() -> None:
    (params, marks), _ = parametrize(
        ["store"],
        {
            "store": [
                fixturedef(
                    "store", [pytest.param("file", marks=pytest.mark.slow), "x"], scope="module"
                )
            ]
        },
    )
    assert params.params == {"store": "file"}
    assert params.indices == {"store": 0}
    assert params._arg2scope == {"store": Scope.Module}
    assert [mark.name for mark in marks] == ["slow"]


def test_an_override_that_asks_for_the_parametrized_fixture_keeps_its_params() -> None:
    parametrized = fixturedef("store", ["file", "memory"])
    override = SimpleNamespace(argname="store", params=None, argnames=("store",))
    closed = SimpleNamespace(argname="store", params=None, argnames=())
    assert len(parametrize(["store"], {"store": [parametrized, override]})) == 2
    assert parametrize(["store"], {"store": [parametrized, closed]}) == []
    assert parametrize(["unknown"], {}) == []


# -- Sharding and crashed workers --------------------------------------------------------


def test_every_run_of_a_file_is_on_one_shard(pytester: pytest.Pytester) -> None:
    more = PARAMETRIZED.replace("Parametrized\n", "More\n")
    write(
        pytester,
        {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED, "docs/more.rst": more},
    )
    ran: list[set[str]] = []
    for index in (1, 2):
        result = pytester.runpytest(*QUIET, "-rA", "--spec-shard", f"{index}/2")
        result.assert_outcomes(passed=10)
        ran.append(
            {
                line.split()[1].partition("::")[0]
                for line in result.outlines
                if line.startswith("PASSED")
            }
        )
    assert sorted(ran, key=sorted) == [{"docs/more.rst"}, {"docs/param.rst"}]


def test_the_durations_of_every_run_of_a_file_are_stored_as_the_file_s(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/param.rst": PARAMETRIZED})
    result = pytester.runpytest(*QUIET, "--spec-store-durations")
    result.assert_outcomes(passed=10)
    assert set(read_durations(pytester.path / ".runnerkit-durations.json")) == {"docs/param.rst"}


CRASHING = """\
Crashing
========

.. runnerkit-fixtures: store

    >>> import os
    >>> if store == 'memory':
    ...     os.kill(os.getpid(), 9)
    >>> store
    '...'
"""


@pytest.mark.slow
def test_a_crash_in_one_run_fails_the_rest_of_it(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        {"conftest.py": CONFTEST, "docs/crashing.rst": CRASHING, "docs/plain.rst": PLAIN},
    )
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "-rA", timeout=120)
    result.assert_outcomes(passed=6, failed=2)
    crashed = "docs/crashing.rst::line:7,column:1[memory]"
    output = result.stdout.str()
    assert f"crashed while running '{crashed}', an earlier example" in output
    # (pytest 8.0's short summary gives no message after the node id.)
    assert "FAILED docs/crashing.rst::line:9,column:1[memory]" in output
    assert "not run: worker 'gw" in output
    assert "FAILED docs/crashing.rst::line:9,column:1[file]" not in output


def test_request_and_caplog_are_each_examples_own(pytester: pytest.Pytester) -> None:
    """``request.node`` is the example that runs, and ``caplog`` holds what the current
    example logged: both are pytest's record of the current test."""
    pytester.makeconftest(
        "from runnerkit.testing import collect_specs\n"
        'pytest_collect_file = collect_specs(["docs/*.rst"])\n'
    )
    docs = pytester.mkdir("docs")
    (docs / "record.rst").write_text(
        textwrap.dedent(
            """\
            .. runnerkit-fixtures: request, caplog

                >>> import logging
                >>> request.node.name
                'line:4,column:1'
                >>> logging.getLogger('spec').warning('first'); [r.msg for r in caplog.records]
                ['first']
                >>> request.node.name
                'line:8,column:1'
                >>> logging.getLogger('spec').warning('second'); [r.msg for r in caplog.records]
                ['second']
            """
        ),
        encoding="utf-8",
    )
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=5)


def test_runnerkits_own_fixtures_are_the_documents_world(pytester: pytest.Pytester) -> None:
    """A fixture a document names that builds on ``world``, ``config`` or
    ``create_list`` works on the document's world, not on a second one."""
    pytester.makeconftest(
        textwrap.dedent(
            """\
            import pytest
            from runnerkit.testing import collect_specs

            pytest_collect_file = collect_specs(["docs/*.rst"])


            @pytest.fixture
            def ants(create_list):
                return create_list('ants@example.com')


            @pytest.fixture
            def the_var_dir(world, config):
                assert config is world.config
                return world.var_dir
            """
        )
    )
    docs = pytester.mkdir("docs")
    (docs / "w.rst").write_text(
        textwrap.dedent(
            """\
            .. runnerkit-fixtures: ants, the_var_dir

                >>> config.lists.names
                ['ants@example.com']
                >>> the_var_dir == world.var_dir
                True
            """
        ),
        encoding="utf-8",
    )
    result = pytester.runpytest(
        *QUIET, "-W", "error::runnerkit.testing.isolation.IsolationWarning"
    )
    result.assert_outcomes(passed=2)
