"""Brokers carry normalized quotes from feeds to the hub, and demand back from the hub to feeds.

The in-process :class:`MemoryBroker` hands quotes straight to the hub. Other brokers
(Redis) let publisher processes and edge nodes run apart; they implement the same class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ticker.quote import Quote

if TYPE_CHECKING:
    from ticker.metrics.registry import Metrics

Deliver = Callable[[Quote], None]


class Broker:
    """In-process broker (``memory``): feeds and hub share one process."""

    name = "memory"

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        """Start delivering quotes for this node's demanded symbols to ``deliver``."""
        self._deliver = deliver

    async def stop(self) -> None:
        """Stop delivering and release connections."""
        self._deliver = None

    def publish(self, quote: Quote) -> None:
        """Feed side: pass one normalized quote on."""
        if self._deliver is not None:
            self._deliver(quote)

    def set_demand(self, symbols: frozenset[str]) -> None:
        """Hub side: the symbols this node's clients want (in-process feeds are told directly)."""

    @property
    def up(self) -> bool:
        """Whether the broker is connected."""
        return True


MemoryBroker = Broker


def create_broker(
    url: str,
    metrics: Metrics,
    last: Callable[[str], Quote | None],
    resync: Callable[[], object],
    prefix: str = "ticker",
    demand_ttl: float = 15.0,
) -> Broker:
    """``memory`` → the in-process broker; ``redis://...`` → an edge node's :class:`RedisBroker`.

    ``last(symbol)`` is the hub's last quote of a symbol; ``resync()`` sends every connection a fresh snapshot.
    """
    if url in ("", "memory"):
        return Broker()
    from ticker.broker.redis_edge import RedisBroker  # redis-py loads only when used

    return RedisBroker(url, metrics, last, resync, prefix=prefix, demand_ttl=demand_ttl)
