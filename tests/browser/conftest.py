"""Real-browser tests: Debian's Chromium driven by Playwright (no browser download); skipped where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_support import CHROMIUM_ARGS, chromium_path


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium under Playwright; the test skips, with the reason, where either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh page (its own context: no cookies or storage shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: $MEDLIB_SCREENSHOTS (the README's docs/ when refreshing them), else a temp folder."""
    folder = Path(os.environ.get("MEDLIB_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


