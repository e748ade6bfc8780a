"""A feed of the ``--workers`` feed process, as a worker's node sees it: a :class:`~feeds.base.Feed` over the link.

Each worker's node gets one :class:`RelayedFeed` per feed the feed process runs, with the same name. It
mirrors what the feed process reports of its feed every second (health: up, age of the last data, reason;
``steady``, ``symbol_limit``, ``known_symbols``, and the states it gives the symbols it carries), answers
:meth:`owns` as the real feed would (``template``: the feed built from the same options, never started),
forwards :meth:`load_reference` and :meth:`load_history` as requests, and emits the quotes and provider bars
the link brings into the context the node's runner gave it. Its quotes come numbered and with their day
statistics filled in (:attr:`completes_quotes`), so every worker serves the same entry for the same update.
While the link is down the feed is down, its reason saying why.
"""

from __future__ import annotations

import time

from feeds.base import Feed, FeedContext, FeedHealth
from feeds.errors import FeedError
from feeds.relaylink import FeedProcessLink
from ticker import relay
from ticker.bars import Bar
from ticker.directory import SymbolInfo
from ticker.status import SymbolStatus

REFERENCE_WAIT = 600.0  # seconds a directory load may take (a provider's, page after page, within its rate)
HISTORY_WAIT = 60.0  # seconds a history load may take


class RelayedFeed(Feed):
    """Feed ``index`` (named ``template.name``) of the feed process at the other end of ``link``."""

    #: Its quotes come numbered (``q``) and with their day statistics: the node passes them on as they are.
    completes_quotes = True

    def __init__(self, template: Feed, link: FeedProcessLink, index: int) -> None:
        super().__init__(template.name)
        self._template = template
        self._link = link
        self._index = index
        self.steady = template.steady
        self.reference_refresh = template.reference_refresh
        self.limit_words: str = getattr(template, "limit_words", "its limit")
        self._health.reason = "waiting for the feed process"

    async def start(self, ctx: FeedContext) -> None:
        self._link.attach(self._index, ctx)

    async def stop(self) -> None:
        await self._link.detach(self._index)
        self._mark_down("stopped")

    def set_demand(self, symbols: frozenset[str]) -> None:
        super().set_demand(symbols)
        self._link.set_demand(self._index, symbols)

    def owns(self, symbol: str) -> bool:
        return self._template.owns(symbol)

    def health(self) -> FeedHealth:
        link, h = self._link, self._health
        state = link.states[self._index]
        if not link.up:
            h.up = False
            h.reason = f"no link to the feed process: {link.reason}"
        elif state is None:
            h.up = False
            h.reason = "waiting for the feed process's first report"
        else:
            h.up = state.up
            h.reason = state.reason
            self.steady = state.steady
        last = link.last_data[self._index]
        if state is not None and state.age is not None:  # its last data, maybe before this link
            reported = time.monotonic() - state.age
            last = reported if last is None else max(last, reported)
        if last is not None and (h.last_data is None or last > h.last_data):
            h.last_data = last
        return h

    def symbol_state(self, symbol: str) -> SymbolStatus | None:
        state = self._link.states[self._index]
        return state.states.get(symbol) if state is not None and self._link.up else None

    def known_symbols(self) -> list[str]:
        return self._link.known[self._index]

    def carried_symbols(self) -> list[str]:
        # what the feed process's feed offers: a simulated market's universe, a recording's symbols
        return self._link.known[self._index]

    @property
    def symbol_limit(self) -> int | None:
        state = self._link.states[self._index]
        return state.limit if state is not None else self._template.symbol_limit

    async def load_reference(self) -> list[SymbolInfo] | None:
        index = self._index
        value = await self._link.request(lambda rid: relay.reference_request(rid, index), REFERENCE_WAIT)
        try:
            return relay.decode_reference(value)
        except relay.RelayError as exc:
            raise FeedError(f"the feed process's directory of {self.name}: {exc}") from None

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        index = self._index
        value = await self._link.request(
            lambda rid: relay.history_request(rid, index, symbol, interval, start_ms, end_ms), HISTORY_WAIT
        )
        try:
            return relay.decode_bars(value)
        except relay.RelayError as exc:
            raise FeedError(f"the feed process's history of {symbol}: {exc}") from None
