"""Tables sized at a peak are rebuilt at their size now, in place and in order; steady ones are left alone."""

from __future__ import annotations

import sys
from collections import Counter, OrderedDict, defaultdict

import pytest

from ticker.tables import MIN_BYTES, compact, compact_all, compact_held


def _drained(table, n: int = 40_000, keep: int = 30):
    for i in range(n):
        table[f"S{i}"] = i
    for i in range(keep, n):
        del table[f"S{i}"]
    return table


def _drained_set() -> set[int]:
    table = set(range(40_000))
    for i in range(30, 40_000):
        table.discard(i)  # one at a time, as the server lets members go (a bulk difference resizes)
    return table


@pytest.mark.parametrize("kind", [dict, OrderedDict, lambda: defaultdict(list)])
def test_a_drained_dict_is_rebuilt_in_place_keeping_its_order_and_values(kind) -> None:
    table = _drained(kind())
    peak = sys.getsizeof(table)
    assert compact(table)
    assert sys.getsizeof(table) < peak / 100
    assert list(table.items()) == [(f"S{i}", i) for i in range(30)]
    assert type(table) is type(kind())
    table["new"] = 1  # still a working table of its kind
    assert list(table)[-1] == "new"


def test_a_drained_set_is_rebuilt_in_place() -> None:
    table = _drained_set()
    held_by = [table]  # someone else holds the same set
    peak = sys.getsizeof(table)
    assert compact(table) and sys.getsizeof(held_by[0]) < peak / 100 and held_by[0] == set(range(30))


def test_tables_at_their_size_and_small_ones_are_left_alone() -> None:
    full = {f"S{i}": i for i in range(40_000)}
    half = _drained({}, 40_000, 20_000)
    small = _drained({}, 2_000, 0)  # empty, but its table is under MIN_BYTES
    assert sys.getsizeof(small) < MIN_BYTES
    before = [sys.getsizeof(t) for t in (full, half, small)]
    assert compact_all(full, half, small) == 0
    assert [sys.getsizeof(t) for t in (full, half, small)] == before


def test_other_mappings_are_left_alone() -> None:
    counts = _drained(Counter())  # Counter.update would add counts, not set them
    assert not compact(counts) and counts == Counter({f"S{i}": i for i in range(30)})


def test_compact_held_rebuilds_the_tables_of_attributes_and_slots() -> None:
    class Slotted:
        __slots__ = ("names", "unset")
        names: dict[str, int]

    class Plain:
        def __init__(self) -> None:
            self.by_name = _drained({})
            self.members = _drained_set()
            self.steady = {1: 2}
            self.other = "not a table"

    plain, slotted = Plain(), Slotted()
    slotted.names = _drained({})
    before = sum(map(sys.getsizeof, (plain.by_name, plain.members, slotted.names)))
    freed = compact_held(plain, slotted)
    assert freed == before - sum(map(sys.getsizeof, (plain.by_name, plain.members, slotted.names))) > 0
    assert sys.getsizeof(plain.by_name) < MIN_BYTES and sys.getsizeof(slotted.names) < MIN_BYTES
    assert plain.members == set(range(30)) and plain.steady == {1: 2}


def test_a_single_string_slot_is_one_attribute() -> None:
    class One:
        __slots__ = "names"
        names: dict[str, int]

    one = One()
    one.names = _drained({})
    assert compact_held(one) > 0 and sys.getsizeof(one.names) < MIN_BYTES
