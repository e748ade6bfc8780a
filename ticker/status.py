"""The state of one symbol as a subscriber should understand it (pure): live, or why not.

The node works a symbol's state out of the directory (``pending``), its feed's health (``down``)
and what the feed says of the symbol (``closed``, ``halted``, ``unavailable``); the protocol pushes
it as ``{"type":"status"}`` (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass

LIVE = "live"
PENDING = "pending"
DOWN = "down"
UNAVAILABLE = "unavailable"
CLOSED = "closed"
HALTED = "halted"
STATES = (LIVE, PENDING, DOWN, UNAVAILABLE, CLOSED, HALTED)


@dataclass(frozen=True, slots=True)
class SymbolStatus:
    """A state of :data:`STATES` and, unless ``live``, a reason in words a person understands."""

    state: str
    reason: str = ""

    def to_json(self, symbol: str) -> dict[str, str]:
        """The wire form of one entry: ``{"s","state","reason"}``."""
        return {"s": symbol, "state": self.state, "reason": self.reason}


IS_LIVE = SymbolStatus(LIVE)
