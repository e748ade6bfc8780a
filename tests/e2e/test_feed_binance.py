"""Binance adapter against the fake Binance: combined streams, acks, pacing, limits, ping/pong, shutdowns."""

from __future__ import annotations

import pytest

from feeds.streaming.binance import BinanceFeed
from tests.support.fakes.binance import FakeBinance
from tests.support.fakes.sink import fast_options, running
from tests.support.timing import eventually


@pytest.fixture
async def fake():
    f = FakeBinance(ping_interval=0.3)
    await f.start()
    yield f
    await f.close()


async def test_ticker_book_and_trade_streams_normalized(fake):
    feed = BinanceFeed(streams=("ticker", "bookTicker", "trade"), **fast_options(fake.url))
    async with running(feed) as rec:
        feed.set_demand(frozenset({"BNBBTC"}))
        await fake.wait_for(
            lambda: fake.subscribed() == {"bnbbtc@ticker", "bnbbtc@bookTicker", "bnbbtc@trade"}
        )
        req = fake.requests[0]
        assert req["method"] == "SUBSCRIBE" and isinstance(req["id"], int)
        await eventually(lambda: not feed.pending, what="SUBSCRIBE acknowledged")
        await fake.ticker("BNBBTC", "0.0025", "0.0024", "0.0026")
        await eventually(lambda: len(rec.quotes) == 1)
        q = rec.quotes[0]
        assert (q.price, q.bid, q.ask, q.volume, q.change, q.change_percent, q.prev_close) == (
            0.0025,
            0.0024,
            0.0026,
            10000.0,
            0.0015,
            250.0,
            0.001,
        )
        assert q.ts_ms == 1672515782136
        assert (q.open, q.high, q.low, q.vwap) == (0.001, 0.0025, 0.001, 0.0018)  # the rolling 24 hours
        await fake.book("BNBBTC", "0.00241", "0.00259")
        await fake.trade("BNBBTC", 0.00251)
        await eventually(lambda: len(rec.quotes) == 3)
        q = rec.quotes[-1]
        assert (q.price, q.bid, q.ask, q.volume) == (0.00251, 0.00241, 0.00259, 10000.5)
        day = (q.open, q.high, q.low, q.prev_close)
        assert day == (0.001, 0.00251, 0.001, 0.001)  # the trade above the 24-hour high raised it
        assert not rec.errors


async def test_control_messages_stay_under_five_per_second(fake):
    feed = BinanceFeed(**fast_options(fake.url))  # ticker + trade: 100 symbols per SUBSCRIBE, 512 in all
    pairs = [f"C{i:03d}USDT" for i in range(512)]
    async with running(feed):
        feed.set_demand(frozenset(pairs))  # six requests at once: a burst an unpaced client would send
        await fake.wait_for(lambda: fake.symbols() == set(pairs), within=8, what="all subscribed")
        assert len(fake.requests) == 6 and fake.rate_kicks == 0 and fake.connects == 1
        await eventually(lambda: not feed.pending, what="every request acknowledged")


async def test_at_most_1024_streams_per_connection(fake):
    feed = BinanceFeed(streams=("ticker", "bookTicker", "trade"), **fast_options(fake.url))
    pairs = [f"P{i:03d}USDT" for i in range(400)]
    async with running(feed) as rec:
        feed.set_demand(frozenset(pairs))
        await fake.wait_for(lambda: len(fake.symbols()) == 341, within=8, what="341 symbols x 3 streams")
        await eventually(lambda: rec.errors["symbol_limit"] >= 59, what="the 59 symbols over the limit")
        assert len(fake.subscribed()) == 1023 and fake.rate_kicks == 0
        assert rec.errors["symbol_limit"] == 59 and "limit of 341" in feed.health().reason
        assert all(len(r["params"]) <= 200 for r in fake.requests)


async def test_server_pings_are_answered(fake):
    feed = BinanceFeed(**fast_options(fake.url, silence=1.0))
    async with running(feed) as rec:
        # Five pongs at 0.3 s intervals: the pings alone kept the link up past the 1 s silence limit.
        await eventually(lambda: fake.conns and fake.conns[0].pongs >= 5, what="five pongs")
        assert fake.pings_sent >= 5
        assert fake.connects == 1 and not rec.errors


async def test_server_shutdown_event_reconnects_and_resubscribes(fake):
    feed = BinanceFeed(**fast_options(fake.url))
    async with running(feed) as rec:
        feed.set_demand(frozenset({"BTCUSDT"}))
        await fake.wait_for(lambda: fake.symbols() == {"BTCUSDT"})
        await fake.shutdown()
        await fake.wait_for(lambda: fake.connects == 2 and fake.symbols() == {"BTCUSDT"}, what="reconnect")
        assert rec.errors["server_shutdown"] == 1 and rec.reconnects == 1


async def test_the_24_hour_disconnect_reconnects():
    fake = FakeBinance(ping_interval=0.3, max_age=0.4)  # 24 hours, scaled down
    await fake.start()
    try:
        feed = BinanceFeed(**fast_options(fake.url))
        async with running(feed) as rec:
            feed.set_demand(frozenset({"ETHUSDT"}))
            await fake.wait_for(
                lambda: fake.connects >= 3 and fake.symbols() == {"ETHUSDT"}, what="two renewals"
            )
            assert rec.reconnects >= 2
            await fake.trade("ETHUSDT", 3100.5)
            await eventually(lambda: 3100.5 in rec.prices("ETHUSDT"))
    finally:
        await fake.close()


async def test_error_replies_and_unknown_acks_are_counted(fake):
    feed = BinanceFeed(**fast_options(fake.url))
    async with running(feed) as rec:
        await eventually(lambda: feed.health().up)
        await fake.broadcast(
            {"code": 2, "msg": "Invalid request: missing field `method` at line 1 column 73"}
        )
        await fake.broadcast({"result": None, "id": 999999})
        await eventually(lambda: rec.errors["upstream_error"] == 1 and rec.errors["unexpected"] == 1)
        assert feed.health().up
