"""The symbol directory (pure): reference data of every symbol the running feeds can carry, and search.

Each feed is a *source*: it either has loaded its entries (:meth:`Directory.replace`), is still
loading them, or cannot tell at all (a provider without a reference endpoint). A symbol is
``known`` when a loaded source has it, ``pending`` when no loaded source has it but some source
cannot tell yet, and ``unknown`` otherwise (docs/protocol.md, "Unknown symbols").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

#: Asset types of the directory (a feed maps its provider's words onto these).
ASSET_TYPES = ("stock", "etf", "index", "crypto", "fx", "fund", "other")


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """One directory entry: the symbol as clients subscribe to it, and what it is."""

    symbol: str
    name: str
    exchange: str = ""
    type: str = "stock"
    currency: str = "USD"

    def to_json(self) -> dict[str, str]:
        """The wire form: ``{"s","name","exchange","type","currency"}``."""
        return {
            "s": self.symbol,
            "name": self.name,
            "exchange": self.exchange,
            "type": self.type,
            "currency": self.currency,
        }


class Known(enum.Enum):
    """What the directory says of a symbol."""

    KNOWN = "known"
    PENDING = "pending"
    UNKNOWN = "unknown"


class Directory:
    """The union of the sources' entries; a source first registered is *loading* until it is replaced."""

    def __init__(self) -> None:
        self._sources: dict[str, dict[str, SymbolInfo] | None] = {}  # None: loading, or cannot tell
        self._merged: dict[str, SymbolInfo] = {}
        self._source_of: dict[str, str] = {}
        self._version = 0

    def expect(self, source: str) -> None:
        """Register ``source`` as loading (or unable to tell): its symbols are ``pending`` meanwhile."""
        if source not in self._sources:
            self._sources[source] = None

    def replace(self, source: str, entries: Iterable[SymbolInfo]) -> None:
        """Set ``source``'s entries (a load or a daily refresh): the whole set, replacing the previous one."""
        self._sources[source] = {e.symbol: e for e in entries}
        self._merge()

    def _merge(self) -> None:
        merged: dict[str, SymbolInfo] = {}
        source_of: dict[str, str] = {}
        for name, table in self._sources.items():
            if table:
                for sym, e in table.items():
                    if sym not in merged:
                        merged[sym] = e
                        source_of[sym] = name
        self._merged, self._source_of = (
            merged,
            source_of,
        )  # swapped whole: a reader in a thread sees one or the other
        self._version += 1

    @property
    def version(self) -> int:
        """A number that changes whenever the entries change (what :mod:`ticker.search` rebuilds its index on)."""
        return self._version

    @property
    def complete(self) -> bool:
        """Whether every source has loaded: then a symbol none of them has is ``unknown``. Without any
        source (an edge node before it reads the publisher's directory) nothing is complete."""
        return bool(self._sources) and all(t is not None for t in self._sources.values())

    def loading(self) -> list[str]:
        """The sources still loading (or unable to tell), in the order they were registered."""
        return [name for name, t in self._sources.items() if t is None]

    def source_of(self, symbol: str) -> str | None:
        """The source (feed) whose entries hold ``symbol``, if any."""
        return self._source_of.get(symbol)

    def get(self, symbol: str) -> SymbolInfo | None:
        """The entry of ``symbol``, if a loaded source has it."""
        return self._merged.get(symbol)

    def known(self, symbol: str) -> Known:
        """``known``, ``pending`` (no loaded source has it, some cannot tell yet) or ``unknown``."""
        if symbol in self._merged:
            return Known.KNOWN
        return Known.UNKNOWN if self.complete else Known.PENDING

    def symbols(self) -> list[str]:
        """Every known symbol, sorted."""
        return sorted(self._merged)

    def entries(self) -> Iterable[SymbolInfo]:
        """Every known entry."""
        return self._merged.values()

    def __len__(self) -> int:
        return len(self._merged)
