"""Bar aggregation: boundaries, quiet intervals, late trades, provider bars, backfill, sessions, bounds."""

from __future__ import annotations

import gc
import random
import tracemalloc
from bisect import bisect_left
from collections import deque
from datetime import UTC, datetime, tzinfo
from itertools import islice
from operator import attrgetter
from zoneinfo import ZoneInfo

import orjson
import pytest

from ticker.bars import (
    HISTORY,
    INTERVALS,
    Bar,
    BarSeries,
    DayStart,
    InvalidInterval,
    SymbolBars,
    parse_interval,
    utc_day_start,
    zone_day_start,
)
from ticker.errors import BAD_REQUEST, ProtocolError
from ticker.quote import Quote

NY = ZoneInfo("America/New_York")
T0 = 1_700_000_040_000  # 2023-11-14 22:14:00 UTC, a whole minute
M = 60_000


def ms(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, tz: tzinfo = NY
) -> int:
    """Epoch ms of a wall time in ``tz`` (New York unless told)."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp() * 1000)


def ohlcv(bar: Bar | None) -> tuple[int, float, float, float, float, float]:
    assert bar is not None
    return (bar.t, bar.o, bar.h, bar.l, bar.c, bar.v)


# --- intervals ---


def test_parse_interval_accepts_the_five_names_only():
    assert [parse_interval(n) for n in ("1s", "1m", "5m", "1h", "1d")] == list(INTERVALS)
    for bad in ("1M", "2m", "", " 1m", "1min", "60", None, 60, ["1m"]):
        with pytest.raises(InvalidInterval) as err:
            parse_interval(bad)
        assert isinstance(err.value, ProtocolError) and isinstance(err.value, ValueError)
        assert err.value.code == BAD_REQUEST
        assert "expected one of 1s, 1m, 5m, 1h, 1d" in err.value.message
    with pytest.raises(InvalidInterval, match="invalid interval '2m'"):
        BarSeries("2m")
    with pytest.raises(InvalidInterval, match="invalid interval int"):
        parse_interval(5)


@pytest.mark.parametrize("interval", ["1s", "1m", "5m", "1h"])
def test_bars_align_to_the_epoch(interval):
    s = BarSeries(interval)
    length = INTERVALS[interval]
    ts = T0 + 3_723_456  # not aligned to anything above a millisecond
    bar = s.add_trade(ts, 10.0)
    assert bar is not None and bar.t % length == 0 and bar.t <= ts < bar.t + length
    assert s.add_trade(bar.t + length - 1, 11.0) is bar  # the last ms is still this bar
    nxt = s.add_trade(bar.t + length, 12.0)
    assert nxt is not None and nxt.t == bar.t + length and len(s) == 2


# --- trades ---


def test_trades_across_a_bar_boundary():
    s = BarSeries("1m")
    first = s.add_trade(T0 + 1_000, 100.0, 5)
    assert ohlcv(first) == (T0, 100.0, 100.0, 100.0, 100.0, 5)
    assert s.add_trade(T0 + 20_000, 103.0, 1) is first
    assert s.add_trade(T0 + 40_000, 98.5, 2) is first
    assert s.add_trade(T0 + 59_999, 101.0, 3) is first
    assert ohlcv(first) == (T0, 100.0, 103.0, 98.5, 101.0, 11)
    second = s.add_trade(T0 + M, 101.5, 4)
    assert second is not first and s.current is second
    assert ohlcv(second) == (T0 + M, 101.5, 101.5, 101.5, 101.5, 4)
    assert ohlcv(first) == (T0, 100.0, 103.0, 98.5, 101.0, 11)  # the closed bar is left alone
    assert [b.t for b in s.last(10)] == [T0, T0 + M]


def test_no_bar_is_invented_for_a_quiet_interval():
    s = BarSeries("1m")
    s.add_trade(T0 + 5, 10.0)
    s.add_trade(T0 + 3 * M + 5, 11.0)  # minutes 1 and 2 had no trade
    assert [b.t for b in s.last(10)] == [T0, T0 + 3 * M]
    assert s.range(T0 + M, T0 + 3 * M) == []
    assert BarSeries("1m").last(5) == [] and BarSeries("1m").current is None


def test_trades_without_size_give_bars_with_zero_volume():
    s = BarSeries("1s")
    for i, p in enumerate((5.0, 5.5, 4.5, 5.25)):
        s.add_trade(T0 + i * 100, p)
    assert ohlcv(s.current) == (T0, 5.0, 5.5, 4.5, 5.25, 0)


def test_a_late_trade_updates_its_own_bar_but_not_its_open_or_close():
    s = BarSeries("1m")
    s.add_trade(T0 + 10_000, 100.0, 1)
    s.add_trade(T0 + 50_000, 101.0, 1)
    cur = s.add_trade(T0 + M + 1, 102.0, 1)
    late = s.add_trade(T0 + 55_000, 110.0, 7)  # late: arrives after the next bar opened
    assert ohlcv(late) == (T0, 100.0, 110.0, 100.0, 101.0, 9)  # a copy of the (packed) past bar
    late = s.add_trade(T0 + 56_000, 90.0, 2)
    assert ohlcv(late) == (T0, 100.0, 110.0, 90.0, 101.0, 11) == ohlcv(s.last(2)[0])
    assert ohlcv(cur) == (T0 + M, 102.0, 102.0, 102.0, 102.0, 1) and s.current is cur


def test_a_late_trade_in_a_quiet_interval_opens_that_bar_in_place():
    s = BarSeries("1m")
    s.add_trade(T0, 1.0)
    s.add_trade(T0 + 3 * M, 3.0)
    late = s.add_trade(T0 + M + 30_000, 2.0, 9)
    assert ohlcv(late) == (T0 + M, 2.0, 2.0, 2.0, 2.0, 9)
    assert [b.t for b in s.last(5)] == [T0, T0 + M, T0 + 3 * M] and s.current is not late
    assert s.add_trade(T0 + 3 * M + 1, 3.5) is s.current  # the current bar is still the newest


def test_a_trade_older_than_a_full_history_is_dropped():
    s = BarSeries("1m", maxlen=3)
    for i in range(3):
        s.add_trade(T0 + i * M, 1.0 + i)
    before = [ohlcv(b) for b in s.last(3)]
    assert s.add_trade(T0 - 1, 9.0, 1) is None
    assert [ohlcv(b) for b in s.last(3)] == before
    # a late trade into a quiet interval inside a full history makes room by dropping the oldest bar
    s.add_trade(T0 + 5 * M, 6.0)
    assert [b.t for b in s.last(3)] == [T0 + M, T0 + 2 * M, T0 + 5 * M]
    assert s.add_trade(T0 + 3 * M, 4.0) is not None
    assert [b.t for b in s.last(3)] == [T0 + 2 * M, T0 + 3 * M, T0 + 5 * M]


# --- provider bars ---


def test_a_provider_bar_replaces_the_computed_one_and_freezes_it():
    s = BarSeries("1m")
    s.add_trade(T0 + 1, 10.0, 1)
    s.add_trade(T0 + 2, 12.0, 1)
    got = s.apply_bar(Bar(T0, 10.1, 12.5, 9.9, 11.0, 500))
    assert ohlcv(got) == (T0, 10.1, 12.5, 9.9, 11.0, 500) and s.current is got and s.is_final(T0)
    assert s.add_trade(T0 + 3, 50.0, 9) is None  # the provider counted this minute's trades
    assert ohlcv(s.current) == (T0, 10.1, 12.5, 9.9, 11.0, 500)
    nxt = s.add_trade(T0 + M, 11.5, 2)  # the next minute is computed again
    assert ohlcv(nxt) == (T0 + M, 11.5, 11.5, 11.5, 11.5, 2) and not s.is_final(T0 + M)


def test_late_repeated_and_corrected_provider_bars_win():
    s = BarSeries("1m")
    s.add_trade(T0 + 1, 10.0, 1)
    cur = s.add_trade(T0 + M + 1, 11.0, 1)
    late = s.apply_bar(Bar(T0, 9.0, 10.5, 8.5, 10.2, 300))  # published after the minute closed
    assert ohlcv(late) == (T0, 9.0, 10.5, 8.5, 10.2, 300) and s.current is cur
    assert s.apply_bar(Bar(T0, 9.0, 10.5, 8.5, 10.2, 300)) is not None  # repeated: same result, no duplicate
    assert len(s) == 2
    fixed = s.apply_bar(Bar(T0, 9.0, 10.7, 8.5, 10.3, 320))  # an "updated bar": the last word wins
    assert [ohlcv(b) for b in s.last(5)] == [(T0, 9.0, 10.7, 8.5, 10.3, 320), ohlcv(cur)]
    assert s.last(2)[0] == fixed
    assert s.add_trade(T0 + 30_000, 99.0, 5) is None  # a late trade of a published bar is ignored
    assert ohlcv(s.last(2)[0]) == (T0, 9.0, 10.7, 8.5, 10.3, 320)


def test_a_provider_bar_in_a_quiet_interval_or_ahead_of_the_trades():
    s = BarSeries("1m")
    s.add_trade(T0, 1.0)
    s.add_trade(T0 + 2 * M, 3.0)
    s.apply_bar(Bar(T0 + M, 2.0, 2.0, 2.0, 2.0, 1))
    ahead = s.apply_bar(Bar(T0 + 3 * M, 4.0, 4.0, 4.0, 4.0, 1))
    assert [b.t for b in s.last(9)] == [T0, T0 + M, T0 + 2 * M, T0 + 3 * M] and s.current is ahead
    assert s.add_trade(T0 + 3 * M + 5, 7.0) is None  # the new current bar is final


def test_a_non_final_provider_bar_keeps_taking_trades():
    s = BarSeries("1m")
    s.add_trade(T0 + 1, 10.0, 1)
    partial = s.apply_bar(Bar(T0, 10.0, 10.4, 9.8, 10.1, 40), final=False)  # a kline still filling
    assert not s.is_final(T0)
    assert s.add_trade(T0 + 2, 10.6, 2) is partial
    assert ohlcv(partial) == (T0, 10.0, 10.6, 9.8, 10.6, 42)
    s.apply_bar(Bar(T0, 10.0, 10.6, 9.7, 10.5, 45))  # then its final word
    assert s.add_trade(T0 + 3, 20.0, 1) is None and ohlcv(s.current) == (T0, 10.0, 10.6, 9.7, 10.5, 45)


def test_provider_bars_are_aligned_and_copied():
    s = BarSeries("1d", day_start=zone_day_start(NY))
    theirs = Bar(ms(2025, 6, 2, 9, 30), 1.0, 2.0, 0.5, 1.5, 10)  # a daily bar stamped at the open
    got = s.apply_bar(theirs)
    assert got is not theirs and got is not None and got.t == ms(2025, 6, 2)
    s.apply_bar(Bar(ms(2025, 6, 2, 9, 30), 1.0, 2.0, 0.5, 1.6, 11))
    assert theirs.c == 1.5 and len(s) == 1 and ohlcv(s.current)[4:] == (1.6, 11)


def test_a_provider_bar_older_than_a_full_history_is_dropped():
    s = BarSeries("1m", maxlen=2)
    s.add_trade(T0, 1.0)
    s.add_trade(T0 + M, 2.0)
    assert s.apply_bar(Bar(T0 - M, 9.0, 9.0, 9.0, 9.0)) is None
    assert [b.t for b in s.last(5)] == [T0, T0 + M]


# --- backfill ---


def test_backfill_merges_sorted_without_duplicates_and_the_provider_wins():
    s = BarSeries("1m")
    s.add_trade(T0 + 2 * M, 20.0, 1)  # computed before the history arrived
    s.add_trade(T0 + 4 * M, 40.0, 1)
    history = [
        Bar(T0 + 2 * M, 21.0, 22.0, 19.0, 21.5, 100),
        Bar(T0, 1.0, 1.0, 1.0, 1.0, 10),
        Bar(T0 + 3 * M, 30.0, 31.0, 29.0, 30.5, 300),
        Bar(T0, 1.1, 1.2, 1.0, 1.1, 11),  # a duplicate in the answer: the later one wins
    ]
    s.backfill(history)
    assert [ohlcv(b) for b in s.last(10)] == [
        (T0, 1.1, 1.2, 1.0, 1.1, 11),
        (T0 + 2 * M, 21.0, 22.0, 19.0, 21.5, 100),
        (T0 + 3 * M, 30.0, 31.0, 29.0, 30.5, 300),
        (T0 + 4 * M, 40.0, 40.0, 40.0, 40.0, 1),
    ]
    assert all(s.is_final(t) for t in (T0, T0 + 2 * M, T0 + 3 * M)) and not s.is_final(T0 + 4 * M)
    assert s.add_trade(T0 + 2 * M + 1, 99.0) is None  # history bars are authoritative
    assert s.add_trade(T0 + 4 * M + 1, 41.0, 1) is s.current and ohlcv(s.current)[4:] == (41.0, 2)


def test_backfill_leaves_the_bar_still_open_at_now_to_the_trades():
    s = BarSeries("1m")
    now = T0 + 2 * M + 20_000
    s.backfill([Bar(T0 + M, 1.0, 1.0, 1.0, 1.0, 1), Bar(T0 + 2 * M, 2.0, 2.0, 2.0, 2.0, 5)], now_ms=now)
    assert s.is_final(T0 + M) and not s.is_final(T0 + 2 * M)
    assert s.add_trade(now + 1, 2.5, 1) is s.current
    assert ohlcv(s.current) == (T0 + 2 * M, 2.0, 2.5, 2.0, 2.5, 6)
    assert ohlcv(s.add_trade(T0 + 3 * M, 3.0)) == (T0 + 3 * M, 3.0, 3.0, 3.0, 3.0, 0) and len(s) == 3


def test_backfill_keeps_the_newest_maxlen_bars_and_forgets_dropped_marks():
    s = BarSeries("1m", maxlen=3)
    s.backfill(Bar(T0 + i * M, 1.0, 1.0, 1.0, 1.0) for i in range(10))
    assert [b.t for b in s.last(5)] == [T0 + 7 * M, T0 + 8 * M, T0 + 9 * M]
    assert not s.is_final(T0) and s.is_final(T0 + 9 * M)
    s.backfill([])
    assert len(s) == 3
    empty = BarSeries("1m")
    empty.backfill([])
    assert empty.current is None and empty.add_trade(T0, 1.0) is empty.current


# --- sessions ---


def test_daily_bars_roll_over_at_new_york_midnight():
    s = BarSeries("1d", day_start=zone_day_start(NY))
    a = s.add_trade(ms(2025, 6, 2, 23, 59), 10.0, 1)
    b = s.add_trade(ms(2025, 6, 3, 0, 1), 11.0, 1)
    assert ohlcv(a) == (ms(2025, 6, 2), 10.0, 10.0, 10.0, 10.0, 1)
    assert ohlcv(b) == (ms(2025, 6, 3), 11.0, 11.0, 11.0, 11.0, 1)
    assert ms(2025, 6, 3) == ms(2025, 6, 3, 4, 0, tz=UTC)  # EDT: midnight is 04:00 UTC


@pytest.mark.parametrize(("day", "hours"), [((2025, 3, 9), 23), ((2025, 11, 2), 25)])
def test_daily_bars_follow_daylight_saving_days(day, hours):
    s = BarSeries("1d", day_start=zone_day_start(NY))
    start = ms(*day)
    first = s.add_trade(start, 1.0)
    assert first is not None and first.t == start
    assert s.add_trade(start + hours * 3_600_000 - 1, 2.0) is first  # the day's last ms
    nxt = s.add_trade(start + hours * 3_600_000, 3.0)
    assert nxt is not first and nxt is not None and nxt.t == start + hours * 3_600_000
    assert s.end_of(start) == start + hours * 3_600_000


def test_utc_days_for_24_7_markets():
    s = BarSeries("1d")
    assert utc_day_start(ms(2025, 6, 2, 23, 59, tz=UTC)) == ms(2025, 6, 2, tz=UTC)
    s.add_trade(ms(2025, 6, 2, 23, 59, 59, tz=UTC), 1.0)
    s.add_trade(ms(2025, 6, 3, 0, 0, 0, tz=UTC), 2.0)
    assert [b.t for b in s.last(5)] == [ms(2025, 6, 2, tz=UTC), ms(2025, 6, 3, tz=UTC)]


# --- quotes ---


def test_quotes_count_as_trades_by_volume_growth_or_price_change():
    bars = SymbolBars(zone_day_start(NY))
    m1 = bars.series["1m"]
    assert bars.on_quote(
        Quote("AAPL", 100.0, T0, bid=99.9, ask=100.1, volume=1_000)
    )  # the first: size unknown
    assert ohlcv(m1.current) == (T0, 100.0, 100.0, 100.0, 100.0, 0)
    assert bars.on_quote(
        Quote("AAPL", 100.0, T0 + 1, volume=1_200)
    )  # same price, volume grew: a trade of 200
    assert not bars.on_quote(Quote("AAPL", 100.0, T0 + 2, bid=99.8, ask=100.2, volume=1_200))  # bid/ask only
    assert bars.on_quote(Quote("AAPL", 100.5, T0 + 3, volume=1_250))
    assert ohlcv(m1.current) == (T0, 100.0, 100.5, 100.0, 100.5, 250)
    assert not bars.on_quote(Quote("AAPL", 100.5, T0 + M, volume=1_250))  # moves no bar, opens none
    assert len(m1) == 1
    for interval in INTERVALS:  # every interval took the same trades
        assert [b.v for b in bars.series[interval].last(10)] == [250]


def test_quotes_without_volume_give_price_bars():
    bars = SymbolBars()
    for i, p in enumerate((1.10, 1.10, 1.12, 1.09, 1.09)):
        bars.on_quote(Quote("EUR/USD", p, T0 + i * 1_000))
    assert ohlcv(bars.series["1m"].current) == (T0, 1.10, 1.12, 1.09, 1.09, 0)
    assert len(bars.series["1s"]) == 3  # the repeated prices moved nothing and opened no bar


def test_cumulative_volume_going_down_is_a_new_session():
    bars = SymbolBars(zone_day_start(NY))
    close = ms(2025, 6, 2, 19, 59)
    bars.on_quote(Quote("AAPL", 10.0, close, volume=5_000_000))
    bars.on_quote(Quote("AAPL", 10.1, close + 1_000, volume=5_000_300))
    bars.on_quote(Quote("AAPL", 10.3, ms(2025, 6, 3, 4, 0), volume=700))  # the volume restarted: 700 so far
    bars.on_quote(Quote("AAPL", 10.2, ms(2025, 6, 3, 4, 0, 5), volume=800))
    days = bars.series["1d"].last(5)
    assert [(b.t, b.o, b.c, b.v) for b in days] == [
        (ms(2025, 6, 2), 10.0, 10.1, 300),
        (ms(2025, 6, 3), 10.3, 10.2, 800),
    ]


def test_a_rolling_volume_that_drops_is_no_trade():
    bars = SymbolBars(rolling_volume=True)
    bars.on_quote(Quote("BTCUSDT", 100.0, T0, volume=9_000.0))
    assert bars.on_quote(Quote("BTCUSDT", 100.0, T0 + 1, volume=9_002.5))
    assert not bars.on_quote(Quote("BTCUSDT", 100.0, T0 + 2, volume=8_500.0))  # old trades left the window
    assert bars.on_quote(Quote("BTCUSDT", 101.0, T0 + 3, volume=8_400.0))  # a price change is still a trade
    assert bars.on_quote(Quote("BTCUSDT", 101.0, T0 + 4, volume=8_401.0))  # growth from the new baseline
    assert bars.series["1m"].current is not None and bars.series["1m"].current.v == 3.5


def test_symbol_bars_take_trades_with_their_sizes():
    bars = SymbolBars(intervals=("1m", "5m"), history={"1m": 10})
    bars.add_trade(T0 + 6 * M, 5.0, 3)
    bars.add_trade(T0 + 7 * M, 6.0, 4)
    assert list(bars.series) == ["1m", "5m"] and bars.series["1m"].maxlen == 10
    assert bars.series["5m"].maxlen == HISTORY["5m"]
    assert (T0 + 6 * M) % (5 * M) == 0  # T0 is the fifth minute of a 5m bar
    assert [ohlcv(b) for b in bars.series["5m"].last(5)] == [(T0 + 6 * M, 5.0, 6.0, 5.0, 6.0, 7)]


# --- bounds ---


def test_history_is_bounded_under_a_long_stream():
    assert HISTORY["1m"] >= 2 * 24 * 60  # the current and the previous 24-hour session
    s = BarSeries("1m")
    n = HISTORY["1m"]
    for i in range(3 * n):
        s.add_trade(T0 + i * M + 1, float(i))
        if i % 2:
            s.apply_bar(Bar(T0 + (i - 1) * M, 0.0, 0.0, 0.0, 0.0))  # marks on half the bars
    assert len(s) == n and s.last(1)[0].t == T0 + (3 * n - 1) * M and s.last(n)[0].t == T0 + 2 * n * M
    assert not s.is_final(T0) and s.is_final(T0 + (3 * n - 2) * M)
    assert len(s._final) <= n  # marks of dropped bars are dropped with them


def test_bytes_per_bar_stay_within_the_stated_bound():
    """Every series of a symbol filled and then rolled on by a third (the oldest dropped, the arrays' dead
    front cut now and then), four trades a bar, their prices and sizes made while tracing: at most 64 bytes
    a bar at any time, as the module docstring states (a ``Bar`` object a bar took about 225)."""
    rng = random.Random(7)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        bars = SymbolBars()
        worst = 0.0
        for interval, s in bars.series.items():
            start = tracemalloc.get_traced_memory()[0]
            n = s.maxlen
            for i in range(n + n // 3):
                for k in range(4):
                    s.add_trade(
                        T0 + i * INTERVALS[interval] + k, rng.uniform(100, 200), rng.randrange(1, 10**6)
                    )
                if i >= n and i % 4 == 0:
                    worst = max(worst, (tracemalloc.get_traced_memory()[0] - start) / len(s))
        gc.collect()
        full = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert [len(s) for s in bars.series.values()] == list(HISTORY.values()) and sum(HISTORY.values()) == 5_058
    assert 49 <= full / 5_058 <= worst <= 64, (full / 5_058, worst)  # 49: a bar's numbers in the arrays
    assert full <= 0.33e6  # the module docstring's "about 0.3 MB"


# --- reading ---


def test_range_bounds_and_limit():
    s = BarSeries("1m")
    for i in range(10):
        s.add_trade(T0 + i * M, float(i))

    def starts(bars: list[Bar]) -> list[int]:
        return [(b.t - T0) // M for b in bars]

    assert starts(s.range()) == list(range(10))
    assert starts(s.range(T0 + 2 * M, T0 + 5 * M)) == [2, 3, 4]  # from inclusive, to exclusive
    assert starts(s.range(T0 + 2 * M + 1, T0 + 5 * M + 1)) == [3, 4, 5]  # by bar start
    assert starts(s.range(T0 + 2 * M, limit=3)) == [2, 3, 4]  # only from: the oldest, paging forward
    assert starts(s.range(to_ms=T0 + 8 * M, limit=3)) == [5, 6, 7]  # to: the newest before it
    assert starts(s.range(limit=2)) == [8, 9]
    assert starts(s.range(T0 + 2 * M, T0 + 8 * M, limit=2)) == [6, 7]
    assert s.range(T0 + 5 * M, T0 + 5 * M) == [] and s.range(T0 + 6 * M, T0 + 2 * M) == []
    assert s.range(T0 + 20 * M) == [] and s.range(to_ms=T0) == []
    with pytest.raises(ValueError, match="limit"):
        s.range(limit=0)
    assert starts(s.last(3)) == [7, 8, 9] and starts(s.last(50)) == list(range(10)) and s.last(0) == []


# --- wire ---


def test_bar_encoding():
    bar = Bar(T0, 1.5, 2.0, 1.25, 1.75, 1200)
    assert bar.encode() == b'{"t":%d,"o":1.5,"h":2.0,"l":1.25,"c":1.75,"v":1200}' % T0
    assert orjson.loads(bar.encode()) == bar.to_json()
    assert orjson.loads(orjson.dumps({"data": [bar]})) == {"data": [bar.to_json()]}
    assert Bar(T0, 1.0, 1.0, 1.0, 1.0).encode().endswith(b'"v":0}')


def test_a_backfill_of_the_bar_still_filling_keeps_the_trades_counted_here_since():
    s = BarSeries("1m")
    now = T0 + 30_000
    s.add_trade(T0 + 1_000, 10.0, 5)
    s.add_trade(T0 + 25_000, 12.5, 5)  # after the provider's snapshot below was taken
    s.backfill([Bar(T0, 9.5, 11.0, 9.0, 10.5, 8)], now_ms=now)
    assert ohlcv(s.current) == (
        T0,
        9.5,
        12.5,
        9.0,
        12.5,
        10,
    )  # its open, the wider range, our close and volume
    assert not s.is_final(T0)


def test_a_negative_or_infinite_volume_counts_as_none() -> None:
    bars = SymbolBars()
    assert bars.on_quote(Quote("X", 10.0, T0, volume=100))
    assert bars.on_quote(Quote("X", 11.0, T0 + 1, volume=-5))  # a trade (the price moved), of no size
    assert bars.on_quote(Quote("X", 12.0, T0 + 2, volume=float("inf")))
    assert all(b.v >= 0 and b.v != float("inf") for s in bars.series.values() for b in s.last(5))


@pytest.mark.parametrize("days", ["utc", "new_york"])
def test_quotes_move_every_series_as_its_own_add_trade_would_whatever_comes_between(days: str) -> None:
    """The quote path updates the current bars of all five series at once while they all hold the trade: the
    same bars as each series' add_trade, across bar rollovers, late trades, provider bars (final or not),
    backfills and resizes in between."""
    day_start = zone_day_start(NY) if days == "new_york" else utc_day_start
    small = {"1s": 3, "1m": 2, "5m": 4, "1h": 2, "1d": 2}
    bars = SymbolBars(day_start, history=small)
    model = {i: BarSeries(i, small[i], day_start) for i in INTERVALS}
    pick = random.Random(days)
    t, price, volume = T0, 100.0, 1_000
    assert bars.on_quote(Quote("X", price, t, volume=volume))  # the first: a trade of no known size
    for s in model.values():
        s.add_trade(t, price, 0)
    for _ in range(6_000):
        r = pick.random()
        if r < 0.85:
            t += pick.choice([0, 10, 400, 1_000, 40_000, 600_000, 5_000_000, -50, -2_000, -70_000])
            size = pick.choice([0, 100, 700])
            volume += size
            new_price = pick.choice([price, round(price + pick.uniform(-1, 1), 2)])
            traded = size > 0 or new_price != price
            price = new_price
            assert bars.on_quote(Quote("X", price, t, volume=volume)) is traded
            if traded:
                for s in model.values():
                    s.add_trade(t, price, size)
        else:
            interval = pick.choice(list(INTERVALS))
            at = t + pick.choice([0, -1_000, -M, 1_000, M, 3_600_000])
            if r < 0.93:
                final = pick.random() < 0.5
                for s in (bars.series[interval], model[interval]):
                    s.apply_bar(Bar(at, price, price + 1, price - 1, price, 5), final)
            elif r < 0.97:
                now = pick.choice([None, t])
                for s in (bars.series[interval], model[interval]):
                    s.backfill([Bar(at, price, price + 2, price - 2, price, 7)], now)
            else:
                n = pick.randrange(1, 6)
                for s in (bars.series[interval], model[interval]):
                    s.resize(n)
        for interval, s in model.items():
            got = bars.series[interval]
            assert [ohlcv(b) for b in got.last(10)] == [ohlcv(b) for b in s.last(10)], interval


# --- the packed past bars ---


def wire(bars: list[Bar]) -> list[bytes]:
    """The bars' wire forms: their numbers and whether each is an int or a float."""
    return [b.encode() for b in bars]


def test_the_oldest_bars_go_one_by_one_across_the_cuts_of_the_arrays_front():
    s = BarSeries("1m", maxlen=20)
    heads = []
    for i in range(300):
        s.add_trade(T0 + i * M, float(i), i)
        if i % 3 == 0:
            s.apply_bar(
                Bar(T0 + i * M, float(i), i + 0.5, float(i), float(i), i)
            )  # a mark on every third bar
        heads.append(s._head)
        first = max(0, i - 19)
        assert [b.t for b in s.last(25)] == [T0 + j * M for j in range(first, i + 1)]
        assert [(type(b.v), b.v) for b in s.range(limit=25)] == [(int, j) for j in range(first, i + 1)]
        assert s._final == {T0 + j * M for j in range(first, i + 1) if j % 3 == 0}
    assert max(heads) > 0 and heads.count(0) > 20  # the front was cut again and again (amortized moves)
    assert len(s) == 20 and len(s._t) <= 20 + 9


def test_late_trades_and_provider_bars_go_into_the_packed_bars():
    s = BarSeries("1m", maxlen=6)
    for i in (0, 1, 3, 4):
        s.add_trade(T0 + i * M, 10.0 + i, 1)
    cur = s.current
    assert ohlcv(s.add_trade(T0 + M + 5, 12.5, 2)) == (T0 + M, 11.0, 12.5, 11.0, 11.0, 3)  # late: h, v
    assert ohlcv(s.add_trade(T0 + M + 6, 10.5, 2)) == (T0 + M, 11.0, 12.5, 10.5, 11.0, 5)  # late: l, v
    assert ohlcv(s.add_trade(T0 + 2 * M + 9, 9.0, 4)) == (T0 + 2 * M, 9.0, 9.0, 9.0, 9.0, 4)  # a quiet minute
    assert [b.t for b in s.last(9)] == [T0 + i * M for i in range(5)] and s.current is cur
    got = s.apply_bar(Bar(T0 + 3 * M, 13.0, 14.0, 12.0, 13.5, 70))  # a provider's final word on a past bar
    assert ohlcv(got) == (T0 + 3 * M, 13.0, 14.0, 12.0, 13.5, 70) and s.is_final(T0 + 3 * M)
    assert s.add_trade(T0 + 3 * M + 1, 99.0, 1) is None and ohlcv(s.last(2)[0]) == ohlcv(got)
    s.apply_bar(Bar(T0 + 2 * M, 9.0, 9.5, 8.5, 9.2, 5), final=False)  # still filling: trades go on
    assert ohlcv(s.add_trade(T0 + 2 * M + 1, 9.9, 1)) == (T0 + 2 * M, 9.0, 9.9, 8.5, 9.2, 6)
    s.apply_bar(Bar(T0 + 5 * M + M // 2, 1.0, 1.0, 1.0, 1.0))  # a new current bar; the series is full
    assert len(s) == 6 and s.current is not cur and s.current is not None and s.current.t == T0 + 5 * M
    assert s.add_trade(T0 - M, 5.0) is None and s.apply_bar(Bar(T0 - M, 5.0, 5.0, 5.0, 5.0)) is None
    # a quiet minute inside a full history: the oldest bar makes room, then it is the oldest that is refused
    s.backfill([Bar(T0 + 7 * M, 2.0, 2.0, 2.0, 2.0)])
    assert [b.t for b in s.last(9)] == [T0 + i * M for i in (1, 2, 3, 4, 5, 7)]
    assert ohlcv(s.add_trade(T0 + 6 * M, 6.0, 1)) == (T0 + 6 * M, 6.0, 6.0, 6.0, 6.0, 1)
    assert [b.t for b in s.last(9)] == [T0 + i * M for i in (2, 3, 4, 5, 6, 7)]
    assert s.add_trade(T0 + M + 1, 1.0) is None and s.apply_bar(Bar(T0 + M, 1.0, 1.0, 1.0, 1.0)) is None
    assert not s.is_final(T0 + M) and len(s._final) == 3  # 3m, 5m (applied final) and 7m (history)


def test_resize_shrinks_and_grows_the_packed_bars():
    s = BarSeries("1s", maxlen=10)
    for i in range(10):
        s.add_trade(T0 + i * 1_000, float(i), i)
    s.apply_bar(Bar(T0 + 2_000, 2.0, 2.0, 2.0, 2.0, 2))
    s.apply_bar(Bar(T0 + 8_000, 8.0, 8.0, 8.0, 8.0, 8))
    cur = s.current
    s.resize(4)
    assert [b.v for b in s.last(10)] == [6, 7, 8, 9] and s.current is cur and s._final == {T0 + 8_000}
    assert (
        s.add_trade(T0 + 9_500, 9.5, 1) is cur and cur is not None and cur.v == 10
    )  # the current bar still takes trades
    s.resize(8)
    for i in range(10, 16):
        s.add_trade(T0 + i * 1_000, float(i), i)
    assert [b.v for b in s.last(10)] == [8, 10, 10, 11, 12, 13, 14, 15]  # 9s took the trade above
    s.resize(1)
    assert wire(s.last(5)) == wire([Bar(T0 + 15_000, 15.0, 15.0, 15.0, 15.0, 15)]) and not s._final
    s.apply_bar(Bar(T0 + 15_000, 1.0, 1.0, 1.0, 1.0))
    nxt = s.add_trade(T0 + 16_000, 16.0)
    assert s.last(5) == [nxt] and s.current is nxt and not s._final and len(s._t) == 0
    assert s.add_trade(T0 + 15_500, 1.0) is None  # the only bar is the current one: no room below it


def test_backfill_merges_the_packed_bars_the_current_one_and_the_history():
    s = BarSeries("1m", maxlen=5)
    for i in (1, 2, 4):
        s.add_trade(T0 + i * M + 1, 10.0 + i, 100)
    cur = s.current
    s.backfill([Bar(T0, 1.0, 1.5, 0.5, 1.25, 7), Bar(T0 + 2 * M, 2.0, 20.0, 2.0, 3.0, 9.5)])
    assert wire(s.last(9)) == wire(
        [
            Bar(T0, 1.0, 1.5, 0.5, 1.25, 7),
            Bar(T0 + M, 11.0, 11.0, 11.0, 11.0, 100),
            Bar(T0 + 2 * M, 2.0, 20.0, 2.0, 3.0, 9.5),
            Bar(T0 + 4 * M, 14.0, 14.0, 14.0, 14.0, 100),
        ]
    )
    assert s.current is cur and s.add_trade(T0 + 4 * M + 2, 15.0, 1) is cur  # not in the history: kept as is
    s.backfill([Bar(T0 + 4 * M, 13.0, 13.5, 13.0, 13.2, 50), Bar(T0 + 3 * M, 3.0, 3.0, 3.0, 3.0)], T0 + 4 * M)
    assert ohlcv(s.current) == (T0 + 4 * M, 13.0, 15.0, 13.0, 15.0, 101) and s.current is not cur
    assert [b.t for b in s.last(9)] == [T0 + i * M for i in range(5)] and not s.is_final(T0 + 4 * M)
    s.backfill([Bar(T0 + 6 * M, 6.0, 6.0, 6.0, 6.0)])
    assert [b.t for b in s.last(9)] == [T0 + i * M for i in (1, 2, 3, 4, 6)] and s.is_final(T0 + 6 * M)
    assert s.add_trade(T0 + 6 * M + 1, 7.0) is None and len(s) == 5


def test_range_and_last_at_the_edge_of_the_packed_bars_and_the_current_one():
    s = BarSeries("1m")
    for i in range(5):
        s.add_trade(T0 + i * M, float(i), 1)
    cur = s.current
    assert cur is not None and s.last(1) == [cur] and s.last(1)[0] is cur and s.last(2)[1] is cur
    assert [b.t for b in s.last(2)] == [T0 + 3 * M, T0 + 4 * M]
    assert [b.t for b in s.range(to_ms=T0 + 4 * M)] == [T0 + i * M for i in range(4)]  # without the current
    assert s.range(T0 + 4 * M)[0] is cur and len(s.range(T0 + 4 * M)) == 1
    assert [b.t for b in s.range(T0 + 3 * M, limit=2)] == [T0 + 3 * M, T0 + 4 * M]
    assert [b.t for b in s.range(T0 + 3 * M + 1, T0 + 4 * M + 1)] == [T0 + 4 * M]
    assert [b.t for b in s.range(T0 + 3 * M, T0 + 4 * M)] == [T0 + 3 * M]
    assert [b.t for b in s.range(limit=1)] == [T0 + 4 * M] and s.range(limit=1)[0] is cur
    assert [b.t for b in s.range(to_ms=T0 + 4 * M, limit=1)] == [T0 + 3 * M]
    assert s.range(T0 + 4 * M + 1) == [] and s.range(T0 + 9 * M, T0 + 10 * M) == []
    past = s.last(2)[0]
    past.h = 1e9  # a copy: the series keeps its own numbers
    assert s.last(2)[0].h == 3.0


def test_numbers_a_double_does_not_hold_stay_exact():
    s = BarSeries("1s", maxlen=4)
    s.add_trade(T0, 1.0, 2**60 + 1)  # a volume past a double's 53 bits
    s.add_trade(T0 + 1_000, 2.0, True)  # a bool, as is
    s.add_trade(T0 + 2_000, 3.0, 5)
    s.add_trade(2**64 - 1, 4.0, 0.5)  # a start past an int64 (a feed's bad clock)
    s.add_trade(2**64 + 5_000, 5.0, 6)
    assert [(type(b.v), b.v) for b in s.last(9)] == [(bool, True), (int, 5), (float, 0.5), (int, 6)]
    assert [b.t for b in s.last(9)] == [
        s.align(t) for t in (T0 + 1_000, T0 + 2_000, 2**64 - 1, 2**64 + 5_000)
    ]
    s.resize(5)
    s.add_trade(T0 + 500, 0.5, 1)  # a late trade into the listed numbers
    assert [(b.t, type(b.v), b.v) for b in s.last(9)[:3]] == [
        (T0, int, 1),
        (T0 + 1_000, bool, True),
        (T0 + 2_000, int, 5),
    ]
    s.backfill([Bar(T0, 1.0, 1.0, 1.0, 1.0, 2**60 + 3)])
    assert [(type(b.v), b.v) for b in s.last(9)] == [
        (int, 2**60 + 3),
        (bool, True),
        (int, 5),
        (float, 0.5),
        (int, 6),
    ]


class DequeSeries:
    """The oracle: a series as it was before its past bars were packed (a deque of Bar objects), same rules."""

    def __init__(self, interval: str, maxlen: int, day_start: DayStart) -> None:
        self.maxlen, self._ms, self._daily, self._day_start = (
            maxlen,
            INTERVALS[interval],
            interval == "1d",
            day_start,
        )
        self._bars: deque[Bar] = deque(maxlen=maxlen)
        self._final: set[int] = set()

    def __len__(self) -> int:
        return len(self._bars)

    def resize(self, maxlen: int) -> None:
        if maxlen != self.maxlen:
            self.maxlen = maxlen
            self._bars = deque(self._bars, maxlen=maxlen)
            first = self._bars[0].t if self._bars else None
            self._final = {t for t in self._final if first is not None and t >= first}

    @property
    def current(self) -> Bar | None:
        return self._bars[-1] if self._bars else None

    def align(self, ts_ms: int) -> int:
        return self._day_start(ts_ms) if self._daily else ts_ms - ts_ms % self._ms

    def end_of(self, start: int) -> int:
        return self._day_start(start + 36 * 3_600_000) if self._daily else start + self._ms

    def add_trade(self, ts_ms: int, price: float, size: float = 0) -> Bar | None:
        cur = self.current
        if cur is not None and cur.t <= ts_ms < self.end_of(cur.t):
            if cur.t in self._final:
                return None
            if price > cur.h:
                cur.h = price
            elif price < cur.l:
                cur.l = price
            cur.c = price
            if size:
                cur.v += size
            return cur
        if (cur is None and ts_ms >= 0) or (cur is not None and ts_ms >= self.end_of(cur.t)):
            bar = Bar(self.align(ts_ms), price, price, price, price, size)
            self._append(bar)
            return bar
        start = self.align(ts_ms)
        bars = self._bars
        i = bisect_left(bars, start, key=attrgetter("t"))
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
        return bar if self._insert(i, bar) else None

    def apply_bar(self, bar: Bar, final: bool = True) -> Bar | None:
        start = self.align(bar.t)
        new = Bar(start, bar.o, bar.h, bar.l, bar.c, bar.v)
        bars = self._bars
        if not bars or start > bars[-1].t:
            self._mark(start, final)
            self._append(new)
            return new
        i = bisect_left(bars, start, key=attrgetter("t"))
        if bars[i].t == start:
            bars[i] = new
        elif not self._insert(i, new):
            return None
        self._mark(start, final)
        return new

    def backfill(self, bars: list[Bar], now_ms: int | None = None) -> None:
        merged = {b.t: b for b in self._bars}
        final = self._final
        for b in bars:
            start = self.align(b.t)
            ended = now_ms is None or self.end_of(start) <= now_ms
            held = merged.get(start)
            if held is not None and not ended:
                merged[start] = Bar(start, b.o, max(b.h, held.h), min(b.l, held.l), held.c, max(b.v, held.v))
            else:
                merged[start] = Bar(start, b.o, b.h, b.l, b.c, b.v)
            self._mark(start, ended)
        keep = sorted(merged)[-self.maxlen :]
        self._bars.clear()
        self._bars.extend(merged[t] for t in keep)
        self._final = {t for t in final if t >= keep[0]} if keep else set()

    def last(self, n: int) -> list[Bar]:
        bars = self._bars
        return list(islice(bars, max(0, len(bars) - n), None)) if n > 0 else []

    def range(self, from_ms: int | None = None, to_ms: int | None = None, limit: int = 500) -> list[Bar]:
        bars = self._bars
        lo = 0 if from_ms is None else bisect_left(bars, from_ms, key=attrgetter("t"))
        hi = len(bars) if to_ms is None else bisect_left(bars, to_ms, key=attrgetter("t"))
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

    def _insert(self, i: int, bar: Bar) -> bool:
        bars = self._bars
        if len(bars) == self.maxlen:
            if i == 0:
                return False
            self._final.discard(bars.popleft().t)
            i -= 1
        bars.insert(i, bar)
        return True


def shown(bar: Bar | None) -> bytes | None:
    return None if bar is None else bar.encode()


@pytest.mark.parametrize(
    ("interval", "maxlen", "days"),
    [
        ("1s", 1, "utc"),
        ("1s", 3, "utc"),
        ("1m", 7, "utc"),
        ("1m", 40, "utc"),
        ("5m", 120, "utc"),
        ("1d", 9, "ny"),
    ],
)
def test_packed_series_do_what_the_deque_of_bar_objects_did(interval: str, maxlen: int, days: str) -> None:
    """Random trades (current, late, into quiet intervals, older than the history), provider bars, backfills,
    resizes and reads, the same on the packed series and on the old deque of ``Bar`` objects: the same bars
    (their wire forms: an int stays an int), the same marks and the same answers, after every step."""
    day_start = zone_day_start(NY) if days == "ny" else utc_day_start
    got, want = BarSeries(interval, maxlen, day_start), DequeSeries(interval, maxlen, day_start)
    pick = random.Random(f"{interval}/{maxlen}/{days}")
    ms_ = INTERVALS[interval]
    now = T0

    def number() -> float:
        return pick.choice([round(pick.uniform(1, 200), 2), pick.randrange(1, 200), 0, 0.0])

    def some_bar(at: int) -> Bar:
        lo, hi = sorted((number(), number()))
        return Bar(at, pick.choice([lo, hi]), hi, lo, pick.choice([lo, hi]), pick.choice([0, 7, 2.5, 10**6]))

    for step in range(2_500):
        r = pick.random()
        at = now + pick.choice(
            [0, 1, -1, ms_ // 2, -ms_, -3 * ms_, -maxlen * ms_, -10 * maxlen * ms_, 5 * ms_]
        )
        if r < 0.6:
            now += pick.choice([0, 0, 1, ms_ // 3, ms_, 2 * ms_, 9 * ms_])
            ts = now if r < 0.4 else at
            price, size = number(), pick.choice([0, 1, 100, 0.5, 2.25])
            assert shown(got.add_trade(ts, price, size)) == shown(want.add_trade(ts, price, size)), step
        elif r < 0.8:
            bar, final = some_bar(at), pick.random() < 0.6
            assert shown(got.apply_bar(bar, final)) == shown(want.apply_bar(bar, final)), step
        elif r < 0.88:
            history = [
                some_bar(now - pick.randrange(-2, 3 * maxlen + 3) * ms_) for _ in range(pick.randrange(7))
            ]
            cut = pick.choice([None, now, now - ms_])
            got.backfill(history, cut)
            want.backfill(history, cut)
        elif r < 0.92:
            n = pick.choice([1, 2, maxlen, maxlen + 5, max(1, maxlen // 2)])
            got.resize(n)
            want.resize(n)
        else:
            lo = pick.choice([None, now, at, now - maxlen * ms_ // 2, now + 1])
            hi = pick.choice([None, now, at + 1, now - ms_, now + ms_])
            limit = pick.choice([1, 2, 3, maxlen, 500])
            assert wire(got.range(lo, hi, limit)) == wire(want.range(lo, hi, limit)), step
        n = pick.choice([1, 2, 5, maxlen, maxlen + 3])
        assert len(got) == len(want) and wire(got.last(n)) == wire(want.last(n)), step
        assert shown(got.current) == shown(want.current) and got._final == want._final, step
        if got.current is not None:
            assert got.last(1)[0] is got.current and got.range(got.current.t)[0] is got.current
    assert wire(got.last(maxlen + 10)) == wire(want.last(maxlen + 10))
