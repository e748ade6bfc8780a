"""Finnhub adapter against the fake Finnhub: token, several trades per frame, symbol limits."""

from __future__ import annotations

import logging

import pytest

from feeds.streaming.finnhub import FinnhubFeed
from tests.support.fakes.finnhub import FakeFinnhub
from tests.support.fakes.sink import fast_options, running
from tests.support.timing import eventually
from ticker.status import UNAVAILABLE, SymbolStatus


@pytest.fixture
async def fake():
    f = FakeFinnhub(token="s3cret-token", ping_interval=0.1)
    await f.start()
    yield f
    await f.close()


async def test_several_trades_in_one_frame_and_ping_frames(fake):
    feed = FinnhubFeed(token="s3cret-token", **fast_options(fake.url, silence=1.0))
    async with running(feed) as rec:
        feed.set_demand(frozenset({"AAPL", "BINANCE:BTCUSDT"}))
        await fake.wait_for(lambda: fake.symbols() == {"AAPL", "BINANCE:BTCUSDT"})
        assert sorted(m["symbol"] for m in fake.received) == ["AAPL", "BINANCE:BTCUSDT"]
        await fake.trades(("AAPL", 261.5, 100), ("BINANCE:BTCUSDT", 7296.89, 0.011467), ("AAPL", 261.6, 50))
        await eventually(lambda: len(rec.quotes) == 3)
        assert [(q.symbol, q.price) for q in rec.quotes] == [
            ("AAPL", 261.5),
            ("BINANCE:BTCUSDT", 7296.89),
            ("AAPL", 261.6),
        ]
        assert rec.last("AAPL").volume == 150  # trade sizes accumulate
        assert not rec.errors  # {"type":"ping"} frames are liveness, not errors


async def test_symbols_over_the_limit_are_reported_not_silently_missing(fake, caplog):
    feed = FinnhubFeed(token="s3cret-token", max_symbols=2, **fast_options(fake.url))
    async with running(feed) as rec:
        feed.set_demand(frozenset({"AAPL", "MSFT"}))
        await fake.wait_for(lambda: fake.symbols() == {"AAPL", "MSFT"})
        with caplog.at_level(logging.WARNING, logger="feeds.streaming.finnhub"):
            feed.set_demand(frozenset({"AAPL", "MSFT", "NVDA", "TSLA"}))
            await eventually(lambda: rec.errors["symbol_limit"] == 2, what="two symbols reported")
        assert fake.symbols() == {"AAPL", "MSFT"}
        health = feed.health()
        assert (
            health.up
            and "NVDA" in health.reason
            and "TSLA" in health.reason
            and "limit of 2" in health.reason
        )
        assert "NVDA" in caplog.text
        over = SymbolStatus(UNAVAILABLE, "over the provider plan's limit of 2 symbols")
        assert feed.symbol_state("NVDA") == over and feed.symbol_state("AAPL") is None
        # a slot frees: the first waiting symbol (in arrival order) gets it
        feed.set_demand(frozenset({"MSFT", "NVDA", "TSLA"}))
        await fake.wait_for(lambda: fake.symbols() == {"MSFT", "NVDA"}, what="NVDA promoted")
        assert "TSLA" in feed.health().reason and "NVDA" not in feed.health().reason


async def test_provider_too_many_symbols_error_lowers_the_limit(fake):
    fake.limit = 2
    feed = FinnhubFeed(token="s3cret-token", **fast_options(fake.url))
    async with running(feed) as rec:
        symbols = ["AAPL", "MSFT", "NVDA"]
        for n in range(1, 4):  # one at a time, so the refusal follows NVDA's subscribe
            feed.set_demand(frozenset(symbols[:n]))
            await fake.wait_for(lambda n=n: len(fake.received) >= n, what=f"subscribe #{n}")
        await eventually(lambda: rec.errors["symbol_limit"] >= 2, what="refusal and report")
        assert fake.symbols() == {"AAPL", "MSFT"}
        assert "NVDA" in feed.health().reason


async def test_a_bad_token_is_refused_and_never_logged(fake, caplog):
    feed = FinnhubFeed(token="wrong-token-xyz", **fast_options(fake.url))
    with caplog.at_level(logging.DEBUG):
        async with running(feed) as rec:
            await eventually(lambda: rec.errors["auth"] >= 2, what="retries")
            assert not feed.health().up
            assert feed.health().reason == "127.0.0.1 refused the credentials (HTTP 401; check FINNHUB_TOKEN)"
    assert fake.refused_tokens[0] == "wrong-token-xyz"
    assert "wrong-token-xyz" not in caplog.text and "wrong-token-xyz" not in feed.health().reason
