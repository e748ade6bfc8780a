"""Day statistics (pure): each symbol's session open, high, low and VWAP, and its previous close.

Feeds supply some of them (docs/feeds.md says which); :class:`DayStats` works out the rest from the
quotes it is given, and fills in the fields a quote lacks as it passes (:meth:`DayStats.apply`). A
feed's own value always wins; the server's are:

- ``open``: the first price of the session, ``high`` and ``low`` the highest and lowest since;
- ``vwap``: the sum of price × size over the sum of sizes, where a quote's size is the growth of its
  cumulative volume ``v`` since the symbol's previous quote (a trade feed's volume is the sum of its
  trade sizes). A quote without volume adds nothing, and a feed without volume gets no ``vwap``. A
  volume that goes down (a provider's new day, a rolling 24-hour window) only becomes the new base.
  It is rounded to 7 significant digits of the session's first price (``228.3716``, ``0.00001234567``):
  every byte of an entry is written to every subscriber;
- ``prev_close``: the last price of the previous session, once the server has seen one.

A price counts as a trade: a quote's ``price`` is the last trade (or, before a feed's first trade, the
bid/ask mid-point). The statistics are of what the server saw: a symbol first seen mid-session gets the
open, high, low and VWAP of its quotes since then.

A session is the day that holds the quote's own timestamp ``t``, by a ``session_start(ts_ms) -> ms``
function (:data:`~ticker.bars.DayStart`, as the ``1d`` bars use): midnight UTC by default
(:func:`~ticker.bars.utc_day_start`), midnight in New York for US equities (:func:`listing_sessions`).
The first quote at or after the session's end starts the next one; a quote older than the symbol's
session (late, from the previous one) passes unchanged and counts for nothing.

Cost per quote (the hot path: every update passes here before the hub): one dict lookup, a comparison
with the session's end, two for high and low, and a few attribute reads and writes, about 0.3 µs on the
benchmark machine. A new session costs two ``session_start`` calls per symbol a day. Memory: about
310 bytes per symbol (measured with tracemalloc), at most :data:`MAX_SYMBOLS` symbols (31 MB).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from math import ceil, floor, isfinite, log10
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ticker.bars import Bar, DayStart, utc_day_start, zone_day_start
from ticker.directory import Directory
from ticker.quote import Quote

log = logging.getLogger("ticker")

#: Picks the session days of a symbol (asked when its first session starts, and at each new one).
SessionOf = Callable[[str], DayStart]

#: Symbols kept at most; past it, the symbol first seen is forgotten (it starts afresh if it comes back).
MAX_SYMBOLS = 100_000
#: Asset types of the directory that trade in their exchange's sessions (crypto and fx trade round the clock).
SESSION_TYPES = frozenset({"stock", "etf", "fund", "index"})
US_EQUITIES_ZONE = "America/New_York"

_NEXT_DAY_MS = 36 * 3_600_000  # from a day's start: past the longest day (25 h), short of the next one's end


class _Day:
    """One symbol's session so far."""

    __slots__ = (
        "base",
        "end",
        "first",
        "high",
        "last",
        "low",
        "open",
        "prev_close",
        "pv",
        "scale",
        "seeded",
        "size",
        "start",
        "vwap",
    )

    def __init__(self, start: int, end: int, price: float, first: int) -> None:
        self.start = start
        self.end = end
        self.first = first  # the timestamp of the session's first quote the server saw
        self.open = self.high = self.low = self.last = price
        self.pv = 0.0  # sum of price × size
        self.size = 0.0  # sum of sizes
        self.vwap: float | None = None
        self.scale = _scale(price)  # the VWAP is rounded to 1 / scale
        self.base: float | None = None  # the cumulative volume of the last quote that had one
        self.prev_close: float | None = None
        self.seeded = False  # the session so far was taken from history (:meth:`DayStats.seed`)


class DayStats:
    """Each symbol's day statistics, from every :class:`~ticker.quote.Quote` given to :meth:`apply`.

    ``session_start``: the session days of every symbol; ``session_of`` (if given) picks them per
    symbol instead. ``max_symbols`` bounds the memory.
    """

    def __init__(
        self,
        session_start: DayStart = utc_day_start,
        *,
        session_of: SessionOf | None = None,
        max_symbols: int = MAX_SYMBOLS,
    ) -> None:
        self._session_of: SessionOf = session_of or (lambda _symbol: session_start)
        self._days: dict[str, _Day] = {}
        self.max_symbols = max(1, max_symbols)

    def __len__(self) -> int:
        return len(self._days)

    def apply(self, quote: Quote) -> Quote:
        """Count ``quote`` and fill in the ``open``, ``high``, ``low``, ``vwap`` and ``prev_close`` it
        lacks (in place: the quote has just been emitted and nothing else holds it yet); return it."""
        day = self._days.get(quote.symbol)
        ts = quote.ts_ms
        if day is None or ts >= day.end:
            day = self._begin(quote, day)
        elif ts < day.start:
            return quote  # late: a quote of the previous session
        p = quote.price
        if p > day.high:
            day.high = p
        if p < day.low:
            day.low = p
        day.last = p
        v = quote.volume
        if v is not None and v >= 0:  # a negative volume is a feed's nonsense: no volume
            base = day.base
            if base is not None and v > base:
                size = v - base
                pv = day.pv = day.pv + p * size
                total = day.size = day.size + size
                scale = day.scale
                x = pv / total * scale + 0.5  # _rounded(pv / total, scale, day.vwap), inlined
                if isfinite(x):
                    day.vwap = floor(x) / scale
            day.base = v
        if quote.open is None:
            quote.open = day.open
        if quote.high is None:
            quote.high = day.high
        if quote.low is None:
            quote.low = day.low
        if quote.vwap is None and day.base is not None:  # a feed without volume gets none (nor a seeded one)
            quote.vwap = day.vwap
        if quote.prev_close is None:
            quote.prev_close = day.prev_close
        return quote

    def forget(self, symbol: str) -> bool:
        """Drop ``symbol``'s session: the next quote starts it afresh. Whether it had one."""
        return self._days.pop(symbol, None) is not None

    def resession(self, symbol: str, now_ms: int) -> None:
        """``symbol``'s session days changed (its directory entry arrived): what the server saw stays the
        session's when the new days put its first quote in the same session as ``now_ms``; otherwise the next
        quote starts the session afresh."""
        day = self._days.get(symbol)
        if day is None:
            return
        start_of = self._session_of(symbol)
        start = start_of(day.first)
        if start != start_of(now_ms):
            del self._days[symbol]
            return
        day.start = start
        day.end = start_of(start + _NEXT_DAY_MS)

    def seed_days(self, symbol: str, days: Sequence[Bar], now_ms: int) -> None:
        """:meth:`seed` from ``symbol``'s newest ``1d`` bars (oldest first): the last is the session's, the one
        before gives the previous close."""
        if days:
            self.seed(symbol, days[-1], days[-2].c if len(days) > 1 else None, now_ms)

    def seed(self, symbol: str, session: Bar, prev_close: float | None, now_ms: int) -> None:
        """Take the session so far from history: ``session`` is the session's ``1d`` bar (from a provider's
        history, or made of its ``1m`` bars), ``prev_close`` the previous session's close.

        Its open wins; its high and low widen what quotes showed; the VWAP is seeded with the bar's
        typical price ``(h + l + c) / 3`` over its volume (an approximation: the bars do not give each
        trade). Nothing happens when the bar is not of the session holding ``now_ms``, or when the
        symbol's session so far is already seeded.
        """
        start_of = self._session_of(symbol)
        start = start_of(now_ms)
        if session.t != start:
            return
        day = self._days.get(symbol)
        if day is None or day.start != start:
            if day is None and len(self._days) >= self.max_symbols:
                del self._days[next(iter(self._days))]
            day = self._days[symbol] = _Day(start, start_of(start + _NEXT_DAY_MS), session.o, start)
            day.last = session.c
        elif day.seeded:
            return
        day.seeded = True
        day.open = session.o
        if session.h > day.high:
            day.high = session.h
        if session.l < day.low:
            day.low = session.l
        if prev_close is not None:
            day.prev_close = prev_close
        if session.v > 0:
            day.pv += (session.h + session.l + session.c) / 3.0 * session.v
            day.size += session.v
            day.vwap = _rounded(day.pv / day.size, day.scale, day.vwap)

    def _begin(self, quote: Quote, previous: _Day | None) -> _Day:
        """Start the session holding ``quote`` for its symbol, after ``previous`` (None: the first one)."""
        symbol = quote.symbol
        start_of = self._session_of(symbol)
        start = start_of(quote.ts_ms)
        day = _Day(start, start_of(start + _NEXT_DAY_MS), quote.price, quote.ts_ms)
        if previous is not None:
            day.prev_close = previous.last
            day.base = previous.base  # a volume that runs on over days: the growth is still this session's
        elif len(self._days) >= self.max_symbols:
            del self._days[next(iter(self._days))]
        self._days[symbol] = day
        return day


def _rounded(value: float, scale: float, fallback: float | None) -> float | None:
    """``value`` rounded half up to ``1 / scale``; ``fallback`` past a float's range (absurd but finite
    prices and volumes from a broken feed: the sums overflow)."""
    x = value * scale + 0.5
    return floor(x) / scale if isfinite(x) else fallback


def _scale(price: float) -> float:
    """``10 ** decimals`` for 7 significant digits of ``price`` (at most 12 decimals, at least none)."""
    if not price or price != price:
        return 1e6
    return 10.0 ** min(12, max(0, 7 - ceil(log10(abs(price)))))


def new_york_day_start() -> DayStart | None:
    """Midnight in New York (US equities), or None where the system has no time zone database."""
    try:
        return zone_day_start(ZoneInfo(US_EQUITIES_ZONE))
    except ZoneInfoNotFoundError:
        return None


def listing_sessions(
    directory: Callable[[], Directory], listed: DayStart | None, default: DayStart = utc_day_start
) -> SessionOf:
    """A ``session_of`` by the directory: ``listed`` (New York midnight) for a symbol listed as a US-dollar
    stock, ETF, fund or index; ``default`` (midnight UTC) for the rest (crypto, fx, not listed yet), and
    for all when ``listed`` is None. ``directory`` is read when a symbol's session starts."""

    def session_of(symbol: str) -> DayStart:
        if listed is None:
            return default
        info = directory().get(symbol)
        if info is not None and info.type in SESSION_TYPES and info.currency == "USD":
            return listed
        return default

    return session_of


def listed_day_stats(directory: Callable[[], Directory]) -> DayStats:
    """The :class:`DayStats` of a node or publisher: New York days for the US equities of ``directory``,
    UTC days for the rest (and for all, with a warning, where there is no time zone database)."""
    ny = new_york_day_start()
    if ny is None:
        log.warning(
            "no time zone database (%s): day statistics of US equities start at midnight UTC; "
            "install the tzdata package",
            US_EQUITIES_ZONE,
        )
    return DayStats(session_of=listing_sessions(directory, ny))
