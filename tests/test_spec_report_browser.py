"""The spec report, looked at in headless Chromium, opened from the file system.

A spec with a passing and a failing example is run with ``--spec-report``; its page
must show the failure in red, where the example stands in the text, with the diff
under it, and its badge must lead to the example's line on the source page.  The
screenshots are saved in ``build/screenshots/`` (:mod:`browser`); the one of the
tutorial's ``doctests/runner.rst`` with an example broken on purpose,
``spec-report-tutorial.png``, is the README's ``docs/images/spec-report.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser import browser, screenshot  # noqa: F401  (browser is a fixture)

pytest_plugins = ["pytester"]

TOP = Path(__file__).resolve().parents[1]

CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["*.rst"])
"""

SPEC = """\
Queues
======

Counting the messages of a queue, before anything is queued:

>>> queue = []
>>> len(queue)
0

Queueing two messages:

>>> queue.extend(["first", "second"])
>>> queue
['first', 'second', 'third']

And the last word:

>>> print("done")
done
"""


def _rgb(css: str) -> tuple[int, int, int]:
    """``rgb(207, 34, 46)`` or ``rgba(207, 34, 46, 1)`` as a triple."""
    inside = css[css.index("(") + 1 : css.index(")")]
    red, green, blue = (int(float(part)) for part in inside.split(",")[:3])
    return red, green, blue


def _is_red(css: str) -> bool:
    red, green, blue = _rgb(css)
    return red > 150 and green < 100 and blue < 100


def _is_green(css: str) -> bool:
    red, green, blue = _rgb(css)
    return green > 100 and red < 100 and blue < 100


def test_the_failing_example_is_red_where_it_stands(
    pytester: pytest.Pytester,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    pytester.makeconftest(CONFTEST)
    (pytester.path / "queues.rst").write_text(SPEC)
    pytester.runpytest("--spec-report", "report").assert_outcomes(passed=4, failed=1)
    report = pytester.path / "report"

    browser.set_window_size(1100, 900)
    browser.get((report / "queues.rst.html").as_uri())

    examples = browser.find_elements(By.CSS_SELECTOR, "div.example")
    assert [e.get_attribute("data-status") for e in examples] == [
        "passed",
        "passed",
        "passed",
        "failed",
        "passed",
    ]
    failing = examples[3]
    assert failing.find_element(By.TAG_NAME, "pre").text == (
        ">>> queue\n['first', 'second', 'third']"
    )
    assert _is_red(failing.value_of_css_property("border-left-color"))
    assert _is_green(examples[2].value_of_css_property("border-left-color"))
    # Where it stands: after the prose that introduces it and the example before it,
    # before the prose that follows.
    introduction = browser.find_element(By.XPATH, "//p[contains(., 'Queueing two messages')]")
    after = browser.find_element(By.XPATH, "//p[contains(., 'And the last word')]")
    assert introduction.location["y"] < examples[2].location["y"] < failing.location["y"]
    assert failing.location["y"] < after.location["y"]
    # The diff, in place, red for what was expected, green for what came.
    diff = failing.find_element(By.CSS_SELECTOR, "pre.diff")
    assert diff.is_displayed()
    removed = diff.find_element(By.CSS_SELECTOR, ".del")
    added = diff.find_element(By.CSS_SELECTOR, ".add")
    assert removed.text == "-['first', 'second', 'third']"
    assert added.text == "+['first', 'second']"
    assert _is_red(removed.value_of_css_property("color"))
    assert _is_green(added.value_of_css_property("color"))
    assert failing.location["y"] < diff.location["y"] < examples[4].location["y"]
    badge = failing.find_element(By.CSS_SELECTOR, "a.badge")
    assert badge.text == "line 13 · failed"
    assert _is_red(badge.value_of_css_property("background-color"))
    screenshot(browser, "spec-report-document")

    badge.click()
    assert browser.current_url.endswith("queues.rst.source.html#L13")
    row = browser.find_element(By.ID, "L13")
    assert row.text.endswith(">>> queue")
    target = browser.find_element(By.CSS_SELECTOR, "tr:target")
    assert target.get_attribute("id") == "L13"
    screenshot(browser, "spec-report-source", full_page=False)

    browser.get((report / "index.html").as_uri())
    cells = browser.find_elements(By.CSS_SELECTOR, "table.documents tbody tr td")
    assert [cell.text for cell in cells] == ["queues.rst", "1", "", "4", "", "", ""]
    link = browser.find_element(By.LINK_TEXT, "queues.rst")
    screenshot(browser, "spec-report-index")
    link.click()
    assert browser.current_url.endswith("/report/queues.rst.html")
    assert browser.find_elements(By.CSS_SELECTOR, "div.example.status-failed")


def test_the_tutorial_with_an_example_broken(
    pytester: pytest.Pytester,
    browser: Any,  # noqa: F811
) -> None:
    """doctests/runner.rst as a learner reads it, with one expected output broken."""
    from selenium.webdriver.common.by import By

    text = (TOP / "doctests" / "runner.rst").read_text()
    broken = text.replace("    foo      : yes\n", "    foo      : no\n")
    assert broken != text, "doctests/runner.rst no longer has the line this test breaks"
    pytester.makeconftest(CONFTEST)
    (pytester.path / "runner.rst").write_text(broken)
    result = pytester.runpytest("--spec-report", "report")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1
    assert outcomes.get("passed", 0) > 5

    browser.set_window_size(1100, 900)
    browser.get((pytester.path / "report" / "runner.rst.html").as_uri())
    [failing] = browser.find_elements(By.CSS_SELECTOR, "div.example.status-failed")
    assert _is_red(failing.value_of_css_property("border-left-color"))
    assert failing.find_element(By.TAG_NAME, "pre").text.startswith(">>> dump_msgdata")
    diff = failing.find_element(By.CSS_SELECTOR, "pre.diff").text
    assert "-foo      : no" in diff
    assert "+foo      : yes" in diff
    screenshot(browser, "spec-report-tutorial", full_page=True)


def test_a_long_line_scrolls_in_its_box_and_odd_names_link(
    pytester: pytest.Pytester,
    browser: Any,  # noqa: F811
) -> None:
    """A 3000-character line widens no page; a document called ``issue#12 100%.rst``
    is reached from the index and from its page's source link."""
    from selenium.webdriver.common.by import By

    long = "x" * 3000
    pytester.makeconftest(CONFTEST)
    spec = f"Long\n====\n\n>>> print('{long}')\n{long[:-1]}\n\nThe end.\n"
    (pytester.path / "issue#12 100%.rst").write_text(spec)
    pytester.runpytest("--spec-report", "report").assert_outcomes(failed=1)
    report = pytester.path / "report"

    browser.set_window_size(1100, 900)
    browser.get((report / "index.html").as_uri())
    browser.find_element(By.LINK_TEXT, "issue#12 100%.rst").click()
    [failing] = browser.find_elements(By.CSS_SELECTOR, "div.example.status-failed")
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    for box in [
        failing.find_element(By.TAG_NAME, "pre"),
        failing.find_element(By.CSS_SELECTOR, "pre.diff"),
    ]:
        assert box.size["width"] < width
        assert browser.execute_script("return arguments[0].scrollWidth", box) > 2000
    screenshot(browser, "spec-report-long-line")

    browser.find_element(By.LINK_TEXT, "source").click()
    assert browser.find_element(By.ID, "L4").text.startswith("4")
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
