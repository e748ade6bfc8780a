"""The hub's subscriptions, last values, sequences and batching, without a network."""

from __future__ import annotations

import orjson
import pytest

from ticker.errors import TooManySymbols
from ticker.hub import Hub
from ticker.quote import Quote


def q(sym: str, price: float, ts: int = 1) -> Quote:
    return Quote(sym, price, ts, bid=price - 0.01, ask=price + 0.01)


def decode(batch) -> list[dict]:
    payload, _members, _states = batch
    msg = orjson.loads(payload)
    assert msg["type"] == "quotes"
    return msg["data"]


def test_snapshot_on_subscribe_holds_last_values_with_sequence():
    hub: Hub[str] = Hub()
    hub.publish(q("AAPL", 1.0), 0.0)
    hub.publish(q("AAPL", 2.0), 0.0)
    hub.add("c1")
    added, snap = hub.subscribe("c1", ["AAPL", "MSFT"])
    assert added == ["AAPL", "MSFT"]
    assert [orjson.loads(s) for s in snap] == [{"s": "AAPL", "p": 2.0, "b": 1.99, "a": 2.01, "t": 1, "q": 2}]
    assert hub.subscribe("c1", ["AAPL"]) == ([], [])


def test_flush_gives_each_subscriber_exactly_its_symbols_latest_value_once():
    hub: Hub[str] = Hub()
    for c, syms in {"a": ["AAPL", "MSFT"], "b": ["MSFT"], "c": ["AAPL", "MSFT"], "d": ["NVDA"]}.items():
        hub.add(c)
        hub.subscribe(c, syms)
    for price in (1.0, 2.0, 3.0):
        hub.publish(q("AAPL", price), 10.0)
    hub.publish(q("MSFT", 5.0), 11.0)
    hub.publish(q("TSLA", 9.0), 11.0)  # nobody wants it
    fl = hub.flush()
    got: dict[str, list[dict]] = {}
    for b in fl.batches:
        for m in b[1]:
            assert m not in got, "one frame per connection per flush"
            got[m] = decode(b)
    assert {k: [(e["s"], e["p"], e["q"]) for e in v] for k, v in got.items()} == {
        "a": [("AAPL", 3.0, 3), ("MSFT", 5.0, 1)],
        "c": [("AAPL", 3.0, 3), ("MSFT", 5.0, 1)],
        "b": [("MSFT", 5.0, 1)],
    }
    # identical subscription sets share one payload object
    same = [members for _payload, members, _states in fl.batches if "a" in members]
    assert same == [{"a", "c"}]
    assert sorted(fl.pending_since) == [10.0, 11.0]
    assert not hub.pending and hub.flush().batches == []


def test_a_payload_joins_its_entries_in_the_order_they_came_one_entry_or_several():
    hub: Hub[str] = Hub()
    hub.add("a")
    hub.subscribe("a", ["AAPL", "MSFT", "NVDA"])
    for sym, price in (("NVDA", 1.0), ("AAPL", 2.0), ("MSFT", 3.0), ("AAPL", 4.0)):
        hub.publish(q(sym, price), 0.0)
    entries = [hub.state(s).encoded for s in ("NVDA", "AAPL", "MSFT")]  # type: ignore[union-attr]
    ((payload, members, states),) = hub.flush().batches
    assert payload == b'{"type":"quotes","data":[' + b",".join(entries) + b"]}"  # type: ignore[arg-type]
    assert members == {"a"} and [st.symbol for st in states] == ["NVDA", "AAPL", "MSFT"]
    hub.publish(q("MSFT", 5.0), 1.0)
    ((payload, _members, _states),) = hub.flush().batches
    assert payload == b'{"type":"quotes","data":[' + hub.state("MSFT").encoded + b"]}"  # type: ignore[operator,union-attr]
    assert orjson.loads(payload)["data"][0]["p"] == 5.0


def test_unsubscribe_and_remove_update_groups_and_demand():
    seen: list[frozenset[str]] = []
    hub: Hub[str] = Hub(on_demand=seen.append)
    hub.add("a")
    hub.add("b")
    hub.subscribe("a", ["AAPL", "MSFT"])
    hub.subscribe("b", ["MSFT"])
    assert hub.demand() == {"AAPL", "MSFT"}
    assert hub.unsubscribe("a", ["AAPL", "ZZZ"]) == ["AAPL"]
    assert hub.symbols_of("a") == {"MSFT"}
    assert hub.demand() == {"MSFT"}
    hub.publish(q("MSFT", 1.0), 0.0)
    fl = hub.flush()
    assert len(fl.batches) == 1 and fl.batches[0][1] == {"a", "b"}
    assert [st.symbol for st in fl.batches[0][2]] == ["MSFT"]
    hub.remove("a")
    hub.remove("b")
    assert hub.demand() == frozenset()
    assert seen[-1] == frozenset()
    assert hub.connections == 0 and hub.subscription_count == 0
    assert hub.publish(q("MSFT", 2.0), 0.0) is False  # nobody to flush to


def test_symbol_cap_is_atomic():
    hub: Hub[str] = Hub(max_symbols=3)
    hub.add("a")
    hub.subscribe("a", ["A", "B"])
    with pytest.raises(TooManySymbols):
        hub.subscribe("a", ["C", "D"])
    assert hub.symbols_of("a") == {"A", "B"}
    hub.subscribe("a", ["C"])
    assert hub.subscription_count == 3


def test_sequence_is_per_symbol_and_monotonic():
    hub: Hub[str] = Hub()
    for i in range(5):
        hub.publish(q("A", float(i)), 0.0)
    hub.publish(q("B", 1.0), 0.0)
    qa, qb = (orjson.loads(e)["q"] for e in hub.last_encoded(["A", "B", "NONE"]))
    assert qa == 5 and qb > 0
    assert hub.last("A").price == 4.0  # type: ignore[union-attr]


def test_idle_last_values_are_bounded():
    hub: Hub[str] = Hub(max_idle_symbols=100)
    for i in range(1000):
        hub.publish(q(f"S{i}", 1.0), 0.0)
    assert len(hub.cached_symbols()) <= 101
    assert "S999" in hub.cached_symbols()
    # wanted symbols are never evicted
    hub.add("a")
    hub.subscribe("a", ["KEEP"])
    hub.publish(q("KEEP", 1.0), 0.0)
    for i in range(1000, 1500):
        hub.publish(q(f"S{i}", 1.0), 0.0)
    assert "KEEP" in hub.cached_symbols()


def test_the_idle_bound_drops_the_least_recently_updated_and_says_so():
    forgotten: list[str] = []
    hub: Hub[str] = Hub(max_idle_symbols=3, on_forget=forgotten.append)
    for s in ("A", "B", "C"):
        hub.publish(q(s, 1.0), 0.0)
    hub.publish(q("A", 2.0), 0.0)  # A still ticks (the universe): B is now the least recently updated
    hub.add("a")
    hub.subscribe("a", ["C"])
    hub.unsubscribe("a", ["C"])  # C let go: idle again, the most recent
    hub.publish(q("D", 1.0), 0.0)
    assert forgotten == ["B"] and sorted(hub.cached_symbols()) == ["A", "C", "D"]
    hub.publish(q("A", 3.0), 0.0)
    hub.publish(q("E", 1.0), 0.0)
    assert forgotten == ["B", "C"] and hub.last("A") is not None


def test_the_idle_bound_passes_over_the_symbols_kept() -> None:
    forgotten: list[str] = []
    hub: Hub[str] = Hub(max_idle_symbols=3, on_forget=forgotten.append)  # one value + the two kept
    hub.keep = {"U1", "U2"}.__contains__  # a universe, its market closed: no update reaches it
    for s in ("U1", "U2", "A", "B"):
        hub.publish(q(s, 1.0), 0.0)
    assert forgotten == ["A"] and sorted(hub.cached_symbols()) == ["B", "U1", "U2"]


def test_idle_last_values_that_stopped_updating_expire_but_those_kept_stay():
    forgotten: list[str] = []
    hub: Hub[str] = Hub(on_forget=forgotten.append)
    for s in ("GONE", "TICKS", "CLOSED"):
        hub.publish(q(s, 1.0), 0.0)
    hub.add("a")
    hub.subscribe("a", ["LEFT", "HELD"])
    hub.publish(q("LEFT", 1.0), 0.0)
    hub.publish(q("HELD", 1.0), 0.0)
    hub.unsubscribe("a", ["LEFT"])  # let go at 0: its time starts at the next look
    hub.keep = {"CLOSED"}.__contains__  # a market the feed carries, even while closed
    assert hub.expire_idle(20.0, 30.0) == 0
    hub.publish(q("TICKS", 2.0), 25.0)
    assert hub.expire_idle(35.0, 30.0) == 1 and forgotten == ["GONE"]
    # LEFT: 30 s after the look at 20
    assert hub.expire_idle(50.0, 30.0) == 1 and forgotten == ["GONE", "LEFT"]
    assert hub.expire_idle(55.0, 30.0) == 1 and forgotten[-1] == "TICKS"
    assert sorted(hub.cached_symbols()) == ["CLOSED", "HELD"]  # kept, and subscribed: never expire


def test_symbols_without_data_leave_with_their_last_subscriber():
    hub: Hub[str] = Hub()
    hub.add("a")
    hub.subscribe("a", [f"X{i}" for i in range(50)])
    hub.remove("a")
    assert hub.cached_symbols() == [] and len(hub._symbols) == 0


def test_sequence_never_goes_back_after_eviction_from_the_idle_cache():
    hub: Hub[str] = Hub(max_idle_symbols=10)
    hub.add("c")
    hub.subscribe("c", ["X"])
    for i in range(5):
        hub.publish(q("X", float(i)), 0.0)
    hub.unsubscribe("c", ["X"])
    for i in range(50):  # push X out of the idle cache
        hub.publish(q(f"S{i}", 1.0), 0.0)
    assert "X" not in hub.cached_symbols()
    hub.subscribe("c", ["X"])
    hub.publish(q("X", 9.0), 0.0)
    assert orjson.loads(hub.last_encoded(["X"])[0])["q"] > 5
