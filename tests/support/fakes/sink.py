"""A :class:`~feeds.base.FeedContext` that collects what a feed reports, and a way to run a feed in a test."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from feeds.base import Feed, FeedContext
from feeds.options import FeedOptions
from ticker.bars import Bar
from ticker.quote import Quote


class FeedSink:
    """Collects emitted quotes, provider bars, error kinds (counted) and reconnects through :attr:`ctx`.

    ``ctx`` is built once, so a test may wrap its callbacks before handing it to a feed.
    """

    def __init__(self) -> None:
        self.quotes: list[Quote] = []
        self.errors: Counter[str] = Counter()
        self.reconnects = 0
        #: Each provider bar as ``(symbol, interval, bar, final)``.
        self.bars: list[tuple[str, str, Bar, bool]] = []
        self.ctx = FeedContext(
            emit=self.quotes.append,
            error=self._error,
            reconnected=self._reconnected,
            bar=lambda symbol, interval, bar, final: self.bars.append((symbol, interval, bar, final)),
        )

    def _error(self, kind: str) -> None:
        self.errors[kind] += 1

    def _reconnected(self) -> None:
        self.reconnects += 1

    def prices(self, symbol: str) -> list[float]:
        return [q.price for q in self.quotes if q.symbol == symbol]

    def last(self, symbol: str) -> Quote:
        """The latest quote of ``symbol`` (fails the test if there is none)."""
        for q in reversed(self.quotes):
            if q.symbol == symbol:
                return q
        raise AssertionError(f"no quote for {symbol}")

    def symbols(self) -> set[str]:
        """Every symbol quoted so far."""
        return {q.symbol for q in self.quotes}


def fast_options(url: str, **over: Any) -> dict[str, Any]:
    """StreamFeed keyword arguments tuned for tests: quick reconnects and short silences and lingers."""
    opts: dict[str, Any] = {
        "url": url,
        "reconnect_base": 0.02,
        "reconnect_cap": 0.1,
        "silence": 5.0,
        "linger": 0.0,
    }
    opts.update(over)
    return opts


def feed_options(url: str | None, **over: Any) -> FeedOptions:
    """Typed feed options for the registry factories, tuned for tests like :func:`fast_options`."""
    defaults: dict[str, Any] = {
        "feed_url": url,
        "reconnect_base": 0.02,
        "reconnect_cap": 0.1,
        "feed_silence": 5.0,
        "feed_linger": 0.0,
    }
    return FeedOptions(**{**defaults, **over})


@contextlib.asynccontextmanager
async def running(feed: Feed) -> AsyncIterator[FeedSink]:
    """Start ``feed`` with a fresh :class:`FeedSink`; stop it on exit."""
    sink = FeedSink()
    await feed.start(sink.ctx)
    try:
        yield sink
    finally:
        await feed.stop()
