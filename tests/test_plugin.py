"""runnerkit's pytest plugin, tried the way another project meets it.

Each test builds a throwaway project with pytester that knows nothing but runnerkit:
plain tests that use its fixtures with no ``conftest.py``, ``.rst`` and ``.md`` specs
wired by one conftest line, specs run on two workers in every ``--dist`` mode, single
examples picked by node id or ``-k``, a plugin that shuffles tests, and a spec that
freezes the clock under ``--durations``.  Where a behaviour could pass by accident, a
control run without the plugin (``-p no:runnerkit``) shows that it would not.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import pytest
from sybil import Document

from runnerkit.errors import HarnessError, RunnerkitError
from runnerkit.testing import make_sybil
from runnerkit.testing.parsers import SpecParser
from runnerkit.testing.scheduling import document_scope, example_document, merge_scopes
from runnerkit.testing.timecontrol import TimeFreezer

pytest_plugins = ["pytester"]

#: Options every inner run gets: no cache files in the throwaway project.
QUIET = ("-p", "no:cacheprovider")

CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["docs/*.rst", "docs/*.md"])
"""

#: A reST spec whose later examples need every earlier one.
ALPHA = """\
Alpha
=====

    >>> total = 0
    >>> config.push('alpha', '[runner.alpha]')

One more:

    >>> total += 1; total
    1

.. code-block:: python

    total += 10

.. skip: next

>>> raise RuntimeError('never run')

So far:

    >>> total
    11
    >>> 'alpha' in config.switchboards
    True

.. clear-namespace

The document's own names are gone, its world is not:

    >>> 'total' in globals(), 'alpha' in config.switchboards
    (False, True)
"""

#: The node ids of ALPHA's examples, in document order.
ALPHA_LINES = (4, 5, 9, 12, 16, 18, 22, 24, 27, 31)

#: A Markdown spec with the same kinds of example.
BETA = """\
# Beta

```python
>>> count = 1
>>> count + 1
2
```

```python
count += 5
```

<!-- skip: next -->
```python
>>> raise RuntimeError('never run')
```

```python
>>> count, config.layers
(6, ())
```

<!-- clear-namespace -->

```python
>>> 'count' in globals(), 'world' in globals()
(False, True)
```
"""

BETA_LINES = (4, 5, 9, 13, 15, 19, 23, 26)


def write(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    """Write each ``path: text`` into the project, dedented."""
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def spec_project(pytester: pytest.Pytester, **more: str) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/alpha.rst": ALPHA, "docs/beta.md": BETA})
    write(pytester, more)


def node(document: str, line: int) -> str:
    return f"{document}::line:{line},column:1"


def passed_in_order(result: pytest.RunResult) -> list[str]:
    """The node ids of a ``-rA`` run's passed tests, in the order they ran."""
    return [line.split()[1] for line in result.outlines if line.startswith("PASSED ")]


# -- Fixtures, with no conftest at all ---------------------------------------------------

PLAIN_TESTS = """\
import datetime
import time

from runnerkit.runner import Runner


def test_world_and_config(world, config):
    assert config is world.config
    assert config.layers == ()
    assert world.var_dir.is_dir()


def test_lists_and_messages(create_list, message_from_string, message_from_bytes):
    mlist = create_list('ants@example.com')
    assert mlist.list_id == 'ants.example.com'
    assert message_from_string('Subject: hi\\n\\n')['subject'] == 'hi'
    assert message_from_bytes(b'Subject: bytes\\n\\n')['subject'] == 'bytes'


def test_dumps(dump_msgdata, dump_list, capsys):
    dump_msgdata({'lang': 'fr', 'listname': 'x'})
    dump_list(['b', 'a'])
    assert capsys.readouterr().out == 'lang    : fr\\nlistname: x\\na\\nb\\n'


def test_a_runner_drains_its_queue(config, make_testable_runner, get_queue_messages,
                                   create_list, message_from_string):
    create_list('ants@example.com')
    config.push('work', '[runner.work]')
    seen = []

    class WorkRunner(Runner):
        def _dispose(self, mlist, msg, msgdata):
            seen.append(msg['subject'])
            return False

    for subject in ('one', 'two'):
        config.switchboards['work'].enqueue(
            message_from_string(f'Subject: {subject}\\n\\n'), listid='ants.example.com')
    make_testable_runner(WorkRunner).run()
    assert seen == ['one', 'two']
    assert get_queue_messages('work') == []


def test_fifo_under_a_frozen_clock(config, freeze_time, message_from_string,
                                   get_queue_messages):
    factory = freeze_time('2024-05-01 12:00:00')
    assert datetime.datetime.now() == datetime.datetime(2024, 5, 1, 12)
    config.push('held', '[runner.held]')
    subjects = [f'm{number}' for number in range(20)]
    for subject in subjects:
        config.switchboards['held'].enqueue(message_from_string(f'Subject: {subject}\\n\\n'))
    assert [item.msg['subject'] for item in get_queue_messages('held')] == subjects
    factory.tick(60)
    assert time.time() == datetime.datetime(2024, 5, 1, 12, 1).timestamp()
"""


def test_fixtures_work_in_a_project_without_a_conftest(pytester: pytest.Pytester) -> None:
    write(pytester, {"test_plain.py": PLAIN_TESTS})
    result = pytester.runpytest_subprocess(*QUIET)
    result.assert_outcomes(passed=5)


# -- A project's own specs, with one conftest line ---------------------------------------


def test_rst_and_md_specs_run_in_their_own_worlds(pytester: pytest.Pytester) -> None:
    spec_project(pytester)
    result = pytester.runpytest(*QUIET, "-rA")
    result.assert_outcomes(passed=len(ALPHA_LINES) + len(BETA_LINES))
    assert passed_in_order(result) == [node("docs/alpha.rst", line) for line in ALPHA_LINES] + [
        node("docs/beta.md", line) for line in BETA_LINES
    ]


def test_a_spec_named_on_the_command_line_runs_once(pytester: pytest.Pytester) -> None:
    """pytest's doctest plugin also collects any ``.rst`` named on the command line."""
    spec_project(pytester)
    result = pytester.runpytest(*QUIET, "docs/alpha.rst")
    result.assert_outcomes(passed=len(ALPHA_LINES))


@pytest.mark.parametrize(
    ("parsers", "expected"),
    [
        pytest.param(
            '["doctest"]',
            {"alpha": [4, 5, 9, 18, 22, 24, 31], "beta": [4, 5, 15, 19, 26]},
            id="doctest",
        ),
        pytest.param('["codeblock"]', {"alpha": [12], "beta": [9]}, id="codeblock"),
    ],
)
def test_the_parsers_option_chooses_the_kinds_of_example(
    pytester: pytest.Pytester, parsers: str, expected: dict[str, list[int]]
) -> None:
    spec_project(pytester)
    pytester.makeconftest(
        "from runnerkit.testing import collect_specs\n\n"
        f'pytest_collect_file = collect_specs(["docs/*.rst", "docs/*.md"], parsers={parsers})\n'
    )
    collected = pytester.runpytest(*QUIET, "--collect-only", "-q")
    ids = [line for line in collected.outlines if "::" in line]
    assert ids == [node("docs/alpha.rst", line) for line in expected["alpha"]] + [
        node("docs/beta.md", line) for line in expected["beta"]
    ]


def test_markdown_doctests_chosen_without_code_blocks_are_all_doctests() -> None:
    only_doctests = SpecParser(["doctest"], optionflags=0)
    document = Document(textwrap.dedent(BETA), "beta.md")
    sources = [region.parsed for region in only_doctests(document)]
    assert [type(source).__name__ for source in sources] == ["Example"] * 5


def test_an_unknown_parser_name_is_refused() -> None:
    with pytest.raises(RunnerkitError, match=r"unknown spec parser 'doctests': use one of"):
        SpecParser(["doctests"], optionflags=0)


OPTIONS_CONFTEST = """\
import doctest

import pytest

from runnerkit.testing import collect_specs


@pytest.fixture
def greeting():
    return 'hello'


def more_names(world):
    return {'answer': 42, 'var_dir_of_world': world.var_dir}


pytest_collect_file = collect_specs(
    ["docs/*.rst", "docs/*.md"],
    extra_namespace=more_names,
    fixtures=["greeting"],
    {flags}
)
"""

OPTIONS_SPEC = """\
Options
=======

    >>> answer, greeting
    (42, 'hello')
    >>> var_dir_of_world == world.var_dir
    True
    >>> print('one   two')
    one two
    >>> print('a long line')
    a ... line
"""

OPTIONS_MD = """\
```python
>>> print('one   two')
one two
```
"""


@pytest.mark.parametrize(
    ("flags", "failed"),
    [
        pytest.param("", 0, id="default-flags"),
        # Without NORMALIZE_WHITESPACE, the two examples with spaces fail, in both kinds.
        pytest.param("optionflags=doctest.ELLIPSIS,", 2, id="ellipsis-only"),
    ],
)
def test_extra_namespace_fixtures_and_optionflags(
    pytester: pytest.Pytester, flags: str, failed: int
) -> None:
    write(
        pytester,
        {
            "conftest.py": OPTIONS_CONFTEST.replace("{flags}", flags),
            "docs/options.rst": OPTIONS_SPEC,
            "docs/options.md": OPTIONS_MD,
        },
    )
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=5 - failed, failed=failed)


# -- One example selected: the ones before it run first, unreported ----------------------


@pytest.mark.parametrize(
    "selection",
    [
        pytest.param([node("docs/alpha.rst", 31)], id="last-rst-by-node-id"),
        pytest.param([node("docs/beta.md", 19)], id="md-by-node-id"),
        pytest.param(["-k", "line:24 or line:26"], id="k-one-in-each-document"),
        pytest.param(["-k", "alpha and (line:9 or line:24)"], id="k-with-a-gap"),
    ],
)
def test_a_selected_example_runs_after_the_ones_before_it(
    pytester: pytest.Pytester, selection: list[str]
) -> None:
    spec_project(pytester)
    result = pytester.runpytest(*QUIET, "-rA", *selection)
    # Only the selected examples are reported, and they pass.
    expected = 2 if "-k" in selection else 1
    result.assert_outcomes(passed=expected)
    assert len(passed_in_order(result)) == expected


def test_without_the_plugin_a_selected_example_fails(pytester: pytest.Pytester) -> None:
    """The control for the test above."""
    spec_project(pytester)
    result = pytester.runpytest(*QUIET, "-p", "no:runnerkit", node("docs/alpha.rst", 22))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NameError: name 'total' is not defined*"])


PRELUDE_SPEC = """\
Prelude
=======

    >>> value = 1
    >>> value += 1; value
    3
    >>> value
    2
    >>> value * 10
    30
"""


def test_a_failing_earlier_example_shows_in_the_report_and_does_not_stop_the_rest(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/prelude.rst": PRELUDE_SPEC})
    # As in a full run, line 5 fails but still adds one, so line 7 holds.
    pytester.runpytest(*QUIET, node("docs/prelude.rst", 7)).assert_outcomes(passed=1)

    result = pytester.runpytest(*QUIET, node("docs/prelude.rst", 9))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*runnerkit prelude*",
            "*Examples before this one, run because they were not selected, failed:",
            "line 5: SybilFailure: *",
        ]
    )


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_a_prelude_failure_is_in_the_summary_when_the_selected_example_passes(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    write(pytester, {"conftest.py": CONFTEST, "docs/prelude.rst": PRELUDE_SPEC})
    # No -rA: a passing test's report sections are not shown, but this summary is.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *workers, node("docs/prelude.rst", 7)
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*runnerkit prelude failures*", "docs/prelude.rst::line:7,column:1:", "    line 5: *"]
    )


# -- Document order survives shuffling -----------------------------------------------------

SHUFFLER = """\

import random

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    random.Random(4).shuffle(items)
    items.reverse()
"""

PLAIN = """\
def test_plain_one():
    pass


def test_plain_two():
    pass
"""


@pytest.mark.parametrize("plugin", ["runnerkit", "no:runnerkit"])
def test_shuffled_documents_are_put_back_in_order(pytester: pytest.Pytester, plugin: str) -> None:
    spec_project(pytester, **{"conftest.py": CONFTEST + SHUFFLER, "test_plain.py": PLAIN})
    result = pytester.runpytest(*QUIET, "-rA", "-p", plugin)
    if plugin == "no:runnerkit":
        # The control: the shuffle really does break the documents.
        assert result.parseoutcomes().get("failed", 0) > 0
        return
    result.assert_outcomes(passed=len(ALPHA_LINES) + len(BETA_LINES) + 2)
    ran = passed_in_order(result)
    for document, lines in (("docs/alpha.rst", ALPHA_LINES), ("docs/beta.md", BETA_LINES)):
        # Each document ran in its own order, with nothing in between.
        start = ran.index(node(document, lines[0]))
        assert ran[start : start + len(lines)] == [node(document, line) for line in lines]


# -- Time: pytest's clocks stay real while a spec freezes time -----------------------------

FROZEN_SPEC = """\
Frozen
======

    >>> freezer = freeze_time('2024-05-01 12:00:00')
    >>> _ = freezer.start()
    >>> _ = cleanups.callback(freezer.stop)
    >>> import time, datetime
    >>> time.sleep(0.2)
    >>> print(datetime.datetime.now())
    2024-05-01 12:00:00
"""

FROZEN_TEST = """\
import datetime
import time


def test_frozen(freeze_time):
    freeze_time('2024-05-01')
    time.sleep(0.2)
    assert datetime.date.today() == datetime.date(2024, 5, 1)
"""

TIMING_RECORDER = """\
import json


def pytest_runtest_logreport(report):
    with open('reports.jsonl', 'a') as file:
        print(json.dumps([report.nodeid, report.when, report.start, report.stop]), file=file)
"""


def test_durations_and_report_times_stay_real_under_a_frozen_clock(
    pytester: pytest.Pytester,
) -> None:
    write(
        pytester,
        {
            "conftest.py": CONFTEST + "\n" + TIMING_RECORDER,
            "docs/frozen.rst": FROZEN_SPEC,
            "test_frozen.py": FROZEN_TEST,
        },
    )
    before = time.time()
    result = pytester.runpytest(*QUIET, "--durations=0", "--durations-min=0")
    after = time.time()
    result.assert_outcomes(passed=7)

    durations = {}
    for line in result.outlines:
        match = re.fullmatch(r"([\d.]+)s (setup|call|teardown) +(\S+)", line.strip())
        if match:
            durations[match[3], match[2]] = float(match[1])
    # The example that sleeps, frozen since an earlier example, and the test whose
    # fixture froze the clock before its call began, both took their real time.
    assert durations[node("docs/frozen.rst", 8), "call"] >= 0.2
    assert durations["test_frozen.py::test_frozen", "call"] >= 0.2
    # No duration is measured against the frozen clock (that gives ~1.7e9 seconds).
    assert all(seconds <= after - before for seconds in durations.values()), durations

    lines = Path(pytester.path, "reports.jsonl").read_text().splitlines()
    reports = [json.loads(line) for line in lines]
    assert len(reports) == 3 * 7
    assert all(before <= start <= stop <= after for _, _, start, stop in reports), reports


def test_a_time_freezer_thaws_everything_it_froze() -> None:
    freezer = TimeFreezer()
    freezer("2001-02-03")
    freezer("2002-03-04")
    assert freezer.frozen
    assert time.gmtime().tm_year == 2002
    freezer.thaw()
    assert not freezer.frozen
    assert time.gmtime().tm_year > 2020


# -- Parallel runs: documents stay whole in every --dist mode ------------------------------


def chained(name: str, examples: int, *, markdown: bool = False) -> str:
    """A document whose every example needs the one before; each logs its worker.

    It has four examples of set-up, then *examples* steps, the first at line 11.
    """
    lines = [
        ">>> import os",
        ">>> worker = os.environ.get('PYTEST_XDIST_WORKER', 'main')",
        ">>> def note():",
        "...     with open('workers.log', 'a') as log:",
        f"...         print('{name}', worker, world.var_dir.name, file=log)",
        ">>> step = 0",
        "",
    ]
    for number in range(1, examples + 1):
        lines += [">>> step += 1; note(); step", f"{number}", ""]
    if markdown:
        return f"# {name}\n\n```python\n" + "\n".join(lines[:-1]) + "\n```\n"
    body = "\n".join(f"    {line}" if line else "" for line in lines)
    return f"{name}\n{'=' * len(name)}\n\n{body}"


GROUPING_HOOK = """

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    # One example of alpha shares an xdist group with a plain test.
    for item in items:
        if item.nodeid == 'docs/alpha.rst::line:17,column:1':
            item.add_marker(pytest.mark.xdist_group('shared'))
"""

GROUPED_TESTS = """\
import pytest


@pytest.mark.xdist_group('shared')
def test_grouped(worker_id, request):
    with open('grouped.log', 'a') as log:
        print(worker_id, request.node.nodeid, file=log)


@pytest.mark.parametrize('number', range(6))
def test_filler(number):
    pass
"""

DIST_MODES = ["load", "loadscope", "loadfile", "loadgroup", "worksteal", "each", "no"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", DIST_MODES)
def test_two_workers_never_split_a_document(pytester: pytest.Pytester, mode: str) -> None:
    write(
        pytester,
        {
            "conftest.py": CONFTEST + GROUPING_HOOK,
            "test_grouping.py": GROUPED_TESTS,
            "docs/alpha.rst": chained("alpha", 8),
            "docs/beta.rst": chained("beta", 6),
            "docs/gamma.md": chained("gamma", 5, markdown=True),
        },
    )
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--dist", mode)
    examples = (4 + 8) + (4 + 6) + (4 + 5)
    copies = 2 if mode == "each" else 1
    result.assert_outcomes(passed=copies * (examples + 7))

    seen: dict[tuple[str, str], set[str]] = {}
    for line in Path(pytester.path, "workers.log").read_text().splitlines():
        document, worker, var_dir = line.split()
        # Each worker's worlds are its own, and say so in their names.
        assert var_dir.startswith(f"runnerkit-{worker}-")
        seen.setdefault((document, worker), set()).add(var_dir)
    workers_of = {document: {w for d, w in seen if d == document} for document, _ in seen}
    assert set(workers_of) == {"alpha", "beta", "gamma"}
    # Every document ran whole, in one world, on one worker (on each worker, for each).
    assert all(len(var_dirs) == 1 for var_dirs in seen.values()), seen
    assert all(len(workers) == copies for workers in workers_of.values()), workers_of
    for line in Path(pytester.path, "grouped.log").read_text().splitlines():
        worker, nodeid = line.split()
        if nodeid.endswith("@shared"):
            # xdist marked the group (pytest-xdist 3.8 cannot under pytest 9.2, whose
            # node ids ignore the suffix it sets): the group holds an example of alpha,
            # so all of alpha runs with the group.
            assert {worker} == workers_of["alpha"]


def test_the_scheduler_merges_a_document_with_the_scopes_of_its_examples() -> None:
    collection = [
        "docs/a.rst::line:4,column:1",
        "test_x.py::test_one@shared",
        "docs/a.rst::line:6,column:1@shared",
        "docs/a.rst::line:8,column:1",
        "test_x.py::test_two",
        "docs/b.md::sybil:md,line:3,column:1",
        "docs/b.md::sybil:md,line:5,column:1",
    ]

    def loadgroup_scope(nodeid: str) -> str:
        return nodeid.rpartition("@")[2] if "@" in nodeid else nodeid

    merged = merge_scopes(collection, loadgroup_scope)
    units: dict[str, list[str]] = {}
    for nodeid in collection:
        units.setdefault(merged[nodeid], []).append(nodeid)
    assert list(units.values()) == [
        [collection[0], collection[1], collection[2], collection[3]],
        [collection[4]],
        [collection[5], collection[6]],
    ]
    # A unit is named after its first scope.
    assert list(units) == [collection[0], collection[4], collection[5]]


@pytest.mark.parametrize(
    ("nodeid", "document"),
    [
        ("docs/a.rst::line:4,column:1", "docs/a.rst"),
        ("docs/a.rst::sybil:md,line:4,column:1", "docs/a.rst"),
        ("docs/a.rst::line:4,column:1@group", "docs/a.rst"),
        ("tests/test_a.py::test_line", None),
        ("tests/test_a.py::TestA::test_b", None),
        ("tests/test_a.py::test_b[line:4,column:1]", None),
    ],
)
def test_which_node_ids_are_examples(nodeid: str, document: str | None) -> None:
    assert example_document(nodeid) == document
    assert document_scope(nodeid) == (document or nodeid)


# -- Encodings and patterns --------------------------------------------------------------

#: A spec whose expected output is not ASCII, to be written in Latin-1.
CAFE = """\
Café list
=========

    >>> name = 'Caf' + chr(0xe9)
    >>> print(name)
    {expected}
"""


def latin_1_project(pytester: pytest.Pytester, options: str, expected: str = "Café") -> Path:
    """A project with ``docs/cafe.rst`` in Latin-1, collected with *options*."""
    pytester.makeconftest(
        "from runnerkit.testing import collect_specs\n\n"
        f'pytest_collect_file = collect_specs(["docs/*.rst"]{options})\n'
    )
    spec = pytester.path / "docs" / "cafe.rst"
    spec.parent.mkdir()
    spec.write_bytes(CAFE.format(expected=expected).encode("latin-1"))
    return spec


def test_a_latin_1_spec_runs_with_its_encoding(pytester: pytest.Pytester) -> None:
    latin_1_project(pytester, ', encoding="latin-1"')
    pytester.runpytest(*QUIET).assert_outcomes(passed=2)


def test_accept_writes_a_latin_1_spec_back_in_latin_1(pytester: pytest.Pytester) -> None:
    spec = latin_1_project(pytester, ', encoding="latin-1"', expected="Cafe")
    pytester.runpytest(*QUIET, "--spec-accept").assert_outcomes(passed=1, failed=1)
    assert spec.read_bytes() == CAFE.format(expected="Café").encode("latin-1")
    pytester.runpytest(*QUIET).assert_outcomes(passed=2)


def test_a_spec_not_in_its_encoding_fails_naming_the_file_and_the_encoding(
    pytester: pytest.Pytester,
) -> None:
    latin_1_project(pytester, "")
    result = pytester.runpytest(*QUIET)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "E   runnerkit.errors.HarnessError: cannot read spec */docs/cafe.rst as 'utf-8':"
            " byte 0xe9 on line 1 is not utf-8; pass the encoding it is written in,"
            " as collect_specs(..., encoding=...)"
        ]
    )


def test_an_unknown_encoding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"unknown spec encoding 'latin-11': use a codec"):
        make_sybil(encoding="latin-11", path=tmp_path)


@pytest.mark.parametrize(
    ("patterns", "excludes", "collected"),
    [
        pytest.param(
            ["docs/**/*.rst"],
            [],
            ["docs/guide.rst", "docs/sub/x.rst", "docs/sub/deeper/y.rst", "more/docs/z.rst"],
            id="double-star-is-zero-or-more-directories",
        ),
        pytest.param(
            ["docs/*.rst"], [], ["docs/guide.rst", "more/docs/z.rst"], id="star-is-one-segment"
        ),
        pytest.param(
            ["*.rst"],
            [],
            [
                "top.rst",
                "docs/guide.rst",
                "docs/sub/x.rst",
                "docs/sub/deeper/y.rst",
                "more/docs/z.rst",
            ],
            id="matched-from-the-right-as-in-sybil",
        ),
        pytest.param(
            ["docs/**/deeper/*.rst", "docs/**/**/guide.rst"],
            [],
            ["docs/guide.rst", "docs/sub/deeper/y.rst"],
            id="double-star-in-the-middle",
        ),
        pytest.param(
            ["docs/**/*.rst"],
            ["docs/**/guide.rst", "sub/**"],
            ["more/docs/z.rst"],
            id="excludes-mean-the-same",
        ),
    ],
)
def test_patterns_and_excludes_match_like_a_recursive_glob(
    tmp_path: Path, patterns: list[str], excludes: list[str], collected: list[str]
) -> None:
    paths = [
        "top.rst",
        "docs/guide.rst",
        "docs/sub/x.rst",
        "docs/sub/deeper/y.rst",
        "more/docs/z.rst",
        "docs/guide.md",
    ]
    sybil = make_sybil(patterns, excludes=excludes, path=tmp_path)
    assert [path for path in paths if sybil.should_parse(tmp_path / path)] == collected
    assert not sybil.should_parse(tmp_path.parent / "docs" / "guide.rst")


def test_a_double_star_pattern_collects_top_level_and_nested_specs(
    pytester: pytest.Pytester,
) -> None:
    example = "    >>> 1 + 1\n    2\n"
    write(
        pytester,
        {
            "conftest.py": "from runnerkit.testing import collect_specs\n\n"
            "pytest_collect_file = collect_specs(\n"
            '    ["docs/**/*.rst"], excludes=["docs/**/draft-*.rst"]\n'
            ")\n",
            "docs/guide.rst": example,
            "docs/sub/x.rst": example,
            "docs/draft-guide.rst": example,
            "docs/sub/draft-x.rst": example,
        },
    )
    collected = pytester.runpytest(*QUIET, "--collect-only", "-q")
    ids = [line for line in collected.outlines if "::" in line]
    assert ids == [node("docs/guide.rst", 1), node("docs/sub/x.rst", 1)]


@pytest.mark.parametrize("pattern", ["", "/docs/*.rst"])
def test_a_pattern_that_can_match_nothing_is_refused(tmp_path: Path, pattern: str) -> None:
    message = re.escape(f"excludes pattern '{pattern}' matches no document")
    with pytest.raises(HarnessError, match=message):
        make_sybil(["*.rst"], excludes=[pattern], path=tmp_path)


def test_patterns_given_as_one_string_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"patterns must be a sequence of patterns, not"):
        make_sybil("docs/*.rst", path=tmp_path)
