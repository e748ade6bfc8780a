"""``ticker watch AAPL MSFT``: a live terminal table of quotes, or JSON lines with ``--json``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

from ticker.symbols import InvalidSymbol, normalize_symbol

DEFAULT_URL = "ws://127.0.0.1:8888/ws"


def _symbol(text: str) -> str:
    try:
        return normalize_symbol(text)
    except InvalidSymbol as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def add_watch_flags(p: argparse.ArgumentParser, env: Callable[[str, object], object]) -> None:
    """The flags of ``ticker watch``."""
    p.add_argument("symbols", nargs="+", type=_symbol, metavar="SYMBOL", help="symbols to watch")
    p.add_argument(
        "--url", default=env("URL", DEFAULT_URL), help=f"the server's WebSocket URL ({DEFAULT_URL})"
    )
    p.add_argument("--json", action="store_true", help="print one JSON line (a Q object) per update")
    p.add_argument(
        "--count", type=_count, default=0, help="exit after this many updates (0: run until Ctrl-C)"
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the first connection before giving up (10)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        type=str.lower,
        default=env("LOG_LEVEL", "warning"),
    )


def run_watch(args: argparse.Namespace) -> int:
    """Run ``ticker watch``; the exit status (0 on Ctrl-C or SIGTERM, 1 when the server is unreachable)."""
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0


async def _main(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    # Imported here so that ``ticker serve`` does not pay for aiohttp and rich at start-up.
    from ticker.cli.watch_view import JsonLines, TableView
    from ticker.client import TickerClient, TickerError

    view = JsonLines(args.count) if args.json else TableView(args.symbols, args.url, args.count)
    try:
        async with TickerClient(
            args.url, args.symbols, connect_timeout=args.connect_timeout, on_event=view.event
        ) as client:
            await view.run(client)
    except TickerError as exc:
        print(f"ticker watch: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 0
    return 0
