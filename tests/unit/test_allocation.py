"""The fair share-out of scarce symbols: the pure allocator (budget, round-robin, plan-limit pools, silent
symbols last, stability) and the node's allotter over real hubs (statuses, readiness words, silence marks)."""

from __future__ import annotations

import asyncio
import time

from tests.support.fakes.board import BoardNode
from tests.support.fakes.feed import StubFeed
from tests.support.timing import timeout
from ticker.allocation import Allotment, allot, scarce
from ticker.delay import delayed_key
from ticker.hub import Hub
from ticker.quote import Quote
from ticker.server.allotter import Allotter
from ticker.server.status_board import StatusBoard
from ticker.status import UNAVAILABLE, SymbolStatus
from ticker.views import ViewSpec


def syms(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# -- the allocator --------------------------------------------------------------------------------
def test_demand_that_fits_is_served_whole() -> None:
    a = allot([["A", "B"], ["B", "C"]], 3)
    assert a == Allotment(frozenset({"A", "B", "C"}))
    assert a.unserved == 0 and not scarce({"A", "B", "C"}, 3)
    assert allot([syms("X", 100)], None).served == frozenset(syms("X", 100))


def test_the_budget_is_shared_round_robin_whatever_one_connection_asks_for() -> None:
    a, b = syms("A", 8), syms("B", 8)
    out = allot([a, b], 10)
    assert out.served == frozenset(a[:5] + b[:5])  # each its first five, in subscribe order
    assert out.over_budget == frozenset(a[5:] + b[5:]) and not out.over_pool
    hog, small = syms("H", 500), syms("S", 3)
    out = allot([hog, small], 10)  # the hog came first: the newcomer still gets all it asks for
    assert frozenset(small) <= out.served and len(out.served) == 10
    assert out.served - frozenset(small) == frozenset(hog[:7])


def test_every_connection_gets_at_least_its_share() -> None:
    wants = [syms(f"C{i}-", 50) for i in range(7)]
    out = allot(wants, 100)
    got = [len(out.served & frozenset(w)) for w in wants]
    assert sum(got) == 100 and min(got) >= 100 // 7
    assert got[:2] == [15, 15] and got[2:] == [14] * 5  # the spare slots go to the oldest connections


def test_shared_symbols_cost_once_and_serve_everyone_who_holds_them() -> None:
    a = ["S1", "S2", "A1", "A2", "A3"]
    b = ["S1", "S2", "B1", "B2", "B3"]
    out = allot([a, b], 6)
    assert out.served == {"S1", "S2", "A1", "A2", "B1", "B2"}


def test_a_plan_limit_is_shared_fairly_and_other_feeds_are_not_held_back() -> None:
    def pool_of(s: str) -> str | None:
        return "finnhub" if s.startswith("F") else None

    first = syms("F", 50)  # one connection asks for the whole plan
    second = ["F-X", "F-Y", "OTHER"]
    out = allot([first, second], None, {"finnhub": 4}, pool_of)
    assert out.served == {"F0", "F1", "F-X", "F-Y", "OTHER"}
    assert out.over_pool == {s: "finnhub" for s in first[2:]} and not out.over_budget
    assert scarce(frozenset(first), None, {"finnhub": 4}, pool_of)
    # a full pool passes a symbol over for the connection's next one, within the node's budget too
    out = allot([["F1", "F2", "F3", "N1"], ["F4", "N2"]], 4, {"finnhub": 2}, pool_of)
    assert out.served == {"F1", "F4", "N1", "N2"}
    assert out.over_pool == {"F2": "finnhub", "F3": "finnhub"} and not out.over_budget


def test_silent_symbols_are_released_first() -> None:
    a = ["DEAD1", "DEAD2", "A1", "A2"]
    b = ["B1", "B2"]
    out = allot([a, b], 4, silent={"DEAD1", "DEAD2"})
    assert out.served == {"A1", "A2", "B1", "B2"}
    assert out.over_budget == {"DEAD1", "DEAD2"}
    out = allot([a, b], 5, silent={"DEAD1", "DEAD2"})  # a slot left over: the silent ones in order
    assert out.served == {"A1", "A2", "B1", "B2", "DEAD1"}


def test_served_symbols_stay_with_their_holders_unless_fairness_needs_the_slots() -> None:
    a = syms("A", 6)
    assert allot([a], 10).served == frozenset(a)
    out = allot([a, ["N1", "N2"]], 10)  # room for the newcomer: nothing taken from A
    assert frozenset(a) <= out.served
    out = allot([a, syms("N", 8)], 10)  # fairness: A keeps its first five, the newcomer gets five
    assert out.served & frozenset(a) == frozenset(a[:5])
    after = allot([a, syms("N", 8), ["Z"]], 10)  # a third arrives: the slot it takes is the newest one's
    assert after.served == frozenset(a[:5]) | frozenset(syms("N", 4)) | {"Z"}
    # one leaves: the freed slots go to the others' next symbols, the oldest requests first
    assert allot([a, ["Z"]], 10).served == frozenset(a) | {"Z"}


def test_the_hub_keeps_each_subscribers_symbols_in_subscribe_order_oldest_subscriber_first() -> None:
    hub: Hub[str] = Hub()
    hub.add("old")
    hub.add("new")
    before = hub.changes
    hub.subscribe("new", ["Z", "A"])
    hub.subscribe("old", ["M", "B", "Q"])
    hub.subscribe("old", ["B", "C"])  # a repeat keeps its place
    hub.unsubscribe("old", ["M"])
    assert list(hub.in_order()) == [("old", ("B", "Q", "C")), ("new", ("Z", "A"))]
    assert hub.changes == before + 4
    hub.remove("old")
    assert list(hub.in_order()) == [("new", ("Z", "A"))]


# -- the node's allotter -----------------------------------------------------------------------------
class LimitedFeed(StubFeed):
    """A stub feed with a provider plan limit."""

    limit_words = "the provider plan's limit"

    def __init__(self, name: str, limit: int | None) -> None:
        super().__init__(name, data_at=time.monotonic())
        self.limit = limit

    @property
    def symbol_limit(self) -> int | None:
        return self.limit


def rig(budget: int, limit: int | None = None) -> tuple[BoardNode, Allotter, list[int]]:
    node = BoardNode([LimitedFeed("prov", limit)])
    pushes: list[int] = []
    allotter = Allotter(node, budget, lambda: pushes.append(1), silent_after=10.0)  # type: ignore[arg-type]
    return node, allotter, pushes


def test_the_allotter_follows_subscriptions_and_says_why_a_symbol_is_not_served() -> None:
    node, allotter, pushes = rig(budget=4)
    a, b = object(), object()
    node.hub.add(a)
    node.hub.add(b)
    node.hub.subscribe(a, ["A1", "A2", "A3", "A4"])
    assert allotter.current().served == {"A1", "A2", "A3", "A4"} and allotter.note() == ""
    node.hub.subscribe(b, ["B1", "B2", delayed_key("B3")])  # a delayed key is its symbol upstream
    assert allotter.current().served == {"A1", "A2", "B1", "B2"}
    over = SymbolStatus(UNAVAILABLE, "the server carries its maximum of 4 symbols")
    assert allotter.unserved("A3") == over and allotter.unserved("B3") == over
    assert allotter.unserved("A1") is None and allotter.unserved("NOPE") is None
    assert allotter.note() == "3 symbols unserved: the server carries its maximum of 4 symbols"
    board = StatusBoard(node, 15.0, unserved=allotter.unserved)  # type: ignore[arg-type]
    assert board.status("A4") == over
    assert len(pushes) == 2
    node.hub.remove(b)  # B leaves: A's symbols are all served again
    assert allotter.current().served == {"A1", "A2", "A3", "A4"} and len(pushes) == 3


def test_the_allotter_shares_a_feeds_plan_limit_and_learns_a_lower_one() -> None:
    node, allotter, _ = rig(budget=100, limit=4)
    a, b = object(), object()
    for c in (a, b):
        node.hub.add(c)
    node.hub.subscribe(a, syms("A", 10))
    node.hub.subscribe(b, syms("B", 3))
    assert allotter.current().served == {"A0", "A1", "B0", "B1"}
    plan = SymbolStatus(UNAVAILABLE, "feed prov carries its maximum of 4 symbols (the provider plan's limit)")
    assert allotter.unserved("B2") == plan
    assert allotter.note() == f"9 symbols unserved: {plan.reason}"
    node.feeds[0].limit = 2  # type: ignore[attr-defined]  # the provider refused more: a lower cap
    assert allotter.current().served == {"A0", "B0"}


def test_served_symbols_that_bring_nothing_give_their_slots_up_first() -> None:
    node, allotter, _ = rig(budget=2)
    feed = node.feeds[0]
    a, b = object(), object()
    for c in (a, b):
        node.hub.add(c)
    node.hub.subscribe(a, ["DEAD", "LIVE"])
    node.hub.subscribe(b, ["OTHER"])
    assert allotter.current().served == {"DEAD", "OTHER"}
    t0 = time.monotonic()
    allotter.tick(t0)

    def trade(symbol: str, at: float) -> None:
        node.hub.publish(Quote(symbol, 1.0, 1), at)
        feed._health.last_data = at

    trade("OTHER", t0 + 5)
    allotter.tick(t0 + 5)
    assert not allotter.silent
    trade("OTHER", t0 + 11)
    allotter.tick(t0 + 11)  # DEAD brought nothing for 10 s while the feed brought OTHER
    assert allotter.silent == {"DEAD"}
    assert allotter.current().served == {"LIVE", "OTHER"}
    assert allotter.unserved("DEAD") == SymbolStatus(
        UNAVAILABLE, "the server carries its maximum of 2 symbols"
    )
    trade("DEAD", t0 + 12)  # it trades after all (a feed carrying it anyway): no longer silent
    allotter.tick(t0 + 12)
    assert not allotter.silent and allotter.current().served == {"DEAD", "OTHER"}


def test_a_quiet_feed_marks_nothing_silent() -> None:
    node, allotter, _ = rig(budget=1)
    a = object()
    node.hub.add(a)
    node.hub.subscribe(a, ["S1", "S2"])
    t0 = time.monotonic()
    node.feeds[0]._health.last_data = t0 - 1  # the market is closed: nothing flows
    allotter.tick(t0)
    allotter.tick(t0 + 60)
    assert not allotter.silent and allotter.current().served == {"S1"}


def test_views_of_a_symbol_count_once_as_that_symbol_upstream() -> None:
    node, allotter, _pushes = rig(budget=4)
    a, b = object(), object()
    node.hub.add(a)
    node.hub.add(b)
    node.hub.subscribe(
        a, [ViewSpec(500_000, None, True).key(s) for s in ("A1", "A2", "A3", "A4", "A5", "A6")]
    )
    node.hub.subscribe(b, ["B1", ViewSpec(0, ("p",)).key("A1")])
    served = allotter.current().served
    assert served == {"A1", "A2", "A3", "B1"} and all("@" not in s for s in served)
    over = SymbolStatus(UNAVAILABLE, "the server carries its maximum of 4 symbols")
    assert allotter.unserved("A4") == over and allotter.unserved("A1") is None


class SlowClock:
    """Each reading is ``step`` seconds after the one before: every share-out seems to take ``step``."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_slow_share_out_is_worked_out_again_later_not_once_per_subscribe() -> None:
    node = BoardNode([LimitedFeed("prov", None)])
    pushes: list[int] = []
    a, b = object(), object()

    async def burst() -> None:
        pushed = asyncio.Event()

        def push() -> None:
            pushes.append(1)
            pushed.set()

        clock = SlowClock(0.002)  # each share-out takes 2 ms: over SLOW_SHARE_OUT
        allotter = Allotter(node, 2, push, duty=4.0, clock=clock)  # type: ignore[arg-type]
        node.hub.add(a)
        node.hub.subscribe(a, ["A1", "A2", "A3"])
        assert allotter.current().served == {"A1", "A2"}  # the first one at once
        node.hub.add(b)
        node.hub.subscribe(b, ["B1"])
        assert allotter.current().served == {"A1", "A2"}  # too soon after a slow one: the last one ...
        assert allotter.unserved("B1") is None and len(pushes) == 1
        pushed.clear()
        async with asyncio.timeout(timeout(5)):
            await pushed.wait()  # ... and worked out again on the loop, the change pushed
        assert len(pushes) == 2
        assert allotter.current().served == {"A1", "B1"}

    asyncio.run(burst())


def test_without_a_running_loop_a_slow_share_out_is_worked_out_at_once() -> None:
    node = BoardNode([LimitedFeed("prov", None)])
    allotter = Allotter(node, 2, lambda: None, duty=4.0, clock=SlowClock(0.002))  # type: ignore[arg-type]
    a, b = object(), object()
    for c, symbols in ((a, ["A1", "A2", "A3"]), (b, ["B1"])):
        node.hub.add(c)
        node.hub.subscribe(c, symbols)
        allotter.current()
    assert allotter.current().served == {"A1", "B1"}
