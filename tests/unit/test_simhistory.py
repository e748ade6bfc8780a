"""The simulated market's history: deterministic per seed, ending where the live simulation starts, well formed."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from feeds.base import FeedContext
from feeds.sessions import new_york
from feeds.simhistory import INTRADAY_SD, SimulatedHistory, _minute_path, aggregate, hundreds, minute_sigma
from feeds.simulated import VOLATILITY, SimulatedFeed
from ticker.bars import Bar, zone_day_start
from ticker.quote import Quote

END = 2**62
MIN = 60_000
DAY_MS = 86_400_000


def wall(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> float:
    """Epoch seconds of a New York wall-clock time."""
    return datetime(y, mo, d, h, mi, s, tzinfo=new_york()).timestamp()


def ny(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, new_york())


TUESDAY_NOON = wall(2026, 3, 10, 12, 0, 30)
SATURDAY = wall(2026, 3, 14, 12, 0)


def feed_at(now: float, session: str = "always", seed: int | None = 7, **kw: object) -> SimulatedFeed:
    return SimulatedFeed(["AAPL", "BTC-USD"], rate=2, seed=seed, session=session, clock=lambda: now, **kw)  # type: ignore[arg-type]


def well_formed(bars: list[Bar], ms: int | None) -> None:
    assert bars, "no bars"
    for b in bars:
        assert 0 < b.l <= min(b.o, b.c) <= max(b.o, b.c) <= b.h, b
        assert b.v >= 0, b
        if ms is not None:
            assert b.t % ms == 0, b
    starts = [b.t for b in bars]
    assert starts == sorted(set(starts))


async def test_same_seed_same_history_another_seed_another():
    a = await feed_at(TUESDAY_NOON).load_history("AAPL", "1m", 0, END)
    b = await feed_at(TUESDAY_NOON).load_history("AAPL", "1m", 0, END)
    c = await feed_at(TUESDAY_NOON, seed=8).load_history("AAPL", "1m", 0, END)
    assert a == b
    assert a != c
    # another symbol of the same market: its own path
    other = await feed_at(TUESDAY_NOON).load_history("BTC-USD", "1m", 0, END)
    assert a is not None and other is not None
    assert [x.c for x in other] != [x.c for x in a]


@pytest.mark.parametrize("session", ["always", "us-equities"])
async def test_the_history_ends_at_the_price_the_live_market_starts_from(session: str):
    feed = feed_at(TUESDAY_NOON, session)
    bars = await feed.load_history("AAPL", "1m", 0, END)
    assert bars is not None
    now_minute = int(TUESDAY_NOON * 1000) // MIN * MIN
    assert bars[-1].t == now_minute - MIN  # the live bars take over at the current minute
    out: list[Quote] = []
    feed._ctx = FeedContext(emit=out.append)
    feed._unquoted = dict.fromkeys(feed._sims)  # as start() does: a first quote each
    feed.tick(0.0, int(TUESDAY_NOON * 1000))
    first = next(q for q in out if q.symbol == "AAPL")
    assert abs(first.price / bars[-1].c - 1) < 0.01  # one tick away: no jump
    assert first.prev_close is not None
    days = await feed.load_history("AAPL", "1d", 0, END)
    assert days is not None and days[-2].c == first.prev_close  # the day before closed at the previous close
    assert days[-1].c == bars[-1].c


async def test_round_the_clock_sessions_are_new_york_days_today_and_yesterday():
    bars = await feed_at(TUESDAY_NOON).load_history("AAPL", "1m", 0, END)
    assert bars is not None
    well_formed(bars, MIN)
    assert ny(bars[0].t) == datetime(2026, 3, 9, 0, 0, tzinfo=new_york())  # yesterday's midnight
    assert len(bars) == 24 * 60 + 12 * 60  # yesterday whole, today up to noon: no gap
    assert all(b.t - a.t == MIN for a, b in pairwise(bars))


async def test_us_equities_in_session_regular_hours_of_today_and_the_day_before():
    bars = await feed_at(TUESDAY_NOON, "us-equities").load_history("AAPL", "1m", 0, END)
    assert bars is not None
    well_formed(bars, MIN)
    days = {ny(b.t).date() for b in bars}
    assert [d.isoformat() for d in sorted(days)] == ["2026-03-09", "2026-03-10"]
    for b in bars:
        at = ny(b.t).time()
        assert (9, 30) <= (at.hour, at.minute) < (16, 0), ny(b.t)
    assert len(bars) == 390 + 150  # Monday whole, Tuesday 09:30 to 11:59


async def test_us_equities_closed_the_last_session_ends_at_the_price():
    feed = feed_at(SATURDAY, "us-equities")
    bars = await feed.load_history("AAPL", "1m", 0, END)
    assert bars is not None
    assert ny(bars[-1].t) == datetime(2026, 3, 13, 15, 59, tzinfo=new_york())  # Friday's last minute
    assert ny(bars[0].t) == datetime(2026, 3, 12, 9, 30, tzinfo=new_york())
    assert bars[-1].c == feed._sims["AAPL"].price


async def test_day_bars_a_year_back_at_midnight_new_york():
    feed = feed_at(SATURDAY, "us-equities")
    days = await feed.load_history("AAPL", "1d", 0, END)
    assert days is not None
    well_formed(days, None)
    assert len(days) == 366
    midnight = zone_day_start(new_york())
    assert all(b.t == midnight(b.t) for b in days)
    assert ny(days[0].t).date() < (datetime(2026, 3, 14) - timedelta(days=365)).date()
    assert all(ny(b.t).weekday() < 5 for b in days)
    closes = [b.c for b in days]
    assert max(closes) / min(closes) < 10  # a plausible year


async def test_derived_intervals_match_the_minutes_and_ranges_are_half_open():
    feed = feed_at(TUESDAY_NOON)
    minutes = await feed.load_history("AAPL", "1m", 0, END)
    assert minutes is not None
    for interval, ms in (("5m", 300_000), ("1h", 3_600_000)):
        bars = await feed.load_history("AAPL", interval, 0, END)
        assert bars is not None
        well_formed(bars, ms)
        assert bars == aggregate(minutes, ms, 0, END)
        assert sum(b.v for b in bars) == sum(b.v for b in minutes)
        assert bars[0].o == minutes[0].o and bars[-1].c == minutes[-1].c
    t0, t1 = minutes[10].t, minutes[20].t
    part = await feed.load_history("AAPL", "1m", t0, t1)
    assert part == minutes[10:20]


async def test_today_volume_is_the_session_volume_the_live_market_starts_with():
    feed = feed_at(TUESDAY_NOON)
    days = await feed.load_history("AAPL", "1d", 0, END)
    assert days is not None
    sim_volume = feed._sims["AAPL"].volume
    assert abs(days[-1].v - sim_volume) <= 100 * 720  # each minute's volume rounded to 100 shares


async def test_no_seconds_no_unknown_symbols_and_the_same_start_for_a_symbol_demanded_later():
    feed = feed_at(TUESDAY_NOON)
    assert await feed.load_history("AAPL", "1s", 0, END) is None
    assert await feed.load_history("ZZZQ", "1m", 0, END) is None  # outside the directory
    inventing = feed_at(TUESDAY_NOON, invent=True)
    assert await inventing.load_history("ZZZQ", "1m", 0, END)
    ibm = await feed.load_history("IBM", "1m", 0, END)  # in the directory, not simulated yet
    assert ibm is not None
    feed.set_demand(frozenset({"IBM"}))
    assert feed._sims["IBM"].price == ibm[-1].c


async def test_returned_bars_are_fresh_copies():
    feed = feed_at(TUESDAY_NOON)
    a = await feed.load_history("AAPL", "1m", 0, END)
    assert a is not None
    a[-1].c = -1.0
    b = await feed.load_history("AAPL", "1m", 0, END)
    assert b is not None and b[-1].c > 0


def test_a_full_session_of_minute_bars_for_100_symbols():
    symbols = [f"S{i:03}" for i in range(100)]
    # 23:59:30 in New York: a full 24-hour session today (and yesterday's) per symbol
    feed = SimulatedFeed(symbols, rate=2, seed=1, clock=lambda: wall(2026, 3, 10, 23, 59, 30))
    n = sum(len(feed.history_of(s, feed._sims[s].anchor).minutes) for s in symbols)
    assert n == 100 * (1440 + 1439)  # its cost (about 1.7 µs a bar) is measured by the bench, not here


async def test_a_symbol_demanded_again_gets_its_market_and_history_back():
    now = [TUESDAY_NOON]
    feed = SimulatedFeed(["AAPL"], rate=2, seed=1, clock=lambda: now[0])
    shown = await feed.load_history("MSFT", "1m", 0, END)  # a read before anyone demands it
    feed.set_demand(frozenset({"MSFT"}))
    price = feed._sims["MSFT"].price
    now[0] += 600  # ten minutes later: a market made now would have another history
    assert await feed.load_history("MSFT", "1m", 0, END) == shown
    feed.set_demand(frozenset())
    feed.set_demand(frozenset({"MSFT"}))  # left and came back
    assert feed._sims["MSFT"].price == price and await feed.load_history("MSFT", "1m", 0, END) == shown


def fresh_history(feed: SimulatedFeed, symbol: str) -> SimulatedHistory:
    """A new history of ``symbol`` (not the feed's cached one), nothing asked of it yet."""
    anchor = feed._sims[symbol].anchor
    sigma = minute_sigma(feed.rate, VOLATILITY)
    return SimulatedHistory(f"{feed._salt}:{symbol}", anchor, feed._sessions(anchor.ms), sigma)


@pytest.mark.parametrize("session", ["always", "us-equities"])
def test_recent_day_bars_walk_only_recent_days_and_any_order_of_asks_gives_the_same_year(session: str):
    feed = feed_at(SATURDAY, session)
    now_ms = int(SATURDAY * 1000)
    piecewise = fresh_history(feed, "AAPL")
    recent = piecewise.bars("1d", now_ms - 10 * DAY_MS, END)  # what a newly demanded symbol's node asks
    assert recent is not None and 2 <= len(recent) <= 11
    assert len(piecewise._older) <= 10  # not the whole year
    middle = piecewise.bars("1d", now_ms - 100 * DAY_MS, now_ms - 50 * DAY_MS)
    whole = piecewise.bars("1d", 0, END)
    at_once = fresh_history(feed, "AAPL").bars("1d", 0, END)
    assert whole is not None and at_once is not None and len(at_once) == 366
    assert whole == at_once
    assert recent == at_once[-len(recent) :]
    assert middle == [b for b in at_once if now_ms - 100 * DAY_MS <= b.t < now_ms - 50 * DAY_MS] != []


@pytest.mark.parametrize("at", [TUESDAY_NOON, SATURDAY])
@pytest.mark.parametrize("session", ["always", "us-equities"])
def test_day_bars_alone_equal_those_of_a_history_whose_minutes_were_made(session: str, at: float):
    feed = feed_at(at, session)
    only_days, full = fresh_history(feed, "AAPL"), fresh_history(feed, "AAPL")
    minutes = full.bars("1m", 0, END)  # the minute bars first: the day bars come with them
    days = only_days.bars("1d", 0, END)
    assert days is not None and minutes is not None
    assert only_days._minutes is None  # no minute bar made for them
    assert days == full.bars("1d", 0, END)
    for day in days[-2:]:  # the minute sessions' day bars summarise their minute bars
        of_day = [b for b in minutes if day.t <= b.t < day.t + DAY_MS]
        assert (day.o, day.c) == (of_day[0].o, of_day[-1].c)
        assert (day.h, day.l, day.v) == (
            max(b.h for b in of_day),
            min(b.l for b in of_day),
            sum(b.v for b in of_day),
        )
    assert only_days.bars("1m", 0, END) == minutes  # and minute bars asked afterwards are the same


def reference_minute_bars(
    rng: random.Random, t0: int, n: int, open_: int, close: int, sigma: float, volume: float, scale: int
) -> list[Bar]:
    """The minute bars as first written (rng.gauss, one bar at a time): what the fast path must reproduce."""
    phi = math.sqrt(max(0.0, 1.0 - (sigma / INTRADAY_SD) ** 2))
    a = math.log(open_)
    xs = [0.0] * (n + 1)
    x = 0.0
    for i in range(1, n + 1):
        x = phi * x + sigma * rng.gauss(0.0, 1.0)
        xs[i] = x
    slope = (math.log(close) - a - x) / n
    weights = [0.3 + rng.random() for _ in range(n)]
    per = volume / sum(weights)
    wick = sigma * 0.5
    bars: list[Bar] = []
    o = open_
    for i in range(1, n + 1):
        c = (int(math.exp(a + xs[i] + slope * i) + 0.5) or 1) if i < n else close
        hi, lo = (o, c) if o > c else (c, o)
        hi += int(hi * wick * rng.random())
        lo = lo - int(lo * wick * rng.random()) or 1
        bars.append(
            Bar(t0, o / scale, hi / scale, lo / scale, c / scale, int(round(per * weights[i - 1], -2)))
        )
        t0 += MIN
        o = c
    return bars


@pytest.mark.parametrize("n", [1, 2, 3, 389, 390, 1440])
def test_the_fast_minute_path_draws_and_rounds_as_the_reference_does(n: int):
    for seed in range(20):
        pick = random.Random(seed)
        sigma = pick.choice([minute_sigma(2, VOLATILITY), minute_sigma(0.05, VOLATILITY), 0.009, 0.02])
        open_, close, scale = pick.randrange(1, 90_000), pick.randrange(1, 90_000), pick.choice([100, 10_000])
        volume = pick.uniform(100, 5e7)
        want = reference_minute_bars(random.Random(seed), 60 * MIN, n, open_, close, sigma, volume, scale)
        got: list[Bar] = []
        hi, lo, v = _minute_path(random.Random(seed), 60 * MIN, n, open_, close, sigma, volume, scale, got)
        assert got == want
        assert (hi / scale, lo / scale, v) == (
            max(b.h for b in want),
            min(b.l for b in want),
            sum(b.v for b in want),
        )
        assert _minute_path(random.Random(seed), 0, n, open_, close, sigma, volume, scale, None) == (
            hi,
            lo,
            v,
        )


def test_hundreds_rounds_as_round_does_ties_to_even():
    pick = random.Random(3)
    values = [50.0, 150.0, 250.0, 49.99999999999999, 50.00000000000001, 0.0, 99.5, 1e15 + 50, 1e15 + 150]
    values += [pick.uniform(0, 1e7) for _ in range(10_000)] + [
        pick.randrange(0, 10**6) * 50.0 for _ in range(1000)
    ]
    assert hundreds(values) == [int(round(v, -2)) for v in values]
    assert hundreds([50.0, 150.0, 250.0]) == [0, 200, 200]
