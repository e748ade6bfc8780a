"""Behaviour every streaming adapter shares, run against each provider's fake upstream."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from feeds import registry
from feeds.streaming.coinbase import CoinbaseFeed
from feeds.streaming.engine import StreamFeed
from tests.support.fakes.local_http import start_app
from tests.support.fakes.providers import PROVIDERS, Provider
from tests.support.fakes.sink import fast_options, feed_options, running
from tests.support.fakes.upstream import FakeUpstream
from tests.support.system import free_port
from tests.support.timing import eventually


@pytest.fixture(params=PROVIDERS, ids=str)
async def setup(request, monkeypatch):
    prov: Provider = request.param
    for k, v in prov.env.items():
        monkeypatch.setenv(k, v)
    fake = prov.make_fake()
    await fake.start()

    def make(**over) -> StreamFeed:
        feed = registry.create_feeds([prov.name], feed_options(fake.url, **over))[0]
        assert isinstance(feed, StreamFeed)
        return feed

    yield prov, fake, make
    await fake.close()


async def _price_arrives(fake: FakeUpstream, rec, symbol: str, price: float) -> None:
    """The fake trades ``symbol`` at ``price`` every 0.1 s until the feed emits it (a connection the feed is
    just abandoning may take the first trade); fails after 5 s (scaled)."""

    async def arrived() -> bool:
        if price in rec.prices(symbol):
            return True
        await fake.trade(symbol, price)
        return False

    await eventually(arrived, 5.0, f"{symbol} at {price} to arrive", interval=0.1)


async def test_prices_from_the_fake_arrive_normalized(setup):
    prov, fake, make = setup
    feed = make()
    async with running(feed) as rec:
        feed.set_demand(frozenset({prov.symbol}))
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol}, what="upstream subscription")
        await _price_arrives(fake, rec, prov.symbol, 123.45)
        q = rec.last(prov.symbol)
        assert q is not None and q.symbol == prov.symbol and q.ts_ms > 0
        assert feed.health().up and feed.health().last_data is not None
        assert rec.reconnects == 0 and not rec.errors


@pytest.mark.parametrize("how", ["close", "kill"])
async def test_reconnects_and_resubscribes_after_the_fake_drops_the_connection(setup, how):
    prov, fake, make = setup
    feed = make()
    async with running(feed) as rec:
        feed.set_demand(frozenset({prov.symbol, prov.other}))
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol, prov.other}, what="subscriptions")
        if how == "close":
            await fake.drop_all()
        else:
            fake.kill_all()
        await fake.wait_for(lambda: fake.connects == 2, what="reconnect")
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol, prov.other}, what="resubscribe")
        await eventually(lambda: rec.reconnects == 1, what="ctx.reconnected()")
        await _price_arrives(fake, rec, prov.other, 77.5)
        assert feed.health().up and rec.errors["disconnect"] == 1


async def test_malformed_messages_are_counted_and_survived(setup):
    prov, fake, make = setup
    feed = make()
    async with running(feed) as rec:
        feed.set_demand(frozenset({prov.symbol}))
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol}, what="subscription")
        bad = ["{not json", *type(fake).BAD]
        for text in bad:
            await fake.broadcast_raw(text)
        await eventually(
            lambda: rec.errors["malformed"] + rec.errors["unexpected"] >= len(bad), what="counts"
        )
        await _price_arrives(fake, rec, prov.symbol, 42.25)
        assert fake.connects == 1 and feed.health().up


async def test_upstream_subscriptions_follow_demand_with_linger(setup):
    prov, fake, make = setup
    feed = make(feed_linger=0.4)
    async with running(feed):
        feed.set_demand(frozenset({prov.symbol}))
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol}, what="subscribe on first demand")
        sent = len(fake.received)
        feed.set_demand(frozenset())
        await asyncio.sleep(0.15)  # the scenario: a moment inside the 0.4 s linger, nothing may change
        assert fake.symbols() == {prov.symbol}, "unsubscribed before the linger ended"
        feed.set_demand(frozenset({prov.symbol}))  # a client came back within the linger
        await asyncio.sleep(0.6)  # the scenario: past the linger's end, still nothing may change
        assert fake.symbols() == {prov.symbol} and len(fake.received) == sent, "churned upstream"
        feed.set_demand(frozenset({prov.other}))
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol, prov.other}, within=0.3, what="other")
        await fake.wait_for(lambda: fake.symbols() == {prov.other}, what="unsubscribe after linger")


async def test_a_silent_upstream_is_reconnected(setup):
    prov, fake, make = setup
    feed = make(feed_silence=1.0)
    async with running(feed) as rec:
        feed.set_demand(frozenset({prov.symbol}))
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol}, what="subscription")
        # The scenario: no data for longer than the 1 s silence limit; heartbeats or pongs keep the link up.
        await asyncio.sleep(1.3)
        assert fake.connects == 1 and not rec.errors["silence"]
        fake.go_silent()
        await eventually(lambda: rec.errors["silence"] >= 1, within=3.0, what="silence detected")
        fake.wake()
        await fake.wait_for(
            lambda: fake.connects >= 2 and len(fake.conns) == 1 and fake.symbols() == {prov.symbol},
            what="one fresh connection, resubscribed",
        )
        await _price_arrives(fake, rec, prov.symbol, 99.0)
        assert rec.reconnects >= 1


async def test_a_feed_that_cannot_connect_says_why_in_words_naming_the_host():
    # Nothing listens on the port: refused. The reason is what /readyz and the status messages show.
    feed = CoinbaseFeed("coinbase", **fast_options(f"ws://127.0.0.1:{free_port()}/"))
    async with running(feed) as rec:
        await eventually(lambda: rec.errors["connect"] >= 1, what="a refused connection")
        assert not feed.health().up and feed.health().reason == "127.0.0.1 refused the connection"

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance")

    app = web.Application()
    app.router.add_get("/", unavailable)
    runner, port = await start_app(app)
    try:
        feed = CoinbaseFeed("coinbase", **fast_options(f"ws://127.0.0.1:{port}/"))
        async with running(feed) as rec:
            await eventually(lambda: rec.errors["connect"] >= 1, what="a refused upgrade")
            assert feed.health().reason == "127.0.0.1 answered HTTP 503"
    finally:
        await runner.cleanup()
