"""The node's history loader: once per symbol, sources in order, derived intervals, retries, a bound."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from tests.support.timing import eventually
from ticker.barbook import BarBook
from ticker.bars import Bar
from ticker.server import history
from ticker.server.history import HistoryLoader

NOW = 1_700_000_040_000  # a whole minute
M = 60_000


class Source:
    """A fake source of bars: ``bars`` per interval (missing: None), counting calls, optionally failing."""

    def __init__(
        self, bars: dict[str, list[Bar]] | None = None, fail: int = 0, gate: asyncio.Event | None = None
    ):
        self.bars = bars or {}
        self.fail = fail
        self.gate = gate
        self.calls: list[tuple[str, str, int, int]] = []
        self.running = 0
        self.most = 0

    async def __call__(self, symbol: str, interval: str, start: int, end: int) -> list[Bar] | None:
        self.calls.append((symbol, interval, start, end))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                self.fail -= 1
                raise OSError("upstream said no")
            got = self.bars.get(interval)
            return None if got is None else [b for b in got if start <= b.t < end]
        finally:
            self.running -= 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def loader(
    book: BarBook,
    *sources: Source,
    demanded: set[str] | None = None,
    clock: Clock | None = None,
    concurrency: int = 4,
) -> HistoryLoader:
    wanted = demanded if demanded is not None else set()
    return HistoryLoader(
        book, sources, wanted.__contains__, concurrency, clock=clock or Clock(), wall=lambda: NOW / 1000
    )


def minutes(n: int) -> list[Bar]:
    return [Bar(NOW - (n - i) * M, i, i + 1, i - 1, i, 10) for i in range(n)]


async def test_one_load_per_symbol_shared_by_concurrent_callers() -> None:
    gate = asyncio.Event()
    src = Source({"1m": minutes(3)}, gate=gate)
    book = BarBook()
    hl = loader(book, src, demanded={"AAPL"})
    first, second = hl.ensure("AAPL"), hl.ensure("AAPL")
    assert first is not None and first is second and hl.loading() == 1
    gate.set()
    await asyncio.gather(hl.wait("AAPL"), hl.wait("AAPL"))
    assert hl.ensure("AAPL") is None and hl.loading() == 0  # loaded, and live while demanded
    assert [c[1] for c in src.calls] == ["1s", "1m", "5m", "1h", "1d"]  # 1s where a source keeps it
    assert [b.o for b in book.last("AAPL", "1m", 10)] == [0, 1, 2]


async def test_the_first_source_with_bars_wins_and_missing_intervals_are_made_of_minutes() -> None:
    broker = Source({"1d": [Bar(NOW - 86_400_000 * 2, 5, 5, 5, 5, 5)]})  # Redis holds day bars only
    feed = Source({"1m": minutes(12), "1d": [Bar(NOW - 86_400_000, 9, 9, 9, 9, 9)]})
    book = BarBook()
    await loader(book, broker, feed).wait("AAPL")
    assert [c[1] for c in broker.calls] == ["1s", "1m", "5m", "1h", "1d"]
    assert [c[1] for c in feed.calls] == ["1s", "1m", "5m", "1h"]  # 1d came from the broker
    assert [b.o for b in book.last("AAPL", "1d", 5)] == [5]
    five = book.last("AAPL", "5m", 10)
    assert sum(b.v for b in five) == 120 and len(five) in (3, 4)
    assert [b.v for b in book.last("AAPL", "1h", 5)] == [120]
    assert broker.calls[0][2] == NOW - 900_000  # the last 15 minutes of seconds
    start_1m = broker.calls[1][2]
    assert start_1m == NOW - NOW % 86_400_000 - 4 * 86_400_000  # a session start four days back
    assert broker.calls[0][3] > NOW


async def test_a_symbol_without_history_is_not_asked_again_at_once() -> None:
    src = Source()
    clock = Clock()
    book = BarBook()
    hl = loader(book, src, clock=clock)
    await hl.wait("AAPL")
    assert "AAPL" in book and hl.ensure("AAPL") is None and len(src.calls) == 5
    clock.now += history.FRESH_FOR + 1  # nobody receives it: read again later, loaded again
    await hl.wait("AAPL")
    assert len(src.calls) == 10


async def test_a_failure_is_retried_after_a_backoff_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    src = Source({"1m": minutes(2)}, fail=2)
    clock = Clock()
    book = BarBook()
    hl = loader(book, src, clock=clock)
    with caplog.at_level(logging.WARNING, "ticker"):
        await hl.wait("AAPL")
        await hl.wait("MSFT")
    assert hl.ensure("AAPL") is None  # not hammered: waits for its retry time
    lines = [r.getMessage() for r in caplog.records if "history of" in r.getMessage()]
    assert len(lines) == 1 and "OSError: upstream said no" in lines[0]  # at most a line a minute
    clock.now += history.RETRY_BASE + history.RETRY_CAP
    await hl.wait("AAPL")
    assert [b.o for b in book.last("AAPL", "1m", 5)] == [0, 1]
    await hl.stop()


async def test_loads_run_at_most_concurrency_at_once_and_stop_cancels_them() -> None:
    gate = asyncio.Event()
    src = Source(gate=gate)
    hl = loader(BarBook(), src, concurrency=2)
    tasks = [hl.ensure(s) for s in ("A", "B", "C", "D")]
    await eventually(lambda: src.running == 2, within=2.0, what="two loads to reach the source")
    assert src.most == 2 and hl.loading() == 4  # the other two wait for a slot
    await hl.stop()
    assert all(t is not None and t.cancelled() for t in tasks)
    assert hl.ensure("E") is None


async def test_demand_keeps_history_live_and_a_dropped_symbol_goes_stale() -> None:
    src = Source()
    clock = Clock()
    wanted = {"AAPL"}
    hl = loader(BarBook(), src, demanded=wanted, clock=clock)
    hl.demand_changed(["AAPL"], [])
    await hl.wait("AAPL")
    clock.now += 10 * history.FRESH_FOR
    assert hl.ensure("AAPL") is None  # demanded: its live bars keep it whole
    wanted.clear()
    hl.demand_changed([], ["AAPL"])
    clock.now += history.FRESH_FOR / 2
    wanted.add("AAPL")
    hl.demand_changed(["AAPL"], [])  # back within the minute: nothing to load
    assert hl.loading() == 0
    clock.now += math.ceil(10 * history.FRESH_FOR)
    assert hl.ensure("AAPL") is None


async def test_loads_of_symbols_nobody_receives_are_rate_limited() -> None:
    src = Source({"1m": minutes(3)})
    clock = Clock()
    book = BarBook(max_symbols=100)
    hl = loader(book, src, demanded={"LIVE"}, clock=clock)
    for i in range(int(history.COLD_BURST)):  # REST reads of as many symbols as the burst allows
        await hl.wait(f"S{i}")
    assert hl.ensure("ONEMORE") is None  # past it: nothing loaded, the read gets what is held
    assert hl.ensure("LIVE") is not None  # a symbol someone receives is never held back
    clock.now += 1.0 / history.COLD_RATE
    assert hl.ensure("ONEMORE") is not None  # the bucket refilled


async def test_demand_loads_day_bars_one_symbol_at_a_time_and_a_read_the_whole_history() -> None:
    gate = asyncio.Event()
    src = Source({"1d": [Bar(NOW - 86_400_000, 9, 9, 9, 9, 9)], "1m": minutes(3)}, gate=gate)
    wanted = {f"S{i}" for i in range(5)}
    book = BarBook()
    hl = loader(book, src, demanded=wanted)
    hl.demand_changed(sorted(wanted), [])  # a watchlist of five symbols
    await eventually(lambda: src.running == 1, within=2.0, what="the first day load")
    assert hl.loading() == 5 and src.most == 1  # one at a time, the others queued
    gate.set()
    await eventually(lambda: hl.loading() == 0, within=2.0, what="every day load")
    assert {c[1] for c in src.calls} == {"1d"} and len(src.calls) == 5 and src.most == 1
    assert [b.o for b in book.last("S0", "1d", 5)] == [9] and book.last("S0", "1m", 5) == []
    await hl.wait("S0")  # a bar read: the whole history
    assert [c[1] for c in src.calls[5:]] == ["1s", "1m", "5m", "1h", "1d"]
    assert [b.o for b in book.last("S0", "1m", 5)] == [0, 1, 2]
    await hl.stop()


def days(n: int) -> list[Bar]:
    """``n`` day bars ending today (UTC days), oldest first; the open counts the days back."""
    today = NOW - NOW % 86_400_000
    return [Bar(today - k * 86_400_000, k, k + 1, k - 1, k, 10) for k in range(n - 1, -1, -1)]


async def test_a_newly_demanded_symbol_keeps_two_day_bars_and_a_read_brings_the_year() -> None:
    src = Source({"1d": days(300)})
    book = BarBook(unread_seconds=60)
    hl = loader(book, src, demanded={"AAPL"})
    hl.demand_changed(["AAPL"], [])
    await eventually(lambda: hl.loading() == 0 and src.calls, within=2.0, what="the day load")
    ((_, interval, start, _),) = src.calls
    today = NOW - NOW % 86_400_000
    assert interval == "1d" and start == today - history.DAY_LOOKBACK * 86_400_000  # not a year
    assert [b.o for b in book.last("AAPL", "1d", 400)] == [1, 0]  # the previous session and this one
    assert book.bars_held() == book.bars_held("AAPL") == history.DAY_BARS
    seconds = book.series("AAPL", "1s")
    assert seconds is not None and seconds.maxlen == 60  # a minute of seconds while nobody reads them
    await hl.wait("AAPL")  # a bar read: the whole history, a year of day bars, 15 minutes of seconds
    assert len(book.last("AAPL", "1d", 400)) == 300 and seconds.maxlen == 900
    await hl.stop()


async def test_bars_of_a_symbol_nobody_receives_any_more_go_after_the_linger() -> None:
    src = Source({"1m": minutes(3), "1d": days(3)})
    clock = Clock()
    wanted = {"AAPL", "MSFT"}
    book = BarBook()
    hl = loader(book, src, demanded=wanted, clock=clock)
    hl.demand_changed(["AAPL", "MSFT"], [])
    await hl.wait("AAPL")
    await hl.wait("MSFT")
    held = book.bars_held("AAPL")
    assert held > 0 and hl.sweep() == 0
    wanted.clear()
    hl.demand_changed([], ["AAPL", "MSFT"])
    clock.now += history.LINGER - 1
    assert hl.sweep() == 0 and "AAPL" in book  # still within the linger
    wanted.add("MSFT")
    hl.demand_changed(["MSFT"], [])  # back in time: kept and live, nothing to load
    assert hl.loading() == 0
    clock.now += 2
    assert hl.sweep() == 1 and "AAPL" not in book and "MSFT" in book
    assert hl.take_released() == history.SYMBOL_BYTES + history.BAR_BYTES * held
    assert hl.take_released() == 0
    clock.now += 100 * history.LINGER
    assert hl.sweep() == 0 and "MSFT" in book  # a symbol someone receives is never dropped
    calls = len(src.calls)
    wanted.add("AAPL")
    hl.demand_changed(["AAPL"], [])  # back after its bars went: day bars again, the whole history at a read
    await eventually(lambda: hl.loading() == 0, within=2.0, what="the day load")
    assert [c[1] for c in src.calls[calls:]] == ["1d"] and len(book.last("AAPL", "1d", 5)) == 2
    await hl.wait("AAPL")
    assert [c[1] for c in src.calls[calls + 1 :]] == ["1s", "1m", "5m", "1h", "1d"]
    await hl.stop()


async def test_bars_loaded_for_a_read_go_when_they_are_no_longer_fresh() -> None:
    gate = asyncio.Event()
    src = Source({"1m": minutes(3)}, gate=gate)
    clock = Clock()
    book = BarBook()
    hl = loader(book, src, clock=clock)
    task = hl.ensure("KO")  # a REST read of a symbol nobody receives
    await eventually(lambda: src.running == 1, within=2.0, what="the load to start")
    hl.demand_changed([], ["KO"])  # (as if it had been demanded and left meanwhile)
    clock.now += history.LINGER + 1
    assert hl.sweep() == 0 and "KO" in book  # loading: its load ends first
    gate.set()
    assert task is not None
    await task
    clock.now += history.FRESH_FOR - 1
    assert hl.sweep() == 0 and len(book.last("KO", "1m", 5)) == 3  # served while fresh
    clock.now += 2
    assert hl.sweep() == 1 and "KO" not in book
    assert hl.ensure("KO") is not None  # read again: loaded again
    await hl.stop()


async def test_the_sweep_runs_by_itself_while_bars_wait_to_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "SWEEP_EVERY", 0.01)
    monkeypatch.setattr(history, "LINGER", 0.0)
    book = BarBook()
    hl = HistoryLoader(book, (Source(),), lambda s: False)
    book.bars_of("AAPL")
    hl.demand_changed([], ["AAPL"])
    await eventually(lambda: "AAPL" not in book, within=2.0, what="the sweep")
    await hl.stop()


async def test_day_loading_pauses_as_long_as_each_symbol_took_and_a_bar_read_does_not() -> None:
    clock = Clock()
    events: list[tuple[str, object]] = []
    costs = {"S0": 0.004, "S1": 0.25, "S2": 4 * history.DAY_PAUSE_MAX}  # seconds of the loop each load takes

    async def source(symbol: str, interval: str, start: int, end: int) -> list[Bar] | None:
        events.append(("load", symbol))
        clock.now += costs[symbol]  # as a source that answers at once after working that long
        return days(3) if interval == "1d" else None

    async def sleep(seconds: float) -> None:
        events.append(("pause", seconds))
        clock.now += seconds
        await asyncio.sleep(0)

    book = BarBook()
    hl = HistoryLoader(
        book,
        (source,),
        set(costs).__contains__,
        clock=clock,
        wall=lambda: NOW / 1000,
        sleep=sleep,
        cpu_clock=clock,
    )
    hl.demand_changed(sorted(costs), [])
    await eventually(lambda: len(events) == 6, within=2.0, what="three day loads and their pauses")
    assert [e[0] for e in events] == ["load", "pause"] * 3  # each load followed by its pause
    pauses = [e[1] for e in events[1::2]]
    assert pauses == [
        pytest.approx(history.DAY_DUTY * costs["S0"]),
        pytest.approx(history.DAY_DUTY * costs["S1"]),
        history.DAY_PAUSE_MAX,  # a long load (mostly a provider's wait) pauses at most this
    ]
    assert len(book.last("S2", "1d", 5)) == history.DAY_BARS
    await hl.wait("S0")  # a bar read: the whole history, not paced
    assert [e[0] for e in events[6:]] == ["load"] * 5
    await hl.stop()
