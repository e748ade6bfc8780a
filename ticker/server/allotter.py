"""The node's share-out of scarce upstream symbols: :func:`ticker.allocation.allot` fed by its hubs.

Two limits make symbols scarce: ``--max-active-symbols`` (every symbol the node asks its feeds or broker
for) and a feed's provider plan limit (:attr:`feeds.base.Feed.symbol_limit`). While demand fits both,
every demanded symbol is served. Past either, :class:`Allotter` hands the slots out round-robin over the
connections (oldest first, each one's symbols in subscribe order, its bar subscriptions after its
quotes); the rest are ``unavailable`` with the limit in the reason, until slots free up.

A served symbol that brought no update for ``silent_after`` seconds while its feed (or, on an edge node,
the broker) brought others is marked *silent* until it does: silent symbols are served after every
other, so they are the first to give their slots up.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence

from feeds.states import owner
from ticker.allocation import Allotment, allot, scarce
from ticker.delay import symbol_of
from ticker.server.status_board import Watched
from ticker.status import UNAVAILABLE, SymbolStatus

SILENT_AFTER = 30.0  # seconds a served symbol may bring nothing while others flow before it is marked silent
#: A share-out that took this long (seconds) or more is worked out again only :attr:`Allotter.duty` times its
#: duration after it ended: a burst of subscribes over a large scarce demand (80 connections × 500 symbols:
#: about 14 ms each) costs a share of the loop, not a share-out per subscribe in one pass.
SLOW_SHARE_OUT = 0.001


class Allotter:
    """Which demanded symbols the node serves; worked out again whenever a subscription, the feeds' limits,
    the directory or the silent marks changed (:meth:`current`)."""

    def __init__(
        self,
        node: Watched,
        budget: int,
        on_change: Callable[[], None],
        silent_after: float = SILENT_AFTER,
        duty: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``on_change`` is called when the served set changes (the node tells feeds and broker). ``duty``: a
        share-out of :data:`SLOW_SHARE_OUT` or more is not worked out again until ``duty`` times its duration
        has passed; meanwhile :meth:`current` answers with the last one and works it out again then, on the
        running loop (None: always at once)."""
        self.node = node
        self.budget = budget
        self.on_change = on_change
        self.silent_after = silent_after
        self.duty = duty
        self._clock = clock
        self._next_at = -math.inf  # when a slow share-out may be worked out again
        self._refresh: asyncio.TimerHandle | None = None
        self._demand_changes = 0
        self._stamp: tuple[object, ...] | None = None
        self._last = Allotment(frozenset())
        self._pools: dict[str, int] = {}
        self._words: dict[str, str] = {}  # pool → what its limit is, in words (the feed's ``limit_words``)
        self._pool_cache: dict[str, str | None] = {}
        self._pool_seen: tuple[object, ...] = ()
        self._silent: set[str] = set()
        self._silent_changes = 0
        self._watch: dict[str, tuple[float, int, int]] = {}  # symbol → (since, its seq, hub updates) then

    def demand_changed(self) -> None:
        """The set of demanded symbols changed (a subscription may not have: bar subscriptions)."""
        self._demand_changes += 1

    # -- the allotment -------------------------------------------------------------------------
    def current(self) -> Allotment:
        """The allotment of the demand as it is now (cached until something it depends on changes)."""
        node = self.node
        pools = {f.name: lim for f in node.feeds if (lim := f.symbol_limit) is not None}
        stamp = (
            node.hub.changes,
            self._demand_changes,
            self._silent_changes,
            node.directory.version,
            tuple(pools.items()),
        )
        if stamp == self._stamp:
            return self._last
        began = self._clock()
        if began < self._next_at and self._later(self._next_at - began):
            return self._last
        self._stamp = stamp
        self._pools = pools
        self._words = {f.name: getattr(f, "limit_words", "its limit") for f in node.feeds if f.name in pools}
        if stamp[3:] != self._pool_seen:  # the owners of symbols may have changed
            self._pool_seen = stamp[3:]
            self._pool_cache.clear()
        demand = node.demand()
        if not scarce(demand, self.budget, pools, self._pool_of):
            new = Allotment(demand)
        else:
            new = allot(self._wants(), self.budget, pools, self._pool_of, self._silent)
        if len(self._pool_cache) > 2 * len(demand) + 1000:
            self._pool_cache.clear()
        old, self._last = self._last, new
        took = self._clock() - began
        if self.duty is not None and took >= SLOW_SHARE_OUT:
            self._next_at = began + took * (1 + self.duty)
        if new.served != old.served:
            self.on_change()
        return new

    def _later(self, delay: float) -> bool:
        """Work the share-out out again in ``delay`` seconds; False without a running loop (then: at once)."""
        if self._refresh is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
            self._refresh = loop.call_later(delay, self._refreshed)
        return True

    def _refreshed(self) -> None:
        self._refresh = None
        self.current()  # a change of the served set reaches feeds and broker (on_change), the board's next tick

    def _wants(self) -> list[Sequence[str]]:
        """Each connection's symbols (quotes in subscribe order, then its bar subscriptions), oldest first."""
        node = self.node
        bars = node.bar_hub
        out: list[Sequence[str]] = []
        for sub, keys in node.hub.in_order():
            held = bars.holds(sub)
            if any(k[:1] == "~" or "@" in k for k in keys):  # delayed keys, views: the same upstream symbol
                keys = tuple(dict.fromkeys(symbol_of(k) for k in keys))
            out.append(keys + tuple(s for s, _ in held) if held else keys)
        return out

    def _pool_of(self, symbol: str) -> str | None:
        cache = self._pool_cache
        if symbol in cache:
            return cache[symbol]
        feed = owner(self.node.feeds, symbol, self.node.directory)
        pool = feed.name if feed is not None and feed.name in self._pools else None
        cache[symbol] = pool
        return pool

    # -- what subscribers and operators are told ---------------------------------------------
    def unserved(self, symbol: str) -> SymbolStatus | None:
        """``unavailable`` with the limit that keeps ``symbol`` from being served; None: served."""
        a = self.current()
        if symbol in a.served:
            return None
        if symbol in a.over_budget:
            return SymbolStatus(UNAVAILABLE, f"the server carries its maximum of {self.budget} symbols")
        pool = a.over_pool.get(symbol)
        if pool is not None:
            return SymbolStatus(UNAVAILABLE, self._pool_words(pool))
        return None  # not demanded: nothing to say

    def note(self) -> str:
        """The readiness detail: how many demanded symbols are not served and why; empty when none."""
        a = self.current()
        parts = []
        if a.over_budget:
            parts.append(
                f"{len(a.over_budget)} symbols unserved: the server carries its maximum of {self.budget} symbols"
            )
        for pool in sorted(set(a.over_pool.values())):
            n = sum(1 for p in a.over_pool.values() if p == pool)
            parts.append(f"{n} symbols unserved: {self._pool_words(pool)}")
        return "; ".join(parts)

    def _pool_words(self, pool: str) -> str:
        words = self._words.get(pool, "its limit")
        return f"feed {pool} carries its maximum of {self._pools.get(pool, 0)} symbols ({words})"

    # -- silence -------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Once a second: mark served symbols that bring nothing silent, unmark those that brought data."""
        a = self.current()
        if not a.unserved and not self._silent:  # nothing scarce: nothing to release
            self._watch.clear()
            return
        node = self.node
        hub = node.hub
        demand = node.demand()
        changed = False
        for s in [s for s in self._silent if s not in demand]:
            self._silent.discard(s)
        watch: dict[str, tuple[float, int, int]] = {}
        for s in a.served | self._silent:
            st = hub.state(s)
            seq = st.seq if st is not None else -1
            w = self._watch.get(s)
            if w is None or w[1] != seq:  # new, or data came
                watch[s] = (now, seq, hub.updates_in)
                if w is not None and s in self._silent:
                    self._silent.discard(s)
                    changed = True
                continue
            watch[s] = w
            if (
                s in a.served
                and s not in self._silent
                and now - w[0] >= self.silent_after
                and self._others_flow(s, w)
            ):
                self._silent.add(s)
                changed = True
        self._watch = watch
        if changed:
            self._silent_changes += 1
            self.current()

    def _others_flow(self, symbol: str, since: tuple[float, int, int]) -> bool:
        """Whether the feed of ``symbol`` (on an edge node: the broker) brought data since ``since``."""
        node = self.node
        feed = owner(node.feeds, symbol, node.directory)
        if feed is None:
            return node.broker.up and node.hub.updates_in > since[2]
        h = feed.health()
        return h.up and h.last_data is not None and h.last_data > since[0]

    @property
    def silent(self) -> frozenset[str]:
        """The symbols marked silent now."""
        return frozenset(self._silent)
