"""A worker's relayed feeds and their link (feeds/relayed.py, feeds/relaylink.py), messages handed in by hand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from feeds.base import FeedContext
from feeds.errors import FeedError, RateLimited
from feeds.relayed import RelayedFeed
from feeds.relaylink import FeedProcessLink
from tests.support.fakes.feed import StubFeed
from tests.support.timing import eventually
from ticker import relay
from ticker.bars import Bar
from ticker.quote import Quote, encode_entry
from ticker.status import CLOSED, SymbolStatus


class WrittenFrames:
    """Stands for the link's stream writer: keeps the frames written."""

    def __init__(self) -> None:
        self.frames: list[relay.RelayMessage] = []

    def write(self, data: bytes) -> None:
        self.frames.append(relay.decode(data[relay.HEADER :]))


def linked(names: tuple[str, ...] = ("sim", "crypto")) -> tuple[FeedProcessLink, WrittenFrames]:
    """A link that is up, on no socket: its messages are handed to ``_dispatch`` by the test."""
    link = FeedProcessLink("/nowhere", names, 0)
    frames = WrittenFrames()
    link._writer = frames  # type: ignore[assignment]
    link.up = True
    link._linked.set()
    return link, frames


def report(up: bool = True, **kw: Any) -> relay.RelayFeedState:
    fields: dict[str, Any] = {
        "age": 0.5,
        "reason": "",
        "steady": True,
        "limit": None,
        "states": {},
        "known": None,
    }
    fields.update(kw)
    return relay.RelayFeedState(up=up, **fields)


def test_health_says_why_while_the_link_is_down_then_mirrors_the_feed_process() -> None:
    link = FeedProcessLink("/nowhere", ("sim",), 0)
    feed = RelayedFeed(StubFeed("sim"), link, 0)
    link.reason = "the feed process is not running"
    h = feed.health()
    assert not h.up and h.reason == "no link to the feed process: the feed process is not running"
    link.up = True
    assert feed.health().reason == "waiting for the feed process's first report"
    link._dispatch(
        relay.RelayStatus([report(False, reason="connecting to upstream", steady=False, limit=30)])
    )
    h = feed.health()
    assert not h.up and h.reason == "connecting to upstream" and not feed.steady and feed.symbol_limit == 30
    assert h.last_data is not None  # the report's age: data before this link counts


def test_symbol_states_and_offer_mirror_the_reports() -> None:
    link, _ = linked(("sim",))
    feed = RelayedFeed(StubFeed("sim"), link, 0)
    closed = SymbolStatus(CLOSED, "the market is closed")
    link._dispatch(relay.RelayStatus([report(states={"AAPL": closed}, known=["AAPL", "MSFT"])]))
    link._dispatch(relay.RelayStatus([report(states={"AAPL": closed})]))  # offer unchanged: still known
    assert feed.symbol_state("AAPL") == closed and feed.symbol_state("MSFT") is None
    assert feed.known_symbols() == ["AAPL", "MSFT"]
    link.up = False
    assert feed.symbol_state("AAPL") is None  # down wins (feed_down): nothing more to say


def test_owns_is_the_real_feed_s_answer() -> None:
    link = FeedProcessLink("/nowhere", ("crypto",), 0)
    feed = RelayedFeed(StubFeed("crypto", owned=lambda s: s.endswith("-USD")), link, 0)
    assert feed.owns("BTC-USD") and not feed.owns("AAPL")


def test_quotes_bars_and_events_reach_their_feed_s_context_and_a_catch_up_its_sink() -> None:
    link, _ = linked()
    got: dict[str, list[Any]] = {"sim": [], "crypto": [], "bars": [], "errors": [], "caught": []}
    link._contexts[0] = FeedContext(emit=got["sim"].append, bar=lambda *a: got["bars"].append(a))
    link._contexts[1] = FeedContext(emit=got["crypto"].append, error=got["errors"].append)
    link.catch_up = got["caught"].append
    a = Quote("AAPL", 228.5, 1, seq=7)
    b = Quote("BTC-USD", 90_000.0, 2, seq=3)
    for f in relay.quotes(0, [encode_entry(a, 7)]) + relay.quotes(1, [encode_entry(b, 3)]):
        link._dispatch(relay.decode(f[relay.HEADER :]))
    link._dispatch(relay.RelayQuotes(None, [Quote("KO", 60.0, 1, seq=42)]))
    bar = Bar(60_000, 1.0, 1.0, 1.0, 1.0)
    link._dispatch(relay.RelayBar(0, "AAPL", "1m", bar, False))
    link._dispatch(relay.RelayEvent(1, "malformed"))
    assert got["sim"] == [a] and got["crypto"] == [b] and got["caught"][0].seq == 42
    assert got["bars"] == [("AAPL", "1m", bar, False)] and got["errors"] == ["malformed"]
    assert link.top == 42 and link.last_data[0] is not None  # the join's floor; the feeds' last data


def test_a_message_of_several_quotes_reaches_a_context_that_takes_several_in_one_call() -> None:
    link, _ = linked()
    batches: list[list[Quote]] = []
    link._contexts[0] = FeedContext(emit=lambda q: pytest.fail("emitted alone"), emit_many=batches.append)
    quotes = [Quote("AAPL", 228.5, 1, seq=7), Quote("MSFT", 410.0, 1, seq=8), Quote("AAPL", 228.6, 2, seq=9)]
    for f in relay.quotes(0, [encode_entry(q, q.seq) for q in quotes]):
        link._dispatch(relay.decode(f[relay.HEADER :]))
    assert [q for batch in batches for q in batch] == quotes and link.top == 9


def test_a_report_of_other_feeds_or_a_worker_s_message_is_malformed() -> None:
    link, _ = linked()
    with pytest.raises(relay.RelayError, match="1 feeds"):
        link._dispatch(relay.RelayStatus([report()]))
    with pytest.raises(relay.RelayError, match="takes no"):
        link._dispatch(relay.RelayDemand(frozenset()))


async def test_demand_goes_once_per_loop_pass_as_the_union() -> None:
    link, frames = linked()
    link.set_demand(0, frozenset({"AAPL"}))
    link.set_demand(1, frozenset({"BTC-USD"}))
    assert frames.frames == []
    await asyncio.sleep(0)
    assert frames.frames == [relay.RelayDemand(frozenset({"AAPL", "BTC-USD"}))]
    link.set_demand(0, frozenset({"AAPL"}))  # no change: nothing sent
    await asyncio.sleep(0)
    assert len(frames.frames) == 1


async def test_requests_get_their_reply_or_a_feed_error() -> None:
    link, frames = linked(("sim",))
    feed = RelayedFeed(StubFeed("sim"), link, 0)
    task = asyncio.ensure_future(feed.load_history("AAPL", "1d", 0, 10))
    await eventually(lambda: frames.frames, what="the request written")
    [req] = frames.frames
    assert req == relay.RelayRequest(1, 0, relay.HISTORY, ("AAPL", "1d", 0, 10))
    link._dispatch(relay.RelayReply(1, [[0, 1.0, 2.0, 0.5, 1.5, 9]]))
    assert await task == [Bar(0, 1.0, 2.0, 0.5, 1.5, 9)]
    loading = asyncio.ensure_future(feed.load_reference())
    await eventually(lambda: len(frames.frames) == 2, what="the second request written")
    link._dispatch(relay.RelayReply(2, None, "rate limited upstream", 30.0))
    with pytest.raises(RateLimited):
        await loading
    loading = asyncio.ensure_future(feed.load_reference())
    await eventually(lambda: len(frames.frames) == 3, what="the third request written")
    link._down("the feed process closed the link")  # lost meanwhile: the caller retries later
    with pytest.raises(FeedError, match="lost the link"):
        await loading


async def test_a_request_while_the_link_is_down_fails_after_its_wait() -> None:
    link = FeedProcessLink("/nowhere", ("sim",), 0)
    link.reason = "the feed process is not running"
    with pytest.raises(
        FeedError, match=r"no link to the feed process for 0\.01 s: the feed process is not running"
    ):
        await link.request(lambda rid: relay.reference_request(rid, 0), 0.01)
