"""Rate limiting for feeds: waiting for a request token, ``Retry-After`` parsing, a log that speaks now and then."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from ticker.tokenbucket import TokenBucket

MAX_RETRY_AFTER = 600.0  # seconds; a longer Retry-After is clamped (a typo upstream must not stall us)


async def wait_for_token(bucket: TokenBucket, clock: Callable[[], float] = time.monotonic) -> None:
    """Take a token from ``bucket``, sleeping until it is due (reserved at once, so waiters queue fairly)."""
    wait = bucket.reserve(clock())
    if wait > 0:
        await asyncio.sleep(wait)


class ThrottledLog:
    """Logs each kind of problem at most once per ``interval`` seconds, with the count of suppressed ones."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        self.log(logging.WARNING, kind, msg, *args)

    def log(
        self, level: int, kind: str, msg: str, *args: object, exc_info: BaseException | None = None
    ) -> None:
        """Log ``msg % args`` at ``level`` unless a ``kind`` problem was logged within the interval;
        ``exc_info``: an exception whose traceback goes with the line."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        n = self._suppressed.pop(kind, 0)
        suffix = f" ({n} similar suppressed)" if n else ""
        self._logger.log(level, msg + suffix, *args, exc_info=exc_info)


def retry_after(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or an HTTP date) into seconds, or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            secs = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if secs != secs:  # NaN
        return None
    return min(max(secs, 0.0), MAX_RETRY_AFTER)
