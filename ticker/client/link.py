"""The Python client's per-connection machinery: the subscription state and one protocol link.

A request (subscribe, unsubscribe, refresh) is followed on the wire by a ``ping``; the server handles a
connection's messages in order, so everything it sends before the matching ``pong`` — the
``subscribed`` set, the snapshot, ``authenticated``, any ``error`` — answers that request. One
request is in flight at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import aiohttp
import orjson

from ticker.client.models import ConnectionLost, QuoteBuffer, ServerError, server_error
from ticker.quote import Quote, decode_entry

log = logging.getLogger("ticker.client")


class Subscriptions:
    """What the client follows and has applied: the symbol set, last ``q`` per symbol, latest values, the buffer,
    and which symbols the server sends delayed."""

    def __init__(self, symbols: Iterable[str], buffer_limit: int) -> None:
        self.symbols: dict[str, None] = dict.fromkeys(symbols)
        self.last_q: dict[str, int] = {}
        self.latest: dict[str, Quote] = {}
        self.buffer = QuoteBuffer(buffer_limit)
        self.data = asyncio.Event()  # set when the buffer gets something
        self.delayed: frozenset[str] = frozenset()

    def new_connection(self) -> None:
        """Sequence numbers are per server process: the next snapshot wins whatever its ``q``."""
        self.last_q.clear()
        self.delayed = frozenset()

    def set_delayed(self, delayed: frozenset[str]) -> None:
        """The server's ``delayed`` set. A symbol that moved between tiers starts again from the next
        snapshot: delayed entries keep their original ``q``, below the real-time ones applied (and back)."""
        for sym in self.delayed.symmetric_difference(delayed):
            self.last_q.pop(sym, None)
        self.delayed = delayed

    def confirm(self, symbols: frozenset[str]) -> None:
        """The server's ``subscribed`` set is authoritative: stop following what it does not hold."""
        self.forget([s for s in self.symbols if s not in symbols])

    def apply(self, entries: Iterable[Any]) -> None:
        """Apply the Q entries of a snapshot or quotes message: drop unknown symbols and old ``q``."""
        symbols, last_q, latest, buf = self.symbols, self.last_q, self.latest, self.buffer
        pushed = False
        for e in entries:
            try:
                quote = decode_entry(e)
            except ValueError as exc:
                log.warning("ignoring %s", exc)
                continue
            sym = quote.symbol
            if sym not in symbols:
                continue  # unsubscribed: a frame already on the wire
            last = last_q.get(sym)
            if last is not None and quote.seq <= last:
                continue  # already applied (a snapshot entry repeated by the next frame)
            last_q[sym] = quote.seq
            latest[sym] = quote
            buf.push(quote)
            pushed = True
        if pushed:
            self.data.set()

    def forget(self, symbols: Iterable[str]) -> None:
        """Stop following ``symbols``: their latest values and waiting quotes go."""
        gone = list(symbols)
        for s in gone:
            self.symbols.pop(s, None)
            self.last_q.pop(s, None)
            self.latest.pop(s, None)
        self.buffer.discard(gone)
        if self.delayed and not self.delayed.isdisjoint(gone):
            self.delayed = self.delayed.difference(gone)


@dataclass(slots=True)
class _Exchange:
    token: str
    future: asyncio.Future[None]
    errors: list[ServerError] = field(default_factory=list)
    subscribed: frozenset[str] | None = None
    authenticated: bool = False


class ServerLink:
    """One open WebSocket: reads and dispatches server messages, runs request exchanges and the heartbeat."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        subs: Subscriptions,
        ping_interval: float,
        ping_timeout: float,
        on_error: Callable[[ServerError], None],
    ) -> None:
        self.ws = ws
        self.subs = subs
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.on_error = on_error
        self._current: _Exchange | None = None
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()  # one exchange at a time: the user's requests and token refreshes

    async def reader(self) -> NoReturn:
        """Handle messages until the connection ends, then raise :class:`ConnectionLost`."""
        ws = self.ws
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.handle(msg.data)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                raise ConnectionLost(f"connection error: {ws.exception()}")
        raise ConnectionLost(f"server closed the connection (code {ws.close_code})", ws.close_code)

    async def heartbeat(self) -> NoReturn:
        """Ping every ``ping_interval``; raise :class:`ConnectionLost` when a pong is late."""
        while True:
            await asyncio.sleep(self.ping_interval)
            token = f"hb-{next(self._ids)}"
            fut = self._pings[token] = asyncio.get_running_loop().create_future()
            try:
                await self._send({"op": "ping", "id": token})
                await asyncio.wait_for(fut, self.ping_timeout)
            except TimeoutError:
                raise ConnectionLost(f"no pong within {self.ping_timeout} s: server unresponsive") from None
            finally:
                self._pings.pop(token, None)

    async def exchange(self, op: str, symbols: list[str]) -> frozenset[str]:
        """Send one request and the ping that ends its answer; return the confirmed set or raise its error.

        New symbols of a subscribe are followed from the start (to take their snapshot) and
        dropped again unless the server confirms them; its ``subscribed`` set is authoritative.
        """
        subs = self.subs
        async with self._lock:
            added = [s for s in symbols if s not in subs.symbols] if op == "subscribe" else []
            subs.symbols.update(dict.fromkeys(added))
            ex = await self._exchange({"op": op, "symbols": symbols}, added)
        if ex.errors:
            raise ex.errors[0]
        return frozenset(subs.symbols)

    async def refresh(self, token: str) -> list[ServerError]:
        """Replace the connection's token (``{"op":"refresh"}``); return the errors that came with the answer.

        The server may narrow the set or move symbols between tiers (a ``subscribed``, applied here, then
        ``forbidden_symbol``). A token it refuses is answered with error ``unauthorized``, and the token
        in force stays (the connection stays open): the caller keeps it and tries again.
        """
        async with self._lock:
            ex = await self._exchange({"op": "refresh", "token": token}, [])
        if not ex.authenticated and not ex.errors:
            log.warning("ticker client: the server did not confirm the token refresh")
        return ex.errors

    async def _exchange(self, request: dict[str, Any], added: list[str]) -> _Exchange:
        """Send ``request`` and a ping; collect the answer until the pong. ``added``: symbols followed on trial."""
        subs = self.subs
        ping_id = f"req-{next(self._ids)}"
        ex = self._current = _Exchange(ping_id, asyncio.get_running_loop().create_future())
        done = False
        try:
            await self._send(request)
            await self._send({"op": "ping", "id": ping_id})
            try:
                await asyncio.wait_for(ex.future, self.ping_timeout)
            except TimeoutError:
                raise ConnectionLost(f"no answer to {request['op']} within {self.ping_timeout} s") from None
            done = True
        finally:
            self._current = None
            if not done or ex.subscribed is None:
                subs.forget(added)  # not (known to be) subscribed: a retry after a reconnect decides
        if ex.subscribed is not None:
            subs.confirm(ex.subscribed)
        return ex

    async def _send(self, obj: Any) -> None:
        await self.ws.send_str(orjson.dumps(obj).decode())

    def handle(self, data: str) -> None:
        """Dispatch one server message."""
        try:
            msg = orjson.loads(data)
            kind = msg["type"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            log.warning("ignoring a malformed server message: %.200s", data)
            return
        ex = self._current
        if kind == "quotes" or kind == "snapshot":
            self.subs.apply(msg.get("data") or ())
        elif kind == "pong":
            ping_id = msg.get("id")
            if ex is not None and ping_id == ex.token:
                if not ex.future.done():
                    ex.future.set_result(None)
            elif (
                isinstance(ping_id, str) and (fut := self._pings.get(ping_id)) is not None and not fut.done()
            ):
                fut.set_result(None)
        elif kind == "subscribed":
            confirmed = frozenset(msg.get("symbols") or ())
            self.subs.set_delayed(frozenset(msg.get("delayed") or ()) & confirmed)
            if ex is not None:
                ex.subscribed = confirmed
            else:
                self.subs.confirm(confirmed)  # the server narrowed the set by itself
        elif kind == "authenticated":
            if ex is not None:
                ex.authenticated = True
        elif kind == "error":
            named = msg.get("symbols")
            symbols = [str(s) for s in named] if isinstance(named, list) else []
            err = server_error(str(msg.get("code")), str(msg.get("message")), symbols)
            if ex is not None:
                ex.errors.append(err)
            else:
                self.on_error(err)
