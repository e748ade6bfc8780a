"""An asyncio client of the ticker WebSocket protocol, on aiohttp.

::

    async with TickerClient("ws://127.0.0.1:8888/ws", symbols=["AAPL", "MSFT"]) as client:
        async for quote in client:
            print(quote.symbol, quote.price)

The client reconnects by itself (exponential backoff with full jitter), resubscribes its whole
symbol set and applies the new snapshot, so the loop above keeps going across server restarts.
It checks liveness with the protocol's ``ping``, keeps ``latest[symbol]`` up to date, and hands
quotes to the loop through a bounded buffer that conflates per symbol when the loop falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from feeds.backoff import Backoff
from ticker import protocol
from ticker.client_models import (
    ClientClosedError,
    ConnectError,
    Event,
    EventKind,
    InvalidSymbolError,
    Quote,
    QuoteBuffer,
    ServerError,
    State,
    TickerError,
    server_error,
)

__all__ = [
    "ClientClosedError",
    "ConnectError",
    "ConnectionLost",
    "Event",
    "EventKind",
    "InvalidSymbolError",
    "Quote",
    "ServerError",
    "State",
    "TickerClient",
    "TickerError",
]

log = logging.getLogger("ticker.client")


class ConnectionLost(TickerError):
    """The connection ended: closed by the server (``code``), broken, or silent past the ping timeout."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Request:
    op: str
    symbols: list[str]
    future: asyncio.Future[frozenset[str]]


@dataclass(slots=True)
class _Exchange:
    """One request on the wire, answered when the pong of the ping sent right after it arrives."""

    token: str
    future: asyncio.Future[None]
    errors: list[ServerError] = field(default_factory=list)
    subscribed: frozenset[str] | None = None


class TickerClient:
    """A self-healing subscription to a ticker server; iterate it for :class:`Quote` objects."""

    def __init__(
        self,
        url: str,
        symbols: list[str] | tuple[str, ...] = (),
        *,
        backoff: Backoff | None = None,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
        connect_timeout: float | None = 10.0,
        handshake_timeout: float = 10.0,
        buffer_limit: int = 10_000,
        on_event: Callable[[Event], None] | None = None,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        valid, invalid = protocol.split_symbols(symbols)
        if invalid:
            raise InvalidSymbolError(protocol.invalid_symbols_message(invalid), invalid)
        self.url = url
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        #: The latest quote of every subscribed symbol (kept current even when the loop lags).
        self.latest: dict[str, Quote] = {}
        self._symbols: dict[str, None] = dict.fromkeys(valid)
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._buffer = QuoteBuffer(buffer_limit)
        self._on_event = on_event
        self._headers = dict(headers or {})
        self._session = session
        self._own_session = session is None
        self._state = State.IDLE
        self._closing = False
        self._ever_connected = False
        self._attempt = 0
        self._last_error: BaseException | None = None
        self._requests: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._data = asyncio.Event()
        self._listeners: list[asyncio.Queue[Event | None]] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._last_q: dict[str, int] = {}
        self._current: _Exchange | None = None
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._ids = itertools.count(1)
        self.connections = 0  # successful connections so far

    # -- public API --------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The connection state."""
        return self._state

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols this client follows."""
        return frozenset(self._symbols)

    @property
    def conflated(self) -> int:
        """Updates replaced in the buffer by a newer value because the loop fell behind."""
        return self._buffer.conflated

    async def __aenter__(self) -> TickerClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect and subscribe; return once the initial snapshot is applied.

        Raises :class:`ConnectError` when no connection succeeds within ``connect_timeout``
        (``None``: wait for ever) or the server refuses the handshake outright, and the
        :class:`ServerError` of a refused initial subscription.
        """
        if self._task is not None:
            raise TickerError("the client was already started")
        loop = asyncio.get_running_loop()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._first = loop.create_future()
        self._task = loop.create_task(self._run(), name="ticker-client")
        try:
            await asyncio.wait_for(asyncio.shield(self._first), self.connect_timeout)
        except TimeoutError:
            err = ConnectError(
                f"no connection to {self.url} within {self.connect_timeout} s: {self._last_error}"
            )
            await self.close()
            raise err from None
        except BaseException:
            await self.close()
            raise

    async def subscribe(self, *symbols: str) -> frozenset[str]:
        """Add symbols; return the full set the server confirms. Waits while disconnected.

        Raises :class:`InvalidSymbolError` (nothing is sent) for malformed symbols and
        :class:`~ticker.client_models.TooManySymbolsError` when the server's cap would be passed.
        """
        valid, invalid = protocol.split_symbols(symbols)
        if invalid:
            raise InvalidSymbolError(protocol.invalid_symbols_message(invalid), invalid)
        return await self._request("subscribe", valid)

    async def unsubscribe(self, *symbols: str) -> frozenset[str]:
        """Remove symbols; from the moment of the call no quote of theirs is yielded any more."""
        valid, invalid = protocol.split_symbols(symbols)
        if invalid:
            raise InvalidSymbolError(protocol.invalid_symbols_message(invalid), invalid)
        self._forget(valid)
        return await self._request("unsubscribe", valid)

    def events(self, maxsize: int = 256) -> AsyncIterator[Event]:
        """Connection events from now on, until the client closes (oldest dropped past ``maxsize``)."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        if self._state is State.CLOSED:
            queue.put_nowait(None)
        else:
            self._listeners.append(queue)
        return self._event_iter(queue)

    def __aiter__(self) -> TickerClient:
        return self

    async def __anext__(self) -> Quote:
        while True:
            quote = self._buffer.pop()
            if quote is not None:
                return quote
            if self._state is State.CLOSED:
                raise StopAsyncIteration
            if self._task is None:
                raise ClientClosedError("the client is not started: use 'async with' or await start()")
            self._data.clear()
            await self._data.wait()

    async def close(self) -> None:
        """Close the connection (code 1000) and stop; iteration ends after the buffered quotes."""
        if self._state is State.CLOSED:
            return
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._own_session and self._session is not None:
            await self._session.close()
        self._finish()

    def __repr__(self) -> str:
        return f"<TickerClient {self.url} {self._state.value} symbols={len(self._symbols)}>"

    # -- internals: lifecycle ----------------------------------------------------------------
    def _finish(self) -> None:
        self._set_state(State.CLOSED)
        for req in self._requests:
            if not req.future.done():
                req.future.set_exception(ClientClosedError("the client was closed"))
        self._requests.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(ClientClosedError("the client was closed"))
            self._first.exception()  # start() may be gone already: no "never retrieved" warning
        self._emit(EventKind.CLOSED)
        for q in self._listeners:
            _put_dropping(q, None)
        self._listeners.clear()
        self._data.set()

    async def _run(self) -> None:
        try:
            while not self._closing:
                self._set_state(State.RECONNECTING if self._ever_connected else State.CONNECTING)
                try:
                    ws = await asyncio.wait_for(self._connect(), self.handshake_timeout)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    if self._refused_for_good(exc):
                        return
                    await self._retry(exc)
                    continue
                error = await self._connection(ws)
                if self._closing:
                    return
                self._set_state(State.RECONNECTING)
                self._emit(EventKind.DISCONNECTED, error=error)
                await self._retry(error)
        except Exception as exc:  # a bug must not leave the user's loop hanging
            log.exception("ticker client stopped")
            if self._first is not None and not self._first.done():
                self._first.set_exception(exc)
            self._finish()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        assert self._session is not None
        return await self._session.ws_connect(self.url, headers=self._headers, autoping=True)

    def _refused_for_good(self, exc: BaseException) -> bool:
        # Before the first success a 4xx handshake answer (bad URL, refused origin) will not heal.
        if (
            not self._ever_connected
            and isinstance(exc, aiohttp.WSServerHandshakeError)
            and 400 <= exc.status < 500
            and exc.status != 429
            and self._first is not None
            and not self._first.done()
        ):
            self._first.set_exception(ConnectError(f"{self.url} refused the WebSocket handshake: {exc}"))
            return True
        return False

    async def _retry(self, error: BaseException) -> None:
        self._last_error = error
        self._attempt += 1
        delay = self._backoff.next_delay()
        if self._ever_connected:
            self._set_state(State.RECONNECTING)
        self._emit(EventKind.RECONNECTING, delay=delay, error=error)
        log.info("ticker client: %s; retrying in %.2f s", error, delay)
        await asyncio.sleep(delay)

    async def _connection(self, ws: aiohttp.ClientWebSocketResponse) -> BaseException:
        """Serve one connection until it ends; return why it ended."""
        self._ws = ws
        self._last_q.clear()  # sequence numbers are per server process: the new snapshot wins
        resumed = self._ever_connected
        self._set_state(State.CONNECTED)
        self._emit(EventKind.CONNECTED)
        tasks = [
            asyncio.create_task(self._reader(ws)),
            asyncio.create_task(self._writer(ws, resumed)),
            asyncio.create_task(self._heartbeat(ws)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            error: BaseException = ConnectionLost("connection closed")
            for t in done:
                exc = t.exception()
                if exc is not None:
                    error = exc
            return error
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._ws = None
            self._current = None
            self._pings.clear()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)

    # -- internals: one connection -----------------------------------------------------------
    async def _reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self._handle(msg.data)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                raise ConnectionLost(f"connection error: {ws.exception()}")
        raise ConnectionLost(f"server closed the connection (code {ws.close_code})", ws.close_code)

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse, resumed: bool) -> None:
        try:
            if self._symbols:
                await self._exchange(ws, "subscribe", list(self._symbols))
        except ServerError as exc:
            if self._first is not None and not self._first.done():
                self._first.set_exception(exc)
                await asyncio.Future()  # start() closes the client
            self._emit(EventKind.ERROR, error=exc)
        self._backoff.reset()
        self._attempt = 0
        self.connections += 1
        self._ever_connected = True
        if resumed:
            self._emit(EventKind.RESUMED)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        while True:
            while self._requests:
                req = self._requests[0]
                if req.future.done():  # cancelled by the caller
                    self._requests.popleft()
                    continue
                try:
                    result = await self._exchange(ws, req.op, req.symbols)
                except ServerError as exc:
                    self._requests.popleft()
                    if not req.future.done():
                        req.future.set_exception(exc)
                    continue
                self._requests.popleft()
                if not req.future.done():
                    req.future.set_result(result)
            self._wake.clear()
            await self._wake.wait()

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            token = f"hb-{next(self._ids)}"
            fut = self._pings[token] = asyncio.get_running_loop().create_future()
            try:
                await ws.send_str(orjson.dumps({"op": "ping", "id": token}).decode())
                await asyncio.wait_for(fut, self.ping_timeout)
            except TimeoutError:
                raise ConnectionLost(f"no pong within {self.ping_timeout} s: server unresponsive") from None
            finally:
                self._pings.pop(token, None)

    async def _exchange(
        self, ws: aiohttp.ClientWebSocketResponse, op: str, symbols: list[str]
    ) -> frozenset[str]:
        """Send one request and the ping that marks its end; return the confirmed set or raise its error."""
        token = f"req-{next(self._ids)}"
        ex = self._current = _Exchange(token, asyncio.get_running_loop().create_future())
        added = [s for s in symbols if s not in self._symbols] if op == "subscribe" else []
        self._symbols.update(dict.fromkeys(added))  # accept their snapshot entries
        done = False
        try:
            await ws.send_str(orjson.dumps({"op": op, "symbols": symbols}).decode())
            await ws.send_str(orjson.dumps({"op": "ping", "id": token}).decode())
            try:
                await asyncio.wait_for(ex.future, self.ping_timeout)
            except TimeoutError:
                raise ConnectionLost(f"no answer to {op} within {self.ping_timeout} s") from None
            done = True
        finally:
            self._current = None
            if not done or ex.subscribed is None:
                self._forget(added)  # not (known to be) subscribed: retried after a reconnect
        if ex.subscribed is not None:  # the server's set is authoritative (symbols it refused go)
            confirmed = ex.subscribed
            self._forget([s for s in self._symbols if s not in confirmed])
        if ex.errors:
            raise ex.errors[0]
        return frozenset(self._symbols)

    def _handle(self, data: str) -> None:
        try:
            msg = orjson.loads(data)
            kind = msg["type"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            log.warning("ignoring a malformed server message: %.200s", data)
            return
        if kind == "quotes" or kind == "snapshot":
            self._apply(msg.get("data") or ())
        elif kind == "pong":
            ping_id = msg.get("id")
            ex = self._current
            if ex is not None and ping_id == ex.token:
                if not ex.future.done():
                    ex.future.set_result(None)
            elif (
                isinstance(ping_id, str) and (fut := self._pings.get(ping_id)) is not None and not fut.done()
            ):
                fut.set_result(None)
        elif kind == "subscribed":
            if self._current is not None:
                self._current.subscribed = frozenset(msg.get("symbols") or ())
        elif kind == "error":
            err = server_error(str(msg.get("code")), str(msg.get("message")))
            if self._current is not None:
                self._current.errors.append(err)
            else:
                log.warning("ticker server error: %s", err)
                self._emit(EventKind.ERROR, error=err)

    def _apply(self, entries: Any) -> None:
        symbols, last_q, latest, buf = self._symbols, self._last_q, self.latest, self._buffer
        pushed = False
        for e in entries:
            try:
                quote = Quote.from_wire(e)
            except ValueError as exc:
                log.warning("ignoring %s", exc)
                continue
            sym = quote.symbol
            if sym not in symbols:
                continue  # unsubscribed: a frame already on the wire
            last = last_q.get(sym)
            if last is not None and quote.seq <= last:
                continue  # already applied (snapshot repeated by the next frame)
            last_q[sym] = quote.seq
            latest[sym] = quote
            buf.push(quote)
            pushed = True
        if pushed:
            self._data.set()

    # -- internals: helpers ------------------------------------------------------------------
    async def _request(self, op: str, symbols: list[str]) -> frozenset[str]:
        if self._state is State.CLOSED or self._closing:
            raise ClientClosedError("the client is closed")
        fut: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._requests.append(_Request(op, symbols, fut))
        self._wake.set()
        return await fut

    def _forget(self, symbols: list[str]) -> None:
        for s in symbols:
            self._symbols.pop(s, None)
            self._last_q.pop(s, None)
            self.latest.pop(s, None)
        self._buffer.discard(symbols)

    def _set_state(self, state: State) -> None:
        self._state = state

    def _emit(self, kind: EventKind, delay: float | None = None, error: BaseException | None = None) -> None:
        ev = Event(kind, self._state, self._attempt, delay, error)
        for q in self._listeners:
            _put_dropping(q, ev)
        if self._on_event is not None:
            try:
                self._on_event(ev)
            except Exception:
                log.exception("on_event callback failed")

    async def _event_iter(self, queue: asyncio.Queue[Event | None]) -> AsyncIterator[Event]:
        try:
            while (ev := await queue.get()) is not None:
                yield ev
        finally:
            with contextlib.suppress(ValueError):
                self._listeners.remove(queue)


def _put_dropping(queue: asyncio.Queue[Event | None], item: Event | None) -> None:
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(item)
