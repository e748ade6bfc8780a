"""The asyncio Python client of a ticker server (aiohttp): ``from ticker.client import TickerClient``."""

from ticker.client.models import (
    ClientClosedError,
    ConnectError,
    ConnectionLost,
    Event,
    EventKind,
    InvalidSymbolError,
    RateLimitedError,
    ServerError,
    State,
    TickerError,
    TooManySymbolsError,
)
from ticker.client.tickerclient import TickerClient
from ticker.quote import Quote

__all__ = [
    "ClientClosedError",
    "ConnectError",
    "ConnectionLost",
    "Event",
    "EventKind",
    "InvalidSymbolError",
    "Quote",
    "RateLimitedError",
    "ServerError",
    "State",
    "TickerClient",
    "TickerError",
    "TooManySymbolsError",
]
