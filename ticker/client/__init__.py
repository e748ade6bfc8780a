"""The asyncio Python client of a ticker server (aiohttp): ``from ticker.client import TickerClient``."""

from ticker.client.models import (
    ClientClosedError,
    ConnectError,
    ConnectionLost,
    Event,
    EventKind,
    InvalidSymbolError,
    Quote,
    RateLimitedError,
    ServerError,
    State,
    TickerError,
    TooManySymbolsError,
)
from ticker.client.tickerclient import TickerClient

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
