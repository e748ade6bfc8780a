"""The ``ticker`` command line: ``serve``, ``record``, ``feed``, ``watch`` and ``token``, each parsed into one typed config.

Flags and their ``TICKER_*`` env twins are declared once, on the config dataclasses; building the
parser imports no adapter, no event loop and no I/O library, so ``ticker --help`` and a starting
server do not pay for what they do not run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ticker import __version__
from ticker.cli.extras import require_server_extra
from ticker.cli.feed import PublisherConfig
from ticker.cli.flags import Parser, add_flags, read_flags
from ticker.cli.record import RecordConfig
from ticker.cli.token import TokenConfig
from ticker.cli.watch import WatchConfig
from ticker.server.config import Config

CommandConfig = Config | RecordConfig | PublisherConfig | WatchConfig | TokenConfig
COMMANDS: dict[str, tuple[type[CommandConfig], str]] = {
    "serve": (Config, "serve quotes over WebSocket, REST and a web page"),
    "record": (RecordConfig, "write the normalized quotes of any feed to a file for --feed replay"),
    "feed": (
        PublisherConfig,
        "run feed adapters and publish their quotes to Redis for edge nodes (`serve --broker redis://...`)",
    ),
    "watch": (WatchConfig, "watch live quotes in the terminal (or as JSON lines)"),
    "token": (TokenConfig, "print an HS256 token signed with TICKER_JWT_SECRET, for development and tests"),
}


def build_parser() -> Parser:
    """The full ``ticker`` parser with its subcommands."""
    parser = Parser(prog="ticker", description="Real-time stock-quote push server.")
    parser.add_argument("--version", action="version", version=f"ticker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (cls, help_text) in COMMANDS.items():
        add_flags(sub.add_parser(name, help=help_text), cls)
    return parser


def parse(argv: Sequence[str] | None = None) -> CommandConfig:
    """The typed config of the command ``argv`` names; a bad value exits with status 2 and one line."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return read_flags(COMMANDS[ns.command][0], ns)
    except ValueError as exc:  # a check across flags (for example feeds on an edge node)
        parser.exit(2, f"ticker: error: {exc}\n")


def _fail(message: object) -> int:
    sys.stderr.write(f"ticker: error: {message}\n")
    return 2


def _install_loop(kind: str) -> None:
    if kind == "asyncio":
        return
    import asyncio

    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise SystemExit("ticker: error: --loop uvloop but uvloop is not installed") from None
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ticker`` console script."""
    require_server_extra()  # a client-only install gets one line, not a traceback
    config = parse(argv)
    if isinstance(config, TokenConfig):
        from ticker.cli.token import run_token

        return run_token(config)
    if not isinstance(config, WatchConfig):  # a long-running command: on its allocator from the start
        from ticker.cli.allocator import AllocatorError, prepare

        try:
            prepare(config.process.allocator, entry=argv is None)
        except AllocatorError as exc:
            return _fail(exc)
    from ticker.server.logs import configure

    if isinstance(config, WatchConfig):
        configure(config.log_level)
    else:
        configure(config.process.log_level, config.process.log_format)
    if isinstance(config, WatchConfig):
        from ticker.cli.watch import run_watch

        return run_watch(config)
    if isinstance(config, RecordConfig):
        import asyncio

        from ticker.cli.record import run_record

        _install_loop(config.process.loop)
        return asyncio.run(run_record(config))
    from feeds.registry import create_feeds

    try:  # names and credentials are checked before anything listens or connects
        if isinstance(config, PublisherConfig):
            from ticker.cli.feed import check_feed_config

            check_feed_config(config)
        elif config.feeds:
            create_feeds(config.feeds, config.feed_options)
    except ValueError as exc:
        return _fail(exc)
    _install_loop(config.process.loop)
    if isinstance(config, PublisherConfig):
        from ticker.cli.feed import run_feed

        return run_feed(config)
    import signal

    # SIGINT/SIGTERM wait, blocked, while the server loads; serve() takes them once its handlers are in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    from ticker.server.run import serve

    return serve(config)
