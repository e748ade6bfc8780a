"""A symbol's state as its feed sees it: the one rule shared by a node's status board and the Redis
publisher (which works the states out for the edge nodes, whose feeds run in its process).

The feed of a symbol (the one whose reference data lists it, else the first to
:meth:`~feeds.base.Feed.owns` it) says:
``down`` while it is down, or, if *steady* (simulated, replay), once it has been silent for more than
``stale_after`` seconds; else whatever :meth:`~feeds.base.Feed.symbol_state` says (``closed``,
``halted``, ``unavailable``); else nothing: the symbol is live as far as the feed knows.
"""

from __future__ import annotations

from collections.abc import Sequence

from feeds.base import Feed
from ticker.directory import Directory
from ticker.status import DOWN, SymbolStatus


def owner(feeds: Sequence[Feed], symbol: str, directory: Directory | None = None) -> Feed | None:
    """The feed of ``feeds`` carrying ``symbol``: the one whose entries in ``directory`` hold it, else the
    first that owns it; None when none does."""
    source = directory.source_of(symbol) if directory is not None else None
    if source is not None:
        for f in feeds:
            if f.name == source:
                return f
    return next((f for f in feeds if f.owns(symbol)), None)


def feed_down(feed: Feed, now: float, stale_after: float | None) -> SymbolStatus | None:
    """``down`` for every symbol of ``feed`` at monotonic ``now``, with the reason, or None while it works:
    down while its health says so; silent for more than ``stale_after`` s when steady (None: silence is
    no fault)."""
    health = feed.health()
    if not health.up:
        return SymbolStatus(DOWN, f"feed {feed.name} is down: {health.reason or 'not connected'}")
    last = health.last_data
    if stale_after is not None and feed.steady and last is not None and now - last > stale_after:
        return SymbolStatus(DOWN, f"feed {feed.name} has sent no data for more than {stale_after:g} s")
    return None


def feed_state(feed: Feed, symbol: str, now: float, stale_after: float | None) -> SymbolStatus | None:
    """The state of ``symbol`` by ``feed``, which owns it, at monotonic ``now``; None: live."""
    return feed_down(feed, now, stale_after) or feed.symbol_state(symbol)
