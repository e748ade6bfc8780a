"""Polygon adapter against the fake Polygon stocks socket: status, auth, T./Q. channels, event arrays."""

from __future__ import annotations

import logging

import pytest

from feeds.streaming.polygon import PolygonFeed
from tests.support.fakes.polygon import FakePolygon
from tests.support.fakes.sink import fast_options, running
from tests.support.timing import eventually
from ticker.bars import Bar


@pytest.fixture
async def fake():
    f = FakePolygon(key="POLYKEY")
    await f.start()
    yield f
    await f.close()


async def test_auth_subscribe_channels_and_event_arrays(fake):
    feed = PolygonFeed(api_key="POLYKEY", **fast_options(fake.url))
    async with running(feed) as rec:
        feed.set_demand(frozenset({"MSFT", "AAPL"}))
        await fake.wait_for(lambda: fake.symbols() == {"MSFT", "AAPL"})
        assert fake.received[:2] == [
            {"action": "auth", "params": "POLYKEY"},
            {"action": "subscribe", "params": "T.AAPL,Q.AAPL,AM.AAPL,T.MSFT,Q.MSFT,AM.MSFT"},
        ]
        await fake.events(
            {"ev": "T", "sym": "MSFT", "i": "50578", "x": 4, "p": 215.9721, "s": 100, "t": 1611082428813, "z": 3},
            {"ev": "T", "sym": "MSFT", "i": "12856", "x": 4, "p": 215.989, "s": 1, "c": [37], "t": 1611082428814},
            {"ev": "Q", "sym": "MSFT", "bx": 4, "bp": 215.98, "bs": 100, "ax": 7, "ap": 215.99, "as": 160,
             "c": 0, "i": [604], "t": 1611082428815, "q": 50385480, "z": 3},
            {"ev": "AM", "sym": "MSFT", "v": 4110, "av": 9470157, "op": 0.4372, "vw": 0.4488, "o": 0.4488,
             "c": 0.4486, "h": 0.4489, "l": 0.4486, "a": 0.4352, "z": 685, "s": 1610144640000, "e": 1610144700000},
        )  # fmt: skip
        await eventually(lambda: len(rec.quotes) == 3)
        q = rec.last("MSFT")
        assert (q.price, q.bid, q.ask, q.volume, q.ts_ms) == (215.989, 215.98, 215.99, 101, 1611082428815)
        await eventually(lambda: rec.bars)  # the minute aggregate: the provider's final 1m bar
        assert rec.bars == [("MSFT", "1m", Bar(1610144640000, 0.4488, 0.4489, 0.4486, 0.4486, 4110), True)]
        feed.set_demand(frozenset({"AAPL"}))
        await fake.wait_for(lambda: fake.symbols() == {"AAPL"})
        assert fake.received[-1] == {"action": "unsubscribe", "params": "T.MSFT,Q.MSFT,AM.MSFT"}
        assert not rec.errors


async def test_auth_failed_keeps_the_feed_down(fake, caplog):
    feed = PolygonFeed(api_key="BAD-KEY-123", **fast_options(fake.url))
    with caplog.at_level(logging.DEBUG):
        async with running(feed) as rec:
            await eventually(lambda: rec.errors["auth"] >= 2)
            assert not feed.health().up and "authentication failed" in feed.health().reason
    assert "BAD-KEY-123" not in caplog.text


async def test_max_connections_disconnect_is_reported_and_reconnected(fake):
    feed = PolygonFeed(api_key="POLYKEY", **fast_options(fake.url, reconnect_base=0.3, reconnect_cap=0.3))
    intruder = PolygonFeed(api_key="POLYKEY", **fast_options(fake.url))
    async with running(feed) as rec:
        feed.set_demand(frozenset({"AAPL"}))
        await fake.wait_for(lambda: fake.symbols() == {"AAPL"})
        async with running(intruder):
            await eventually(lambda: rec.errors["connection_limit"] >= 1, what="max_connections status")
        await eventually(lambda: feed.health().up and "AAPL" in fake.symbols(), what="back after it left")


async def test_error_status_is_counted(fake):
    feed = PolygonFeed(api_key="POLYKEY", **fast_options(fake.url))
    async with running(feed) as rec:
        await eventually(lambda: feed.health().up)
        await fake.events({"ev": "status", "status": "error", "message": "something odd"})
        await eventually(lambda: rec.errors["upstream_error"] == 1)
        assert feed.health().up
