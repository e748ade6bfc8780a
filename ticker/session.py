"""One client connection's protocol state (Sans-I/O): messages and a clock in, replies and a close decision out.

The transports only pump bytes: they hand each client message with the monotonic time to
:meth:`Session.receive` and write the returned payloads in order, and call :meth:`Session.release`
when the connection ends. The session owns the rate limit and the flood count, parses with
:mod:`ticker.protocol` and dispatches to the hub. It never touches a socket, an event loop or a
clock; it is on the inbound path only, never on the fan-out's. A stream whose symbols are fixed
by its URL (``/sse``) needs no session: :func:`query_symbols` and :func:`open_stream` serve it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ticker import protocol
from ticker.errors import (
    BAD_REQUEST,
    FLOOD,
    INVALID_SYMBOL,
    RATE_LIMITED,
    Disconnect,
    InvalidSymbol,
    ProtocolError,
    Scope,
    TooManySymbols,
    invalid_symbols_message,
)
from ticker.hub import Hub
from ticker.tokenbucket import TokenBucket

S = TypeVar("S", bound=Hashable)

RATE_LIMITED_TEXT = "too many messages; slow down (message dropped)"
BINARY_TEXT = "binary frames are not supported; send JSON text frames"


@dataclass(slots=True)
class Outcome:
    """What one input produced: ``replies`` to write in order, the ``errors`` codes among them (for
    ``ticker_client_errors{code}``), the symbols an unsubscribe named (``unsubscribed``: updates held
    back for them are void) and the ``close`` decision, if any."""

    replies: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    close: Disconnect | None = None

    def error(self, code: str, message: str) -> None:
        """Add an ``error`` reply."""
        self.errors.append(code)
        self.replies.append(protocol.error(code, message))


def _items(query: str) -> Iterator[str]:
    return (part for part in query.split(",") if part.strip())


def query_symbols(query: str, limit: int, scope: Scope) -> list[str]:
    """The symbols of a URL query value such as ``aapl,MSFT`` (``?symbols=`` of /sse and /api/quotes).

    Normalized, in first-seen order; empty items and repeats are ignored. Raises
    :class:`InvalidSymbol` naming every bad item and :class:`TooManySymbols` past ``limit``
    (its message says the limit is per ``scope``).
    """
    valid, invalid = protocol.split_symbols(_items(query))
    if invalid:
        raise InvalidSymbol(*invalid)
    if len(valid) > limit:
        raise TooManySymbols(limit, len(valid), scope)
    return valid


def open_stream(hub: Hub[S], subscriber: S, symbols: Sequence[str]) -> bytes:
    """Subscribe ``subscriber`` to the (already validated) symbols of ``/sse?symbols=...``; return the
    opening ``snapshot`` payload. Raises :class:`TooManySymbols`, subscribing nothing, past the hub's cap."""
    _added, snap = hub.subscribe(subscriber, symbols)
    return protocol.encode_quotes(protocol.SNAPSHOT, snap)


class Session(Generic[S]):
    """The protocol state of ``subscriber``, one connection: its rate limit, flood count and close decision.

    Its symbol set is kept by ``hub``. A message refused by the rate limit is dropped; the first
    and every tenth in a row get a ``rate_limited`` error, and more than ``rate_burst`` in a row
    close the connection (:data:`~ticker.errors.FLOOD`, 1008). After a close decision, and after
    :meth:`release`, every input is ignored.
    """

    __slots__ = ("bucket", "closed", "flood_after", "hub", "subscriber", "violations")

    def __init__(self, hub: Hub[S], subscriber: S, rate_limit: float, rate_burst: int, now: float) -> None:
        self.hub = hub
        #: None once released: the connection ended and no longer holds, nor is held by, its session.
        self.subscriber: S | None = subscriber
        self.bucket = TokenBucket(rate_limit, rate_burst, now)
        self.flood_after = rate_burst
        self.violations = 0  # messages dropped in a row by the rate limit
        self.closed: Disconnect | None = None

    @property
    def symbols(self) -> frozenset[str]:
        """The connection's current symbol set (empty once released)."""
        sub = self.subscriber
        return frozenset() if sub is None else self.hub.symbols_of(sub)

    def release(self) -> None:
        """The connection ended: forget it, so that the two do not keep each other alive until the
        cycle collector runs, and ignore any later input. Its symbols are the hub's to drop."""
        self.subscriber = None

    def open(self, query: str) -> Outcome:
        """Subscribe the symbols of ``/ws?symbols=...`` exactly as a ``subscribe`` message would."""
        out = Outcome()
        sub = self.subscriber
        if query and sub is not None:
            valid, invalid = protocol.split_symbols(_items(query))
            self._subscribe(sub, valid, invalid, out)
        return out

    def receive(self, message: str | bytes, now: float) -> Outcome:
        """Take one client message (a text frame as ``str``, a binary one as ``bytes``) at monotonic time ``now``."""
        out = Outcome()
        sub = self.subscriber
        if self.closed is not None or sub is None:
            return out
        if not self.bucket.take(now):
            self.violations += 1
            if self.violations > self.flood_after:
                self.closed = out.close = FLOOD
            elif self.violations == 1 or self.violations % 10 == 0:
                out.error(RATE_LIMITED, RATE_LIMITED_TEXT)
            return out
        self.violations = 0
        if isinstance(message, bytes):
            out.error(BAD_REQUEST, BINARY_TEXT)
            return out
        try:
            cmd = protocol.parse_client_message(message)
        except ProtocolError as exc:
            out.error(exc.code, exc.message)
            return out
        if isinstance(cmd, protocol.Ping):
            out.replies.append(protocol.pong(cmd.id))
        elif isinstance(cmd, protocol.Subscribe):
            self._subscribe(sub, cmd.symbols, cmd.invalid, out)
        else:
            self._unsubscribe(sub, cmd.symbols, cmd.invalid, out)
        return out

    def _subscribe(self, sub: S, symbols: list[str], invalid: list[str], out: Outcome) -> None:
        if invalid:
            out.error(INVALID_SYMBOL, invalid_symbols_message(invalid))
        hub = self.hub
        try:
            _added, snap = hub.subscribe(sub, symbols)
        except TooManySymbols as exc:
            out.error(exc.code, exc.message)
            return
        out.replies.append(protocol.subscribed(hub.symbols_of(sub)))
        if snap:
            out.replies.append(protocol.encode_quotes(protocol.SNAPSHOT, snap))

    def _unsubscribe(self, sub: S, symbols: list[str], invalid: list[str], out: Outcome) -> None:
        if invalid:
            out.error(INVALID_SYMBOL, invalid_symbols_message(invalid))
        self.hub.unsubscribe(sub, symbols)
        out.unsubscribed = symbols
        out.replies.append(protocol.subscribed(self.hub.symbols_of(sub)))
