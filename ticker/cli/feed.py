"""``ticker feed --broker redis://...``: its options, and running feed adapters into the Redis publisher.

The running machinery (asyncio, Tornado, redis-py, the feeds) loads when the command runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from feeds.options import FeedOptions
from feeds.registry import feed_option
from ticker.broker.options import prefix_option, redis_url
from ticker.errors import OptionError
from ticker.lease import MIN_TTL
from ticker.options import ProcessOptions, nested, option, optional_port, positive

PUBLISHING = "publishing"


def lease_ttl(text: str) -> float:
    """``--lease-ttl``: seconds, at least :data:`ticker.lease.MIN_TTL`."""
    value = float(text)
    if not value >= MIN_TTL:
        raise OptionError(f"must be at least {MIN_TTL:g} s, got {text!r}")
    return value


#: The /readyz reason of a standby publisher (200: it is healthy and takes over when the lease lapses).
STANDBY_REASON = "standby: another publisher holds the lease"


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    """Everything ``ticker feed`` can be told, typed."""

    broker: str = option(
        help="redis://HOST:PORT/DB or redis+cluster://HOST:PORT[,HOST:PORT...] to publish to "
        "(password: in the URL or TICKER_REDIS_PASSWORD)",
        env="BROKER",
        parse=redis_url,
    )
    broker_prefix: str = prefix_option(PUBLISHING)
    publish_ms: float = option(
        5.0,
        "publish window in ms: at most one message per symbol per window, one round trip each (5)",
        env="PUBLISH_MS",
        parse=positive(float),
        group=PUBLISHING,
    )
    stale_after: float = option(
        15.0,
        "seconds a steady feed (simulated, replay) may go without data before its symbols are down (15)",
        env="STALE_AFTER",
        parse=positive(float),
        group=PUBLISHING,
    )
    metrics_port: int | None = option(
        None,
        "serve /metrics, /healthz and /readyz on this port (0 picks one; default: off)",
        env="METRICS_PORT",
        parse=optional_port,
        group=PUBLISHING,
    )
    lease_ttl: float = option(
        3.0,
        "seconds the publisher lease outlives its last renewal (renewed every second): one process publishes, "
        "the others stand by and one takes over within this plus a second of its death (3)",
        env="LEASE_TTL",
        parse=lease_ttl,
        group=PUBLISHING,
    )
    host: str = option("127.0.0.1", "address of --metrics-port (127.0.0.1)", env="HOST", group=PUBLISHING)
    feeds: list[str] = feed_option(["simulated"], "default: simulated")
    feed_options: FeedOptions = nested(
        FeedOptions,
        help={"symbols": "symbols always carried, whatever the nodes demand (default: about 30 US tickers)"},
    )
    process: ProcessOptions = nested(ProcessOptions)


def check_feed_config(config: PublisherConfig) -> None:
    """Validate ``ticker feed`` beyond its flags (feed names, credentials); raise ``ValueError``."""
    from feeds.registry import FEEDS, create_feeds

    if "none" in config.feeds:
        raise ValueError("ticker feed needs a feed: --feed " + "|".join(sorted(FEEDS)))
    create_feeds(config.feeds, config.feed_options)


def run_feed(config: PublisherConfig) -> int:
    """Run the publisher until SIGINT/SIGTERM; returns the exit status."""
    import asyncio

    from ticker.server.descriptors import raise_soft_limit

    raise_soft_limit()  # its feeds, Redis and the ops listener's scrapes: the same hard limit as serve
    return asyncio.run(_run_feed_async(config))


async def _run_feed_async(config: PublisherConfig) -> int:
    import asyncio
    import logging
    import signal

    from feeds.registry import create_feeds
    from ticker.broker.candidate import Candidate
    from ticker.broker.publisher import Publisher
    from ticker.broker.redis_lease import Lease
    from ticker.metrics.registry import Metrics
    from ticker.server.ops import ListenError, announce, listen_ops

    log = logging.getLogger("ticker")
    metrics = Metrics()
    symbols = config.feed_options.symbols

    def publisher(lease: Lease) -> Publisher:
        """A publisher with fresh feeds, for each term of this process as the active one."""
        return Publisher(
            config.broker,
            create_feeds(config.feeds, config.feed_options),
            metrics,
            lease=lease,
            symbols=frozenset(symbols),
            window=config.publish_ms / 1000.0,
            stale_after=config.stale_after,
        )

    pub = Candidate(config.broker, publisher, metrics, prefix=config.broker_prefix, ttl=config.lease_ttl)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    closing = False

    def readiness() -> tuple[bool, str]:
        """What /readyz and ticker_ready say: Redis up and, for the active publisher, its feeds fresh.
        A standby is ready (healthy, able to take over): its feeds are not meant to run."""
        if closing:
            return False, "shutting down"
        if not pub.up:
            return False, "broker redis is down"
        if not pub.active:  # the publisher lease: held by another process
            return True, STANDBY_REASON
        return pub.readiness()

    metrics.set_role("publisher")
    # read at each scrape, so it always agrees with /readyz
    metrics.ready.set_function(lambda: 1.0 if readiness()[0] else 0.0)
    ops = None
    if config.metrics_port is not None:
        banner = "ticker feed metrics listening on http://%s:%d"
        try:
            ops, _ = listen_ops(metrics, readiness, config.host, config.metrics_port, banner)
        except ListenError as exc:
            log.error("%s", exc)
            return 1
    await pub.start()
    announce.info(
        "ticker feed running (feeds: %s, symbols: %d; publisher %s, %s)",
        ",".join(config.feeds),
        len(symbols),
        pub.id,
        "active" if pub.active else "standing by",
    )
    await stop.wait()
    closing = True
    log.info("shutting down")
    await pub.stop()
    if ops is not None:
        ops.stop()
    log.info("ticker feed stopped")
    return 0
