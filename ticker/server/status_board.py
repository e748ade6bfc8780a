"""What a node says about each symbol: unknown ones refused (with "did you mean"), and the state of the
ones subscribed (live, pending, down, unavailable, closed, halted), pushed to subscribers when it changes.

The board is the node's :class:`~ticker.session.SymbolBook`. Once a second (:meth:`StatusBoard.tick`)
it works out the state of every demanded symbol from the directory, the health of the feed that
owns the symbol and what that feed says of it, and sends ``{"type":"status"}`` to the subscribers
of each symbol whose state changed. A pending symbol that the directory, once loaded, does not
know is dropped from every connection with ``unknown_symbol``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from feeds.base import Feed
from feeds.runner import FeedRunner
from feeds.states import feed_down, owner
from ticker import protocol
from ticker.barhub import BarHub
from ticker.broker.base import Broker
from ticker.delay import delayed_key
from ticker.directory import Directory, Known
from ticker.errors import UnknownSymbols
from ticker.hub import Hub
from ticker.status import DOWN, IS_LIVE, PENDING, SymbolStatus

if TYPE_CHECKING:
    from ticker.server.fanout import Connection

MAX_SUGGESTED = 10  # symbols of one refusal that get "did you mean"
#: Demanded symbols worked out per step of a tick (:meth:`StatusBoard.ticking`): 40,000 symbols take about
#: 120 ms, which the loop gets back every 2,000.
STEP = 2_000

log = logging.getLogger("ticker")

#: Which symbols a caller may be told about (its entitlements); None: any.
Allow = Callable[[str], bool] | None


class Watched(Protocol):
    """What the board reads of its node."""

    hub: Hub[Connection]
    bar_hub: BarHub[Connection]
    runner: FeedRunner
    broker: Broker
    feeds: list[Feed]

    @property
    def directory(self) -> Directory: ...

    def demand(self) -> frozenset[str]: ...


class StatusBoard:
    """The directory's verdicts and every demanded symbol's state, for one node.

    ``_last`` is what the subscribers of a symbol were last told by a push (or, for a symbol nobody
    was pushed anything about yet, by the first subscribe): a tick pushes a state only when it
    differs, so answering a new subscriber or a REST read never hides a change from the others.
    """

    def __init__(
        self,
        node: Watched,
        stale_after: float,
        refuse_unknown: bool = True,
        unserved: Callable[[str], SymbolStatus | None] | None = None,
    ) -> None:
        """``unserved``: ``unavailable`` for a demanded symbol the node does not serve (its budget or a feed's
        plan limit, :class:`~ticker.server.allotter.Allotter`), else None."""
        self.node = node
        self.stale_after = stale_after
        self.refuse_unknown = refuse_unknown
        self.unserved = unserved
        self._last: dict[str, SymbolStatus] = {}

    @property
    def directory(self) -> Directory:
        return self.node.directory

    # -- the session's questions ------------------------------------------------------------
    def unknown(self, symbols: Sequence[str], allow: Allow = None) -> UnknownSymbols | None:
        """``unknown_symbol`` for those of ``symbols`` no running feed knows (``--unknown-symbols refuse``);
        a symbol that has quotes is known whatever the directory says. Suggestions only name symbols
        ``allow`` lets the caller see."""
        if not self.refuse_unknown:
            return None
        d, hub = self.directory, self.node.hub
        bad = [s for s in symbols if d.known(s) is Known.UNKNOWN and hub.last(s) is None]
        if not bad:
            return None
        return UnknownSymbols(bad, {s: self._suggest(s, allow) for s in bad[:MAX_SUGGESTED]})

    def _suggest(self, symbol: str, allow: Allow) -> list[tuple[str, str]]:
        from ticker.search import suggest  # built beside the loop after each directory change (FeedRunner)

        return [(e.symbol, e.name) for e in suggest(self.directory, symbol, allow=allow)]

    def statuses(self, symbols: Iterable[str], remember: bool = True) -> list[dict[str, str]]:
        """The entries of those ``symbols`` that are not live. ``remember``: a subscriber is being told,
        so a symbol nobody was told about yet starts from this state (a REST read tells nobody)."""
        out = []
        for s in symbols:
            st = self.status(s)
            if remember:
                self._last.setdefault(s, st)
            if st is not IS_LIVE:
                out.append(st.to_json(s))
        return out

    # -- working a state out ----------------------------------------------------------------
    def status(self, symbol: str) -> SymbolStatus:
        """The state of ``symbol`` now: its feed's health first (down wins over pending), then what the feed
        says of the symbol (closed, halted, unavailable), then the directory (pending). A symbol the node
        does not serve (its budget or a feed's plan limit) is ``unavailable`` before all that."""
        if self.unserved is not None and (over := self.unserved(symbol)) is not None:
            return over
        node = self.node
        has_value = node.hub.last(symbol) is not None
        feed = owner(node.feeds, symbol, self.directory)
        if feed is None:  # an edge node: the publisher's feeds are behind the broker
            if not node.broker.up:
                return SymbolStatus(DOWN, f"lost the connection to the {node.broker.name} broker")
            reported = node.broker.symbol_status(symbol)
            if reported is not None:
                return reported
            return IS_LIVE if has_value else SymbolStatus(PENDING, "waiting for a first quote")
        down = feed_down(feed, time.monotonic(), self.stale_after)
        if down is not None:
            return down
        said = feed.symbol_state(
            symbol
        )  # what the feed knows of the symbol wins: "the provider does not know X"
        if said is not None:
            return said
        if not has_value and self.refuse_unknown and self.directory.known(symbol) is Known.PENDING:
            return SymbolStatus(PENDING, f"not confirmed yet: feed {feed.name} is loading its symbol list")
        return IS_LIVE

    # -- pushing changes --------------------------------------------------------------------
    def tick(self) -> None:
        """Push the states that changed since last time, and drop symbols that turned out unknown."""
        for _ in self.ticking():
            pass

    def ticking(self) -> Iterator[None]:
        """:meth:`tick` in steps of :data:`STEP` symbols, yielding between them so that the caller can let the
        event loop run. The demand is the one at the start; what changed meanwhile is seen by the next tick."""
        node = self.node
        demanded = node.demand()
        for gone in [s for s in self._last if s not in demanded]:
            del self._last[gone]
        changed: dict[Connection, list[dict[str, str]]] = {}
        unknown: list[str] = []
        stepped = False
        for i, symbol in enumerate(sorted(demanded)):
            if i and not i % STEP:
                stepped = True
                yield
            if (
                self.refuse_unknown
                and self.directory.known(symbol) is Known.UNKNOWN
                and node.hub.last(symbol) is None  # a symbol with quotes exists, whatever a list says
            ):
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
        if stepped:  # the loop ran meanwhile: only what still holds, and only what is still unknown
            changed = {c: e for c, e in ((c, self._held(c, e)) for c, e in changed.items()) if e}
            unknown = [
                s for s in unknown if self.directory.known(s) is Known.UNKNOWN and node.hub.last(s) is None
            ]
        for conn, entries in changed.items():
            conn.send_message("status", protocol.status(entries))
        if unknown:
            self._drop(unknown)

    def _held(self, conn: Connection, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """Those of ``entries`` whose symbol ``conn`` still holds (real-time or delayed)."""
        keys = self.node.hub.symbols_of(conn)
        return [e for e in entries if e["s"] in keys or delayed_key(e["s"]) in keys]

    def _drop(self, symbols: list[str]) -> None:
        # No suggestions here: they would go to every holder whatever its entitlements.
        exc = UnknownSymbols(symbols)
        hub = self.node.hub
        holders: dict[Connection, None] = {}
        for s in symbols:
            for key in (s, delayed_key(s)):
                holders.update(dict.fromkeys(hub.members(key)))
        holders.update(dict.fromkeys(self.node.bar_hub.holders(symbols)))  # held by bar subscriptions only
        for conn in holders:
            conn.drop_symbols(symbols, exc)
