"""A simulated market: geometric Brownian motion per symbol with spread, volume and previous close.

Each symbol has its own random stream seeded from ``(seed, symbol)``, so a symbol's price
path is the same for the same seed whatever else is simulated and however ticks are timed.
The market's directory is the bundled US directory (:mod:`feeds.listings`) and the configured
universe (``--symbols``). The universe always ticks (so snapshots are ready at once); any other
symbol of the directory a client demands joins the market and leaves when demand ends; a symbol
outside the directory is never invented, unless :attr:`SimulatedFeed.invent` is set (the server's
``--unknown-symbols allow``): then any demanded symbol gets a generated market (never in the directory).
Symbols join at most :data:`JOIN_PER_PASS` at a time: a demand of thousands at once gets its markets made
and its first quotes over a few scheduler passes, not in one that would stall the server's loop.

Every quote carries the symbol's previous close (``pc``; change and change percent are relative to
it): at first its reference price (the listing's, or one generated from the seed), from which the
first price gaps by a seeded draw; then the last price of the previous session. With
``session="us-equities"`` (``--sim-session``) the market trades only in US regular hours
(:mod:`feeds.sessions`, on an injectable wall clock): while closed it emits no ticks, gives each
symbol one quote stamped at the last close, says ``closed`` of every symbol, and is not *steady*
(silence is no fault, as for a provider); at the open each symbol gets an opening quote, its previous
close the last price of the day before. With ``session="always"`` a session is a day: at midnight in
New York (UTC without a time zone database: the server's days of US equities, :mod:`ticker.daystats`)
the last price becomes the previous close. The day's open, high, low and VWAP are the server's to
work out from the quotes. For tests of a whole server process, ``TICKER_SIM_NOW`` (epoch seconds or
ISO 8601) starts the market's clock at that instant, moving on in real time from there (:func:`create`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from itertools import islice

from feeds.base import Feed, FeedContext
from feeds.errors import FeedConfigError
from feeds.listings import us_listings
from feeds.options import SIM_SESSIONS, FeedOptions
from feeds.sessions import closed_reason, last_close, new_york, next_close, next_open, us_equities_open
from feeds.simhistory import (
    Calendar,
    HistoryAnchor,
    SimulatedHistory,
    minute_sigma,
    round_the_clock,
    us_equities,
)
from ticker.bars import DAY, HISTORY, Bar, utc_day_start
from ticker.daystats import new_york_day_start
from ticker.directory import SymbolInfo
from ticker.hub import IDLE_SECONDS, IDLE_SWEEP_SECONDS
from ticker.quote import Quote
from ticker.status import CLOSED, SymbolStatus
from ticker.symbols import DEFAULT_UNIVERSE
from ticker.tables import compact_all

TICK_INTERVAL = 0.005  # seconds between scheduler passes
SIM_NOW_ENV = "TICKER_SIM_NOW"  # a test aid: the simulated market's wall clock starts at this instant
VOLATILITY = 0.0006  # per-tick relative standard deviation of the price
TICK_VOLUME = 1_000  # shares a tick on average
DORMANT_MAX = (
    200  # markets of symbols nobody demands any more, kept to come back as they left (about 3 KB each)
)
#: Seconds a dormant market is kept: as long as the hub may keep its last value (``IDLE_SECONDS`` after the
#: sweep that first saw it idle, found by the next sweep), so that a symbol demanded again meanwhile goes on
#: from the price it showed; after a burst of demand, what it made goes within a minute.
DORMANT_SECONDS = IDLE_SECONDS + 2 * IDLE_SWEEP_SECONDS
HISTORY_CACHE = 8  # symbols' generated histories kept (a backfill asks each interval in turn)
JOIN_PER_PASS = 100  # markets made, and first quotes emitted, per scheduler pass (a burst is spread)
_DRIFT = 0.5 * VOLATILITY * VOLATILITY  # Itô's correction: a tick leaves the expected price as it was
_TWOPI = 2.0 * math.pi  # as random.gauss has it
_exp, _log, _sqrt, _cos, _sin = math.exp, math.log, math.sqrt, math.cos, math.sin


class _SymbolSim:
    __slots__ = (
        "acc",
        "anchor",
        "prev_close",
        "price",
        "rng",
        "scale",
        "spare",
        "symbol",
        "tick_size",
        "volume",
    )

    def __init__(self, symbol: str, seed: int | None, base: float | None, born_ms: int = 0) -> None:
        digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big") if seed is not None else None)
        if base is None:  # an unknown symbol gets a plausible generated price
            base = round(math.exp(self.rng.uniform(math.log(5), math.log(800))), 2)
        self.symbol = symbol
        self.prev_close = base
        z, spare = _normal_pair(self.rng)
        self.spare: float | None = spare  # the second normal of the last pair drawn, for the next step
        self.price = round(base * math.exp(0.0 + z * 0.01), 2)  # rng.gauss(0.0, 0.01)
        self.volume = self.rng.randrange(100_000, 5_000_000, 100)
        self.acc = self.rng.random()  # stagger first ticks across symbols
        self.tick_size = 0.01 if base >= 1 else 0.0001
        self.scale = 100 if base >= 1 else 10_000  # ticks per unit: prices are whole ticks over it
        #: where this symbol's generated history ends (:mod:`feeds.simhistory`): its start
        self.anchor = HistoryAnchor(
            born_ms - born_ms % 60_000, self.price, self.prev_close, self.volume, self.tick_size
        )

    def step(self, ts_ms: int) -> Quote:
        """The next quote, at ``ts_ms``: a move of the price, on the tick grid, and a trade's volume.

        The hot path of the simulated market. The numbers are those of ``rng.gauss(0.0, 1.0)`` and
        ``rng.randrange(100, 2_000, 100)`` with ``round(x, digits)`` of the tick grid, inlined: ``n / scale`` is
        the float nearest ``n`` ticks, as ``round(n * tick_size, digits)`` is (tests/unit/test_simulated.py
        checks the two agree)."""
        z = self.spare
        if z is None:
            z, self.spare = _normal_pair(self.rng)
        else:
            self.spare = None
        tick = self.tick_size
        scale = self.scale
        # on the tick grid, as shown: the previous close is a price that was quoted
        n = round(self.price * _exp(VOLATILITY * z - _DRIFT) / tick)
        if n < 1:
            n = 1
        price = self.price = n / scale
        x = price * 0.0001 / tick
        half = 1 if x < 1.5 else round(x)  # the half spread in ticks: at least one
        bits = self.rng.getrandbits
        r = bits(5)
        while r >= 19:  # randrange(100, 2_000, 100): one of 19 sizes, TICK_VOLUME on average
            r = bits(5)
        volume = self.volume = self.volume + 100 + 100 * r
        return Quote(
            self.symbol,
            price,
            ts_ms,
            (n - half) / scale,
            (n + half) / scale,
            volume,
            None,
            None,
            self.prev_close,
        )


def _normal_pair(rng: random.Random) -> tuple[float, float]:
    """Two standard normal draws from two uniforms of ``rng``: those :meth:`random.Random.gauss` gives (the
    second one is what its next call returns)."""
    rand = rng.random
    angle = rand() * _TWOPI
    radius = _sqrt(-2.0 * _log(1.0 - rand()))
    return _cos(angle) * radius, _sin(angle) * radius


class SimulatedFeed(Feed):
    """Simulated market ticking ``rate`` times per second per symbol, in ``session`` hours by ``clock``.

    ``invent``: a demanded symbol outside the directory gets a generated market too (it never joins the
    directory, so nobody is offered it); the server sets it for ``--unknown-symbols allow``.
    """

    steady = True

    def __init__(
        self,
        symbols: list[str] | None = None,
        rate: float = 2.0,
        seed: int | None = None,
        name: str = "simulated",
        *,
        session: str = "always",
        clock: Callable[[], float] = time.time,
        invent: bool = False,
    ) -> None:
        super().__init__(name)
        if session not in SIM_SESSIONS:
            raise ValueError(f"unknown market session {session!r} (known: {', '.join(SIM_SESSIONS)})")
        self.rate = rate
        self.seed = seed
        self.session = session
        self.invent = invent
        self._clock = clock
        self._universe = list(symbols) if symbols is not None else list(DEFAULT_UNIVERSE)
        listings = us_listings()
        self._directory: dict[str, SymbolInfo] = {sym: listing.info for sym, listing in listings.items()}
        for sym in self._universe:
            self._directory.setdefault(sym, SymbolInfo(sym, sym, "SIM", "stock", "USD"))
        self._prices = {sym: listing.price for sym, listing in listings.items() if listing.price}
        self._day_start = new_york_day_start() or utc_day_start  # the days of session "always"
        calendar: Calendar = us_equities if session == "us-equities" else round_the_clock(self._day_start)
        #: the sessions of a history ending at a minute (the universe's start is the same for all its symbols)
        self._sessions = functools.lru_cache(maxsize=4)(lambda ms: calendar(ms, HISTORY[DAY]))
        self._salt = seed if seed is not None else random.getrandbits(64)  # history of an unseeded market
        self._histories: dict[tuple[str, HistoryAnchor], SimulatedHistory] = {}  # most recently asked last
        self._sims: dict[str, _SymbolSim] = {s: self._make(s) for s in self._universe}
        self._dormant: dict[str, _SymbolSim] = {}  # markets of symbols left, oldest first (DORMANT_MAX)
        self._left: dict[str, float] = {}  # when each dormant market was left (the market's clock)
        self._ctx: FeedContext | None = None
        # the session: open or not until the wall-clock time _until; _ticking follows it in tick()
        self._open = True
        self._until = math.inf if session == "always" else -math.inf
        self._closed = SymbolStatus(CLOSED)
        self._ticking = True
        self._unquoted: dict[str, None] = {}  # owed a quote at once (at the last close while closed)
        self._unmade: dict[str, None] = {}  # demanded, their markets not made yet (JOIN_PER_PASS a pass)
        self._day_end_ms = -math.inf  # when the day of session "always" ends (epoch ms of the quotes)
        self._sweep_at = 0.0  # next look at dormant markets and tables (the clock's); 0: none due

    def _make(self, symbol: str) -> _SymbolSim:
        base = DEFAULT_UNIVERSE.get(symbol) or self._prices.get(symbol)
        born = int(self._clock() * 1000)
        sim = _SymbolSim(symbol, self.seed, base, born)
        # The session's volume so far, at the pace the live market trades (TICK_VOLUME a tick, ``rate`` ticks
        # a second): the generated minutes of the history then look like the live ones on the chart.
        # Whole minutes to the anchor's: a market made again within the same minute has the same history.
        session = self._sessions(sim.anchor.ms)[0]
        minutes = max(0, min(sim.anchor.ms, session.close_ms) - session.open_ms) // 60_000
        pace = random.Random(f"{self.seed}:{symbol}:volume").uniform(0.7, 1.3)
        sim.volume = max(100, int(round(TICK_VOLUME * self.rate * 60 * minutes * pace, -2)))
        sim.anchor = replace(sim.anchor, volume=sim.volume)
        return sim

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """The session's generated bars up to where ``symbol``'s live simulation started (or would start
        now), deterministic from ``--seed`` (:mod:`feeds.simhistory`); None for ``1s`` and for a symbol
        this market does not make."""
        sim = self._sims.get(symbol) or self._dormant.get(symbol)
        if sim is None and symbol in self._unmade:  # demanded, its market not made yet: made now
            del self._unmade[symbol]
            sim = self._sims[symbol] = self._make(symbol)
            self._unquoted[symbol] = None
        if sim is None:
            if not (self.invent or symbol in self._directory):
                return None
            # the market it gets when demanded (kept for then: the history shown now stays its history)
            sim = self._make(symbol)
            self._rest(symbol, sim)
        return self.history_of(symbol, sim.anchor).bars(interval, start_ms, end_ms)

    def history_of(self, symbol: str, anchor: HistoryAnchor) -> SimulatedHistory:
        """``symbol``'s history ending at ``anchor``, kept for the next few asks (each interval of a backfill)."""
        key = (symbol, anchor)
        cache = self._histories
        history = cache.pop(key, None)
        if history is None:
            salt = f"{self._salt}:{symbol}"
            sessions = self._sessions(anchor.ms)
            history = SimulatedHistory(salt, anchor, sessions, minute_sigma(self.rate, VOLATILITY))
            if len(cache) >= HISTORY_CACHE:
                del cache[next(iter(cache))]
        cache[key] = history
        return history

    def known_symbols(self) -> list[str]:
        return list(self._universe)

    def carried_symbols(self) -> list[str]:
        return list(self._universe)  # it always ticks

    async def load_reference(self) -> list[SymbolInfo]:
        """The bundled US directory and the ``--symbols`` universe (a symbol not in it is named after itself)."""
        return list(self._directory.values())

    def symbol_state(self, symbol: str) -> SymbolStatus | None:
        return None if self._market_open() else self._closed

    def set_demand(self, symbols: frozenset[str]) -> None:
        super().set_demand(symbols)
        for sym in [s for s in self._unmade if s not in symbols]:
            del self._unmade[sym]
        for sym in symbols:
            if sym not in self._sims and (self.invent or sym in self._directory):
                # A symbol demanded again gets its market back as it left it (the same history, the same
                # price): its past does not change because nobody watched it for a while.
                dormant = self._wake(sym)
                if dormant is not None:
                    self._sims[sym] = dormant
                    self._unquoted[sym] = None
                else:
                    self._unmade[sym] = None
        self._make_some()
        keep = set(self._universe) | symbols
        for sym in [s for s in self._sims if s not in keep]:
            self._rest(sym, self._sims.pop(sym))
            self._unquoted.pop(sym, None)

    def _rest(self, symbol: str, sim: _SymbolSim) -> None:
        """Keep ``symbol``'s market dormant: the most recently left :data:`DORMANT_MAX`, for
        :data:`DORMANT_SECONDS`."""
        self._wake(symbol)  # (the newest left, last)
        self._dormant[symbol] = sim
        self._left[symbol] = self._clock()
        while len(self._dormant) > DORMANT_MAX:  # the least recently left go for good
            oldest = next(iter(self._dormant))
            del self._dormant[oldest], self._left[oldest]

    def _wake(self, symbol: str) -> _SymbolSim | None:
        """``symbol``'s dormant market, taken out of the dormant ones; None when it has none."""
        self._left.pop(symbol, None)
        return self._dormant.pop(symbol, None)

    def _sweep(self) -> None:
        """Once a second while markets are dormant, and once after: let those dormant for
        :data:`DORMANT_SECONDS` go, and give back the tables a burst of demand sized."""
        now = self._clock()
        if now < self._sweep_at:
            return
        left = self._left
        limit = now - DORMANT_SECONDS
        while left:
            sym = next(iter(left))
            if left[sym] > limit:
                break
            del left[sym]
            self._dormant.pop(sym, None)
        compact_all(self._sims, self._dormant, left, self._unquoted, self._unmade)
        self._sweep_at = now + 1.0 if left else 0.0

    def _make_some(self) -> None:
        """Make the markets of the next :data:`JOIN_PER_PASS` demanded symbols that have none yet (a read of
        one's history meanwhile made it already: it is the one taken)."""
        unmade = self._unmade
        for _ in range(min(JOIN_PER_PASS, len(unmade))):
            sym = next(iter(unmade))
            del unmade[sym]
            dormant = self._wake(sym)
            self._sims[sym] = dormant if dormant is not None else self._make(sym)
            self._unquoted[sym] = None

    def _market_open(self) -> bool:
        """Whether the session is open now; works the session out again when it may have changed."""
        now = self._clock()
        if now >= self._until:
            at = datetime.fromtimestamp(now, UTC)
            self._open = us_equities_open(at)
            change = next_close(at) if self._open else next_open(at)
            tomorrow = at.astimezone(new_york()).date() + timedelta(days=1)
            midnight = datetime.combine(tomorrow, dt_time(0), new_york())
            # also at New York midnight, so the words name the day's holiday
            self._until = min(change.timestamp(), midnight.timestamp())
            self._closed = SymbolStatus(CLOSED, "" if self._open else closed_reason(at))
        return self._open

    async def start(self, ctx: FeedContext) -> None:
        self._ctx = ctx
        self._mark_up()
        self._ticking = self.steady = self._market_open()
        self._unquoted = dict.fromkeys(self._sims)
        while self._unquoted:  # an opening (or closing) quote each: snapshots are ready
            self.tick(0.0, int(self._clock() * 1000))
        self._run_in_background(self._run())

    async def stop(self) -> None:
        await self._stop_background()

    def tick(self, elapsed: float, ts_ms: int) -> int:
        """Advance the market by ``elapsed`` seconds, emitting the quotes that fall due; returns their count.

        In session, each symbol that has not had a quote yet gets one at once (the first
        :data:`JOIN_PER_PASS` of them this pass, the next ones the next), then ``rate`` per second; out of
        session, only symbols without a quote get one, stamped at the last close."""
        assert self._ctx is not None
        emit_many = self._ctx.emit_many
        passed: list[Quote] = []  # the pass's quotes, emitted at once where the context takes several
        emit = self._ctx.emit if emit_many is None else passed.append
        if ts_ms >= self._day_end_ms and self.session == "always":
            self._new_day(ts_ms)
        is_open = self._market_open()
        if is_open != self._ticking:  # the session opened or closed
            self._ticking = self.steady = is_open
            if is_open:  # the open: yesterday's last price is the previous close, and everyone quotes
                for sim in self._sims.values():
                    sim.prev_close = sim.price
                self._unquoted = dict.fromkeys(self._sims)
        if self._unmade:
            self._make_some()
        if self._left or self._sweep_at:
            self._sweep()
        n = 0
        unquoted = self._unquoted
        if unquoted:
            at_ms = (
                ts_ms
                if is_open
                else int(last_close(datetime.fromtimestamp(self._clock(), UTC)).timestamp() * 1000)
            )
            for sym in list(islice(unquoted, JOIN_PER_PASS)):
                del unquoted[sym]
                emit(self._sims[sym].step(at_ms))
                n += 1
        if is_open:
            due = self.rate * elapsed
            for sim in list(self._sims.values()):
                acc = sim.acc = sim.acc + due
                while acc >= 1.0:
                    acc = sim.acc = acc - 1.0
                    emit(sim.step(ts_ms))
                    n += 1
        if n:
            if passed:
                assert emit_many is not None
                emit_many(passed)
            self._mark_data()
        return n

    def _new_day(self, ts_ms: int) -> None:
        """Session ``always``: the day holding ``ts_ms`` begins; the last price of any before is the previous close."""
        if self._day_end_ms != -math.inf:
            for sim in self._sims.values():
                sim.prev_close = sim.price
        start = self._day_start(ts_ms)
        self._day_end_ms = self._day_start(start + 36 * 3_600_000)  # past the longest day, within the next

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            now = time.monotonic()
            # Cap catch-up after a stall so a blocked loop does not produce a burst of stale ticks.
            self.tick(min(now - last, 1.0), int(self._clock() * 1000))
            last = now


def parse_instant(text: str) -> float:
    """Epoch seconds of ``text``: epoch seconds, or ISO 8601 (``2025-06-14T12:00:00-04:00``; UTC without an
    offset). ValueError otherwise."""
    text = text.strip()
    try:
        secs = float(text)
    except ValueError:
        at = datetime.fromisoformat(text)
        secs = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(secs):
        raise ValueError(f"not a time: {text!r}")
    datetime.fromtimestamp(secs, UTC)  # a time the calendar can show, or OverflowError/OSError now
    return secs


def running_from(start: float, wall: Callable[[], float] = time.time) -> Callable[[], float]:
    """A wall clock that reads ``start`` now and moves on in real time from there."""
    offset = start - wall()
    return lambda: wall() + offset


def create(options: FeedOptions) -> SimulatedFeed:
    """``--feed simulated``: the ``--symbols`` universe at ``--sim-rate`` with ``--seed``, in ``--sim-session`` hours.

    ``TICKER_SIM_NOW`` (a test aid) sets the market's clock: it starts at that instant and runs on."""
    if options.sim_session != "always":
        new_york()  # no time zone database: an error now, at startup
    clock: Callable[[], float] = time.time
    fixed = os.environ.get(SIM_NOW_ENV, "").strip()
    if fixed:
        try:
            clock = running_from(parse_instant(fixed))
        except (ValueError, OverflowError, OSError):
            raise FeedConfigError(
                f"{SIM_NOW_ENV} must be epoch seconds or an ISO 8601 time, not {fixed[:40]!r}"
            ) from None
    return SimulatedFeed(
        symbols=options.symbols,
        rate=options.sim_rate,
        seed=options.seed,
        session=options.sim_session,
        clock=clock,
    )
