"""The broker interface: quotes from feeds to the hub, demand back from the hub to the feeds.

The in-process :class:`~ticker.broker.memory.MemoryBroker` hands quotes straight to the hub; the
Redis broker (:mod:`ticker.broker.redis_edge`) lets publisher processes and edge nodes run apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from ticker.directory import Directory
from ticker.quote import Quote
from ticker.status import SymbolStatus

Deliver = Callable[[Quote], None]


class Broker(ABC):
    """What a node needs of a broker."""

    name = "?"

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

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

    def directory(self) -> Directory | None:
        """The symbol directory that comes with the quotes (the publisher's, through Redis); None: the
        node's own feeds' directory applies."""
        return None
