"""One timing scale for every test, and one way to wait for something to become true.

``TICKER_TEST_TIMEOUT_FACTOR`` (default 1) multiplies every timeout of the tests: on a slow or busy
machine (CI, a sanitizer, coverage) set it to 2 or 5 instead of editing numbers. It scales how long a
test *waits* for something, never what a test asserts about the product (a promised bound such as
"exits within 5 s" stays as documented). python-websockets' tests do the same with
``WEBSOCKETS_TESTS_TIMEOUT_FACTOR``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

FACTOR = float(os.environ.get("TICKER_TEST_TIMEOUT_FACTOR", "1"))
if not FACTOR > 0:
    raise ValueError(f"TICKER_TEST_TIMEOUT_FACTOR must be positive, not {FACTOR!r}")

POLL = 0.01  # seconds between two looks at a condition


def timeout(seconds: float) -> float:
    """``seconds`` scaled by the factor: how long a test may wait for something that should happen."""
    return seconds * FACTOR


def _failure(what: str, within: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout(within):g} s waiting for {what} (last value: {last!r})")


@overload
async def eventually(
    cond: Callable[[], Awaitable[T | None]], within: float = ..., what: str = ..., interval: float = ...
) -> T: ...
@overload
async def eventually(
    cond: Callable[[], T | None], within: float = ..., what: str = ..., interval: float = ...
) -> T: ...
async def eventually(
    cond: Callable[[], object], within: float = 5.0, what: str = "the condition", interval: float = POLL
) -> object:
    """Poll ``cond()`` every ``interval`` seconds until it returns something truthy and return that; fail
    with ``what`` and the last value after ``timeout(within)`` seconds.

    ``cond`` may be a coroutine function (e.g. a scrape run in a thread): its result is awaited.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(within)
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise _failure(what, within, value)
        await asyncio.sleep(interval)


def eventually_sync(
    cond: Callable[[], T | None], within: float = 5.0, what: str = "the condition", interval: float = 0.05
) -> T:
    """:func:`eventually` for synchronous code (blocking the thread between looks)."""
    deadline = time.monotonic() + timeout(within)
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise _failure(what, within, value)
        time.sleep(interval)
    return value
