"""The Python client's data model (pure, no I/O): quotes, states, events, errors and the quote buffer."""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ticker import protocol


@dataclass(frozen=True, slots=True)
class Quote:
    """One quote as the server sent it (a Q entry of docs/protocol.md), typed.

    ``ts_ms`` is the feed's timestamp in epoch milliseconds (``ts`` gives it as a datetime);
    ``seq`` is the server's per-symbol sequence number. Fields the feed lacks are ``None``.
    """

    symbol: str
    price: float
    ts_ms: int
    seq: int
    bid: float | None = None
    ask: float | None = None
    volume: float | None = None
    change: float | None = None
    change_percent: float | None = None

    @property
    def ts(self) -> datetime:
        """The feed timestamp as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_ms / 1000.0, tz=UTC)

    @classmethod
    def from_wire(cls, q: Any) -> Quote:
        """Build from a decoded Q object; raise ``ValueError`` if it is not one."""
        if not isinstance(q, dict):
            raise ValueError(f"a quote entry must be an object, got {type(q).__name__}")
        s, p, t, seq = q.get("s"), q.get("p"), q.get("t"), q.get("q")
        if not isinstance(s, str) or not isinstance(p, int | float) or isinstance(p, bool):
            raise ValueError(f"malformed quote entry {str(q)[:200]}")
        if not isinstance(t, int) or not isinstance(seq, int):
            raise ValueError(f"malformed quote entry {str(q)[:200]}")
        return cls(s, p, t, seq, _opt(q, "b"), _opt(q, "a"), _opt(q, "v"), _opt(q, "c"), _opt(q, "cp"))

    def to_wire(self) -> dict[str, Any]:
        """The Q object (short field names, absent fields left out)."""
        d: dict[str, Any] = {"s": self.symbol, "p": self.price}
        for key, value in (
            ("b", self.bid),
            ("a", self.ask),
            ("v", self.volume),
            ("c", self.change),
            ("cp", self.change_percent),
        ):
            if value is not None:
                d[key] = value
        d["t"] = self.ts_ms
        d["q"] = self.seq
        return d


def _opt(q: dict[str, Any], key: str) -> float | None:
    v = q.get(key)
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None  # ints stay ints


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
    CLOSED = "closed"  # the client was closed


@dataclass(frozen=True, slots=True)
class Event:
    """One connection event; ``attempt`` counts failed attempts since the last good connection."""

    kind: EventKind
    state: State
    attempt: int = 0
    delay: float | None = None
    error: BaseException | None = None
    time: float = field(default_factory=time.time)

    def __str__(self) -> str:
        parts = [self.kind.value]
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
        super().__init__(protocol.INVALID_SYMBOL, message)
        self.symbols = list(symbols)


class TooManySymbolsError(ServerError):
    """The subscription would pass the server's per-connection cap; nothing was subscribed."""

    def __init__(self, message: str) -> None:
        super().__init__(protocol.TOO_MANY_SYMBOLS, message)


class RateLimitedError(ServerError):
    """The server dropped a request because the client sent too many messages."""

    def __init__(self, message: str) -> None:
        super().__init__(protocol.RATE_LIMITED, message)


def server_error(code: str, message: str) -> ServerError:
    """The exception class matching a server ``error`` message."""
    if code == protocol.INVALID_SYMBOL:
        return InvalidSymbolError(message)
    if code == protocol.TOO_MANY_SYMBOLS:
        return TooManySymbolsError(message)
    if code == protocol.RATE_LIMITED:
        return RateLimitedError(message)
    return ServerError(code, message)


class QuoteBuffer:
    """Quotes waiting for the user's loop: in order up to ``limit``, then conflated per symbol.

    While fewer than ``limit`` quotes wait, every update is kept in arrival order. Past that,
    new updates go to a per-symbol overflow that keeps only the latest value of each symbol
    (``conflated`` counts the replaced ones), so memory is bounded by ``limit`` plus the number
    of subscribed symbols however slow the consumer is. Per symbol the order never goes back.
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
