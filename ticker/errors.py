"""The core's errors and why connections end (pure): error codes, errors, close decisions.

Every error the core raises is a :class:`CoreError`. Error codes and close codes are part of the
contract (docs/protocol.md); a :class:`Disconnect` keeps a close code together with the ``reason``
label of ``ticker_connections_closed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# Error codes of ``{"type":"error"}`` messages and of the REST/SSE error bodies (the contract).
BAD_JSON = "bad_json"
BAD_REQUEST = "bad_request"
UNKNOWN_OP = "unknown_op"
INVALID_SYMBOL = "invalid_symbol"
TOO_MANY_SYMBOLS = "too_many_symbols"
RATE_LIMITED = "rate_limited"
UNAUTHORIZED = "unauthorized"
FORBIDDEN_SYMBOL = "forbidden_symbol"
UNKNOWN_SYMBOL = "unknown_symbol"
TOO_MANY_BAR_SUBSCRIPTIONS = "too_many_bar_subscriptions"
ERROR_CODES = (
    BAD_JSON,
    BAD_REQUEST,
    UNKNOWN_OP,
    INVALID_SYMBOL,
    TOO_MANY_SYMBOLS,
    RATE_LIMITED,
    UNAUTHORIZED,
    FORBIDDEN_SYMBOL,
    UNKNOWN_SYMBOL,
    TOO_MANY_BAR_SUBSCRIPTIONS,
)

#: The ``reason`` label of ``ticker_auth_failures_total`` (a bounded set).
AuthReason = Literal["missing", "invalid", "expired", "forbidden_symbol", "user_limit"]

SYMBOL_RULE = "expected 1-32 characters of A-Z 0-9 . - : / _"


class CoreError(Exception):
    """The base of every error of the pure core (a request, a quote or an option value it refuses)."""


class ProtocolError(CoreError):
    """A request the server refuses with the error ``code``; a WebSocket stays open and is told ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidSymbol(ProtocolError, ValueError):
    """One or more symbols that break the syntax rules; ``symbols`` holds the offending inputs.

    A :class:`ValueError` too, so argparse value types may raise it.
    """

    def __init__(self, *symbols: object) -> None:
        super().__init__(
            INVALID_SYMBOL,
            invalid_symbols_message([s if isinstance(s, str) else type(s).__name__ for s in symbols]),
        )
        self.symbols = symbols


#: What a symbol cap is counted per, when one query names the symbols (``/sse``, ``/api/quotes``).
Scope = Literal["connection", "request"]


class TooManySymbols(ProtocolError):
    """More symbols than ``limit``; nothing of the request was subscribed.

    ``scope`` None: a subscription would hold ``wanted`` symbols in all (a connection's set grows with
    each subscribe); otherwise one query named ``wanted``, more than ``limit`` per ``scope``.
    """

    def __init__(self, limit: int, wanted: int, scope: Scope | None = None) -> None:
        if scope is None:
            text = f"subscription would hold {wanted} symbols; the limit is {limit} per connection"
        else:
            text = f"{wanted} symbols requested; the limit is {limit} per {scope}"
        super().__init__(TOO_MANY_SYMBOLS, text)
        self.limit = limit
        self.wanted = wanted


class TooManyBarSubscriptions(ProtocolError):
    """More bar subscriptions (symbol and interval pairs) than ``limit`` per connection; none of the request is taken."""

    def __init__(self, limit: int, wanted: int) -> None:
        super().__init__(
            TOO_MANY_BAR_SUBSCRIPTIONS,
            f"{wanted} bar subscriptions wanted; the limit is {limit} per connection",
        )
        self.limit = limit
        self.wanted = wanted


class TokenRejected(CoreError):
    """A token that does not admit its bearer; ``reason`` is ``missing``, ``invalid`` or ``expired``.

    ``message`` says why in words safe to show the client; it never holds the token.
    """

    def __init__(self, reason: AuthReason, message: str) -> None:
        super().__init__(message)
        self.reason: AuthReason = reason
        self.message = message


class ForbiddenSymbols(ProtocolError):
    """Symbols the user's entitlements do not cover; ``symbols`` names them."""

    def __init__(self, symbols: Sequence[str]) -> None:
        names = ", ".join(symbols[:10]) + (f" and {len(symbols) - 10} more" if len(symbols) > 10 else "")
        super().__init__(FORBIDDEN_SYMBOL, f"not entitled to {names}")
        self.symbols = list(symbols)


class UnknownSymbols(ProtocolError):
    """Well-formed symbols that no running feed knows; ``symbols`` names them, ``suggestions`` maps some of
    them to the closest known symbols as ``(symbol, name)`` pairs ("did you mean")."""

    def __init__(
        self, symbols: Sequence[str], suggestions: dict[str, list[tuple[str, str]]] | None = None
    ) -> None:
        self.symbols = list(symbols)
        self.suggestions = suggestions or {}
        parts = []
        for sym in self.symbols[:10]:
            near = self.suggestions.get(sym)
            if near:
                alts = " or ".join(f"{s} ({n})" if n and n != s else s for s, n in near)
                parts.append(f"No symbol {sym} — did you mean {alts}?")
            else:
                parts.append(f"No symbol {sym}.")
        more = f" And {len(self.symbols) - 10} more." if len(self.symbols) > 10 else ""
        super().__init__(UNKNOWN_SYMBOL, " ".join(parts) + more)


class MalformedQuote(CoreError, ValueError):
    """A Q entry that breaks docs/protocol.md; ``field`` names the offending key (``None``: the entry itself)."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(
            f"malformed quote entry: {problem}" if field is None else f"quote field {field!r}: {problem}"
        )
        self.field = field


class OptionError(CoreError, ValueError):
    """A bad option value; the message says what is wrong and is shown as is."""


def invalid_symbols_message(invalid: Sequence[str]) -> str:
    """The text of an ``invalid_symbol`` error naming every refused symbol (the first ten)."""
    names = ", ".join(repr(s[:40]) for s in invalid[:10])
    more = f" and {len(invalid) - 10} more" if len(invalid) > 10 else ""
    return f"invalid symbol {names}{more}: {SYMBOL_RULE}"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Why a connection ended: ``code`` the WebSocket close code the peer sees, ``reason`` the bounded
    label of ``ticker_connections_closed{reason}``, ``text`` the close frame's reason text."""

    code: int
    reason: str
    text: str


#: The peer closed (or went away); the server echoes the peer's own close code.
CLIENT = Disconnect(1000, "client", "")
#: The server shuts down.
SHUTDOWN = Disconnect(1001, "shutdown", "server shutting down")
#: Messages kept coming after ``rate_limited`` (more than ``--rate-burst`` dropped in a row).
FLOOD = Disconnect(1008, "flood", "rate limit exceeded")
#: Unsent bytes stayed over ``--slow-bytes`` too long (or reached four times the bound).
SLOW_CONSUMER = Disconnect(1013, "slow_consumer", "slow consumer: not reading fast enough")
#: No pong within ``--ping-timeout``: the stream is dropped without a closing handshake (1006 at the peer).
PING_TIMEOUT = Disconnect(1006, "ping_timeout", "")
#: No successful ``auth`` within ``--auth-timeout``, or a bad token in ``auth``/``refresh``.
AUTH_FAILED = Disconnect(4001, "unauthorized", "authentication failed")
#: The token's ``exp`` passed without a ``refresh``.
TOKEN_EXPIRED = Disconnect(4003, "token_expired", "token expired")
#: The user already holds ``max_connections`` connections on this node.
USER_LIMIT = Disconnect(4029, "user_limit", "too many connections for this user")
