"""An asyncio client of the ticker WebSocket protocol, on aiohttp.

::

    async with TickerClient("ws://127.0.0.1:8888/ws", symbols=["AAPL", "MSFT"]) as client:
        async for quote in client:
            print(quote.symbol, quote.price)

The client reconnects by itself (exponential backoff with full jitter), resubscribes its whole
symbol set and applies the new snapshot, so the loop above keeps going across server restarts. It keeps
the epoch of the source that numbers ``q`` and the last ``q`` of each symbol across reconnects: under the same
epoch (another node of the same source) it never yields an update again or an older one; another epoch
starts again (docs/protocol.md, the epoch rule).
It checks liveness with the protocol's ``ping``, keeps ``latest[symbol]`` and ``states[symbol]`` (live,
pending, down, ...) up to date, and hands quotes to the loop through a bounded buffer that conflates per
symbol when the loop falls behind.
With ``token=`` or ``token_provider=`` it presents a bearer token on every connect, and with a
provider renews it over the live socket (``refresh``) before it expires.
``subscribe_bars`` gives a :class:`~ticker.client.barstream.BarSubscription` on the same connection: the
history, then live bars, subscribed again (history included) after a reconnect.
``max_hz`` (a default, and per ``subscribe``) caps each symbol's rate; ``fields`` and ``delta`` (at start, or
``set_options``) narrow the entries: the client merges deltas and always yields full quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from ticker import protocol
from ticker.backoff import Backoff
from ticker.bars import DEFAULT_LIMIT, MAX_LIMIT, InvalidInterval, parse_interval
from ticker.client.auth import MIN_REFRESH_INTERVAL, TokenSource
from ticker.client.barstream import BarKey, BarSubscription
from ticker.client.link import ServerLink, Subscriptions
from ticker.client.models import (
    AuthenticationFailed,
    BadRequestError,
    ClientClosedError,
    ConnectError,
    ConnectionLost,
    Event,
    EventKind,
    InvalidSymbolError,
    ServerError,
    State,
    TickerError,
    TokenProviderError,
    TooManyConnectionsError,
)
from ticker.client.streamopts import OWN_PARAMS, check_fields, check_max_hz, query_params, rate_groups
from ticker.errors import UNAUTHORIZED, invalid_symbols_message
from ticker.quote import Quote
from ticker.status import SymbolStatus

log = logging.getLogger("ticker.client")


class _Unset(enum.Enum):
    """Marks an argument left out (where None has a meaning of its own)."""

    UNSET = "unset"


UNSET = _Unset.UNSET


@dataclass(slots=True)
class _Request:
    run: Callable[[ServerLink], Awaitable[Any]]  # the exchange, on the connection of the moment
    future: asyncio.Future[Any]


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
        token: str | None = None,
        token_provider: Callable[[], Awaitable[str]] | None = None,
        max_hz: float | None = None,
        fields: Iterable[str] | str | None = None,
        delta: bool = False,
    ) -> None:
        if token is not None and token_provider is not None:
            raise ValueError("pass either token= or token_provider=, not both")
        valid, invalid = protocol.split_symbols(symbols)
        if invalid:
            raise InvalidSymbolError(invalid_symbols_message(invalid), invalid)
        own = [p for p in OWN_PARAMS if p in URL(url).query]
        if own:
            raise ValueError(f"pass {', '.join(own)} as arguments of the client, not in the URL")
        if not isinstance(delta, bool):
            raise BadRequestError(f"delta must be True or False, got {delta!r}")
        self._max_hz = check_max_hz(max_hz)
        self.url = url
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self._subs = Subscriptions(valid, buffer_limit, check_fields(fields), delta)
        self._subs.want_rate(valid, self._max_hz)
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._on_event = on_event
        self._headers = dict(headers or {})
        self._tokens = (
            TokenSource(token, token_provider) if token is not None or token_provider is not None else None
        )
        self._error: TickerError | None = None  # why the client gave up (raised by the iteration)
        self._session = session
        self._own_session = session is None
        self._state = State.IDLE
        self._closing = False
        self._ever_connected = False
        self._attempt = 0
        self._last_error: BaseException | None = None
        self._requests: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._listeners: list[asyncio.Queue[Event | None]] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # the refresher's (tests inject one)
        self.connections = 0  # successful connections so far

    # -- public API --------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The connection state."""
        return self._state

    @property
    def latest(self) -> dict[str, Quote]:
        """The latest quote of every followed symbol (kept current even when the loop lags)."""
        return self._subs.latest

    @property
    def epoch(self) -> str | None:
        """The epoch of the source that numbered the quotes' ``q`` (the last snapshot's ``e``; None before one).
        While it stays the same, a reconnect, to this node or another, never yields a quote older than, or the
        same as, one yielded before (docs/protocol.md, the epoch rule)."""
        return self._subs.epoch

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols this client follows."""
        return frozenset(self._subs.symbols)

    @property
    def states(self) -> dict[str, SymbolStatus]:
        """The state of every followed symbol: ``live`` unless the server's last ``status`` said otherwise
        (a fresh dict; ``status`` events report each change)."""
        return self._subs.states()

    @property
    def delayed(self) -> frozenset[str]:
        """The followed symbols the server sends delayed (``--delay``), as its last ``subscribed`` said."""
        return self._subs.delayed

    @property
    def max_hz(self) -> float | None:
        """The rate ``subscribe`` asks when its call gives none (None: unthrottled); the initial symbols' rate."""
        return self._max_hz

    @max_hz.setter
    def max_hz(self, value: float | None) -> None:
        self._max_hz = check_max_hz(value)

    @property
    def rates(self) -> dict[str, float]:
        """The rate granted for each throttled symbol (entries per second), as the server's last ``subscribed``
        said; unthrottled symbols are absent (a fresh dict)."""
        return dict(self._subs.rates)

    @property
    def fields(self) -> tuple[str, ...] | None:
        """The fields selected on the connection, in the Q entry's order (None: all); the others are None in
        the quotes."""
        return self._subs.fields

    @property
    def delta(self) -> bool:
        """Whether the server sends changed-fields deltas (the client merges them: quotes are always full)."""
        return self._subs.delta

    @property
    def pending(self) -> int:
        """Quotes received and waiting for the consumer (at most the buffer limit plus one per symbol)."""
        return len(self._subs.buffer)

    @property
    def conflated(self) -> int:
        """Updates replaced in the buffer by a newer value because the loop fell behind."""
        return self._subs.buffer.conflated

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

    async def subscribe(self, *symbols: str, max_hz: float | _Unset | None = UNSET) -> frozenset[str]:
        """Add symbols; return the full set the server confirms. Waits while disconnected.

        ``max_hz``: at most that many entries per second for each of these symbols, each the latest value
        (None: unthrottled; left out: the client's :attr:`max_hz`). Subscribing a symbol again sets its rate
        again; :attr:`rates` has what the server granted, and the rate is asked again after a reconnect.
        Raises :class:`BadRequestError` for a ``max_hz`` under 0.1 and
        :class:`InvalidSymbolError` (nothing is sent) for malformed symbols,
        :class:`~ticker.client.models.TooManySymbolsError` when the server's cap would be passed (nothing is
        subscribed), and :class:`~ticker.client.models.UnknownSymbolError` (or ``ForbiddenSymbolError``) naming
        the symbols the server refused; the other symbols of the call are subscribed all the same.
        """
        rate = self._max_hz if max_hz is UNSET else check_max_hz(max_hz)
        valid, invalid = protocol.split_symbols(symbols)
        if invalid:
            raise InvalidSymbolError(invalid_symbols_message(invalid), invalid)
        return await self._request("subscribe", valid, rate)

    async def unsubscribe(self, *symbols: str) -> frozenset[str]:
        """Remove symbols; from the moment of the call no quote of theirs is yielded any more."""
        valid, invalid = protocol.split_symbols(symbols)
        if invalid:
            raise InvalidSymbolError(invalid_symbols_message(invalid), invalid)
        self._subs.forget(valid)
        return await self._request("unsubscribe", valid)

    async def set_options(
        self, *, fields: Iterable[str] | str | _Unset | None = UNSET, delta: bool | None = None
    ) -> None:
        """Change the connection options (``{"op":"options"}``): ``fields`` (None: all), ``delta``; an argument
        left out keeps its value. Returns once the server's ``options`` reply and its snapshot under the new
        options are in (:attr:`fields` and :attr:`delta` then say what is in force, also after reconnects).
        Raises :class:`BadRequestError` (nothing is sent) for unknown fields or a selection without ``p``.
        """
        request: dict[str, Any] = {"op": "options"}
        if fields is not UNSET:
            chosen = check_fields(fields)
            request["fields"] = list(chosen) if chosen is not None else None
        if delta is not None:
            if not isinstance(delta, bool):
                raise BadRequestError(f"delta must be True or False, got {delta!r}")
            request["delta"] = delta
        if len(request) == 1:
            raise BadRequestError("set_options needs fields= or delta=")

        async def run(link: ServerLink) -> None:
            await link.options(request)

        await self._call(run)

    async def subscribe_bars(
        self, symbol: str, interval: str = "1m", *, history: int = DEFAULT_LIMIT
    ) -> BarSubscription:
        """Subscribe to ``symbol``'s bars at ``interval``; return once its last ``history`` bars are in.

        Iterate the result for :class:`~ticker.bars.Bar` objects: the history, then each bar that changes or
        opens (upsert by ``t``). After a reconnect it is subscribed again and the bars new or changed since
        come next. A subscription already held is returned as it is. Waits while disconnected. Raises
        :class:`InvalidSymbolError` or :class:`BadRequestError` (nothing is sent), and the server's refusals:
        :class:`~ticker.client.models.TooManyBarSubscriptionsError`, ``UnknownSymbolError``, ``ForbiddenSymbolError``.
        """
        sym, interval = _bar_target(symbol, interval)
        if type(history) is not int or not 0 <= history <= MAX_LIMIT:
            raise BadRequestError(f"history must be a whole number of bars from 0 to {MAX_LIMIT}")

        async def run(link: ServerLink) -> BarSubscription:
            bars = self._subs.bars
            held = bars.get((sym, interval))
            if held is not None:
                return held
            sub = bars[sym, interval] = BarSubscription(sym, interval, history)
            try:
                await link.bars_exchange("subscribe_bars", sym, interval, history)
            except BaseException:
                if bars.get(sub.key) is sub:
                    del bars[sub.key]
                raise
            return sub

        result: BarSubscription = await self._call(run)
        return result

    async def unsubscribe_bars(self, symbol: str, interval: str = "1m") -> None:
        """End a bar subscription: from the moment of the call its iteration yields nothing more and ends."""
        sym, interval = _bar_target(symbol, interval)
        self._end_bars((sym, interval), discard=True)

        async def run(link: ServerLink) -> None:
            self._end_bars((sym, interval), discard=True)  # subscribed by a request queued before this one
            await link.bars_exchange("unsubscribe_bars", sym, interval)

        await self._call(run)

    @property
    def bar_subscriptions(self) -> dict[BarKey, BarSubscription]:
        """The bar subscriptions held, by ``(symbol, interval)`` (a fresh dict)."""
        return {k: sub for k, sub in self._subs.bars.items() if sub.loads}

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
            quote = self._subs.buffer.pop()
            if quote is not None:
                return quote
            if self._state is State.CLOSED:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            if self._task is None:
                raise ClientClosedError("the client is not started: use 'async with' or await start()")
            self._subs.data.clear()
            await self._subs.data.wait()

    async def close(self) -> None:
        """Close the connection (code 1000) and stop; iteration ends after the buffered quotes."""
        if self._state is State.CLOSED:  # already closed, or the client gave up by itself
            if self._own_session and self._session is not None and not self._session.closed:
                await self._session.close()
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
        return f"<TickerClient {self.url} {self._state.value} symbols={len(self._subs.symbols)}>"

    # -- internals: lifecycle ----------------------------------------------------------------
    def _finish(self) -> None:
        self._set_state(State.CLOSED)
        for req in self._requests:
            if not req.future.done():
                req.future.set_exception(self._error or ClientClosedError("the client was closed"))
        self._requests.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(ClientClosedError("the client was closed"))
            self._first.exception()  # start() may be gone already: no "never retrieved" warning
        for key in list(self._subs.bars):
            self._end_bars(key, self._error)
        self._emit(EventKind.CLOSED)
        for q in self._listeners:
            _put_dropping(q, None)
        self._listeners.clear()
        self._subs.data.set()

    async def _run(self) -> None:
        try:
            while not self._closing:
                self._set_state(State.RECONNECTING if self._ever_connected else State.CONNECTING)
                try:
                    ws = await asyncio.wait_for(self._connect(), self.handshake_timeout)
                except (aiohttp.ClientError, OSError, TimeoutError, TokenProviderError) as exc:
                    error = self._auth_error(exc)
                    if self._refused_for_good(error):
                        return
                    await self._retry(error)
                    continue
                error = self._auth_error(await self._connection(ws))
                if self._closing:
                    return
                self._set_state(State.RECONNECTING)
                self._emit(EventKind.DISCONNECTED, error=error)
                if self._refused_for_good(error):
                    return
                await self._retry(error)
        except Exception as exc:  # a bug must not leave the user's loop hanging
            log.exception("ticker client stopped")
            if self._first is not None and not self._first.done():
                self._first.set_exception(exc)
            self._finish()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        assert self._session is not None
        headers = self._headers
        if self._tokens is not None:  # the header: no extra round trip, and no token in the URL
            headers = {**headers, "Authorization": f"Bearer {await self._tokens.current()}"}
        return await self._session.ws_connect(self._ws_url(), headers=headers, autoping=True)

    def _ws_url(self) -> str:
        """The URL to connect to: with the connection options in force (``fields``, ``delta``) in the query."""
        params = query_params(self._subs.fields, self._subs.delta)
        return str(URL(self.url).update_query(params)) if params else self.url

    def _auth_error(self, exc: BaseException) -> BaseException:
        """``exc`` as an auth error when it is one (HTTP 401/429, close 4001/4003/4029), else ``exc``."""
        tokens = self._tokens
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status == 401:
            if tokens is None:
                return AuthenticationFailed(
                    f"{self.url} requires a token (HTTP 401); give a token or a token provider"
                )
            tokens.reject()
            return AuthenticationFailed(f"{self.url} refused the token (HTTP 401)")
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status == 429:
            return TooManyConnectionsError(
                f"{self.url}: too many connections for this user or address, or connects too fast (HTTP 429)",
                _retry_after(exc),
            )
        if not isinstance(exc, ConnectionLost):
            return exc
        if exc.code == 4001:
            if tokens is not None:
                tokens.reject()
            return AuthenticationFailed(f"{self.url} refused the token (close 4001)")
        if exc.code == 4003:
            if tokens is not None and tokens.renewable:
                tokens.reject()
                return ConnectionLost("the token expired before it was refreshed (close 4003)", 4003)
            return AuthenticationFailed(
                "the token expired (close 4003); give a fresh token or a token provider"
            )
        if exc.code == 4029:
            return TooManyConnectionsError(f"{self.url}: too many connections for this user (close 4029)")
        return exc

    def _refused_for_good(self, exc: BaseException) -> bool:
        # A refused token will not heal unless a provider can give another one.
        if isinstance(exc, AuthenticationFailed) and (self._tokens is None or not self._tokens.renewable):
            self._give_up(exc)
            return True
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

    def _give_up(self, error: TickerError) -> None:
        """Stop for good: ``start()`` raises ``error``, or, once started, the iteration does."""
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)  # start() closes the client
            return
        log.error("ticker client: %s; giving up", error)
        self._error = error
        self._emit(EventKind.ERROR, error=error)
        self._finish()

    async def _retry(self, error: BaseException) -> None:
        self._last_error = error
        self._attempt += 1
        delay = self._backoff.next_delay()
        # The server's word on when to come back (429, 503: Retry-After) wins over a shorter backoff, with a
        # random share more: clients refused together must not all come back in the same second.
        asked = error.retry_after if isinstance(error, TooManyConnectionsError) else _retry_after(error)
        if asked is not None:
            asked = min(asked, MAX_RETRY_AFTER)
            delay = max(delay, asked * (1.0 + random.random()))
        if self._ever_connected:
            self._set_state(State.RECONNECTING)
        self._emit(EventKind.RECONNECTING, delay=delay, error=error)
        log.info("ticker client: %s; retrying in %.2f s", error, delay)
        await asyncio.sleep(delay)

    async def _connection(self, ws: aiohttp.ClientWebSocketResponse) -> BaseException:
        """Serve one connection until it ends; return why it ended."""
        self._ws = ws
        self._subs.new_connection()
        link = ServerLink(
            ws, self._subs, self.ping_interval, self.ping_timeout, self._unsolicited, self._status_changed
        )
        resumed = self._ever_connected
        self._set_state(State.CONNECTED)
        self._emit(EventKind.CONNECTED)
        tasks = [
            asyncio.create_task(link.reader()),
            asyncio.create_task(self._writer(link, resumed)),
            asyncio.create_task(link.heartbeat()),
        ]
        if self._tokens is not None:
            tasks.append(asyncio.create_task(self._refresher(link, self._tokens)))
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
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)

    async def _writer(self, link: ServerLink, resumed: bool) -> None:
        """Resubscribe the whole set, report the connection, then send the user's requests in order."""
        try:
            if self._subs.symbols:  # one subscribe per rate
                await link.resubscribe(rate_groups(self._subs.symbols, self._subs.wanted_hz))
        except ServerError as exc:
            if exc.code == UNAUTHORIZED:
                raise self._unauthorized() from None
            if self._first is not None and not self._first.done():
                self._first.set_exception(exc)
                await asyncio.Future()  # start() closes the client
            self._emit(EventKind.ERROR, error=exc)
        for symbol, st in self._subs.settle():  # states of the last connection it did not repeat
            self._status_changed(symbol, st)
        await self._resubscribe_bars(link)
        self._backoff.reset()
        self._attempt = 0
        self.connections += 1
        self._ever_connected = True
        if resumed:
            self._emit(EventKind.RESUMED)  # the snapshot came before the pong that ended the exchange
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        while True:
            while self._requests:
                req = self._requests[0]
                if req.future.done():  # cancelled by the caller
                    self._requests.popleft()
                    continue
                try:
                    result = await req.run(link)
                except ServerError as exc:
                    self._requests.popleft()
                    error: TickerError = self._unauthorized() if exc.code == UNAUTHORIZED else exc
                    if not req.future.done():
                        req.future.set_exception(error)
                    if error is not exc:
                        raise error from None  # the connection ends; without a token the client gives up
                    continue
                self._requests.popleft()  # a lost connection leaves it first in line for the next one
                if not req.future.done():
                    req.future.set_result(result)
            self._wake.clear()
            await self._wake.wait()

    async def _resubscribe_bars(self, link: ServerLink) -> None:
        """After a reconnect: subscribe every bar subscription again (its ``bars`` merges the history); one the
        new server refuses ends with that error, which also comes as an ``error`` event."""
        for key, sub in list(self._subs.bars.items()):
            try:
                await link.bars_exchange("subscribe_bars", sub.symbol, sub.interval, sub.history)
            except ServerError as exc:
                if exc.code == UNAUTHORIZED:
                    raise self._unauthorized() from None
                self._end_bars(key, exc)
                self._emit(EventKind.ERROR, error=exc)

    def _end_bars(self, key: BarKey, error: TickerError | None = None, discard: bool = False) -> None:
        """Forget a bar subscription: its iteration ends after its waiting bars (none with ``discard``),
        raising ``error`` if given."""
        sub = self._subs.bars.pop(key, None)
        if sub is not None:
            sub.end(error, discard)

    def _unauthorized(self) -> AuthenticationFailed:
        """The server wants a token first (error ``unauthorized``): it got none in the header."""
        if self._tokens is None:
            return AuthenticationFailed(f"{self.url} requires a token; give a token or a token provider")
        return AuthenticationFailed(f"{self.url} did not take the token (unauthorized)")

    async def _refresher(self, link: ServerLink, tokens: TokenSource) -> None:
        """Renew the token over the live socket before it expires; runs until the connection ends.

        A provider that fails, or a new token the server refuses (error ``unauthorized``: the token in
        force stays), is retried with backoff; only a token the server took times the next renewal.
        """
        sleep = self._sleep
        failures = Backoff(base=MIN_REFRESH_INTERVAL, cap=10.0)
        while True:
            delay = tokens.next_renewal()
            if delay is None:  # no exp: nothing to renew
                await asyncio.Future()
            await sleep(max(delay or 0.0, MIN_REFRESH_INTERVAL))
            if not tokens.renewable:
                tokens.warn_expiring()
                await asyncio.Future()  # the server closes with 4003 at exp
            while not await self._refresh_once(link, tokens):
                await sleep(failures.next_delay())
            failures.reset()

    async def _refresh_once(self, link: ServerLink, tokens: TokenSource) -> bool:
        """Ask the provider for a token and send it as a refresh; True when the server took it."""
        try:
            token = await tokens.fetch()
        except TokenProviderError as exc:
            log.warning("ticker client: %s; retrying the refresh", exc)
            self._emit(EventKind.ERROR, error=exc)
            return False
        errors = await link.refresh(token)
        for err in errors:
            self._unsolicited(err)
        if any(err.code == UNAUTHORIZED for err in errors):
            log.warning("ticker client: the server refused the new token; the one in force stays, retrying")
            return False
        tokens.adopt(token)
        return True

    def _unsolicited(self, err: ServerError) -> None:
        log.warning("ticker server error: %s", err)
        self._emit(EventKind.ERROR, error=err)

    def _status_changed(self, symbol: str, status: SymbolStatus) -> None:
        self._emit(EventKind.STATUS, symbol=symbol, status=status)

    # -- internals: helpers ------------------------------------------------------------------
    async def _request(self, op: str, symbols: list[str], max_hz: float | None = None) -> frozenset[str]:
        async def run(link: ServerLink) -> frozenset[str]:
            return await link.exchange(op, symbols, max_hz)

        result: frozenset[str] = await self._call(run)
        return result

    async def _call(self, run: Callable[[ServerLink], Awaitable[Any]]) -> Any:
        """Queue ``run`` for the writer (in order, on the connection of the moment) and wait for its result."""
        if self._state is State.CLOSED or self._closing:
            raise ClientClosedError("the client is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests.append(_Request(run, fut))
        self._wake.set()
        return await fut

    def _set_state(self, state: State) -> None:
        self._state = state

    def _emit(
        self,
        kind: EventKind,
        delay: float | None = None,
        error: BaseException | None = None,
        symbol: str | None = None,
        status: SymbolStatus | None = None,
    ) -> None:
        ev = Event(kind, self._state, self._attempt, delay, error, symbol=symbol, status=status)
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


def _bar_target(symbol: str, interval: str) -> BarKey:
    """The normalized symbol and the interval of a bar request; raise before anything is sent."""
    valid, invalid = protocol.split_symbols([symbol])
    if invalid or len(valid) != 1:
        raise InvalidSymbolError(invalid_symbols_message(invalid), invalid)
    try:
        return valid[0], parse_interval(interval)
    except InvalidInterval as exc:
        raise BadRequestError(exc.message) from None


MAX_RETRY_AFTER = 300.0  # seconds: a longer Retry-After is not waited for in full


def _retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` seconds of a refused handshake (429, 503), None without one."""
    if not isinstance(exc, aiohttp.WSServerHandshakeError) or exc.headers is None:
        return None
    raw = exc.headers.get("Retry-After")
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None
