"""The broker interface: quotes from feeds to the hub, demand back from the hub to the feeds.

The in-process :class:`~ticker.broker.memory.MemoryBroker` hands quotes straight to the hub; the
Redis broker (:mod:`ticker.broker.redis_edge`) lets publisher processes and edge nodes run apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from ticker.bars import Bar
from ticker.directory import Directory
from ticker.quote import Quote
from ticker.status import SymbolStatus

Deliver = Callable[[Quote], None]
DeliverMany = Callable[[list[Quote]], None]
#: Where an edge broker hands the publisher's bars: ``(symbol, interval, bar)``, the bar as it now stands.
DeliverBar = Callable[[str, str, Bar], None]


class Broker(ABC):
    """What a node needs of a broker."""

    name = "?"
    #: Whether the node aggregates bars from the quotes it is delivered (in-process feeds) or the broker
    #: brings them ready-made (Redis: the publisher aggregates, ``bar_sink`` and :meth:`load_bars`).
    aggregates_bars = True

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        #: Set by the node before :meth:`start` where the broker brings bars (``aggregates_bars`` False).
        self.bar_sink: DeliverBar | None = None
        #: Set by the node before :meth:`start`: takes a list of quotes as ``deliver`` takes each (None: one by one).
        self.deliver_many: DeliverMany | None = None

    @abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Start delivering quotes for this node's demanded symbols to ``deliver``."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop delivering and release connections."""

    def publish(self, quote: Quote) -> None:
        """Feed side: pass one normalized quote of an in-process feed on (to this node only)."""
        if self._deliver is not None:
            self._deliver(quote)

    def publish_many(self, quotes: list[Quote]) -> None:
        """:meth:`publish` of each of ``quotes``, in order, in one call where the node takes several."""
        deliver = self._deliver
        if deliver is None:
            return
        if self.deliver_many is not None:
            self.deliver_many(quotes)
            return
        for quote in quotes:
            deliver(quote)

    @abstractmethod
    def set_demand(self, symbols: frozenset[str]) -> None:
        """Hub side: the symbols this node's clients want."""

    @property
    @abstractmethod
    def up(self) -> bool:
        """Whether the broker is connected."""

    def symbol_status(self, symbol: str) -> SymbolStatus | None:
        """A state the publisher reports for ``symbol`` (edge nodes); None: live, or nothing reported."""
        return None

    async def load_bars(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """The bars of ``symbol`` at ``interval`` starting in ``[start_ms, end_ms)`` the broker holds (Redis:
        the publisher's history), oldest first; None: the node loads history from its own feeds. Raises
        ``ConnectionError`` when the broker cannot answer now (the node retries later)."""
        return None

    async def read_through(self, symbols: Sequence[str], within: float) -> None:
        """Make the node's last values of ``symbols`` current though no client here receives them (REST reads
        on an edge node: Redis), waiting at most ``within`` s; never raises. In-process feeds: nothing to do."""
        return None

    def directory(self) -> Directory | None:
        """The symbol directory that comes with the quotes (the publisher's, through Redis); None: the
        node's own feeds' directory applies."""
        return None
