"""The simulated market: determinism, rates, demand following, plausible quotes."""

from __future__ import annotations

import hashlib
import math
import random
import sys
import time
from datetime import datetime

import orjson
import pytest

from feeds.base import FeedContext
from feeds.errors import FeedConfigError
from feeds.listings import parse_listings, us_listings
from feeds.options import FeedOptions
from feeds.sessions import new_york
from feeds.simulated import (
    DORMANT_MAX,
    DORMANT_SECONDS,
    JOIN_PER_PASS,
    VOLATILITY,
    SimulatedFeed,
    _SymbolSim,
    create,
    running_from,
)
from tests.support.clock import ManualClock
from tests.support.fakes.sink import FeedSink
from ticker.directory import ASSET_TYPES, SymbolInfo
from ticker.quote import Quote, encode_entry
from ticker.status import CLOSED, SymbolStatus
from ticker.symbols import DEFAULT_UNIVERSE


def run(feed: SimulatedFeed, seconds: float, step: float = 0.01) -> list[Quote]:
    out: list[Quote] = []
    feed._ctx = FeedContext(emit=out.append)
    t = 0.0
    while t < seconds:
        feed.tick(step, int(t * 1000))
        t += step
    return out


def test_a_context_taking_several_quotes_gets_each_pass_at_once_and_the_same_quotes():
    one_by_one = run(SimulatedFeed(["AAPL", "MSFT", "IBM"], rate=50, seed=7), 2.0)
    passes: list[list[Quote]] = []
    feed = SimulatedFeed(["AAPL", "MSFT", "IBM"], rate=50, seed=7)
    feed._ctx = FeedContext(emit=lambda q: pytest.fail("emitted alone"), emit_many=passes.append)
    t, counts = 0.0, []
    while t < 2.0:
        counts.append(feed.tick(0.01, int(t * 1000)))
        t += 0.01
    assert [len(p) for p in passes] == [
        n for n in counts if n
    ]  # one call per pass that had quotes, none empty
    assert [q for p in passes for q in p] == one_by_one


def test_same_seed_same_prices_whatever_else_is_simulated():
    a = run(SimulatedFeed(["AAPL", "MSFT"], rate=10, seed=42), 2.0)
    b = run(SimulatedFeed(["AAPL"], rate=10, seed=42), 2.0)
    c = run(SimulatedFeed(["AAPL"], rate=10, seed=43), 2.0)
    pa = [x.price for x in a if x.symbol == "AAPL"]
    assert pa == [x.price for x in b]
    assert pa != [x.price for x in c]


def test_rate_per_symbol_and_quote_shape():
    quotes = run(SimulatedFeed(["AAPL", "NEWCO"], rate=50, seed=1), 4.0)
    per = {s: [x for x in quotes if x.symbol == s] for s in ("AAPL", "NEWCO")}
    for s, qs in per.items():
        assert 190 <= len(qs) <= 201, (s, len(qs))
        for x in qs:
            assert x.bid is not None and x.ask is not None and x.bid < x.price < x.ask
            assert x.prev_close and x.prev_close > 0
        vols = [x.volume or 0.0 for x in qs]
        assert vols == sorted(vols) and vols[0] > 0
    assert 150 < per["AAPL"][0].price < 350  # near its reference price
    assert 1 < per["NEWCO"][0].price < 2000  # a generated base price


def test_demand_adds_and_drops_directory_symbols_but_keeps_the_universe():
    feed = SimulatedFeed(["AAPL"], rate=20, seed=1)
    feed.set_demand(frozenset({"IBM", "ZZZ"}))  # IBM is in the bundled directory, ZZZ nowhere
    quotes = run(feed, 1.0)
    assert {x.symbol for x in quotes} == {"AAPL", "IBM"}
    assert 100 < next(x for x in quotes if x.symbol == "IBM").price < 500  # near its listed price
    feed.set_demand(frozenset())
    assert {x.symbol for x in run(feed, 1.0)} == {"AAPL"}


def test_thousands_of_ticks_per_second_in_simulated_time():
    feed = SimulatedFeed([f"S{i}" for i in range(100)], rate=100, seed=3)
    assert len(run(feed, 1.0)) >= 9900


def wall(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> float:
    """Epoch seconds of a New York wall-clock time."""
    return datetime(y, mo, d, h, mi, s, tzinfo=new_york()).timestamp()


SATURDAY = wall(2026, 3, 14, 12, 0)  # a Saturday
TUESDAY_EVENING = wall(2026, 3, 10, 20, 0)
TUESDAY_MORNING = wall(2026, 3, 10, 10, 0)
FRIDAY_CLOSE_MS = int(wall(2026, 3, 13, 16, 0) * 1000)


async def directory(feed: SimulatedFeed) -> dict[str, SymbolInfo]:
    return {e.symbol: e for e in await feed.load_reference()}


async def test_the_directory_names_the_default_universe_and_hundreds_more():
    entries = await directory(SimulatedFeed())
    assert len(entries) >= 400
    for sym in DEFAULT_UNIVERSE:
        e = entries[sym]
        assert e.name and e.name != sym, e
        assert e.exchange in {"NASDAQ", "NYSE", "NYSE Arca"} and e.currency == "USD", e
    assert entries["AAPL"] == SymbolInfo("AAPL", "Apple Inc.", "NASDAQ", "stock", "USD")
    assert entries["BRK.B"].name == "Berkshire Hathaway Inc. Class B"
    assert entries["SPY"] == SymbolInfo("SPY", "SPDR S&P 500 ETF Trust", "NYSE Arca", "etf", "USD")
    kinds = [e.type for e in entries.values()]
    assert kinds.count("stock") >= 300 and kinds.count("etf") >= 50
    assert set(kinds) <= set(ASSET_TYPES)


async def test_symbols_flag_extras_join_the_directory_under_their_own_name():
    feed = create(FeedOptions(symbols=["AAPL", "NEWCO"]))
    entries = await directory(feed)
    assert entries["NEWCO"] == SymbolInfo("NEWCO", "NEWCO", "SIM", "stock", "USD")
    assert entries["AAPL"].name == "Apple Inc."
    assert "MSFT" in entries  # the bundled directory stays whole
    assert feed.known_symbols() == ["AAPL", "NEWCO"]  # suggestions: the universe


def test_directory_symbols_start_near_their_listed_price_and_the_universe_keeps_its_own():
    listings = us_listings()
    assert all(DEFAULT_UNIVERSE[s] == listings[s].price for s in DEFAULT_UNIVERSE)
    feed = SimulatedFeed([], rate=10, seed=5)
    feed.set_demand(frozenset({"LLY", "SPY"}))
    first: dict[str, Quote] = {}
    for x in run(feed, 0.5):
        first.setdefault(x.symbol, x)
    assert abs(first["LLY"].price / 800.0 - 1) < 0.1 and first["LLY"].prev_close == 800.0
    assert abs(first["SPY"].price / DEFAULT_UNIVERSE["SPY"] - 1) < 0.1


def test_a_symbol_outside_the_directory_never_ticks():
    feed = SimulatedFeed([], rate=50, seed=2)
    feed.set_demand(frozenset({"ZZZ", "APPL", "NOPE"}))
    assert run(feed, 1.0) == []
    assert feed.symbol_state("ZZZ") is None  # always open: nothing to say


def test_bad_listings_are_refused():
    head = "symbol,name,exchange,type,currency,price\n"
    assert parse_listings(head + "ABC,Abc Inc.,NYSE,stock,USD,\n")["ABC"].price is None
    for row, words in [
        ("ABC,Abc Inc.,NYSE,stock,USD,1\nABC,Abc Inc.,NYSE,stock,USD,1\n", "twice"),
        ("abc,Abc Inc.,NYSE,stock,USD,1\n", "bad symbol"),
        ("ABC,Abc Inc.,NYSE,share,USD,1\n", "type"),
        ("ABC,,NYSE,stock,USD,1\n", "name"),
        ("ABC,Abc Inc.,NYSE,stock,USD,0\n", "price"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_listings(head + row)
    with pytest.raises(ValueError, match="columns"):
        parse_listings("symbol,name\nABC,Abc\n")


def test_an_unknown_session_is_refused():
    with pytest.raises(ValueError, match="session"):
        SimulatedFeed(session="lunar")


async def test_us_equities_closed_on_a_saturday_quotes_the_last_close_once_then_nothing():
    clock = ManualClock(SATURDAY)
    feed = SimulatedFeed(["AAPL", "MSFT"], rate=50, seed=1, session="us-equities", clock=clock)
    sink = FeedSink()
    await feed.start(sink.ctx)
    try:
        assert [(x.symbol, x.ts_ms) for x in sink.quotes] == [
            ("AAPL", FRIDAY_CLOSE_MS),
            ("MSFT", FRIDAY_CLOSE_MS),
        ]
        assert feed.tick(5.0, int(clock.now * 1000)) == 0
        assert feed.symbol_state("AAPL") == SymbolStatus(CLOSED, "US market closed; opens Mon 09:30 ET")
        assert feed.health().up and not feed.steady  # silence is no fault while closed
        feed.set_demand(frozenset({"IBM"}))  # a directory symbol joining while closed: its last close, once
        assert feed.tick(1.0, int(clock.now * 1000)) == 1
        assert feed.tick(1.0, int(clock.now * 1000)) == 0
        assert [(x.symbol, x.ts_ms) for x in sink.quotes[2:]] == [("IBM", FRIDAY_CLOSE_MS)]
    finally:
        await feed.stop()


def test_us_equities_closed_in_the_evening_names_the_next_open():
    feed = SimulatedFeed(["AAPL"], rate=50, seed=1, session="us-equities", clock=ManualClock(TUESDAY_EVENING))
    assert run(feed, 2.0) == []
    assert feed.symbol_state("AAPL") == SymbolStatus(CLOSED, "US market closed; opens Wed 09:30 ET")


def test_us_equities_ticks_within_hours():
    feed = SimulatedFeed(["AAPL"], rate=20, seed=1, session="us-equities", clock=ManualClock(TUESDAY_MORNING))
    assert 19 <= len(run(feed, 1.0)) <= 21
    assert feed.symbol_state("AAPL") is None and feed.steady


def test_always_ignores_the_clock():
    feed = SimulatedFeed(["AAPL"], rate=20, seed=1, clock=ManualClock(SATURDAY))
    assert len(run(feed, 1.0)) >= 19
    assert feed.symbol_state("AAPL") is None


def test_the_session_closes_then_opens_with_an_opening_quote_each():
    clock = ManualClock(wall(2026, 3, 10, 15, 59, 0))
    feed = SimulatedFeed(["AAPL", "KO"], rate=10, seed=1, session="us-equities", clock=clock)
    assert run(feed, 1.0)  # trading
    clock.now = wall(2026, 3, 10, 16, 0, 1)
    assert run(feed, 1.0) == []
    assert feed.symbol_state("KO") == SymbolStatus(CLOSED, "US market closed; opens Wed 09:30 ET")
    assert not feed.steady
    last = {s: sim.price for s, sim in feed._sims.items()}
    clock.now = wall(2026, 3, 11, 9, 30, 1)
    opening = run(feed, 0.001)
    assert sorted(x.symbol for x in opening) == ["AAPL", "KO"]  # at once, whatever the rate
    assert all(x.prev_close == last[x.symbol] for x in opening)  # yesterday's last price
    assert feed.steady and feed.symbol_state("KO") is None


async def test_invent_gives_any_demanded_symbol_a_market_but_never_a_directory_entry():
    feed = SimulatedFeed([], rate=20, seed=2, invent=True)  # the server's --unknown-symbols allow
    feed.set_demand(frozenset({"ZZZ", "IBM"}))
    quotes = run(feed, 1.0)
    assert {x.symbol for x in quotes} == {"ZZZ", "IBM"}
    assert 1 < next(x for x in quotes if x.symbol == "ZZZ").price < 2000  # a generated price
    assert "ZZZ" not in await directory(feed)  # nobody is offered an invented symbol
    feed.set_demand(frozenset())
    assert run(feed, 1.0) == []  # and it leaves with its demand
    later = SimulatedFeed([], rate=20, seed=2)
    later.invent = True  # set as an attribute after create(), before the runner gives it demand
    later.set_demand(frozenset({"ZZZ"}))
    assert {x.symbol for x in run(later, 1.0)} == {"ZZZ"}


@pytest.mark.parametrize(
    "value",
    [str(SATURDAY), "2026-03-14T12:00:00-04:00", "2026-03-14T16:00:00", "2026-03-14T16:00:00Z"],
)
def test_ticker_sim_now_starts_the_market_clock_at_that_instant(value, monkeypatch):
    monkeypatch.setenv("TICKER_SIM_NOW", value)
    feed = create(FeedOptions(symbols=["AAPL"], sim_session="us-equities"))
    assert abs(feed._clock() - SATURDAY) < 60  # and it runs on from there, in real time
    assert feed.symbol_state("AAPL") == SymbolStatus(CLOSED, "US market closed; opens Mon 09:30 ET")


def test_a_sim_clock_runs_on_in_real_time_from_its_start():
    wall_now = ManualClock(1_000.0)
    clock = running_from(SATURDAY, wall_now)
    assert clock() == SATURDAY
    wall_now.now += 90.5
    assert clock() == SATURDAY + 90.5


@pytest.mark.parametrize("value", ["soon", "nan", "1e30", "2026-13-01"])
def test_a_bad_ticker_sim_now_is_refused_at_startup(value, monkeypatch):
    monkeypatch.setenv("TICKER_SIM_NOW", value)
    with pytest.raises(FeedConfigError, match="TICKER_SIM_NOW"):
        create(FeedOptions())


def test_without_ticker_sim_now_the_market_follows_the_real_clock(monkeypatch):
    monkeypatch.delenv("TICKER_SIM_NOW", raising=False)
    assert create(FeedOptions())._clock is time.time


def test_always_a_new_day_at_midnight_in_new_york_makes_the_last_price_the_previous_close():
    feed = SimulatedFeed(["AAPL", "KO"], rate=10, seed=5)
    out: list[Quote] = []
    feed._ctx = FeedContext(emit=out.append)
    start = int(wall(2026, 3, 10, 23, 59, 58) * 1000)
    for i in range(20):  # two seconds to midnight
        feed.tick(0.1, start + i * 100)
    assert {x.prev_close for x in out if x.symbol == "KO"} == {DEFAULT_UNIVERSE["KO"]}  # the reference price
    last = {x.symbol: x.price for x in out}
    out.clear()
    midnight = int(wall(2026, 3, 11, 0, 0) * 1000)
    for i in range(10):
        feed.tick(0.1, midnight + i * 100)
    assert out and all(x.prev_close == last[x.symbol] for x in out)  # yesterday's last price


def test_change_and_change_percent_are_relative_to_the_previous_close():
    quotes = run(SimulatedFeed(["AAPL"], rate=20, seed=9), 1.0)
    for x in quotes:
        entry = orjson.loads(encode_entry(x, 1))
        assert x.prev_close is not None and entry["pc"] == x.prev_close
        assert entry["c"] == pytest.approx(x.price - x.prev_close, abs=1e-6)
        assert entry["cp"] == pytest.approx((x.price - x.prev_close) / x.prev_close * 100, abs=1e-4)
    again = run(SimulatedFeed(["AAPL"], rate=20, seed=9), 1.0)  # the same seed, the same closes and prices
    assert [(x.price, x.prev_close) for x in again] == [(x.price, x.prev_close) for x in quotes]


async def test_a_burst_of_demand_joins_a_pass_at_a_time_with_the_markets_it_would_get_at_once():
    symbols = frozenset(f"Z{i:04d}" for i in range(5 * JOIN_PER_PASS + 7))
    feed = SimulatedFeed(["AAPL"], rate=2, seed=1, clock=lambda: TUESDAY_MORNING, invent=True)
    out: list[Quote] = []
    feed._ctx = FeedContext(emit=out.append)
    feed.set_demand(symbols)
    assert len(feed._sims) == 1 + JOIN_PER_PASS  # the universe, and the first markets made at once
    late = next(iter(feed._unmade))
    history = await feed.load_history(late, "1m", 0, 2**62)  # read before its turn: made now, and kept
    assert history is not None and feed._sims[late].price == history[-1].c
    ms = int(TUESDAY_MORNING * 1000)
    counts = [feed.tick(0.0, ms) for _ in range(7)]
    assert counts == [JOIN_PER_PASS] * 5 + [7, 0]  # a pass's worth of first quotes at a time
    assert sorted(q.symbol for q in out) == sorted(symbols)  # each its first quote, once
    at_once = SimulatedFeed(["AAPL"], rate=2, seed=1, clock=lambda: TUESDAY_MORNING, invent=True)
    assert all(q.price == at_once._make(q.symbol).step(ms).price for q in out)


def _step_as_first_written(sim: _SymbolSim, rng: random.Random, ts_ms: int) -> Quote:
    """A simulated quote as first written (``rng.gauss``, ``rng.randrange``, ``round``): what the inlined
    draws and tick-grid arithmetic of ``_SymbolSim.step`` must reproduce, number for number."""
    z = rng.gauss(0.0, 1.0)
    raw = sim.price * math.exp(VOLATILITY * z - 0.5 * VOLATILITY * VOLATILITY)
    digits = 2 if sim.tick_size >= 0.01 else 4
    price = round(max(sim.tick_size, round(raw / sim.tick_size) * sim.tick_size), digits)
    sim.price = price
    half = max(1, round(price * 0.0001 / sim.tick_size)) * sim.tick_size
    sim.volume += rng.randrange(100, 2_000, 100)
    return Quote(
        symbol=sim.symbol,
        price=price,
        ts_ms=ts_ms,
        bid=round(price - half, digits),
        ask=round(price + half, digits),
        volume=sim.volume,
        prev_close=sim.prev_close,
    )


@pytest.mark.parametrize("base", [None, 0.0123, 0.9999, 1.0, 150.0, 155.0, 912.5, 40_000.0])
def test_a_step_gives_the_numbers_of_the_random_module_and_round_from_the_same_seed(
    base: float | None,
) -> None:
    fast = _SymbolSim("XYZ", 7, base, 1_700_000_000_000)
    model = _SymbolSim("XYZ", 7, base, 1_700_000_000_000)
    rng = random.Random(int.from_bytes(hashlib.sha256(b"7:XYZ").digest()[:8], "big"))
    if base is None:
        base = round(math.exp(rng.uniform(math.log(5), math.log(800))), 2)
    birth = (
        round(base * math.exp(rng.gauss(0.0, 0.01)), 2),
        rng.randrange(100_000, 5_000_000, 100),
        rng.random(),
    )
    assert (fast.price, fast.volume, fast.acc) == birth
    for i in range(20_000):
        if i % 5_000 == 4_999:  # a new day: the last price is the previous close
            fast.prev_close = fast.price
            model.prev_close = model.price
        got, want = fast.step(i), _step_as_first_written(model, rng, i)
        assert repr(got) == repr(want), i


def test_a_market_left_comes_back_as_it_left_within_the_dormant_time_and_is_gone_after():
    clock = ManualClock(TUESDAY_MORNING)
    feed = SimulatedFeed(["AAPL"], rate=20, seed=1, clock=clock, invent=True)
    feed.set_demand(frozenset({"ZZZ"}))
    run(feed, 1.0)
    market = feed._sims["ZZZ"]
    feed.set_demand(frozenset())
    clock.now += DORMANT_SECONDS - 1
    run(feed, 0.1)
    feed.set_demand(frozenset({"ZZZ"}))
    assert feed._sims["ZZZ"] is market  # its price and its history as it left them
    feed.set_demand(frozenset())
    clock.now += DORMANT_SECONDS - 1  # its time starts again when it is left again
    run(feed, 0.1)
    assert "ZZZ" in feed._dormant
    clock.now += 1
    run(feed, 0.1)
    assert "ZZZ" not in feed._dormant and not feed._left
    feed.set_demand(frozenset({"ZZZ"}))
    assert feed._sims["ZZZ"] is not market  # a new market (the seed's: the same start)


def test_a_burst_of_demand_leaves_no_markets_and_no_tables_sized_for_it():
    clock = ManualClock(TUESDAY_MORNING)
    feed = SimulatedFeed(["AAPL"], rate=2, seed=1, clock=clock, invent=True)
    empty = sys.getsizeof(feed._sims)
    burst = frozenset(f"Z{i:04d}" for i in range(5_000))
    feed.set_demand(burst)
    run(feed, 0.6)  # a pass makes JOIN_PER_PASS markets
    assert len(feed._sims) == 5_001
    feed.set_demand(frozenset())
    assert len(feed._dormant) == DORMANT_MAX  # the most recently left
    clock.now += DORMANT_SECONDS
    run(feed, 0.1)
    assert not feed._dormant and list(feed._sims) == ["AAPL"]
    assert sys.getsizeof(feed._sims) == empty  # rebuilt at its size (a dict never shrinks by itself)


async def test_a_market_made_for_a_history_read_is_dormant_and_goes_like_the_others():
    clock = ManualClock(TUESDAY_MORNING)
    feed = SimulatedFeed(["AAPL"], rate=2, seed=1, clock=clock, invent=True)
    history = await feed.load_history("ZZZ", "1m", 0, 2**62)
    assert history and "ZZZ" in feed._dormant  # kept for its demand: the history shown stays its history
    market = feed._dormant["ZZZ"]
    run(feed, 0.1)
    assert feed._sweep_at > 0  # looked at once a second while a market is dormant
    feed.set_demand(frozenset({"ZZZ"}))
    assert feed._sims["ZZZ"] is market and not feed._left
    feed.set_demand(frozenset())
    clock.now += DORMANT_SECONDS
    run(feed, 0.1)
    assert not feed._dormant and feed._sweep_at == 0  # gone, and no more looks
