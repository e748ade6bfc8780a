"""View keys and the entries of views (pure): rates, field selection, changed-fields deltas and their merge."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticker.views import (
    ViewSpec,
    base_of,
    canonical_fields,
    delta,
    granted,
    interval_of,
    is_delta_key,
    is_view_key,
    merge,
    render,
    select,
    spec_of,
    unknown_fields,
)


@pytest.mark.parametrize(
    "spec",
    [
        ViewSpec(500_000),
        ViewSpec(0, ("p", "b"), False),
        ViewSpec(0, None, True),
        ViewSpec(1_000_000, ("p",), True),
    ],
)
@pytest.mark.parametrize("base", ["AAPL", "~AAPL", "BINANCE:BTC/USDT"])
def test_a_view_key_names_its_base_and_its_options(spec: ViewSpec, base: str):
    key = spec.key(base)
    assert key != base and is_view_key(key) and base_of(key) == base and spec_of(key) == spec
    assert is_delta_key(key) == spec.delta


def test_a_plain_spec_is_the_base_key_itself():
    assert ViewSpec().key("AAPL") == "AAPL" and spec_of("AAPL") == ViewSpec() and not is_view_key("~AAPL")
    assert base_of("~AAPL") == "~AAPL" and ViewSpec().rate is None


@pytest.mark.parametrize(
    ("rate", "interval", "shown"),
    [(2, 500_000, 2.0), (3, 333_334, 3.0), (0.1, 10_000_000, 0.1), (50, 20_000, 50.0), (7, 142_858, 7.0)],
)
def test_the_interval_is_rounded_up_so_entries_are_never_closer_than_asked(rate, interval, shown):
    assert interval_of(rate) == interval and interval * rate >= 1e6 - 1e-3
    assert granted(interval) == shown


def test_fields_are_checked_and_put_in_the_entry_order():
    assert unknown_fields(["p", "x", "zz", "x", "cp"]) == ["x", "zz"]
    assert canonical_fields(["t", "a", "p", "a"]) == ("p", "a", "t")


ENTRY = {"s": "AAPL", "p": 1.5, "b": 1.4, "a": 1.6, "v": 100, "pc": 1.0, "t": 10, "q": 7}


def test_select_keeps_s_t_q_and_the_fields_asked():
    assert select(ENTRY, ("b", "a")) == {"s": "AAPL", "b": 1.4, "a": 1.6, "t": 10, "q": 7}
    assert select(ENTRY, None) is ENTRY


def test_a_delta_carries_the_changed_fields_and_null_for_those_gone():
    cur = {"s": "AAPL", "p": 1.6, "a": 1.6, "v": 100, "t": 11, "q": 8}
    d = delta(ENTRY, cur)
    assert d == {"s": "AAPL", "p": 1.6, "t": 11, "b": None, "pc": None, "q": 8}
    state = dict(ENTRY)
    merge(state, d)
    assert state == cur


def test_render_sends_full_entries_first_and_without_delta():
    wire, full, sent = render(ViewSpec(0, ("p",), True), ENTRY, None)
    assert (
        wire is full
        and orjson.loads(full) == {"s": "AAPL", "p": 1.5, "t": 10, "q": 7}
        and sent == orjson.loads(full)
    )
    nxt = dict(ENTRY, p=1.5, b=1.3, t=11, q=9)
    wire2, full2, _ = render(ViewSpec(0, ("p",), True), nxt, sent)
    assert orjson.loads(wire2) == {"s": "AAPL", "t": 11, "q": 9}  # p did not change; b is not selected
    assert orjson.loads(full2) == {"s": "AAPL", "p": 1.5, "t": 11, "q": 9}
    plain, full3, _ = render(ViewSpec(500_000), nxt, sent)
    assert plain is full3 and orjson.loads(plain) == nxt


OPTIONAL = ("b", "a", "v", "c", "cp", "o", "h", "l", "pc", "vw")
values = st.one_of(st.integers(-5, 5), st.floats(-2, 2, allow_nan=False).map(lambda f: round(f, 2)))
entries = st.fixed_dictionaries({"p": values, "t": st.integers(0, 3)}, optional={f: values for f in OPTIONAL})


@given(st.lists(entries, min_size=1, max_size=30), st.sets(st.sampled_from(("p", *OPTIONAL, "t"))))
def test_merging_the_deltas_gives_back_every_full_entry(seq: list[dict[str, Any]], fields: set[str]):
    chosen = canonical_fields(fields) if fields else None
    spec = ViewSpec(0, chosen, True)
    sent = None
    state: dict[str, Any] = {}
    for q, e in enumerate(seq, 1):
        entry = {"s": "X", **e, "q": q}
        wire, full, sent = render(spec, entry, sent)
        if q == 1:
            state = orjson.loads(wire)
        else:
            merge(state, orjson.loads(wire))
        assert state == orjson.loads(full) == select(entry, chosen)
