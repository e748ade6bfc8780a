"""Coinbase adapter against a fake Coinbase Exchange feed."""

from __future__ import annotations

import pytest

from feeds import registry
from feeds.streaming.coinbase import CoinbaseFeed
from tests.support.fakes.coinbase import FakeCoinbase
from tests.support.fakes.sink import fast_options, feed_options, running
from tests.support.timing import eventually
from ticker.status import UNAVAILABLE, SymbolStatus


@pytest.fixture
async def fake():
    f = FakeCoinbase(subscribe_deadline=0.5, heartbeat_interval=0.05)
    await f.start()
    yield f
    await f.close()


async def test_ticker_prices_arrive_normalized(fake):
    feed = registry.create_feeds(["coinbase"], feed_options(fake.url))[0]
    assert isinstance(feed, CoinbaseFeed)
    async with running(feed) as rec:
        feed.set_demand(frozenset({"ETH-USD"}))
        await fake.wait_for(lambda: fake.tickers() == {"ETH-USD"}, what="ticker subscription")
        sub = [m for m in fake.received if m.get("type") == "subscribe" and m.get("product_ids")]
        assert sub == [{"type": "subscribe", "product_ids": ["ETH-USD"], "channels": ["ticker"]}]
        await fake.ticker("ETH-USD", "1285.22", "1285.04", "1285.27")
        await eventually(lambda: rec.quotes, what="a quote")
        q = rec.quotes[-1]
        assert (q.symbol, q.price, q.bid, q.ask) == ("ETH-USD", 1285.22, 1285.04, 1285.27)
        assert q.volume == 245532.79269678 and q.prev_close == 1310.79
        assert (q.open, q.high, q.low) == (1310.79, 1313.8, 1280.52)  # the rolling 24 hours
        assert q.ts_ms == 1666222102061
        assert feed.health().up and feed.health().last_data is not None


async def test_heartbeat_keeps_an_idle_connection_within_the_subscribe_deadline(fake):
    feed = CoinbaseFeed("coinbase", **fast_options(fake.url, silence=0.3))
    async with running(feed) as rec:
        await fake.wait_for(lambda: "heartbeat:BTC-USD" in fake.subscribed(), what="heartbeat subscription")
        # Idle until the fake's 0.5 s subscribe deadline came, past the feed's 0.3 s silence limit too.
        await fake.wait_for(lambda: fake.deadlines_passed == 1, what="the subscribe deadline")
        assert fake.deadline_kicks == 0 and fake.connects == 1
        assert rec.reconnects == 0 and feed.health().up


async def test_invalid_product_is_refused_and_the_rest_of_its_batch_resubscribed(fake):
    fake.invalid.add("NOPE-USD")
    feed = CoinbaseFeed("coinbase", **fast_options(fake.url, linger=5.0))
    async with running(feed) as rec:
        feed.set_demand(frozenset({"BTC-USD", "NOPE-USD", "ETH-USD"}))
        await fake.wait_for(lambda: fake.tickers() == {"BTC-USD", "ETH-USD"}, what="valid products")
        await eventually(lambda: rec.errors["invalid_symbol"] == 1, what="the refusal counted")
        assert rec.errors["upstream_error"] == 0

        def asked_for_nope() -> int:
            return sum(1 for m in fake.received if "NOPE-USD" in m.get("product_ids", []))

        assert asked_for_nope() == 1, "asked again"
        assert "NOPE-USD" in feed.health().reason
        assert feed.symbol_state("NOPE-USD") == SymbolStatus(
            UNAVAILABLE, "coinbase refused NOPE-USD: NOPE-USD is not a valid product"
        )
        assert feed.symbol_state("BTC-USD") is None
        # once no client wants it any more, it may be asked for again later
        feed.set_demand(frozenset({"BTC-USD"}))
        await fake.wait_for(lambda: "NOPE-USD" not in feed.health().reason, what="refusal forgotten")
        assert "NOPE-USD" not in feed.health().reason
        assert asked_for_nope() == 1 and rec.errors["invalid_symbol"] == 1, "asked again while demanded"


async def test_upstream_error_message_is_counted(fake):
    feed = CoinbaseFeed("coinbase", **fast_options(fake.url))
    async with running(feed) as rec:
        await fake.wait_for(lambda: fake.conns, what="connection")
        await fake.broadcast({"type": "error", "message": "ErrSlowConsume", "reason": "too slow"})
        await fake.broadcast({"type": "status", "products": []})
        await eventually(lambda: rec.errors["upstream_error"] == 1 and rec.errors["unexpected"] == 1)
        assert feed.health().up
