"""The table of streaming providers the shared feed tests and the end-to-end tests run over."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.fakes.alpaca import FakeAlpaca
from tests.support.fakes.binance import FakeBinance
from tests.support.fakes.coinbase import FakeCoinbase
from tests.support.fakes.finnhub import FakeFinnhub
from tests.support.fakes.polygon import FakePolygon
from tests.support.fakes.upstream import FakeUpstream


@dataclass(frozen=True)
class Provider:
    """A feed name, how to build its fake, two symbols in its convention and the env vars it needs."""

    name: str
    make_fake: Callable[[], FakeUpstream]
    symbol: str
    other: str
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


PROVIDERS = [
    Provider("coinbase", lambda: FakeCoinbase(heartbeat_interval=0.1), "BTC-USD", "ETH-USD"),
    Provider("binance", lambda: FakeBinance(ping_interval=0.3), "BTCUSDT", "ETHUSDT"),
    Provider("finnhub", FakeFinnhub, "AAPL", "BINANCE:BTCUSDT", {"FINNHUB_TOKEN": "test-token"}),
    Provider("alpaca", FakeAlpaca, "AAPL", "MSFT", {"ALPACA_KEY_ID": "KEY", "ALPACA_SECRET_KEY": "SECRET"}),
    Provider("polygon", FakePolygon, "AAPL", "BRK.B", {"POLYGON_API_KEY": "POLYKEY"}),
]
