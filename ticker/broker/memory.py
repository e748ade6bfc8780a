"""The in-process broker (``--broker memory``): feeds and hub share one process."""

from __future__ import annotations

from ticker.broker.base import Broker, Deliver


class MemoryBroker(Broker):
    """Quotes of the node's own feeds go straight to its hub; in-process feeds are told demand directly."""

    name = "memory"

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    def set_demand(self, symbols: frozenset[str]) -> None:
        pass

    @property
    def up(self) -> bool:
        return True
