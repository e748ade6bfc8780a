"""The Python client's epoch rule (docs/protocol.md, "The epoch rule"), on its subscription state: across
reconnects under the same ``e`` nothing is handed on again or older; another ``e`` starts again."""

from __future__ import annotations

from typing import Any

from ticker.client.link import Subscriptions
from ticker.client.merge import EntryMerger
from ticker.quote import Quote


def entry(symbol: str, price: float, q: int, **more: Any) -> dict[str, Any]:
    return {"s": symbol, "p": price, "t": 1_000 + q, "q": q, **more}


def handed(subs: Subscriptions) -> list[tuple[str, int, float]]:
    """What the caller gets from the buffer, in order."""
    out: list[tuple[str, int, float]] = []
    while (quote := subs.buffer.pop()) is not None:
        out.append((quote.symbol, quote.seq, quote.price))
    return out


def connected(subs: Subscriptions, epoch: Any, *snapshot: dict[str, Any]) -> None:
    subs.new_connection()
    subs.apply(snapshot, snapshot=True, epoch=epoch)


def test_a_reconnect_under_the_same_epoch_keeps_deduplicating():
    subs = Subscriptions(["AAPL", "MSFT"], 100)
    connected(subs, "src#1", entry("AAPL", 1.0, 41), entry("MSFT", 5.0, 7))
    subs.apply([entry("AAPL", 1.1, 42)])
    assert handed(subs) == [("AAPL", 41, 1.0), ("MSFT", 7, 5.0), ("AAPL", 42, 1.1)]
    # Another node of the same source, a little behind for AAPL, ahead for MSFT.
    connected(subs, "src#1", entry("AAPL", 1.0, 41), entry("MSFT", 5.5, 9))
    assert subs.epoch == "src#1"
    assert handed(subs) == [("MSFT", 9, 5.5)]
    assert subs.latest["AAPL"].price == 1.1  # never moved back
    subs.apply([entry("AAPL", 1.1, 42), entry("AAPL", 1.2, 43)])  # the lagging node catching up
    assert handed(subs) == [("AAPL", 43, 1.2)]


def test_another_epoch_starts_again_whatever_the_q():
    subs = Subscriptions(["AAPL"], 100)
    connected(subs, "src#1", entry("AAPL", 1.0, 500))
    connected(subs, "restarted", entry("AAPL", 2.0, 3))
    assert subs.epoch == "restarted"
    assert handed(subs) == [("AAPL", 500, 1.0), ("AAPL", 3, 2.0)]
    subs.apply([entry("AAPL", 2.1, 4)])
    assert handed(subs) == [("AAPL", 4, 2.1)]


def test_a_new_epoch_on_the_same_connection_takes_every_symbol_again():
    """A publisher took over: the node's snapshot under the new epoch, and a symbol it holds no value of."""
    subs = Subscriptions(["AAPL", "KO"], 100)
    connected(subs, "a#1", entry("AAPL", 1.0, 50), entry("KO", 60.0, 80))
    handed(subs)
    subs.apply([entry("AAPL", 0.9, 2)], snapshot=True, epoch="b#2")
    subs.apply([entry("KO", 61.0, 1)])  # not in the snapshot: numbered from the start by the new source
    assert handed(subs) == [("AAPL", 2, 0.9), ("KO", 1, 61.0)]
    assert subs.epoch == "b#2"


def test_a_lagging_snapshot_under_the_same_epoch_is_still_the_base_of_the_deltas():
    """Delta connection: the new node's snapshot (q 5) is older than what was shown (q 6): not shown again, but
    the deltas that follow are of it, so the merge must start from it, not from what the old node sent."""
    subs = Subscriptions(["AAPL"], 100, delta=True)
    connected(subs, "e", entry("AAPL", 1.0, 5, b=0.9))
    subs.apply([{"s": "AAPL", "b": 0.8, "t": 1006, "q": 6}])  # b changed at 6 ...
    assert handed(subs)[-1] == ("AAPL", 6, 1.0)
    assert subs.latest["AAPL"].bid == 0.8
    connected(subs, "e", entry("AAPL", 1.0, 5, b=0.9))
    assert handed(subs) == []
    subs.apply([{"s": "AAPL", "p": 1.2, "t": 1007, "q": 7}])  # ... and back at 7: the delta (of q 5) omits b
    quote = subs.latest["AAPL"]
    assert handed(subs) == [("AAPL", 7, 1.2)] and quote.bid == 0.9


def test_a_server_that_says_no_epoch_starts_again_on_each_connection():
    subs = Subscriptions(["AAPL"], 100)
    connected(subs, None, entry("AAPL", 1.0, 10))
    subs.apply([entry("AAPL", 1.0, 10)], snapshot=True)  # the same connection: a repeat, not handed
    connected(subs, None, entry("AAPL", 2.0, 1))
    subs.new_connection()
    subs.apply([entry("AAPL", 3.0, 1)])  # quotes before any snapshot: nothing says the numbering goes on
    assert handed(subs) == [("AAPL", 10, 1.0), ("AAPL", 1, 2.0), ("AAPL", 1, 3.0)]
    assert subs.epoch is None


def test_options_and_tier_moves_start_a_symbol_again_within_the_epoch():
    subs = Subscriptions(["AAPL", "MSFT"], 100)
    connected(subs, "e", entry("AAPL", 1.0, 9), entry("MSFT", 5.0, 9))
    subs.set_delayed(frozenset({"MSFT"}))  # delayed entries keep their original, lower q
    subs.apply([entry("MSFT", 4.0, 3)], snapshot=True, epoch="e")
    subs.set_options(("p",), False)  # the options' snapshot: same q, the new fields
    subs.apply([{"s": "AAPL", "p": 1.0, "t": 1009, "q": 9}], snapshot=True, epoch="e")
    assert handed(subs) == [("AAPL", 9, 1.0), ("MSFT", 9, 5.0), ("MSFT", 3, 4.0), ("AAPL", 9, 1.0)]
    assert subs.latest["MSFT"] == Quote("MSFT", 4.0, 1003, seq=3)


def test_restart_keeps_the_merge_base_and_takes_any_q():
    m = EntryMerger(delta=True)
    m.apply(entry("AAPL", 1.0, 50, b=0.9), snapshot=True)
    m.restart()
    assert m.apply({"s": "AAPL", "p": 1.1, "t": 2, "q": 1}) == {
        "s": "AAPL",
        "p": 1.1,
        "b": 0.9,
        "t": 2,
        "q": 1,
    }
    assert m.apply({"s": "AAPL", "p": 1.2, "q": 1}) is None
