"""``q`` numbered once at the source and the epoch that names it (docs/protocol.md, "The epoch rule"), on the
server's side: the Redis publisher's numbering and its messages, the edge's handling of a new source, the hub
letting stale values go, and the fan-out telling every connection the new epoch. No sockets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support.fanoutkit import FLUSH, SLOW, Rig
from ticker.broker import redis_layout as rc
from ticker.broker.publisher import Publisher
from ticker.broker.redis_edge import RedisBroker
from ticker.broker.redis_lease import Lease
from ticker.hub import Hub
from ticker.metrics.registry import Metrics
from ticker.quote import Quote, encode_entry
from ticker.server.fanout import SWEEP_INTERVAL


def frame_msg(frame: bytes) -> dict[str, Any]:
    assert frame[0] == 0x81
    msg: dict[str, Any] = orjson.loads(frame[2:] if frame[1] < 126 else frame[4:])
    return msg


# -- the Redis codec ---------------------------------------------------------------------------------------
def test_a_message_carries_the_publishers_q_and_its_source_epoch():
    entries = [encode_entry(Quote("AAPL", 1.0, 10), 41), encode_entry(Quote("AAPL", 1.5, 11), 42)]
    raw = rc.encode_message(entries, 1717171717171.5, 3, "9c41d07a2b5e#3")
    assert orjson.loads(raw)["src"] == "9c41d07a2b5e#3" and orjson.loads(raw)["e"] == 3
    pt, quotes, src = rc.decode_sourced(raw)
    assert (pt, src) == (1717171717171.5, "9c41d07a2b5e#3")
    assert [(q.price, q.seq) for q in quotes] == [(1.0, 41), (1.5, 42)]
    assert rc.decode_message(raw) == (pt, quotes)
    # An older publisher's: no q (the hub numbers it), no source.
    old = rc.encode_message([encode_entry(Quote("AAPL", 1.0, 10))], 1.0)
    assert rc.decode_sourced(old)[1:] == ([Quote("AAPL", 1.0, 10)], None)
    with pytest.raises(ValueError, match="src"):
        rc.decode_sourced(b'{"pt":1,"src":7,"q":[]}')
    with pytest.raises(ValueError):  # a q that is there must be good
        rc.decode_sourced(b'{"pt":1,"q":[{"s":"A","p":1,"t":1,"q":"x"}]}')


# -- the publisher -----------------------------------------------------------------------------------------
class FakeRedis:
    """What the publisher's numbering reads: the last-value hash."""

    def __init__(self, last: dict[bytes, bytes]) -> None:
        self.last = last

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        assert key == "ticker:last"
        return self.last


def make_publisher(epoch: int = 4) -> Publisher:
    lease = Lease(rc.Layout(), "host:1:abcd", 3.0)
    lease.epoch = epoch
    pub = Publisher("redis://127.0.0.1:1/0", [], Metrics(), lease=lease, symbols=frozenset({"AAPL", "MSFT"}))
    return pub


async def test_the_publisher_numbers_each_symbols_quotes_and_names_its_term():
    pub, other = make_publisher(), make_publisher()
    assert pub.source.endswith("#4") and rc.Layout().source == "ticker:source"
    assert pub.source != other.source  # random: another term, another deployment has another
    for price in (1.0, 2.0):
        pub._emit(Quote("AAPL", price, 1))
    pub._emit(Quote("MSFT", 9.0, 1))
    pub._emit(Quote("KO", 9.0, 1))  # not carried: not numbered
    assert {s: orjson.loads(e)["q"] for s, e in pub._last.items()} == {"AAPL": 2, "MSFT": 1}
    pub._set_carried(frozenset({"MSFT"}))  # AAPL dropped, then carried again: its q goes on rising
    pub._set_carried(frozenset({"AAPL", "MSFT"}))
    pub._emit(Quote("AAPL", 3.0, 1))
    assert orjson.loads(pub._last["AAPL"])["q"] == 3


async def test_a_publisher_that_takes_over_carries_each_symbols_q_on_from_redis():
    pub = make_publisher()
    pub._emit(Quote("AAPL", 5.0, 7))  # numbered before Redis answered: 1
    redis = FakeRedis(
        {
            b"AAPL": encode_entry(Quote("AAPL", 4.0, 6), 500),
            b"MSFT": encode_entry(Quote("MSFT", 8.0, 6), 70),
            b"IBM": b"not json",
            b"KO": encode_entry(Quote("KO", 1.0, 6)),  # an older publisher's: no q
        }
    )
    await pub._carry_on_numbering(redis)  # type: ignore[arg-type]
    renumbered = orjson.loads(pub._last["AAPL"])
    assert (renumbered["p"], renumbered["t"], renumbered["q"]) == (5.0, 7, 501)  # above the hash
    pub._emit(Quote("AAPL", 5.5, 8))
    pub._emit(Quote("MSFT", 8.5, 8))
    pub._emit(Quote("MSFT", 8.6, 9))
    assert [orjson.loads(pub._last[s])["q"] for s in ("AAPL", "MSFT")] == [502, 72]
    await pub._carry_on_numbering(redis)  # type: ignore[arg-type]  # again (a reconnect): nothing goes back
    pub._emit(Quote("MSFT", 8.7, 10))
    assert orjson.loads(pub._last["MSFT"])["q"] == 73


# -- the edge ----------------------------------------------------------------------------------------------
class EdgeRig:
    def __init__(self) -> None:
        self.held: dict[str, Quote] = {}
        self.epochs: list[str] = []
        self.broker = RedisBroker(
            "redis://127.0.0.1:1/0", Metrics(), self.held.get, on_epoch=self.on_epoch, prefix="tk"
        )
        self.broker._deliver = self.deliver

    def deliver(self, q: Quote) -> None:
        self.held[q.symbol] = q

    def on_epoch(self, epoch: str) -> bool:
        self.epochs.append(epoch)
        return True

    def message(self, src: str, *quotes: tuple[float, int, int]) -> None:
        entries = [encode_entry(Quote("AAPL", p, t), q) for p, t, q in quotes]
        self.broker._on_quotes(b"tk:q:AAPL", rc.encode_message(entries, 1.0, 1, src))


def test_the_edge_passes_the_publishers_q_on_and_checks_a_new_source():
    rig = EdgeRig()
    b = rig.broker
    b.source = "a#1"
    rig.message("a#1", (1.0, 10, 41))
    assert rig.held["AAPL"].seq == 41 and not b._full
    rig.message("b#2", (1.1, 11, 42))  # another publisher's: held back, and the next pass reads P:source
    assert rig.held["AAPL"].seq == 41 and b._full and b._wake.is_set()
    b._full = False
    rig.message("b#2", (1.2, 12, 43))
    assert not b._full and b._held["AAPL"].seq == 43  # checked once; the latest held
    b._left, b.source = "a#1", "b#2"  # the pass found the new source (test_epoch_change.py: the pass itself)
    rig.message("b#2", (1.3, 13, 44))
    assert rig.held["AAPL"].seq == 44
    rig.message("a#1", (0.9, 9, 40))  # sent before the takeover, read after it: dropped
    assert rig.held["AAPL"].seq == 44


def test_the_edges_read_of_last_values_follows_the_new_numbering():
    rig = EdgeRig()
    rig.deliver(Quote("AAPL", 1.0, 100, seq=500))
    rig.deliver(Quote("MSFT", 2.0, 100, seq=50))
    rig.deliver(Quote("IBM", 3.0, 100, seq=9))
    values: list[bytes | str | None] = [
        encode_entry(Quote("AAPL", 1.5, 90, seq=0), 499),  # older: never delivered over the hub's value
        encode_entry(Quote("MSFT", 2.5, 101), 3),  # numbered again from 3 by a new source, and newer in time
        encode_entry(Quote("IBM", 3.5, 101), 10),
    ]
    rig.broker._apply_last(["AAPL", "MSFT", "IBM"], values)
    assert [rig.held[s].seq for s in ("AAPL", "MSFT", "IBM")] == [500, 50, 10]
    rig.broker._apply_last(["AAPL", "MSFT", "IBM"], values, renumbered=True)
    assert [rig.held[s].seq for s in ("AAPL", "MSFT", "IBM")] == [500, 3, 10]


# -- the hub and the fan-out ------------------------------------------------------------------------------
def test_the_hub_forgets_every_value_of_the_old_source():
    forgotten: list[str] = []
    hub: Hub[str] = Hub(on_forget=forgotten.append)
    hub.add("c")
    hub.subscribe("c", ["AAPL"])
    hub.publish(Quote("AAPL", 1.0, 1, seq=7), 0.0)
    assert orjson.loads(hub.last_encoded(["AAPL"])[0])["q"] == 7  # a source's q is kept as is
    for s in ("MSFT", "KO"):
        hub.publish(Quote(s, 1.0, 1, seq=7), 0.0)
    assert hub.pending
    assert hub.forget_values() == 3  # subscribed or not (test_epoch_change.py: views, the delayed tier)
    assert sorted(forgotten) == ["KO", "MSFT"]  # the idle ones' day statistics go too (AAPL's stay: received)
    assert hub.cached_symbols() == [] and hub.last("AAPL") is None and not hub.pending
    assert hub.symbols_of("c") == {"AAPL"}  # the subscription stays
    hub.publish(Quote("AAPL", 2.0, 2, seq=1), 0.0)  # the new source's first: held and due
    assert hub.pending and orjson.loads(hub.last_encoded(["AAPL"])[0])["q"] == 1


def test_a_new_epoch_reaches_every_connection_and_a_conflated_one_resumes_with_a_snapshot():
    rig = Rig()
    rig.hub.epoch = "a#1"
    with_value, without, slow = (
        rig.conn("w", ["AAPL"]),
        rig.conn("n", ["NOPE"]),
        rig.conn("s", ["AAPL", "MSFT"]),
    )
    rig.publish("AAPL", 1.0)
    rig.publish("MSFT", 2.0)
    rig.sched.advance()
    slow.unsent = SLOW + 1
    rig.publish("AAPL", 1.5)
    rig.sched.advance(FLUSH)
    assert rig.fanout.is_conflating(slow)
    rig.hub.epoch = "b#2"
    assert rig.fanout.resync([with_value, without, slow], empty=True) == 2  # the conflated one: at its resume
    aapl = orjson.loads(rig.hub.last_encoded(["AAPL"])[0])
    assert frame_msg(with_value.frames[-1]) == {"type": "snapshot", "e": "b#2", "data": [aapl]}
    assert frame_msg(without.frames[-1]) == {"type": "snapshot", "e": "b#2", "data": []}
    slow.unsent = 0
    rig.sched.advance(
        SWEEP_INTERVAL
    )  # plain symbols, yet a snapshot: the epoch changed while it was conflated
    msg = frame_msg(slow.frames[-1])
    assert (
        msg["type"] == "snapshot" and msg["e"] == "b#2" and {e["s"] for e in msg["data"]} == {"AAPL", "MSFT"}
    )
