"""The pure demand tracker: linger, limits, arrival order, learned provider caps."""

from __future__ import annotations

from feeds.demand import DemandTracker


def test_linger_keeps_a_left_symbol_until_its_deadline():
    t = DemandTracker(linger=5.0)
    t.set_demand({"AAPL", "MSFT"}, now=0.0)
    t.set_demand({"AAPL"}, now=1.0)
    assert t.plan(5.9).target == ["AAPL", "MSFT"] and t.next_deadline() == 6.0
    assert t.plan(6.0).target == ["AAPL"] and t.next_deadline() is None


def test_coming_back_within_the_linger_cancels_it():
    t = DemandTracker(linger=5.0)
    t.set_demand({"AAPL"}, now=0.0)
    t.set_demand(set(), now=1.0)
    t.set_demand({"AAPL"}, now=2.0)
    assert t.plan(100.0).target == ["AAPL"] and t.next_deadline() is None


def test_limit_keeps_arrival_order_and_promotes_when_a_slot_frees():
    t = DemandTracker(limit=2, linger=0.0)
    t.set_demand({"A"}, now=0)
    t.set_demand({"A", "B"}, now=0)
    t.set_demand({"A", "B", "C", "D"}, now=0)
    plan = t.plan(0)
    assert plan.target == ["A", "B"] and plan.rejected == ["C", "D"]
    t.set_demand({"B", "C", "D"}, now=1)
    plan = t.plan(1)
    assert plan.target == ["B", "C"] and plan.rejected == ["D"]


def test_lingering_symbols_only_use_free_slots():
    t = DemandTracker(limit=2, linger=10.0)
    t.set_demand({"A", "B"}, now=0)
    t.set_demand({"A"}, now=1)  # B lingers in the free slot
    assert t.plan(1).target == ["A", "B"]
    t.set_demand({"A", "C"}, now=2)  # C needs the slot: B stops lingering at once
    plan = t.plan(2)
    assert plan.target == ["A", "C"] and not plan.rejected and t.next_deadline() is None


def test_learned_cap_lowers_the_effective_limit():
    t = DemandTracker(limit=50, linger=0.0)
    t.set_demand({"A", "B", "C"}, now=0)
    t.cap = 2
    assert t.effective_limit == 2 and t.plan(0).rejected == ["C"]
    t.cap = None
    assert t.plan(0).rejected == []


def test_discard_drops_at_once_without_lingering():
    t = DemandTracker(linger=5.0)
    t.set_demand({"A", "B"}, now=0)
    t.discard("B")
    assert t.plan(0).target == ["A"] and t.next_deadline() is None
