"""Running a set of feeds, once for ``ticker serve``, ``ticker feed`` and ``ticker record``.

A :class:`FeedRunner` gives each feed the part of the demand it :meth:`~feeds.base.Feed.owns`
(the first part before it starts the feed with its :class:`~feeds.base.FeedContext`), judges
readiness (every feed up; steady feeds producing lately), loads each started feed's reference data
into one :class:`~ticker.directory.Directory` (at start and every ``reference_refresh``, failures
retried with backoff; ``load_reference=False`` for ``ticker record``, which needs none) and stops
every feed side by side under one deadline. Metrics reach it through :func:`metered`: any object with the :class:`FeedMeter`
methods counts what the feeds report, without this module knowing the metrics library.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Protocol

from feeds.base import BarSink, Feed, FeedContext
from feeds.errors import FeedError, RateLimited
from feeds.ratelimit import ThrottledLog
from ticker.backoff import Backoff
from ticker.bars import Bar
from ticker.directory import Directory
from ticker.quote import Quote
from ticker.search import index_of
from ticker.tasks import cancel_and_wait

log = logging.getLogger("ticker.feeds")

Publish = Callable[[Quote], None]
PublishMany = Callable[[list[Quote]], None]
ContextFor = Callable[[Feed], FeedContext]


class FeedMeter(Protocol):
    """Where the feeds' reports are counted (the server's and the publisher's metrics)."""

    def count_feed(self, feed: str, publish: Publish) -> Publish:
        """``publish`` wrapped to count each quote of ``feed`` (and its lag) on the way."""

    def count_feed_many(self, feed: str, publish: PublishMany) -> PublishMany:
        """:meth:`count_feed` for a list of quotes at once (``publish`` takes them all)."""

    def count_feed_error(self, feed: str, kind: str) -> None:
        """One malformed or unexpected upstream message of ``kind``."""

    def count_feed_reconnect(self, feed: str) -> None:
        """One reconnect of ``feed`` to its upstream."""

    def watch_feed_up(self, feed: str, probe: Callable[[], bool]) -> None:
        """Report ``probe()`` (the feed is up) whenever the metrics are read."""


def metered(
    meter: FeedMeter, publish: Publish, bar: BarSink | None = None, publish_many: PublishMany | None = None
) -> ContextFor:
    """Contexts that count every feed's quotes, errors, reconnects and health in ``meter``, then ``publish``
    (several at once: ``publish_many``, where given); a provider's own bars go to ``bar`` (None: dropped)."""

    def context(feed: Feed) -> FeedContext:
        name = feed.name
        meter.watch_feed_up(name, lambda: feed.health().up)
        return FeedContext(
            emit=meter.count_feed(name, publish),
            emit_many=None if publish_many is None else meter.count_feed_many(name, publish_many),
            error=partial(meter.count_feed_error, name),
            reconnected=partial(meter.count_feed_reconnect, name),
            **({} if bar is None else {"bar": bar}),
        )

    return context


def _owned(feed: Feed, symbols: tuple[str, ...]) -> frozenset[str]:
    return frozenset(s for s in symbols if feed.owns(s))


class FeedRunner:
    """Starts, feeds demand to, judges and stops a set of feeds.

    ``stale_after``: seconds a steady feed (simulated, replay) may stay silent before readiness
    fails; None leaves silence out of readiness. ``clock`` is the monotonic clock feeds stamp
    their last data with. ``load_reference``: load each feed's reference data into :attr:`directory`
    (serve and feed do; record does not, as it answers nobody's questions about symbols).
    """

    def __init__(
        self,
        feeds: Sequence[Feed],
        context: ContextFor,
        *,
        stale_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        load_reference: bool = True,
    ) -> None:
        self.feeds = list(feeds)
        self.load_reference = load_reference
        self.started: list[Feed] = []
        self.stale_after = stale_after
        self._context = context
        self._clock = clock
        self._since = clock()
        #: The feeds' reference data: each feed is a source, ``pending`` until its first load.
        self.directory = Directory()
        for feed in self.feeds:
            self.directory.expect(feed.name)
        self._loaders: list[asyncio.Task[None]] = []
        self._bugs = ThrottledLog(log, interval=600.0)  # unexpected loader errors, with their traceback

    async def start(self, demand: Callable[[], Iterable[str]] = tuple) -> None:
        """Start each feed in turn, having first given it its part of the current ``demand()`` (so it
        subscribes to that from the start; read per feed, as a start may wait); a failing start stops
        those already started."""
        self._since = self._clock()
        for feed in self.feeds:
            try:
                feed.set_demand(_owned(feed, tuple(demand())))
                await feed.start(self._context(feed))
            except BaseException:
                await self.stop()
                raise
            self.started.append(feed)
            if self.load_reference:
                task = asyncio.get_running_loop().create_task(
                    self._load_reference(feed), name=f"reference-{feed.name}"
                )
                self._loaders.append(task)

    async def _load_reference(self, feed: Feed, retry: Backoff | None = None) -> None:
        """Load ``feed``'s reference data now and every ``reference_refresh`` s; retry failures with backoff.

        Any failure is retried, a bug's too (logged with its traceback, at most once per ten minutes):
        only cancelling ends the loader."""
        backoff = retry or Backoff(base=5.0, cap=300.0)
        while True:
            try:
                entries = await feed.load_reference()
                if entries is None:  # the feed cannot tell: its symbols stay pending
                    return
                self.directory.replace(feed.name, entries)
                log.info("feed %s: %d symbols in its directory", feed.name, len(entries))
                await asyncio.to_thread(
                    index_of, self.directory
                )  # built now, beside the loop, not by a first search
            except (FeedError, OSError, TimeoutError) as exc:
                delay = backoff.next_delay()
                if isinstance(exc, RateLimited) and exc.retry_after is not None:
                    delay = max(
                        delay, min(exc.retry_after, 3600.0)
                    )  # the provider's Retry-After, within reason
                log.warning(
                    "feed %s: reference data not loaded (%s); retrying in %.0f s", feed.name, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            except (
                Exception
            ) as exc:  # a bug must not end the loader for good (CancelledError is no Exception)
                delay = backoff.next_delay()
                self._bugs.log(
                    logging.ERROR,
                    f"bug-{feed.name}",
                    "feed %s: loading reference data failed unexpectedly (%s: %s); retrying in %.0f s",
                    feed.name,
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=exc,
                )
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            await asyncio.sleep(feed.reference_refresh)

    def set_demand(self, symbols: Iterable[str]) -> None:
        """Tell each feed the symbols of ``symbols`` it owns."""
        wanted = tuple(symbols)
        for feed in self.feeds:
            feed.set_demand(_owned(feed, wanted))

    async def history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """``symbol``'s bars from the history endpoint of the first feed that owns it (see
        :meth:`~feeds.base.Feed.load_history`); None when no feed owns it or has history at ``interval``."""
        for feed in self.feeds:
            if feed.owns(symbol):
                return await feed.load_history(symbol, interval, start_ms, end_ms)
        return None

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): every feed up and, with ``stale_after``, steady feeds producing recently.

        Provider feeds count as healthy while connected (or polling): a closed market sends
        nothing, and that is no fault. Steady feeds always produce, so their silence is one.
        """
        now = self._clock()
        for feed in self.feeds:
            h = feed.health()
            if not h.up:
                return False, f"feed {feed.name} is down: {h.reason or 'unknown'}"
            if feed.steady and self.stale_after is not None:
                quiet = now - (h.last_data if h.last_data is not None else self._since)
                if quiet > self.stale_after:
                    return False, f"feed {feed.name} produced no data for {quiet:.0f} s"
        return True, "ready"

    async def stop(self, within: float = 1.5, alongside: Mapping[str, Awaitable[None]] | None = None) -> None:
        """Stop the started feeds, and ``alongside`` (name → its stop, a broker say), side by side within ``within`` s."""
        started, self.started = self.started, []
        loaders, self._loaders = self._loaders, []
        for task in loaders:
            await cancel_and_wait(task)
        stops = [(f"feed {f.name}", f.stop()) for f in started] + list((alongside or {}).items())
        if not stops:
            return
        tasks = [(name, asyncio.ensure_future(stop)) for name, stop in stops]
        _, pending = await asyncio.wait([t for _, t in tasks], timeout=within)
        for name, task in tasks:
            if task in pending:
                task.cancel()
                log.warning("%s did not stop in time", name)
            elif not task.cancelled() and task.exception() is not None:
                log.error("%s failed to stop: %r", name, task.exception())
