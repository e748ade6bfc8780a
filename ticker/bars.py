"""OHLCV bars (pure): trades aggregated into bars, provider bars that win, a bounded history per series.

Intervals are ``1s``, ``1m``, ``5m`` and ``1h``, aligned to the epoch (a bar starts at a multiple of its
length), and ``1d``, aligned to the session day by a ``day_start(ts_ms) -> ms`` function: midnight UTC
(:func:`utc_day_start`, 24/7 crypto) or midnight in a zone (:func:`zone_day_start`, America/New_York for
US equities). A bar's ``t`` is its start in epoch ms; its wire form is ``{"t","o","h","l","c","v"}``.

Rules of a :class:`BarSeries` (one symbol, one interval):

- **Trades** (:meth:`BarSeries.add_trade`) open a bar only in an interval where one happened: a quiet
  interval has no bar (nothing is invented). A trade of the current bar updates it (h, l, c, v); a later
  one opens the next bar. A *late* trade (before the current bar) updates its own bar's high, low and
  volume, never its open or close (its place among that bar's trades is unknown), or opens that bar in
  place if its interval had none; a trade older than a full history is dropped (``None``).
- **Provider bars** (:meth:`BarSeries.apply_bar`: Polygon per-minute aggregates, Alpaca bars and updated
  bars, Binance klines) replace the bar of the same start, late and repeated ones included: the
  provider's last word wins. A ``final`` provider bar is authoritative: trades of its interval are ignored
  from then on (the provider counted them); a non-final one (a provider's bar still filling) keeps being
  updated by trades until the provider's next word.
- **History** (:meth:`BarSeries.backfill`) from a provider's history endpoint merges by start, sorted,
  without duplicates, the provider winning on an equal start; its bars are authoritative once their
  interval has ended. A bar still filling (its interval not over) keeps what trades counted here since
  the provider's snapshot: the provider's open, the wider high and low, this side's close, the larger volume.

Quotes (:meth:`SymbolBars.on_quote`): a :class:`~ticker.quote.Quote` has no trade flag, only ``price``
(the last trade, or the bid/ask mid-point before the first trade) and ``volume`` (the cumulative session
volume). A quote counts as a trade when its volume grew (the growth is the trade's size) or its price
changed (size 0; a feed without volume gives bars with ``v`` 0); a bid/ask-only update changes neither
and moves no bar, and so does a repeated trade at the same price on a feed without volume. Volume going
down is a new session: the new cumulative volume is the trade's size. A feed whose volume is a rolling
24-hour window (Binance ``24hrTicker``, Coinbase ``volume_24h``) passes ``rolling_volume=True``: a drop
then means nothing and the size is the growth only (an approximation: a feed with trade sizes should call
:meth:`SymbolBars.add_trade` instead).

Bounds (:data:`HISTORY`, bars per series): 900 × 1s (15 min), 2,880 × 1m (the current and the previous
24-hour session), 576 × 5m (two days), 336 × 1h (two weeks), 366 × 1d. A bar costs at most 240 bytes
(measured with tracemalloc in tests/unit/test_bars.py: the object, its six numbers and its deque slot),
so a symbol's five full series hold at most 5,058 bars, about 1.2 MB, of which 1m is 0.7 MB.

Bars are mutable and owned by their series: encode one (:meth:`Bar.encode`) when it is read, do not
keep it. ``orjson.dumps`` takes a ``Bar``, or a list of them, as is.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from itertools import islice
from operator import attrgetter
from typing import Any

import orjson

from ticker.errors import BAD_REQUEST, ProtocolError
from ticker.quote import Quote

_dumps = orjson.dumps

#: Every interval, by its name, with its length in ms (``1d`` is nominal: days follow ``day_start``).
INTERVALS: dict[str, int] = {"1s": 1_000, "1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}
DAY = "1d"
#: Bars kept per series (see the module docstring for the memory they take).
HISTORY: dict[str, int] = {"1s": 900, "1m": 2_880, "5m": 576, "1h": 336, "1d": 366}
#: ``limit`` of a history request: its default and its maximum (the issue's REST contract).
DEFAULT_LIMIT = 500
MAX_LIMIT = 5_000

#: The start of the session day holding an instant, both in epoch ms.
DayStart = Callable[[int], int]

#: How far back a symbol's history is loaded, in days: ``1m`` and ``5m`` from the session start four days
#: back (the current and the previous session, across a weekend or a holiday), ``1h`` two weeks, ``1d`` a
#: year; ``1s`` the last 15 minutes (only a broker keeps seconds: providers have none).
HISTORY_SPANS: dict[str, int] = {"1s": 0, "1m": 4, "5m": 4, "1h": 14, "1d": 366}


def history_start(interval: str, now_ms: int, day_start: DayStart) -> int:
    """Where the history of ``interval`` loaded at ``now_ms`` starts (:data:`HISTORY_SPANS`)."""
    if interval == "1s":
        return now_ms - HISTORY["1s"] * 1000
    start = now_ms - HISTORY_SPANS[interval] * 86_400_000
    return day_start(start) if interval in ("1m", "5m") else start


_DAY_MS = 86_400_000
_NEXT_DAY_MS = 36 * 3_600_000  # past the longest day (25 h), short of the end of the next (>= 23 h later)
_start_of = attrgetter("t")
_INF = float("inf")


class InvalidInterval(ProtocolError, ValueError):
    """An interval name that is not one of :data:`INTERVALS` (``bad_request``)."""

    def __init__(self, text: object) -> None:
        shown = repr(text[:20]) if isinstance(text, str) else type(text).__name__
        super().__init__(BAD_REQUEST, f"invalid interval {shown}: expected one of {', '.join(INTERVALS)}")
        self.text = text


def parse_interval(text: object) -> str:
    """``text`` if it names an interval (exactly: ``1M`` is not ``1m``); else raise :class:`InvalidInterval`."""
    if isinstance(text, str) and text in INTERVALS:
        return text
    raise InvalidInterval(text)


def utc_day_start(ts_ms: int) -> int:
    """Midnight UTC of the day holding ``ts_ms``."""
    return ts_ms - ts_ms % _DAY_MS


def zone_day_start(zone: tzinfo) -> DayStart:
    """A ``day_start`` giving local midnight in ``zone`` (23- and 25-hour days included); midnight UTC for an
    instant outside the years 1-9999, which a datetime cannot hold."""

    def day_start(ts_ms: int) -> int:
        try:
            day = datetime.fromtimestamp(ts_ms // 1000, zone).date()
            return int(datetime.combine(day, time(), zone).timestamp()) * 1000
        except (OverflowError, OSError, ValueError):  # past the years a datetime holds (a feed's bad clock)
            return utc_day_start(ts_ms)

    return day_start


@dataclass(slots=True)
class Bar:
    """One interval's open, high, low, close and volume; ``t`` is its start in epoch ms."""

    t: int
    o: float
    h: float
    l: float  # noqa: E741 (the wire name)
    c: float
    v: float = 0

    def encode(self) -> bytes:
        """The wire form ``{"t","o","h","l","c","v"}`` as compact JSON bytes."""
        return _dumps(self)

    def to_json(self) -> dict[str, Any]:
        """The wire form as a dict."""
        return {"t": self.t, "o": self.o, "h": self.h, "l": self.l, "c": self.c, "v": self.v}


_NO_BAR = Bar(0, 0.0, 0.0, 0.0, 0.0)  # the current bar of an empty series: never in range, never changed


class _Span:
    """When a trade updates the current bar of every series of a :class:`SymbolBars` alike: in ``[start, end)``,
    where each series' current bar holds it and none is a provider's final word; ``bars`` are those bars. A
    series whose current bar changes (or becomes final) empties it (``end`` 0) until the next quote works it out
    again (:meth:`SymbolBars.on_quote`, the fast path: the same result as each series' ``add_trade``)."""

    __slots__ = ("bars", "end", "start")

    def __init__(self) -> None:
        self.start = self.end = 0
        self.bars: tuple[Bar, ...] = ()


class BarSeries:
    """The bars of one symbol at one interval, oldest first, at most ``maxlen`` (see the module docstring)."""

    __slots__ = (
        "_bars",
        "_cur",
        "_cur_final",
        "_daily",
        "_day_start",
        "_end",
        "_final",
        "_ms",
        "_span",
        "_start",
        "interval",
        "maxlen",
    )

    def __init__(self, interval: str, maxlen: int | None = None, day_start: DayStart = utc_day_start) -> None:
        self.interval = parse_interval(interval)
        self.maxlen = HISTORY[interval] if maxlen is None else maxlen
        if self.maxlen < 1:
            raise ValueError("a bar series holds at least one bar")
        self._ms = INTERVALS[interval]
        self._daily = interval == DAY
        self._day_start = day_start
        self._bars: deque[Bar] = deque(maxlen=self.maxlen)
        self._final: set[int] = set()  # starts of the held bars a provider made authoritative
        self._cur = _NO_BAR
        self._start = self._end = 0  # the current bar's interval [start, end): empty while no bar
        self._cur_final = False
        self._span: _Span | None = None  # its owner's, which a change of the current bar empties

    def __len__(self) -> int:
        return len(self._bars)

    def resize(self, maxlen: int) -> None:
        """Hold at most ``maxlen`` bars from now on (fewer than held: the oldest go)."""
        if maxlen < 1:
            raise ValueError("a bar series holds at least one bar")
        if maxlen != self.maxlen:
            self.maxlen = maxlen
            self._bars = deque(self._bars, maxlen=maxlen)
            first = self._bars[0].t if self._bars else None
            self._final = {t for t in self._final if first is not None and t >= first}
            self._refresh()

    @property
    def current(self) -> Bar | None:
        """The newest bar (the one trades of now update), None while there is none."""
        return self._bars[-1] if self._bars else None

    def is_final(self, t: int) -> bool:
        """Whether the bar starting at ``t`` is a provider's final word (trades no longer change it)."""
        return t in self._final

    def align(self, ts_ms: int) -> int:
        """The start of the bar holding ``ts_ms``."""
        return self._day_start(ts_ms) if self._daily else ts_ms - ts_ms % self._ms

    def end_of(self, start: int) -> int:
        """The end (exclusive) of the bar starting at ``start``."""
        return self._day_start(start + _NEXT_DAY_MS) if self._daily else start + self._ms

    def add_trade(self, ts_ms: int, price: float, size: float = 0) -> Bar | None:
        """Count one trade; return the bar it changed (``current`` or a past one), None when none changed."""
        if self._start <= ts_ms < self._end:  # the common case: the current bar, no allocation
            if self._cur_final:
                return None
            bar = self._cur
            if price > bar.h:
                bar.h = price
            elif price < bar.l:
                bar.l = price
            bar.c = price
            if size:
                bar.v += size
            return bar
        if ts_ms >= self._end:
            bar = Bar(self.align(ts_ms), price, price, price, price, size)
            self._append(bar)
            return bar
        return self._late_trade(ts_ms, price, size)

    def _late_trade(self, ts_ms: int, price: float, size: float) -> Bar | None:
        start = self.align(ts_ms)
        bars = self._bars
        i = bisect_left(bars, start, key=_start_of)
        if i < len(bars) and bars[i].t == start:
            if start in self._final:
                return None
            bar = bars[i]
            if price > bar.h:
                bar.h = price
            elif price < bar.l:
                bar.l = price
            if size:
                bar.v += size
            return bar
        bar = Bar(start, price, price, price, price, size)
        if not self._insert(i, bar):
            return None
        if len(bars) == 1:  # the series was empty (a trade before the epoch)
            self._refresh()
        return bar

    def apply_bar(self, bar: Bar, final: bool = True) -> Bar | None:
        """Put a provider's bar in place of the one of the same start (its start aligned to this interval).

        Returns the stored copy, or None for a bar older than a full history. ``final``: trades of its
        interval are ignored from now on; otherwise they keep updating it.
        """
        start = self.align(bar.t)
        new = Bar(start, bar.o, bar.h, bar.l, bar.c, bar.v)
        bars = self._bars
        if not bars or start > bars[-1].t:
            self._mark(start, final)
            self._append(new)
            return new
        i = bisect_left(bars, start, key=_start_of)
        if bars[i].t == start:
            bars[i] = new
        elif not self._insert(i, new):
            return None
        self._mark(start, final)
        self._refresh()
        return new

    def backfill(self, bars: Iterable[Bar], now_ms: int | None = None) -> None:
        """Merge a provider's history: by start, the provider winning; authoritative once ended by ``now_ms``.

        ``now_ms`` None: every bar given has ended. The newest ``maxlen`` bars are kept.
        """
        merged = {b.t: b for b in self._bars}
        final = self._final
        for b in bars:
            start = self.align(b.t)
            ended = now_ms is None or self.end_of(start) <= now_ms
            held = merged.get(start)
            if held is not None and not ended:  # a bar still filling: the trades counted here since stay
                merged[start] = Bar(start, b.o, max(b.h, held.h), min(b.l, held.l), held.c, max(b.v, held.v))
            else:
                merged[start] = Bar(start, b.o, b.h, b.l, b.c, b.v)
            self._mark(start, ended)
        keep = sorted(merged)[-self.maxlen :]
        self._bars.clear()
        self._bars.extend(merged[t] for t in keep)
        self._final = {t for t in final if t >= keep[0]} if keep else set()
        self._refresh()

    def last(self, n: int) -> list[Bar]:
        """The newest ``n`` bars, oldest first."""
        bars = self._bars
        return list(islice(bars, max(0, len(bars) - n), None)) if n > 0 else []

    def range(
        self, from_ms: int | None = None, to_ms: int | None = None, limit: int = DEFAULT_LIMIT
    ) -> list[Bar]:
        """Bars starting at or after ``from_ms`` and before ``to_ms`` (None: unbounded), oldest first.

        Past ``limit`` bars: the oldest ones when only ``from_ms`` is given (paging forward), else the newest
        (the chart's end; page backward with ``to_ms`` = the oldest ``t`` received).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        bars = self._bars
        lo = 0 if from_ms is None else bisect_left(bars, from_ms, key=_start_of)
        hi = len(bars) if to_ms is None else bisect_left(bars, to_ms, key=_start_of)
        if hi - lo > limit:
            if from_ms is not None and to_ms is None:
                hi = lo + limit
            else:
                lo = hi - limit
        return list(islice(bars, lo, hi)) if hi > lo else []

    def _mark(self, start: int, final: bool) -> None:
        if final:
            self._final.add(start)
        else:
            self._final.discard(start)

    def _append(self, bar: Bar) -> None:
        if len(self._bars) == self.maxlen:
            self._final.discard(self._bars[0].t)
        self._bars.append(bar)
        self._refresh()

    def _insert(self, i: int, bar: Bar) -> bool:
        """Insert a past bar at ``i`` (below the current one), making room; False when it is below a full history."""
        bars = self._bars
        if len(bars) == self.maxlen:
            if i == 0:
                return False
            self._final.discard(bars.popleft().t)
            i -= 1
        bars.insert(i, bar)
        return True

    def _refresh(self) -> None:
        if self._span is not None:
            self._span.end = 0
        if not self._bars:
            self._cur, self._start, self._end, self._cur_final = _NO_BAR, 0, 0, False
            return
        cur = self._cur = self._bars[-1]
        self._start = cur.t
        self._end = self.end_of(cur.t)
        self._cur_final = cur.t in self._final


class SymbolBars:
    """One symbol's series at every interval, fed by its quotes (:meth:`on_quote`) or its trades."""

    __slots__ = ("_all", "_price", "_span", "_volume", "rolling_volume", "series")

    def __init__(
        self,
        day_start: DayStart = utc_day_start,
        *,
        rolling_volume: bool = False,
        intervals: Iterable[str] = INTERVALS,
        history: dict[str, int] | None = None,
    ) -> None:
        bounds = HISTORY if history is None else history
        self.series = {i: BarSeries(i, bounds.get(i), day_start) for i in intervals}
        self._all = tuple(self.series.values())
        self._span = _Span()
        for s in self._all:
            s._span = self._span
        self.rolling_volume = rolling_volume
        self._price: float | None = None
        self._volume: float | None = None

    def add_trade(self, ts_ms: int, price: float, size: float = 0) -> None:
        """Count one trade in every series."""
        for s in self._all:
            s.add_trade(ts_ms, price, size)

    def on_quote(self, quote: Quote) -> bool:
        """Count ``quote`` as a trade if it is one (see the module docstring); whether it was."""
        price = quote.price
        volume = quote.volume
        last_volume = self._volume
        size: float = 0
        if volume is not None and (volume < 0 or volume == _INF):  # a feed's nonsense: no volume at all
            volume = None
        if volume is not None and last_volume is not None and volume > last_volume:
            size = volume - last_volume
        elif (
            volume is not None
            and last_volume is not None
            and volume < last_volume
            and not self.rolling_volume
        ):
            size = volume  # a new session: its volume so far
        elif price == self._price:
            if volume is not None:
                self._volume = volume
            return False
        self._price = price
        if volume is not None:
            self._volume = volume
        ts_ms = quote.ts_ms
        span = self._span
        if span.start <= ts_ms < span.end:  # the hot path: every current bar, no call per series
            for bar in span.bars:
                if price > bar.h:
                    bar.h = price
                elif price < bar.l:
                    bar.l = price
                bar.c = price
                if size:
                    bar.v += size
            return True
        series = self._all
        for s in series:
            s.add_trade(ts_ms, price, size)
        if series and not any([s._cur_final for s in series]):  # work out the span of the bars now current
            span.start = max([s._start for s in series])
            span.end = min([s._end for s in series])
            span.bars = tuple([s._cur for s in series])
        return True
