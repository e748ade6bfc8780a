"""Numbering quotes at the source (ticker/numbering.py): per symbol, never back, above a worker's floor."""

from __future__ import annotations

from ticker.numbering import SourceNumbering
from ticker.quote import Quote


def q(symbol: str, price: float = 1.0) -> Quote:
    return Quote(symbol, price, 1_700_000_000_000)


def test_each_symbol_counts_its_own_quotes_and_a_new_one_starts_above_all() -> None:
    n = SourceNumbering()
    assert [n.number(q("AAPL")).seq for _ in range(3)] == [1, 2, 3]
    assert n.number(q("MSFT")).seq == 4  # above every number given so far
    assert n.number(q("AAPL")).seq == 4 and n.number(q("MSFT")).seq == 5
    assert n.top == 5 and n.last("AAPL") is not None and n.last("AAPL").seq == 4  # type: ignore[union-attr]


def test_the_quote_itself_is_numbered_and_kept_as_the_last_value() -> None:
    n = SourceNumbering()
    first = q("AAPL", 228.5)
    assert n.number(first) is first and first.seq == 1
    assert n.latest() == [first]


def test_a_forgotten_symbol_comes_back_above_every_earlier_number() -> None:
    n = SourceNumbering(max_symbols=2)
    for _ in range(5):
        n.number(q("AAPL"))
    n.number(q("MSFT"))  # 6
    n.number(q("NVDA"))  # 7: AAPL (first numbered) is forgotten
    assert len(n) == 2 and n.last("AAPL") is None
    assert n.number(q("AAPL")).seq == 8  # not 1: its subscribers had 5


def test_a_floor_puts_every_later_number_above_it_and_renumbers_the_last_values_below() -> None:
    n = SourceNumbering()
    n.number(q("AAPL", 1.0))  # 1
    for _ in range(60):
        n.number(q("MSFT"))  # 2..61
    again = n.raise_floor(50)
    assert [(r.symbol, r.seq, r.price) for r in again] == [("AAPL", 51, 1.0)]  # the same update, above 50
    assert n.last("AAPL") is again[0] and n.last("MSFT").seq == 61  # type: ignore[union-attr]
    assert n.number(q("AAPL")).seq == 52 and n.number(q("MSFT")).seq == 62
    assert n.number(q("KO")).seq == 63  # a new symbol: above everything


def test_a_lower_or_equal_floor_changes_nothing() -> None:
    n = SourceNumbering()
    n.raise_floor(10)
    assert n.number(q("AAPL")).seq == 11
    assert n.raise_floor(10) == [] and n.raise_floor(3) == []
    assert n.number(q("AAPL")).seq == 12


def test_a_floor_above_a_fresh_source_starts_it_above() -> None:
    n = SourceNumbering()
    assert n.raise_floor(1_000) == []
    assert n.number(q("AAPL")).seq == 1_001 and n.top == 1_001
