"""Headless Chromium for tests: the system browser (Debian's chromium), never a downloaded one;
a missing browser fails the test with a clear message."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium_page(width: int = 1440, height: int = 900) -> Iterator[Page]:
    """A page that records uncaught page errors; the test fails if any happened."""
    if not CHROMIUM.exists():
        pytest.fail("no Chromium at /usr/bin/chromium: `apt-get install -y chromium` "
                    "(the browser tests drive the system browser, never a downloaded one)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page
            assert errors == [], f"errors in the page: {errors}"
        finally:
            browser.close()
