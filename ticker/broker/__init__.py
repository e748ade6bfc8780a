"""Brokers between feeds and hubs: in-process (memory) or Redis (publisher processes and edge nodes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ticker.broker.base import Broker
from ticker.broker.memory import MemoryBroker
from ticker.quote import Quote

if TYPE_CHECKING:
    from ticker.metrics.registry import Metrics


def create_broker(
    url: str,
    metrics: Metrics,
    last: Callable[[str], Quote | None],
    resync: Callable[[], object],
    prefix: str = "ticker",
    demand_ttl: float = 15.0,
    on_epoch: Callable[[str], object] | None = None,
) -> Broker:
    """``memory`` → the in-process broker; ``redis://...`` → an edge node's Redis broker.

    ``last(symbol)`` is the hub's last quote of a symbol; ``resync()`` sends every connection a fresh snapshot;
    ``on_epoch(source)``: the source that numbers ``q`` is now ``source`` (a Redis publisher's term).
    """
    if url in ("", "memory"):
        return MemoryBroker()
    from ticker.broker.redis_edge import RedisBroker  # redis-py loads only when used

    return RedisBroker(url, metrics, last, resync, prefix=prefix, demand_ttl=demand_ttl, on_epoch=on_epoch)
