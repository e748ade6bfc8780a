"""A fake of Yahoo's unofficial v7 quote endpoint with its cookie and crumb dance (fixture ``yahoo.json``).

``GET /`` answers 404 but sets the ``A3`` session cookie (as ``fc.yahoo.com`` does);
``GET /v1/test/getcrumb`` returns the crumb as plain text to a client with that cookie;
``GET /v7/finance/quote?symbols=A,B&crumb=...`` returns ``quoteResponse.result`` for the
known symbols only (unknown ones are missing) or 401 with Yahoo's Unauthorized body.
``GET /v8/finance/chart/{symbol}?interval=&period1=&period2=`` (the same cookie and crumb) answers the
history of a known symbol (:func:`~tests.support.fakes.barsdata.fake_bars`) as ``timestamp`` and
``indicators.quote[0]`` arrays: an interval without trades is a row of nulls, the session's closing stamp
(``meta.currentTradingPeriod.regular.end``) a 0-volume row, day bars are stamped at 09:30 New York; an
unknown symbol gets the documented 404 ``Not Found``.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from tests.support.fakes.barsdata import DAY_MS, fake_bars, gaps
from tests.support.fakes.poll_fakes import FakeHttpProvider

QUOTE_PATH = "/v7/finance/quote"
CRUMB_PATH = "/v1/test/getcrumb"
CHART_PATH = "/v8/finance/chart/"
CHART_INTERVALS = {"1m": 60_000, "5m": 300_000, "60m": 3_600_000, "1h": 3_600_000, "1d": DAY_MS}
CHART_NOT_FOUND = {
    "chart": {
        "result": None,
        "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
    }
}
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
        app.router.add_get(CHART_PATH + "{symbol}", self.chart)

    async def chart(self, request: web.Request) -> web.StreamResponse:
        hit = self.log(request)
        if request.cookies.get("A3") != self.cookie or request.query.get("crumb") != self.crumb:
            hit.status = 401
            return web.json_response(UNAUTHORIZED, status=401)
        instead = self.gate(request, hit, b'{"chart": {"result": "nope"}}')
        if instead is not None:
            return instead
        symbol = request.match_info["symbol"]
        if symbol not in self.prices:
            hit.status = 404
            return web.json_response(CHART_NOT_FOUND, status=404)
        q = request.query
        ms = CHART_INTERVALS[q["interval"]]
        start, end = int(q["period1"]) * 1000, int(q["period2"]) * 1000
        bars = {b.t: b for b in fake_bars(symbol, ms, start, end)}
        stamps = sorted([*bars, *gaps(symbol, ms, start, end)])
        empty = gaps(symbol, ms, start, end)
        closing = empty[-1] if ms < DAY_MS and empty else None
        shift = 570 * 60_000 if ms == DAY_MS else 0  # day bars: stamped at the session's open
        rows: list[list[float | None]] = []
        for t in stamps:
            b = bars.get(t)
            if b is not None:
                rows.append([b.o, b.h, b.l, b.c, b.v])
            elif t == closing:
                price = rows[-1][3] if rows else 100.0
                rows.append([price, price, price, price, 0])
            else:
                rows.append([None] * 5)
        cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
        meta = {
            "currency": "USD", "symbol": symbol, "exchangeTimezoneName": "America/New_York",
            "instrumentType": "EQUITY", "dataGranularity": q["interval"], "gmtoffset": -14400,
            "currentTradingPeriod": {"regular": {"timezone": "EDT", "start": start // 1000,
                                                 "end": (closing // 1000) if closing else end // 1000,
                                                 "gmtoffset": -14400}},
        }  # fmt: skip
        result: dict[str, Any] = {"meta": meta, "indicators": {"quote": [{}]}}
        if stamps:
            result["timestamp"] = [(t + shift) // 1000 for t in stamps]
            quote = result["indicators"]["quote"][0]
            for key, col in zip(("open", "high", "low", "close", "volume"), cols, strict=True):
                quote[key] = list(col)
        hit.status = 200
        return web.json_response({"chart": {"result": [result], "error": None}})

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
