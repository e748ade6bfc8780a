"""Exponential backoff with full jitter (the AWS Architecture Blog's "full jitter" variant)."""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive retries: uniform in ``[0, min(cap, base * 2**attempt)]``; :meth:`reset` after success."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Return the delay before the next retry and count the attempt."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        """Start over after a successful connection."""
        self.attempt = 0
