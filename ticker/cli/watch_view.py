"""The two views of ``ticker watch``: JSON lines for pipes and a rich table updated in place."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ticker.client import Event, EventKind, Quote, State, TickerClient

STATE_STYLE = {
    State.IDLE: "dim",
    State.CONNECTING: "yellow",
    State.CONNECTED: "bold green",
    State.RECONNECTING: "bold yellow",
    State.CLOSED: "dim",
}


class JsonLines:
    """One JSON object per update on stdout, flushed at once; connection events go to stderr."""

    def __init__(self, count: int) -> None:
        self.count = count

    def event(self, ev: Event) -> None:
        if ev.kind is not EventKind.CLOSED and (ev.kind is not EventKind.CONNECTED or ev.attempt):
            print(f"ticker watch: {ev}", file=sys.stderr, flush=True)

    async def run(self, client: TickerClient) -> None:
        out = sys.stdout
        n = 0
        try:
            async for quote in client:
                line = quote.to_wire()
                if quote.symbol in client.delayed:
                    line["delayed"] = True  # only on delayed symbols: the Q fields stay as they are
                out.write(orjson.dumps(line).decode() + "\n")
                out.flush()
                n += 1
                if n == self.count:
                    return
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


class TableView:
    """A rich table redrawn in place at most ten times a second."""

    def __init__(self, symbols: list[str], url: str, count: int) -> None:
        self.symbols = list(dict.fromkeys(symbols))
        self.url = url
        self.count = count
        self.updates = 0
        self.direction: dict[str, int] = {}
        self.prev: dict[str, float] = {}
        self.last_event = "connecting"
        self.client: TickerClient | None = None

    def event(self, ev: Event) -> None:
        self.last_event = str(ev)

    async def run(self, client: TickerClient) -> None:
        self.client = client
        console = Console()
        with Live(self.render(), console=console, auto_refresh=False, transient=False) as live:
            drawn = 0.0
            async for quote in _with_ticks(client, 0.25):
                if quote is not None:
                    self.apply(quote)
                now = time.monotonic()
                if now - drawn >= 0.1 or quote is None:
                    live.update(self.render(), refresh=True)
                    drawn = now
                if self.count and self.updates >= self.count:
                    break
            live.update(self.render(), refresh=True)

    def apply(self, quote: Quote) -> None:
        self.updates += 1
        prev = self.prev.get(quote.symbol)
        if prev is not None and quote.price != prev:
            self.direction[quote.symbol] = 1 if quote.price > prev else -1
        self.prev[quote.symbol] = quote.price

    def render(self) -> Table:
        state = self.client.state if self.client is not None else State.CONNECTING
        title = Text.assemble(
            ("ticker watch ", "bold"), (self.url, "cyan"), "  ", ("● " + state.value, STATE_STYLE[state])
        )
        table = Table(title=title, caption=f"{self.updates} updates · {self.last_event}", expand=False)
        for name in ("Symbol", "Last", "Chg", "Chg %", "Bid", "Ask", "Volume", "Time"):
            table.add_column(name, justify="left" if name == "Symbol" else "right")
        latest = self.client.latest if self.client is not None else {}
        delayed = self.client.delayed if self.client is not None else frozenset()
        for sym in self.symbols:
            q = latest.get(sym)
            label = Text.assemble((sym, "bold"), (" delayed", "yellow") if sym in delayed else "")
            if q is None:
                table.add_row(label, "…", "", "", "", "", "", "")
                continue
            tick = self.direction.get(sym, 0)
            arrow, style = ("▲", "green") if tick > 0 else ("▼", "red") if tick < 0 else (" ", "")
            sign = "green" if (q.change or 0) > 0 else "red" if (q.change or 0) < 0 else ""
            table.add_row(
                label,
                Text(f"{q.price:,.2f} {arrow}", style=style),
                Text(_fmt(q.change, "+,.2f"), style=sign),
                Text(
                    _fmt(q.change_percent, "+.2f") + ("%" if q.change_percent is not None else ""), style=sign
                ),
                _fmt(q.bid, ",.2f"),
                _fmt(q.ask, ",.2f"),
                _fmt(q.volume, ",.0f"),
                datetime.fromtimestamp(q.ts_ms / 1000).strftime("%H:%M:%S.%f")[:-3],
            )
        return table


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


async def _with_ticks(client: TickerClient, every: float) -> AsyncIterator[Quote | None]:
    """Quotes from ``client``, and ``None`` whenever ``every`` seconds pass without one (to redraw the state)."""
    it = aiter(client)
    nxt: asyncio.Task[Quote] | None = None
    try:
        while True:
            if nxt is None:
                nxt = asyncio.ensure_future(anext(it))
            done, _ = await asyncio.wait({nxt}, timeout=every)
            if not done:
                yield None
                continue
            task, nxt = nxt, None
            try:
                quote = task.result()
            except StopAsyncIteration:
                return
            yield quote
    finally:
        if nxt is not None:
            nxt.cancel()
