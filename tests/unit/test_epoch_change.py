"""A change of the source that numbers ``q`` (docs/protocol.md, "The epoch rule"): nothing the old source numbered
goes out under the new epoch (last values, subscribed ones too, views, the delayed tier), and the Redis edge sets
the new epoch before it delivers the new source's values. No sockets."""

from __future__ import annotations

import math
from typing import Any

import orjson

from tests.support.fakes.feed import StubFeed
from tests.support.fanoutkit import FakeSubscriber
from tests.support.timing import eventually
from ticker import protocol
from ticker.auth.options import AuthOptions
from ticker.broker import redis_layout as rc
from ticker.broker.redis_edge import RedisBroker
from ticker.delay import delayed_key
from ticker.metrics.registry import Metrics
from ticker.quote import Quote, encode_entry
from ticker.server.config import Config
from ticker.server.node import Node
from ticker.server.sse import quotes_frame
from ticker.views import ViewSpec


def messages(conn: FakeSubscriber) -> list[dict[str, Any]]:
    return [orjson.loads(f[2:] if f[1] < 126 else f[4:]) for f in conn.frames]


def snapshot_of(conn: FakeSubscriber, epoch: str) -> dict[str, Any] | None:
    return next((m for m in messages(conn) if m["type"] == "snapshot" and m["e"] == epoch), None)


def make_node(delay: float | None = None) -> Node:
    FakeSubscriber.framed = []
    access = AuthOptions(auth="jwt", delay=delay) if delay is not None else AuthOptions()
    node = Node(Config(host="127.0.0.1", port=0, access=access), feeds=[StubFeed("sim")])
    node.set_epoch("old")
    return node


def client(node: Node, name: str, keys: list[str]) -> FakeSubscriber:
    conn = FakeSubscriber(name)
    node.register(conn)
    node.hub.subscribe(conn, keys)
    return conn


async def test_a_new_epoch_drops_the_old_sources_values_subscribed_ones_and_views_too() -> None:
    node = make_node()
    delta = ViewSpec(delta=True).key("AAPL")
    plain, deltas = client(node, "plain", ["AAPL", "MSFT"]), client(node, "delta", [delta])
    node._deliver(Quote("AAPL", 300.0, 1, bid=299.0, ask=301.0, seq=300))
    node._deliver(Quote("MSFT", 400.0, 1, seq=299))
    await eventually(
        lambda: any(m["type"] == "quotes" for m in messages(deltas)), what="the old source's quotes"
    )
    assert node.set_epoch("new") and not node.set_epoch("new")
    assert node.hub.last("AAPL") is None and node.hub.last("MSFT") is None
    node._deliver(Quote("AAPL", 1.0, 2, bid=299.0, ask=1.5, seq=1))  # the new source's, in the same pass
    snap = await eventually(lambda: snapshot_of(plain, "new"), what="the new epoch's snapshot")
    assert [(e["s"], e["q"], e["p"]) for e in snap["data"]] == [("AAPL", 1, 1.0)]  # MSFT: none of the new
    delta_snap = await eventually(lambda: snapshot_of(deltas, "new"), what="the delta client's snapshot")
    assert all(e["q"] != 300 for e in delta_snap["data"])

    def first_of_new() -> dict[str, Any] | None:
        after = messages(deltas)[messages(deltas).index(delta_snap) :]
        return next((e for m in after for e in m["data"] if e["q"] == 1), None)

    entry = await eventually(first_of_new, what="the delta client's first entry of the new source")
    assert (entry["p"], entry["b"], entry["a"]) == (1.0, 299.0, 1.5)  # full: not a delta against q 300


async def test_a_new_epoch_empties_the_delayed_tiers_line() -> None:
    node = make_node(delay=60.0)
    line = node.delay_line
    assert line is not None
    key = delayed_key("AAPL")
    conn = client(node, "delayed", [key])
    line.keep({"AAPL"}, math.inf)  # as the node's demand push does for a delayed subscriber
    for i in range(3):
        node._deliver(Quote("AAPL", 300.0 + i, 1_000 * i, seq=300 + i))
    assert line.held() > 0
    node.hub.publish_delayed("AAPL", encode_entry(Quote("AAPL", 299.0, 1), 299), 299, 0.0)  # one released
    assert node.set_epoch("new")
    assert line.held() == 0 and line.due(math.inf) == [] and line.next_due() is None
    st = node.hub.state(key)
    assert st is not None and st.encoded is None  # the released one went too
    assert "AAPL" in line.recording  # still recorded: the new source's updates are held as before
    snap = await eventually(lambda: snapshot_of(conn, "new"), what="the new epoch's snapshot")
    assert snap["data"] == []
    node._deliver(Quote("AAPL", 1.0, 5_000, seq=1))
    assert line.held() == 1


# -- the Redis edge ------------------------------------------------------------------------------------------
class Pipeline:
    """A pipeline that takes every command and answers nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self

    async def execute(self) -> list[Any]:
        return []


class FakeRedis:
    """What a sync pass reads: ``P:source`` and the last-value hash."""

    def __init__(self, source: str, last: dict[str, bytes]) -> None:
        self.source = source.encode()
        self.last = last

    async def get(self, key: str) -> bytes:
        assert key == "tk:source"
        return self.source

    async def hmget(self, key: str, symbols: list[str]) -> list[bytes | None]:
        assert key == "tk:last"
        return [self.last.get(s) for s in symbols]

    def pipeline(self, transaction: bool = True) -> Pipeline:
        return Pipeline()


class PubSub:
    async def subscribe(self, *channels: bytes) -> None:
        pass

    async def unsubscribe(self, *channels: bytes) -> None:
        pass


class Edge:
    """An edge broker whose hub is a dict: it records deliveries and epochs in order (as the node does, the
    epoch drops every value held)."""

    def __init__(self) -> None:
        self.hub: dict[str, Quote] = {}
        self.events: list[tuple[Any, ...]] = []
        self.broker = RedisBroker(
            "redis://127.0.0.1:1/0", Metrics(), self.hub.get, on_epoch=self.epoch, prefix="tk"
        )
        self.broker._deliver = self.deliver

    def deliver(self, q: Quote) -> None:
        self.hub[q.symbol] = q
        self.events.append((q.symbol, q.seq))

    def epoch(self, epoch: str) -> bool:
        self.hub.clear()
        self.events.append(("epoch", epoch))
        return True

    def message(self, src: str, symbol: str, seq: int) -> None:
        entry = encode_entry(Quote(symbol, float(seq), seq), seq)
        self.broker._on_quotes(f"tk:q:{symbol}".encode(), rc.encode_message([entry], 1.0, 1, src))


async def test_the_edge_switches_epoch_before_it_delivers_the_new_sources_values() -> None:
    """Redis lost its last values (FLUSHALL) and a new publisher numbers from 1: the edge's hub must not keep the
    old source's q 300 under the new epoch, and the new source's messages that came before the switch count."""
    edge = Edge()
    b = edge.broker
    b.source = "a#1"
    b._demand = frozenset({"AAPL", "MSFT"})
    b._subscribed = {"AAPL", "MSFT"}
    edge.message("a#1", "AAPL", 300)
    edge.message("a#1", "MSFT", 299)
    edge.message("b#1", "MSFT", 2)  # the new source's, before the pass reads P:source: held back
    assert edge.hub["MSFT"].seq == 299 and b._full
    redis = FakeRedis("b#1", {"AAPL": encode_entry(Quote("AAPL", 1.0, 1), 1)})  # MSFT's not written yet
    edge.events.clear()
    assert await b._sync(redis, PubSub(), full=True)  # type: ignore[arg-type]
    assert edge.events == [("epoch", "b#1"), ("AAPL", 1), ("MSFT", 2)]
    assert b.source == "b#1" and not b._held
    edge.message("a#1", "AAPL", 301)  # the old source's, late: dropped
    edge.message("b#1", "AAPL", 2)
    assert edge.hub["AAPL"].seq == 2


async def test_the_edge_drops_what_a_source_not_in_p_source_sent() -> None:
    edge = Edge()
    b = edge.broker
    b.source = "a#1"
    b._demand = frozenset({"AAPL"})
    b._subscribed = {"AAPL"}
    edge.message("a#1", "AAPL", 300)
    edge.message("c#9", "AAPL", 7)  # P:source does not name it (yet)
    edge.events.clear()
    assert not await b._sync(FakeRedis("a#1", {}), PubSub(), full=True)  # type: ignore[arg-type]
    assert edge.events == [] and edge.hub["AAPL"].seq == 300 and not b._held


def test_an_sse_snapshot_names_its_epoch_as_the_events_id() -> None:
    """EventSource's lastEventId follows the epoch: a resync's snapshot after an epoch change carries ``id:``."""
    snap = quotes_frame(protocol.encode_snapshot([b'{"s":"A","p":1,"t":1,"q":1}'], "e07b55f10c93#8"))
    body = snap[snap.index(b"\r\n") + 2 : -2]
    assert body.startswith(b"id: e07b55f10c93#8\nevent: snapshot\ndata: {") and body.endswith(b"\n\n")
    quotes = quotes_frame(protocol.encode_quotes(protocol.QUOTES, []))
    assert b"id:" not in quotes and b"\nevent: quotes\ndata: " in quotes
