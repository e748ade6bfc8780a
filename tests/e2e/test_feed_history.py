"""Each provider adapter's ``load_history`` against its fake's history endpoint: the bars (gaps, nulls, day
stamps), paging and windows, credentials in headers, intervals it cannot serve, unknown symbols, errors."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from feeds.base import Feed
from feeds.errors import AuthFailed, Malformed, RateLimited, UpstreamError
from feeds.polled.finnhub_rest import FinnhubRestFeed
from feeds.polled.yahoo import YahooFeed
from feeds.simhistory import aggregate
from feeds.streaming.alpaca import AlpacaFeed
from feeds.streaming.binance import BinanceFeed
from feeds.streaming.coinbase import CoinbaseFeed
from feeds.streaming.finnhub import FinnhubFeed
from feeds.streaming.polygon import PolygonFeed
from tests.support.fakes.alpaca import FakeAlpaca
from tests.support.fakes.barsdata import expected, fake_bars
from tests.support.fakes.binance import FakeBinance
from tests.support.fakes.coinbase import FakeCoinbase
from tests.support.fakes.fake_finnhub_rest import FakeFinnhubRest
from tests.support.fakes.fake_yahoo import FakeYahoo
from tests.support.fakes.finnhub import FakeFinnhub
from tests.support.fakes.polygon import FakePolygon
from tests.support.fakes.sink import fast_options

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW = int(time.time() * 1000) // HOUR * HOUR  # Yahoo's intraday bars reach back a few weeks only
START = NOW - 3 * HOUR


@dataclass
class Setup:
    name: str
    feed: Feed
    fake: Any
    symbol: str
    faults: deque[str]
    ny_days: bool = True  # day bars at midnight New York (US equities), else UTC (crypto)


async def _make(name: str) -> tuple[Setup, Any]:
    if name == "polygon":
        fake: Any = await FakePolygon().start()
        fake.aggs_page = 50
        feed: Feed = PolygonFeed(api_key="POLYKEY", **fast_options(fake.url))
        feed.reference_rate = 1000.0  # type: ignore[attr-defined]
        return Setup(name, feed, fake, "AAPL", fake.desk.faults), fake
    if name == "alpaca":
        fake = await FakeAlpaca().start()
        fake.bars_page = 50
        return Setup(name, AlpacaFeed(key_id="KEY", secret="SECRET", **fast_options(fake.url)), fake, "AAPL",
                     fake.desk.faults), fake  # fmt: skip
    if name == "finnhub":
        fake = await FakeFinnhub().start()
        feed = FinnhubFeed(token="test-token", **fast_options(fake.url))
        feed.reference_rate = 1000.0
        return Setup(name, feed, fake, "AAPL", fake.desk.faults), fake
    if name == "finnhub-rest":
        fake = await FakeFinnhubRest().start()
        feed = FinnhubRestFeed("test-token", url=fake.url, rate=30.0)
        return Setup(name, feed, fake, "AAPL", fake.desk.faults), fake
    if name == "yahoo":
        fake = await FakeYahoo().start()
        feed = YahooFeed(url=fake.url, rate=1000.0)
        return Setup(name, feed, fake, "AAPL", fake.faults), fake
    if name == "binance":
        fake = await FakeBinance().start()
        return Setup(
            name, BinanceFeed(**fast_options(fake.url)), fake, "BTCUSDT", fake.desk.faults, False
        ), fake
    fake = await FakeCoinbase().start()
    return Setup(name, CoinbaseFeed(**fast_options(fake.url)), fake, "BTC-USD", fake.desk.faults, False), fake


NAMES = ["polygon", "alpaca", "finnhub", "finnhub-rest", "yahoo", "binance", "coinbase"]


@pytest.fixture(params=NAMES)
async def setup(request) -> AsyncIterator[Setup]:
    s, fake = await _make(request.param)
    yield s
    await (fake.stop() if hasattr(fake, "stop") else fake.close())


def hits(s: Setup, part: str) -> list[Any]:
    log = s.fake.desk.hits if s.name not in ("yahoo",) else s.fake.hits
    return [h for h in log if part in h.path]


HISTORY_PATH = {
    "polygon": "/v2/aggs/",
    "alpaca": "/bars",
    "finnhub": "/stock/candle",
    "finnhub-rest": "/stock/candle",
    "yahoo": "/v8/finance/chart/",
    "binance": "/api/v3/klines",
    "coinbase": "/candles",
}


async def test_minute_bars_with_their_gaps_oldest_first(setup: Setup):
    bars = await setup.feed.load_history(setup.symbol, "1m", START, NOW)
    assert bars == expected(setup.symbol, MIN, START, NOW)
    assert len(bars) > 150  # three hours, every seventh minute without trades
    for h in hits(setup, HISTORY_PATH[setup.name]):
        assert (
            "POLYKEY" not in str(h.query)
            and "SECRET" not in str(h.query)
            and "test-token" not in str(h.query)
        )


async def test_day_and_hour_bars(setup: Setup):
    start = NOW - 30 * DAY
    days = await setup.feed.load_history(setup.symbol, "1d", start, NOW)
    assert days == expected(setup.symbol, DAY, start, NOW, ny_days=setup.ny_days)
    hours = await setup.feed.load_history(setup.symbol, "1h", NOW - 2 * DAY, NOW)
    if setup.name == "yahoo":  # from 5-minute bars, merged into clock hours
        want = aggregate(fake_bars(setup.symbol, 5 * MIN, NOW - 2 * DAY, NOW), HOUR, NOW - 2 * DAY, NOW)
    else:
        want = expected(setup.symbol, HOUR, NOW - 2 * DAY, NOW)
    assert hours == want


async def test_paging_and_windows_reach_the_whole_range(setup: Setup):
    """Polygon and Alpaca follow their cursors (pages of 50 here), Coinbase asks 300 candles at a time, Binance
    pages forward 1,000 klines at a time, Yahoo a week of minutes at a time."""
    span = {"binance": 20 * HOUR, "coinbase": 12 * HOUR, "yahoo": 9 * DAY}.get(setup.name, 3 * HOUR)
    start = NOW - span
    bars = await setup.feed.load_history(setup.symbol, "1m", start, NOW)
    assert bars == expected(setup.symbol, MIN, start, NOW)
    requests = len(hits(setup, HISTORY_PATH[setup.name]))
    assert requests == {"polygon": 4, "alpaca": 4, "binance": 2, "coinbase": 3, "yahoo": 2}.get(setup.name, 1)


async def test_seconds_only_where_the_provider_has_them(setup: Setup):
    bars = await setup.feed.load_history(setup.symbol, "1s", NOW - 10 * MIN, NOW)
    if setup.name == "binance":
        assert bars == expected(setup.symbol, 1000, NOW - 10 * MIN, NOW)
    else:
        assert bars is None and not hits(setup, HISTORY_PATH[setup.name])


async def test_an_unknown_symbol_has_no_bars(setup: Setup):
    symbol = {"binance": "QQQQUSDT", "coinbase": "QQQQ-USD"}.get(setup.name, "ZZZZ")
    if setup.name == "binance":
        with pytest.raises(UpstreamError, match="Invalid symbol"):
            await setup.feed.load_history(symbol, "1m", START, NOW)
    else:
        assert await setup.feed.load_history(symbol, "1m", START, NOW) == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [("429:7", RateLimited), ("500", UpstreamError), ("garbage", Malformed), ("drop", UpstreamError)],
)
async def test_errors_are_feed_errors(setup: Setup, fault: str, error: type[Exception]):
    setup.faults.extend([fault] * 2)  # aiohttp resends a request once on a dropped connection
    with pytest.raises(error) as err:
        await setup.feed.load_history(setup.symbol, "1m", START, NOW)
    if isinstance(err.value, RateLimited):
        assert err.value.retry_after == 7.0
    assert "?" not in str(err.value)  # no URL with a query in the reason
    setup.faults.clear()
    assert await setup.feed.load_history(setup.symbol, "1m", START, NOW)  # the next load works


@pytest.mark.parametrize("name", ["polygon", "alpaca", "finnhub", "finnhub-rest"])
async def test_refused_credentials_are_auth_failed(name: str):
    _, fake = await _make(name)
    try:
        if name == "polygon":
            feed: Feed = PolygonFeed(api_key="WRONG", **fast_options(fake.url))
        elif name == "alpaca":
            feed = AlpacaFeed(key_id="KEY", secret="WRONG", **fast_options(fake.url))
        elif name == "finnhub":
            feed = FinnhubFeed(token="WRONG", **fast_options(fake.url))
        else:
            feed = FinnhubRestFeed("WRONG", url=fake.url)
        with pytest.raises(AuthFailed) as err:
            await feed.load_history("AAPL", "1m", START, NOW)
        assert "WRONG" not in str(err.value)
    finally:
        await (fake.stop() if hasattr(fake, "stop") else fake.close())


async def test_polygon_next_url_elsewhere_is_asked_of_our_own_host_with_the_key():
    s, fake = await _make("polygon")
    try:
        fake.next_base = "https://api.massive.com"  # what the real next_url names
        bars = await s.feed.load_history("AAPL", "1m", START, NOW)
        assert bars == expected("AAPL", MIN, START, NOW)
        pages = hits(s, "/v2/aggs/")
        assert len(pages) == 4 and all(h.headers.get("Authorization") == "Bearer POLYKEY" for h in pages)
        assert [bool(h.query.get("cursor")) for h in pages] == [False, True, True, True]
        assert pages[0].query == {"adjusted": "true", "sort": "asc", "limit": "50000"}
        fake.not_entitled.add("MSFT")
        with pytest.raises(AuthFailed, match="doesn't include this data timeframe"):
            await s.feed.load_history("MSFT", "1d", NOW - 400 * DAY, NOW)
    finally:
        await fake.close()


async def test_finnhub_without_candles_in_the_plan_has_no_history_and_stops_asking():
    s, fake = await _make("finnhub-rest")
    try:
        fake.candles.no_access = True
        assert await s.feed.load_history("AAPL", "1m", START, NOW) is None
        assert await s.feed.load_history("MSFT", "1d", START - 9 * DAY, NOW) is None
        assert len(hits(s, "/stock/candle")) == 1
    finally:
        await fake.stop()


async def test_alpaca_asks_split_adjusted_bars_of_its_source_feed():
    s, fake = await _make("alpaca")
    try:
        await s.feed.load_history("AAPL", "5m", START, NOW)
        (first,) = hits(s, "/bars")
        assert first.path == "/v2/stocks/AAPL/bars"
        assert {k: first.query[k] for k in ("timeframe", "adjustment", "feed", "limit")} == {
            "timeframe": "5Min", "adjustment": "split", "feed": "iex", "limit": "10000"
        }  # fmt: skip
        assert (first.headers.get("APCA-API-KEY-ID"), first.headers.get("APCA-API-SECRET-KEY")) == (
            "KEY",
            "SECRET",
        )
    finally:
        await fake.close()
