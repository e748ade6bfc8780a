"""Fake Binance spot combined-stream endpoint (``/stream``), per the documented wire format.

SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS with ids answered by ``{"result":..., "id":...}``;
payloads wrapped as ``{"stream": name, "data": payload}``. The rules are enforced: more than
``max_rate`` client frames (pongs included) in a second, or more than 1024 streams, end the
connection; the server pings every ``ping_interval`` seconds; a connection lives at most
``max_age`` seconds (24 hours upstream); :meth:`shutdown` announces ``serverShutdown``.
``GET /api/v3/exchangeInfo`` (public) lists :attr:`FakeBinance.symbols_info`, filtered by ``symbolStatus``.
``GET /api/v3/klines`` answers the klines (12-element arrays, decimals as strings) of a trading symbol from
``startTime`` (oldest first, at most ``limit``, 1000 at most) up to ``endTime``, days at midnight UTC;
``-1120 Invalid interval.`` and ``-1121 Invalid symbol.`` with HTTP 400.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from tests.support.fakes.barsdata import fake_bars
from tests.support.fakes.refdata import binance_exchange_info, binance_symbols
from tests.support.fakes.upstream import FakeConn, FakeUpstream

MAX_STREAMS = 1024
KLINE_INTERVALS = {"1s": 1000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000,
                   "1d": 86_400_000}  # fmt: skip


class FakeBinance(FakeUpstream):
    path = "/stream"
    BAD = (
        '{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"x","q":"1","T":1}}',
        '{"stream":"btcusdt@ticker","data":{"e":"24hrTicker","s":"BTCUSDT","E":"later","c":"1"}}',
        '{"stream":"btcusdt@trade","data":[1,2]}',
        '{"stream":"btcusdt@trade","data":{"e":"kline"}}',
    )

    def __init__(self, ping_interval: float = 20.0, max_age: float = 86400.0, max_rate: int = 5) -> None:
        super().__init__()
        self.ping_interval = ping_interval
        self.max_age = max_age
        self.max_rate = max_rate
        self.rate_kicks = 0
        self.pings_sent = 0
        self.requests: list[dict[str, Any]] = []
        self.symbols_info = binance_symbols()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v3/exchangeInfo", self.exchange_info)
        app.router.add_get("/api/v3/klines", self.klines)

    async def klines(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        q = request.query
        ms = KLINE_INTERVALS.get(q.get("interval", ""))
        if ms is None:
            hit.status = 400
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        symbol = q.get("symbol", "")
        if not any(isinstance(s, dict) and s.get("symbol") == symbol for s in self.symbols_info):
            hit.status = 400
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = min(int(q.get("limit", 500)), 1000)
        start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        bars = fake_bars(
            symbol, ms, start, min(end + 1, start + ms * (limit + limit // 6 + 2)), ny_days=False
        )
        hit.status = 200
        return web.json_response(
            [
                [b.t, f"{b.o:.8f}", f"{b.h:.8f}", f"{b.l:.8f}", f"{b.c:.8f}", f"{b.v:.8f}", b.t + ms - 1,
                 f"{b.v * b.c:.8f}", 9, f"{b.v / 2:.8f}", f"{b.v * b.c / 2:.8f}", "0"]
                for b in bars[:limit]
            ]
        )  # fmt: skip

    async def exchange_info(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        status = request.query.get("symbolStatus")
        if status is not None and status not in ("TRADING", "HALT", "BREAK"):
            hit.status = 400
            return web.json_response({"code": -1102, "msg": "Invalid symbolStatus."}, status=400)
        rows = [
            s
            for s in self.symbols_info
            if status is None or not isinstance(s, dict) or s.get("status") == status
        ]
        hit.status = 200
        return web.json_response(binance_exchange_info(rows))

    async def on_connect(self, conn: FakeConn) -> None:
        self.background(self._pings(conn))
        self.background(self._expire(conn))

    async def _pings(self, conn: FakeConn) -> None:
        while not conn.ws.closed:
            await asyncio.sleep(self.ping_interval)
            if not self.silent and not conn.ws.closed:
                self.pings_sent += 1
                await conn.ws.ping(b"binance")

    async def _expire(self, conn: FakeConn) -> None:
        await asyncio.sleep(self.max_age)
        await conn.close(1000)

    async def on_frame(self, conn: FakeConn) -> None:
        now = time.monotonic()
        recent = [t for t in conn.frame_times if t > now - 1.0]
        if len(recent) > self.max_rate:
            self.rate_kicks += 1
            await conn.close(1008, b"Too many requests")

    async def on_message(self, conn: FakeConn, msg: Any) -> None:
        if not isinstance(msg, dict) or "method" not in msg:
            await conn.send({"code": 2, "msg": "Invalid request: missing field `method`"})
            return
        self.requests.append(msg)
        method, rid, params = msg["method"], msg.get("id"), msg.get("params", [])
        if method == "SUBSCRIBE":
            if len(conn.subs | set(params)) > MAX_STREAMS:
                await conn.send({"code": 2, "msg": "Invalid request: too many streams", "id": rid})
                return
            conn.subs |= set(params)
            await conn.send({"result": None, "id": rid})
        elif method == "UNSUBSCRIBE":
            conn.subs -= set(params)
            await conn.send({"result": None, "id": rid})
        elif method == "LIST_SUBSCRIPTIONS":
            await conn.send({"result": sorted(conn.subs), "id": rid})
        else:
            await conn.send({"code": 1, "msg": f"Unknown method {method}", "id": rid})

    def symbols(self) -> set[str]:
        return {s.split("@", 1)[0].upper() for s in self.subscribed()}

    async def publish(self, stream: str, data: dict[str, Any]) -> int:
        return await self.broadcast({"stream": stream, "data": data}, to=lambda c: stream in c.subs)

    async def ticker(self, symbol: str, last: str, bid: str, ask: str) -> int:
        s = symbol.lower()
        return await self.publish(
            f"{s}@ticker",
            {
                "e": "24hrTicker", "E": 1672515782136, "s": symbol, "p": "0.0015", "P": "250.00",
                "w": "0.0018", "x": "0.0009", "c": last, "Q": "10", "b": bid, "B": "10", "a": ask,
                "A": "100", "o": "0.0010", "h": "0.0025", "l": "0.0010", "v": "10000", "q": "18",
                "O": 0, "C": 86400000, "F": 0, "L": 18150, "n": 18151,
            },
        )  # fmt: skip

    async def book(self, symbol: str, bid: str, ask: str) -> int:
        data = {"u": 400900217, "s": symbol, "b": bid, "B": "31.21", "a": ask, "A": "40.66"}
        return await self.publish(f"{symbol.lower()}@bookTicker", data)

    async def trade(self, symbol: str, price: float) -> int:
        data = {
            "e": "trade", "E": 1672515782136, "s": symbol, "t": 12345, "p": f"{price:.8f}",
            "q": "0.5", "T": 1672515782136, "m": True, "M": True,
        }  # fmt: skip
        return await self.publish(f"{symbol.lower()}@trade", data)

    async def shutdown(self) -> int:
        return await self.broadcast({"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1}})
