"""A node: hub, fan-out, broker, feeds and client connections wired together, and their lifecycle.

The node knows no HTTP; :mod:`ticker.server.service` puts its transports on listening sockets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from feeds.base import Feed
from feeds.registry import create_feeds
from feeds.runner import FeedRunner, metered
from ticker import protocol
from ticker.barbook import MAX_SYMBOLS as MAX_BAR_SYMBOLS
from ticker.barbook import BarBook
from ticker.barhub import BarHub
from ticker.bars import Bar
from ticker.broker import create_broker
from ticker.broker.base import Broker
from ticker.daystats import listed_day_stats, listing_sessions, new_york_day_start
from ticker.delay import DelayLine, split_keys
from ticker.directory import Directory
from ticker.entitlements import UserSlots
from ticker.hub import IDLE_SWEEP_SECONDS, MAX_IDLE_SYMBOLS, Hub
from ticker.metrics.registry import Metrics
from ticker.quote import Quote
from ticker.server import heap
from ticker.server.admission import Admission
from ticker.server.allotter import Allotter
from ticker.server.config import Config
from ticker.server.fanout import Connection, Fanout
from ticker.server.history import UNREAD_SECONDS, HistoryLoader
from ticker.server.history import WAIT as HISTORY_WAIT
from ticker.server.status_board import StatusBoard
from ticker.session import Access
from ticker.tables import compact, compact_all, compact_held

if TYPE_CHECKING:
    from ticker.auth.verifier import TokenVerifier

log = logging.getLogger("ticker")

SHUTDOWN_GRACE = 2.0  # seconds given to clients to answer the 1001 close
#: A slow share-out of scarce symbols takes at most a fifth of the loop: it is worked out again no sooner than
#: four times its duration after it ended (:class:`~ticker.server.allotter.Allotter`).
SHARE_OUT_DUTY = 4.0


def _as_is(quote: Quote) -> Quote:
    return quote


class Node:
    """One ticker node: owns the hub, the fan-out, the broker, the feeds and the connections."""

    def __init__(self, config: Config, feeds: list[Feed] | None = None, broker: Broker | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.metrics.set_role("single" if config.broker == "memory" else "edge")
        self.hub: Hub[Connection] = Hub(max_symbols=config.max_symbols, on_demand=self._on_demand)
        hub = self.hub
        self.metrics.hub_updates.count_from(lambda: float(hub.updates_in))  # the hub counts what enters it
        # Until a source names itself (set_epoch), this process numbers q: an epoch of its own.
        self.hub.epoch = secrets.token_hex(6)
        acc = config.access
        jwt = acc.auth == "jwt"
        #: Who may connect: with ``--auth jwt`` a token, and at most the user's cap of connections.
        self.access = Access(
            jwt,
            UserSlots(acc.max_connections_per_user),
            acc.auth_timeout,
            acc.jwt_leeway,
            max_hz=1000.0 / config.flush_ms,
        )
        #: Per-address limits: connections, connect and REST request rates; the process's connect rate.
        self.admission = Admission(
            config.max_connections_per_ip,
            (config.connect_rate, config.connect_burst),
            (config.process_connect_rate, config.process_connect_burst),
            (config.rest_rate, config.rest_burst),
        )
        #: Checks tokens; set by :class:`~ticker.server.service.Service` before it listens (``--auth jwt``).
        self.verifier: TokenVerifier | None = None
        #: The delayed tier (``--auth jwt`` only: without tokens everyone is real-time).
        self.delay_line = DelayLine(acc.delay) if jwt else None
        self._delayed_demand: frozenset[str] = frozenset()
        #: Bar subscriptions (``subscribe_bars``, ``/sse?bars=``): they make their symbols demanded too.
        self.bar_hub: BarHub[Connection] = BarHub(
            config.max_bar_subscriptions, acc.delay if jwt else 0.0, self._on_demand
        )
        self.fanout = Fanout(
            self.hub,
            self.metrics,
            flush_interval=config.flush_ms / 1000.0,
            duty=config.flush_duty,
            slow_bytes=config.slow_bytes,
            slow_timeout=config.slow_timeout,
            max_buffered=config.max_buffered_bytes,
            delay=self.delay_line,
        )
        self.connections: set[Connection] = set()
        self.broker = broker or create_broker(
            config.broker,
            self.metrics,
            self.hub.last,
            partial(self.fanout.resync, self.connections),
            prefix=config.broker_prefix,
            demand_ttl=config.demand_ttl,
            on_epoch=self.set_epoch,
        )
        self.feeds = feeds if feeds is not None else create_feeds(config.feeds, config.feed_options)
        #: Every symbol's OHLCV bars: aggregated from delivered quotes (memory broker) or brought by the
        #: broker (Redis: the publisher's), a provider's own bars winning; history loaded in the background.
        self.bars = BarBook(
            listing_sessions(lambda: self.directory, new_york_day_start()),
            MAX_BAR_SYMBOLS,
            keep=lambda s: s in self._history_demand,  # a symbol someone receives keeps its bars
            unread_seconds=UNREAD_SECONDS,  # a minute of 1s bars until someone reads them
        )
        self._bar_quote = self.bars.on_quote if self.broker.aggregates_bars else None
        self.fanout.serve_bars(self.bar_hub, self.bars)
        if not self.broker.aggregates_bars:
            self.broker.bar_sink = lambda s, i, b: self._apply_bar(s, i, b, False)
        self.runner = FeedRunner(
            self.feeds,
            metered(
                self.metrics,
                self.broker.publish,
                bar=self._provider_bar,
                publish_many=self.broker.publish_many,
            ),
            stale_after=config.stale_after,
        )
        self._history_demand: frozenset[str] = frozenset()
        self._sessions_seen = -1  # the directory version the bars' session days were last checked against
        self.history_loader = HistoryLoader(
            self.bars,
            (self.broker.load_bars, self.runner.history),
            lambda s: s in self._history_demand,
            on_loaded=self._history_loaded,
            on_dropped=self._forget_unheld_day,  # statistics a REST read's load seeded, or one after the demand
        )
        #: The session's open, high, low, VWAP and previous close, where a feed leaves them out: filled in
        #: as each quote enters the node, before the hub encodes it (through Redis the publisher did it).
        self.day_stats = listed_day_stats(lambda: self.directory)
        self._fill_day = self.day_stats.apply  # in place: the quote it returns is the one it was given
        self.hub.on_forget = self._forget_day
        self.hub.keep = self._carries
        self._carried: frozenset[str] = frozenset()  # symbols a feed carries whatever the demand
        if self.feeds and all(getattr(f, "completes_quotes", False) for f in self.feeds):
            self._fill_day = _as_is  # the --workers feed process filled them in: every worker serves the same
        #: What the node says of each symbol: unknown ones refused, states pushed (``--unknown-symbols``).
        #: Which demanded symbols are served: all, until ``--max-active-symbols`` or a feed's plan limit is
        #: reached; then a fair share per connection, the rest ``unavailable`` (:mod:`ticker.allocation`).
        self.allotter = Allotter(self, config.max_active_symbols, self._schedule_push, duty=SHARE_OUT_DUTY)
        self.board = StatusBoard(
            self,
            config.stale_after,
            refuse_unknown=config.unknown_symbols == "refuse",
            unserved=self.allotter.unserved,
        )
        self._board_failed_at = -math.inf
        self._idle_sweep_at = 0.0
        if config.unknown_symbols == "allow":  # a lab: the simulated market makes up any demanded symbol
            for feed in self.feeds:
                if hasattr(feed, "invent"):
                    feed.invent = True
        self.closing = False
        self._demand_due = False
        self._drained = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._io_owners: list[object] = []  # the HTTP server's, the event loop's (:meth:`compact_also`)
        self._aftermath = heap.Aftermath()
        self._closed = 0  # fanout.closed at the last look
        self._compacted = 0  # bytes the last compaction let go, not yet told to the Aftermath
        self._trimming: asyncio.Future[bool] | None = None
        m = self.metrics
        m.subscriptions.set_function(lambda: self.hub.subscription_count)
        m.symbols_active.set_function(lambda: len(self.demand()))
        m.symbols_unserved.set_function(lambda: self.allotter.current().unserved)
        m.throttled_subscriptions.set_function(self.hub.throttled_count)
        m.connections_delayed.set_function(lambda: sum(1 for c in self.connections if c.receives_delayed()))
        m.bar_symbols.set_function(lambda: len(self.bars))
        m.bars.set_function(self.bars.bars_held)
        m.buffered_bytes.set_function(self.fanout.buffered_total)
        m.bar_history_loading.set_function(self.history_loader.loading)
        line = self.delay_line
        if line is not None:
            m.delay_line_entries.set_function(line.held)

    # -- connections -------------------------------------------------------------------------
    def connection_count(self) -> int:
        """Open client connections over every transport."""
        return len(self.connections)

    def register(self, conn: Connection) -> None:
        """A transport accepted ``conn``."""
        self.connections.add(conn)
        self.hub.add(conn)
        self.metrics.connections.labels(conn.transport).inc()
        self.metrics.connections_opened.labels(conn.transport).inc()

    def unregister(self, conn: Connection, reason: str) -> None:
        """``conn`` closed, for ``reason`` (a bounded label: client, slow_consumer, flood, shutdown, ...)."""
        if conn in self.connections:
            self.connections.discard(conn)
            self.hub.remove(conn)
            self.bar_hub.remove(conn)
            self.fanout.remove(conn)
            self.metrics.connections.labels(conn.transport).dec()
            self.metrics.connections_closed.labels(conn.transport, reason).inc()
            if self.closing and not self.connections:
                self._drained.set()

    # -- data in -----------------------------------------------------------------------------
    def set_epoch(self, epoch: str) -> bool:
        """The source that numbers ``q`` is now the one named ``epoch`` (a ``--workers`` feed process, the Redis
        publisher of a term): snapshots carry it as ``e`` and SSE streams as their ``id``. Every value the old
        source numbered goes (subscribed ones too, the views' state and the delayed tier's held entries): under
        the new epoch a client would take its ``q`` as the new source's and drop that source's updates until
        they pass it. The caller delivers the new source's values next, in the same loop pass (the edge's
        re-read of the last values) or later (a worker's catch-up); on the next loop pass every connection gets
        a snapshot under the new epoch of what is held then (an empty one too: the epoch must reach every
        connection), so clients start deduplicating again. False: ``epoch`` is not a valid name (1 to 64 of
        ``A-Z a-z 0-9 # : . _ -``) or is the one in force, and nothing changes."""
        if epoch == self.hub.epoch or protocol.EPOCH.fullmatch(epoch) is None:
            return False
        log.info("quotes are now numbered by source epoch %s (was %s)", epoch, self.hub.epoch)
        self.hub.epoch = epoch
        self.hub.forget_values()
        if self.delay_line is not None:
            self.delay_line.drop_held()
        try:
            asyncio.get_running_loop().call_soon(self._resync_epoch)
        except RuntimeError:  # no loop (not started): nobody is connected yet
            self._resync_epoch()
        return True

    def _resync_epoch(self) -> None:
        self.fanout.resync(self.connections, empty=True)

    def _on_demand(self, symbols: frozenset[str]) -> None:
        self.allotter.demand_changed()
        self._schedule_push()

    def _schedule_push(self) -> None:
        # Subscription changes come one message at a time: tell feeds and broker once per loop pass.
        if not self._demand_due:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop yet: start() pushes the first demand
                return
            self._demand_due = True
            loop.call_soon(self._push_demand)

    def demand(self) -> frozenset[str]:
        """The symbols someone receives, real-time or delayed, quotes or bars."""
        rt, dl = split_keys(self.hub.demand())
        return frozenset(rt | dl) | self.bar_hub.demand()

    def _push_demand(self) -> None:
        self._demand_due = True  # a change of the served set found just now needs no other push
        symbols = self.allotter.current().served  # within the budget and the feeds' plan limits
        self._demand_due = False
        dl = split_keys(self.hub.demand())[1]
        self.runner.set_demand(symbols)
        self.broker.set_demand(symbols)
        if symbols != self._history_demand:  # a symbol first demanded gets its bar history
            added, removed = symbols - self._history_demand, self._history_demand - symbols
            self._history_demand = symbols
            self.history_loader.demand_changed(added, removed)
            for symbol in removed:  # the idle bound may have dropped it while it was still demanded
                self._forget_unheld_day(symbol)
        line = self.delay_line
        if (
            line is not None
        ):  # record what someone receives delayed; a symbol left keeps its line one delay longer
            delayed = frozenset(dl)
            line.keep(delayed - self._delayed_demand, math.inf)
            line.stop_keeping(self._delayed_demand - delayed, time.monotonic() + line.delay)
            self._delayed_demand = delayed

    def _deliver(self, quote: Quote) -> None:
        quote = self._fill_day(quote)
        if self._bar_quote is not None:  # the memory broker: this node aggregates the bars
            self._bar_quote(quote)
        self.fanout.publish(quote)

    def _deliver_many(self, quotes: list[Quote]) -> None:
        """:meth:`_deliver` of each, in order (the hub takes each before the next is filled in: a symbol the idle
        bound drops meanwhile starts its session afresh), with one call into the fan-out for them all."""
        fill = self._fill_day  # fills the quote in place (DayStats.apply, or leaves it as it is)
        bar = self._bar_quote
        if bar is None:
            self.fanout.publish_many(quotes, fill)
            return

        def prepare(quote: Quote) -> None:
            fill(quote)
            bar(quote)

        self.fanout.publish_many(quotes, prepare)

    def _forget_day(self, key: str) -> None:
        """The hub dropped ``key``'s last value (nobody receives it real-time; the hub never drops what
        :attr:`Hub.keep` names): its day statistics go too, seeded again from its day bars when it is next
        demanded; not while anyone receives the symbol delayed or its bars (a delayed key has none of its own)."""
        if key in self._history_demand:
            return
        if self.day_stats.forget(key):  # none (never quoted, a delayed key): its day bars' load still stands
            self.history_loader.stats_forgotten(key)

    def _carries(self, symbol: str) -> bool:
        return symbol in self._carried

    def _apply_bar(self, symbol: str, interval: str, bar: Bar, final: bool = True) -> None:
        """The Redis edge's bar: into the book, and a flush for its bar subscribers."""
        self.bars.apply(symbol, interval, bar, final)
        self.fanout.bars_changed()

    def _provider_bar(self, symbol: str, interval: str, bar: Bar, final: bool = True) -> None:
        """A provider's own bar: into the book (its 5m and 1h bars made again of the 1m), and a flush."""
        self.bars.apply(symbol, interval, bar, final, derive=True)
        self.fanout.bars_changed()

    # -- bar history -------------------------------------------------------------------------
    def _history_loaded(self, symbol: str, now_ms: int) -> None:
        """Seed the day statistics with the session so far (its ``1d`` bar and the previous close), so that a
        quote's open, high and low agree with the chart even on a node started mid-session."""
        if self.broker.aggregates_bars:  # through Redis the publisher does it
            self.day_stats.seed_days(symbol, self.bars.last(symbol, "1d", 2), now_ms)
        self._resend_bars(symbol, now_ms)

    def _forget_unheld_day(self, symbol: str) -> None:
        """Nobody receives ``symbol`` any more (its demand went, or its bars): its day statistics go now unless
        the hub holds its last value (they go with that, :meth:`_forget_day`)."""
        if self.hub.state(symbol) is None:
            self._forget_day(symbol)

    def _resend_bars(self, symbol: str, now_ms: int) -> None:
        """History that came after a subscriber's first ``bars`` (the read waited :data:`HISTORY_WAIT` s at
        most): each live bar subscriber of ``symbol`` gets a fresh ``bars``, one payload per (key, interval,
        history), framed by its transport."""
        for payload, conns in self.bar_hub.reopen(self.bars, symbol, now_ms):
            for conn in conns:
                conn.send_message("bars", payload)

    def _check_sessions(self) -> None:
        """When the directory changes, a symbol whose bars (or day statistics) began before its entry arrived
        (UTC days where it trades New York days) starts afresh and has its history loaded again."""
        version = self.directory.version
        if version == self._sessions_seen:
            return
        self._sessions_seen = version
        for symbol in self.bars.symbols():
            if self.bars.resession(symbol):
                self.day_stats.resession(symbol, int(time.time() * 1000))
                self.history_loader.ensure(symbol)

    def ensure_history(self, symbol: str) -> None:
        """Start loading ``symbol``'s bar history in the background unless it is loaded or loading."""
        self.history_loader.ensure(symbol)

    async def history(self, symbol: str, within: float = HISTORY_WAIT) -> None:
        """Load ``symbol``'s bar history if it needs it, waiting at most ``within`` seconds (a bar read then
        answers with what there is)."""
        await self.history_loader.wait(symbol, within)

    async def histories(self, symbols: Iterable[str], within: float = HISTORY_WAIT) -> None:
        """:meth:`history` of several symbols side by side: every load started first, then one wait of at
        most ``within`` seconds for them all."""
        ensure = self.history_loader.ensure
        tasks = {t for s in dict.fromkeys(symbols) if (t := ensure(s)) is not None and not t.done()}
        if tasks:
            await asyncio.wait(tasks, timeout=within)

    # -- health ------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): broker up, and the feeds by :meth:`FeedRunner.readiness` (``--stale-after``)."""
        if self.closing:
            return False, "shutting down"
        if not self.broker.up:
            ready, reason = False, f"broker {self.broker.name} is down"
        else:
            ready, reason = self.runner.readiness()
        note = self.allotter.note()  # stays ready: the symbols it serves are fine
        return ready, f"{reason}; {note}" if note else reason

    async def _heartbeat_loop(self) -> None:
        """One timer for every connection's keep-alive, instead of a task or timer per connection."""
        cfg = self.config
        period = max(0.05, min(1.0, cfg.ping_interval / 4, cfg.ping_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.heartbeat(now)

    async def _health_loop(self) -> None:
        while True:  # ticker_feed_up is read at each scrape (the runner's metered contexts)
            self.metrics.ready.set(1 if self.readiness()[0] else 0)
            self.metrics.broker_up.set(1 if self.broker.up else 0)
            if self.delay_line is not None:  # end keeps past their deadline, even for symbols with no quote
                self.delay_line.prune(time.monotonic())
            self.fanout.release_bars()  # delayed bar subscriptions: the bars that passed the horizon
            closed, self._closed = self.fanout.closed - self._closed, self.fanout.closed
            dropped, self._compacted = self.history_loader.take_released() + self._compacted, 0
            released = self.fanout.take_released() + dropped  # (the fan-out's: unsent bytes too)
            objects = closed * heap.CONNECTION_BYTES + dropped  # closed connections, bars, rebuilt tables
            collect, trim = self._aftermath.tick(
                released, objects, len(self.connections) * heap.CONNECTION_BYTES, self._trimming is None
            )
            if collect:  # a burst of connections or demand went: its cycles and free lists, then its pages
                heap.collect()
            if trim:
                self._trimming = asyncio.get_running_loop().run_in_executor(None, heap.trim)
                self._trimming.add_done_callback(self._trimmed)
            self._check_sessions()
            try:
                now = time.monotonic()
                self.allotter.tick(now)
                for _ in self.board.ticking():  # a large demand: the loop runs between its steps
                    await asyncio.sleep(0)
                if now >= self._idle_sweep_at:  # last values of symbols nobody receives that stopped updating
                    self._idle_sweep_at = now + IDLE_SWEEP_SECONDS
                    self._carried = frozenset(s for f in self.feeds for s in f.carried_symbols())
                    self.hub.max_idle_symbols = MAX_IDLE_SYMBOLS + len(self._carried)
                    self.hub.expire_idle(now)
                    self._compact_tables(now)
            except Exception:  # a feed's health or symbol_state that fails must not end readiness and pushes
                now = time.monotonic()
                if now - self._board_failed_at > 60.0:  # at most one traceback a minute
                    self._board_failed_at = now
                    log.exception("symbol states not worked out")
            await asyncio.sleep(1.0)

    def _compact_tables(self, now: float) -> None:
        """After a burst of connections or demand: the refilled per-address buckets go, and the tables the burst
        sized are rebuilt at what they hold now (:mod:`ticker.tables`), so that the memory goes back."""
        owners = (self.fanout, self.bars, self.day_stats, self.history_loader, self.allotter, self.board)
        self._compacted += (
            self.admission.forget_refilled(now)
            + compact(self.connections)
            + self.hub.compact()
            + compact_held(self.bar_hub)
            + compact_all(*self.bar_hub.members.values(), *self.bar_hub.realtime.values())
            + compact_held(*owners, *self._io_owners)
        )

    def compact_also(self, *owners: object) -> None:
        """Rebuild the dicts and sets of ``owners`` too when a burst left them sized at its peak (the HTTP
        server's, the event loop's: see :func:`ticker.tables.compact_held` for which owners may be given)."""
        self._io_owners += [o for o in owners if o is not None]

    def _trimmed(self, done: asyncio.Future[bool]) -> None:
        self._trimming = None

    @property
    def directory(self) -> Directory:
        """The symbol directory this node answers with (its feeds', or the publisher's through Redis)."""
        shared = self.broker.directory()
        return shared if shared is not None else self.runner.directory

    def known_symbols(self) -> list[str]:
        """Symbols worth suggesting: what the feeds (on an edge node: the publisher's directory) offer and what
        has a last value."""
        out: dict[str, None] = {}
        for f in self.feeds:
            out.update(dict.fromkeys(f.known_symbols()))
        shared = self.broker.directory()
        if shared is not None:
            out.update(dict.fromkeys(shared.symbols()))
        out.update(dict.fromkeys(self.hub.cached_symbols()))
        return sorted(out)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start broker and feeds, push the first demand and start the keep-alive and health loops."""
        self.broker.deliver_many = self._deliver_many
        await self.broker.start(self._deliver)
        await self.runner.start()
        self._push_demand()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._health_loop()), loop.create_task(self._heartbeat_loop())]

    async def stop(self) -> None:
        """Close clients with 1001 (waiting briefly for them), then stop feeds and broker."""
        if self.closing:
            return
        self.closing = True
        self.fanout.close()
        for conn in list(self.connections):
            conn.close_going_away()
        if self.connections:
            try:
                await asyncio.wait_for(self._drained.wait(), timeout=SHUTDOWN_GRACE)
            except TimeoutError:
                log.warning("%d connections did not answer the close in time", len(self.connections))
                for conn in list(self.connections):
                    conn.abort()
        await self.history_loader.stop()
        # Feeds and broker stop side by side under one deadline, so shutdown stays within 5 s.
        await self.runner.stop(within=1.5, alongside={f"broker {self.broker.name}": self.broker.stop()})
        for task in self._tasks:
            task.cancel()
