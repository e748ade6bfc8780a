"""Numbering quotes at their source (pure): the ``--workers`` feed process gives every quote its ``q`` once.

Every worker then serves the same ``q`` for the same update (its hub keeps a ``seq`` > 0 as it comes). Per
symbol the numbers grow by one with each quote, and never go back:

- a symbol first seen, or seen again after it was forgotten (past :data:`MAX_SYMBOLS`, the one first
  numbered goes), starts above every number given so far;
- a *floor* (:meth:`SourceNumbering.raise_floor`) puts every later number above it: a worker that served the
  numbers of an earlier feed process (a restart) says the highest it delivered, so its clients never see
  ``q`` go back. The last values numbered below the floor get new numbers above it, to be sent again.

Cost per quote: one dict lookup and store, two comparisons. Memory: the last quote of each symbol, at most
:data:`MAX_SYMBOLS` of them (also what a joining worker is sent to catch up).
"""

from __future__ import annotations

from dataclasses import replace

from ticker.quote import Quote

#: Symbols whose number (and last quote) is kept; past it, the first numbered is forgotten.
MAX_SYMBOLS = 100_000


class SourceNumbering:
    """Gives each quote of a source its per-symbol sequence number (``Quote.seq``) and keeps the last one."""

    def __init__(self, max_symbols: int = MAX_SYMBOLS) -> None:
        self.max_symbols = max(1, max_symbols)
        self._last: dict[str, Quote] = {}
        self._top = 0  # the highest number given (or floor raised to)
        self._floor = 0  # every number from now on is above it

    @property
    def top(self) -> int:
        """The highest number given so far (or the floor, if higher)."""
        return self._top

    def __len__(self) -> int:
        return len(self._last)

    def number(self, quote: Quote) -> Quote:
        """Set ``quote.seq`` to its symbol's next number (the quote has just been emitted: nothing else holds
        it yet), keep it as the symbol's last value, and return it."""
        last = self._last
        symbol = quote.symbol
        prev = last.get(symbol)
        if prev is None:
            seq = self._top + 1
            if len(last) >= self.max_symbols:
                del last[next(iter(last))]
        else:
            seq = prev.seq + 1
            if seq <= self._floor:
                seq = self._floor + 1
        quote.seq = seq
        last[symbol] = quote
        if seq > self._top:
            self._top = seq
        return quote

    def raise_floor(self, floor: int) -> list[Quote]:
        """Number everything from now on above ``floor``; the last values numbered at or below it get the
        number ``floor + 1`` (new quotes, the same update): returned, to be sent again."""
        if floor <= self._floor:
            return []
        self._floor = floor
        self._top = max(self._top, floor)
        renumbered = []
        last = self._last
        for symbol, quote in last.items():
            if quote.seq <= floor:
                last[symbol] = again = replace(quote, seq=floor + 1)
                renumbered.append(again)
        return renumbered

    def latest(self) -> list[Quote]:
        """Every symbol's last quote, numbered."""
        return list(self._last.values())

    def last(self, symbol: str) -> Quote | None:
        """``symbol``'s last quote, if it is kept."""
        return self._last.get(symbol)
