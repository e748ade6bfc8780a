"""Shared fixtures: a real ticker server process on an ephemeral port, or one inside the test's event loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.pagekit import scale_timeouts
from tests.support.serverproc import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One server process for the read-mostly tests: simulated feed, fast ticks, a fixed seed."""
    with ServerProcess(["--sim-rate", "20", "--seed", "7", "--log-level", "warning"]) as srv:
        yield srv


@pytest.fixture
async def inprocess() -> AsyncIterator[InProcessServer]:
    """A server of the test's own in its event loop: the same market as ``server`` (seed 7, 20 ticks/s)."""
    async with serve_in_process(sim_rate=20.0, seed=7) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One real Chromium per test module (Playwright), for the page's tests."""
    from playwright.sync_api import sync_playwright

    from tests.support.pagekit import launch_chromium

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        yield b
        b.close()


@pytest.fixture
def context_options() -> dict[str, Any]:
    """What ``context`` sets beyond the locale and the window size (a module overrides this to add some)."""
    return {}


@pytest.fixture
def context(browser: Browser, context_options: dict[str, Any]) -> Iterator[BrowserContext]:
    """A fresh browser context per test: en-US, a 1200x900 window and ``context_options``."""
    ctx = browser.new_context(locale="en-US", viewport={"width": 1200, "height": 900}, **context_options)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page of ``context`` whose actions wait up to 10 s and assertions 5 s (scaled)."""
    pg = context.new_page()
    scale_timeouts(pg, actions=10.0, assertions=5.0)
    return pg


@pytest.fixture
def flood() -> Iterator[list[socket.socket]]:
    """Sockets a test opens (tests.support.system.open_idle_sockets); all closed at the end."""
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()
