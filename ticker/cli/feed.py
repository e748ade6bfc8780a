"""Command-line parts of the broker: ``--broker`` flags of ``ticker serve`` and the ``ticker feed`` publisher."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable

import tornado.httpserver
import tornado.netutil

from feeds import registry
from ticker.cli import argtypes
from ticker.metrics.registry import Metrics

log = logging.getLogger("ticker")
announce = logging.getLogger("ticker.listen")
announce.setLevel(logging.INFO)

Env = Callable[[str, object], object]


def broker_url(text: str) -> str:
    """``memory`` or a valid ``redis://`` URL (argparse type)."""
    if text.strip().lower() == "memory":
        return "memory"
    from ticker.broker.redis_layout import check_url

    try:
        return check_url(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def redis_url(text: str) -> str:
    """A valid ``redis://`` URL (argparse type; ``memory`` is refused)."""
    url = broker_url(text)
    if url == "memory":
        raise argparse.ArgumentTypeError("the publisher needs a Redis URL (redis://HOST:PORT/DB)")
    return url


def _prefix(text: str) -> str:
    if not text or len(text) > 64 or any(c in text for c in " *?[]\\"):
        raise argparse.ArgumentTypeError(
            f"prefix must be 1-64 characters without spaces or */?/[/]: {text!r}"
        )
    return text


def add_serve_broker_flags(p: argparse.ArgumentParser, env: Env) -> None:
    """``--broker``, ``--broker-prefix`` and ``--demand-ttl`` of ``ticker serve``."""
    g = p.add_argument_group("broker")
    g.add_argument(
        "--broker",
        type=broker_url,
        default=env("BROKER", "memory"),
        help="memory (in-process, default) or redis://HOST:PORT/DB: an edge node fed by `ticker feed`",
    )
    _add_prefix(g, env)
    g.add_argument(
        "--demand-ttl",
        type=argtypes.positive(float),
        default=env("DEMAND_TTL", "15"),
        help="seconds a node's advertised demand lives in Redis without a refresh (15; refreshed every third)",
    )


def _add_prefix(g: argparse._ArgumentGroup, env: Env) -> None:
    g.add_argument(
        "--broker-prefix",
        type=_prefix,
        default=env("BROKER_PREFIX", "ticker"),
        help="prefix of every Redis key and channel; one per deployment sharing a Redis (ticker)",
    )


def add_publisher_flags(p: argparse.ArgumentParser, env: Env) -> None:
    """The ``ticker feed`` flags saying where and how to publish (the feed flags come from the CLI)."""
    p.add_argument(
        "--broker",
        type=redis_url,
        default=env("BROKER", None),
        required=env("BROKER", None) is None,
        help="redis://HOST:PORT/DB to publish to (password: in the URL or TICKER_REDIS_PASSWORD)",
    )
    g = p.add_argument_group("publishing")
    _add_prefix(g, env)
    g.add_argument(
        "--publish-ms",
        type=argtypes.positive(float),
        default=env("PUBLISH_MS", "5"),
        help="publish window in ms: at most one message per symbol per window, one round trip each (5)",
    )
    g.add_argument(
        "--metrics-port",
        type=argtypes.optional_port,
        default=env("METRICS_PORT", None),
        help="serve /metrics, /healthz and /readyz on this port (0 picks one; default: off)",
    )
    g.add_argument("--host", default=env("HOST", "127.0.0.1"), help="address of --metrics-port (127.0.0.1)")


async def _run_feed_async(args: argparse.Namespace) -> None:
    from feeds.registry import create_feeds
    from ticker.broker.publisher import Publisher

    metrics = Metrics()
    feeds = create_feeds(args.feed, args)
    pub = Publisher(
        args.broker,
        feeds,
        metrics,
        symbols=frozenset(args.symbols),
        prefix=args.broker_prefix,
        window=args.publish_ms / 1000.0,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def readiness() -> tuple[bool, str]:
        if not pub.up:
            return False, "broker redis is down"
        for f in feeds:
            h = f.health()
            if not h.up:
                return False, f"feed {f.name} is down: {h.reason or 'unknown'}"
        return True, "ready"

    if args.metrics_port is not None:
        from ticker.server.ops import make_metrics_app

        try:
            socks = tornado.netutil.bind_sockets(args.metrics_port, args.host)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", args.host, args.metrics_port, exc.strerror or exc)
            raise SystemExit(1) from None
        tornado.httpserver.HTTPServer(make_metrics_app(metrics, readiness)).add_sockets(socks)
        announce.info("ticker feed metrics listening on http://%s:%d", args.host, socks[0].getsockname()[1])
    await pub.start()
    announce.info("ticker feed running (feeds: %s, symbols: %d)", ",".join(args.feed), len(args.symbols))

    async def health() -> None:
        while True:
            for f in feeds:
                metrics.feed_up.labels(f.name).set(1 if f.health().up else 0)
            await asyncio.sleep(1.0)

    health_task = loop.create_task(health())
    await stop.wait()
    log.info("shutting down")
    health_task.cancel()
    await pub.stop()
    log.info("ticker feed stopped")


def check_feed_args(args: argparse.Namespace) -> None:
    """Validate ``ticker feed`` flags beyond argparse (feed names, credentials); raise ``ValueError``."""
    if "none" in args.feed:
        raise ValueError("ticker feed needs a feed: --feed " + "|".join(sorted(registry.FEEDS)))
    registry.create_feeds(args.feed, args)


def run_feed(args: argparse.Namespace) -> int:
    """Run the publisher until SIGINT/SIGTERM; returns the exit status."""
    asyncio.run(_run_feed_async(args))
    return 0
