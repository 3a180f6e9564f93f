"""Browser tests: the report and the live page in headless Chromium, driven by Playwright's
Python API pointed at the system's chromium (Playwright's own browser download does not
work here). Without either, the tests skip saying which is missing; `make help` says how
to install Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import settings
from sandbox.harness import await_value
from sandbox.patterns import REPORTS_DIR
from tests.integration.conftest import sandbox  # noqa: F401 - the same sandbox fixture

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: make deps")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context.new_page()
    context.close()


def screenshot(target, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save a screenshot of a page or an element under .sandbox/reports/ (kept with the
    report)."""
    REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORTS_DIR / f"{name}.png"
    target.screenshot(path=str(path))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="session")
def live_page() -> Iterator[str]:
    """`python -m sandbox ui` on a free port, as `make ui` starts it; its base URL."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "ui", "--port", str(port)],
        cwd=settings.PROJECT_ROOT,
        env=os.environ.copy(),
    )
    try:
        await_value(
            lambda: server.poll() is not None or _answers(f"{base}/api/health"),
            timeout=30,
            waiting_for=f"the live page at {base}",
        )
        assert server.poll() is None, f"the live page exited with {server.returncode}"
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)
