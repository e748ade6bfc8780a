"""Finnhub's ``GET /api/v1/stock/candle`` for both Finnhub fakes (the stream's and the REST one), per the fixture.

Parallel arrays ``t`` (UNIX seconds), ``o h l c v`` and ``s: ok`` for a symbol in :attr:`FinnhubCandleDesk.known`;
``{"s": "no_data"}`` for any other or an empty range; the documented 403 body with :attr:`no_access` set (a
plan without candles); the token as ``token=`` or ``X-Finnhub-Token``. Requests and faults go through the
fake's :class:`~tests.support.fakes.refdata.ReferenceDesk`.
"""

from __future__ import annotations

from aiohttp import web

from tests.support.fakes.barsdata import fake_bars
from tests.support.fakes.refdata import ReferenceDesk

CANDLE_PATH = "/api/v1/stock/candle"
RESOLUTIONS = {"1": 60_000, "5": 300_000, "15": 900_000, "30": 1_800_000, "60": 3_600_000, "D": 86_400_000}


class FinnhubCandleDesk:
    """The candle endpoint of a Finnhub fake."""

    def __init__(self, token: str, desk: ReferenceDesk, known: set[str] | None = None) -> None:
        self.token = token
        self.desk = desk
        self.known = set(known or {"AAPL", "MSFT", "NVDA"})
        self.no_access = False

    def routes(self, app: web.Application) -> None:
        app.router.add_get(CANDLE_PATH, self.candles)

    async def candles(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        q = request.query
        if (q.get("token") or request.headers.get("X-Finnhub-Token")) != self.token:
            hit.status = 401
            return web.json_response({"error": "Invalid API key"}, status=401)
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        if self.no_access:
            hit.status = 403
            return web.json_response({"error": "You don't have access to this resource."}, status=403)
        unit = RESOLUTIONS.get(q.get("resolution", ""))
        if unit is None or "from" not in q or "to" not in q:
            hit.status = 422
            return web.json_response({"error": "Wrong resolution"}, status=422)
        symbol = q.get("symbol", "")
        start, end = int(q["from"]) * 1000, int(q["to"]) * 1000
        bars = fake_bars(symbol, unit, start, end + 1) if symbol in self.known else []
        hit.status = 200
        if not bars:
            return web.json_response({"s": "no_data"})
        return web.json_response(
            {
                "c": [b.c for b in bars],
                "h": [b.h for b in bars],
                "l": [b.l for b in bars],
                "o": [b.o for b in bars],
                "s": "ok",
                "t": [b.t // 1000 for b in bars],
                "v": [b.v for b in bars],
            }
        )
