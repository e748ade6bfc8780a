"""Each feed adapter without a connection: the symbols it owns, its flags and limits, its credentials."""

from __future__ import annotations

import pytest

from feeds import registry
from feeds.credentials import FeedConfigError
from feeds.polled.finnhub_rest import MAX_RATE, FinnhubRestFeed
from feeds.streaming.alpaca import AlpacaFeed
from feeds.streaming.binance import BinanceFeed
from feeds.streaming.coinbase import CoinbaseFeed
from feeds.streaming.finnhub import FinnhubFeed
from tests.support.fakes.providers import PROVIDERS
from tests.support.fakes.sink import feed_options
from ticker.cli.main import parse
from ticker.server.config import Config


@pytest.mark.parametrize("prov", [p for p in PROVIDERS if p.env], ids=str)
def test_missing_credentials_fail_with_one_clear_line(prov, monkeypatch):
    for k in prov.env:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ValueError) as err:
        registry.create_feeds([prov.name], feed_options("ws://127.0.0.1:9/"))
    msg = str(err.value)
    assert "\n" not in msg and all(k in msg for k in prov.env) and prov.name in msg


def test_coinbase_owns_product_ids_only():
    feed = CoinbaseFeed("coinbase", url="ws://x")
    assert feed.owns("BTC-USD") and feed.owns("ETH-EUR")
    assert not feed.owns("AAPL") and not feed.owns("BTCUSDT") and not feed.owns("BINANCE:BTCUSDT")


def test_binance_symbol_convention_and_stream_choice():
    feed = BinanceFeed(url="ws://x")
    assert feed.owns("BTCUSDT") and feed.owns("ETHBTC") and feed.owns("BNBFDUSD")
    assert not feed.owns("AAPL") and not feed.owns("BTC-USD") and not feed.owns("USDT")
    assert feed.subscribe_messages(["BTCUSDT"])[0]["params"] == ["btcusdt@ticker", "btcusdt@trade"]
    with pytest.raises(FeedConfigError):
        BinanceFeed(url="ws://x", streams=("depth",))


def test_finnhub_default_limit_is_50_and_configurable(monkeypatch):
    monkeypatch.setenv("FINNHUB_TOKEN", "x")
    config = parse(["serve", "--feed", "finnhub"])
    assert isinstance(config, Config)
    feed = registry.create_feeds(config.feeds, config.feed_options)[0]
    assert isinstance(feed, FinnhubFeed) and feed.symbol_limit == 50
    monkeypatch.setenv("TICKER_FINNHUB_MAX_SYMBOLS", "7")
    config = parse(["serve", "--feed", "finnhub"])
    assert isinstance(config, Config)
    feed = registry.create_feeds(config.feeds, config.feed_options)[0]
    assert isinstance(feed, FinnhubFeed) and feed.symbol_limit == 7


def test_finnhub_owns_stock_tickers_and_exchange_symbols():
    feed = FinnhubFeed(token="t", url="ws://x")
    assert all(feed.owns(s) for s in ("AAPL", "BRK.B", "BINANCE:BTCUSDT", "OANDA:EUR_USD"))
    assert not feed.owns("BTC-USD")


def test_alpaca_feed_flag_picks_the_endpoint_and_limit(monkeypatch):
    monkeypatch.setenv("ALPACA_KEY_ID", "k")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "s")
    iex = registry.create_feeds(["alpaca"], feed_options(None))[0]
    sip = registry.create_feeds(["alpaca"], feed_options(None, alpaca_feed="sip"))[0]
    assert isinstance(iex, AlpacaFeed) and isinstance(sip, AlpacaFeed)
    assert iex.url == "wss://stream.data.alpaca.markets/v2/iex" and iex.symbol_limit == 30
    assert sip.url == "wss://stream.data.alpaca.markets/v2/sip" and sip.symbol_limit is None


def test_finnhub_rest_rate_is_capped_at_finnhubs_per_second_limit() -> None:
    feed = FinnhubRestFeed("t", rate=1000.0)
    assert feed.bucket.rate == MAX_RATE
    with pytest.raises(ValueError, match="FINNHUB_TOKEN"):
        FinnhubRestFeed("")
