"""The Python client's per-connection machinery: the subscription state and one protocol link.

A request (subscribe, unsubscribe, subscribe_bars, unsubscribe_bars, refresh, options) is followed on the wire by a ``ping``; the server handles a
connection's messages in order, so everything it sends before the matching ``pong`` — the
``subscribed`` set, the snapshot, the ``status`` of symbols that are not live, a ``bars`` history,
``authenticated``, ``options``, any ``error`` — answers that request. One request is in flight at a time
(a resubscription after a reconnect is one ``subscribe`` per rate, then one ``ping``).
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

from ticker.client.barstream import BarKey, BarSubscription
from ticker.client.merge import EntryMerger
from ticker.client.models import (
    ConnectionLost,
    ForbiddenSymbolError,
    QuoteBuffer,
    ServerError,
    UnknownSymbolError,
    server_error,
)
from ticker.quote import Quote, decode_entry
from ticker.status import IS_LIVE, LIVE, SymbolStatus

log = logging.getLogger("ticker.client")


StatusChange = tuple[str, SymbolStatus]


class Subscriptions:
    """What the client follows and has applied: the symbol set, the merged entries per symbol, latest values,
    the buffer, which symbols the server sends delayed, the state of those that are not live, the rates asked
    and granted, the connection options in force (``fields``, ``delta``), and the bar subscriptions."""

    def __init__(
        self,
        symbols: Iterable[str],
        buffer_limit: int,
        fields: tuple[str, ...] | None = None,
        delta: bool = False,
    ) -> None:
        self.symbols: dict[str, None] = dict.fromkeys(symbols)
        self.merger = EntryMerger(delta)
        self.fields = fields  # the fields selected on the connection (None: all)
        self.wanted_hz: dict[
            str, float
        ] = {}  # the max_hz asked for each throttled symbol (kept across reconnects)
        self.rates: dict[str, float] = {}  # the rates granted: the last ``subscribed`` message's ``rates``
        self.latest: dict[str, Quote] = {}
        #: The epoch of the source that numbered the ``q`` handed on (a snapshot's ``e``; None: not known), and
        #: the last ``q`` handed on per symbol under it: kept across reconnects (docs/protocol.md, the epoch rule).
        self.epoch: str | None = None
        self.seen: dict[str, int] = {}
        self._told = False  # whether this connection said its epoch (its first snapshot)
        self.buffer = QuoteBuffer(buffer_limit)
        self.data = asyncio.Event()  # set when the buffer gets something
        self.delayed: frozenset[str] = frozenset()
        self.status: dict[str, SymbolStatus] = {}  # followed symbols that are not live; the others are
        self._unconfirmed: set[str] = set()  # states from an earlier connection the new one has not repeated
        #: Bar subscriptions by (symbol, interval): those the server holds, and the one being requested.
        self.bars: dict[BarKey, BarSubscription] = {}

    def new_connection(self) -> None:
        """A new connection's deltas start from its snapshot; whether its ``q`` go on from those handed on so far
        is for its snapshot's epoch to say (:meth:`apply`). The states known so far hold until the new
        connection's subscription is answered (:meth:`settle`)."""
        self.merger.clear()
        self._told = False
        self.rates = {}
        self.delayed = frozenset()
        self._unconfirmed = set(self.status)

    def states(self) -> dict[str, SymbolStatus]:
        """The state of every followed symbol (``live`` unless the server said otherwise)."""
        status = self.status
        return {s: status.get(s, IS_LIVE) for s in self.symbols}

    def set_status(self, entries: Iterable[Any]) -> list[StatusChange]:
        """Apply the entries of a ``status`` message; return the symbols whose state changed, with the new one."""
        changes: list[StatusChange] = []
        for e in entries:
            try:
                symbol, st = _status_entry(e)
            except ValueError as exc:
                log.warning("ignoring a malformed status entry: %s", exc)
                continue
            if symbol not in self.symbols:
                continue  # unsubscribed meanwhile
            self._unconfirmed.discard(symbol)
            changes.extend(self._set(symbol, st))
        return changes

    def settle(self) -> list[StatusChange]:
        """A new connection's subscription is answered: states it did not repeat are ``live`` now."""
        changes: list[StatusChange] = []
        for symbol in sorted(self._unconfirmed):
            changes.extend(self._set(symbol, IS_LIVE))
        self._unconfirmed.clear()
        return changes

    def _set(self, symbol: str, st: SymbolStatus) -> list[StatusChange]:
        if st.state == LIVE:
            st = IS_LIVE
        if self.status.get(symbol, IS_LIVE) == st:
            return []
        if st is IS_LIVE:
            del self.status[symbol]
        else:
            self.status[symbol] = st
        return [(symbol, st)]

    def set_delayed(self, delayed: frozenset[str]) -> None:
        """The server's ``delayed`` set. A symbol that moved between tiers starts again from its next entry (a
        snapshot, or the first entry of its new tier, which is full): delayed entries keep their original ``q``,
        below the real-time ones applied (and back), and a delta connection's deltas of the new tier are not of
        the old tier's state."""
        moved = self.delayed ^ delayed
        if moved:
            self.merger.forget(moved)
            for s in moved:
                self.seen.pop(s, None)
        self.delayed = delayed

    @property
    def delta(self) -> bool:
        """Whether the connection's ``quotes`` entries are deltas."""
        return self.merger.delta

    def set_options(self, fields: tuple[str, ...] | None, delta: bool) -> None:
        """The options in force (the server's ``options`` reply); the snapshot that follows replaces the states
        (whatever their ``q``: the new options' entries start afresh)."""
        self.fields = fields
        self.merger.delta = delta
        self.merger.clear()
        self.seen.clear()

    def want_rate(self, symbols: Iterable[str], max_hz: float | None) -> None:
        """Record the rate asked for ``symbols`` (None: unthrottled), for the resubscription after a reconnect."""
        wanted = self.wanted_hz
        for s in symbols:
            if max_hz is None:
                wanted.pop(s, None)
            else:
                wanted[s] = max_hz

    def set_rates(self, raw: Any, confirmed: frozenset[str]) -> None:
        """The ``rates`` of a ``subscribed`` message: the granted rate of every throttled symbol held."""
        rates: dict[str, float] = {}
        if isinstance(raw, dict):
            for s, hz in raw.items():
                if s in confirmed and isinstance(hz, int | float) and not isinstance(hz, bool):
                    rates[s] = float(hz)
        self.rates = rates

    def confirm(self, symbols: frozenset[str]) -> None:
        """The server's ``subscribed`` set is authoritative: stop following what it does not hold."""
        self.forget([s for s in self.symbols if s not in symbols])

    def apply(self, entries: Iterable[Any], snapshot: bool = False, epoch: Any = None) -> None:
        """Apply the Q entries of a ``snapshot`` (with ``snapshot``, and its ``e`` as ``epoch``) or ``quotes``
        message: merge them (deltas included; :mod:`ticker.client.merge`), drop unfollowed symbols, and hand on
        only entries whose ``q`` is above the last handed on under the same epoch (docs/protocol.md, the epoch
        rule: a snapshot of another epoch starts again)."""
        if snapshot:
            self._epoch(epoch if type(epoch) is str else None)
        elif (
            not self._told
        ):  # entries before any snapshot (a server that does not say its epoch): start again
            self._restart(None)
        symbols, merge, latest, buf, seen = (
            self.symbols,
            self.merger.apply,
            self.latest,
            self.buffer,
            self.seen,
        )
        pushed = False
        for e in entries:
            if type(e) is dict and type(s := e.get("s")) is str and s not in symbols:
                continue  # unsubscribed: a frame already on the wire
            try:
                state = merge(e, snapshot)
                if state is None:
                    continue  # already applied (a snapshot entry repeated by the next frame)
                quote = decode_entry(state)
            except ValueError as exc:
                log.warning("ignoring %s", exc)
                continue
            sym = quote.symbol
            if quote.seq <= seen.get(sym, 0):
                continue  # handed on already, or older: a reconnect under the same epoch, a re-rate's snapshot
            seen[sym] = quote.seq
            latest[sym] = quote
            buf.push(quote)
            pushed = True
        if pushed:
            self.data.set()

    def _epoch(self, epoch: str | None) -> None:
        """A snapshot says the connection's epoch: another than the one in force starts again (one that says none,
        from an older server, does on each connection, whose numbering was its own)."""
        if epoch != self.epoch or (epoch is None and not self._told):
            self._restart(epoch)
        self._told = True

    def _restart(self, epoch: str | None) -> None:
        """Another numbering: forget every ``q`` handed on; the merge states stay the deltas' bases."""
        if epoch != self.epoch:
            log.info("quotes are numbered by epoch %s now (was %s)", epoch, self.epoch)
        self.epoch = epoch
        self.seen.clear()
        self.merger.restart()
        self._told = True

    def forget(self, symbols: Iterable[str]) -> None:
        """Stop following ``symbols``: their latest values and waiting quotes go."""
        gone = list(symbols)
        for s in gone:
            self.symbols.pop(s, None)
            self.seen.pop(s, None)
            self.latest.pop(s, None)
            self.wanted_hz.pop(s, None)
            self.rates.pop(s, None)
            self.status.pop(s, None)
            self._unconfirmed.discard(s)
        self.merger.forget(gone)
        self.buffer.discard(gone)
        if self.delayed and not self.delayed.isdisjoint(gone):
            self.delayed = self.delayed.difference(gone)


def _status_entry(e: Any) -> StatusChange:
    """``(symbol, status)`` of one ``{"s","state","reason"}`` entry; ``ValueError`` when malformed."""
    if not isinstance(e, dict):
        raise ValueError(f"expected an object, got {type(e).__name__}")
    symbol, state, reason = e.get("s"), e.get("state"), e.get("reason", "")
    if not isinstance(symbol, str) or not isinstance(state, str) or not state or not isinstance(reason, str):
        raise ValueError(f"expected string fields s, state and reason: {str(e)[:200]}")
    return symbol, SymbolStatus(state, reason)


@dataclass(slots=True)
class _Exchange:
    token: str
    future: asyncio.Future[None]
    symbols: frozenset[str] | None = None  # the request's, when it names symbols
    errors: list[ServerError] = field(default_factory=list)
    subscribed: frozenset[str] | None = None
    authenticated: bool = False
    options: bool = False  # the server answered an ``options`` request


class ServerLink:
    """One open WebSocket: reads and dispatches server messages, runs request exchanges and the heartbeat."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        subs: Subscriptions,
        ping_interval: float,
        ping_timeout: float,
        on_error: Callable[[ServerError], None],
        on_status: Callable[[str, SymbolStatus], None] | None = None,
    ) -> None:
        self.ws = ws
        self.subs = subs
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.on_error = on_error
        self.on_status = on_status
        self._current: _Exchange | None = None
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._ended_bars: list[
            BarSubscription
        ] = []  # ended by the server, waiting for the error that says why
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

    async def exchange(self, op: str, symbols: list[str], max_hz: float | None = None) -> frozenset[str]:
        """Send one request and the ping that ends its answer; return the confirmed set or raise its error.

        New symbols of a subscribe are followed from the start (to take their snapshot) and
        dropped again unless the server confirms them; its ``subscribed`` set is authoritative.
        A subscribe's ``max_hz`` (None: unthrottled) is the rate of its symbols, kept for later resubscriptions.
        The first error raises; any further one (``unknown_symbol`` then ``forbidden_symbol``) goes
        to ``on_error``.
        """
        subs = self.subs
        async with self._lock:
            added = [s for s in symbols if s not in subs.symbols] if op == "subscribe" else []
            subs.symbols.update(dict.fromkeys(added))
            request = _symbols_request(op, symbols, max_hz)
            ex = await self._exchange([request], added, frozenset(symbols))
        if op == "subscribe" and (
            not ex.errors or isinstance(ex.errors[0], UnknownSymbolError | ForbiddenSymbolError)
        ):  # the symbols the server took have the new rate
            subs.want_rate([s for s in symbols if s in subs.symbols], max_hz)
        self._raise(ex)
        return frozenset(subs.symbols)

    async def resubscribe(self, groups: list[tuple[list[str], float | None]]) -> frozenset[str]:
        """Subscribe the groups of symbols held, each at its rate (one ``subscribe`` each, then one ping);
        return the confirmed set or raise the first error (any further one goes to ``on_error``)."""
        requests = [_symbols_request("subscribe", symbols, max_hz) for symbols, max_hz in groups]
        named = frozenset(s for symbols, _ in groups for s in symbols)
        async with self._lock:
            ex = await self._exchange(requests, [], named)
        self._raise(ex)
        return frozenset(self.subs.symbols)

    async def options(self, request: dict[str, Any]) -> None:
        """Send an ``{"op":"options"}`` request and wait for its answer: the ``options`` reply (applied to
        :class:`Subscriptions`), then the snapshot under the new options. Raise its first error."""
        async with self._lock:
            ex = await self._exchange([request], [])
        self._raise(ex)
        if not ex.options:
            log.warning("ticker client: the server did not answer the options request")

    def _raise(self, ex: _Exchange) -> None:
        """Raise the first error of an exchange; any further one goes to ``on_error``."""
        if ex.errors:
            for extra in ex.errors[1:]:
                self.on_error(extra)
            raise ex.errors[0]

    async def bars_exchange(self, op: str, symbol: str, interval: str, history: int | None = None) -> None:
        """Send a ``subscribe_bars`` (with ``history``) or ``unsubscribe_bars`` and wait for its answer; raise
        its first error (any further one goes to ``on_error``). The ``bars`` reply goes to the subscription
        in :attr:`Subscriptions.bars` before this returns."""
        request: dict[str, Any] = {"op": op, "symbol": symbol, "interval": interval}
        if history is not None:
            request["history"] = history
        async with self._lock:
            ex = await self._exchange([request], [], frozenset((symbol,)))
        self._raise(ex)

    async def refresh(self, token: str) -> list[ServerError]:
        """Replace the connection's token (``{"op":"refresh"}``); return the errors that came with the answer.

        The server may narrow the set or move symbols between tiers (a ``subscribed``, applied here, then
        ``forbidden_symbol``). A token it refuses is answered with error ``unauthorized``, and the token
        in force stays (the connection stays open): the caller keeps it and tries again.
        """
        async with self._lock:
            ex = await self._exchange([{"op": "refresh", "token": token}], [])
        if not ex.authenticated and not ex.errors:
            log.warning("ticker client: the server did not confirm the token refresh")
        return ex.errors

    async def _exchange(
        self, requests: list[dict[str, Any]], added: list[str], symbols: frozenset[str] | None = None
    ) -> _Exchange:
        """Send ``requests`` and a ping; collect the answer until the pong. ``added``: symbols followed on trial;
        ``symbols``: those the requests name."""
        subs = self.subs
        ping_id = f"req-{next(self._ids)}"
        ex = self._current = _Exchange(ping_id, asyncio.get_running_loop().create_future(), symbols)
        done = False
        try:
            for request in requests:
                await self._send(request)
            await self._send({"op": "ping", "id": ping_id})
            try:
                await asyncio.wait_for(ex.future, self.ping_timeout)
            except TimeoutError:
                op = requests[0]["op"]
                raise ConnectionLost(f"no answer to {op} within {self.ping_timeout} s") from None
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
        if self._ended_bars and kind not in ("bars_unsubscribed", "error"):  # no reason came: a plain end
            ended, self._ended_bars = self._ended_bars, []
            for gone in ended:
                gone.end(_ended(gone))
        if kind == "quotes" or kind == "snapshot":
            self.subs.apply(msg.get("data") or (), kind == "snapshot", msg.get("e"))
        elif kind == "bar":
            if (sub := self._bar_sub(msg)) is not None:
                sub.update(msg.get("bar"))
        elif kind == "bars":
            if (sub := self._bar_sub(msg)) is not None:
                sub.load(msg.get("data") or (), msg.get("delayed") is True)
        elif kind == "bars_unsubscribed":
            # The client forgets a subscription when it asks to end it: one still held was ended by the
            # server (a refreshed token no longer covers the symbol, or a pending symbol turned out unknown),
            # which says why in the error that follows at once; it ends with that error.
            if (sub := self._bar_sub(msg, pop=True)) is not None:
                self._ended_bars.append(sub)
            return
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
            self.subs.set_rates(msg.get("rates"), confirmed)
            if ex is not None:
                ex.subscribed = confirmed
            else:
                self.subs.confirm(confirmed)  # the server narrowed the set by itself
        elif kind == "status":
            changes = self.subs.set_status(msg.get("data") or ())
            if self.on_status is not None:
                for symbol, st in changes:
                    self.on_status(symbol, st)
        elif kind == "authenticated":
            if ex is not None:
                ex.authenticated = True
        elif kind == "options":
            fields, delta = msg.get("fields"), msg.get("delta")
            if (fields is None or _strings(fields)) and isinstance(delta, bool):
                self.subs.set_options(tuple(fields) if fields is not None else None, delta)
                if ex is not None:
                    ex.options = True
            else:
                log.warning("ignoring a malformed options message: %.200s", data)
        elif kind == "error":
            named = msg.get("symbols")
            symbols = [str(s) for s in named] if isinstance(named, list) else []
            err = server_error(str(msg.get("code")), str(msg.get("message")), symbols, _suggestions(msg))
            ended, self._ended_bars = self._ended_bars, []
            for gone in ended:
                gone.end(err if gone.symbol in symbols else _ended(gone))
            if ex is not None and not _dropped_meanwhile(err, ex):
                ex.errors.append(err)
            else:
                self.on_error(err)

    def _bar_sub(self, msg: dict[str, Any], pop: bool = False) -> BarSubscription | None:
        """The bar subscription a message names by ``s`` and ``interval`` (taken out with ``pop``), if held."""
        s, interval = msg.get("s"), msg.get("interval")
        if not isinstance(s, str) or not isinstance(interval, str):
            return None
        bars = self.subs.bars
        return bars.pop((s, interval), None) if pop else bars.get((s, interval))


def _symbols_request(op: str, symbols: list[str], max_hz: float | None) -> dict[str, Any]:
    """A ``subscribe`` or ``unsubscribe`` request; ``max_hz`` (a subscribe's rate) when not None."""
    request: dict[str, Any] = {"op": op, "symbols": symbols}
    if max_hz is not None:
        request["max_hz"] = max_hz
    return request


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _ended(sub: BarSubscription) -> ServerError:
    return ServerError("bars_unsubscribed", f"the server ended the {sub.interval} bars of {sub.symbol}")


def _suggestions(msg: dict[str, Any]) -> dict[str, list[str]]:
    """The ``suggestions`` of an ``unknown_symbol`` error (symbol → closest known symbols); malformed parts skipped."""
    raw = msg.get("suggestions")
    if not isinstance(raw, dict):
        return {}
    return {
        str(sym): [str(s) for s in near]
        for sym, near in raw.items()
        if isinstance(near, list) and all(isinstance(s, str) for s in near)
    }


def _dropped_meanwhile(err: ServerError, ex: _Exchange) -> bool:
    """An ``unknown_symbol`` naming none of the request's symbols: the server dropped symbols accepted
    earlier as ``pending`` while the request was answered; it is not that request's answer."""
    return (
        isinstance(err, UnknownSymbolError)
        and ex.symbols is not None
        and bool(err.symbols)
        and ex.symbols.isdisjoint(err.symbols)
    )
