"""Pacing helpers for feed adapters: a sliding-window rate limiter and a log throttle."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most ``limit`` acquisitions in any ``window`` seconds (a sliding window, no bursts beyond it)."""

    def __init__(self, limit: int, window: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("rate limiter needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()

    def delay(self) -> float:
        """Seconds to wait before the next acquisition would be allowed (0 if allowed now)."""
        now = self._clock()
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    async def acquire(self) -> None:
        """Wait until one more send fits in the window, then count it."""
        while (wait := self.delay()) > 0:  # noqa: ASYNC110 - waiting for time to pass, not for an event
            await asyncio.sleep(wait)
        self._times.append(self._clock())


class LogThrottle:
    """Logs each kind of problem at most once per ``interval`` seconds, with the count it held back."""

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, kind: str, message: str) -> bool:
        """Log ``message`` under ``kind`` unless one was logged recently; returns whether it was logged."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        held = self._held.pop(kind, 0)
        self._last[kind] = now
        suffix = f" ({held} more like it since the last report)" if held else ""
        self._logger.log(level, "%s%s", message, suffix)
        return True
