"""A fake Finnhub REST server: ``GET /api/v1/quote`` as documented (fixture ``finnhub.json``).

The token is accepted as ``token=`` query parameter or ``X-Finnhub-Token`` header; a wrong or
missing one gets 401 ``{"error": "Invalid API key"}``. Known symbols move one cent per
request (so each poll brings a new quote); unknown ones get Finnhub's all-zero answer. The symbol
lists are served too (:class:`~tests.support.fakes.refdata.FinnhubReference`, requests in ``desk``).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.support.fakes.candles import FinnhubCandleDesk
from tests.support.fakes.poll_fakes import FakeHttpProvider
from tests.support.fakes.refdata import FinnhubReference, ReferenceDesk

QUOTE_PATH = "/api/v1/quote"
UNKNOWN = {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}


class FakeFinnhubRest(FakeHttpProvider):
    """Finnhub's quote endpoint with a configurable rate limit (``limit`` requests per ``window`` s)."""

    def __init__(self, token: str = "test-token", prices: dict[str, float] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.token = token
        self.prices = dict(prices or {"AAPL": 261.74, "MSFT": 415.30, "NVDA": 134.20})
        self.prev_close = {s: round(p - 2.29, 2) for s, p in self.prices.items()}
        self.forbidden: set[str] = set()  # symbols outside the plan: 403 as Finnhub answers
        self.frozen = False  # when set, quotes stop changing (same price, same timestamp)
        self.desk = ReferenceDesk()
        self.reference = FinnhubReference(token, self.desk)
        self.candles = FinnhubCandleDesk(token, self.desk)  # /api/v1/stock/candle

    def routes(self, app: web.Application) -> None:
        app.router.add_get(QUOTE_PATH, self.quote)
        self.reference.routes(app)
        self.candles.routes(app)

    def too_many_body(self) -> bytes:
        return b'{"error":"API limit reached. Please try again later. Remaining Limit: 0"}'

    def symbols_polled(self, since: float = 0.0) -> list[str]:
        return [h.query.get("symbol", "") for h in self.hits if h.path == QUOTE_PATH and h.at >= since]

    async def quote(self, request: web.Request) -> web.StreamResponse:
        hit = self.log(request)
        token = request.query.get("token") or request.headers.get("X-Finnhub-Token")
        if token != self.token:
            hit.status = 401
            return web.json_response({"error": "Invalid API key"}, status=401)
        instead = self.gate(request, hit, b'{"unexpected": true}')
        if instead is not None:
            return instead
        symbol = request.query.get("symbol", "")
        if symbol in self.forbidden:
            hit.status = 403
            return web.json_response({"error": "You don't have access to this resource."}, status=403)
        hit.status = 200
        if symbol not in self.prices:
            return web.json_response(UNKNOWN)
        if not self.frozen:
            self.prices[symbol] = round(self.prices[symbol] + 0.01, 2)
        c, pc = self.prices[symbol], self.prev_close[symbol]
        return web.json_response(
            {
                "c": c,
                "d": round(c - pc, 2),
                "dp": round((c - pc) / pc * 100, 4),
                "h": round(c + 1.57, 2),
                "l": round(c - 1.06, 2),
                "o": round(c - 0.67, 2),
                "pc": pc,
                "t": 1582641000 if self.frozen else int(time.time()),
            }
        )
