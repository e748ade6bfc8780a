"""A simulated market: geometric Brownian motion per symbol with spread, volume and previous close.

Each symbol has its own random stream seeded from ``(seed, symbol)``, so a symbol's price
path is the same for the same seed whatever else is simulated and however ticks are timed.
The configured universe always ticks (so snapshots are ready at once); any other symbol a
client demands joins the market with a generated base price and leaves when demand ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time

from feeds.base import Feed, FeedContext
from feeds.options import FeedOptions
from ticker.quote import Quote
from ticker.symbols import DEFAULT_UNIVERSE

TICK_INTERVAL = 0.005  # seconds between scheduler passes
VOLATILITY = 0.0006  # per-tick relative standard deviation of the price


class _SymbolSim:
    __slots__ = ("acc", "prev_close", "price", "rng", "symbol", "tick_size", "volume")

    def __init__(self, symbol: str, seed: int | None, base: float | None) -> None:
        digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big") if seed is not None else None)
        if base is None:  # an unknown symbol gets a plausible generated price
            base = round(math.exp(self.rng.uniform(math.log(5), math.log(800))), 2)
        self.symbol = symbol
        self.prev_close = base
        self.price = round(base * math.exp(self.rng.gauss(0.0, 0.01)), 2)
        self.volume = self.rng.randrange(100_000, 5_000_000, 100)
        self.acc = self.rng.random()  # stagger first ticks across symbols
        self.tick_size = 0.01 if base >= 1 else 0.0001

    def step(self, ts_ms: int) -> Quote:
        z = self.rng.gauss(0.0, 1.0)
        raw = self.price * math.exp(VOLATILITY * z - 0.5 * VOLATILITY * VOLATILITY)
        price = max(self.tick_size, round(raw / self.tick_size) * self.tick_size)
        self.price = price
        half = max(1, round(price * 0.0001 / self.tick_size)) * self.tick_size
        self.volume += self.rng.randrange(100, 2_000, 100)
        digits = 2 if self.tick_size >= 0.01 else 4
        return Quote(
            symbol=self.symbol,
            price=round(price, digits),
            ts_ms=ts_ms,
            bid=round(price - half, digits),
            ask=round(price + half, digits),
            volume=self.volume,
            prev_close=self.prev_close,
        )


class SimulatedFeed(Feed):
    """Simulated market ticking ``rate`` times per second per symbol."""

    steady = True

    def __init__(
        self,
        symbols: list[str] | None = None,
        rate: float = 2.0,
        seed: int | None = None,
        name: str = "simulated",
    ) -> None:
        super().__init__(name)
        self.rate = rate
        self.seed = seed
        self._universe = list(symbols) if symbols is not None else list(DEFAULT_UNIVERSE)
        self._sims: dict[str, _SymbolSim] = {s: self._make(s) for s in self._universe}
        self._ctx: FeedContext | None = None

    def _make(self, symbol: str) -> _SymbolSim:
        return _SymbolSim(symbol, self.seed, DEFAULT_UNIVERSE.get(symbol))

    def known_symbols(self) -> list[str]:
        return list(self._universe)

    def set_demand(self, symbols: frozenset[str]) -> None:
        super().set_demand(symbols)
        for sym in symbols:
            if sym not in self._sims:
                self._sims[sym] = self._make(sym)
        keep = set(self._universe) | symbols
        for sym in [s for s in self._sims if s not in keep]:
            del self._sims[sym]

    async def start(self, ctx: FeedContext) -> None:
        self._ctx = ctx
        self._mark_up()
        ts_ms = int(time.time() * 1000)
        for sim in self._sims.values():  # an opening quote each, so snapshots are ready at once
            ctx.emit(sim.step(ts_ms))
        self._mark_data()
        self._run_in_background(self._run())

    async def stop(self) -> None:
        await self._stop_background()

    def tick(self, elapsed: float, ts_ms: int) -> int:
        """Advance the market by ``elapsed`` seconds, emitting the ticks that fall due; returns their count."""
        assert self._ctx is not None
        emit = self._ctx.emit
        due = self.rate * elapsed
        n = 0
        for sim in list(self._sims.values()):
            sim.acc += due
            while sim.acc >= 1.0:
                sim.acc -= 1.0
                emit(sim.step(ts_ms))
                n += 1
        if n:
            self._mark_data()
        return n

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            now = time.monotonic()
            # Cap catch-up after a stall so a blocked loop does not produce a burst of stale ticks.
            self.tick(min(now - last, 1.0), int(time.time() * 1000))
            last = now


def create(options: FeedOptions) -> SimulatedFeed:
    """``--feed simulated``: the ``--symbols`` universe at ``--sim-rate`` with ``--seed``."""
    return SimulatedFeed(symbols=options.symbols, rate=options.sim_rate, seed=options.seed)
