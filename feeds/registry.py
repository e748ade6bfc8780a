"""Feed names known to ``--feed`` and how each is built from the parsed command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from feeds.base import Feed
from feeds.credentials import secret
from feeds.polled.finnhub_rest import FinnhubRestFeed
from feeds.polled.yahoo import YahooFeed
from feeds.recording.format import Reader
from feeds.recording.replay import ReplayFeed
from feeds.simulated import SimulatedFeed
from feeds.streaming import alpaca, binance, coinbase, finnhub, polygon

FeedFactory = Callable[[argparse.Namespace], Feed]


def _simulated(args: argparse.Namespace) -> Feed:
    return SimulatedFeed(symbols=args.symbols, rate=args.sim_rate, seed=args.seed)


def _poll_opts(args: argparse.Namespace) -> dict[str, object]:
    opts: dict[str, object] = {
        "url": args.feed_url,
        "backoff_base": args.reconnect_base,
        "backoff_cap": args.reconnect_cap,
    }
    if args.poll_interval is not None:
        opts["interval"] = args.poll_interval
    if args.poll_rate is not None:
        opts["rate"] = args.poll_rate
    return opts


def _finnhub_rest(args: argparse.Namespace) -> Feed:
    return FinnhubRestFeed(secret("FINNHUB_TOKEN") or "", **_poll_opts(args))  # type: ignore[arg-type]


def _yahoo(args: argparse.Namespace) -> Feed:
    return YahooFeed(**_poll_opts(args))  # type: ignore[arg-type]


def _replay(args: argparse.Namespace) -> Feed:
    feed = ReplayFeed(
        args.replay_file,
        speed=args.replay_speed,
        loop=args.replay_loop,
        keep_timestamps=args.replay_keep_time,
    )
    Reader(feed.path).close()  # a missing or foreign file is an error at startup, not later
    return feed


FEEDS: dict[str, FeedFactory] = {
    "simulated": _simulated,
    "finnhub": finnhub.create,
    "alpaca": alpaca.create,
    "polygon": polygon.create,
    "coinbase": coinbase.create,
    "binance": binance.create,
    "finnhub-rest": _finnhub_rest,
    "yahoo": _yahoo,
    "replay": _replay,
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

    g.add_argument(
        "--poll-interval",
        type=float,
        default=env("POLL_INTERVAL", None),
        help="polled feeds (finnhub-rest, yahoo): seconds between polls of each demanded symbol "
        "(default: finnhub-rest 1, yahoo 5)",
    )
    g.add_argument(
        "--poll-rate",
        type=float,
        default=env("POLL_RATE", None),
        help="polled feeds: most requests per second (default: finnhub-rest 1 = the free plan's 60/min, "
        "never above Finnhub's 30/s; yahoo 0.5)",
    )
    g.add_argument(
        "--replay-file",
        default=env("REPLAY_FILE", None),
        help="replay: recording to play (JSON Lines, optionally gzipped); default: the bundled sample",
    )
    g.add_argument(
        "--replay-speed",
        type=float,
        default=env("REPLAY_SPEED", 1.0),
        help="replay: 1 = real time, 10 = ten times faster, 0 = as fast as possible",
    )
    g.add_argument(
        "--replay-loop",
        action="store_true",
        default=_flag(env("REPLAY_LOOP", False)),
        help="replay: start over at the end of the file",
    )
    g.add_argument(
        "--replay-keep-time",
        action="store_true",
        default=_flag(env("REPLAY_KEEP_TIME", False)),
        help="replay: keep the recorded timestamps (default: rewrite them to the time of replay)",
    )


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def create_feeds(names: list[str], args: argparse.Namespace) -> list[Feed]:
    """Build one feed per name; unknown names raise ``ValueError``."""
    feeds = []
    for name in names:
        if name not in FEEDS:
            raise ValueError(f"unknown feed {name!r} (known: {', '.join(sorted(FEEDS))})")
        feeds.append(FEEDS[name](args))
    return feeds
