"""The node's bar store: changes per flush, provider bars, the symbol bound, the delayed view, derived bars."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from ticker.barbook import BarBook, aggregate
from ticker.bars import Bar, DayStart, utc_day_start, zone_day_start
from ticker.quote import Quote

NY = ZoneInfo("America/New_York")
T0 = 1_700_000_040_000  # a whole minute (2023-11-14 22:14:00 UTC)
S = 1_000
M = 60_000


def q(symbol: str, price: float, t: int, volume: float | None = None) -> Quote:
    return Quote(symbol, price, t, volume=volume)


def row(bar: Bar | None) -> tuple[float, ...] | None:
    return None if bar is None else (bar.t, bar.o, bar.h, bar.l, bar.c, bar.v)


def test_trades_mark_their_symbol_changed_and_take_changes_starts_over() -> None:
    book = BarBook()
    book.on_quote(q("AAPL", 10.0, T0, 100))
    book.on_quote(q("AAPL", 11.0, T0 + S, 150))
    book.on_quote(q("MSFT", 5.0, T0, None))
    changed, bars = book.take_changes()
    assert list(changed) == ["AAPL", "MSFT"] and bars == {}
    assert row(book.current("AAPL", "1m")) == (T0, 10.0, 11.0, 10.0, 11.0, 50)
    assert book.take_changes() == ({}, {})
    book.on_quote(q("AAPL", 11.0, T0 + 2 * S, 150))  # neither price nor volume moved: no trade
    assert book.take_changes() == ({}, {})
    book.on_quote(q("AAPL", 11.0, T0 + 3 * S, 160))
    assert list(book.take_changes()[0]) == ["AAPL"]


def test_applied_bars_are_recorded_by_symbol_interval_and_start() -> None:
    book = BarBook()
    book.apply("AAPL", "1m", Bar(T0, 1, 2, 0.5, 1.5, 10))
    book.apply("AAPL", "1m", Bar(T0 - M, 1, 1, 1, 1, 1))  # a late one
    book.apply("AAPL", "1m", Bar(T0 + 30 * S, 1, 3, 0.5, 2, 12))  # unaligned: the bar of its minute
    book.apply("AAPL", "5m", Bar(T0, 1, 3, 0.5, 2, 12))
    changed, bars = book.take_changes()
    assert changed == {}
    assert bars == {("AAPL", "1m"): {T0: None, T0 - M: None}, ("AAPL", "5m"): {T0 - T0 % (5 * M): None}}
    assert row(book.bar_at("AAPL", "1m", T0 + 59 * S)) == (T0, 1, 3, 0.5, 2, 12)
    assert book.bar_at("AAPL", "1m", T0 - 2 * M) is None
    assert book.bar_at("MSFT", "1m", T0) is None


def test_a_final_provider_bar_wins_over_trades_a_partial_one_keeps_moving() -> None:
    book = BarBook()
    book.on_quote(q("AAPL", 10.0, T0, 100))
    book.apply("AAPL", "1m", Bar(T0, 9, 12, 8, 11, 500), final=True)
    book.on_quote(q("AAPL", 20.0, T0 + S, 200))  # counted by the provider already
    assert row(book.current("AAPL", "1m")) == (T0, 9, 12, 8, 11, 500)
    assert row(book.current("AAPL", "1s")) == (T0 + S, 20.0, 20.0, 20.0, 20.0, 100)  # other series move
    book.apply("AAPL", "1m", Bar(T0 + M, 9, 12, 8, 11, 500), final=False)  # the Redis edge's bar filling
    book.on_quote(q("AAPL", 13.0, T0 + M + S, 210))
    assert row(book.current("AAPL", "1m")) == (T0 + M, 9, 13.0, 8, 13.0, 510)


def test_backfill_merges_history_and_counts_as_a_change() -> None:
    book = BarBook()
    book.on_quote(q("AAPL", 10.0, T0 + 2 * M, 100))
    book.take_changes()
    book.backfill("AAPL", "1m", [Bar(T0, 1, 1, 1, 1, 1), Bar(T0 + M, 2, 2, 2, 2, 2)], T0 + 2 * M + S)
    assert [b.t for b in book.last("AAPL", "1m", 10)] == [T0, T0 + M, T0 + 2 * M]
    assert list(book.take_changes()[0]) == ["AAPL"]


def test_reads_oldest_first_within_limits() -> None:
    book = BarBook()
    book.backfill("AAPL", "1m", [Bar(T0 + i * M, i, i, i, i, i) for i in range(10)], None)
    assert [b.o for b in book.range("AAPL", "1m", limit=3)] == [7, 8, 9]  # the newest 3
    assert [b.o for b in book.range("AAPL", "1m", T0 + 2 * M, limit=3)] == [2, 3, 4]  # paging forward
    assert [b.o for b in book.range("AAPL", "1m", None, T0 + 5 * M, limit=2)] == [3, 4]  # paging backward
    assert [b.o for b in book.range("AAPL", "1m", T0 + M, T0 + 3 * M)] == [1, 2]
    assert [b.o for b in book.last("AAPL", "1m", 2)] == [8, 9]
    assert book.last("AAPL", "1m", 0) == []
    assert (
        book.range("MSFT", "1m") == []
        and book.last("MSFT", "1m", 5) == []
        and book.current("MSFT", "1m") is None
    )
    assert "MSFT" not in book  # reading a symbol without bars does not create it
    assert orjson.loads(orjson.dumps(book.last("AAPL", "1m", 1))) == [
        {"t": T0 + 9 * M, "o": 9, "h": 9, "l": 9, "c": 9, "v": 9}
    ]


def test_the_delayed_view_holds_only_bars_ended_by_the_horizon() -> None:
    book = BarBook()
    book.backfill("AAPL", "1m", [Bar(T0 + i * M, i, i, i, i, i) for i in range(10)], None)
    horizon = T0 + 5 * M + 30 * S  # the bar of minute 5 has not ended; minute 4's ended at T0 + 5 M
    assert [b.o for b in book.range("AAPL", "1m", before_end=horizon)] == [0, 1, 2, 3, 4]
    assert [b.o for b in book.range("AAPL", "1m", before_end=T0 + 5 * M)] == [0, 1, 2, 3, 4]  # ends exactly
    assert [b.o for b in book.range("AAPL", "1m", before_end=T0 + 5 * M - 1)] == [0, 1, 2, 3]
    assert [b.o for b in book.range("AAPL", "1m", T0 + 3 * M, before_end=horizon)] == [3, 4]
    assert [b.o for b in book.range("AAPL", "1m", T0 + M, limit=2, before_end=horizon)] == [1, 2]
    assert [b.o for b in book.range("AAPL", "1m", None, T0 + 3 * M, before_end=horizon)] == [0, 1, 2]
    assert [b.o for b in book.range("AAPL", "1m", None, T0 + 9 * M, limit=2, before_end=horizon)] == [3, 4]
    assert [b.o for b in book.last("AAPL", "1m", 2, before_end=horizon)] == [3, 4]
    assert [b.o for b in book.completed("AAPL", "1m", horizon, 1)] == [4]
    assert book.range("AAPL", "1m", T0 + 6 * M, before_end=horizon) == []
    assert book.completed("AAPL", "1m", T0) == []


def test_a_delayed_day_bar_ends_at_the_next_session_start() -> None:
    ny = zone_day_start(NY)
    book = BarBook(lambda s: ny)
    day1 = int(datetime(2024, 3, 9, tzinfo=NY).timestamp() * 1000)  # the day before DST starts
    day2 = int(datetime(2024, 3, 10, tzinfo=NY).timestamp() * 1000)  # 23 hours long
    day3 = int(datetime(2024, 3, 11, tzinfo=NY).timestamp() * 1000)
    book.backfill("AAPL", "1d", [Bar(day1, 1, 1, 1, 1), Bar(day2, 2, 2, 2, 2), Bar(day3, 3, 3, 3, 3)], None)
    assert [b.o for b in book.completed("AAPL", "1d", day3 - 1)] == [1]
    assert [b.o for b in book.completed("AAPL", "1d", day3)] == [1, 2]
    assert book.end_of("AAPL", "1d", day2) == day3 == day2 + 23 * 3_600_000


def test_past_max_symbols_the_least_recently_used_is_forgotten_with_its_changes() -> None:
    book = BarBook(max_symbols=2)
    book.on_quote(q("A", 1.0, T0))
    book.apply("B", "1m", Bar(T0, 1, 1, 1, 1))
    book.last("A", "1m", 1)  # a read counts as a use: B is now the least recently used
    book.on_quote(q("C", 1.0, T0))
    assert len(book) == 2 and "B" not in book and book.symbols() == ["A", "C"]
    changed, bars = book.take_changes()
    assert list(changed) == ["A", "C"] and bars == {}
    gen = book.generation("A")
    book.on_quote(q("B", 2.0, T0))  # back afresh; A goes
    assert "A" not in book and book.generation("A") is None
    book.on_quote(q("A", 2.0, T0))
    assert book.generation("A") not in (None, gen)
    assert row(book.current("A", "1m")) == (T0, 2.0, 2.0, 2.0, 2.0, 0)
    with pytest.raises(ValueError):
        BarBook(max_symbols=0)


def test_session_days_are_picked_per_symbol_and_a_later_listing_starts_afresh() -> None:
    ny = zone_day_start(NY)
    listed: dict[str, DayStart] = {}
    book = BarBook(lambda s: listed.get(s, utc_day_start))
    noon_ny = int(datetime(2024, 6, 3, 12, tzinfo=NY).timestamp() * 1000)
    book.on_quote(q("AAPL", 1.0, noon_ny))
    assert book.current("AAPL", "1d").t == utc_day_start(noon_ny)  # type: ignore[union-attr]
    assert not book.resession("AAPL")
    listed["AAPL"] = ny  # the directory now lists it as a US equity
    assert book.resession("AAPL") and not book.resession("AAPL") and not book.resession("MSFT")
    assert book.current("AAPL", "1d") is None
    book.on_quote(q("AAPL", 1.0, noon_ny))
    assert book.current("AAPL", "1d").t == ny(noon_ny)  # type: ignore[union-attr]


def test_aggregate_makes_longer_bars_of_shorter_ones() -> None:
    start = T0 - T0 % (5 * M)
    minutes = [
        Bar(start + 4 * M, 4, 9, 3, 5, 40),  # out of order: sorted first
        Bar(start, 1, 2, 0.5, 1.5, 10),
        Bar(start + M, 1.5, 3, 1, 2, 20),
        Bar(start + 7 * M, 6, 6, 6, 6, 1),  # the next 5 minutes; the two between have no bar
    ]
    assert [row(b) for b in aggregate(minutes, "5m")] == [
        (start, 1, 9, 0.5, 5, 70),
        (start + 5 * M, 6, 6, 6, 6, 1),
    ]
    assert aggregate([], "1h") == []
    ny = zone_day_start(NY)
    late = int(datetime(2024, 6, 3, 23, 59, tzinfo=NY).timestamp() * 1000)
    days = aggregate([Bar(late, 1, 1, 1, 1, 1), Bar(late + M, 2, 2, 2, 2, 2)], "1d", ny)
    assert [(b.t, b.o, b.c, b.v) for b in days] == [(ny(late), 1, 1, 1), (ny(late + M), 2, 2, 2)]
    assert minutes[1].o == 1 and minutes[1].v == 10  # the input is left as it was


def test_past_the_bound_only_symbols_nobody_receives_are_forgotten() -> None:
    demanded = {"AAPL", "MSFT"}
    book = BarBook(max_symbols=2, keep=lambda s: s in demanded)
    book.on_quote(q("AAPL", 10.0, T0, 100))
    book.on_quote(q("MSFT", 20.0, T0, 100))
    book.on_quote(q("KO", 60.0, T0, 100))  # over the bound, but both held are demanded: kept, the book grows
    assert sorted(book.symbols()) == ["AAPL", "KO", "MSFT"]
    book.on_quote(q("PEP", 170.0, T0, 100))  # the least recently used one nobody receives goes
    assert sorted(book.symbols()) == ["AAPL", "MSFT", "PEP"]
    demanded.discard("AAPL")
    book.on_quote(q("KO", 60.0, T0 + S, 200))  # KO comes back: room is made down to the bound, oldest first
    assert sorted(book.symbols()) == ["KO", "MSFT"]


def test_a_provider_minute_bar_makes_the_longer_bars_holding_it_again() -> None:
    b = T0 - T0 % (5 * M)  # a 5m bar's start
    book = BarBook()
    book.on_quote(q("AAPL", 10.0, b + S, 100))  # trades: a 1m, 5m and 1h bar of their own
    book.on_quote(q("AAPL", 10.5, b + M + S, 150))
    book.take_changes()
    book.apply(
        "AAPL", "1m", Bar(b, 9.8, 10.2, 9.7, 10.1, 400), derive=True
    )  # the provider's word on minute 0
    assert row(book.current("AAPL", "5m")) == (b, 9.8, 10.5, 9.7, 10.5, 450)
    hour = book.current("AAPL", "1h")  # the 1m bars begin inside this hour: its open stays, the rest follows
    assert hour is not None and (hour.o, hour.h, hour.l, hour.c, hour.v) == (10.0, 10.5, 9.7, 10.5, 450)
    _, applied = book.take_changes()
    assert set(applied) == {("AAPL", "1m"), ("AAPL", "5m"), ("AAPL", "1h")}
    book.apply("AAPL", "1m", Bar(b, 1.0, 1.0, 1.0, 1.0, 1))  # an edge's bar (no derive): 5m untouched
    five = book.current("AAPL", "5m")
    assert five is not None and five.o == 9.8


def test_bars_held_counts_every_series_of_one_symbol_or_all() -> None:
    book = BarBook()
    assert book.bars_held() == 0 and book.bars_held("AAPL") == 0
    book.on_quote(q("AAPL", 10.0, T0, 100))  # one bar in each of the five series
    book.on_quote(q("AAPL", 11.0, T0 + S, 200))  # a second 1s bar
    book.backfill("MSFT", "1d", [Bar(T0 - 86_400_000 * k, 1, 1, 1, 1) for k in (1, 2, 3)], T0)
    assert book.bars_held("AAPL") == 6 and book.bars_held("MSFT") == 3 and book.bars_held() == 9
    book.forget("AAPL")
    assert book.bars_held() == 3


def test_a_book_of_demanded_symbols_does_not_look_at_each_of_them_for_each_new_one() -> None:
    looks = 0

    def demanded(symbol: str) -> bool:
        nonlocal looks
        looks += 1
        return symbol != "GONE"

    book = BarBook(max_symbols=10, keep=demanded)
    book.on_quote(q("GONE", 1.0, T0))
    for i in range(2000):  # the demand past the bound: every one kept
        book.on_quote(q(f"S{i}", 1.0, T0))
    assert "GONE" not in book and len(book) == 2000
    assert looks < 20 * 2000  # a look at every symbol for each new one would be about 2,000,000


def test_a_symbol_keeps_a_short_window_of_seconds_until_its_bars_are_read() -> None:
    book = BarBook(unread_seconds=3)
    for k in range(5):  # five seconds of trades
        book.on_quote(q("AAPL", 10.0 + k, T0 + k * S, 100 + k))
    book.apply("AAPL", "1s", Bar(T0 + 3 * S, 1, 1, 1, 1), final=True)
    assert [b.t for b in book.last("AAPL", "1s", 10)] == [T0 + 2 * S, T0 + 3 * S, T0 + 4 * S]
    assert len(book.last("AAPL", "1m", 10)) == 1  # the other intervals as always
    series = book.series("AAPL", "1s")
    assert series is not None and series.is_final(T0 + 3 * S)
    series.resize(1)  # fewer: the oldest go, with their marks
    assert [b.t for b in book.last("AAPL", "1s", 10)] == [T0 + 4 * S] and not series.is_final(T0 + 3 * S)
    assert row(book.current("AAPL", "1s")) == (T0 + 4 * S, 14.0, 14.0, 14.0, 14.0, 1)
    book.widen("AAPL")
    book.widen("MSFT")  # not held: nothing to do
    for k in range(5, 1_000):
        book.on_quote(q("AAPL", 10.0 + k % 7, T0 + k * S, 100 + k))
    seconds = book.last("AAPL", "1s", 2_000)
    assert len(seconds) == 900 and seconds[-1].t == T0 + 999 * S  # 15 minutes once read
    with pytest.raises(ValueError):
        series.resize(0)
    with pytest.raises(ValueError):
        BarBook(unread_seconds=0)
