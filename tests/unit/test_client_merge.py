"""The client's merge of Q entries (ticker.client.merge): the rule of docs/protocol.md, and a property test where
deltas made by a reference encoder merge back into the full quotes at every q, across conflation and a resume."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticker.client.merge import EntryMerger
from ticker.views import FIELDS

Entry = dict[str, Any]


def test_a_snapshot_replaces_quotes_merge_nulls_delete_and_old_q_is_ignored():
    m = EntryMerger(delta=True)
    assert m.apply({"s": "AAPL", "p": 1.0, "b": 0.9, "a": 1.1, "t": 10, "q": 5}, snapshot=True) == {
        "s": "AAPL",
        "p": 1.0,
        "b": 0.9,
        "a": 1.1,
        "t": 10,
        "q": 5,
    }
    # A delta: the changed fields, t among them; a null deletes the key.
    assert m.apply({"s": "AAPL", "p": 1.5, "a": None, "t": 11, "q": 6}) == {
        "s": "AAPL",
        "p": 1.5,
        "b": 0.9,
        "t": 11,
        "q": 6,
    }
    assert m.apply({"s": "AAPL", "p": 9.0, "q": 6}) is None  # not newer: ignored
    assert m.apply({"s": "AAPL", "p": 9.0, "q": 3}) is None
    assert m.state("AAPL") == {"s": "AAPL", "p": 1.5, "b": 0.9, "t": 11, "q": 6}
    # A snapshot replaces whatever its q (a slow reader's catch-up, a tier move, new options).
    assert m.apply({"s": "AAPL", "p": 2.0, "t": 5, "q": 2}, snapshot=True) == {
        "s": "AAPL",
        "p": 2.0,
        "t": 5,
        "q": 2,
    }
    # The first entry of a symbol never received is the state, even in a quotes message.
    assert m.apply({"s": "MSFT", "p": 400.0, "v": 7, "t": 1, "q": 1}) == {
        "s": "MSFT",
        "p": 400.0,
        "v": 7,
        "t": 1,
        "q": 1,
    }
    m.forget(["MSFT"])
    assert m.state("MSFT") is None and m.state("AAPL") is not None
    m.clear()
    assert m.state("AAPL") is None


def test_without_delta_a_newer_entry_replaces_the_state():
    m = EntryMerger()
    m.apply({"s": "AAPL", "p": 1.0, "b": 0.9, "t": 1, "q": 1}, snapshot=True)
    assert m.apply({"s": "AAPL", "p": 1.2, "t": 2, "q": 2}) == {
        "s": "AAPL",
        "p": 1.2,
        "t": 2,
        "q": 2,
    }  # b went
    assert m.apply({"s": "AAPL", "p": 0.0, "t": 0, "q": 2}) is None


def test_the_state_is_a_copy_and_a_malformed_entry_changes_nothing():
    m = EntryMerger(delta=True)
    snap: Entry = {"s": "AAPL", "p": 1.0, "t": 1, "q": 1}
    m.apply(snap, snapshot=True)
    m.apply({"s": "AAPL", "p": 2.0, "q": 2})
    assert snap == {"s": "AAPL", "p": 1.0, "t": 1, "q": 1}  # the caller's entry is not merged into
    for bad in (
        [1],
        {"p": 1.0, "q": 3},
        {"s": "AAPL", "p": 3.0},
        {"s": "AAPL", "q": True},
        {"s": "", "q": 4},
    ):
        with pytest.raises(ValueError):
            m.apply(bad)
    assert m.state("AAPL") == {"s": "AAPL", "p": 2.0, "t": 1, "q": 2}


# -- the property: a reference encoder's deltas merge back into the full quotes ----------------------------
SYMBOLS = ("AAPL", "MSFT")
VALUES = st.sampled_from([1.0, 1.5, 2.25])  # few values: unchanged fields are common
OPTIONAL = [f for f in FIELDS if f not in ("p", "t")]

quote_values = st.fixed_dictionaries(
    {"p": VALUES, "t": st.integers(1, 3)},
    optional={f: (st.integers(0, 2) if f == "v" else VALUES) for f in OPTIONAL},
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from(SYMBOLS), quote_values, st.booleans()),  # bool: delivered
        st.tuples(st.just("resume")),  # a slow reader catches up: a snapshot of every symbol held
        st.tuples(st.just("repeat"), st.integers(0, 10_000)),  # an entry already received comes again
    ),
    max_size=60,
)
selections = st.one_of(
    st.none(),
    st.sets(st.sampled_from(FIELDS)).map(lambda chosen: tuple(f for f in FIELDS if f in chosen | {"p"})),
)


def restrict(full: Entry, fields: tuple[str, ...] | None) -> Entry:
    """A full entry as a connection with ``fields`` sees it: ``s``, ``t``, ``q`` and the selected fields."""
    if fields is None:
        return dict(full)
    keep = {"s", "t", "q", *fields}
    return {k: v for k, v in full.items() if k in keep}


def encode_delta(last: Entry | None, entry: Entry) -> Entry:
    """The reference encoder: the first entry full, then ``s``, ``q`` and the fields that changed since the
    entry last received (``null`` for the ones that went away)."""
    if last is None:
        return dict(entry)
    out: Entry = {"s": entry["s"], "q": entry["q"]}
    out.update({k: v for k, v in entry.items() if k not in ("s", "q") and last.get(k) != v})
    out.update({k: None for k in last if k not in entry})
    return out


@given(steps, selections)
def test_deltas_merge_back_into_the_full_quotes_at_every_q(ops: list[tuple[Any, ...]], fields: Any) -> None:
    merger = EntryMerger(delta=True)
    hub: dict[str, Entry] = {}  # the latest full entry of each symbol (as the connection's options make it)
    seq: dict[str, int] = {}
    received: dict[str, Entry] = {}  # the full entry behind the last entry the connection received
    delivered: list[Entry] = []
    for op in ops:
        if op[0] == "tick":
            _, symbol, values, deliver = op
            seq[symbol] = seq.get(symbol, 0) + 1
            full = restrict({"s": symbol, **values, "q": seq[symbol]}, fields)
            hub[symbol] = full
            if not deliver:  # conflated: the connection never gets this one
                continue
            entry = encode_delta(received.get(symbol), full)
            received[symbol] = full
            delivered.append(dict(entry))
            assert merger.apply(entry) == full
        elif op[0] == "resume":
            for symbol, full in hub.items():
                assert merger.apply(dict(full), snapshot=True) == full
                received[symbol] = full
        elif delivered:
            old = delivered[op[1] % len(delivered)]
            assert merger.apply(dict(old)) is None  # its q is not above the state's
        for symbol, full in received.items():
            assert merger.state(symbol) == full
