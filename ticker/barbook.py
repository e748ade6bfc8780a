"""Every symbol's bars (pure): the node's one store of OHLCV bars, what changed since the last flush, views.

A :class:`BarBook` holds one :class:`~ticker.bars.SymbolBars` per symbol, created on first use with that
symbol's session days (``session_of``: New York days for US equities, UTC days for the rest, as
:func:`ticker.daystats.listing_sessions` picks them). Its bars come from three places:

- quotes the node delivers (:meth:`BarBook.on_quote`, the memory broker: the node aggregates);
- bars a provider or the Redis edge hands over (:meth:`BarBook.apply`): the provider's word wins;
- history (:meth:`BarBook.backfill`) from a provider's history endpoint or Redis.

What moved is recorded for the fan-out, which takes it once per flush (:meth:`BarBook.take_changes`):
the symbols whose current bars a trade moved (``changed``), and the particular bars applied
(``changed_bars``: a provider's late or corrected bar need not be the current one).

Memory: a symbol's five full series hold at most 5,058 bars, about 0.3 MB (:mod:`ticker.bars`); a symbol
holds only what came to it (a newly demanded one its live bars and two day bars, about 4 KB at first,
until someone reads its bars: :mod:`ticker.server.history`), and only ``unread_seconds`` ``1s`` bars until
:meth:`BarBook.widen` (its bars are read); :meth:`BarBook.bars_held` counts them. The book keeps at
most ``max_symbols`` symbols (:data:`MAX_SYMBOLS` by default); past it the least recently used symbol (the
one whose last quote, bar or read is oldest) that nobody receives is forgotten, and starts afresh if it
comes back. Demanded symbols are never forgotten: past the bound the book holds what is demanded. The
node's history loader forgets a symbol nobody receives any more soon after (:meth:`BarBook.forget`), so
the bound is a backstop.

A delayed user's view (:meth:`BarBook.range` and :meth:`BarBook.last` with ``before_end``,
:meth:`BarBook.completed`) holds only the bars that ended by a horizon (now minus ``--delay``): never a
bar with data newer than the delay.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from operator import attrgetter

from ticker.bars import (
    DAY,
    DEFAULT_LIMIT,
    HISTORY,
    INTERVALS,
    Bar,
    BarSeries,
    DayStart,
    SymbolBars,
    utc_day_start,
)
from ticker.quote import Quote

#: Symbols a book keeps by default (about 0.3 GB at worst: every series of every symbol full).
MAX_SYMBOLS = 1_000

_start_of = attrgetter("t")
_DERIVED_FROM_MINUTES = ("5m", "1h")  # the longer intervals a provider's 1m bar corrects

#: (symbols whose current bars moved, (symbol, interval) → starts of the bars applied), as taken.
Changes = tuple[dict[str, None], dict[tuple[str, str], dict[int, None]]]


def _utc_days(symbol: str) -> DayStart:
    return utc_day_start


class BarBook:
    """The bars of every symbol a node carries, bounded to ``max_symbols`` symbols (least recently used out,
    the demanded ones kept)."""

    def __init__(
        self,
        session_of: Callable[[str], DayStart] = _utc_days,
        max_symbols: int = MAX_SYMBOLS,
        keep: Callable[[str], bool] = lambda symbol: False,
        unread_seconds: int = HISTORY["1s"],
    ) -> None:
        """``keep(symbol)``: whether a symbol is demanded (someone receives it): never forgotten to make room.
        ``unread_seconds``: the ``1s`` bars a symbol holds until :meth:`widen` (someone reads its bars)."""
        if max_symbols < 1 or unread_seconds < 1:
            raise ValueError("a bar book holds at least one symbol, and one bar of each")
        self.session_of = session_of
        self.max_symbols = max_symbols
        self.keep = keep
        self._unread = {**HISTORY, "1s": min(unread_seconds, HISTORY["1s"])}
        self._symbols: OrderedDict[str, SymbolBars] = OrderedDict()
        self._days: dict[str, tuple[DayStart, int]] = {}  # each held symbol's session days and generation
        self._born = 0
        self._scan_at = 0  # the size at which to look for symbols to forget again (see _create)
        #: Symbols whose current bars moved since :meth:`take_changes` (quotes that traded, backfills).
        self.changed: dict[str, None] = {}
        #: (symbol, interval) → starts of the bars :meth:`apply` stored since :meth:`take_changes`.
        self.changed_bars: dict[tuple[str, str], dict[int, None]] = {}

    def __len__(self) -> int:
        return len(self._symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._symbols

    def symbols(self) -> list[str]:
        """The symbols held, least recently used first."""
        return list(self._symbols)

    def bars_held(self, symbol: str | None = None) -> int:
        """The bars held (at most 64 bytes each) of ``symbol``, or of every symbol (a look at every series)."""
        if symbol is not None:
            held = self._symbols.get(symbol)
            return 0 if held is None else sum([len(s) for s in held.series.values()])
        return sum([len(s) for held in self._symbols.values() for s in held.series.values()])

    # -- the symbols held --------------------------------------------------------------------
    def bars_of(self, symbol: str) -> SymbolBars:
        """``symbol``'s bars, created (with its session days) on first use; counts as a use."""
        held = self._symbols.get(symbol)
        if held is None:
            return self._create(symbol)
        self._symbols.move_to_end(symbol)
        return held

    def _create(self, symbol: str) -> SymbolBars:
        symbols = self._symbols
        while len(symbols) >= max(self.max_symbols, self._scan_at):
            victim = next((s for s in symbols if not self.keep(s)), None)
            if victim is None:  # every symbol held is demanded: the demand bounds the book
                # Look again once it grew by an eighth (or lost one): not at each new symbol, which would
                # cost a look at every demanded one each time.
                self._scan_at = len(symbols) + 1 + len(symbols) // 8
                break
            self.forget(victim)
        days = self.session_of(symbol)
        self._born += 1
        self._days[symbol] = (days, self._born)
        held = symbols[symbol] = SymbolBars(days, history=self._unread)
        return held

    def widen(self, symbol: str) -> None:
        """Someone reads ``symbol``'s bars: from now on its ``1s`` series holds its full history (15 minutes)."""
        held = self._symbols.get(symbol)
        if held is not None:
            held.series["1s"].resize(HISTORY["1s"])

    def forget(self, symbol: str) -> None:
        """Drop ``symbol``'s bars and its pending changes."""
        if self._symbols.pop(symbol, None) is None:
            return
        self._scan_at = 0
        del self._days[symbol]
        self.changed.pop(symbol, None)
        if self.changed_bars:
            for interval in INTERVALS:
                self.changed_bars.pop((symbol, interval), None)

    def generation(self, symbol: str) -> int | None:
        """A number that changes each time ``symbol``'s bars start afresh (first use, after being forgotten);
        None while the book holds none."""
        held = self._days.get(symbol)
        return None if held is None else held[1]

    def resession(self, symbol: str) -> bool:
        """Start ``symbol`` afresh if ``session_of`` now picks other session days for it (its directory
        entry arrived after its first bar); whether it did. Call before a backfill."""
        held = self._days.get(symbol)
        if held is None or held[0] is self.session_of(symbol):
            return False
        self.forget(symbol)
        self._create(symbol)
        return True

    def series(self, symbol: str, interval: str) -> BarSeries | None:
        """``symbol``'s series at ``interval`` (an interval of :data:`~ticker.bars.INTERVALS`), None while
        the book holds no bar of ``symbol``; counts as a use."""
        held = self._symbols.get(symbol)
        if held is None:
            return None
        self._symbols.move_to_end(symbol)
        return held.series[interval]

    # -- bars in -----------------------------------------------------------------------------
    def on_quote(self, quote: Quote) -> None:
        """Aggregate one delivered quote; a trade marks its symbol in :attr:`changed` (the hot path)."""
        symbol = quote.symbol
        held = self._symbols.get(symbol)
        if held is None:
            held = self._create(symbol)
        else:
            self._symbols.move_to_end(symbol)
        if held.on_quote(quote):
            self.changed[symbol] = None

    def apply(self, symbol: str, interval: str, bar: Bar, final: bool = True, derive: bool = False) -> None:
        """A provider's or the Redis edge's bar, in place of the one of the same start (see
        :meth:`BarSeries.apply_bar`; one older than a full history is dropped); recorded in
        :attr:`changed_bars`. ``derive`` (a provider's own ``1m`` bar): the ``5m`` and ``1h`` bars holding it
        are made again of the ``1m`` bars, so that the intervals agree."""
        held = self.bars_of(symbol)
        stored = held.series[interval].apply_bar(bar, final)
        if stored is None:
            return
        self._record(symbol, interval, stored.t)
        if derive and interval == "1m":
            minutes = held.series["1m"]
            for longer in _DERIVED_FROM_MINUTES:
                series = held.series.get(longer)
                if series is None:
                    continue
                start = series.align(stored.t)
                parts = minutes.range(start, series.end_of(start), minutes.maxlen)
                if not parts:
                    continue
                # The 1m history may begin inside this bar (a node started mid-hour): then its open stays.
                covered = parts[0].t == start or minutes.range(None, start + 1, 1)
                found = [] if covered else series.range(start, start + 1, 1)
                old = found[0] if found else None
                made = aggregate(parts, longer)[0]
                if old is not None:
                    made.o, made.h, made.l = old.o, max(made.h, old.h), min(made.l, old.l)
                if series.apply_bar(made, final=False) is not None:
                    self._record(symbol, longer, start)

    def _record(self, symbol: str, interval: str, start: int) -> None:
        key = (symbol, interval)
        starts = self.changed_bars.get(key)
        if starts is None:
            starts = self.changed_bars[key] = {}
        starts[start] = None

    def backfill(self, symbol: str, interval: str, bars: Iterable[Bar], now_ms: int | None) -> None:
        """Merge history (see :meth:`BarSeries.backfill`); the symbol counts as changed."""
        self.bars_of(symbol).series[interval].backfill(bars, now_ms)
        self.changed[symbol] = None

    def take_changes(self) -> Changes:
        """What changed since the last call (:attr:`changed`, :attr:`changed_bars`), starting over."""
        out = (self.changed, self.changed_bars)
        self.changed = {}
        self.changed_bars = {}
        return out

    # -- bars out ----------------------------------------------------------------------------
    def range(
        self,
        symbol: str,
        interval: str,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = DEFAULT_LIMIT,
        before_end: int | None = None,
    ) -> list[Bar]:
        """Bars starting in ``[from_ms, to_ms)``, oldest first, at most ``limit`` (see
        :meth:`BarSeries.range`); with ``before_end``, only those that ended by that instant (epoch ms)."""
        series = self.series(symbol, interval)
        if series is None:
            return []
        if before_end is None:
            return series.range(from_ms, to_ms, limit)
        cutoff = series.align(before_end)  # a bar ended by the horizon iff it starts before the horizon's bar
        if to_ms is None and from_ms is not None:  # paging forward: the oldest ones
            return [b for b in series.range(from_ms, None, limit) if b.t < cutoff]
        return series.range(from_ms, cutoff if to_ms is None else min(to_ms, cutoff), limit)

    def completed(
        self,
        symbol: str,
        interval: str,
        horizon_ms: int,
        limit: int = DEFAULT_LIMIT,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> list[Bar]:
        """A delayed user's view: the bars that ended by ``horizon_ms`` (see :meth:`range`)."""
        return self.range(symbol, interval, from_ms, to_ms, limit, before_end=horizon_ms)

    def last(self, symbol: str, interval: str, n: int, before_end: int | None = None) -> list[Bar]:
        """The newest ``n`` bars, oldest first; with ``before_end``, of those that ended by that instant."""
        if n < 1:
            return []
        if before_end is not None:
            return self.range(symbol, interval, None, None, n, before_end)
        series = self.series(symbol, interval)
        return [] if series is None else series.last(n)

    def current(self, symbol: str, interval: str) -> Bar | None:
        """The newest bar of ``symbol`` at ``interval``, None while there is none."""
        held = self._symbols.get(symbol)
        return None if held is None else held.series[interval].current

    def bar_at(self, symbol: str, interval: str, t: int) -> Bar | None:
        """The bar holding instant ``t`` (epoch ms), None when there is none."""
        held = self._symbols.get(symbol)
        if held is None:
            return None
        series = held.series[interval]
        start = series.align(t)
        found = series.range(start, start + 1, 1)
        return found[0] if found and found[0].t == start else None

    def end_of(self, symbol: str, interval: str, start: int) -> int:
        """The end (exclusive, epoch ms) of ``symbol``'s bar at ``interval`` starting at ``start``."""
        held = self._symbols.get(symbol)
        if held is not None:
            return held.series[interval].end_of(start)
        return BarSeries(interval, 1, self.session_of(symbol)).end_of(start)


def aggregate(bars: Iterable[Bar], interval: str, day_start: DayStart = utc_day_start) -> list[Bar]:
    """Bars of a longer ``interval`` made of shorter ones (5m and 1h from a provider's 1m), oldest first.

    Each output bar opens at its first bar's open, closes at its last one's
    close, spans their highs and lows and sums their volumes; an interval without input has no bar.
    """
    ms = INTERVALS[interval]
    daily = interval == DAY
    out: list[Bar] = []
    cur: Bar | None = None
    for b in sorted(bars, key=_start_of):
        start = day_start(b.t) if daily else b.t - b.t % ms
        if cur is not None and cur.t == start:
            if b.h > cur.h:
                cur.h = b.h
            if b.l < cur.l:
                cur.l = b.l
            cur.c = b.c
            cur.v += b.v
            continue
        cur = Bar(start, b.o, b.h, b.l, b.c, b.v)
        out.append(cur)
    return out
