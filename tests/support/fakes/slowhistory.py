"""A simulated market whose history endpoint answers only when the test lets it: a provider slower than the
node's wait for a symbol's history (``ticker.server.history.WAIT``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from feeds.simulated import SimulatedFeed
from ticker.bars import Bar


class SlowHistoryFeed(SimulatedFeed):
    """:class:`~feeds.simulated.SimulatedFeed` whose ``load_history`` waits for :attr:`gate` (set it to let
    every load through); :attr:`asked_at` holds when each symbol's history was first asked for (monotonic)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.asked_at: dict[str, float] = {}

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        self.asked_at.setdefault(symbol, time.monotonic())
        await self.gate.wait()
        return await super().load_history(symbol, interval, start_ms, end_ms)
