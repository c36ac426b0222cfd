"""The operator page in a real browser: headless Chromium under selenium.

A REST runner serves a world with messages waiting, one shunted and one preserved in
``bad``; Chromium opens the page, sees a queue's depth rise when the page reloads
itself after an enqueue, and requeues the entry of ``bad`` through the confirmation
page with the token read from the var dir.  Screenshots of each step are saved in
``build/screenshots/`` (:mod:`browser`); the one of the page as an operator usually
sees it, ``operator-page-readme.png``, is the README's ``docs/images/operator-page.png``
(copied from there when the page changes).  Without a browser the test is skipped with the
reason, unless ``RUNNERKIT_REQUIRE_BROWSER`` is set (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import json
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser import TOP, browser, screenshot  # noqa: F401 (browser is a fixture)
from operator_pages import DEADLINE, PageServer

from runnerkit.master import lock_paths
from runnerkit.site import Site

pytestmark = pytest.mark.runnerkit_backend("file")

# Imported with the module, not in the test: what selenium imports on first use gives
# the loggers of urllib3 and websocket a handler, which the isolation check would take
# for the test's doing.
with contextlib.suppress(ImportError):
    import selenium.webdriver
    import selenium.webdriver.remote.websocket_connection  # noqa: F401
    import urllib3  # noqa: F401

MESSAGE = (
    "From: anne@example.com\nTo: ant@example.com\nSubject: {subject}\n"
    "Message-ID: <{number}.page@example.com>\n\nHello.\n"
)


@pytest.fixture
def server(config: Site) -> Iterator[PageServer]:
    served = PageServer(config).start()
    yield served
    served.stop()


def message(subject: str, number: int) -> str:
    return MESSAGE.format(subject=subject, number=number)


def populate(site: Site) -> str:
    """Messages waiting in ``in``, one shunted, two preserved in ``bad`` (one from
    ``out``: the one returned), and a master's status with its runners."""
    switchboards = site.switchboards
    for number in range(2):
        switchboards["in"].enqueue(message(f"Meeting notes {number}", number), listid="ant.ex")
    switchboards["shunt"].enqueue(
        message("Re: the agenda", 10),
        whichq="pipeline",
        listid="ant.example.com",
        shunt_reason="KeyError: 'X-Topic' (handler topics)",
    )
    preserved = []
    for number, (queue, reason) in enumerate(
        [
            ("out", "ConnectionRefusedError: smtp.example.com:25"),
            ("bounces", "ValueError: not a DSN"),
        ]
    ):
        switchboard = switchboards[queue]
        filebase = switchboard.enqueue(
            message(f"Weekly digest {number}", 20 + number), listid="ant.example.com"
        )
        switchboard.dequeue(filebase)
        switchboard.finish(filebase, preserve=True, reason=reason)
        preserved.append(filebase)
    runner: dict[str, Any] = {"count": 1, "restarts": 0, "reason": "", "last_error": ""}
    lock_paths(site).status.write_text(
        json.dumps(
            {
                "draining": False,
                "master_pid": 4100,
                "runners": [
                    runner | {"name": "in", "slice": 0, "pid": 4101, "state": "running"},
                    runner | {"name": "pipeline", "slice": 0, "pid": 4102, "state": "running"},
                    runner
                    | {"name": "out", "slice": 0, "pid": None, "state": "starting"}
                    | {
                        "restarts": 3,
                        "reason": "backing off 4.00s before restart 4 of 10",
                        "last_error": "cannot connect to smtp.example.com:25",
                    },
                    runner | {"name": "rest", "slice": None, "pid": 4104, "state": "running"},
                ],
            }
        ),
        encoding="utf-8",
    )
    return preserved[0]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE} s: {what}")
        time.sleep(0.1)


def cell(driver: Any, selector: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, selector).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""  # between two loads of the page


def after_click(driver: Any, selector: str) -> Any:
    """The element *selector* of the page a click leads to, once it is loaded (a click
    that submits a form may return before the next page is there)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, DEADLINE).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    )


def test_the_page_follows_the_queues_and_requeues_from_bad(
    browser: Any,  # noqa: F811 (the fixture)
    server: PageServer,
    config: Site,
) -> None:
    from selenium.webdriver.common.by import By

    filebase = populate(config)
    browser.set_window_size(1200, 900)
    # The page reloads itself every second here: no reload by the test.
    browser.get(f"{server.url}?refresh=1")
    assert browser.title == "queues and runners: runnerkit"
    wait_for(lambda: cell(browser, 'tr[data-queue="in"] td.depth') == "2", "in shows 2")
    assert cell(browser, 'tr[data-queue="bad"] td.depth') == "2"
    screenshot(browser, "operator-page")
    config.switchboards["in"].enqueue(message("Late news", 99), listid="ant.example.com")
    wait_for(lambda: cell(browser, 'tr[data-queue="in"] td.depth') == "3", "in rises to 3")
    screenshot(browser, "operator-page-depth-rose")

    # Requeue the entry of bad, which came from out: the button, the confirmation, the token.
    browser.get(f"{server.url}?refresh=0")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{filebase}"]')
    assert "ConnectionRefusedError: smtp.example.com:25" in row.text
    row.find_element(By.CSS_SELECTOR, "button.requeue").click()
    question = after_click(browser, "form.confirm").find_element(By.XPATH, "../h2").text
    assert question == f"Requeue entry {filebase} from bad to out?"
    screenshot(browser, "operator-page-confirm")
    assert (config.switchboards["bad"].queue_directory / f"{filebase}.psv").is_file()
    browser.find_element(By.ID, "token").send_keys(server.token())
    browser.find_element(By.ID, "confirm").click()
    result = after_click(browser, "#result").text
    screenshot(browser, "operator-page-requeued")
    [new_id] = config.switchboards["out"].files
    assert result == f"requeued {filebase} from 'bad' to 'out' as {new_id}"
    # Moved on disk: out of bad, into out.
    assert not (config.switchboards["bad"].queue_directory / f"{filebase}.psv").exists()
    assert (config.switchboards["out"].queue_directory / f"{new_id}.pck").is_file()
    # And on the page, the one the operator was on: still not reloading.
    browser.find_element(By.ID, "back").click()
    after_click(browser, "#queues")
    assert browser.current_url == f"{server.url}?refresh=0#bad"
    wait_for(lambda: cell(browser, 'tr[data-queue="out"] td.depth') == "1", "out shows 1")
    assert cell(browser, 'tr[data-queue="bad"] td.depth') == "1"
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-id="{filebase}"]')
    screenshot(browser, "operator-page-after")


def test_a_wrong_token_is_refused_in_the_browser_and_nothing_moves(
    browser: Any,  # noqa: F811 (the fixture)
    server: PageServer,
    config: Site,
) -> None:
    from selenium.webdriver.common.by import By

    filebase = populate(config)
    browser.get(f"{server.url}?refresh=0")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{filebase}"]')
    row.find_element(By.CSS_SELECTOR, "button.discard").click()
    assert after_click(browser, "form.confirm").find_element(By.XPATH, "../h2").text == (
        f"Discard entry {filebase} from bad for good?"
    )
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.ID, "confirm").click()
    error = after_click(browser, "#error").text
    assert error.startswith("wrong token: ")
    screenshot(browser, "operator-page-wrong-token")
    assert (config.switchboards["bad"].queue_directory / f"{filebase}.psv").is_file()


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height of the PNG *data*, from its IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_readme_screenshot_shows_the_page_as_an_operator_sees_it(
    browser: Any,  # noqa: F811 (the fixture)
    server: PageServer,
    config: Site,
) -> None:
    """The page as it usually is: reloading itself, queues with depth, a runner with
    its last error, entries in bad and shunt.  ``operator-page-readme.png`` is the
    README's ``docs/images/operator-page.png``."""
    from selenium.webdriver.common.by import By

    populate(config)
    for number in range(3):
        config.switchboards["out"].enqueue(message(f"Re: minutes {number}", 30 + number))
    browser.set_window_size(1200, 900)
    browser.get(server.url)
    wait_for(lambda: cell(browser, 'tr[data-queue="out"] td.depth') == "3", "out shows 3")
    meta = browser.find_element(By.CSS_SELECTOR, "p.meta").text
    assert "Reloads every 5 s" in meta
    assert "Does not reload" not in meta
    assert "cannot connect to smtp.example.com:25" in browser.find_element(By.ID, "runners").text
    assert len(browser.find_elements(By.CSS_SELECTOR, 'table[data-queue="bad"] tbody tr')) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, 'table[data-queue="shunt"] tbody tr')) == 1
    path = screenshot(browser, "operator-page-readme")
    data = path.read_bytes()
    width, _ = png_size(data)
    assert 1100 <= width <= 1300
    assert len(data) < 300_000
    # The README's copy is a picture of the same page, of the same width.
    readme = TOP / "docs" / "images" / "operator-page.png"
    assert "](docs/images/operator-page.png)" in (TOP / "README.md").read_text()
    committed = readme.read_bytes()
    assert png_size(committed)[0] == width
    assert len(committed) < 300_000


def test_a_long_reason_wraps_on_the_list_and_the_confirmation_page(
    browser: Any,  # noqa: F811 (the fixture)
    server: PageServer,
    config: Site,
) -> None:
    from selenium.webdriver.common.by import By

    shunt = config.switchboards["shunt"]
    filebase = shunt.enqueue(
        message("L" * 3000, 40), whichq="pipeline", shunt_reason="ValueError: " + "L" * 3000
    )
    browser.set_window_size(1200, 900)
    browser.get(f"{server.url}?refresh=0")
    for _ in range(2):
        width = browser.execute_script("return document.documentElement.clientWidth")
        scrolled = browser.execute_script("return document.documentElement.scrollWidth")
        assert scrolled <= width, browser.current_url
        if "confirm" in browser.current_url:
            break
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{filebase}"]')
        row.find_element(By.CSS_SELECTOR, "button.discard").click()
        after_click(browser, "form.confirm")
    reason = browser.find_element(By.XPATH, '//table[@id="entry"]//th[text()="Reason"]/../td')
    assert reason.text.startswith("ValueError: LLL")
    assert reason.size["width"] < 1200
    screenshot(browser, "operator-page-long-reason")
