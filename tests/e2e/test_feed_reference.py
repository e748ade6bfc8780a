"""Each provider adapter's ``load_reference`` against its fake's reference endpoints: what is kept, auth,
paging, pacing, errors as :class:`~feeds.errors.FeedError`, the size cap; and a real server loading it."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque

import pytest

from feeds import registry
from feeds.base import Feed
from feeds.errors import AuthFailed, BodyTooLarge, IncompleteReference, Malformed, RateLimited, UpstreamError
from feeds.polled.finnhub_rest import FinnhubRestFeed
from feeds.streaming.alpaca import AlpacaFeed
from feeds.streaming.polygon import PolygonFeed
from tests.support.fakes.alpaca import FakeAlpaca
from tests.support.fakes.fake_finnhub_rest import FakeFinnhubRest
from tests.support.fakes.polygon import FakePolygon
from tests.support.fakes.providers import PROVIDERS, Provider
from tests.support.fakes.sink import fast_options, feed_options, running
from tests.support.fakes.upstream import FakeUpstream
from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually
from ticker.directory import ASSET_TYPES

#: Per provider: its reference path, rows of the fake it must leave out, malformed rows in the fake.
EXPECT = {
    "coinbase": ("/products", {"OLD-USD", "XYZ-USD"}, 1),
    "binance": ("/api/v3/exchangeInfo", {"LUNAUSDT", "BTCPLN", "XYZUSDT"}, 1),
    "finnhub": ("/api/v1/stock/symbol", {"AB C"}, 2),
    "alpaca": ("/v2/assets", {"ZVZZT", "OLDCO", "292RGT016", "BTC/USD"}, 2),
    "polygon": ("/v3/reference/tickers", {"OLDCO"}, 1),
}


def quick(feed: Feed) -> Feed:
    """No pacing worth waiting for in tests (the plans' rates are checked on their own below), and no
    waiting out a rate limit in place (Polygon's pages)."""
    if hasattr(feed, "reference_rate"):
        feed.reference_rate = 1000.0
    if hasattr(feed, "reference_max_wait"):
        feed.reference_max_wait = 1.0
    return feed


async def _setup(prov: Provider, monkeypatch: pytest.MonkeyPatch):
    for k, v in prov.env.items():
        monkeypatch.setenv(k, v)
    fake = prov.make_fake()
    await fake.start()

    def make() -> Feed:
        return quick(registry.create_feeds([prov.name], feed_options(fake.url))[0])

    yield prov, fake, make
    await fake.close()


@pytest.fixture(params=PROVIDERS, ids=str)
async def setup(request, monkeypatch):
    async for each in _setup(request.param, monkeypatch):
        yield each


@pytest.fixture(params=[p for p in PROVIDERS if p.env], ids=str)
async def keyed(request, monkeypatch):
    """The providers that need credentials."""
    async for each in _setup(request.param, monkeypatch):
        yield each


@pytest.fixture
async def finnhub(monkeypatch):
    async for each in _setup(next(p for p in PROVIDERS if p.name == "finnhub"), monkeypatch):
        yield each


def auth_ok(prov: Provider, fake: FakeUpstream) -> None:
    """Every reference request carried the credentials in headers, never in the URL."""
    assert fake.desk.hits
    for hit in fake.desk.hits:
        secrets = list(prov.env.values())
        assert not any(s in v for s in secrets for v in hit.query.values()), hit.query
        if prov.name == "finnhub":
            assert hit.headers.get("X-Finnhub-Token") == "test-token"
        elif prov.name == "alpaca":
            assert (hit.headers.get("APCA-API-KEY-ID"), hit.headers.get("APCA-API-SECRET-KEY")) == (
                "KEY",
                "SECRET",
            )
        elif prov.name == "polygon":
            assert hit.headers.get("Authorization") == "Bearer POLYKEY"


async def test_each_adapter_loads_what_its_fake_lists_and_leaves_out_the_rest(setup) -> None:
    prov, fake, make = setup
    path, left_out, malformed = EXPECT[prov.name]
    feed = make()
    async with running(feed) as rec:
        entries = await feed.load_reference()
    assert entries is not None
    by = {e.symbol: e for e in entries}
    assert prov.symbol in by and prov.other in by, sorted(by)
    assert not left_out & set(by)
    assert all(e.name and e.exchange and e.type in ASSET_TYPES and e.currency for e in entries)
    assert all(feed.owns(s) for s in by)
    assert rec.errors == {"reference_malformed": malformed}  # each malformed row counted, none fatal
    assert fake.desk.count(path) == 1 and fake.desk.hits[0].status == 200
    auth_ok(prov, fake)
    again = await feed.load_reference()  # the daily refresh asks again, with the same result
    assert again == entries and fake.desk.count(path) == 2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("401", AuthFailed),
        ("429:7", RateLimited),
        ("418:120", RateLimited),
        ("500", UpstreamError),
        ("garbage", Malformed),
        ("shape", Malformed),
        ("drop", UpstreamError),
    ],
)
async def test_http_failures_raise_feed_errors_the_runner_retries(setup, fault, error) -> None:
    _, fake, make = setup
    feed = make()
    # Several in a row: Polygon asks for a page again after a short 429, aiohttp resends a request once
    # on a dropped connection.
    fake.desk.faults.extend([fault] * 4)
    with pytest.raises(error) as caught:
        await feed.load_reference()
    if error is RateLimited:
        assert caught.value.retry_after == float(fault.partition(":")[2])
    assert "?" not in str(caught.value)  # no URL with a query in the reason
    fake.desk.faults.clear()
    assert await feed.load_reference()  # the next attempt loads


async def test_a_body_over_the_cap_is_refused(setup) -> None:
    _, _, make = setup
    feed = make()
    feed.reference_max_body = 300
    with pytest.raises(BodyTooLarge, match="over 300 bytes"):
        await feed.load_reference()


async def test_wrong_credentials_are_auth_failures(keyed, monkeypatch) -> None:
    prov, _, make = keyed
    for k in prov.env:
        monkeypatch.setenv(k, "WRONG")
    with pytest.raises(AuthFailed, match="HTTP 401") as caught:
        await make().load_reference()
    assert "WRONG" not in str(caught.value)


async def test_an_answer_that_never_comes_times_out(setup) -> None:
    _, fake, make = setup
    feed = make()
    feed.reference_timeout = 0.2
    fake.desk.faults.append("stall:1.5")
    with pytest.raises(UpstreamError, match=r"127\.0\.0\.1 did not answer within 0\.2 s"):
        await feed.load_reference()


# -- Polygon: paging, pacing, 429 --------------------------------------------------------------------


@pytest.fixture
async def poly():
    fake = FakePolygon()
    await fake.start()
    fake.max_limit = 5  # 35 active stock rows: 7 pages
    yield fake
    await fake.close()


def polygon_feed(fake: FakePolygon, rate: float = 1000.0, **kw) -> PolygonFeed:
    feed = PolygonFeed(api_key="POLYKEY", **fast_options(fake.url), **kw)
    feed.reference_rate = rate
    return feed


async def test_polygon_follows_next_url_cursors_on_its_own_host_with_the_key_each_time(poly) -> None:
    poly.next_base = "https://api.massive.com"  # a next_url naming another host: only its cursor is used
    whole = await polygon_feed(poly).load_reference()
    hits = poly.desk.hits
    assert len(hits) == 7 and all(h.status == 200 for h in hits)
    assert hits[0].query == {
        "market": "stocks",
        "active": "true",
        "order": "asc",
        "sort": "ticker",
        "limit": "1000",
    }
    assert all(set(h.query) == {"cursor"} for h in hits[1:])
    assert all(h.headers["Authorization"] == "Bearer POLYKEY" for h in hits)
    assert len(whole) == 34 and "BRK.B" in {e.symbol for e in whole}
    poly.max_limit = 1000
    assert await polygon_feed(poly).load_reference() == whole  # one page or seven, the same directory


async def test_polygon_pages_are_paced_to_the_plan_rate(poly) -> None:
    await polygon_feed(poly, rate=20.0).load_reference()  # bursts of 5, then one every 50 ms
    at = [h.at for h in poly.desk.hits]
    assert len(at) == 7
    # Two pages past the burst, 50 ms apart at least when sent: however late the first arrival was, the
    # last cannot come within 50 ms of it (without pacing all seven arrive within a few ms).
    assert at[-1] - at[0] >= 0.05, at


async def test_polygon_waits_out_a_429_and_asks_for_the_same_page_again(poly) -> None:
    poly.desk.faults = deque(["ok", "ok", "429:0.05"])
    entries = await polygon_feed(poly).load_reference()
    hits = poly.desk.hits
    assert len(entries) == 34 and len(hits) == 8
    assert hits[2].status == 429 and hits[3].query == hits[2].query and hits[3].at - hits[2].at >= 0.05


async def test_polygon_fails_a_load_cut_short_by_its_page_limit(poly) -> None:
    # An incomplete list would make its missing tickers unknown: the load fails, for the runner to retry.
    feed = polygon_feed(poly)
    feed.reference_max_pages = 2
    with pytest.raises(IncompleteReference, match="more than 2 pages"):
        await feed.load_reference()
    assert len(poly.desk.hits) == 2
    feed.reference_max_pages = 7  # exactly enough pages
    assert len(await feed.load_reference()) == 34


async def test_polygon_refuses_a_cursor_that_does_not_advance(poly) -> None:
    poly.repeat_cursor = True
    with pytest.raises(Malformed, match="repeats"):
        await polygon_feed(poly).load_reference()
    assert len(poly.desk.hits) == 2  # the second page names its own cursor again


# -- Alpaca: paper or live keys ----------------------------------------------------------------------


async def test_alpaca_tries_the_next_trading_host_when_one_refuses_the_keys() -> None:
    paper, live = FakeAlpaca(key="PAPERKEY"), FakeAlpaca(key="KEY")
    await paper.start()
    await live.start()
    try:
        feed = AlpacaFeed(key_id="KEY", secret="SECRET", **fast_options(live.url))
        feed.trading_urls = [paper.http_url, live.http_url]
        entries = await feed.load_reference()
        assert "AAPL" in {e.symbol for e in entries}
        assert [h.status for h in paper.desk.hits] == [401] and [h.status for h in live.desk.hits] == [200]
        assert feed.trading_urls == [live.http_url, paper.http_url]  # the host that answered goes first
        await feed.load_reference()
        assert len(paper.desk.hits) == 1 and len(live.desk.hits) == 2
        live.key = "OTHER"
        with pytest.raises(AuthFailed):
            await feed.load_reference()
    finally:
        await paper.close()
        await live.close()


# -- Finnhub: venue lists, finnhub-rest ----------------------------------------------------------------


async def test_a_failing_finnhub_venue_list_keeps_its_last_entries_or_fails_the_load(finnhub, caplog) -> None:
    _, fake, make = finnhub
    feed = make()
    fake.desk.fault_paths = {"/api/v1/crypto/symbol"}
    fake.desk.faults.extend(["500"])  # the first load: no earlier entries of binance to keep
    with pytest.raises(UpstreamError, match=r"crypto symbols of binance: 127\.0\.0\.1 answered HTTP 500"):
        await feed.load_reference()  # every BINANCE:* symbol would be unknown: the runner retries instead
    whole = await feed.load_reference()
    assert {"AAPL", "BINANCE:BTCUSDT", "COINBASE:BTC-USD", "OANDA:EUR_USD"} <= {e.symbol for e in whole}
    fake.desk.faults.extend(["500"])  # a later load: binance's entries of the last load stay
    with caplog.at_level(logging.WARNING):
        again = await feed.load_reference()
    assert again == whole and "crypto symbols of binance not loaded" in caplog.text
    assert "keeping its" in caplog.text
    fake.desk.faults.extend(["429:3"])  # the same for a rate limit
    assert await feed.load_reference() == whole
    fake.desk.faults.extend(["429:3"])  # a venue never loaded (a new feed): the load fails
    with pytest.raises(RateLimited):
        await make().load_reference()


async def test_finnhub_rest_loads_the_same_lists_through_its_own_rate_limit() -> None:
    async with FakeFinnhubRest() as fake:
        for url in (fake.url, fake.url + "/api/v1"):
            feed = FinnhubRestFeed("test-token", url=url, rate=50.0)
            entries = await feed.load_reference()
            assert {"AAPL", "BRK.B", "BINANCE:BTCUSDT", "OANDA:EUR_USD"} <= {e.symbol for e in entries}
        hits = fake.desk.hits
        assert len(hits) == 8 and all(h.headers.get("X-Finnhub-Token") == "test-token" for h in hits)
        assert all("token" not in h.query for h in hits)
        at = [h.at for h in hits[4:]]
        # The poll bucket (50/s) spaces these four sends 20 ms apart: however late the first arrives, the
        # last cannot come within 30 ms of it (unpaced, all four arrive within a few ms).
        assert at[-1] - at[0] >= 0.03, at
        with pytest.raises(AuthFailed):
            await FinnhubRestFeed("wrong", url=fake.url).load_reference()


# -- a real server --------------------------------------------------------------------------------


async def test_a_server_loads_its_feeds_reference_data_from_the_fake(setup) -> None:
    prov, fake, _ = setup
    path = EXPECT[prov.name][0]
    srv = ServerProcess(
        ["--feed", prov.name, "--feed-url", fake.url, "--log-level", "info"],
        env=prov.env,
    )
    await asyncio.to_thread(srv.start)
    try:
        loaded = re.compile(rf"feed {prov.name}: [1-9][0-9]* symbols in its directory")
        await eventually(lambda: loaded.search(srv.output()), within=10, what="the directory loaded")
        assert any(h.path == path and h.status == 200 for h in fake.desk.hits)
        auth_ok(prov, fake)
    finally:
        await asyncio.to_thread(srv.stop)
