"""Bar aggregation: boundaries, quiet intervals, late trades, provider bars, backfill, sessions, bounds."""

from __future__ import annotations

import gc
import random
import tracemalloc
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import orjson
import pytest

from ticker.bars import (
    HISTORY,
    INTERVALS,
    Bar,
    BarSeries,
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
    past = s.add_trade(T0 + 10_000, 100.0, 1)
    s.add_trade(T0 + 50_000, 101.0, 1)
    cur = s.add_trade(T0 + M + 1, 102.0, 1)
    assert s.add_trade(T0 + 55_000, 110.0, 7) is past  # late: arrives after the next bar opened
    assert s.add_trade(T0 + 56_000, 90.0, 2) is past
    assert ohlcv(past) == (T0, 100.0, 110.0, 90.0, 101.0, 11)
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
    assert s.last(2)[0] is fixed
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
    """Four trades a bar, their prices and sizes made while tracing: a bar keeps its own numbers alive."""
    rng = random.Random(7)
    s = BarSeries("1m")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2_880):
            for k in range(4):
                s.add_trade(T0 + i * M + k * 1_000, rng.uniform(100, 200), rng.randrange(1, 10**6))
        gc.collect()
        per_bar = (tracemalloc.get_traced_memory()[0] - before) / len(s)
    finally:
        tracemalloc.stop()
    assert len(s) == 2_880
    assert 100 < per_bar <= 240, per_bar  # the module docstring states 240


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
