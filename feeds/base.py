"""The feed-adapter interface every market-data source implements.

A feed is started with a :class:`FeedContext`: it calls ``ctx.emit(quote)`` for each
normalized quote, ``ctx.error(kind)`` for each malformed or unexpected upstream message
and ``ctx.reconnected()`` after each reconnect. The server tells the feed which symbols
clients want with :meth:`Feed.set_demand`; a feed follows that set (subscribing upstream
or polling only what is demanded) and reports its state through :meth:`Feed.health`.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ticker.bars import Bar
from ticker.directory import SymbolInfo
from ticker.quote import Quote
from ticker.status import SymbolStatus
from ticker.tasks import cancel_and_wait


@dataclass(slots=True)
class FeedHealth:
    """A feed's state: ``up`` while connected (or polling), the monotonic time of its last data, and why it is down."""

    up: bool = False
    last_data: float | None = None
    reason: str = "not started"


#: Where a feed hands a provider's own bar: ``(symbol, interval, bar, final)`` (see :meth:`ticker.bars.BarSeries.apply_bar`).
BarSink = Callable[[str, str, Bar, bool], None]


@dataclass(slots=True)
class FeedContext:
    """What a running feed reports to: quotes, provider bars, error kinds and reconnects."""

    emit: Callable[[Quote], None]
    error: Callable[[str], None] = field(default=lambda kind: None)
    reconnected: Callable[[], None] = field(default=lambda: None)
    bar: BarSink = field(default=lambda symbol, interval, bar, final: None)
    #: Several quotes at once, in the order they came (a simulated market's pass, a provider's message of many
    #: trades): what ``emit`` of each would do, in one call (the list is the receiver's from then on). None:
    #: ``emit`` each.
    emit_many: Callable[[list[Quote]], None] | None = None


class Feed(ABC):
    """Base class of feed adapters; subclasses implement :meth:`start` and :meth:`stop`."""

    #: A steady feed produces data all the time (simulated, replay): readiness fails when it goes quiet.
    #: Provider feeds are not steady: a closed market sends nothing, and being connected is their health.
    steady = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.demand: frozenset[str] = frozenset()
        self._health = FeedHealth()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def start(self, ctx: FeedContext) -> None:
        """Begin producing quotes into ``ctx``; returns once the feed runs in the background."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop producing quotes and release every connection or task."""

    def set_demand(self, symbols: frozenset[str]) -> None:
        """Record the set of symbols clients currently want; adapters override to act on changes."""
        self.demand = symbols

    def owns(self, symbol: str) -> bool:
        """Whether this feed serves ``symbol`` (with several feeds, each gets only the demand it owns)."""
        return True

    #: Seconds between two loads of the reference data (:meth:`load_reference`): daily.
    reference_refresh: float = 86_400.0

    def known_symbols(self) -> list[str]:
        """Symbols this feed can offer for suggestions (``/api/symbols``); may be empty."""
        return []

    def carried_symbols(self) -> list[str]:
        """Symbols this feed brings whatever the demand (a simulated universe, a recording's symbols): their
        last values stay while nobody receives them, even when no update comes (a closed market)."""
        return []

    async def load_reference(self) -> list[SymbolInfo] | None:
        """The symbols this feed can carry with their reference data (a provider's reference endpoint, a
        bundled directory, a recording's symbols); None: this feed cannot tell (its symbols stay
        ``pending`` until data shows them). May raise :class:`~feeds.errors.FeedError`: retried later."""
        return None

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """OHLCV bars of ``symbol`` at ``interval`` (one of :data:`ticker.bars.INTERVALS`) starting in
        ``[start_ms, end_ms)``, oldest first, from the provider's history endpoint; None: this feed has no
        history at that interval. May raise :class:`~feeds.errors.FeedError` (the caller retries later)."""
        return None

    def symbol_state(self, symbol: str) -> SymbolStatus | None:
        """What this feed says of ``symbol`` beyond its health: ``closed`` (market hours), ``halted``,
        ``unavailable`` (a plan limit), with a reason; None: nothing to say (live while the feed is up)."""
        return None

    def health(self) -> FeedHealth:
        """The feed's current :class:`FeedHealth`."""
        return self._health

    @property
    def symbol_limit(self) -> int | None:
        """Most symbols this feed holds upstream at once (a provider plan's limit); None: no limit. The node
        shares these slots fairly between connections (:mod:`ticker.allocation`)."""
        return None

    def _run_in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run the feed's main loop as a task that :meth:`_stop_background` ends."""
        self._task = asyncio.get_running_loop().create_task(coro, name=f"feed-{self.name}")

    async def _stop_background(self) -> None:
        """Cancel the main loop, wait for it, and mark the feed stopped."""
        await cancel_and_wait(self._task)
        self._task = None
        self._mark_down("stopped")

    def _mark_up(self) -> None:
        self._health.up = True
        self._health.reason = ""

    def _mark_down(self, reason: str) -> None:
        self._health.up = False
        self._health.reason = reason

    def _mark_data(self) -> None:
        self._health.last_data = time.monotonic()
