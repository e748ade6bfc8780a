"""Fake Finnhub WebSocket trades API, per the documented wire format.

The token comes in the URL query (a wrong one is refused with HTTP 401 at the upgrade);
subscribe/unsubscribe carry one symbol each; trade frames carry several trades; the server
sends ``{"type":"ping"}`` now and then and ``{"type":"error","msg":"Subscribing to too many
symbols"}`` past ``limit`` symbols (both reported by users, not in the official docs). The REST
symbol lists are served too (:class:`~tests.support.fakes.refdata.FinnhubReference`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from tests.support.fakes.candles import FinnhubCandleDesk
from tests.support.fakes.refdata import FinnhubReference
from tests.support.fakes.upstream import FakeConn, FakeUpstream


class FakeFinnhub(FakeUpstream):
    path = "/"
    BAD = (
        '{"type":"trade","data":{"p":1}}',
        '{"type":"trade"}',
        '"trade"',
    )

    def __init__(
        self, token: str = "test-token", limit: int = 50, ping_interval: float | None = None
    ) -> None:
        super().__init__()
        self.token = token
        self.limit = limit
        self.ping_interval = ping_interval
        self.refused_tokens: list[str] = []
        self.reference = FinnhubReference(token, self.desk)
        self.candles = FinnhubCandleDesk(token, self.desk)  # /api/v1/stock/candle

    def routes(self, app: web.Application) -> None:
        self.reference.routes(app)
        self.candles.routes(app)

    def refuse(self, request: web.Request) -> web.Response | None:
        given = request.query.get("token", "")
        if given != self.token:
            self.refused_tokens.append(given)
            return web.json_response({"error": "Invalid API key"}, status=401)
        return None

    async def on_connect(self, conn: FakeConn) -> None:
        if self.ping_interval:
            self.background(self._pings(conn))

    async def _pings(self, conn: FakeConn) -> None:
        while not conn.ws.closed:
            await asyncio.sleep(self.ping_interval or 1.0)
            await conn.send({"type": "ping"})

    async def on_message(self, conn: FakeConn, msg: Any) -> None:
        kind = msg.get("type") if isinstance(msg, dict) else None
        symbol = msg.get("symbol") if isinstance(msg, dict) else None
        if kind == "subscribe" and isinstance(symbol, str):
            if symbol not in conn.subs and len(conn.subs) >= self.limit:
                await conn.send({"msg": "Subscribing to too many symbols", "type": "error"})
                return
            conn.subs.add(symbol)
        elif kind == "unsubscribe" and isinstance(symbol, str):
            conn.subs.discard(symbol)
        else:
            await conn.send({"msg": "Invalid message", "type": "error"})

    def symbols(self) -> set[str]:
        return self.subscribed()

    async def trades(self, *trades: tuple[str, float, float]) -> int:
        """One frame with several ``(symbol, price, volume)`` trades, to connections holding any of them."""
        now = int(time.time() * 1000)
        n = 0
        for conn in list(self.conns):
            data = [{"p": p, "s": s, "t": now, "v": v, "c": ["1"]} for s, p, v in trades if s in conn.subs]
            if data:
                await conn.send({"data": data, "type": "trade"})
                n += 1
        return n

    async def trade(self, symbol: str, price: float) -> int:
        return await self.trades((symbol, price, 100.0))
