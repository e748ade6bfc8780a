"""The ``ticker`` command line: ``ticker serve`` and friends. Every flag has a ``TICKER_*`` env twin."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from feeds import registry
from ticker import __version__
from ticker.cli import argtypes
from ticker.server.config import Config
from ticker.symbols import DEFAULT_UNIVERSE, InvalidSymbol, parse_symbol_list

LOG_LEVELS = ("debug", "info", "warning", "error")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


_env = argtypes.env
_positive = argtypes.positive
_port = argtypes.port


def _symbols(text: str) -> list[str]:
    try:
        symbols = parse_symbol_list(text)
    except InvalidSymbol as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not symbols:
        raise argparse.ArgumentTypeError("needs at least one symbol")
    return symbols


def _names(text: str) -> list[str]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not names:
        raise argparse.ArgumentTypeError("needs at least one name")
    return names


def _origins(text: str) -> frozenset[str]:
    return frozenset(p.strip().lower().rstrip("/") for p in text.split(",") if p.strip())


def _add_serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=_port, default=_env("PORT", "8888"), help="port to listen on; 0 picks one")
    _add_feed_flags(
        p,
        feed_default=None,
        feed_help="none (default: simulated; none with --broker redis)",
        symbols_help="comma-separated symbols to carry (default: about 30 US tickers)",
    )
    p.add_argument(
        "--flush-ms",
        type=_positive(float),
        default=_env("FLUSH_MS", "20"),
        help="fan-out flush interval in ms: at most one frame per connection per interval (20)",
    )
    p.add_argument(
        "--allowed-origins",
        type=_origins,
        default=_env("ALLOWED_ORIGINS", ""),
        help="extra browser origins allowed to open /ws, comma-separated (default: same host only)",
    )
    lim = p.add_argument_group("limits")
    lim.add_argument(
        "--max-symbols",
        type=_positive(int),
        default=_env("MAX_SYMBOLS", "500"),
        help="symbols per connection (500)",
    )
    lim.add_argument(
        "--max-message-bytes",
        type=_positive(int),
        default=_env("MAX_MESSAGE_BYTES", "65536"),
        help="largest client frame; larger ones close the connection with 1009 (65536)",
    )
    lim.add_argument(
        "--max-connections",
        type=_positive(int),
        default=_env("MAX_CONNECTIONS", "50000"),
        help="open connections before new ones get 503 (50000)",
    )
    lim.add_argument(
        "--rate-limit",
        type=_positive(float),
        default=_env("RATE_LIMIT", "50"),
        help="client messages per second per connection (50)",
    )
    lim.add_argument(
        "--rate-burst",
        type=_positive(int),
        default=_env("RATE_BURST", "100"),
        help="client messages allowed in a burst (100)",
    )
    lim.add_argument(
        "--ping-interval",
        type=_positive(float),
        default=_env("PING_INTERVAL", "20"),
        help="seconds between server pings (20)",
    )
    lim.add_argument(
        "--ping-timeout",
        type=_positive(float),
        default=_env("PING_TIMEOUT", "20"),
        help="seconds to wait for a pong before dropping the peer (20)",
    )
    lim.add_argument(
        "--slow-bytes",
        type=_positive(int),
        default=_env("SLOW_BYTES", str(1 << 20)),
        help="unsent bytes after which a connection is conflated (1048576)",
    )
    lim.add_argument(
        "--slow-timeout",
        type=_positive(float),
        default=_env("SLOW_TIMEOUT", "10"),
        help="seconds over --slow-bytes before closing with 1013 (10)",
    )
    lim.add_argument(
        "--stale-after",
        type=_positive(float),
        default=_env("STALE_AFTER", "15"),
        help="seconds without feed data before /readyz fails (15)",
    )
    p.add_argument(
        "--workers",
        type=_positive(int),
        default=_env("WORKERS", "1"),
        help="server processes sharing the port with SO_REUSEPORT (1)",
    )
    p.add_argument(
        "--metrics-port",
        type=argtypes.optional_port,
        default=_env("METRICS_PORT", None),
        help="also serve /metrics, /healthz, /readyz on this port; with --workers, worker i uses PORT+i",
    )
    _add_runtime_flags(p)
    from ticker.cli.feed import add_serve_broker_flags

    add_serve_broker_flags(p, _env)


def _add_feed_flags(
    p: argparse.ArgumentParser, feed_default: str | None, feed_help: str, symbols_help: str
) -> None:
    """The flags choosing and configuring feeds, shared by ``serve``, ``record`` and ``feed``."""
    p.add_argument(
        "--feed",
        type=_names,
        default=_env("FEED", feed_default),
        help="feed adapter(s), comma-separated: " + ", ".join(sorted(registry.FEEDS)) + f"; {feed_help}",
    )
    p.add_argument(
        "--symbols", type=_symbols, default=_env("SYMBOLS", ",".join(DEFAULT_UNIVERSE)), help=symbols_help
    )
    p.add_argument(
        "--sim-rate",
        type=_positive(float),
        default=_env("SIM_RATE", "2"),
        help="simulated ticks per second per symbol (2)",
    )
    p.add_argument("--seed", type=int, default=_env("SEED", None), help="seed of the simulated market")
    registry.add_arguments(p, _env)


def _add_runtime_flags(p: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--loop``, shared by every long-running command."""
    p.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower, default=_env("LOG_LEVEL", "info"))
    p.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default=_env("LOOP", "auto"),
        help="event loop implementation (auto: uvloop when installed)",
    )


def _add_record_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=_env("RECORD_OUT", None), help="file to write (.gz: gzip-compressed)")
    p.add_argument(
        "--duration",
        type=float,
        default=_env("RECORD_DURATION", "0"),
        help="seconds to record; 0 = until SIGINT/SIGTERM (0)",
    )
    _add_feed_flags(
        p,
        feed_default="simulated",
        feed_help="default: simulated",
        symbols_help="comma-separated symbols to demand from the feeds (default: about 30 US tickers)",
    )
    _add_runtime_flags(p)


def build_parser() -> argparse.ArgumentParser:
    """The full ``ticker`` parser with its subcommands."""
    parser = _Parser(prog="ticker", description="Real-time stock-quote push server.")
    parser.add_argument("--version", action="version", version=f"ticker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="serve quotes over WebSocket, REST and a web page")
    _add_serve_flags(serve)
    record = sub.add_parser(
        "record", help="write the normalized quotes of any feed to a file for --feed replay"
    )
    _add_record_flags(record)
    from ticker.cli.feed import add_publisher_flags

    feed = sub.add_parser(
        "feed",
        help="run feed adapters and publish their quotes to Redis for edge nodes (`serve --broker redis://...`)",
    )
    add_publisher_flags(feed, _env)
    _add_feed_flags(
        feed,
        feed_default="simulated",
        feed_help="default: simulated",
        symbols_help="symbols always carried, whatever the nodes demand (default: about 30 US tickers)",
    )
    _add_runtime_flags(feed)
    from ticker.cli.watch import add_watch_flags

    watch = sub.add_parser("watch", help="watch live quotes in the terminal (or as JSON lines)")
    add_watch_flags(watch, _env)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Turn parsed ``serve`` flags into a :class:`Config`."""
    redis = args.broker != "memory"
    if args.feed is None:
        args.feed = ["none"] if redis else ["simulated"]
    feeds = [] if args.feed == ["none"] else args.feed
    if redis and feeds:
        raise ValueError(
            "with --broker redis the feeds run in `ticker feed`; start edge nodes with --feed none (the default)"
        )
    return Config(
        host=args.host,
        port=args.port,
        feeds=feeds,
        symbols=args.symbols,
        sim_rate=args.sim_rate,
        seed=args.seed,
        flush_ms=args.flush_ms,
        allowed_origins=args.allowed_origins,
        log_level=args.log_level,
        max_symbols=args.max_symbols,
        max_message_bytes=args.max_message_bytes,
        max_connections=args.max_connections,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        slow_bytes=args.slow_bytes,
        slow_timeout=args.slow_timeout,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        stale_after=args.stale_after,
        workers=args.workers,
        metrics_port=args.metrics_port,
        broker=args.broker,
        broker_prefix=args.broker_prefix,
        demand_ttl=args.demand_ttl,
        args=args,
    )


def _install_loop(kind: str) -> None:
    if kind == "asyncio":
        return
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise SystemExit("ticker: error: --loop uvloop but uvloop is not installed") from None
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ticker`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "serve":
        from ticker.server.run import serve

        try:
            config = config_from_args(args)
            from feeds.registry import create_feeds

            if config.feeds:
                create_feeds(config.feeds, args)  # validate names and credentials before listening
        except ValueError as exc:
            parser.exit(2, f"ticker: error: {exc}\n")
        _install_loop(args.loop)
        return serve(config)
    if args.command == "record":
        from feeds.recording.recorder import run_record

        if not args.out:
            parser.exit(2, "ticker: error: record needs --out FILE\n")
        _install_loop(args.loop)
        return asyncio.run(run_record(args))
    if args.command == "feed":
        from ticker.cli.feed import check_feed_args, run_feed

        try:
            check_feed_args(args)
        except ValueError as exc:
            parser.exit(2, f"ticker: error: {exc}\n")
        _install_loop(args.loop)
        return run_feed(args)
    if args.command == "watch":
        from ticker.cli.watch import run_watch

        return run_watch(args)
    parser.error(f"unknown command {args.command}")
