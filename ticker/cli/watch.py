"""``ticker watch AAPL MSFT``: a live terminal table of quotes, or JSON lines with ``--json``.

asyncio, aiohttp and rich load when the command runs, not when the command line is built.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ticker.errors import InvalidSymbol, OptionError
from ticker.options import LOG_LEVELS, option
from ticker.symbols import normalize_symbol

DEFAULT_URL = "ws://127.0.0.1:8888/ws"


def _symbol(text: str) -> str:
    try:
        return normalize_symbol(text)
    except InvalidSymbol as exc:
        raise OptionError(str(exc)) from None


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise OptionError(f"must be 0 or more, got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """Everything ``ticker watch`` can be told, typed."""

    symbols: list[str] = option(
        help="symbols to watch", parse=_symbol, positional=True, nargs="+", metavar="SYMBOL"
    )
    url: str = option(DEFAULT_URL, f"the server's WebSocket URL ({DEFAULT_URL})", env="URL")
    token: str | None = option(
        None,
        "bearer token (a JWT) for a server run with --auth jwt; prefer TICKER_TOKEN, which ps does not show",
        env="TOKEN",
        metavar="TOKEN",
    )
    json: bool = option(False, "print one JSON line (a Q object) per update")
    count: int = option(0, "exit after this many updates (0: run until Ctrl-C)", parse=_count)
    connect_timeout: float = option(
        10.0, "seconds to wait for the first connection before giving up (10)", parse=float
    )
    log_level: str = option("warning", env="LOG_LEVEL", parse=str.lower, choices=LOG_LEVELS)


def run_watch(config: WatchConfig) -> int:
    """Run ``ticker watch``; the exit status (0 on Ctrl-C or SIGTERM, 1 when the server is unreachable)."""
    import asyncio

    try:
        return asyncio.run(_main(config))
    except KeyboardInterrupt:
        return 0


async def _main(config: WatchConfig) -> int:
    import asyncio
    import contextlib
    import signal

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    # Ctrl-C and SIGTERM end the watch like every other command's: even where SIGINT came in ignored
    # (a script's background job), as `ticker serve`, `feed` and `record` do.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    # Imported here so that ``ticker serve`` does not pay for aiohttp and rich at start-up.
    from ticker.cli.watch_view import JsonLines, TableView
    from ticker.client import TickerClient, TickerError

    view = JsonLines(config.count) if config.json else TableView(config.symbols, config.url, config.count)
    try:
        async with TickerClient(
            config.url,
            config.symbols,
            connect_timeout=config.connect_timeout,
            on_event=view.event,
            token=config.token or None,  # an empty TICKER_TOKEN means none
        ) as client:
            await view.run(client)
    except TickerError as exc:
        print(f"ticker watch: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 0
    return 0
