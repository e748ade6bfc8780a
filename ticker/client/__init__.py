"""The asyncio Python client of a ticker server (aiohttp): ``from ticker.client import TickerClient``."""

from ticker.bars import Bar
from ticker.client.barstream import BarSubscription
from ticker.client.models import (
    AuthenticationFailed,
    BadRequestError,
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
    TooManyBarSubscriptionsError,
    TooManyConnectionsError,
    TooManySymbolsError,
    UnknownSymbolError,
)
from ticker.client.tickerclient import TickerClient
from ticker.quote import Quote
from ticker.status import SymbolStatus

__all__ = [
    "AuthenticationFailed",
    "BadRequestError",
    "Bar",
    "BarSubscription",
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
    "TooManyBarSubscriptionsError",
    "TooManyConnectionsError",
    "TooManySymbolsError",
    "UnknownSymbolError",
]
