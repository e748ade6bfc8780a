"""What a node keeps of symbols nobody receives: the hub's idle bound takes their day statistics along, and
their day bars seed them again on the next demand (ticker/server/node.py). No sockets."""

from __future__ import annotations

import sys
import time

from tests.support.fakes.feed import StubFeed
from ticker.allocation import Allotment
from ticker.quote import Quote
from ticker.server.config import Config
from ticker.server.node import Node


def test_a_last_value_the_idle_bound_drops_takes_its_day_statistics_along() -> None:
    node = Node(Config(host="127.0.0.1", port=0), feeds=[StubFeed("sim")])
    node.hub.max_idle_symbols = 2
    node.history_loader._days_done["OLD"] = 0  # its day bars went in once
    node._deliver(Quote("OLD", 10.0, 1_000, volume=100))
    node._deliver(Quote("OLD", 12.0, 2_000, volume=200))
    assert node.hub.last("OLD").high == 12.0  # type: ignore[union-attr]
    for s in ("B", "C"):  # two symbols updated since: OLD is the least recently updated of three
        node._deliver(Quote(s, 1.0, 3_000, volume=100))
    assert node.hub.last("OLD") is None and "OLD" not in node.day_stats._days
    assert "OLD" not in node.history_loader._days_done  # loaded (and seeded) again when next demanded
    node._deliver(Quote("OLD", 11.0, 4_000, volume=300))
    assert node.hub.last("OLD").high == 11.0  # type: ignore[union-attr]  # a session afresh, not a stale high
    assert node.hub.last("B") is None and node.day_stats._days.keys() == {"C", "OLD"}  # B: now the oldest


def test_day_statistics_stay_while_anyone_receives_the_symbol_or_a_feed_carries_it() -> None:
    node = Node(Config(host="127.0.0.1", port=0), feeds=[StubFeed("sim")])
    node._history_demand = frozenset({"DELAYED"})  # received delayed (or as bars): its real-time key is idle
    node._carried = frozenset({"UNIVERSE"})
    for s in ("DELAYED", "UNIVERSE", "GONE"):
        node._deliver(Quote(s, 10.0, 1_000, volume=100))
        node._deliver(Quote(s, 12.0, 2_000, volume=200))
    now = time.monotonic()  # the node's clock of updates
    assert node.hub.expire_idle(now) == 0
    assert node.hub.expire_idle(now + 60.0) == 2  # DELAYED and GONE: no update for 30 s; UNIVERSE is kept
    assert node.hub.last("UNIVERSE") is not None and node.hub.last("DELAYED") is None
    assert "GONE" not in node.day_stats._days
    node._deliver(Quote("DELAYED", 11.0, 3_000, volume=300))
    assert node.hub.last("DELAYED").high == 12.0  # type: ignore[union-attr]  # the session's, not a new one


async def test_day_statistics_the_idle_bound_kept_for_a_demanded_symbol_go_with_the_demand() -> None:
    """A burst of demand ends: its symbols go idle at once, past the hub's bound, while the node still counts them
    as demanded (the demand is pushed after); their day statistics go when it is, not at the next bound."""
    node = Node(Config(host="127.0.0.1", port=0), feeds=[StubFeed("sim")])
    node.hub.max_idle_symbols = 1
    node._history_demand = frozenset({"A", "B", "C", "NEVER"})
    node.history_loader._days_done.update(A=0, NEVER=0)  # their day bars went in once
    for s in ("A", "B", "C"):  # nobody holds them in the hub: idle, and two over the bound
        node._deliver(Quote(s, 10.0, 1_000, volume=100))
    assert node.hub.last("A") is None and node.hub.last("B") is None and node.hub.last("C") is not None
    assert node.day_stats._days.keys() == {"A", "B", "C"}  # still demanded when the bound dropped them
    node.allotter.current = lambda: Allotment(served=frozenset({"B"}))  # type: ignore[method-assign]
    node._push_demand()  # B is still received; nobody receives A, C, NEVER
    assert node._history_demand == frozenset({"B"})
    assert node.day_stats._days.keys() == {"B", "C"}  # C's last value is kept: its day statistics with it
    assert "A" not in node.history_loader._days_done  # its day bars seed them again when next demanded
    assert "NEVER" in node.history_loader._days_done  # never quoted, had no statistics: its load stands


def test_day_statistics_a_load_seeded_go_with_the_bars_unless_the_hub_holds_the_last_value() -> None:
    """A REST read's load (or one that ended after the demand) seeds the day statistics of a symbol nobody
    receives: they go when the sweep drops its bars, unless the hub keeps its last value (they go with that)."""
    node = Node(Config(host="127.0.0.1", port=0), feeds=[StubFeed("sim")])
    node.day_stats.apply(Quote("READ", 10.0, 1_000, volume=100))  # as a seed would: no hub state
    node._deliver(Quote("HELD", 10.0, 1_000, volume=100))  # idle in the hub
    loader = node.history_loader
    loader._idle.update(READ=0.0, HELD=0.0)  # both due
    loader.sweep()
    assert node.day_stats._days.keys() == {"HELD"}
    assert node.hub.expire_idle(time.monotonic() + 60.0) == 1 and not node.day_stats._days


def test_after_a_burst_the_tables_it_sized_and_the_refilled_address_buckets_go() -> None:
    node = Node(Config(host="127.0.0.1", port=0), feeds=[StubFeed("sim")])
    for i in range(20_000):  # a burst of demand: 20,000 last values, then the hub lets them go
        node._deliver(Quote(f"Z{i:05d}", 10.0, 1_000, volume=100))
    for i in range(20_000):  # and of addresses
        address = f"10.{i // 65_536}.{i // 256 % 256}.{i % 256}"
        node.admission.connect(address, 0.0)
        node.admission.release(address)
    buckets = node.admission.connects._buckets
    assert sys.getsizeof(buckets) > 100_000
    now = time.monotonic()
    node.hub.expire_idle(now)
    node.hub.expire_idle(now + 60.0)
    peak = sys.getsizeof(node.hub._symbols)
    assert len(node.hub._symbols) == 0 and peak > 100_000  # a dict keeps the size of its peak
    node._compact_tables(now + 60.0)
    assert sys.getsizeof(node.hub._symbols) < 1_000 and sys.getsizeof(node.day_stats._days) < 1_000
    assert node.admission.tracked() == 0 and sys.getsizeof(buckets) < 1_000
    assert node._compacted > 500_000  # told to the next trim


def test_several_quotes_at_once_do_what_delivering_each_would_the_idle_bound_included() -> None:
    """A batch (a simulated pass, a relayed message) fills, aggregates and hands each quote to the hub in turn:
    a symbol the idle bound dropped earlier in the batch starts its session afresh later in it."""
    batch = [
        Quote("OLD", 10.0, 1_000, volume=100),
        Quote("OLD", 12.0, 2_000, volume=200),
        Quote("B", 1.0, 3_000, volume=100),
        Quote("C", 1.0, 3_000, volume=100),  # OLD goes: the least recently updated of three
        Quote("OLD", 11.0, 4_000, volume=300),
    ]
    nodes = []
    for at_once in (False, True):
        node = Node(Config(host="127.0.0.1", port=0), feeds=[StubFeed("sim")])
        node.hub.max_idle_symbols = 2
        quotes = [Quote(q.symbol, q.price, q.ts_ms, volume=q.volume) for q in batch]
        if at_once:
            node._deliver_many(quotes)
        else:
            for q in quotes:
                node._deliver(q)
        nodes.append(node)
    each, many = nodes
    assert many.hub.last("OLD").high == 11.0  # type: ignore[union-attr]  # a session afresh, not a stale high
    assert many.day_stats._days.keys() == each.day_stats._days.keys() == {"C", "OLD"}
    for s in ("OLD", "C"):
        assert many.hub.state(s).encoded == each.hub.state(s).encoded  # type: ignore[union-attr]
        assert many.bars.bars_of(s).series["1m"].last(5) == each.bars.bars_of(s).series["1m"].last(5) != []
    assert many.hub.updates_in == each.hub.updates_in == 5
