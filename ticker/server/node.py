"""A node: hub, fan-out, broker, feeds and client connections wired together, and their lifecycle.

The node knows no HTTP; :mod:`ticker.server.service` puts its transports on listening sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time

from feeds.base import Feed, FeedContext
from feeds.registry import create_feeds
from ticker import protocol
from ticker.broker import create_broker
from ticker.broker.base import Broker
from ticker.hub import Hub
from ticker.metrics.registry import Metrics
from ticker.quote import Quote
from ticker.server.config import Config
from ticker.server.fanout import Connection, Fanout

log = logging.getLogger("ticker")

SHUTDOWN_GRACE = 2.0  # seconds given to clients to answer the 1001 close


class Node:
    """One ticker node: owns the hub, the fan-out, the broker, the feeds and the connections."""

    def __init__(self, config: Config, feeds: list[Feed] | None = None, broker: Broker | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.hub: Hub[Connection] = Hub(max_symbols=config.max_symbols, on_demand=self._on_demand)
        self.fanout = Fanout(
            self.hub,
            self.metrics,
            flush_interval=config.flush_ms / 1000.0,
            slow_bytes=config.slow_bytes,
            slow_timeout=config.slow_timeout,
        )
        self.broker = broker or create_broker(
            config.broker,
            self.metrics,
            self.hub.last,
            self.resync,
            prefix=config.broker_prefix,
            demand_ttl=config.demand_ttl,
        )
        self.feeds = feeds if feeds is not None else create_feeds(config.feeds, config.args)
        self.connections: set[Connection] = set()
        self.closing = False
        self._demand_due = False
        self._drained = asyncio.Event()
        self.started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        m = self.metrics
        m.subscriptions.set_function(lambda: self.hub.subscription_count)
        m.symbols_active.set_function(lambda: self.hub.demand_count)
        for f in self.feeds:
            m.feed_up.labels(f.name).set(0)

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
            self.fanout.remove(conn)
            self.metrics.connections.labels(conn.transport).dec()
            self.metrics.connections_closed.labels(conn.transport, reason).inc()
            if self.closing and not self.connections:
                self._drained.set()

    def resync(self) -> int:
        """Send every connection a ``snapshot`` of its symbols' last values (after a broker resume).

        One payload per distinct symbol set and one frame per transport, as in the fan-out; a
        conflating connection instead gets every symbol marked, so it resumes with the latest values.
        Returns the number of connections written to.
        """
        hub = self.hub
        payloads: dict[frozenset[str], bytes | None] = {}
        frames: dict[tuple[frozenset[str], str], bytes] = {}
        sent = 0
        for conn in list(self.connections):
            key = hub.symbols_of(conn)
            if not key:
                continue
            if conn.conflating:
                conn.pending.update(dict.fromkeys(key))
                continue
            if key not in payloads:
                entries = hub.last_encoded(sorted(key))
                payloads[key] = protocol.encode_quotes(protocol.SNAPSHOT, entries) if entries else None
            payload = payloads[key]
            if payload is None:
                continue
            frame = frames.get((key, conn.transport))
            if frame is None:
                frame = frames[key, conn.transport] = conn.framer(payload)
            if conn.write_frame(frame) >= 0:
                sent += 1
        if sent:
            log.info("resynced %d connections", sent)
        return sent

    # -- data in -----------------------------------------------------------------------------
    def _on_demand(self, symbols: frozenset[str]) -> None:
        # Subscription changes come one message at a time: tell feeds and broker once per loop pass.
        if not self._demand_due:
            self._demand_due = True
            asyncio.get_running_loop().call_soon(self._push_demand)

    def _push_demand(self) -> None:
        self._demand_due = False
        symbols = self.hub.demand()
        for f in self.feeds:
            f.set_demand(frozenset(s for s in symbols if f.owns(s)))
        self.broker.set_demand(symbols)

    def _feed_context(self, feed: Feed) -> FeedContext:
        return self.metrics.feed_context(feed.name, self.broker.publish)

    def _deliver(self, quote: Quote) -> None:
        self.metrics.hub_updates.inc()
        self.fanout.publish(quote)

    # -- health ------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): broker and every feed up, and steady feeds producing data recently.

        Provider feeds count as healthy while connected (or polling): a market that is closed sends
        nothing, and that is no fault. Steady feeds (the simulated market, replay) always produce,
        so silence from them longer than ``--stale-after`` means something is wrong.
        """
        if self.closing:
            return False, "shutting down"
        if not self.broker.up:
            return False, f"broker {self.broker.name} is down"
        now = time.monotonic()
        for f in self.feeds:
            h = f.health()
            if not h.up:
                return False, f"feed {f.name} is down: {h.reason or 'unknown'}"
            if f.steady and (h.last_data is None or now - h.last_data > self.config.stale_after):
                quiet = now - (h.last_data or self.started)
                if quiet > self.config.stale_after:
                    return False, f"feed {f.name} produced no data for {quiet:.0f} s"
        return True, "ready"

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
        while True:
            for f in self.feeds:
                self.metrics.feed_up.labels(f.name).set(1 if f.health().up else 0)
            self.metrics.ready.set(1 if self.readiness()[0] else 0)
            self.metrics.broker_up.set(1 if self.broker.up else 0)
            await asyncio.sleep(1.0)

    def known_symbols(self) -> list[str]:
        """Symbols worth suggesting: what the feeds offer and what has a last value."""
        out: dict[str, None] = {}
        for f in self.feeds:
            out.update(dict.fromkeys(f.known_symbols()))
        out.update(dict.fromkeys(self.hub.cached_symbols()))
        return sorted(out)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start broker and feeds, push the first demand and start the keep-alive and health loops."""
        await self.broker.start(self._deliver)
        for f in self.feeds:
            await f.start(self._feed_context(f))
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
        # Feeds and broker stop side by side under one deadline, so shutdown stays within 5 s.
        stops = [asyncio.ensure_future(c) for c in (*(f.stop() for f in self.feeds), self.broker.stop())]
        done, pending = await asyncio.wait(stops, timeout=1.5)
        for t in pending:
            t.cancel()
            log.warning("a feed or the broker did not stop in time")
        for t in done:
            if t.exception() is not None:
                log.error("a feed or the broker failed to stop: %r", t.exception())
        for task in self._tasks:
            task.cancel()
