"""Views through the hub and the fan-out (fake clock and scheduler): rates, shared payloads, deltas, conflation."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson
import pytest

from tests.support.fanoutkit import FLUSH, SLOW, FakeSubscriber, Rig
from ticker.hub import Hub
from ticker.quote import Quote
from ticker.views import ViewSpec, merge

HALF_HZ = ViewSpec(500_000).key("AAPL")  # at most 2 entries a second
FIVE_HZ = ViewSpec(200_000).key("AAPL")
DELTA = ViewSpec(0, None, True).key("AAPL")


def messages(c: FakeSubscriber) -> list[dict[str, Any]]:
    out = []
    for f in c.frames:
        assert f[0] == 0x81
        out.append(orjson.loads(f[2:] if f[1] < 126 else f[4:]))
    return out


def entries(c: FakeSubscriber) -> list[dict[str, Any]]:
    return [e for m in messages(c) for e in m["data"]]


def tick(rig: Rig, seconds: float, every: float, start: float = 100.0) -> list[tuple[float, float]]:
    """Publish AAPL every ``every`` s for ``seconds``, moving the clock in small steps; return (time, price)."""
    published = []
    steps = round(seconds / every)
    for i in range(steps):
        price = start + i
        rig.publish("AAPL", price)
        published.append((rig.clock.now, price))
        for _ in range(5):
            rig.sched.advance(every / 5)
    return published


def arrivals(rig: Rig, c: FakeSubscriber, run: Any) -> list[tuple[float, dict[str, Any]]]:
    """Run ``run()`` while recording the clock at which each of ``c``'s frames was written."""
    seen: list[tuple[float, dict[str, Any]]] = []
    orig = c.write_frame

    def write(frame: bytes) -> int:
        for e in orjson.loads(frame[2:] if frame[1] < 126 else frame[4:])["data"]:
            seen.append((rig.clock.now, e))
        return orig(frame)

    c.write_frame = write  # type: ignore[method-assign]
    run()
    return seen


def test_a_throttled_view_sends_at_most_its_rate_each_the_latest_value():
    rig = Rig()
    slow = rig.conn("slow", [HALF_HZ])
    fast = rig.conn("fast", ["AAPL"])
    published: list[tuple[float, float]] = []
    got = arrivals(rig, slow, lambda: published.extend(tick(rig, 3.0, 0.05)))
    times = [t for t, _ in got]
    assert 6 <= len(got) <= 7 and all(b - a >= 0.5 - 1e-9 for a, b in pairwise(times))
    for t, e in got:  # the latest value published by the time it went out
        assert e["p"] == max(p for pt, p in published if pt <= t)
    assert len(entries(fast)) >= 50  # the plain subscriber of the same symbol is not throttled


def test_an_update_after_a_quiet_spell_goes_out_at_the_next_flush():
    rig = Rig()
    c = rig.conn("c", [HALF_HZ])
    rig.publish("AAPL", 1.0)
    rig.sched.advance(FLUSH)
    rig.sched.advance(2.0)
    rig.publish("AAPL", 2.0)
    rig.sched.advance(FLUSH)
    assert [e["p"] for e in entries(c)] == [1.0, 2.0]


def test_two_rates_on_one_symbol_each_get_their_own_and_equal_views_share_bytes():
    rig = Rig()
    a, b = rig.conn("a", [HALF_HZ]), rig.conn("b", [HALF_HZ])
    five = rig.conn("five", [FIVE_HZ])
    tick(rig, 2.0, 0.02)
    assert 4 <= len(entries(a)) <= 5 and 10 <= len(entries(five)) <= 11
    assert all(x is y for x, y in zip(a.frames, b.frames, strict=True))  # one payload, framed once, for both


def test_a_delta_subscriber_merges_to_what_a_full_subscriber_gets_at_every_q():
    rig = Rig()
    full = rig.conn("full", ["AAPL"])
    d = rig.conn("delta", [DELTA])
    for i in range(20):
        bid = None if i % 7 == 3 else 1.0 + (i // 3)
        rig.fanout.publish(Quote("AAPL", 100.0 + (i // 2), 1000 + i, bid=bid, ask=2.0))
        rig.sched.advance(FLUSH)
    fulls = {e["q"]: e for e in entries(full)}
    state: dict[str, Any] = {}
    sizes = []
    for e in entries(d):
        merge(state, e)
        sizes.append(len(e))
        assert state == fulls[e["q"]]
    assert len(fulls) == 20 and min(sizes) < len(fulls[20])  # deltas are smaller than the full entries


def test_a_delta_reader_resuming_after_conflation_gets_a_snapshot_then_deltas_from_it():
    rig = Rig()
    full = rig.conn("full", ["AAPL"])
    d = rig.conn("delta", [DELTA])
    rig.fanout.publish(Quote("AAPL", 1.0, 1, bid=0.5))
    rig.sched.advance(FLUSH)
    d.unsent = SLOW + 1  # the next write leaves it over the bound: conflated
    for i in range(5):
        rig.fanout.publish(Quote("AAPL", 2.0 + i, 2 + i, bid=0.5 if i < 3 else None))
        rig.sched.advance(FLUSH)
    d.unsent = 0
    rig.sched.advance(0.1)  # the sweep resumes it
    rig.fanout.publish(Quote("AAPL", 9.0, 20))
    rig.sched.advance(FLUSH)
    msgs = messages(d)
    kinds = [m["type"] for m in msgs]
    assert kinds[-2] == "snapshot" and kinds[-1] == "quotes"
    state: dict[str, Any] = {}
    fulls = {e["q"]: e for e in entries(full)}
    for m in msgs:
        for e in m["data"]:
            if m["type"] == "snapshot":
                state = dict(e)
            else:
                merge(state, e)
            assert state == fulls[e["q"]]


def test_moving_a_symbol_to_another_view_keeps_it_in_demand_and_the_view_state_of_others():
    seen: list[frozenset[str]] = []
    hub: Hub[str] = Hub(on_demand=seen.append)
    hub.add("a")
    hub.add("b")
    hub.subscribe("a", [DELTA])
    hub.subscribe("b", [DELTA, "MSFT"])
    hub.publish(Quote("AAPL", 1.0, 1), 0.0)
    hub.flush(0.0)
    seen.clear()
    added, snap = hub.subscribe("a", [HALF_HZ], replacing=[DELTA])
    assert added == [HALF_HZ] and all(
        any(k.startswith("AAPL") for k in d) for d in seen
    )  # never out of demand
    assert hub.symbols_of("a") == {HALF_HZ} and orjson.loads(snap[0])["p"] == 1.0
    assert hub.throttled_count() == 1
    hub.publish(Quote("AAPL", 1.0, 2, bid=3.0), 1.0)  # b's delta view is unchanged by a's move
    ((payload, _members, _states),) = [bt for bt in hub.flush(1.0).batches if "b" in bt[1]]
    assert orjson.loads(payload)["data"] == [{"s": "AAPL", "b": 3.0, "t": 2, "q": 2}]


def test_views_of_a_symbol_nobody_holds_are_forgotten_and_its_timers_do_nothing():
    rig = Rig()
    c = rig.conn("c", [HALF_HZ])
    rig.publish("AAPL", 1.0)
    rig.sched.advance(FLUSH)
    rig.publish("AAPL", 2.0)  # waits for its time
    assert rig.hub.wake_at < float("inf")
    rig.hub.remove(c)
    rig.sched.advance(1.0)
    assert rig.hub.state(HALF_HZ) is None and rig.hub.last("AAPL") is not None
    assert len(c.frames) == 1 and not rig.sched.waiting()


def test_the_snapshot_of_a_new_throttled_view_counts_as_its_first_entry():
    rig = Rig()
    rig.conn("plain", ["AAPL"])
    rig.publish("AAPL", 1.0)
    rig.sched.advance(FLUSH)
    c = FakeSubscriber("c")
    rig.hub.add(c)
    _added, snap = rig.hub.subscribe(c, [HALF_HZ], now=rig.clock.now)
    assert [orjson.loads(e)["p"] for e in snap] == [1.0]
    start = rig.clock.now
    got = arrivals(rig, c, lambda: tick(rig, 1.0, 0.05, start=2.0))
    assert got and got[0][0] - start >= 0.5 - 1e-9


def test_several_quotes_at_once_wake_a_throttled_view_when_publishing_each_would():
    rigs = (Rig(), Rig())
    subs = []
    for rig in rigs:
        c = FakeSubscriber("c")
        rig.hub.add(c)
        rig.hub.subscribe(c, [HALF_HZ], now=rig.clock.now)
        rig.publish("AAPL", 1.0)
        rig.sched.advance(FLUSH)  # the first entry goes at once; the next waits half a second
        subs.append(c)
    one_by_one, at_once = rigs
    for p in (2.0, 3.0):
        one_by_one.publish("AAPL", p)
    at_once.fanout.publish_many([Quote("AAPL", 2.0, 1), Quote("AAPL", 3.0, 1)])
    waits = [sorted(h.when for h in r.sched.waiting()) for r in rigs]
    assert waits[0] == waits[1] and len(waits[0]) == 1 and waits[0][0] > at_once.clock.now  # a wake, later
    for rig in rigs:
        rig.sched.advance(0.5)
    assert [e["p"] for e in entries(subs[1])] == [e["p"] for e in entries(subs[0])] == [1.0, 3.0]


def test_several_quotes_at_once_flush_for_bar_subscribers_stop_when_closed_and_keep_what_was_taken():
    rig = Rig()
    rig.fanout._bar_symbols = {"AAPL": {}}  # someone receives AAPL's real-time bars, nobody its quotes
    rig.fanout.publish_many([Quote("AAPL", 1.0, 1)])
    assert [h.when for h in rig.sched.waiting()] == [rig.clock.now]  # the bars' flush, on the next pass
    rig.sched.advance()

    c = rig.conn("c", ["MSFT"])
    boom = RuntimeError("a bad quote")

    def prepare(q: Quote) -> None:
        if q.price < 0:
            raise boom

    with pytest.raises(RuntimeError) as raised:
        rig.fanout.publish_many([Quote("MSFT", 2.0, 1), Quote("MSFT", -1.0, 1)], prepare)
    assert raised.value is boom
    rig.sched.advance()
    assert [e["p"] for e in entries(c)] == [2.0]  # what the hub took before the error is flushed all the same

    rig.fanout.close()
    rig.fanout.publish_many([Quote("MSFT", 3.0, 1)])
    assert rig.sched.waiting() == []
