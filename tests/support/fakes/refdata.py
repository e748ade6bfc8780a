"""Reference data for the provider fakes: the fixtures' documented samples, fixture-shaped rows for the
symbols the tests use, and :class:`ReferenceDesk`, which logs and scripts faults on reference endpoints.

Every provider's reference rows start with its documented samples (``reference_samples.json`` holds the
``reference`` sections of the upstream fixtures verbatim), then rows for the default universe and the
tests' crypto symbols, then a few rows an adapter must leave out (inactive, not tradable, malformed).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import deque
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web

from ticker.symbols import DEFAULT_UNIVERSE

SAMPLES_FILE = Path(__file__).with_name("reference_samples.json")

#: The default universe with real names and primary exchanges (MIC), as the providers list them.
UNIVERSE: dict[str, tuple[str, str]] = {
    "AAPL": ("Apple Inc.", "XNAS"), "MSFT": ("Microsoft Corporation", "XNAS"),
    "NVDA": ("NVIDIA Corporation", "XNAS"), "AMZN": ("Amazon.com, Inc.", "XNAS"),
    "GOOGL": ("Alphabet Inc. Class A", "XNAS"), "META": ("Meta Platforms, Inc.", "XNAS"),
    "TSLA": ("Tesla, Inc.", "XNAS"), "BRK.B": ("Berkshire Hathaway Inc. Class B", "XNYS"),
    "JPM": ("JPMorgan Chase & Co.", "XNYS"), "V": ("Visa Inc.", "XNYS"),
    "UNH": ("UnitedHealth Group Incorporated", "XNYS"), "XOM": ("Exxon Mobil Corporation", "XNYS"),
    "JNJ": ("Johnson & Johnson", "XNYS"), "WMT": ("Walmart Inc.", "XNYS"),
    "MA": ("Mastercard Incorporated", "XNYS"), "PG": ("The Procter & Gamble Company", "XNYS"),
    "AVGO": ("Broadcom Inc.", "XNAS"), "HD": ("The Home Depot, Inc.", "XNYS"),
    "CVX": ("Chevron Corporation", "XNYS"), "KO": ("The Coca-Cola Company", "XNYS"),
    "PEP": ("PepsiCo, Inc.", "XNAS"), "COST": ("Costco Wholesale Corporation", "XNAS"),
    "ORCL": ("Oracle Corporation", "XNYS"), "BAC": ("Bank of America Corporation", "XNYS"),
    "NFLX": ("Netflix, Inc.", "XNAS"), "AMD": ("Advanced Micro Devices, Inc.", "XNAS"),
    "ADBE": ("Adobe Inc.", "XNAS"), "CRM": ("Salesforce, Inc.", "XNYS"),
    "INTC": ("Intel Corporation", "XNAS"), "DIS": ("The Walt Disney Company", "XNYS"),
    "SPY": ("SPDR S&P 500 ETF Trust", "ARCX"), "QQQ": ("Invesco QQQ Trust, Series 1", "XNAS"),
}  # fmt: skip
assert set(UNIVERSE) == set(DEFAULT_UNIVERSE)
ETFS = {"SPY", "QQQ"}
#: MIC → the exchange words Alpaca uses.
ALPACA_EXCHANGE = {"XNAS": "NASDAQ", "XNYS": "NYSE", "ARCX": "ARCA"}
#: Crypto pairs the fakes list: (base, quote).
PAIRS = [("BTC", "USD"), ("ETH", "USD"), ("ETH", "EUR"), ("SOL", "USD")]
BINANCE_PAIRS = [("BTC", "USDT"), ("ETH", "USDT"), ("BNB", "USDT"), ("SOL", "USDT")]


@cache
def _samples() -> dict[str, Any]:
    return json.loads(SAMPLES_FILE.read_text(encoding="utf-8"))


def samples(provider: str) -> dict[str, Any]:
    """The ``reference`` section of ``provider``'s fixture (a fresh copy)."""
    return copy.deepcopy(_samples()[provider])


def response(provider: str, prefix: str) -> Any:
    """The sample response of ``provider`` whose key (under ``responses``, or a top-level ``response...``)
    starts with ``prefix``."""
    ref = samples(provider)
    pool = {**ref.get("responses", {}), **{k: v for k, v in ref.items() if k.startswith("response")}}
    for key, value in pool.items():
        if key.startswith(prefix):
            return value
    raise KeyError(f"{provider}: no sample response {prefix!r}")


# -- rows per provider ------------------------------------------------------------------------------


def alpaca_assets() -> list[Any]:
    """``GET /v2/assets`` rows: the docs' samples, the universe, and rows to leave out."""
    rows: list[Any] = [*response("alpaca", "assets"), response("alpaca", "asset_crypto")]
    for i, (sym, (name, mic)) in enumerate(UNIVERSE.items()):
        if sym == "AAPL":
            continue  # the docs' own row
        rows.append(
            {
                "id": f"00000000-0000-4000-8000-{i:012d}", "class": "us_equity",
                "exchange": ALPACA_EXCHANGE[mic], "symbol": sym, "name": f"{name} Common Stock"
                if sym not in ETFS else name, "status": "active", "tradable": True, "marginable": True,
                "shortable": True, "easy_to_borrow": True, "fractionable": True,
                "maintenance_margin_requirement": 30, "attributes": [],
            }
        )  # fmt: skip
    rows += [
        {"id": "x1", "class": "us_equity", "exchange": "NASDAQ", "symbol": "ZVZZT", "name": "Test Halted",
         "status": "active", "tradable": False, "attributes": []},
        {"id": "x2", "class": "us_equity", "exchange": "NYSE", "symbol": "OLDCO", "name": "Old Co",
         "status": "inactive", "tradable": False, "attributes": []},
        {"id": "x3", "class": "us_equity", "exchange": "NYSE", "name": "No Symbol Inc", "status": "active",
         "tradable": True},
        "not an asset",
    ]  # fmt: skip
    return rows


def binance_symbols() -> list[Any]:
    """``exchangeInfo`` ``symbols[]``: the docs' ETHBTC, the tests' pairs, and rows to leave out."""
    doc = response("binance", "response")["symbols"]
    template = copy.deepcopy(doc[0])

    def symbol(base: str, quote: str, status: str = "TRADING") -> dict[str, Any]:
        s = copy.deepcopy(template)
        s.update(symbol=base + quote, status=status, baseAsset=base, quoteAsset=quote)
        return s

    return [
        *doc,
        *(symbol(b, q) for b, q in BINANCE_PAIRS),
        symbol("LUNA", "USDT", "BREAK"),  # delisted: status BREAK
        symbol("BTC", "PLN"),  # a quote asset the adapter does not route to Binance
        {"symbol": "XYZUSDT", "status": "TRADING"},  # malformed: no assets
    ]


def binance_exchange_info(symbols: list[Any]) -> dict[str, Any]:
    info = response("binance", "response")
    info["symbols"] = symbols
    return info


def coinbase_products() -> list[Any]:
    """``GET /products``: the docs' BTC-USD, the tests' pairs, and rows to leave out."""
    doc = response("coinbase", "products")
    template = response("coinbase", "product (")

    def product(base: str, quote: str, **over: Any) -> dict[str, Any]:
        p = copy.deepcopy(template)
        p.update(
            id=f"{base}-{quote}", base_currency=base, quote_currency=quote, display_name=f"{base}-{quote}"
        )
        p.update(over)
        return p

    return [
        *doc,
        *(product(b, q) for b, q in PAIRS if (b, q) != ("BTC", "USD")),
        product("OLD", "USD", status="delisted"),
        product("XYZ", "USD", trading_disabled=True),
        {"base_currency": "NOID", "quote_currency": "USD", "status": "online"},  # malformed: no id
    ]


def finnhub_stock_symbols() -> list[Any]:
    """``/stock/symbol?exchange=US``: the docs' rows, the universe, and rows to leave out."""
    rows: list[Any] = list(response("finnhub", "stock_symbols"))
    for sym, (name, mic) in UNIVERSE.items():
        if sym == "AAPL":
            continue
        rows.append(
            {
                "currency": "USD", "description": name.upper(), "displaySymbol": sym,
                "figi": "BBG000000000", "mic": mic, "symbol": sym,
                "type": "ETP" if sym in ETFS else "Common Stock",
            }
        )  # fmt: skip
    rows += [
        {"currency": "USD", "description": "SPACE IN SYMBOL", "displaySymbol": "AB C", "mic": "OOTC",
         "symbol": "AB C", "type": "Common Stock"},
        {"currency": "USD", "description": "NO SYMBOL", "mic": "XNYS", "type": "Common Stock"},
        42,
    ]  # fmt: skip
    return rows


def finnhub_venues() -> dict[tuple[str, str], list[Any]]:
    """``/crypto/symbol`` and ``/forex/symbol`` rows per (kind, exchange), as Finnhub's docs show them
    (including the docs' one row without its ``BINANCE:`` prefix)."""
    return {
        ("crypto", "binance"): [
            *({"description": f"Binance {b}{q}", "displaySymbol": f"{b}/{q}", "symbol": f"BINANCE:{b}{q}"}
              for b, q in BINANCE_PAIRS),
            {"description": "Binance ETHBTC", "displaySymbol": "ETH/BTC", "symbol": "ETHBTC"},
        ],
        ("crypto", "coinbase"): [
            {"description": f"Coinbase {b}-{q}", "displaySymbol": f"{b}/{q}", "symbol": f"COINBASE:{b}-{q}"}
            for b, q in PAIRS
        ],
        ("forex", "oanda"): [
            {"description": "Oanda EUR/USD", "displaySymbol": "EUR/USD", "symbol": "OANDA:EUR_USD"},
            {"description": "Oanda USD/JPY", "displaySymbol": "USD/JPY", "symbol": "OANDA:USD_JPY"},
        ],
    }  # fmt: skip


def polygon_tickers() -> list[Any]:
    """``/v3/reference/tickers`` rows: the client's mock page, the universe, and rows to leave out."""
    rows: list[Any] = list(response("polygon", "page")["results"])
    template = copy.deepcopy(rows[0])
    for sym, (name, mic) in UNIVERSE.items():
        t = copy.deepcopy(template)
        t.update(ticker=sym, name=name, primary_exchange=mic, type="ETF" if sym in ETFS else "CS")
        rows.append(t)
    old = copy.deepcopy(template)
    old.update(ticker="OLDCO", name="Old Co", active=False, delisted_utc="2020-01-01T00:00:00Z")
    rows += [old, {"name": "No Ticker Corp", "market": "stocks", "active": True}]
    return sorted(rows, key=lambda r: r.get("ticker", ""))


# -- the endpoints' side ----------------------------------------------------------------------------


@dataclass
class RefHit:
    """One request to a reference endpoint, as the fake saw it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    at: float = field(default_factory=time.monotonic)  # the fake's clock on arrival


@dataclass
class ReferenceDesk:
    """Logs the requests to a fake's reference endpoints and plays scripted faults on them, in order:
    ``"ok"`` (no fault this time), ``"401"``, ``"429"`` or ``"429:SECONDS"`` (``Retry-After``), ``"418:SECONDS"`` (Binance's ban),
    ``"500"``, ``"garbage"`` (not JSON), ``"shape"`` (JSON of the wrong shape), ``"drop"`` (the connection
    closed without an answer), ``"stall:SECONDS"`` (answer late). ``fault_paths`` limits faults to some paths."""

    hits: list[RefHit] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)
    fault_paths: set[str] = field(default_factory=set)

    def log(self, request: web.Request) -> RefHit:
        hit = RefHit(request.path, dict(request.query), dict(request.headers))
        self.hits.append(hit)
        return hit

    def count(self, path: str) -> int:
        return sum(1 for h in self.hits if h.path == path)

    async def gate(self, request: web.Request, hit: RefHit) -> web.StreamResponse | None:
        """The response to send instead of the real one (a scripted fault), or None."""
        if not self.faults or (self.fault_paths and request.path not in self.fault_paths):
            return None
        fault = self.faults.popleft()
        code, _, arg = fault.partition(":")
        if code == "ok":
            return None
        if code == "stall":
            await asyncio.sleep(float(arg))
            return None
        hit.status = int(code) if code.isdigit() else 200
        if code == "401":
            return web.json_response({"error": "Invalid API key"}, status=401)
        if code in ("429", "418"):
            return web.json_response(
                {"error": "Too Many Requests"}, status=int(code), headers={"Retry-After": arg} if arg else {}
            )
        if code == "500":
            return web.Response(status=500, text="Internal Server Error")
        if code == "garbage":
            return web.Response(body=b"<html>\x00\xff not json", content_type="application/json")
        if code == "shape":
            return web.json_response({"unexpected": True})
        if code == "drop":
            hit.status = -1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client
        raise AssertionError(f"unknown fault {fault!r}")


class FinnhubReference:
    """Finnhub's ``/api/v1/stock/symbol``, ``/crypto/symbol`` and ``/forex/symbol`` (the token as ``token=``
    or ``X-Finnhub-Token``), shared by the stream and REST fakes."""

    def __init__(self, token: str, desk: ReferenceDesk) -> None:
        self.token = token
        self.desk = desk
        self.stocks = finnhub_stock_symbols()
        self.venues = finnhub_venues()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/stock/symbol", self.stock_symbols)
        app.router.add_get("/api/v1/crypto/symbol", self.venue_symbols)
        app.router.add_get("/api/v1/forex/symbol", self.venue_symbols)

    async def _answer(self, request: web.Request, rows: Any) -> web.StreamResponse:
        hit = self.desk.log(request)
        token = request.query.get("token") or request.headers.get("X-Finnhub-Token")
        if token != self.token:
            hit.status = 401
            return web.json_response({"error": "Invalid API key"}, status=401)
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        hit.status = 200
        return web.json_response(rows)

    async def stock_symbols(self, request: web.Request) -> web.StreamResponse:
        if "exchange" not in request.query:
            return web.json_response({"error": "Wrong exchange code"}, status=422)
        rows = self.stocks if request.query["exchange"].upper() == "US" else []
        return await self._answer(request, rows)

    async def venue_symbols(self, request: web.Request) -> web.StreamResponse:
        kind = request.path.split("/")[-2]
        rows = self.venues.get((kind, request.query.get("exchange", "").lower()), [])
        return await self._answer(request, rows)
