"""The Python client's data model (pure, no I/O): states, events, errors and the quote buffer.

Quotes are :class:`ticker.quote.Quote`, the one quote type of the project; the state of a symbol
(live, pending, down, ...) is :class:`ticker.status.SymbolStatus`, the server's own.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ticker import errors
from ticker.quote import Quote
from ticker.status import SymbolStatus


class State(enum.Enum):
    """Where the client's connection stands."""

    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # first connection attempt
    CONNECTED = "connected"  # open and subscribed
    RECONNECTING = "reconnecting"  # lost; waiting out the backoff or retrying
    CLOSED = "closed"  # closed by the user; final


class EventKind(enum.Enum):
    """What happened to the connection."""

    CONNECTED = "connected"  # a connection opened and the symbol set is subscribed
    DISCONNECTED = "disconnected"  # a connection was lost (``error`` says why)
    RECONNECTING = "reconnecting"  # the next attempt comes after ``delay`` seconds
    RESUMED = "resumed"  # after a reconnect: resubscribed and the snapshot applied
    ERROR = "error"  # a server error not tied to an awaited call (``error`` holds it)
    STATUS = "status"  # a followed symbol's state changed (``symbol``, ``status``)
    CLOSED = "closed"  # the client was closed


@dataclass(frozen=True, slots=True)
class Event:
    """One connection event; ``attempt`` counts failed attempts since the last good connection.

    A ``status`` event names the ``symbol`` and its new ``status`` (``state`` is the connection's).
    """

    kind: EventKind
    state: State
    attempt: int = 0
    delay: float | None = None
    error: BaseException | None = None
    time: float = field(default_factory=time.time)
    symbol: str | None = None
    status: SymbolStatus | None = None

    def __str__(self) -> str:
        parts = [self.kind.value]
        if self.symbol is not None:
            parts.append(self.symbol)
        if self.status is not None:
            parts.append(
                f"{self.status.state}: {self.status.reason}" if self.status.reason else self.status.state
            )
        if self.attempt:
            parts.append(f"attempt {self.attempt}")
        if self.delay is not None:
            parts.append(f"in {self.delay:.2f} s")
        if self.error is not None:
            parts.append(f"({self.error})")
        return " ".join(parts)


class TickerError(Exception):
    """Base class of the client's errors."""


class ClientClosedError(TickerError):
    """The client was closed (or never started) before the call could complete."""


class ConnectError(TickerError):
    """The first connection could not be made in time."""


class ConnectionLost(TickerError):
    """The connection ended: closed by the server (``code``), broken, or silent past the ping timeout."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ServerError(TickerError):
    """The server refused a request: ``code`` is the protocol's error slug, ``message`` its text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidSymbolError(ServerError, ValueError):
    """One or more symbols break the syntax rules; ``symbols`` names them."""

    def __init__(self, message: str, symbols: Iterable[str] = ()) -> None:
        super().__init__(errors.INVALID_SYMBOL, message)
        self.symbols = list(symbols)


class TooManySymbolsError(ServerError):
    """The subscription would pass the server's per-connection cap; nothing was subscribed."""

    def __init__(self, message: str) -> None:
        super().__init__(errors.TOO_MANY_SYMBOLS, message)


class TooManyBarSubscriptionsError(ServerError):
    """The bar subscription would pass the server's per-connection cap (``--max-bar-subscriptions``); nothing
    was subscribed. ``symbols`` names the refused one."""

    def __init__(self, message: str, symbols: Iterable[str] = ()) -> None:
        super().__init__(errors.TOO_MANY_BAR_SUBSCRIPTIONS, message)
        self.symbols = list(symbols)


class BadRequestError(ServerError, ValueError):
    """A request breaks the protocol's rules (code ``bad_request``): a bar interval that is not one of
    ``1s 1m 5m 1h 1d``, a ``history`` outside 0 to 5,000. The client checks what it can before sending."""

    def __init__(self, message: str) -> None:
        super().__init__(errors.BAD_REQUEST, message)


class RateLimitedError(ServerError):
    """The server dropped a request because the client sent too many messages."""

    def __init__(self, message: str) -> None:
        super().__init__(errors.RATE_LIMITED, message)


class ForbiddenSymbolError(ServerError):
    """The token does not entitle the user to ``symbols``; the other symbols of the request were applied."""

    def __init__(self, message: str, symbols: Iterable[str] = ()) -> None:
        super().__init__(errors.FORBIDDEN_SYMBOL, message)
        self.symbols = list(symbols)


class UnknownSymbolError(ServerError, LookupError):
    """No feed of the server knows ``symbols``; ``suggestions`` maps some of them to the closest known
    symbols ("did you mean"), which the message also names. The other symbols of the request were applied."""

    def __init__(
        self, message: str, symbols: Iterable[str] = (), suggestions: Mapping[str, list[str]] | None = None
    ) -> None:
        super().__init__(errors.UNKNOWN_SYMBOL, message)
        self.symbols = list(symbols)
        self.suggestions = {s: list(near) for s, near in (suggestions or {}).items()}


class AuthenticationFailed(TickerError):
    """The server refused the token (HTTP 401, close 4001) or it expired (close 4003) and cannot be renewed.

    Raised by ``start()`` or, once connected, by the iteration; a client with a ``token_provider``
    asks it for a new token and retries instead.
    """


class TooManyConnectionsError(TickerError):
    """The server refused the connection: the user or the address holds or opens too many (close 4029, HTTP
    429); retried with backoff, not before the server's ``Retry-After`` (``retry_after``, seconds)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenProviderError(TickerError):
    """The ``token_provider`` raised or returned no token; retried with backoff."""


def server_error(
    code: str,
    message: str,
    symbols: Iterable[str] = (),
    suggestions: Mapping[str, list[str]] | None = None,
) -> ServerError:
    """The exception class matching a server ``error`` message (``symbols``: the ones it names;
    ``suggestions``: the closest known symbols of unknown ones)."""
    if code == errors.INVALID_SYMBOL:
        return InvalidSymbolError(message, symbols)
    if code == errors.FORBIDDEN_SYMBOL:
        return ForbiddenSymbolError(message, symbols)
    if code == errors.UNKNOWN_SYMBOL:
        return UnknownSymbolError(message, symbols, suggestions)
    if code == errors.TOO_MANY_SYMBOLS:
        return TooManySymbolsError(message)
    if code == errors.TOO_MANY_BAR_SUBSCRIPTIONS:
        return TooManyBarSubscriptionsError(message, symbols)
    if code == errors.BAD_REQUEST:
        return BadRequestError(message)
    if code == errors.RATE_LIMITED:
        return RateLimitedError(message)
    return ServerError(code, message)


class QuoteBuffer:
    """Quotes waiting for the user's loop: in order up to ``limit``, then conflated per symbol.

    While fewer than ``limit`` quotes wait, every update is kept in arrival order. Past that,
    new updates go to a per-symbol overflow that keeps only the latest value of each symbol
    (``conflated`` counts the replaced ones), so memory is bounded by ``limit`` plus the number
    of subscribed symbols however slow the consumer is. Per symbol the arrival order is kept.
    """

    def __init__(self, limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError("the buffer limit must be at least 1")
        self.limit = limit
        self._queue: deque[Quote] = deque()
        self._overflow: dict[str, Quote] = {}
        self.conflated = 0

    def __len__(self) -> int:
        return len(self._queue) + len(self._overflow)

    def push(self, quote: Quote) -> None:
        """Add an update; conflate it with a waiting one of its symbol once the queue is full."""
        if self._overflow or len(self._queue) >= self.limit:
            if quote.symbol in self._overflow:
                self.conflated += 1
            self._overflow[quote.symbol] = quote
        else:
            self._queue.append(quote)

    def pop(self) -> Quote | None:
        """The oldest waiting update, or None."""
        if self._queue:
            q = self._queue.popleft()
            if not self._queue and self._overflow:  # queue drained: the latest values go next
                self._queue.extend(self._overflow.values())
                self._overflow.clear()
            return q
        return None  # the overflow is only ever filled while the queue holds something

    def discard(self, symbols: Iterable[str]) -> None:
        """Drop every waiting update of ``symbols`` (after an unsubscribe)."""
        gone = set(symbols)
        if not gone:
            return
        self._queue = deque(q for q in self._queue if q.symbol not in gone)
        for s in gone:
            self._overflow.pop(s, None)
        if not self._queue and self._overflow:
            self._queue.extend(self._overflow.values())
            self._overflow.clear()

    def clear(self) -> None:
        """Drop everything."""
        self._queue.clear()
        self._overflow.clear()
