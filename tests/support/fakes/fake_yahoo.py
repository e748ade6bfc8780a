"""A fake of Yahoo's unofficial v7 quote endpoint with its cookie and crumb dance (fixture ``yahoo.json``).

``GET /`` answers 404 but sets the ``A3`` session cookie (as ``fc.yahoo.com`` does);
``GET /v1/test/getcrumb`` returns the crumb as plain text to a client with that cookie;
``GET /v7/finance/quote?symbols=A,B&crumb=...`` returns ``quoteResponse.result`` for the
known symbols only (unknown ones are missing) or 401 with Yahoo's Unauthorized body.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from tests.support.fakes.poll_fakes import FakeHttpProvider

QUOTE_PATH = "/v7/finance/quote"
CRUMB_PATH = "/v1/test/getcrumb"
UNAUTHORIZED = {
    "finance": {
        "result": None,
        "error": {"code": "Unauthorized", "description": "User is unable to access this feature"},
    }
}


class FakeYahoo(FakeHttpProvider):
    """Yahoo's quote endpoint; :meth:`rotate_crumb` invalidates the crumb handed out so far."""

    def __init__(self, prices: dict[str, float] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.prices = dict(prices or {"AAPL": 333.7, "MSFT": 415.3, "BTC-USD": 97000.5})
        self.cookie = "d=" + secrets.token_hex(8)
        self.crumb = secrets.token_urlsafe(8)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)
        app.router.add_get(CRUMB_PATH, self.getcrumb)
        app.router.add_get(QUOTE_PATH, self.quote)

    def rotate_crumb(self) -> None:
        self.crumb = secrets.token_urlsafe(8)

    def batches(self) -> list[list[str]]:
        return [h.query.get("symbols", "").split(",") for h in self.hits if h.path == QUOTE_PATH]

    async def root(self, request: web.Request) -> web.StreamResponse:
        self.log(request)
        resp = web.Response(status=404, text="Not Found")
        resp.set_cookie("A3", self.cookie, httponly=True)
        return resp

    async def getcrumb(self, request: web.Request) -> web.StreamResponse:
        hit = self.log(request)
        if request.cookies.get("A3") != self.cookie:
            hit.status = 403
            return web.Response(status=403, text="")
        hit.status = 200
        return web.Response(text=self.crumb)

    def item(self, symbol: str) -> dict:
        price = self.prices[symbol] = round(self.prices[symbol] + 0.05, 2)
        prev = round(price - 1.0, 2)
        return {
            "language": "en-US",
            "region": "US",
            "quoteType": "EQUITY",
            "symbol": symbol,
            "currency": "USD",
            "marketState": "REGULAR",
            "regularMarketPrice": price,
            "regularMarketChange": round(price - prev, 6),
            "regularMarketChangePercent": round((price - prev) / prev * 100, 6),
            "regularMarketPreviousClose": prev,
            "regularMarketOpen": prev,
            "regularMarketDayHigh": price,
            "regularMarketDayLow": prev,
            "regularMarketVolume": 3916296,
            "bid": round(price - 0.02, 2),
            "ask": round(price + 0.02, 2),
        }

    async def quote(self, request: web.Request) -> web.StreamResponse:
        hit = self.log(request)
        if request.cookies.get("A3") != self.cookie or request.query.get("crumb") != self.crumb:
            hit.status = 401
            return web.json_response(UNAUTHORIZED, status=401)
        instead = self.gate(request, hit, b'{"quoteResponse": {"result": "nope"}}')
        if instead is not None:
            return instead
        hit.status = 200
        wanted = [s for s in request.query.get("symbols", "").split(",") if s]
        result = [self.item(s) for s in wanted if s in self.prices]
        return web.json_response({"quoteResponse": {"result": result, "error": None}})
