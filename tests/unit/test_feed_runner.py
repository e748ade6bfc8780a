"""The feed runner: demand split by owns(), readiness of steady and provider feeds, one stop deadline, metering."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

import pytest

from feeds.base import Feed, FeedContext
from feeds.errors import UpstreamError
from feeds.runner import FeedRunner, metered
from tests.support.clock import ManualClock
from tests.support.fakes.feed import StubFeed
from tests.support.timing import eventually
from ticker.backoff import Backoff
from ticker.directory import Known, SymbolInfo
from ticker.quote import Quote
from ticker.tasks import cancel_and_wait


class HangingFeed(StubFeed):
    async def stop(self) -> None:
        await asyncio.Event().wait()


class BrokenFeed(StubFeed):
    async def start(self, ctx: FeedContext) -> None:
        raise ValueError("cannot start")


def _plain(feed: Feed) -> FeedContext:
    return FeedContext(emit=lambda quote: None)


async def test_demand_is_split_by_owns() -> None:
    stocks = StubFeed("stocks", owned=lambda s: not s.startswith("BTC"))
    crypto = StubFeed("crypto", owned=lambda s: s.startswith("BTC"))
    runner = FeedRunner([stocks, crypto], _plain)
    await runner.start()
    runner.set_demand(["AAPL", "BTC-USD", "MSFT", "BTC-EUR"])
    assert stocks.demand == {"AAPL", "MSFT"} and crypto.demand == {"BTC-USD", "BTC-EUR"}
    runner.set_demand(iter(["BTC-USD"]))  # any iterable, read once
    assert stocks.demand == frozenset() and crypto.demand == {"BTC-USD"}
    await runner.stop()


class OrderedFeed(StubFeed):
    """Records, in order, the demand it is given and its start."""

    def __init__(self, name: str, owned: Callable[[str], bool] = lambda s: True) -> None:
        super().__init__(name, owned)
        self.calls: list[tuple[str, frozenset[str]]] = []

    def set_demand(self, symbols: frozenset[str]) -> None:
        super().set_demand(symbols)
        self.calls.append(("set_demand", symbols))

    on_start: Callable[[], object] = staticmethod(lambda: None)

    async def start(self, ctx: FeedContext) -> None:
        self.calls.append(("start", self.demand))
        self.on_start()
        await super().start(ctx)


async def test_start_gives_each_feed_its_initial_demand_first() -> None:
    stocks = OrderedFeed("stocks", owned=lambda s: not s.startswith("BTC"))
    crypto = OrderedFeed("crypto", owned=lambda s: s.startswith("BTC"))
    runner = FeedRunner([stocks, crypto], _plain)
    demand = {"AAPL", "BTC-USD", "MSFT"}
    stocks.on_start = lambda: demand.add("BTC-EUR")  # demand changes while the first feed starts
    await runner.start(lambda: demand)
    assert stocks.calls == [("set_demand", {"AAPL", "MSFT"}), ("start", {"AAPL", "MSFT"})]
    # read again for each feed: the second one starts with the demand of its own moment
    assert crypto.calls == [("set_demand", {"BTC-USD", "BTC-EUR"}), ("start", {"BTC-USD", "BTC-EUR"})]
    await runner.stop()
    plain = OrderedFeed("plain")
    await FeedRunner([plain], _plain).start()  # no initial demand: starts with none
    assert plain.calls == [("set_demand", frozenset()), ("start", frozenset())]
    await plain.stop()


async def test_readiness_fails_when_a_steady_feed_goes_quiet() -> None:
    clock = ManualClock(1000.0)
    steady, provider = StubFeed("sim", steady=True), StubFeed("prov")
    runner = FeedRunner([steady, provider], _plain, stale_after=15.0, clock=clock)
    await runner.start()
    assert runner.readiness() == (True, "ready")  # nothing yet, but not for long enough
    clock.now += 16
    assert runner.readiness() == (False, "feed sim produced no data for 16 s")
    steady.health().last_data = clock.now
    assert runner.readiness() == (True, "ready")
    clock.now += 14
    assert runner.readiness() == (True, "ready")
    clock.now += 5  # the provider is just as quiet, and that is no fault: the steady feed is
    assert runner.readiness() == (False, "feed sim produced no data for 19 s")
    assert FeedRunner([steady, provider], _plain, clock=clock).readiness() == (
        True,
        "ready",
    )  # no stale_after
    steady.health().last_data = clock.now
    provider._mark_down("upstream closed")
    assert runner.readiness() == (False, "feed prov is down: upstream closed")
    await runner.stop()


async def test_stop_keeps_one_deadline_with_a_hanging_feed(caplog: pytest.LogCaptureFixture) -> None:
    good, hung = StubFeed("good"), HangingFeed("hung")
    runner = FeedRunner([hung, good], _plain)
    await runner.start()
    other_stopped = asyncio.Event()

    async def broker_stop() -> None:
        other_stopped.set()

    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ticker.feeds"):
        await runner.stop(within=0.2, alongside={"broker memory": broker_stop()})
    took = time.monotonic() - t0
    assert 0.2 <= took < 1.0
    assert good.stopped and other_stopped.is_set()
    assert "feed hung did not stop in time" in caplog.text and "good" not in caplog.text
    assert runner.started == []
    await runner.stop(within=0.2)  # a second stop has nothing left to stop


async def test_a_failed_start_stops_what_started() -> None:
    first, broken, never = StubFeed("first"), BrokenFeed("broken"), StubFeed("never")
    runner = FeedRunner([first, broken, never], _plain)
    with pytest.raises(ValueError, match="cannot start"):
        await runner.start()
    assert first.stopped and never.ctx is None and not never.stopped


class FakeMeter:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []
        self.errors: Counter[tuple[str, str]] = Counter()
        self.reconnects: Counter[str] = Counter()
        self.probes: dict[str, Callable[[], bool]] = {}

    def count_feed(self, feed: str, publish: Callable[[Quote], None]) -> Callable[[Quote], None]:
        def emit(quote: Quote) -> None:
            self.counted.append((feed, quote.symbol))
            publish(quote)

        return emit

    def count_feed_many(
        self, feed: str, publish: Callable[[list[Quote]], None]
    ) -> Callable[[list[Quote]], None]:
        def emit_many(quotes: list[Quote]) -> None:
            self.counted.extend((feed, q.symbol) for q in quotes)
            publish(quotes)

        return emit_many

    def count_feed_error(self, feed: str, kind: str) -> None:
        self.errors[feed, kind] += 1

    def count_feed_reconnect(self, feed: str) -> None:
        self.reconnects[feed] += 1

    def watch_feed_up(self, feed: str, probe: Callable[[], bool]) -> None:
        self.probes[feed] = probe


async def test_metered_contexts_count_then_publish() -> None:
    meter, published = FakeMeter(), list[Quote]()
    a, b = StubFeed("a"), StubFeed("b")
    runner = FeedRunner([a, b], metered(meter, published.append))
    await runner.start()
    assert a.ctx is not None and b.ctx is not None
    quote = Quote(symbol="AAPL", price=1.0, ts_ms=1)
    a.ctx.emit(quote)
    b.ctx.error("bad_json")
    b.ctx.reconnected()
    assert published == [quote] and meter.counted == [("a", "AAPL")]
    assert meter.errors == {("b", "bad_json"): 1} and meter.reconnects == {"b": 1}
    assert meter.probes["a"]() is True
    assert a.ctx.emit_many is None  # without a publish_many a feed emits each
    await runner.stop()
    assert meter.probes["a"]() is False and meter.probes["b"]() is False


async def test_metered_contexts_count_several_quotes_then_publish_them_at_once() -> None:
    meter, batches = FakeMeter(), list[list[Quote]]()
    feed = StubFeed("a")
    runner = FeedRunner([feed], metered(meter, lambda q: batches.append([q]), publish_many=batches.append))
    await runner.start()
    assert feed.ctx is not None and feed.ctx.emit_many is not None
    quotes = [Quote(symbol=s, price=1.0, ts_ms=1) for s in ("AAPL", "MSFT", "AAPL")]
    feed.ctx.emit_many(quotes)
    assert batches == [quotes] and meter.counted == [("a", "AAPL"), ("a", "MSFT"), ("a", "AAPL")]
    await runner.stop()


class ListingFeed(StubFeed):
    """A feed whose reference loads fail with ``failures`` (in turn), then list ``entries``."""

    def __init__(self, name: str, failures: list[Exception], entries: list[SymbolInfo]) -> None:
        super().__init__(name)
        self.failures = failures
        self.entries = entries
        self.loads = 0

    async def load_reference(self) -> list[SymbolInfo] | None:
        self.loads += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.entries


AAPL = SymbolInfo("AAPL", "Apple Inc.", "XNAS", "stock", "USD")


async def test_a_loader_survives_a_bug_logs_its_traceback_once_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = ListingFeed("prov", [KeyError("oops"), KeyError("oops"), UpstreamError("down")], [AAPL])
    runner = FeedRunner([feed], _plain)
    with caplog.at_level(logging.WARNING, logger="ticker.feeds"):
        task = asyncio.get_running_loop().create_task(runner._load_reference(feed, Backoff(0.001, 0.001)))
        await eventually(lambda: runner.directory.known("AAPL") is Known.KNOWN, what="the directory loaded")
        await cancel_and_wait(task)
    assert feed.loads == 4 and task.cancelled()  # two bugs and a feed error, each retried; cancelling ends it
    bugs = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(bugs) == 1 and bugs[0].levelno == logging.ERROR  # throttled: the same bug once
    assert bugs[0].exc_info is not None and bugs[0].exc_info[0] is KeyError  # with its traceback
    assert "reference data not loaded (down)" in caplog.text


async def test_a_runner_without_reference_loading_asks_no_feed_for_it() -> None:
    feed = ListingFeed("prov", [], [AAPL])
    runner = FeedRunner([feed], _plain, load_reference=False)
    await runner.start()
    await asyncio.sleep(0)  # a loader, were there one, has asked for the list in its first step by now
    assert feed.loads == 0 and runner.directory.known("AAPL") is Known.PENDING
    await runner.stop()
    loading = FeedRunner([feed], _plain)  # the default, for serve and feed
    await loading.start()
    await eventually(lambda: loading.directory.known("AAPL") is Known.KNOWN, what="the directory loaded")
    await loading.stop()
