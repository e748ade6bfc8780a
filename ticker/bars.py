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
24-hour session), 576 × 5m (two days), 336 × 1h (two weeks), 366 × 1d. A series keeps only its current
bar as a :class:`Bar` object; the older ones are packed in arrays, 49 bytes a bar (no object each, so no
long-lived small allocations: they would pin the allocator's pages, and the garbage collector would walk
them). A bar costs at most 64 bytes (measured with tracemalloc in tests/unit/test_bars.py, the arrays'
spare room included; a ``Bar`` object each took about 225), so a symbol's five full series hold at most
5,058 bars, about 0.3 MB, of which 1m is 0.16 MB.

Bars are mutable and owned by their series: encode one (:meth:`Bar.encode`) when it is read, do not
keep it. A read gives the current bar itself (trades go on changing it) and new copies of past ones (a
change to a copy does not reach the series); an ``int`` number is read back as an ``int``. ``orjson.dumps``
takes a ``Bar``, or a list of them, as is.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
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

_EXACT = 2**53  # an int of at most this size is exact in a double
_T_MIN, _T_MAX = -(2**63), 2**63 - 1  # what an array('q') holds
_ANY = 32  # in _flags: a number a double does not hold exactly (a bool, a huge int, another type)


def _flags(b: Bar) -> int:
    """Which of ``b``'s o, h, l, c, v are ints (bits 1, 2, 4, 8, 16: they are read back as ints), plus
    :data:`_ANY` when one is neither a float nor an int a double holds exactly."""
    o, h, l, c, v = b.o, b.h, b.l, b.c, b.v  # noqa: E741
    if type(o) is float and type(h) is float and type(l) is float and type(c) is float:
        if type(v) is float:
            return 0
        if type(v) is int and -_EXACT <= v <= _EXACT:  # a feed with whole volumes
            return 16
    f, bit = 0, 1
    for x in (o, h, l, c, v):
        if type(x) is not float:
            f |= bit if type(x) is int and -_EXACT <= x <= _EXACT else _ANY
        bit <<= 1
    return f


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
    """The bars of one symbol at one interval, oldest first, at most ``maxlen`` (see the module docstring).

    The current bar is a :class:`Bar` (``_cur``); the older ones are packed: their starts in ``_t``, their
    o, h, l, c, v in ``_x`` (five a bar), which of those are ints in ``_k``, from index ``_head`` on (the
    oldest go by moving ``_head``; the arrays drop their dead front now and then). A start or a number an
    array cannot hold exactly (a bool, an int past 2**53: no feed sends one) turns that array into a list,
    one object a number again, until the next backfill.
    """

    __slots__ = (
        "_cur",
        "_cur_final",
        "_daily",
        "_day_start",
        "_end",
        "_final",
        "_head",
        "_k",
        "_ms",
        "_span",
        "_start",
        "_t",
        "_x",
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
        self._t: MutableSequence[int] = array("q")
        self._x: MutableSequence[float] = array("d")
        self._k = array("B")
        self._head = 0
        self._final: set[int] = set()  # starts of the held bars a provider made authoritative
        self._cur = _NO_BAR
        self._start = self._end = 0  # the current bar's interval [start, end): empty while no bar
        self._cur_final = False
        self._span: _Span | None = None  # its owner's, which a change of the current bar empties

    def __len__(self) -> int:
        return len(self._t) - self._head + (self._cur is not _NO_BAR)

    def resize(self, maxlen: int) -> None:
        """Hold at most ``maxlen`` bars from now on (fewer than held: the oldest go)."""
        if maxlen < 1:
            raise ValueError("a bar series holds at least one bar")
        if maxlen != self.maxlen:
            self.maxlen = maxlen
            excess = len(self) - maxlen  # at most the packed bars: the current one stays
            if excess > 0:
                self._cut(self._head + excess)
            ts = self._t
            first = ts[self._head] if len(ts) > self._head else None if self._cur is _NO_BAR else self._cur.t
            self._final = {t for t in self._final if first is not None and t >= first}
            self._refresh()

    @property
    def current(self) -> Bar | None:
        """The newest bar (the one trades of now update), None while there is none."""
        cur = self._cur
        return None if cur is _NO_BAR else cur

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
        """Count one trade; return the bar it changed (``current``, or a copy of a past one), None when none
        changed."""
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
        if self._cur is _NO_BAR:  # the series is empty (a trade before the epoch)
            bar = Bar(start, price, price, price, price, size)
            self._append(bar)
            return bar
        t = self._t
        i = bisect_left(t, start, self._head)
        if i < len(t) and t[i] == start:
            if start in self._final:
                return None
            bar = self._get(i)
            if price > bar.h:
                bar.h = price
            elif price < bar.l:
                bar.l = price
            if size:
                bar.v += size
            self._put(i, bar)
            return bar
        bar = Bar(start, price, price, price, price, size)
        return bar if self._insert(i, bar) else None

    def apply_bar(self, bar: Bar, final: bool = True) -> Bar | None:
        """Put a provider's bar in place of the one of the same start (its start aligned to this interval).

        Returns the stored copy (a past bar: a copy of it), or None for a bar older than a full history.
        ``final``: trades of its interval are ignored from now on; otherwise they keep updating it.
        """
        start = self.align(bar.t)
        new = Bar(start, bar.o, bar.h, bar.l, bar.c, bar.v)
        cur = self._cur
        if cur is _NO_BAR or start > cur.t:
            self._mark(start, final)
            self._append(new)
            return new
        if start == cur.t:
            self._cur = new
        else:
            t = self._t
            i = bisect_left(t, start, self._head)
            if i < len(t) and t[i] == start:
                self._put(i, new)
            elif not self._insert(i, new):
                return None
        self._mark(start, final)
        self._refresh()
        return new

    def backfill(self, bars: Iterable[Bar], now_ms: int | None = None) -> None:
        """Merge a provider's history: by start, the provider winning; authoritative once ended by ``now_ms``.

        ``now_ms`` None: every bar given has ended. The newest ``maxlen`` bars are kept.
        """
        merged = {b.t: b for b in self._read(self._head, len(self._t))}
        if self._cur is not _NO_BAR:
            merged[self._cur.t] = self._cur
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
        self._load([merged[t] for t in keep[:-1]])
        self._cur = merged[keep[-1]] if keep else _NO_BAR
        self._final = {t for t in final if t >= keep[0]} if keep else set()
        self._refresh()

    def last(self, n: int) -> list[Bar]:
        """The newest ``n`` bars, oldest first."""
        cur = self._cur
        if n < 1 or cur is _NO_BAR:
            return []
        hi = len(self._t)
        lo = max(self._head, hi - n + 1)
        out = self._read(lo, hi) if hi > lo else []
        out.append(cur)
        return out

    def range(
        self, from_ms: int | None = None, to_ms: int | None = None, limit: int = DEFAULT_LIMIT
    ) -> list[Bar]:
        """Bars starting at or after ``from_ms`` and before ``to_ms`` (None: unbounded), oldest first.

        Past ``limit`` bars: the oldest ones when only ``from_ms`` is given (paging forward), else the newest
        (the chart's end; page backward with ``to_ms`` = the oldest ``t`` received).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        cur = self._cur
        if cur is _NO_BAR:
            return []
        packed = len(self._t)  # the current bar's index, past the packed ones
        lo = self._head if from_ms is None else self._index(from_ms)
        hi = packed + 1 if to_ms is None else self._index(to_ms)
        if hi - lo > limit:
            if from_ms is not None and to_ms is None:
                hi = lo + limit
            else:
                lo = hi - limit
        if hi <= lo:
            return []
        if hi <= packed:
            return self._read(lo, hi)
        out = self._read(lo, packed) if packed > lo else []
        out.append(cur)
        return out

    def _index(self, start: int) -> int:
        """Where the first bar starting at or after ``start`` is (the packed ones, then the current one)."""
        t = self._t
        i = bisect_left(t, start, self._head)
        return i + 1 if i == len(t) and self._cur.t < start else i

    def _read(self, lo: int, hi: int) -> list[Bar]:
        """New :class:`Bar` objects of the packed bars from index ``lo`` to ``hi``."""
        if hi - lo == 1:
            return [self._get(lo)]
        x = self._x[5 * lo : 5 * hi]
        cols: list[Sequence[float]] = [x[0::5], x[1::5], x[2::5], x[3::5], x[4::5]]
        k = self._k[lo:hi]
        if k.count(0) != len(k):  # some numbers were ints: they are read back as ints
            every, some = 31, 0
            for f in set(k):
                every &= f
                some |= f
            for j in range(5):
                bit = 1 << j
                if every & bit:
                    cols[j] = list(map(int, cols[j]))
                elif some & bit:
                    cols[j] = [int(v) if f & bit else v for v, f in zip(cols[j], k, strict=True)]
        return list(map(Bar, self._t[lo:hi], *cols))

    def _get(self, i: int) -> Bar:
        """A new :class:`Bar` of the packed bar at index ``i``."""
        x, j, f = self._x, 5 * i, self._k[i]
        if not f:
            return Bar(self._t[i], x[j], x[j + 1], x[j + 2], x[j + 3], x[j + 4])
        o, h, l, c, v = (int(n) if f & (1 << b) else n for b, n in enumerate(x[j : j + 5]))  # noqa: E741
        return Bar(self._t[i], o, h, l, c, v)

    def _fit(self, bar: Bar) -> int:
        """``bar``'s :func:`_flags`, after turning an array that cannot hold its numbers exactly into a list."""
        f = _flags(bar)
        if f & _ANY:
            if not isinstance(self._x, list):
                self._x = list(self._x)
            f -= _ANY
        t = bar.t
        if (type(t) is not int or not _T_MIN <= t <= _T_MAX) and not isinstance(self._t, list):
            self._t = list(self._t)
        return f

    def _pack(self, bar: Bar) -> None:
        """Append ``bar``'s numbers to the packed bars (it was the current one)."""
        f = self._fit(bar)
        self._t.append(bar.t)
        self._x.extend((bar.o, bar.h, bar.l, bar.c, bar.v))
        self._k.append(f)

    def _put(self, i: int, bar: Bar) -> None:
        """Write ``bar``'s numbers over those of the packed bar at index ``i`` (of the same start)."""
        f = self._fit(bar)
        x, j = self._x, 5 * i
        x[j], x[j + 1], x[j + 2], x[j + 3], x[j + 4] = bar.o, bar.h, bar.l, bar.c, bar.v
        self._k[i] = f

    def _insert(self, i: int, bar: Bar) -> bool:
        """Insert a past bar at index ``i`` (below the current one), making room; False when it is below a full
        history."""
        if len(self) == self.maxlen:
            if i == self._head:
                return False
            i -= self._head + 1
            self._drop()
            i += self._head
        f = self._fit(bar)
        self._t.insert(i, bar.t)
        x, j = self._x, 5 * i
        numbers = (bar.o, bar.h, bar.l, bar.c, bar.v)
        x[j:j] = numbers if isinstance(x, list) else array("d", numbers)
        self._k.insert(i, f)
        return True

    def _load(self, bars: list[Bar]) -> None:
        """Make ``bars`` (sorted) the packed ones."""
        ts = [b.t for b in bars]
        fit = not ts or (set(map(type, ts)) == {int} and min(ts) >= _T_MIN and max(ts) <= _T_MAX)
        self._t = array("q", ts) if fit else ts
        self._head = 0
        cols = (
            [b.o for b in bars],
            [b.h for b in bars],
            [b.l for b in bars],
            [b.c for b in bars],
            [b.v for b in bars],
        )
        ints = 0  # the columns of ints only (a double holds each exactly)
        for j, col in enumerate(cols):
            kinds = set(map(type, col))
            if kinds == {int} and min(col) >= -_EXACT and max(col) <= _EXACT:
                ints |= 1 << j
            elif kinds - {float}:  # ints among floats, or other numbers: bar by bar
                flags = [_flags(b) for b in bars]
                if any(f & _ANY for f in flags):
                    self._x = [x for b in bars for x in (b.o, b.h, b.l, b.c, b.v)]
                    flags = [f & ~_ANY for f in flags]
                else:
                    self._x = array("d", [x for b in bars for x in (b.o, b.h, b.l, b.c, b.v)])
                self._k = array("B", flags)
                return
        x = array("d", bytes(40 * len(bars)))
        for j, col in enumerate(cols):
            x[j::5] = array("d", col)
        self._x = x
        self._k = array("B", [ints]) * len(bars)

    def _drop(self) -> None:
        """Drop the oldest packed bar (and its mark); now and then the arrays' dead front with it."""
        t = self._t
        head = self._head
        self._final.discard(t[head])
        head += 1
        if head > 8 + (len(t) >> 4):  # amortized: a move of the held bars every len/16 drops
            self._cut(head)
        else:
            self._head = head

    def _cut(self, head: int) -> None:
        """Remove the packed bars below index ``head`` from the arrays."""
        del self._t[:head]
        del self._x[: 5 * head]
        del self._k[:head]
        self._head = 0

    def _mark(self, start: int, final: bool) -> None:
        if final:
            self._final.add(start)
        else:
            self._final.discard(start)

    def _append(self, bar: Bar) -> None:
        """Make ``bar`` the current one: the current one before it is packed; the oldest goes past ``maxlen``."""
        cur = self._cur
        if cur is not _NO_BAR:
            if len(self) == self.maxlen:
                if len(self._t) > self._head:
                    self._drop()
                else:  # maxlen 1: the current bar is the oldest
                    self._final.discard(cur.t)
                    cur = _NO_BAR
            if cur is not _NO_BAR:
                self._pack(cur)
        self._cur = bar
        self._refresh()

    def _refresh(self) -> None:
        if self._span is not None:
            self._span.end = 0
        cur = self._cur
        if cur is _NO_BAR:
            self._start, self._end, self._cur_final = 0, 0, False
            return
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
