"""Which symbols a streaming feed holds upstream (pure, no I/O).

A symbol is held while clients demand it and for ``linger`` seconds after the last one
leaves (a client that reconnects or flips back finds it still live). A feed may hold at
most ``limit`` symbols (the configured per-connection limit) and at most ``cap`` (a limit
the provider turned out to enforce, learned at run time); demanded symbols keep their
slots in arrival order, lingering ones only use slots nobody demands, and the demanded
symbols that do not fit are reported as rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    """What to hold upstream now (``target``, in priority order) and what does not fit (``rejected``)."""

    target: list[str]
    rejected: list[str]


class DemandTracker:
    """Demand with linger and limits; :meth:`plan` says what to hold at a given time."""

    def __init__(self, limit: int | None = None, linger: float = 5.0) -> None:
        if limit is not None and limit < 0:
            raise ValueError("symbol limit must be >= 0")
        self.limit = limit
        self.cap: int | None = None
        self.linger = max(0.0, linger)
        self._demanded: dict[str, None] = {}
        self._leaving: dict[str, float] = {}

    @property
    def effective_limit(self) -> int | None:
        """The smaller of the configured limit and the learned provider cap (``None``: unlimited)."""
        limits = [x for x in (self.limit, self.cap) if x is not None]
        return min(limits) if limits else None

    def set_demand(self, symbols: Iterable[str], now: float) -> None:
        """Replace the demanded set at time ``now``; symbols that left start to linger."""
        wanted = set(symbols)
        for sym in [s for s in self._demanded if s not in wanted]:
            del self._demanded[sym]
            self._leaving[sym] = now + self.linger
        for sym in sorted(wanted - self._demanded.keys()):
            self._demanded[sym] = None
            self._leaving.pop(sym, None)

    def discard(self, symbol: str) -> None:
        """Stop holding ``symbol`` at once, without a linger (the provider refused it)."""
        self._demanded.pop(symbol, None)
        self._leaving.pop(symbol, None)

    @property
    def demanded(self) -> list[str]:
        """Demanded symbols in arrival order."""
        return list(self._demanded)

    def plan(self, now: float) -> Plan:
        """Expire finished lingers and return what to hold at ``now``."""
        for sym in [s for s, deadline in self._leaving.items() if deadline <= now]:
            del self._leaving[sym]
        demanded = list(self._demanded)
        lim = self.effective_limit
        if lim is None:
            return Plan(demanded + list(self._leaving), [])
        target, rejected = demanded[:lim], demanded[lim:]
        room = lim - len(target)
        lingering = list(self._leaving)
        keep = lingering[len(lingering) - room :] if room > 0 else []
        for sym in lingering:
            if sym not in keep:  # no slot left: stop lingering now
                del self._leaving[sym]
        return Plan(target + keep, rejected)

    def next_deadline(self) -> float | None:
        """The time the next lingering symbol is due to be dropped, or ``None``."""
        return min(self._leaving.values(), default=None)
