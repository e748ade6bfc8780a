"""The normalized quote model shared by feeds, the broker and the hub.

A :class:`Quote` is what every feed adapter emits. Fields a provider does not
supply stay ``None`` and are left out of the wire form (see docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Quote:
    """One normalized market-data update for a symbol.

    ``price`` is the last trade price (or the bid/ask mid-point when a feed has
    quotes but no trade yet); ``ts_ms`` is the feed's own timestamp in epoch
    milliseconds; ``prev_close`` lets the hub derive change and change percent
    when the feed does not send them.
    """

    symbol: str
    price: float
    ts_ms: int
    bid: float | None = None
    ask: float | None = None
    volume: float | None = None
    change: float | None = None
    change_percent: float | None = None
    prev_close: float | None = None

    def wire(self, seq: int) -> dict[str, Any]:
        """Return the Q object of the wire protocol for this quote with sequence ``seq``."""
        d: dict[str, Any] = {"s": self.symbol, "p": self.price}
        if self.bid is not None:
            d["b"] = self.bid
        if self.ask is not None:
            d["a"] = self.ask
        if self.volume is not None:
            d["v"] = self.volume
        change, pct = self.change, self.change_percent
        if change is None and self.prev_close:
            change = round(self.price - self.prev_close, 6)
        if pct is None and change is not None and self.prev_close:
            pct = round(change / self.prev_close * 100.0, 4)
        if change is not None:
            d["c"] = change
        if pct is not None:
            d["cp"] = pct
        d["t"] = self.ts_ms
        d["q"] = seq
        return d
