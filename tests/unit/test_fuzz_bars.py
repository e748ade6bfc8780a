"""Property tests (Hypothesis) of the bars (ticker/bars.py): any trades, provider bars and backfills keep a
series sorted by start without duplicates, at most ``maxlen`` bars, each with ``l <= o, c <= h``.

Trades alone are also checked against a model written from the module docstring's rules, and any quote
a feed may emit (finite numbers, any integer time) goes through a node's quote path without an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from ticker.barbook import BarBook
from ticker.bars import INTERVALS, Bar, BarSeries, DayStart, utc_day_start, zone_day_start
from ticker.daystats import DayStats
from ticker.hub import Hub
from ticker.quote import Quote, encode_entry

NEW_YORK = zone_day_start(ZoneInfo("America/New_York"))
DAY_STARTS: dict[str, DayStart] = {"utc": utc_day_start, "new_york": NEW_YORK}
BASE = 1_700_000_000_000  # Nov 2023, in ms
SPAN = 3 * 86_400_000  # trades spread over three days, so that every interval rolls over

times = st.integers(BASE - SPAN // 3, BASE + SPAN) | st.integers(-SPAN, SPAN)  # near the epoch too
prices = st.floats(0.01, 1e6)
sizes = st.sampled_from([0, 0.0]) | st.floats(0, 1e6)
intervals = st.sampled_from(list(INTERVALS))
series_args = st.tuples(intervals, st.integers(1, 6), st.sampled_from(sorted(DAY_STARTS)))


@st.composite
def provider_bars(draw: st.DrawFn) -> Bar:
    """A provider's bar: its own OHLC consistent (low <= open, close <= high), any start."""
    lo, hi = sorted((draw(prices), draw(prices)))
    o, c = (draw(st.floats(lo, hi)) for _ in range(2))
    return Bar(draw(times), o, hi, lo, c, draw(sizes))


trades = st.tuples(st.just("trade"), times, prices, sizes)
operations = st.lists(
    trades
    | st.tuples(st.just("bar"), provider_bars(), st.booleans())
    | st.tuples(st.just("backfill"), st.lists(provider_bars(), max_size=5), st.none() | times),
    max_size=40,
)


def make(args: tuple[str, int, str]) -> BarSeries:
    interval, maxlen, days = args
    return BarSeries(interval, maxlen, DAY_STARTS[days])


def check_sorted(series: BarSeries) -> list[Bar]:
    """Sorted by start, no duplicates, within ``maxlen``, each bar aligned to its interval."""
    bars = series.last(series.maxlen + 1)
    starts = [b.t for b in bars]
    assert starts == sorted(set(starts)), starts
    assert len(bars) == len(series) <= series.maxlen
    assert all(series.align(b.t) == b.t for b in bars)
    return bars


def check(series: BarSeries) -> None:
    """:func:`check_sorted`, and each bar with ``l <= o, c <= h`` and a volume of at least 0."""
    bars = check_sorted(series)
    for b in bars:
        assert b.l <= min(b.o, b.c) and max(b.o, b.c) <= b.h, b
        assert b.v >= 0
    assert series.current is (bars[-1] if bars else None)


@given(series_args, operations)
def test_any_trades_bars_and_backfills_keep_a_series_sorted_bounded_and_consistent(
    args: tuple[str, int, str], ops: list[tuple[Any, ...]]
) -> None:
    series = make(args)
    for op in ops:
        if op[0] == "trade":
            changed = series.add_trade(*op[1:])
            assert changed is None or series.align(op[1]) == changed.t
        elif op[0] == "bar":
            stored = series.apply_bar(op[1], final=op[2])
            assert stored is None or (
                stored.t == series.align(op[1].t) and series.is_final(stored.t) == op[2]
            )
        else:
            series.backfill(op[1], now_ms=op[2])
        check(series)


@dataclass
class ModelBar:
    o: float
    h: float
    l: float  # noqa: E741 (the wire name)
    c: float
    v: float


@given(series_args, st.lists(trades, max_size=60))
def test_trades_alone_make_the_bars_the_documented_rules_say(
    args: tuple[str, int, str], ops: list[tuple[str, int, float, float]]
) -> None:
    series = make(args)
    model: dict[int, ModelBar] = {}
    for _, ts, price, size in ops:
        series.add_trade(ts, price, size)
        start = series.align(ts)
        held = model.get(start)
        if held is None:
            if len(model) == series.maxlen and start < min(model):
                continue  # older than a full history: dropped
            model[start] = ModelBar(price, price, price, price, size)
            if len(model) > series.maxlen:
                del model[min(model)]
            continue
        held.h, held.l, held.v = max(held.h, price), min(held.l, price), held.v + size
        if start == max(model):  # the current bar: the close moves; a late trade never moves o or c
            held.c = price
    got = {b.t: (b.o, b.h, b.l, b.c) for b in series.last(series.maxlen)}
    want = {t: (m.o, m.h, m.l, m.c) for t, m in model.items()}
    assert got == want
    volumes = {b.t: b.v for b in series.last(series.maxlen)}
    assert all(abs(volumes[t] - m.v) <= 1e-9 * max(1.0, m.v) for t, m in model.items())
    check(series)


@given(st.sampled_from(sorted(DAY_STARTS)), intervals, times)
def test_align_gives_the_start_of_the_bar_holding_an_instant(days: str, interval: str, ts: int) -> None:
    series = BarSeries(interval, 1, DAY_STARTS[days])
    start = series.align(ts)
    assert start <= ts < series.end_of(start)
    assert series.align(start) == start and series.align(series.end_of(start)) == series.end_of(start)


# -- a quote's way through a node: day statistics, bars, the hub -------------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -1e308, 5e-324])
quotes = st.builds(
    lambda t, p, v, pc: Quote("AAPL", p, t, volume=v, prev_close=pc),  # as a feed builds it: any number
    st.integers(-(2**63), 2**64 - 1) | times,
    finite,
    st.none() | finite,
    st.none() | finite,
)


@given(st.sampled_from(sorted(DAY_STARTS)), st.lists(quotes, min_size=1, max_size=12))
def test_any_quote_a_feed_emits_goes_through_the_quote_path(days: str, feed: list[Quote]) -> None:
    """What a node does with each quote (ticker/server/node.py ``_deliver``): never an exception. (A negative
    or overflowing volume makes a bar whose ``v`` the schema refuses: garbage in, so only the order is checked.)"""
    stats = DayStats(DAY_STARTS[days])
    book = BarBook(lambda symbol: DAY_STARTS[days])
    hub: Hub[str] = Hub()
    hub.add("c")
    hub.subscribe("c", ["AAPL"])
    for quote in feed:
        quote = stats.apply(quote)
        book.on_quote(quote)
        hub.publish(quote, 0.0)
        encode_entry(quote, 1)
    for interval in INTERVALS:
        series = book.series("AAPL", interval)
        assert series is not None
        check_sorted(series)
    assert len(hub.flush().batches) == 1


def test_a_quote_past_the_years_a_datetime_holds_counts_in_utc_days() -> None:
    ts = 10**17  # year 3170843
    assert NEW_YORK(ts) == utc_day_start(ts)
    assert NEW_YORK(BASE) != utc_day_start(BASE)  # New York midnight is not UTC midnight


def test_day_statistics_of_overflowing_sums_keep_their_last_vwap() -> None:
    stats = DayStats()
    stats.apply(Quote("AAPL", 10.0, 1, volume=0.0))
    first = stats.apply(Quote("AAPL", 10.0, 2, volume=5.0)).vwap
    huge = stats.apply(Quote("AAPL", 1e300, 3, volume=1e300))  # price × size passes a float's range
    assert first == 10.0 and huge.vwap == 10.0 and huge.high == 1e300
