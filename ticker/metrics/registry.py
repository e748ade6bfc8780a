"""Prometheus metrics of one server (its own registry, so several servers can share a process).

Names are part of the contract (docs/operations.md). Label values are bounded: transports,
feed names, error codes and close reasons; never a connection or a symbol.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from ticker import __version__
from ticker.metrics.fast import FastCounter, FastHistogram, HistogramChild
from ticker.quote import Quote

disable_created_metrics()  # the *_created series only add noise to every scrape

#: ``ticker_role`` values: ``ticker serve`` with its own feeds, ``ticker serve --broker redis``, ``ticker feed``.
ROLES = ("single", "edge", "publisher")

# Sub-millisecond to seconds.
LATENCY_BUCKETS = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)  # fmt: skip


class Metrics:
    """Every metric the server exposes, registered in :attr:`registry`."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build_info = Gauge(
            "ticker_build_info", "Version of the running ticker server.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        self.connections = Gauge("ticker_connections", "Open client connections.", ["transport"], registry=r)
        self.connections_opened = Counter(
            "ticker_connections_opened", "Client connections accepted.", ["transport"], registry=r
        )
        self.connections_closed = Counter(
            "ticker_connections_closed",
            "Client connections closed, by reason.",
            ["transport", "reason"],
            registry=r,
        )
        self.max_connections = Gauge(
            "ticker_max_connections",
            "Connections this process serves at most: --max-connections, lowered to fit its file descriptors.",
            registry=r,
        )
        self.accept_errors = Counter(
            "ticker_accept_errors",
            "Times a listener stopped accepting for a moment: accept() failed (emfile, enfile, enobufs, "
            "enomem, other) or a connection was closed at once to keep the last descriptors (reserve); "
            "and times it closed the oldest connection that had sent no request to keep them (reserve_idle, "
            "no pause).",
            ["reason"],
            registry=r,
        )
        self.subscriptions = Gauge(
            "ticker_subscriptions", "Symbol subscriptions over all connections.", registry=r
        )
        self.symbols_active = Gauge(
            "ticker_symbols_active", "Symbols with at least one subscriber.", registry=r
        )
        self.symbols_unserved = Gauge(
            "ticker_symbols_unserved",
            "Demanded symbols not asked of the feeds: past --max-active-symbols or a feed's plan limit.",
            registry=r,
        )
        self.ready = Gauge("ticker_ready", "1 while /readyz answers 200, else 0.", registry=r)
        self.role = Gauge(
            "ticker_role",
            "1 for this process's role: single (its own feeds), edge (fed by a broker), publisher (ticker feed).",
            ["role"],
            registry=r,
        )
        self.hub_updates = FastCounter(
            "ticker_hub_updates", "Quote updates that entered the hub.", registry=r
        )
        self.frames_sent = FastCounter(  # counted in every flush
            "ticker_frames_sent", "Frames of quotes handed to client sockets.", registry=r
        )
        self.updates_sent = FastCounter(  # counted in every flush
            "ticker_updates_sent", "Quote entries (Q) delivered to clients.", registry=r
        )
        self.bytes_sent = FastCounter(  # counted in every flush
            "ticker_bytes_sent", "Bytes of quote frames handed to client sockets.", registry=r
        )
        self.updates_conflated = FastCounter(  # counted in every flush
            "ticker_updates_conflated",
            "Updates replaced by a newer value of the same symbol before a slow connection could take them.",
            registry=r,
        )
        self.slow_disconnects = Counter(
            "ticker_slow_consumer_disconnects",
            "Connections closed with 1013 for staying over the unsent-bytes bound too long.",
            registry=r,
        )
        self.buffered_bytes = Gauge(
            "ticker_buffered_bytes",
            "Unsent bytes (quotes and replies) held for all client connections, as last seen.",
            registry=r,
        )
        self.budget_disconnects = Counter(
            "ticker_buffer_budget_disconnects",
            "Slow connections closed with 1013 because all unsent bytes passed --max-buffered-bytes.",
            registry=r,
        )
        self.client_errors = Counter(
            "ticker_client_errors", "Error messages sent to clients, by code.", ["code"], registry=r
        )
        self.auth_failures = Counter(
            "ticker_auth_failures",
            "Requests and messages refused by --auth jwt, by transport and reason "
            "(missing, invalid, expired, forbidden_symbol, user_limit).",
            ["transport", "reason"],
            registry=r,
        )
        self.connections_refused = Counter(
            "ticker_connections_refused",
            "Connects (ws, sse) and requests (rest) refused before any data, by transport and reason "
            "(max_connections, ip_limit, ip_rate, process_rate); tcp: connections over "
            "--max-sockets-per-ip, refused at accept (ip_sockets).",
            ["transport", "reason"],
            registry=r,
        )
        self.requests_refused = Counter(
            "ticker_requests_refused",
            "HTTP requests answered at their headers, before any route or body, by reason "
            "(host: 421 for a Host not allowed; body: 405/413 for a body no route takes).",
            ["reason"],
            registry=r,
        )
        for reason in ("host", "body"):  # both exposed from the start, at 0
            self.requests_refused.labels(reason)
        self.throttled_subscriptions = Gauge(
            "ticker_throttled_subscriptions",
            "Subscriptions (connection, symbol) with a maximum rate in force (max_hz or a token's cap).",
            registry=r,
        )
        self.connections_delayed = Gauge(
            "ticker_connections_delayed",
            "Open connections receiving at least one symbol delayed (the delayed tier).",
            registry=r,
        )
        self.delay_line_entries = Gauge(
            "ticker_delay_line_entries", "Quotes held back by the delayed tier's delay line.", registry=r
        )
        self.bar_symbols = Gauge(
            "ticker_bar_symbols",
            "Symbols whose OHLCV bars the node holds (bounded, least recently used out).",
            registry=r,
        )
        self.bars = Gauge(
            "ticker_bars",
            "OHLCV bars the node holds, of every symbol (at most 64 bytes each).",
            registry=r,
        )
        self.bar_history_loading = Gauge(
            "ticker_bar_history_loading",
            "Symbols whose bar history is being loaded (a provider's history endpoint, Redis, the simulated market).",
            registry=r,
        )
        self.fanout_latency = FastHistogram(
            "ticker_fanout_latency_seconds",
            "Time from an update reaching the hub to its frames being handed to the sockets.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.flush_duration = FastHistogram(  # observed in every flush
            "ticker_flush_duration_seconds",
            "Duration of one fan-out flush.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feed_lag = FastHistogram(
            "ticker_feed_lag_seconds",
            "Time from the feed's timestamp to receipt.",
            ["feed"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feed_updates = FastCounter(
            "ticker_feed_updates", "Quotes received from a feed.", ["feed"], registry=r
        )
        self.feed_up = Gauge(
            "ticker_feed_up", "1 while a feed is connected (or polling), else 0.", ["feed"], registry=r
        )
        self.feed_errors = Counter(
            "ticker_feed_errors", "Malformed or unexpected upstream messages.", ["feed", "kind"], registry=r
        )
        self.feed_reconnects = Counter(
            "ticker_feed_reconnects", "Reconnects to a feed's upstream.", ["feed"], registry=r
        )

        self.broker_up = Gauge(
            "ticker_broker_up",
            "1 while the broker is connected (always 1 for the in-process broker).",
            registry=r,
        )
        self.broker_reconnects = Counter(
            "ticker_broker_reconnects", "Reconnects to the broker after losing it.", registry=r
        )
        self.broker_lag = FastHistogram(
            "ticker_broker_lag_seconds",
            "Time from the publisher's publish of a quote batch to its receipt by this node (Redis broker).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.broker_messages = Counter(
            "ticker_broker_messages",
            "Quote messages received from (edge) or sent to (publisher) the broker.",
            registry=r,
        )
        self.broker_errors = Counter(
            "ticker_broker_errors", "Malformed messages from the broker, dropped.", registry=r
        )
        self.publisher_active = Gauge(
            "ticker_publisher_active",
            "1 while this ticker feed holds the publisher lease and publishes, 0 while it stands by "
            "(always 0 in ticker serve).",
            registry=r,
        )

    # -- what feeds report (the feed runner's FeedMeter) ---------------------------------------
    def count_feed(self, feed: str, publish: Callable[[Quote], None]) -> Callable[[Quote], None]:
        """``publish`` wrapped to record each quote's lag and count for the feed named ``feed``."""
        lag = self._feed_lag(feed)  # observed inline: this runs once per quote
        counts, bounds = lag.counts, lag.bounds
        now = time.time

        def emit(quote: Quote) -> None:
            seconds = now() - quote.ts_ms / 1000.0
            if seconds < 0.0:
                seconds = 0.0
            counts[bisect_left(bounds, seconds)] += 1
            lag.sum += seconds
            publish(quote)

        return emit

    def _feed_lag(self, feed: str) -> HistogramChild:
        """``feed``'s lag histogram; its count of observations is ``ticker_feed_updates_total{feed}``."""
        lag = self.feed_lag.labels(feed)
        counts = lag.counts
        self.feed_updates.count_from(lambda: float(sum(counts)), feed)  # one per lag observed
        return lag

    def count_feed_many(
        self, feed: str, publish: Callable[[list[Quote]], None]
    ) -> Callable[[list[Quote]], None]:
        """:meth:`count_feed` for several quotes at once: ``publish`` takes the list after they are counted."""
        lag = self._feed_lag(feed)
        counts, bounds = lag.counts, lag.bounds
        now = time.time

        def emit_many(quotes: list[Quote]) -> None:
            t = now()
            total = 0.0
            for quote in quotes:
                seconds = t - quote.ts_ms / 1000.0
                if seconds < 0.0:
                    seconds = 0.0
                counts[bisect_left(bounds, seconds)] += 1
                total += seconds
            lag.sum += total
            publish(quotes)

        return emit_many

    def count_feed_error(self, feed: str, kind: str) -> None:
        """One malformed or unexpected upstream message of ``kind`` from ``feed``."""
        self.feed_errors.labels(feed, kind).inc()

    def count_feed_reconnect(self, feed: str) -> None:
        """One reconnect of ``feed`` to its upstream."""
        self.feed_reconnects.labels(feed).inc()

    def watch_feed_up(self, feed: str, probe: Callable[[], bool]) -> None:
        """``ticker_feed_up{feed}`` reads ``probe()`` at every scrape."""
        self.feed_up.labels(feed).set_function(lambda: 1.0 if probe() else 0.0)

    def set_role(self, role: str) -> None:
        """Expose ``ticker_role{role}`` = 1 (one of :data:`ROLES`), so rules tell a publisher from an edge node."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.role.clear()
        self.role.labels(role).set(1)

    def count_accept_error(self, reason: str) -> None:
        """One accept() failure (or reserve shed) of a listener, by ``reason``."""
        self.accept_errors.labels(reason).inc()

    def count_request_refused(self, reason: str) -> None:
        """One HTTP request refused at its headers (``host`` or ``body``)."""
        self.requests_refused.labels(reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
