"""The server's day statistics: open, high, low, VWAP and previous close per symbol and session."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import pytest

from ticker.bars import utc_day_start
from ticker.daystats import DayStats, listing_sessions, new_york_day_start
from ticker.directory import Directory, SymbolInfo
from ticker.quote import Quote, encode_entry

DAY = 86_400_000
T0 = int(datetime(2026, 3, 10, 14, 0, tzinfo=UTC).timestamp() * 1000)  # 10:00 in New York
MIDNIGHT = utc_day_start(T0) + DAY  # the next midnight UTC


def q(price: float, ts: int = T0, symbol: str = "AAPL", **fields: float | None) -> Quote:
    return Quote(symbol, price, ts, **fields)  # type: ignore[arg-type]


def day(quote: Quote) -> tuple[float | None, ...]:
    return quote.open, quote.high, quote.low, quote.vwap, quote.prev_close


def test_open_high_low_follow_the_prices_of_the_session() -> None:
    stats = DayStats()
    assert day(stats.apply(q(100.0))) == (100.0, 100.0, 100.0, None, None)
    assert day(stats.apply(q(101.5, T0 + 1))) == (100.0, 101.5, 100.0, None, None)
    assert day(stats.apply(q(99.25, T0 + 2))) == (100.0, 101.5, 99.25, None, None)
    assert day(stats.apply(q(100.5, T0 + 3))) == (100.0, 101.5, 99.25, None, None)
    other = stats.apply(q(7.0, T0 + 4, "KO"))  # each symbol has its own
    assert day(other) == (7.0, 7.0, 7.0, None, None) and len(stats) == 2


def test_vwap_weighs_prices_by_the_growth_of_the_cumulative_volume() -> None:
    stats = DayStats()
    first = stats.apply(q(100.0, volume=5_000))  # the volume before it is of unknown prices: only a base
    assert first.vwap is None
    stats.apply(q(101.0, T0 + 1, volume=5_100))  # 100 at 101
    stats.apply(q(101.0, T0 + 2, bid=100.9, volume=5_100))  # a bid/ask update: nothing traded
    third = stats.apply(q(104.0, T0 + 3, volume=5_400))  # 300 at 104
    assert third.vwap == pytest.approx((101.0 * 100 + 104.0 * 300) / 400)
    assert stats.apply(q(90.0, T0 + 4)).vwap == third.vwap  # a quote without volume adds nothing


def test_vwap_is_rounded_to_seven_significant_digits_of_the_open() -> None:
    stats = DayStats()
    stats.apply(q(228.51, volume=0))
    stats.apply(q(228.51, T0 + 1, volume=1))
    assert stats.apply(q(228.52, T0 + 2, volume=3)).vwap == 228.5167  # 228.516666...
    coin = DayStats()
    coin.apply(q(0.00001234, symbol="SHIBUSD", volume=0))
    coin.apply(q(0.00001234, T0 + 1, "SHIBUSD", volume=1))
    assert coin.apply(q(0.00001235, T0 + 2, "SHIBUSD", volume=3)).vwap == 0.00001234667


def test_without_trade_sizes_there_is_no_vwap() -> None:
    stats = DayStats()
    for i, price in enumerate((10.0, 10.5, 9.5)):
        got = stats.apply(q(price, T0 + i))
    assert day(got) == (10.0, 10.5, 9.5, None, None)
    assert "vw" not in orjson.loads(encode_entry(got, 1))


def test_a_volume_going_down_is_a_new_base_not_a_trade() -> None:
    stats = DayStats()  # a rolling 24-hour volume (or a provider's new day) shrinks: no negative size
    stats.apply(q(10.0, volume=1_000))
    stats.apply(q(12.0, T0 + 1, volume=1_100))  # 100 at 12
    stats.apply(q(50.0, T0 + 2, volume=400))  # down: the base only
    last = stats.apply(q(11.0, T0 + 3, volume=500))  # 100 at 11
    assert last.vwap == pytest.approx(11.5)


def test_a_feed_s_own_values_win() -> None:
    stats = DayStats()
    stats.apply(q(100.0, volume=10))
    got = stats.apply(
        q(105.0, T0 + 1, volume=20, open=98.0, high=106.0, low=97.0, vwap=101.0, prev_close=99.0)
    )
    assert day(got) == (98.0, 106.0, 97.0, 101.0, 99.0)
    # a feed with only a high: the rest computed
    partial = stats.apply(q(103.0, T0 + 2, volume=30, high=106.0))
    assert day(partial) == (100.0, 106.0, 100.0, pytest.approx((105.0 * 10 + 103.0 * 10) / 20), None)


def test_a_new_session_starts_afresh_with_the_last_price_as_previous_close() -> None:
    stats = DayStats()  # midnight UTC
    stats.apply(q(100.0, MIDNIGHT - 3_000, volume=1_000))
    stats.apply(q(104.0, MIDNIGHT - 2_000, volume=1_100))
    stats.apply(q(98.0, MIDNIGHT - 1, volume=1_200))
    first = stats.apply(q(99.0, MIDNIGHT, volume=1_300))  # the volume runs on: its growth is today's
    assert day(first) == (99.0, 99.0, 99.0, 99.0, 98.0)
    feed_pc = stats.apply(q(99.5, MIDNIGHT + 1, prev_close=97.0))  # the feed's previous close wins
    assert feed_pc.prev_close == 97.0 and feed_pc.open == 99.0
    late = stats.apply(q(103.0, MIDNIGHT - 500))  # a quote of yesterday: passes untouched, counts for nothing
    assert day(late) == (None, None, None, None, None)
    assert day(stats.apply(q(99.2, MIDNIGHT + 2))) == (99.0, 99.5, 99.0, 99.0, 98.0)
    days_later = stats.apply(q(80.0, MIDNIGHT + 3 * DAY + 5))  # sessions without quotes in between
    assert day(days_later) == (80.0, 80.0, 80.0, None, 99.2)


def test_new_york_sessions_start_at_midnight_in_new_york_across_daylight_saving() -> None:
    ny = new_york_day_start()
    if ny is None:
        pytest.skip("no time zone database")
    stats = DayStats(ny)
    # 2026-03-08 is 23 hours long in New York: midnight EST is 05:00 UTC, the next one (EDT) 04:00 UTC
    before = int(datetime(2026, 3, 9, 3, 59, 59, tzinfo=UTC).timestamp() * 1000)
    stats.apply(q(50.0, before - 20 * 3_600_000))
    assert stats.apply(q(52.0, before)).open == 50.0  # 23:59:59 EDT on the 8th: the same session
    after = stats.apply(q(51.0, before + 1_000))  # midnight EDT: a new one
    assert day(after) == (51.0, 51.0, 51.0, None, 52.0)
    utc = DayStats()  # UTC days by default: both are of the 9th
    utc.apply(q(50.0, before))
    assert utc.apply(q(51.0, before + 1_000)).open == 50.0


def test_sessions_by_listing_new_york_for_us_equities_utc_for_the_rest() -> None:
    ny = new_york_day_start()
    if ny is None:
        pytest.skip("no time zone database")
    directory = Directory()
    directory.replace(
        "feed",
        [
            SymbolInfo("AAPL", "Apple Inc.", "NASDAQ", "stock", "USD"),
            SymbolInfo("SPY", "SPDR S&P 500 ETF", "NYSE Arca", "etf", "USD"),
            SymbolInfo("BTC-USD", "Bitcoin", "Coinbase", "crypto", "USD"),
            SymbolInfo("7203.T", "Toyota", "Tokyo", "stock", "JPY"),
        ],
    )
    session_of = listing_sessions(lambda: directory, ny)
    assert session_of("AAPL") is ny and session_of("SPY") is ny
    assert session_of("BTC-USD") is utc_day_start and session_of("7203.T") is utc_day_start
    assert session_of("NOTYET") is utc_day_start  # not listed (yet): UTC until its next session
    assert listing_sessions(lambda: directory, None)("AAPL") is utc_day_start  # no time zone database
    stats = DayStats(session_of=session_of)
    t = int(datetime(2026, 3, 10, 1, 0, tzinfo=UTC).timestamp() * 1000)  # 21:00 on the 9th in New York
    stats.apply(q(10.0, t - 2 * 3_600_000, "AAPL"))
    stats.apply(q(10.0, t - 2 * 3_600_000, "BTC-USD"))
    assert stats.apply(q(11.0, t, "AAPL")).open == 10.0  # still the 9th in New York
    assert stats.apply(q(11.0, t, "BTC-USD")).open == 11.0  # a new UTC day


def test_memory_is_bounded_by_forgetting_the_symbol_seen_first() -> None:
    stats = DayStats(max_symbols=2)
    stats.apply(q(1.0, symbol="A"))
    stats.apply(q(2.0, symbol="B"))
    stats.apply(q(3.0, symbol="C"))
    assert len(stats) == 2
    assert stats.apply(q(5.0, T0 + 1, "A")).open == 5.0  # forgotten: starts afresh
    assert stats.apply(q(9.0, T0 + 1, "C")).open == 3.0


def test_filled_quotes_encode_the_day_statistics_and_a_change_relative_to_the_previous_close() -> None:
    stats = DayStats()
    stats.apply(q(100.0, MIDNIGHT - 1, volume=1))
    got = orjson.loads(encode_entry(stats.apply(q(101.0, MIDNIGHT, volume=3)), 1))
    assert got == {
        "s": "AAPL",
        "p": 101.0,
        "v": 3,
        "c": 1.0,
        "cp": 1.0,
        "o": 101.0,
        "h": 101.0,
        "l": 101.0,
        "pc": 100.0,
        "vw": 101.0,
        "t": MIDNIGHT,
        "q": 1,
    }


def test_history_seeds_the_session_so_far_and_quotes_widen_it() -> None:
    from ticker.bars import Bar

    stats = DayStats()
    start = utc_day_start(T0)
    stats.apply(q(100.0, volume=1_000))  # the server came up mid-session: its first quote
    stats.seed("AAPL", Bar(start, 95.0, 103.0, 94.0, 100.0, 9_000), prev_close=96.0, now_ms=T0 + 1)
    seeded = stats.apply(q(104.0, T0 + 2, volume=2_000))
    assert (seeded.open, seeded.high, seeded.low, seeded.prev_close) == (95.0, 104.0, 94.0, 96.0)
    # the VWAP: the bar's typical price over its volume, then the trade of 1,000 at 104
    assert seeded.vwap == round(((103.0 + 94.0 + 100.0) / 3 * 9_000 + 104.0 * 1_000) / 10_000, 4)
    stats.seed("AAPL", Bar(start, 1.0, 1.0, 1.0, 1.0, 1), prev_close=2.0, now_ms=T0 + 3)  # seeded once
    assert stats.apply(q(104.0, T0 + 4)).open == 95.0


def test_a_seed_of_another_session_is_ignored_and_a_fresh_symbol_starts_from_it() -> None:
    from ticker.bars import Bar

    stats = DayStats()
    start = utc_day_start(T0)
    stats.seed("MSFT", Bar(start - DAY, 1.0, 2.0, 0.5, 1.5, 10), prev_close=None, now_ms=T0)  # yesterday's
    assert len(stats) == 0
    stats.seed("MSFT", Bar(start, 400.0, 410.0, 395.0, 405.0, 0), prev_close=399.0, now_ms=T0)
    first = stats.apply(q(406.0, T0 + 1, "MSFT"))
    assert (first.open, first.high, first.low, first.prev_close, first.vwap) == (
        400.0,
        410.0,
        395.0,
        399.0,
        None,
    )


def test_new_session_days_keep_what_was_seen_when_the_first_quote_stays_in_the_session() -> None:
    ny = new_york_day_start()
    assert ny is not None
    days: dict[str, Callable[[int], int]] = {"AAPL": utc_day_start}
    stats = DayStats(session_of=lambda s: days[s])
    late = MIDNIGHT + 2 * 3_600_000  # 02:00 UTC: 21:00 or 22:00 the day before in New York
    stats.apply(q(100.0, late))
    stats.apply(q(101.0, late + 1))
    days["AAPL"] = ny  # the directory says it trades New York days
    stats.resession("AAPL", late + 2)
    assert day(stats.apply(q(100.5, late + 3)))[:3] == (100.0, 101.0, 100.0)  # the same session: kept
    stats.resession("AAPL", late + DAY)  # its first quote is not in the session of now: afresh
    assert day(stats.apply(q(99.0, late + DAY + 1)))[:3] == (99.0, 99.0, 99.0)
