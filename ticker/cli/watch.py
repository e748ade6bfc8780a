"""``ticker watch AAPL MSFT``: a live terminal table of quotes, or JSON lines with ``--json``.

asyncio, aiohttp and rich load when the command runs, not when the command line is built.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from math import isfinite
from typing import TYPE_CHECKING

from ticker.errors import InvalidSymbol, OptionError
from ticker.options import LOG_LEVELS, option
from ticker.symbols import normalize_symbol
from ticker.views import FIELDS, MIN_HZ

if TYPE_CHECKING:
    from ticker.cli.watch_view import JsonLines, TableView
    from ticker.client import TickerClient

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


def _max_hz(text: str) -> float:
    value = float(text)
    if not isfinite(value) or value < MIN_HZ:
        raise OptionError(f"must be a number of at least {MIN_HZ}, got {text!r}")
    return value


def _fields(text: str) -> tuple[str, ...]:
    names = [f.strip() for f in text.split(",") if f.strip()]
    unknown = sorted({f for f in names if f not in FIELDS})
    if unknown:
        raise OptionError(f"unknown fields: {', '.join(unknown)} (known: {','.join(FIELDS)})")
    if "p" not in names:
        raise OptionError("must include p (the price)")
    return tuple(f for f in FIELDS if f in names)


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
    json: bool = option(
        False, 'print one JSON line per update (a Q object) and per state change ({"type":"status",...})'
    )
    count: int = option(0, "exit after this many updates (0: run until Ctrl-C)", parse=_count)
    max_hz: float | None = option(
        None,
        "at most R updates per second per symbol, each the latest value (default: every update)",
        parse=_max_hz,
        metavar="R",
    )
    fields: tuple[str, ...] | None = option(
        None, "ask only these fields, comma-separated, p included (e.g. p,b,a; default: all)", parse=_fields
    )
    delta: bool = option(False, "ask the server for changed-fields deltas (the output is the same)")
    connect_timeout: float = option(
        10.0, "seconds to wait for the first connection before giving up (10)", parse=float
    )
    log_level: str = option("warning", env="LOG_LEVEL", parse=str.lower, choices=LOG_LEVELS)


def run_watch(config: WatchConfig) -> int:
    """Run ``ticker watch``; the exit status (0 on Ctrl-C or SIGTERM, 1 when the server is unreachable,
    2 when it knows none of the symbols)."""
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
            connect_timeout=config.connect_timeout,
            on_event=view.event,
            token=config.token or None,  # an empty TICKER_TOKEN means none
            max_hz=config.max_hz,
            fields=config.fields,
            delta=config.delta,
        ) as client:
            return await _watch(client, view, config.symbols)
    except TickerError as exc:
        print(f"ticker watch: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 0


async def _watch(client: TickerClient, view: JsonLines | TableView, symbols: list[str]) -> int:
    """Subscribe (the symbols the server does not know are named on stderr) and run ``view`` until it ends,
    or until no symbol is left to watch (status 2)."""
    import asyncio

    from ticker.client import UnknownSymbolError

    view.client = client
    try:
        await client.subscribe(*symbols)
    except UnknownSymbolError as exc:  # the known symbols of the request are subscribed all the same
        view.refuse(exc)
        if not client.symbols:
            print(f"ticker watch: {exc.message}", file=sys.stderr)
            return 2
        kept = ", ".join(s for s in symbols if s in client.symbols)
        print(f"ticker watch: {exc.message} Watching {kept}.", file=sys.stderr, flush=True)
    run = asyncio.ensure_future(view.run(client))
    done = asyncio.ensure_future(view.done.wait())
    try:
        await asyncio.wait({run, done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        done.cancel()
        if not run.done():
            run.cancel()
        await asyncio.gather(run, done, return_exceptions=True)
    if not view.done.is_set():
        run.result()  # the view's own end, or the client's error (a refused token)
        return 0
    if view.exit_message:
        print(f"ticker watch: {view.exit_message}", file=sys.stderr)
    return view.exit_status
