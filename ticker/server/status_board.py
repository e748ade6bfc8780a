"""What a node says about each symbol: unknown ones refused (with "did you mean"), and the state of the
ones subscribed (live, pending, down, unavailable, closed, halted), pushed to subscribers when it changes.

The board is the node's :class:`~ticker.session.SymbolBook`. Once a second (:meth:`StatusBoard.tick`)
it works out the state of every demanded symbol from the directory, the health of the feed that
owns the symbol and what that feed says of it, and sends ``{"type":"status"}`` to the subscribers
of each symbol whose state changed. A pending symbol that the directory, once loaded, does not
know is dropped from every connection with ``unknown_symbol``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from feeds.runner import FeedRunner
from ticker import protocol
from ticker.broker.base import Broker
from ticker.delay import delayed_key
from ticker.directory import Directory, Known
from ticker.errors import UnknownSymbols
from ticker.hub import Hub
from ticker.status import DOWN, IS_LIVE, PENDING, SymbolStatus

if TYPE_CHECKING:
    from ticker.server.fanout import Connection

MAX_SUGGESTED = 10  # symbols of one refusal that get "did you mean"


class Watched(Protocol):
    """What the board reads of its node."""

    hub: Hub[Connection]
    runner: FeedRunner
    broker: Broker

    @property
    def directory(self) -> Directory: ...

    def demand(self) -> frozenset[str]: ...


class StatusBoard:
    """The directory's verdicts and every demanded symbol's state, for one node."""

    def __init__(self, node: Watched, stale_after: float, refuse_unknown: bool = True) -> None:
        self.node = node
        self.stale_after = stale_after
        self.refuse_unknown = refuse_unknown
        self._last: dict[str, SymbolStatus] = {}

    @property
    def directory(self) -> Directory:
        return self.node.directory

    # -- the session's questions ------------------------------------------------------------
    def unknown(self, symbols: Sequence[str]) -> UnknownSymbols | None:
        """``unknown_symbol`` for those of ``symbols`` no running feed knows (``--unknown-symbols refuse``)."""
        if not self.refuse_unknown:
            return None
        d = self.directory
        bad = [s for s in symbols if d.known(s) is Known.UNKNOWN]
        if not bad:
            return None
        return UnknownSymbols(bad, {s: self._suggest(s) for s in bad[:MAX_SUGGESTED]})

    def _suggest(self, symbol: str) -> list[tuple[str, str]]:
        from ticker.search import suggest  # the search index is built lazily, on the first refusal

        return [(e.symbol, e.name) for e in suggest(self.directory, symbol)]

    def statuses(self, symbols: Iterable[str]) -> list[dict[str, str]]:
        """The entries of those ``symbols`` that are not live (and remember them as what clients know)."""
        out = []
        for s in symbols:
            st = self.status(s)
            self._last[s] = st
            if st is not IS_LIVE:
                out.append(st.to_json(s))
        return out

    # -- working a state out ----------------------------------------------------------------
    def status(self, symbol: str) -> SymbolStatus:
        """The state of ``symbol`` now."""
        node = self.node
        has_value = node.hub.last(symbol) is not None
        if not has_value and self.refuse_unknown and self.directory.known(symbol) is Known.PENDING:
            return SymbolStatus(
                PENDING, "not confirmed yet: waiting for the feed's symbol list or a first quote"
            )
        feeds = [f for f in node.runner.feeds if f.owns(symbol)]
        if not feeds:  # an edge node: the publisher's feeds are behind the broker
            if not node.broker.up:
                return SymbolStatus(DOWN, f"lost the connection to the {node.broker.name} broker")
            return IS_LIVE if has_value else SymbolStatus(PENDING, "waiting for a first quote")
        feed = feeds[0]
        health = feed.health()
        if not health.up:
            return SymbolStatus(DOWN, f"feed {feed.name} is down: {health.reason or 'not connected'}")
        stale = self.stale_after
        if feed.steady and health.last_data is not None and time.monotonic() - health.last_data > stale:
            return SymbolStatus(DOWN, f"feed {feed.name} has sent no data for more than {stale:g} s")
        said = feed.symbol_state(symbol)
        if said is not None:
            return said
        return IS_LIVE

    # -- pushing changes --------------------------------------------------------------------
    def tick(self) -> None:
        """Push the states that changed since last time, and drop symbols that turned out unknown."""
        node = self.node
        demanded = node.demand()
        for gone in [s for s in self._last if s not in demanded]:
            del self._last[gone]
        changed: dict[Connection, list[dict[str, str]]] = {}
        unknown: list[str] = []
        for symbol in sorted(demanded):
            if self.refuse_unknown and self.directory.known(symbol) is Known.UNKNOWN:
                unknown.append(symbol)
                continue
            st = self.status(symbol)
            if self._last.get(symbol, IS_LIVE) == st:
                continue
            self._last[symbol] = st
            entry = st.to_json(symbol)
            for key in (symbol, delayed_key(symbol)):
                for conn in node.hub.members(key):
                    changed.setdefault(conn, []).append(entry)
        for conn, entries in changed.items():
            conn.send_message("status", protocol.status(entries))
        if unknown:
            self._drop(unknown)

    def _drop(self, symbols: list[str]) -> None:
        exc = UnknownSymbols(symbols, {s: self._suggest(s) for s in symbols[:MAX_SUGGESTED]})
        hub = self.node.hub
        holders: dict[Connection, None] = {}
        for s in symbols:
            for key in (s, delayed_key(s)):
                holders.update(dict.fromkeys(hub.members(key)))
        for conn in holders:
            conn.drop_symbols(symbols, exc)
