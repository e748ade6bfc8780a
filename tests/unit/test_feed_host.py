"""The --workers feed process's relay logic (ticker/server/feedhost.py), with recording links instead of sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from feeds.base import FeedContext
from feeds.relayed import RelayedFeed
from tests.support.fakes.feed import StubFeed
from tests.support.fanoutkit import FakeSubscriber
from tests.support.timing import eventually
from ticker import relay
from ticker.bars import Bar, utc_day_start
from ticker.directory import SymbolInfo
from ticker.quote import Quote
from ticker.server import feedhost, workerlink
from ticker.server.config import Config
from ticker.server.feedhost import FeedHost
from ticker.server.relaynode import relayed_node
from ticker.server.workerlink import WorkerLink
from ticker.status import CLOSED, SymbolStatus


class RecordingLink(WorkerLink):
    """A worker link that keeps what the feed process sends it, decoded."""

    def __init__(self) -> None:  # no streams: nothing is read
        self.worker = None
        self.requests = 0
        self.closed = False
        self.sent: list[bytes] = []

    def send(self, data: bytes, catch_up: bool = False) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def messages(self) -> list[relay.RelayMessage]:
        out = []
        for data in self.sent:
            while data:
                n = relay.frame_length(data[: relay.HEADER])
                out.append(relay.decode(data[relay.HEADER : relay.HEADER + n]))
                data = data[relay.HEADER + n :]
        return out

    def quotes(self, catch_up: bool | None = None) -> list[Quote]:
        return [
            q
            for m in self.messages()
            if isinstance(m, relay.RelayQuotes) and (catch_up is None or (m.feed is None) == catch_up)
            for q in m.quotes
        ]


class DirectoryFeed(StubFeed):
    """A stub with a directory and a day history, counting the loads."""

    def __init__(self) -> None:
        super().__init__("stub")
        self.loads = 0
        self.day_bars: list[Bar] = []

    async def load_reference(self) -> list[SymbolInfo] | None:
        self.loads += 1
        await asyncio.sleep(0)  # the second request arrives while the first is in flight
        return [SymbolInfo("AAPL", "Apple Inc.", "NASDAQ")]

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        return self.day_bars if interval == "1d" else None


@pytest.fixture
async def host() -> AsyncIterator[FeedHost]:
    h = FeedHost(Config(host="127.0.0.1", port=0), feeds=[DirectoryFeed()], epoch="fresh")
    await h.start_feeds()
    yield h
    await h.stop()


def joined(host: FeedHost, worker: int, epoch: str | None = None, floor: int = 0) -> RecordingLink:
    link = RecordingLink()
    host.on_message(link, relay.RelayJoin(worker, epoch, floor))
    return link


def emit(host: FeedHost, symbol: str, price: float) -> None:
    feed = host.feeds[0]
    assert feed.ctx is not None  # type: ignore[attr-defined]
    feed.ctx.emit(Quote(symbol, price, 1_800_000_000_000))  # type: ignore[attr-defined]


async def test_quotes_are_numbered_completed_and_sent_once_encoded_to_every_worker(host: FeedHost) -> None:
    a, b = joined(host, 0), joined(host, 1)
    emit(host, "AAPL", 228.5)
    emit(host, "AAPL", 228.6)
    emit(host, "MSFT", 410.0)
    assert not a.quotes(catch_up=False)  # at the end of the loop pass
    await asyncio.sleep(0)
    assert a.sent[-1] is b.sent[-1]  # one join of frames, the same bytes to both
    got = a.quotes(catch_up=False)
    assert [(q.symbol, q.price, q.seq) for q in got] == [
        ("AAPL", 228.5, 1),
        ("AAPL", 228.6, 2),
        ("MSFT", 410.0, 3),
    ]
    assert all(q.open is not None and q.high is not None and q.low is not None for q in got)  # day statistics
    assert got[1].high == 228.6 and got[1].low == 228.5


async def test_a_joining_worker_gets_the_last_values_and_a_full_report(host: FeedHost) -> None:
    a = joined(host, 0)
    emit(host, "AAPL", 228.5)
    emit(host, "AAPL", 228.7)
    b = joined(host, 1)  # in the same pass: what was numbered goes out first
    [catch_up] = b.quotes(catch_up=True)
    assert (catch_up.price, catch_up.seq) == (228.7, 2)
    assert [q.seq for q in a.quotes(catch_up=False)] == [1, 2] and not b.quotes(catch_up=False)
    report = b.messages()[-1]
    assert isinstance(report, relay.RelayStatus) and report.feeds[0].up and report.feeds[0].known == []


async def test_a_worker_of_an_earlier_feed_process_has_every_number_put_above_its_own(host: FeedHost) -> None:
    a = joined(host, 0, "old", 500)
    emit(host, "AAPL", 228.5)
    b = joined(host, 1, "old", 700)  # delivered more of the old numbers: everything goes above 700
    assert [q.seq for q in a.quotes(catch_up=True)] == [701]  # the same update, renumbered, to a
    assert [(q.price, q.seq) for q in b.quotes(catch_up=True)] == [(228.5, 701)]
    emit(host, "AAPL", 228.6)
    await asyncio.sleep(0)
    assert [q.seq for q in a.quotes(catch_up=False)] == [501, 702]
    c = joined(host, 2, "fresh", 999)  # reconnected to this very process: its numbers are ours already
    assert [q.seq for q in c.quotes(catch_up=True)] == [702]


async def test_demand_is_the_union_and_a_departed_worker_s_lingers(
    host: FeedHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feedhost, "DEMAND_LINGER", 0.05)
    a, b = joined(host, 0), joined(host, 1)
    host.on_message(a, relay.RelayDemand(frozenset({"AAPL"})))
    host.on_message(b, relay.RelayDemand(frozenset({"MSFT"})))
    feed = host.feeds[0]
    assert feed.demand == {"AAPL", "MSFT"}
    host.left(a)
    assert feed.demand == {"AAPL", "MSFT"}  # kept a while: a restart, a reconnect
    await eventually(lambda: feed.demand == {"MSFT"}, what="the departed worker's demand dropped")
    a2 = joined(host, 1)  # worker 1 again, on a new link, before its old link is seen gone
    host.on_message(a2, relay.RelayDemand(frozenset({"NVDA"})))
    host.left(b)  # the old link: worker 1's demand is the new link's now, and does not linger
    assert 1 not in host._lingering and feed.demand == {"NVDA"}
    host._forget(1)  # as a timer of the old link would, had one been set
    assert feed.demand == {"NVDA"}


async def test_messages_out_of_place_are_malformed(host: FeedHost) -> None:
    link = RecordingLink()
    with pytest.raises(relay.RelayError, match="before join"):
        host.on_message(link, relay.RelayDemand(frozenset({"AAPL"})))
    joined_link = joined(host, 0)
    with pytest.raises(relay.RelayError, match="join again"):
        host.on_message(joined_link, relay.RelayJoin(0, None, 0))
    with pytest.raises(relay.RelayError, match="takes no"):
        host.on_message(joined_link, relay.RelayHello("x", ()))


async def test_directory_requests_share_one_load_and_update_the_feed_process_s_directory(
    host: FeedHost,
) -> None:
    a, b = joined(host, 0), joined(host, 1)
    host.on_message(a, relay.RelayRequest(1, 0, relay.REFERENCE))
    host.on_message(b, relay.RelayRequest(1, 0, relay.REFERENCE))
    host.on_message(b, relay.RelayRequest(2, 5, relay.REFERENCE))

    def replies(link: RecordingLink) -> list[relay.RelayReply]:
        return [m for m in link.messages() if isinstance(m, relay.RelayReply)]

    await eventually(lambda: len(replies(a)) == 1 and len(replies(b)) == 2, what="replies")
    assert host.feeds[0].loads == 1  # type: ignore[attr-defined]
    [ra] = replies(a)
    assert relay.decode_reference(ra.value) == [SymbolInfo("AAPL", "Apple Inc.", "NASDAQ")]
    assert sorted((r.id, r.error) for r in replies(b)) == [(1, None), (2, "no feed #5")]
    assert host.runner.directory.get("AAPL") is not None


async def test_day_history_seeds_the_previous_close_of_the_quotes() -> None:
    now_ms = 1_800_000_000_000  # the quotes' time (emit) and the wall clock's
    today = utc_day_start(now_ms)  # AAPL is in no directory here: UTC days
    feed = DirectoryFeed()
    feed.day_bars = [Bar(today - 86_400_000, 200, 210, 190, 205.5, 1), Bar(today, 206, 207, 205, 206, 1)]
    host = FeedHost(Config(host="127.0.0.1", port=0), feeds=[feed], wall=lambda: now_ms / 1000)
    await host.start_feeds()
    try:
        a = joined(host, 0)
        host.on_message(a, relay.RelayRequest(3, 0, relay.HISTORY, ("AAPL", "1d", 0, now_ms)))
        await eventually(lambda: any(isinstance(m, relay.RelayReply) for m in a.messages()), what="the reply")
        emit(host, "AAPL", 206.5)
        await asyncio.sleep(0)
        [q] = a.quotes(catch_up=False)
        assert q.prev_close == 205.5 and q.open == 206  # the session so far, from the history
    finally:
        await host.stop()


async def test_reports_say_what_the_feed_says_of_the_demanded_symbols(host: FeedHost) -> None:
    feed = host.feeds[0]
    feed.said["AAPL"] = SymbolStatus(CLOSED, "market closed")  # type: ignore[attr-defined]
    a = joined(host, 0)
    host.on_message(a, relay.RelayDemand(frozenset({"AAPL", "MSFT"})))
    await eventually(
        lambda: any(
            isinstance(m, relay.RelayStatus)
            and m.feeds[0].states.get("AAPL") == SymbolStatus(CLOSED, "market closed")
            for m in a.messages()
        ),
        what="a report naming AAPL closed",
    )


class Joining:
    """Stands for a worker link's stream writer: keeps the messages the worker writes (join, demand)."""

    def __init__(self) -> None:
        self.messages: list[relay.RelayMessage] = []

    def write(self, data: bytes) -> None:
        self.messages.append(relay.decode(data[relay.HEADER :]))


class Worker:
    """A ``--workers`` worker's node (:func:`relayed_node`) that served ``top`` under an earlier feed process's
    epoch (AAPL at ``price``), linked to ``host`` by hand: what one sends is handed to the other. ``served``:
    (epoch, symbol, q, price) of every quote entering its hub, and of every entry its client's snapshots hold."""

    def __init__(self, host: FeedHost, index: int, top: int, price: float) -> None:
        self.host = host
        self.node = node = relayed_node(Config(host="127.0.0.1", port=0, worker_index=index), "/nowhere")
        feed = node.feeds[0]
        assert isinstance(feed, RelayedFeed)
        self.link = feed._link
        self.link._contexts[0] = FeedContext(emit=node.broker.publish)  # as the started runner would
        node.broker._deliver = node._deliver
        self.served: list[tuple[str, str, int, float]] = []
        publish = node.fanout.publish

        def entering(q: Quote) -> None:
            self.served.append((node.hub.epoch, q.symbol, q.seq, q.price))
            publish(q)

        node.fanout.publish = entering  # type: ignore[method-assign,assignment]
        self.client = FakeSubscriber(f"client of w{index}")
        node.register(self.client)
        node.hub.subscribe(self.client, ["AAPL", "MSFT"])
        node.set_epoch("old")  # the earlier feed process's numbers
        node.broker.publish(Quote("AAPL", price, 1, seq=top))
        self.link.epoch, self.link.top = "old", top
        self.end = RecordingLink()  # the feed process's end of the link
        self.read = 0

    def greet(self) -> None:
        """The new feed process's hello: the worker joins (and catches up)."""
        writer = Joining()
        hello = relay.RelayHello(self.host.epoch, tuple(self.host.names))
        self.link._greeted(hello, writer)  # type: ignore[arg-type]
        for msg in writer.messages:
            self.host.on_message(self.end, msg)
        self.pump()

    def pump(self) -> None:
        """Hand the worker what the feed process sent it since the last pump."""
        messages = self.end.messages()
        for msg in messages[self.read :]:
            self.link._dispatch(msg)
        self.read = len(messages)

    def snapshots(self) -> list[dict[str, Any]]:
        """The snapshots its client got."""
        msgs = [orjson.loads(f[2:] if f[1] < 126 else f[4:]) for f in self.client.frames]
        return [m for m in msgs if m["type"] == "snapshot"]

    def snapshot_entries(self) -> list[tuple[str, str, int, float]]:
        return [(m["e"], e["s"], e["q"], e["p"]) for m in self.snapshots() for e in m["data"]]


async def test_workers_joining_a_new_feed_process_with_different_floors_give_one_q_one_price() -> None:
    """Worker 0 served q up to 300 of the feed process that died, worker 1 up to 500: the new one numbers above
    300 once worker 0 has joined, then above 500; neither worker serves a value of the old numbering under the
    new epoch, so no (symbol, q) of the new epoch has two prices."""
    FakeSubscriber.framed = []
    host = FeedHost(Config(host="127.0.0.1", port=0), feeds=[StubFeed("simulated")], epoch="new")
    await host.start_feeds()
    try:
        w0, w1 = Worker(host, 0, 300, 100.0), Worker(host, 1, 500, 200.0)
        w0.greet()
        emit(host, "MSFT", 400.0)  # 301, renumbered 501 when worker 1 joins
        for i in range(250):  # 302 to 551: worker 0 serves AAPL q 500 (2.98) under the new epoch
            emit(host, "AAPL", 1.0 + i / 100)
        await asyncio.sleep(0)
        w0.pump()
        w1.greet()
        w0.pump()  # the renumbered MSFT

        def resynced() -> bool:
            return all(any(m["e"] == "new" for m in w.snapshots()) for w in (w0, w1))

        await eventually(resynced, what="a snapshot of the new epoch on both workers")
        new = [x[1:] for w in (w0, w1) for x in w.served + w.snapshot_entries() if x[0] == "new"]
        prices: dict[tuple[str, int], float] = {}
        for symbol, q, price in new:
            assert prices.setdefault((symbol, q), price) == price, (
                f"{symbol} q {q}: {prices[symbol, q]}, {price}"
            )
        assert ("AAPL", 500) in prices and 100.0 not in prices.values() and 200.0 not in prices.values()
        for w in (w0, w1):  # the same latest values on both
            assert (w.node.hub.last("AAPL").seq, w.node.hub.last("MSFT").seq) == (551, 501)  # type: ignore[union-attr]
    finally:
        await host.stop()


class Transport:
    """What a link's writer buffers: everything written, nothing read until ``drain``."""

    def __init__(self) -> None:
        self.size = 0

    def get_write_buffer_size(self) -> int:
        return self.size

    def abort(self) -> None:
        pass


class Writer:
    def __init__(self) -> None:
        self.transport = Transport()

    def write(self, data: bytes) -> None:
        self.transport.size += len(data)


def test_a_catch_up_does_not_count_against_the_backlog_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A join's catch-up is up to MAX_SYMBOLS last values (about 20 MB): the bound is on what comes beside it."""
    monkeypatch.setattr(workerlink, "MAX_BACKLOG", 1000)
    writer = Writer()
    link = WorkerLink(None, writer, feedhost.ThrottledLog(feedhost.log))  # type: ignore[arg-type]
    link.send(b"x" * 5000, catch_up=True)
    link.send(b"x" * 1000)
    assert not link.closed
    writer.transport.size = 1500  # the worker read most of the catch-up: at most 1500 bytes of it are left
    link.send(b"x" * 400)
    assert not link.closed
    writer.transport.size = 1000  # read more: at most 1000 bytes of catch-up are left
    link.send(b"x" * 1001)  # 2001 bytes unsent, at least 1001 of them beside the catch-up
    assert link.closed
