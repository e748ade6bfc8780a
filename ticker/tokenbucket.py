"""A token bucket for rate limits, ours and the providers' (pure: the caller passes the monotonic time)."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; starts full.

    :meth:`take` spends a token if there is one (inbound limits: drop what comes too fast);
    :meth:`reserve` spends one even before it is due and says how long to wait for it (outbound
    limits: pace requests, waiters queue in order).
    """

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token at monotonic time ``now``; False when the bucket is empty."""
        self.tokens = min(
            self.burst, self.tokens + (now - self.updated) * self.rate
        )  # per client message: inline
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def hold_off(self, now: float, seconds: float) -> None:
        """No token for the next ``seconds`` (a penalty): the bucket owes what it would refill meanwhile."""
        self._refill(now)
        self.tokens = min(self.tokens, 1.0 - self.rate * seconds)

    def reserve(self, now: float) -> float:
        """Spend one token, due or not; return the seconds to wait before using it (0 when it was there)."""
        self._refill(now)
        self.tokens -= 1.0
        return -self.tokens / self.rate if self.tokens < 0 else 0.0
