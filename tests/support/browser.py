"""Headless Chromium for the tests of the pages runnerkit writes and serves.

The spec report (``pytest --spec-report``) and the REST runner's operator page are
tested in a real browser: Debian's ``chromium`` and ``chromium-driver`` packages
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``), driven by selenium from PyPI (the
test extra).  ``.ci/run`` installs both packages; elsewhere a test that needs them is
skipped with the reason, naming the command that installs them.

Screenshots go to ``build/screenshots/`` at the top of the checkout, or to the directory
``RUNNERKIT_SCREENSHOTS`` names, one PNG per :func:`screenshot` call.  Where
``RUNNERKIT_REQUIRE_BROWSER`` is set (``.ci/run`` sets it), a missing browser fails the
test instead of skipping it, so that CI never passes without having looked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

#: Where Debian's packages put the browser and its driver; PATH is searched after them.
CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")

#: The flags that let Chromium run headless here, as root, on a closed network: without
#: the background-networking ones it tries Google's hosts at every start.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)

#: The checkout's top directory (tests/support/ is two levels down).
TOP = Path(__file__).resolve().parents[2]

INSTALL = "apt install chromium chromium-driver; pip install -e '.[test]' for selenium"


def _which(candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def missing() -> str | None:
    """Why no browser can be had here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed here ({INSTALL})"
    if _which(CHROMIUM) is None:
        return f"headless Chromium is not installed here (no /usr/bin/chromium: {INSTALL})"
    if _which(CHROMEDRIVER) is None:
        return f"ChromeDriver is not installed here (no /usr/bin/chromedriver: {INSTALL})"
    return None


def screenshot_dir() -> Path:
    """The directory screenshots are saved in, made if need be."""
    directory = Path(os.environ.get("RUNNERKIT_SCREENSHOTS") or TOP / "build" / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def screenshot(driver: Any, name: str, *, full_page: bool = True) -> Path:
    """Save what *driver* shows as ``NAME.png`` in :func:`screenshot_dir`; its path.

    With *full_page*, the window is first made as tall as the page (at most 8000 px), so
    that the whole document is in the picture.
    """
    if full_page:
        height = driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
        )
        width = driver.get_window_size()["width"]
        # The window's own frame takes part of its height from the page's viewport.
        frame = driver.execute_script("return window.outerHeight - window.innerHeight")
        wanted = int(height) + 40 + max(0, int(frame or 0))
        driver.set_window_size(width, min(max(wanted, 600), 8000))
    path = screenshot_dir() / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


@contextmanager
def chromium() -> Iterator[Any]:
    """A selenium WebDriver on a fresh headless Chromium, quit at the end.

    :raises pytest.skip.Exception: no browser here (the reason says what to install);
        :func:`pytest.fail` instead where ``RUNNERKIT_REQUIRE_BROWSER`` is set.
    """
    reason = missing()
    if reason is not None:
        if os.environ.get("RUNNERKIT_REQUIRE_BROWSER"):
            pytest.fail(f"RUNNERKIT_REQUIRE_BROWSER is set, but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="runnerkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM) or ""
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=_which(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium under selenium for one test (skipped where there is none)."""
    with chromium() as driver:
        yield driver
