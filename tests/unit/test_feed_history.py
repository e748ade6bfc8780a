"""History of the provider adapters (pure parts): each documented sample parses into bars, null and invalid rows
are skipped, streamed bars map onto :class:`~ticker.bars.Bar`, and the shared helpers do what the adapters rely on."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from feeds import history
from feeds.errors import Malformed, RateLimited
from feeds.polled import yahoo
from feeds.streaming import alpaca, binance, coinbase, finnhub, polygon
from feeds.wire import rfc3339_ms
from ticker.bars import Bar
from ticker.tokenbucket import TokenBucket

SAMPLES = Path(__file__).parents[1] / "support" / "fakes" / "history_samples.json"
END = 2**62


@cache
def _samples() -> dict[str, Any]:
    return json.loads(SAMPLES.read_text(encoding="utf-8"))


def sample(provider: str, *keys: str) -> Any:
    """A fresh copy of ``provider``'s history section, or the response under ``keys`` (key prefixes)."""
    node: Any = _samples()[provider]
    for prefix in keys:
        node = next(v for k, v in node.items() if k.startswith(prefix))
    return copy.deepcopy(node)


def rows() -> history.BarRows:
    return history.BarRows()


# -- Polygon ------------------------------------------------------------------------------------------


def test_polygon_aggregates_sample_and_its_next_url():
    r = rows()
    nxt = polygon.parse_aggs(sample("polygon", "responses", "ok (docs"), r)
    assert r.result(0, END) == [
        Bar(1577941200000, 74.06, 75.15, 73.7975, 75.0875, 135647456),
        Bar(1578027600000, 74.2875, 75.145, 74.125, 74.3575, 146535512),
    ]
    assert nxt is not None
    path, query = polygon.aggs_next(nxt)
    assert path == "/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10"
    assert query == {"cursor": "bGltaXQ9MiZzb3J0PWFzYw"}
    last = rows()
    assert polygon.parse_aggs(sample("polygon", "responses", "ok (client"), last) is None
    assert [b.t for b in last.bars] == [1112331600000, 1112587200000] and last.bars[0].v == 642646396.0


def test_polygon_no_results_is_no_bars_and_bad_pages_are_malformed():
    r = rows()
    assert (
        polygon.parse_aggs({"ticker": "ZZZZ", "resultsCount": 0, "status": "OK", "request_id": "x"}, r)
        is None
    )
    assert r.bars == []
    bads: list[Any] = [sample("polygon", "responses", "not_entitled"), [], {"status": "OK", "results": {}}]
    for bad in bads:
        with pytest.raises(Malformed):
            polygon.parse_aggs(bad, rows())
    with pytest.raises(Malformed):  # a next_url elsewhere than aggregates, or without a cursor
        polygon.aggs_next("https://api.polygon.io/v3/reference/tickers?cursor=abc")
    with pytest.raises(Malformed):
        polygon.aggs_next("https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/1/2")
    # the key never travels on from a next_url
    assert polygon.aggs_next("https://x/v2/aggs/ticker/A/range/1/day/1/2?cursor=c&apiKey=K")[1] == {
        "cursor": "c"
    }


def test_polygon_minute_aggregate_is_a_final_one_minute_bar():
    am = _samples()["live_bars"]["polygon"]
    assert polygon.minute_bar(am) == Bar(1610144640000, 0.4488, 0.4489, 0.4486, 0.4486, 4110)
    with pytest.raises(Malformed):
        polygon.minute_bar({**am, "l": 0.5})  # low above the close


# -- Alpaca -------------------------------------------------------------------------------------------


def test_alpaca_bars_sample_and_its_page_token():
    r = rows()
    token = alpaca.parse_bars(sample("alpaca", "responses", "single"), r)
    assert r.bars == [Bar(rfc3339_ms("2022-04-11T08:00:00Z"), 168.99, 169.81, 168.99, 169, 7170)]
    assert token == "QUFQTHxNfDIwMjItMDQtMTFUMDg6MDA6MDAuMDAwMDAwMDAwWg=="
    empty = rows()
    assert alpaca.parse_bars({"bars": None, "symbol": "ZZZ", "next_page_token": None}, empty) is None
    assert empty.bars == []
    with pytest.raises(Malformed):
        alpaca.parse_bars(sample("alpaca", "responses", "multi"), rows())  # bars keyed by symbol: not ours
    skipped = rows()
    alpaca.parse_bars({"bars": [{"t": "noon", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}, 5]}, skipped)
    assert skipped.bars == [] and skipped.skipped == 2


def test_alpaca_streamed_bar_and_updated_bar():
    bar = _samples()["live_bars"]["alpaca"]
    expect = Bar(rfc3339_ms("2021-02-22T19:15:00Z"), 388.985, 389.13, 388.975, 389.12, 49378)
    assert alpaca.stream_bar(bar) == expect
    assert alpaca.stream_bar({**bar, "T": "u", "c": 389.13}).c == 389.13
    with pytest.raises(Malformed):
        alpaca.stream_bar({**bar, "h": 388.0})


# -- Finnhub ------------------------------------------------------------------------------------------


def test_finnhub_candles_sample_in_epoch_ms():
    r = rows()
    finnhub.parse_candles(sample("finnhub", "responses", "ok"), r)
    assert r.bars == [
        Bar(1569297600000, 221.03, 222.49, 217.19, 217.68, 33463820),
        Bar(1569384000000, 218.55, 221.5, 217.1402, 221.03, 24018876),
        Bar(1569470400000, 220, 220.94, 218.83, 219.89, 20730608),
    ]
    none = rows()
    finnhub.parse_candles(sample("finnhub", "responses", "no_data"), none)
    assert none.bars == []


def test_finnhub_candles_of_the_wrong_shape_are_malformed():
    ok = sample("finnhub", "responses", "ok")
    bads: list[Any] = [
        sample("finnhub", "responses", "no_access"),
        {**ok, "o": ok["o"][:2]},  # arrays of different lengths
        {**ok, "v": None},
        [],
    ]
    for bad in bads:
        with pytest.raises(Malformed):
            finnhub.parse_candles(bad, rows())


# -- Yahoo --------------------------------------------------------------------------------------------


def test_yahoo_chart_sample():
    r = rows()
    yahoo.parse_chart(sample("yahoo", "responses", "ok"), r)
    assert [b.t for b in r.bars] == [1714743000000, 1714746600000, 1714750200000]
    assert r.bars[0] == Bar(
        1714743000000, 877.8900146484375, 889.474609375, 870.4000854492188, 878.6199951171875, 13341628
    )


def test_yahoo_nulls_and_the_closing_stamp_are_skipped_and_days_move_to_midnight():
    data = sample("yahoo", "responses", "ok")
    result = data["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    result["timestamp"] += [1714753800, 1714766400]  # a lunch-break null row, then the session's close
    for key in ("open", "high", "low", "close"):
        quote[key] += [None, 885.41]
    quote["volume"] += [None, 0]
    r = rows()
    yahoo.parse_chart(data, r)
    assert len(r.bars) == 3 and r.skipped == 1
    days = rows()
    yahoo.parse_chart(sample("yahoo", "responses", "ok"), days, days=True)
    assert {b.t for b in days.bars} == {1714708800000}  # 2024-05-03 00:00 in New York


def test_yahoo_chart_errors_are_malformed():
    for bad in (
        sample("yahoo", "responses", "range_unavailable"),
        {"chart": {"result": [{"timestamp": [1]}]}},
        {},
    ):
        with pytest.raises(Malformed):
            yahoo.parse_chart(bad, rows())


# -- Binance ------------------------------------------------------------------------------------------


def test_binance_klines_sample_with_decimal_strings():
    r = rows()
    assert binance.parse_klines(sample("binance", "response"), r) == 1499040000000
    assert r.bars == [Bar(1499040000000, 0.0163479, 0.8, 0.015758, 0.015771, 148976.11427815)]
    assert binance.parse_klines([], rows()) is None
    skipped = rows()
    binance.parse_klines([[1], "x", [2, "a", "1", "1", "1", "1"]], skipped)
    assert skipped.bars == [] and skipped.skipped == 3
    with pytest.raises(Malformed):
        binance.parse_klines(sample("binance", "errors", "bad_interval"), rows())


# -- Coinbase -----------------------------------------------------------------------------------------


def test_coinbase_candles_sample_newest_first_low_high_open_close():
    r = rows()
    coinbase.parse_candles(sample("coinbase", "responses", "ok"), r)
    assert r.result(0, END) == [
        Bar(1515264720000, 994.5, 994.5, 994.49, 994.5, 22.028889700000004),
        Bar(1515264780000, 994.5, 994.5, 994.5, 994.5, 14.697630010000001),
    ]
    with pytest.raises(Malformed):
        coinbase.parse_candles(sample("coinbase", "responses", "too_many"), rows())


# -- the shared helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        (None, 1, 1, 1, 1, 1),
        (1, None, 1, 1, 1, 1),
        (1, 1, 1, 1, 1, -1),  # negative volume
        (1, 2, 3, 2.5, 2.6, 1),  # low above the open
        (1, 2, 1.9, 1, 1.5, 1),  # high below the open
        (1, 0, 0, 0, 0, 0),  # no price
        (1, "nan", 1, 1, 1, 1),
        (True, 1, 1, 1, 1, 1),
    ],
)
def test_invalid_rows_are_skipped(row):
    assert history.bar_of(*row) is None


def test_rows_are_sorted_deduplicated_and_cut_to_the_range():
    r = rows()
    for t in (300, 100, 200, 100, 400):
        r.add(t, 1, t + 1, 1, float(t), 0)
    r.add(150, "1.5", "2", "1", "1.5", None)  # decimal strings, no volume
    assert [(b.t, b.c) for b in r.result(100, 400)] == [(100, 100.0), (150, 1.5), (200, 200.0), (300, 300.0)]


def test_windows_cover_the_range_newest_kept():
    assert history.windows(0, 10, 4) == [(0, 2), (2, 6), (6, 10)]
    assert history.windows(0, 10, 4, most=2) == [(2, 6), (6, 10)]
    assert history.windows(5, 5, 4) == []


async def test_a_long_wait_for_the_rate_is_rate_limited_and_the_token_given_back():
    bucket = TokenBucket(1 / 60, 1.0, 0.0)
    await history.take_token(bucket, clock=lambda: 0.0)  # the burst
    with pytest.raises(RateLimited) as err:
        await history.take_token(bucket, max_wait=30.0, clock=lambda: 0.0)
    assert err.value.retry_after == pytest.approx(60.0)
    assert bucket.tokens == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("feed", "unsupported"),
    [
        (lambda: polygon.PolygonFeed(api_key="k"), ["1s"]),
        (lambda: alpaca.AlpacaFeed(key_id="k", secret="s"), ["1s"]),
        (lambda: coinbase.CoinbaseFeed(), ["1s"]),
        (lambda: finnhub.FinnhubFeed(token="t"), ["1s"]),
        (lambda: yahoo.YahooFeed(), ["1s"]),
    ],
)
async def test_intervals_a_provider_cannot_serve_are_none_without_a_request(feed, unsupported):
    for interval in unsupported:
        assert await feed().load_history("AAPL", interval, 0, 60_000) is None


async def test_finnhub_venue_symbols_have_no_stock_candles():
    assert await finnhub.FinnhubFeed(token="t").load_history("BINANCE:BTCUSDT", "1m", 0, 60_000) is None
