"""The simulated market: determinism, rates, demand following, plausible quotes."""

from __future__ import annotations

from feeds.base import FeedContext
from feeds.simulated import SimulatedFeed
from ticker.quote import Quote


def run(feed: SimulatedFeed, seconds: float, step: float = 0.01) -> list[Quote]:
    out: list[Quote] = []
    feed._ctx = FeedContext(emit=out.append)
    t = 0.0
    while t < seconds:
        feed.tick(step, int(t * 1000))
        t += step
    return out


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


def test_demand_adds_and_drops_extra_symbols_but_keeps_the_universe():
    feed = SimulatedFeed(["AAPL"], rate=20, seed=1)
    feed.set_demand(frozenset({"ZZZ"}))
    assert {x.symbol for x in run(feed, 1.0)} == {"AAPL", "ZZZ"}
    feed.set_demand(frozenset())
    assert {x.symbol for x in run(feed, 1.0)} == {"AAPL"}


def test_thousands_of_ticks_per_second_in_simulated_time():
    feed = SimulatedFeed([f"S{i}" for i in range(100)], rate=100, seed=3)
    assert len(run(feed, 1.0)) >= 9900
