"""yahoo against a fake of the unofficial v7 quote endpoint: crumb, batches, unknown symbols, 429, garbage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from feeds.polled.yahoo import BATCH, YahooFeed
from tests.support.fakes.fake_yahoo import CRUMB_PATH, QUOTE_PATH, FakeYahoo
from tests.support.fakes.sink import FeedSink
from tests.support.timing import eventually
from ticker.status import UNAVAILABLE, SymbolStatus


@pytest.fixture
async def fake() -> AsyncIterator[FakeYahoo]:
    async with FakeYahoo() as f:
        yield f


def fast(fake: FakeYahoo, **kw: Any) -> YahooFeed:
    opts: dict[str, Any] = {"interval": 0.05, "rate": 50.0, "backoff_base": 0.05, "backoff_cap": 0.2} | kw
    return YahooFeed(url=fake.url, **opts)


async def started(feed: YahooFeed, demand: set[str]) -> FeedSink:
    sink = FeedSink()
    await feed.start(sink.ctx)
    feed.set_demand(frozenset(demand))
    return sink


async def test_cookie_crumb_then_batched_quotes(fake: FakeYahoo) -> None:
    feed = fast(fake)
    sink = await started(feed, {"AAPL", "MSFT", "BTC-USD"})
    try:
        await eventually(lambda: sink.symbols() == {"AAPL", "MSFT", "BTC-USD"}, within=10)
    finally:
        await feed.stop()
    assert [h.path for h in fake.hits[:3]] == ["/", CRUMB_PATH, QUOTE_PATH]
    assert fake.count(CRUMB_PATH) == 1
    assert all(sorted(b) == ["AAPL", "BTC-USD", "MSFT"] for b in fake.batches())  # one request for all three
    assert all(h.query.get("formatted") == "false" for h in fake.hits if h.path == QUOTE_PATH)
    q = next(q for q in sink.quotes if q.symbol == "AAPL")
    assert (
        q.price > 333.7 and q.bid == pytest.approx(q.price - 0.02) and q.ask == pytest.approx(q.price + 0.02)
    )
    assert q.prev_close == pytest.approx(q.price - 1.0) and q.volume == 3916296
    assert (q.open, q.high, q.low) == (q.prev_close, q.price, q.prev_close)  # the fake's day
    assert q.change == pytest.approx(1.0)
    assert not sink.errors


async def test_large_demand_is_split_into_batches(fake: FakeYahoo) -> None:
    symbols = {f"S{i:03d}" for i in range(BATCH * 2 + 7)}
    fake.prices.update({s: 10.0 for s in symbols})
    feed = fast(fake)
    sink = await started(feed, symbols)
    try:
        await eventually(lambda: sink.symbols() == symbols, within=10)
    finally:
        await feed.stop()
    sizes = sorted(len(b) for b in fake.batches()[:3])
    assert sizes == [7, BATCH, BATCH]
    assert set().union(*fake.batches()) == symbols  # only demanded symbols requested


async def test_unknown_symbols_are_reported_not_fatal(fake: FakeYahoo) -> None:
    feed = fast(fake)
    sink = await started(feed, {"AAPL", "NOPE", "ZZZZ"})
    try:
        await eventually(lambda: len(fake.batches()) >= 4 and "AAPL" in sink.symbols(), within=10)
        assert feed.health().up
    finally:
        await feed.stop()
    assert feed.unknown == {"NOPE", "ZZZZ"}
    assert feed.symbol_state("NOPE") == SymbolStatus(UNAVAILABLE, "the provider does not know NOPE")
    assert sink.errors == {"unknown_symbol": 2}  # once per symbol, not per poll
    assert sink.symbols() == {"AAPL"}


async def test_expired_crumb_is_renewed(fake: FakeYahoo) -> None:
    feed = fast(fake)
    sink = await started(feed, {"AAPL"})
    try:
        await eventually(lambda: len(sink.quotes) >= 2, within=10)
        fake.rotate_crumb()
        n = len(sink.quotes)
        await eventually(lambda: len(sink.quotes) >= n + 2, within=10)
    finally:
        await feed.stop()
    assert fake.count(CRUMB_PATH) == 2
    assert "auth" in sink.errors and any(h.status == 401 for h in fake.hits)


async def test_429_backs_off_and_garbage_survives(fake: FakeYahoo) -> None:
    fake.faults.extend(["429:1", "garbage", "shape", "500"])
    feed = fast(fake)
    sink = await started(feed, {"AAPL"})
    try:
        await eventually(lambda: len(sink.quotes) >= 2, within=10)
    finally:
        await feed.stop()
    quotes = [h for h in fake.hits if h.path == QUOTE_PATH]
    assert quotes[0].status == 429
    # a request already dispatched when the 429 arrived may follow at once; then a 1 s pause
    later = [h for h in quotes[1:] if h.at - quotes[0].at >= 0.2]
    assert later and later[0].at - quotes[0].at >= 0.95
    assert sink.errors == {"http_5xx": 1, "malformed": 2, "rate_limited": 1}


async def test_persistent_429_polls_rarely() -> None:
    async with FakeYahoo() as fake:
        fake.always_429 = True
        feed = YahooFeed(url=fake.url, interval=0.0, rate=50.0, backoff_base=0.5, backoff_cap=2.0)
        sink = await started(feed, {"AAPL"})
        try:
            await asyncio.sleep(3.0)  # the scenario: a 3 s window of 429s, counted below
        finally:
            await feed.stop()
    assert 1 <= fake.count(QUOTE_PATH) < 30  # ~150 at the configured rate without backoff
    assert sink.quotes == []
