"""finnhub-rest against a fake Finnhub quote endpoint: demand, rate limit, 429, garbage, auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from feeds.polled.finnhub_rest import FinnhubRestFeed
from tests.support.fakes.fake_finnhub_rest import QUOTE_PATH, FakeFinnhubRest
from tests.support.fakes.sink import FeedSink
from tests.support.system import free_port
from tests.support.timing import eventually
from ticker.status import UNAVAILABLE, SymbolStatus


@pytest.fixture
async def fake() -> AsyncIterator[FakeFinnhubRest]:
    async with FakeFinnhubRest() as f:
        yield f


async def started(feed: FinnhubRestFeed, demand: set[str]) -> FeedSink:
    sink = FeedSink()
    await feed.start(sink.ctx)
    feed.set_demand(frozenset(demand))
    return sink


async def test_polls_only_demanded_symbols_and_emits_fields(fake: FakeFinnhubRest) -> None:
    feed = FinnhubRestFeed(
        "test-token", url=fake.url, interval=0.0, rate=40.0, backoff_base=0.05, backoff_cap=0.2
    )
    sink = await started(feed, {"AAPL", "MSFT"})
    try:
        await eventually(lambda: {"AAPL", "MSFT"} <= sink.symbols() and len(sink.quotes) >= 6, within=10)
        assert set(fake.symbols_polled()) == {"AAPL", "MSFT"}
        q = next(q for q in sink.quotes if q.symbol == "AAPL")
        assert q.price > 261.74 and q.prev_close == 259.45
        assert (q.high, q.low, q.open) == (
            round(q.price + 1.57, 2),
            round(q.price - 1.06, 2),
            round(q.price - 0.67, 2),
        )
        assert q.change == pytest.approx(q.price - 259.45, abs=0.011)
        assert q.change_percent is not None and q.ts_ms > 1_600_000_000_000
        assert feed.health().up and feed.health().last_data is not None

        feed.set_demand(frozenset({"MSFT"}))
        mark = len(fake.hits)
        await eventually(lambda: len(fake.hits) >= mark + 12, within=10)
        # at most the requests already in flight (concurrency 4) may still be for AAPL
        assert "AAPL" not in [h.query["symbol"] for h in fake.hits[mark + 4 :]]

        feed.set_demand(frozenset())
        await eventually(  # the requests in flight end: each one the feed sent reached the fake and was answered
            lambda: feed.requests == len(fake.hits) and all(h.status for h in fake.hits),
            within=10,
            what="the requests in flight to end",
        )
        idle = len(fake.hits)
        await asyncio.sleep(0.5)  # ... then a window in which nothing may be polled
        assert len(fake.hits) == idle  # nothing demanded, nothing polled
    finally:
        await feed.stop()
    assert not sink.errors


async def test_token_in_header_not_url(fake: FakeFinnhubRest) -> None:
    feed = FinnhubRestFeed("test-token", url=fake.url + "/api/v1", interval=0.0, rate=20.0)
    sink = await started(feed, {"AAPL"})
    try:
        await eventually(lambda: len(sink.quotes) >= 1, within=10)
        assert all("token" not in h.query for h in fake.hits)
        assert "test-token" not in repr(feed)
    finally:
        await feed.stop()


async def test_stays_within_rate_limit() -> None:
    # The fake enforces 10 requests per second (429 beyond); the feed is configured for 8/s.
    async with FakeFinnhubRest(limit=10, window=1.0) as fake:
        feed = FinnhubRestFeed("test-token", url=fake.url, interval=0.0, rate=8.0)
        await started(feed, {"AAPL", "MSFT", "NVDA"})
        try:
            await eventually(lambda: len(fake.hits) >= 1, within=10)
            t0 = fake.hits[0].at
            await eventually(lambda: fake.count(QUOTE_PATH, since=t0 + 3.0) >= 1, within=15)
        finally:
            await feed.stop()
        in_window = fake.count(QUOTE_PATH, since=t0, until=t0 + 3.0)
        assert in_window <= 8 * 3 + 1  # rate x window + the bucket's burst of one
        assert in_window >= 8  # and it did poll
        assert all(h.status == 200 for h in fake.hits)  # never rate-limited by the provider


async def test_429_with_retry_after_pauses_polling(fake: FakeFinnhubRest) -> None:
    fake.faults.append("429:1")
    feed = FinnhubRestFeed("test-token", url=fake.url, interval=0.0, rate=20.0)
    sink = await started(feed, {"AAPL"})
    try:
        await eventually(lambda: len(sink.quotes) >= 2, within=10)
    finally:
        await feed.stop()
    first, rest = fake.hits[0], fake.hits[1:]
    assert first.status == 429
    assert "rate_limited" in sink.errors
    # requests already dispatched when the 429 arrived may follow at once; then a 1 s pause
    later = [h for h in rest if h.at - first.at >= 0.2]
    assert later and later[0].at - first.at >= 0.95


async def test_429_without_retry_after_backs_off() -> None:
    async with FakeFinnhubRest() as fake:
        fake.always_429 = True
        feed = FinnhubRestFeed(
            "test-token", url=fake.url, interval=0.0, rate=30.0, backoff_base=0.5, backoff_cap=2.0
        )
        sink = await started(feed, {"AAPL"})
        try:
            await asyncio.sleep(3.0)  # the scenario: a 3 s window of 429s, counted below
            throttled = len(fake.hits)
            fake.always_429 = False
            await eventually(lambda: len(sink.quotes) >= 1, within=10)
        finally:
            await feed.stop()
    # at 30/s it would have sent ~90 requests in 3 s; backing off with full jitter sends a handful
    assert throttled < 30
    assert sink.errors["rate_limited"] == throttled


async def test_survives_garbage_errors_and_drops(fake: FakeFinnhubRest) -> None:
    # aiohttp retries a request once when a reused connection is dropped, so drop twice in a row
    fake.faults.extend(["garbage", "shape", "500", "drop", "drop", "garbage"])
    feed = FinnhubRestFeed(
        "test-token", url=fake.url, interval=0.0, rate=30.0, backoff_base=0.05, backoff_cap=0.1
    )
    sink = await started(feed, {"AAPL"})
    try:
        await eventually(lambda: len(sink.quotes) >= 3, within=10)
        assert feed.health().up
    finally:
        await feed.stop()
    assert sink.errors["malformed"] == 3
    assert sink.errors["http_5xx"] == 1
    assert 1 <= sink.errors["network"] <= 2
    assert [q.price for q in sink.quotes] == sorted(q.price for q in sink.quotes)


async def test_unknown_symbol_reported_once(fake: FakeFinnhubRest) -> None:
    feed = FinnhubRestFeed("test-token", url=fake.url, interval=0.0, rate=30.0)
    sink = await started(feed, {"AAPL", "NOSUCH"})
    try:
        await eventually(
            lambda: fake.symbols_polled().count("NOSUCH") >= 3 and len(sink.quotes) >= 2, within=10
        )
    finally:
        await feed.stop()
    assert feed.unknown == {"NOSUCH"}
    assert feed.symbol_state("NOSUCH") == SymbolStatus(UNAVAILABLE, "the provider does not know NOSUCH")
    assert feed.symbol_state("AAPL") is None
    assert sink.errors == {"unknown_symbol": 1}
    assert sink.symbols() == {"AAPL"}


async def test_symbol_outside_the_plan_is_refused_alone(fake: FakeFinnhubRest) -> None:
    fake.forbidden.add("NVDA")
    feed = FinnhubRestFeed("test-token", url=fake.url, interval=0.0, rate=30.0)
    sink = await started(feed, {"AAPL", "NVDA"})
    try:
        await eventually(
            lambda: fake.symbols_polled().count("NVDA") >= 3 and len(sink.quotes) >= 3, within=10
        )
        assert feed.health().up
    finally:
        await feed.stop()
    assert sink.errors == {"no_access": 1} and feed.unknown == {"NVDA"}
    assert feed.symbol_state("NVDA") == SymbolStatus(UNAVAILABLE, "the plan has no access to NVDA")
    assert sink.symbols() == {"AAPL"}
    feed.set_demand(frozenset({"AAPL"}))  # nobody wants it any more: nothing to say of it
    assert feed.symbol_state("NVDA") is None


async def test_bad_token_marks_feed_down(fake: FakeFinnhubRest) -> None:
    feed = FinnhubRestFeed("wrong", url=fake.url, interval=0.0, rate=30.0, backoff_base=0.05, backoff_cap=0.1)
    sink = await started(feed, {"AAPL"})
    try:
        await eventually(lambda: "auth" in sink.errors, within=10)
        health = feed.health()
        assert not health.up
        assert health.reason == "127.0.0.1 refused the credentials (HTTP 401; check FINNHUB_TOKEN)"
    finally:
        await feed.stop()
    assert sink.quotes == []


async def test_an_unreachable_host_is_down_with_words_naming_it() -> None:
    feed = FinnhubRestFeed(
        "test-token", url=f"http://127.0.0.1:{free_port()}", interval=0.0, backoff_base=0.05, backoff_cap=0.1
    )
    sink = await started(feed, {"AAPL"})
    try:
        await eventually(lambda: "network" in sink.errors, within=10)
        assert not feed.health().up and feed.health().reason == "127.0.0.1 refused the connection"
    finally:
        await feed.stop()


async def test_unchanged_quotes_are_not_emitted_again(fake: FakeFinnhubRest) -> None:
    fake.frozen = True
    feed = FinnhubRestFeed("test-token", url=fake.url, interval=0.0, rate=30.0)
    sink = await started(feed, {"AAPL"})
    try:
        await eventually(lambda: len(fake.hits) >= 6, within=10)
        assert len(sink.quotes) == 1 and sink.quotes[0].ts_ms == 1582641000 * 1000
        fake.frozen = False
        await eventually(lambda: len(sink.quotes) >= 2, within=10)
    finally:
        await feed.stop()
