"""Rate limiting for feeds: a token bucket for requests, ``Retry-After`` parsing, a log that speaks now and then."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 600.0  # seconds; a longer Retry-After is clamped (a typo upstream must not stall us)


class TokenBucket:
    """At most ``rate`` acquisitions per second on average and ``capacity`` at once (starts full)."""

    def __init__(
        self, rate: float, capacity: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self) -> float:
        """Seconds until one token is available (0 when one is available now)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    def try_take(self) -> bool:
        """Take one token if available now."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def acquire(self) -> None:
        """Take a token, waiting until it is due (the token is reserved, so waiters queue fairly)."""
        self._refill()
        self._tokens -= 1.0
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


class ThrottledLog:
    """Logs each kind of problem at most once per ``interval`` seconds, with the count of suppressed ones."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        self.log(logging.WARNING, kind, msg, *args)

    def log(self, level: int, kind: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` at ``level`` unless a ``kind`` problem was logged within the interval."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        n = self._suppressed.pop(kind, 0)
        suffix = f" ({n} similar suppressed)" if n else ""
        self._logger.log(level, msg + suffix, *args)


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
