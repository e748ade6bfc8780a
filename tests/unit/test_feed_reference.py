"""Reference data of the provider adapters: every documented sample parses into the directory's entries,
the shared helpers (asset words, REST hosts, :class:`Rows`) do what the adapters rely on."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from feeds.errors import IncompleteReference, Malformed
from feeds.polled.finnhub_rest import FinnhubRestFeed
from feeds.polled.yahoo import YahooFeed
from feeds.reference import ASSET_WORDS, Rows, asset_type, decode, off_loop, reference_base
from feeds.streaming import alpaca, binance, coinbase, finnhub, polygon
from tests.support.fakes import refdata
from tests.support.fakes.refdata import response
from ticker.directory import ASSET_TYPES, SymbolInfo


def rows_of(owns=lambda s: True) -> tuple[Rows, list[str]]:
    reported: list[str] = []
    return Rows(owns, reported.append), reported


# -- the fixtures' documented samples ---------------------------------------------------------------


def test_alpaca_assets_sample_keeps_the_active_tradable_equity_only() -> None:
    rows, reported = rows_of(alpaca.AlpacaFeed(key_id="k", secret="s").owns)
    alpaca.parse_assets([*response("alpaca", "assets"), response("alpaca", "asset_crypto")], rows)
    assert rows.entries == [SymbolInfo("AAPL", "Apple Inc. Common Stock", "NASDAQ", "stock", "USD")]
    # the inactive rights issue, and the crypto pair (not on the us_equity stream)
    assert rows.left_out == {"inactive or not tradable": 1, "not a US equity": 1}
    assert not reported


def test_alpaca_names_that_say_etf_are_etfs() -> None:
    rows, _ = rows_of()
    base = {"class": "us_equity", "status": "active", "tradable": True, "exchange": "ARCA"}
    alpaca.parse_assets(
        [
            {**base, "symbol": "SPY", "name": "SPDR S&P 500 ETF Trust"},
            {**base, "symbol": "VXX", "name": "iPath Series B S&P 500 VIX Short-Term Futures ETN"},
            {**base, "symbol": "KO", "name": "Coca-Cola Company (The) Common Stock", "exchange": "NYSE"},
        ],
        rows,
    )
    assert [(e.symbol, e.type) for e in rows.entries] == [("SPY", "etf"), ("VXX", "etf"), ("KO", "stock")]


def test_binance_exchange_info_sample_names_the_pair_after_its_assets() -> None:
    rows, reported = rows_of(binance.BinanceFeed(url="ws://x").owns)
    binance.parse_exchange_info(response("binance", "response"), rows)
    assert rows.entries == [SymbolInfo("ETHBTC", "ETH/BTC", "Binance", "crypto", "BTC")]
    assert not reported


def test_binance_leaves_out_symbols_not_trading_and_reports_malformed_ones() -> None:
    rows, reported = rows_of(binance.BinanceFeed(url="ws://x").owns)
    binance.parse_exchange_info({"symbols": refdata.binance_symbols()}, rows)
    assert {e.symbol for e in rows.entries} == {"ETHBTC", "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"}
    assert rows.left_out == {"not trading": 1, "symbol this feed does not carry": 1}  # LUNAUSDT, BTCPLN
    assert rows.malformed == 1 and "baseAsset" in reported[0]
    with pytest.raises(Malformed):
        binance.parse_exchange_info([], rows)


def test_coinbase_products_samples_parse() -> None:
    rows, reported = rows_of(coinbase.CoinbaseFeed(url="ws://x").owns)
    coinbase.parse_products(response("coinbase", "products"), rows)
    coinbase.parse_products([response("coinbase", "product (")], rows)  # the same product: a duplicate
    assert rows.entries == [SymbolInfo("BTC-USD", "BTC/USD", "Coinbase", "crypto", "USD")]
    assert rows.left_out == {"duplicate": 1} and not reported


def test_coinbase_leaves_out_disabled_and_delisted_products() -> None:
    rows, reported = rows_of(coinbase.CoinbaseFeed(url="ws://x").owns)
    coinbase.parse_products(refdata.coinbase_products(), rows)
    assert [e.symbol for e in rows.entries] == ["BTC-USD", "ETH-USD", "ETH-EUR", "SOL-USD"]
    assert rows.entries[2] == SymbolInfo("ETH-EUR", "ETH/EUR", "Coinbase", "crypto", "EUR")
    assert rows.left_out == {"not trading": 2} and rows.malformed == 1 and len(reported) == 1


def test_finnhub_stock_symbols_sample_parses() -> None:
    rows, reported = rows_of(finnhub.FinnhubFeed(token="t", url="ws://x").owns)
    finnhub.parse_stock_symbols(response("finnhub", "stock_symbols"), rows)
    assert rows.entries == [
        SymbolInfo("UPOW", "UAN POWER CORP", "OTCM", "stock", "USD"),
        SymbolInfo("AAPL", "APPLE INC", "XNGS", "stock", "USD"),
        SymbolInfo("EXCOF", "EXCO TECHNOLOGIES LTD", "OOTC", "stock", "USD"),
    ]
    assert not reported and not rows.left_out


def test_finnhub_types_and_venue_lists() -> None:
    rows, _ = rows_of(finnhub.FinnhubFeed(token="t", url="ws://x").owns)
    finnhub.parse_stock_symbols(refdata.finnhub_stock_symbols(), rows)
    by = {e.symbol: e for e in rows.entries}
    assert by["SPY"].type == "etf" and by["BRK.B"].type == "stock" and "AB C" not in by
    for (kind, exchange), items in refdata.finnhub_venues().items():
        venue, asset = next((v, a) for k, x, v, a in finnhub.VENUES if (k, x) == (kind, exchange))
        finnhub.parse_venue_symbols(items, rows, exchange, venue, asset)
    by = {e.symbol: e for e in rows.entries}
    assert by["BINANCE:BTCUSDT"] == SymbolInfo(
        "BINANCE:BTCUSDT", "Binance BTCUSDT", "Binance", "crypto", "USDT"
    )
    assert by["BINANCE:ETHBTC"].currency == "BTC"  # the docs' row without its venue prefix gets it
    assert by["COINBASE:ETH-EUR"].exchange == "Coinbase"
    assert by["OANDA:EUR_USD"] == SymbolInfo("OANDA:EUR_USD", "Oanda EUR/USD", "OANDA", "fx", "USD")


def test_finnhub_rest_carries_every_symbol_the_stream_feed_leaves_out() -> None:
    feed_rows, _ = rows_of(finnhub.FinnhubFeed(token="t", url="ws://x").owns)
    rest_rows, _ = rows_of(FinnhubRestFeed("t").owns)
    sample = [{"symbol": "ABCDEFGHIJKL", "description": "LONG TICKER", "type": "Common Stock"}]
    finnhub.parse_stock_symbols(sample, feed_rows)
    finnhub.parse_stock_symbols(sample, rest_rows)
    assert not feed_rows.entries and [e.symbol for e in rest_rows.entries] == ["ABCDEFGHIJKL"]


def test_polygon_pages_parse_and_give_the_cursor_only() -> None:
    feed = polygon.PolygonFeed(api_key="k", url="ws://x")
    for key in ("page", "docs_sample"):
        rows, reported = rows_of(feed.owns)
        page = response("polygon", key)
        nxt = polygon.parse_tickers(page, rows)
        assert rows.entries[0] == SymbolInfo("A", "Agilent Technologies Inc.", "XNYS", "stock", "USD")
        assert nxt is not None and nxt == page["next_url"] and not reported
        assert polygon.next_query(nxt) == {"cursor": page["next_url"].split("cursor=")[1]}
    last, _ = rows_of()
    assert polygon.parse_tickers({"results": [], "status": "OK"}, last) is None


def test_polygon_leaves_out_inactive_and_maps_ticker_types() -> None:
    rows, reported = rows_of()
    polygon.parse_tickers({"results": refdata.polygon_tickers()}, rows)
    by = {e.symbol: e for e in rows.entries}
    assert by["SPY"].type == "etf" and by["AAPL"].type == "stock" and "OLDCO" not in by
    assert rows.left_out == {"inactive": 1} and rows.malformed == 1 and reported


@pytest.mark.parametrize(
    "next_url",
    [
        "https://api.massive.com/v3/reference/other?cursor=abc",  # another endpoint
        "https://api.massive.com/v3/reference/tickers?page=2",  # no cursor
    ],
)
def test_polygon_next_url_must_be_a_tickers_page_with_a_cursor(next_url: str) -> None:
    with pytest.raises(Malformed):
        polygon.next_query(next_url)


def test_polygon_next_url_never_carries_a_key_onwards() -> None:
    q = polygon.next_query("https://elsewhere.example/v3/reference/tickers?cursor=abc&apiKey=LEAK")
    assert q == {"cursor": "abc"}


async def test_yahoo_cannot_tell_its_symbols() -> None:
    assert response("yahoo", "response")["quotes"]  # Yahoo's reference is a search, not a list
    assert await YahooFeed().load_reference() is None


# -- the shared helpers -----------------------------------------------------------------------------


def test_asset_words_map_onto_the_directory_types() -> None:
    assert set(ASSET_WORDS.values()) <= set(ASSET_TYPES)
    cases = {
        "Common Stock": "stock", "ETP": "etf", "CS": "stock", "ETF": "etf", "ADRC": "stock",
        "Closed-End Fund": "fund", "INDEX": "index", "us_equity": "stock", "EQUITY": "stock",
        "MUTUALFUND": "fund", "CRYPTOCURRENCY": "crypto", "CURRENCY": "fx", "WARRANT": "other",
        "Right": "other", None: "other", 3: "other",
    }  # fmt: skip
    assert {word: asset_type(word) for word in cases} == cases
    assert asset_type("something new", default="stock") == "stock"


@pytest.mark.parametrize(
    ("feed_url", "expected"),
    [
        (None, "https://api.polygon.io"),
        ("wss://socket.polygon.io/stocks", "https://api.polygon.io"),
        ("wss://delayed.polygon.io/stocks", "https://api.polygon.io"),  # the delayed cluster: same REST
        ("wss://socket.massive.com/stocks", "https://api.massive.com"),
        ("ws://127.0.0.1:8765/stocks", "http://127.0.0.1:8765"),  # a local fake serves both
        ("wss://proxy.example:9443/stocks?x=1", "https://proxy.example:9443"),
    ],
)
def test_reference_base_follows_the_feed_url(feed_url: str | None, expected: str) -> None:
    assert reference_base(feed_url, polygon.REST_HOSTS, polygon.REST_URL) == expected


def test_each_adapter_finds_its_rest_host() -> None:
    assert coinbase.CoinbaseFeed().reference_url == "https://api.exchange.coinbase.com"
    sandbox = coinbase.CoinbaseFeed(url="wss://ws-feed-public.sandbox.exchange.coinbase.com")
    assert sandbox.reference_url == "https://api-public.sandbox.exchange.coinbase.com"
    assert binance.BinanceFeed().reference_url == "https://api.binance.com"
    vision = binance.BinanceFeed(url="wss://data-stream.binance.vision/stream")
    assert vision.reference_url == "https://data-api.binance.vision"
    assert finnhub.FinnhubFeed(token="t").reference_api == "https://finnhub.io/api/v1"
    assert alpaca.AlpacaFeed(key_id="k", secret="s").trading_urls == [alpaca.PAPER_URL, alpaca.LIVE_URL]
    sandbox_alpaca = alpaca.AlpacaFeed(
        key_id="k", secret="s", url="wss://stream.data.sandbox.alpaca.markets/v2/iex"
    )
    assert sandbox_alpaca.trading_urls == [alpaca.PAPER_URL, alpaca.LIVE_URL]
    local = alpaca.AlpacaFeed(key_id="k", secret="s", url="ws://127.0.0.1:9/v2/iex")
    assert local.trading_urls == ["http://127.0.0.1:9"]
    assert FinnhubRestFeed("t", url="http://127.0.0.1:9/api/v1").api_url == "http://127.0.0.1:9/api/v1"
    assert FinnhubRestFeed("t").api_url == "https://finnhub.io/api/v1"


def test_rows_keep_exact_well_formed_symbols_the_feed_carries() -> None:
    rows, reported = rows_of(owns=lambda s: not s.startswith("X"))
    assert rows.keep("AAPL", "  Apple\n Inc. ", exchange="XNAS", type="stock", currency="usd")
    assert not rows.keep("aapl", "lower case")  # not exactly what a client subscribes to
    assert not rows.keep("BAD SYMBOL", "space")
    assert not rows.keep("XYZ", "not carried")
    assert not rows.keep("AAPL", "again")
    assert not rows.keep(None, "no symbol") and not rows.keep("", "empty")
    assert rows.keep("MSFT", None, type="nonsense", currency=7)
    assert rows.entries == [
        SymbolInfo("AAPL", "Apple Inc.", "XNAS", "stock", "USD"),
        SymbolInfo("MSFT", "MSFT", "", "other", "USD"),  # no name: the symbol; unknown type: other
    ]
    assert rows.left_out == {
        "symbol outside ticker's syntax": 2,
        "symbol this feed does not carry": 1,
        "duplicate": 1,
    }
    assert rows.malformed == 2 and len(reported) == 2
    assert rows.summary().startswith("2 kept; left out: ") and rows.summary().endswith("2 malformed")


def test_rows_stop_at_their_limit_and_skip_rows_that_break_the_parser() -> None:
    rows = Rows(limit=2)
    for sym in ("A", "B"):
        rows.keep(sym, sym)
    assert rows.complete("t") == rows.entries  # at the limit, nothing left out: whole
    rows.keep("C", "C")
    assert [e.symbol for e in rows.entries] == ["A", "B"] and rows.left_out == {"over 2 entries": 1}
    with pytest.raises(IncompleteReference, match="more than 2 entries"):  # never taken for the whole list
        rows.complete("t")

    def handle(item: dict) -> None:
        rows.keep(item["symbol"], item["name"])

    rows = Rows()
    rows.each([{"symbol": "A", "name": "a"}, {"symbol": "B"}, "x", {"symbol": "C", "name": "c"}], "t", handle)
    assert [e.symbol for e in rows.entries] == ["A", "C"] and rows.malformed == 2
    with pytest.raises(Malformed):
        rows.each({"not": "a list"}, "t", handle)


async def test_rows_are_built_off_the_loop_and_their_problems_reported_on_it() -> None:
    reported: list[tuple[str, int]] = []
    rows = Rows(report=lambda why: reported.append((why, threading.get_ident())))
    body = b'[{"symbol": "AAPL", "name": "Apple Inc."}, "x", {"symbol": "MSFT", "name": "Microsoft"}]'
    builders: list[int] = []

    def row(r: dict[str, Any]) -> None:
        rows.keep(r["symbol"], r["name"])

    def build() -> str:
        builders.append(threading.get_ident())
        rows.each(decode(body, "t"), "t", row)
        assert reported == []  # held back while in the worker thread
        return "next"

    assert await off_loop(rows, build) == "next"
    assert builders != [threading.get_ident()]  # built in a worker thread
    assert [e.symbol for e in rows.entries] == ["AAPL", "MSFT"]
    assert reported == [("t: a row that is not an object", threading.get_ident())]  # then reported here
    with pytest.raises(Malformed, match="not JSON"):
        await off_loop(Rows(), lambda: decode(b"<html>", "t"))


def test_rows_restore_the_entries_of_an_earlier_load() -> None:
    earlier = [SymbolInfo("BINANCE:BTCUSDT", "BTC/USDT", "Binance", "crypto", "USDT")]
    rows = Rows()
    rows.keep("AAPL", "Apple Inc.")
    rows.restore(earlier)
    rows.restore(earlier)  # twice: a duplicate, left out
    assert rows.entries[1:] == earlier and rows.left_out == {"duplicate": 1}
