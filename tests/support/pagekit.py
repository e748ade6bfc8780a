"""Driving the trader's page in Debian's Chromium with Playwright (no ``playwright install`` needed).

Used by the browser tests, docs/screenshot.py and bench/web_page.py. Chromium comes from the system
(``.ci/system-deps.sh`` installs it); Playwright only drives it.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from tests.support.timing import timeout

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium (``TICKER_CHROMIUM`` overrides); raises when it is missing."""
    path = os.environ.get("TICKER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is not installed: run `make system-deps` (apt-get install chromium)")
    return path


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser driven by ``playwright`` (a started ``sync_playwright()``)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)


def scale_timeouts(page: Any, actions: float = 10.0, assertions: float = 5.0) -> None:
    """Let ``page``'s actions wait ``actions`` seconds and ``expect(...)`` assertions ``assertions`` seconds
    (both scaled; Playwright's own defaults are 30 s and 5 s)."""
    from playwright.sync_api import expect

    page.set_default_timeout(ms(actions))
    expect.set_options(timeout=ms(assertions))


def ms(seconds: float) -> float:
    """A Playwright timeout argument (milliseconds) for ``seconds``, scaled."""
    return timeout(seconds) * 1000
