"""The two views of ``ticker watch``: JSON lines for pipes and a rich table updated in place.

Both show each symbol's state (live, pending, down, ...) and the symbols the server refused as unknown;
a view stops the watch (:attr:`View.done`) when refusals leave it nothing to watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TextIO

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ticker.client import Event, EventKind, Quote, State, TickerClient, UnknownSymbolError
from ticker.status import LIVE, SymbolStatus

STATE_STYLE = {
    State.IDLE: "dim",
    State.CONNECTING: "yellow",
    State.CONNECTED: "bold green",
    State.RECONNECTING: "bold yellow",
    State.CLOSED: "dim",
}

SYMBOL_STATE_STYLE = {LIVE: "green", "pending": "yellow", "closed": "blue", "halted": "magenta"}
UNKNOWN = "unknown"  # the State column of a symbol the server refused


class View:
    """What both views share: the client, the refused symbols, and how the watch ends early."""

    def __init__(self) -> None:
        self.client: TickerClient | None = None
        self.refused: dict[str, str] = {}  # symbol → the server's words
        self.done = asyncio.Event()  # set by :meth:`stop`: the watch ends with :attr:`exit_status`
        self.exit_status = 0
        self.exit_message = ""

    def refuse(self, exc: UnknownSymbolError) -> None:
        """The server refused ``exc.symbols`` (at once, or later once its directory loaded)."""
        for sym in exc.symbols:
            self.refused[sym] = exc.message

    def stop(self, status: int, message: str = "") -> None:
        """End the watch with ``status`` (``message`` goes to stderr once the view is gone)."""
        self.exit_status, self.exit_message = status, message
        self.done.set()

    def event(self, ev: Event) -> None:
        """A client event: note refusals, stop when none of the symbols is left, then :meth:`show` it."""
        if ev.kind is EventKind.ERROR and isinstance(ev.error, UnknownSymbolError):
            self.refuse(ev.error)
            if self.client is not None and not self.client.symbols:
                self.stop(2, ev.error.message)
                return
        self.show(ev)

    def show(self, ev: Event) -> None:
        raise NotImplementedError


class JsonLines(View):
    """One JSON object per update on stdout, flushed at once, and one per change of a symbol's state
    (``{"type":"status",...}``); connection events go to stderr."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def show(self, ev: Event) -> None:
        if ev.kind is EventKind.STATUS:
            if ev.symbol is not None and ev.status is not None:
                self._write(status_line(ev.symbol, ev.status))
        elif ev.kind is EventKind.ERROR and isinstance(ev.error, UnknownSymbolError):
            print(f"ticker watch: {ev.error.message}", file=sys.stderr, flush=True)
        elif ev.kind is not EventKind.CLOSED and (ev.kind is not EventKind.CONNECTED or ev.attempt):
            print(f"ticker watch: {ev}", file=sys.stderr, flush=True)

    def _write(self, line: dict[str, object]) -> None:
        out = sys.stdout
        try:
            out.write(orjson.dumps(line).decode() + "\n")
            out.flush()
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            _silence(out)
            self.stop(0)

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
            _silence(out)


def status_line(symbol: str, status: SymbolStatus) -> dict[str, object]:
    """The JSON line of a state change: ``{"type":"status","s","state","reason"}`` (quote lines have no ``type``)."""
    return {"type": "status", "s": symbol, "state": status.state, "reason": status.reason}


def _silence(out: TextIO) -> None:
    """Send what is left for a closed pipe to /dev/null (no error at exit)."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


class TableView(View):
    """A rich table redrawn in place at most ten times a second, with each symbol's state."""

    def __init__(self, symbols: list[str], url: str, count: int) -> None:
        super().__init__()
        self.symbols = list(dict.fromkeys(symbols))
        self.url = url
        self.count = count
        self.updates = 0
        self.direction: dict[str, int] = {}
        self.prev: dict[str, float] = {}
        self.last_event = "connecting"

    def show(self, ev: Event) -> None:
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
        conn = self.client.state if self.client is not None else State.CONNECTING
        title = Text.assemble(
            ("ticker watch ", "bold"), (self.url, "cyan"), "  ", ("● " + conn.value, STATE_STYLE[conn])
        )
        table = Table(title=title, caption=f"{self.updates} updates · {self.last_event}", expand=False)
        for name in ("Symbol", "Last", "Chg", "Chg %", "Day range", "Bid", "Ask", "Volume", "Time"):
            table.add_column(name, justify="left" if name == "Symbol" else "right")
        table.add_column("State", justify="left", overflow="fold")
        client = self.client
        latest = client.latest if client is not None else {}
        delayed = client.delayed if client is not None else frozenset()
        states = client.states if client is not None else {}
        for sym in self.symbols:
            q = latest.get(sym)
            label = Text.assemble((sym, "bold"), (" delayed", "yellow") if sym in delayed else "")
            refused = self.refused.get(sym) if sym not in states else None
            st = states.get(sym)
            if refused is not None:
                state = Text.assemble((UNKNOWN, "bold red"), " ", (refused, "red"))
            elif st is None:  # not subscribed (yet)
                state = Text("…", style="dim")
            else:
                state = _state_text(st)
            if q is None or refused is not None:
                table.add_row(label, "…" if refused is None else "", "", "", "", "", "", "", "", state)
                continue
            tick = self.direction.get(sym, 0)
            arrow, style = ("▲", "green") if tick > 0 else ("▼", "red") if tick < 0 else (" ", "")
            sign = "green" if (q.change or 0) > 0 else "red" if (q.change or 0) < 0 else ""
            plain = ""
            if st is not None and st.state != LIVE:  # a value that may be old: shown, dimmed
                style = sign = plain = "dim"
            table.add_row(
                label,
                Text(f"{q.price:,.2f} {arrow}", style=style),
                Text(_fmt(q.change, "+,.2f"), style=sign),
                Text(
                    _fmt(q.change_percent, "+.2f") + ("%" if q.change_percent is not None else ""), style=sign
                ),
                Text(_day_range(q), style=plain),
                Text(_fmt(q.bid, ",.2f"), style=plain),
                Text(_fmt(q.ask, ",.2f"), style=plain),
                Text(_fmt(q.volume, ",.0f"), style=plain),
                Text(datetime.fromtimestamp(q.ts_ms / 1000).strftime("%H:%M:%S.%f")[:-3], style=plain),
                state,
            )
        return table


def _state_text(st: SymbolStatus) -> Text:
    """The State cell: the state, coloured, and the reason when it is not live."""
    style = SYMBOL_STATE_STYLE.get(st.state, "bold red")  # down, unavailable, and any newer state
    if not st.reason:
        return Text(st.state, style=style)
    return Text.assemble((st.state, style), " ", (st.reason, "dim" if st.state == LIVE else ""))


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _day_range(q: Quote) -> str:
    """The session's low and high (``227.52–229.14``), empty while the server does not know them."""
    if q.low is None or q.high is None:
        return ""
    return f"{q.low:,.2f}–{q.high:,.2f}"


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
