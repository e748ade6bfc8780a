"""Feed names known to ``--feed`` and how each is built from the parsed command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from feeds import alpaca, binance, coinbase, finnhub, polygon
from feeds.base import Feed
from feeds.simulated import SimulatedFeed

FeedFactory = Callable[[argparse.Namespace], Feed]


def _simulated(args: argparse.Namespace) -> Feed:
    return SimulatedFeed(symbols=args.symbols, rate=args.sim_rate, seed=args.seed)


FEEDS: dict[str, FeedFactory] = {
    "simulated": _simulated,
    "finnhub": finnhub.create,
    "alpaca": alpaca.create,
    "polygon": polygon.create,
    "coinbase": coinbase.create,
    "binance": binance.create,
}
_STREAMING = (finnhub, alpaca, polygon, coinbase, binance)


def add_arguments(parser: argparse.ArgumentParser, env: Callable[[str, object], object]) -> None:
    """Add the flags that feed adapters take (beyond the core ones) to ``parser``.

    ``env(name, default)`` returns the ``TICKER_<NAME>`` environment value or ``default``.
    """
    g = parser.add_argument_group("feed adapters")
    g.add_argument(
        "--feed-url",
        default=env("FEED_URL", None),
        help="endpoint of the upstream provider (a sandbox, a proxy, a local fake); default: the provider's own",
    )
    g.add_argument(
        "--reconnect-base",
        type=float,
        default=env("RECONNECT_BASE", 0.5),
        help="first reconnect delay ceiling in seconds (exponential backoff, full jitter)",
    )
    g.add_argument(
        "--reconnect-cap",
        type=float,
        default=env("RECONNECT_CAP", 30.0),
        help="largest reconnect delay ceiling in seconds",
    )
    g.add_argument(
        "--feed-silence",
        type=float,
        default=env("FEED_SILENCE", 30.0),
        help="seconds without data or heartbeat after which an upstream counts as dead and is reconnected",
    )
    g.add_argument(
        "--feed-linger",
        type=float,
        default=env("FEED_LINGER", 5.0),
        help="seconds a symbol stays subscribed upstream after its last client left",
    )
    for module in _STREAMING:
        module.add_arguments(g, env)


def create_feeds(names: list[str], args: argparse.Namespace) -> list[Feed]:
    """Build one feed per name; unknown names raise ``ValueError``."""
    feeds = []
    for name in names:
        if name not in FEEDS:
            raise ValueError(f"unknown feed {name!r} (known: {', '.join(sorted(FEEDS))})")
        feeds.append(FEEDS[name](args))
    return feeds
