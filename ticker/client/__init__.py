"""The asyncio Python client of a ticker server (aiohttp): ``from ticker.client import TickerClient``."""

from ticker.client.models import (
    AuthenticationFailed,
    ClientClosedError,
    ConnectError,
    ConnectionLost,
    Event,
    EventKind,
    ForbiddenSymbolError,
    InvalidSymbolError,
    RateLimitedError,
    ServerError,
    State,
    TickerError,
    TokenProviderError,
    TooManyConnectionsError,
    TooManySymbolsError,
    UnknownSymbolError,
)
from ticker.client.tickerclient import TickerClient
from ticker.quote import Quote
from ticker.status import SymbolStatus

__all__ = [
    "AuthenticationFailed",
    "ClientClosedError",
    "ConnectError",
    "ConnectionLost",
    "Event",
    "EventKind",
    "ForbiddenSymbolError",
    "InvalidSymbolError",
    "Quote",
    "RateLimitedError",
    "ServerError",
    "State",
    "SymbolStatus",
    "TickerClient",
    "TickerError",
    "TokenProviderError",
    "TooManyConnectionsError",
    "TooManySymbolsError",
    "UnknownSymbolError",
]
