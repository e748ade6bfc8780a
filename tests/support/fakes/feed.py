"""A feed with no upstream, for the runner's and the health report's unit tests."""

from __future__ import annotations

from collections.abc import Callable

from feeds.base import Feed, FeedContext
from ticker.status import SymbolStatus


class StubFeed(Feed):
    """A feed that owns the symbols ``owned`` accepts, records what it is told (its context, whether it
    was stopped) and says ``said`` of some symbols. ``data_at``: up from the start, with data at that
    monotonic time (else up once started)."""

    def __init__(
        self,
        name: str,
        owned: Callable[[str], bool] = lambda s: True,
        steady: bool = False,
        *,
        data_at: float | None = None,
    ) -> None:
        super().__init__(name)
        self.owned = owned
        self.steady = steady
        self.said: dict[str, SymbolStatus] = {}
        self.ctx: FeedContext | None = None
        self.stopped = False
        if data_at is not None:
            self._mark_up()
            self._health.last_data = data_at

    async def start(self, ctx: FeedContext) -> None:
        self.ctx = ctx
        self._mark_up()

    async def stop(self) -> None:
        self.stopped = True
        self._mark_down("stopped")

    def owns(self, symbol: str) -> bool:
        return self.owned(symbol)

    def symbol_state(self, symbol: str) -> SymbolStatus | None:
        return self.said.get(symbol)
