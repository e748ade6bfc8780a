"""Fake Alpaca market data stream v2 (``/v2/iex`` and ``/v2/sip``), per the documented wire format.

Every server frame is a JSON array. connected → auth (402 on bad keys, then close; 404 if no
auth within ``auth_deadline``) → subscribe trades/quotes (401 before auth; 405 past ``limit``
symbols; ack with the full current set). One connection per key: a second one gets 406 and
is closed. :meth:`slow_client` sends 407 and closes, as the server does to a slow reader.
The ``statuses`` channel is kept per connection (:meth:`status` sends a trading status, ``T: s``, to those
subscribed to the symbol's); with ``refuse_statuses`` a subscribe naming it gets 410 instead.
The Trading API's ``GET /v2/assets`` (keys in ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY``; 401 otherwise)
lists :attr:`FakeAlpaca.assets`, filtered by ``status`` and ``asset_class`` (default ``us_equity``).
The Market Data API's ``GET /v2/stocks/{symbol}/bars`` pages through the history of a listed symbol
(:meth:`FakeAlpaca.stock_bars`); the ``bars``/``updatedBars`` channels are kept per connection and acked.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from feeds.wire import rfc3339_ms
from tests.support.fakes.barsdata import fake_bars
from tests.support.fakes.refdata import alpaca_assets
from tests.support.fakes.upstream import FakeConn, FakeUpstream


def _rfc3339_ns(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}689322Z"


class FakeAlpaca(FakeUpstream):
    BAD = (
        '{"T":"t","S":"AAPL","p":1}',
        '[{"T":"t","S":"AAPL","p":"x","t":"2021-02-22T15:51:44.208Z"}]',
        '[{"T":"q","S":"AAPL","bp":1,"ap":2,"t":"not a time"}]',
        "[42]",
    )

    def __init__(
        self,
        key: str = "KEY",
        secret: str = "SECRET",
        limit: int = 30,
        auth_deadline: float = 5.0,
        source: str = "iex",
    ) -> None:
        super().__init__()
        self.key, self.secret = key, secret
        self.limit = limit
        self.auth_deadline = auth_deadline
        self.auth_failures = 0
        self.path = f"/v2/{source}"
        self.assets = alpaca_assets()
        self.statuses: dict[FakeConn, set[str]] = {}  # each connection's statuses channel
        #: each connection's bars and updatedBars channels
        self.bar_channels: dict[FakeConn, dict[str, set[str]]] = {}
        self.refuse_statuses = False
        self.bars_page = 10_000  # bars per history page

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/assets", self.list_assets)
        app.router.add_get("/v2/stocks/{symbol}/bars", self.stock_bars)

    async def stock_bars(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2/stocks/{symbol}/bars``: :func:`fake_bars` of a symbol the assets list, ``bars_page`` per
        page with a ``next_page_token`` (``start``/``end`` RFC 3339, both inclusive); a 422 for a bad timeframe."""
        hit = self.desk.log(request)
        h = request.headers
        if h.get("APCA-API-KEY-ID") != self.key or h.get("APCA-API-SECRET-KEY") != self.secret:
            hit.status = 401
            return web.json_response({"code": 40110000, "message": "request is not authorized"}, status=401)
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        q = request.query
        unit = {"1Min": 60_000, "5Min": 300_000, "1Hour": 3_600_000, "1Day": 86_400_000}.get(
            q.get("timeframe", "")
        )
        if unit is None:
            hit.status = 422
            return web.json_response({"code": 42210000, "message": "invalid timeframe"}, status=422)
        symbol = request.match_info["symbol"]
        start, end = rfc3339_ms(q["start"]), rfc3339_ms(q["end"])
        known = any(isinstance(a, dict) and a.get("symbol") == symbol for a in self.assets)
        bars = fake_bars(symbol, unit, start, end + 1) if known else []
        offset = int(base64.b64decode(q["page_token"])) if "page_token" in q else 0
        page = bars[offset : offset + self.bars_page]
        more = offset + self.bars_page < len(bars)
        hit.status = 200
        return web.json_response(
            {
                "bars": [
                    {"t": _rfc3339_ns(b.t)[:19] + "Z", "o": b.o, "h": b.h, "l": b.l, "c": b.c, "v": b.v, "n": 9,
                     "vw": round((b.h + b.l) / 2, 4)}
                    for b in page
                ],
                "symbol": symbol,
                "next_page_token": base64.b64encode(str(offset + self.bars_page).encode()).decode() if more else None,
            }
        )  # fmt: skip

    async def list_assets(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        h = request.headers
        if h.get("APCA-API-KEY-ID") != self.key or h.get("APCA-API-SECRET-KEY") != self.secret:
            hit.status = 401
            return web.json_response({"code": 40110000, "message": "request is not authorized"}, status=401)
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        status, klass = request.query.get("status"), request.query.get("asset_class", "us_equity")
        rows = [
            a
            for a in self.assets
            if not isinstance(a, dict)
            or (status in (None, a.get("status")) and a.get("class", "us_equity") == klass)
        ]
        hit.status = 200
        return web.json_response(rows)

    @staticmethod
    def error(code: int, msg: str) -> list[dict[str, Any]]:
        return [{"T": "error", "code": code, "msg": msg}]

    async def on_connect(self, conn: FakeConn) -> None:
        if any(c.authed for c in self.conns if c is not conn):
            await conn.send(self.error(406, "connection limit exceeded"))
            await conn.close(1008)
            return
        await conn.send([{"T": "success", "msg": "connected"}])
        self.background(self._auth_deadline(conn))

    async def _auth_deadline(self, conn: FakeConn) -> None:
        await asyncio.sleep(self.auth_deadline)
        if not conn.authed and not conn.ws.closed:
            await conn.send(self.error(404, "auth timeout"))
            await conn.close(1008)

    async def on_bad_frame(self, conn: FakeConn, text: str) -> None:
        await conn.send(self.error(400, "invalid syntax"))

    async def on_message(self, conn: FakeConn, msg: Any) -> None:
        action = msg.get("action") if isinstance(msg, dict) else None
        if action == "auth":
            if conn.authed:
                await conn.send(self.error(403, "already authenticated"))
            elif msg.get("key") == self.key and msg.get("secret") == self.secret:
                conn.authed = True
                await conn.send([{"T": "success", "msg": "authenticated"}])
            else:
                self.auth_failures += 1
                await conn.send(self.error(402, "auth failed"))
                await conn.close(1008)
        elif action in ("subscribe", "unsubscribe"):
            if not conn.authed:
                await conn.send(self.error(401, "not authenticated"))
                return
            symbols = set(msg.get("trades", [])) | set(msg.get("quotes", []))
            statuses = self.statuses.setdefault(conn, set())
            bars = self.bar_channels.setdefault(conn, {"bars": set(), "updatedBars": set()})
            if action == "subscribe":
                if "statuses" in msg and self.refuse_statuses:
                    await conn.send(self.error(410, "invalid subscribe action for this feed"))
                    return
                if len(conn.subs | symbols) > self.limit:
                    await conn.send(self.error(405, "symbol limit exceeded"))
                    return
                conn.subs |= symbols
                statuses |= set(msg.get("statuses", []))
                for channel, held in bars.items():
                    held |= set(msg.get(channel, []))
            else:
                conn.subs -= symbols
                statuses -= set(msg.get("statuses", []))
                for channel, held in bars.items():
                    held -= set(msg.get(channel, []))
            subs = sorted(conn.subs)
            await conn.send(
                [
                    {
                        "T": "subscription",
                        "trades": subs,
                        "quotes": subs,
                        "bars": sorted(bars["bars"]),
                        "updatedBars": sorted(bars["updatedBars"]),
                        "statuses": sorted(statuses),
                    }
                ]
            )
        else:
            await conn.send(self.error(400, "invalid syntax"))

    def symbols(self) -> set[str]:
        return self.subscribed()

    async def batch(self, *items: dict[str, Any]) -> int:
        """One array frame of the given items, to every authenticated connection."""
        return await self.broadcast(list(items), to=lambda c: c.authed)

    @staticmethod
    def trade_item(symbol: str, price: float, size: int = 100, ms: int = 1614009104208) -> dict[str, Any]:
        return {
            "T": "t", "i": 96921, "S": symbol, "x": "D", "p": price, "s": size,
            "t": _rfc3339_ns(ms), "c": ["@", "I"], "z": "C",
        }  # fmt: skip

    @staticmethod
    def bar_item(
        symbol: str, kind: str, o: float, h: float, low: float, c: float, v: float, t: str
    ) -> dict[str, Any]:
        """A bar (``kind`` ``b``) or an updated bar (``u``) of the ``bars``/``updatedBars`` channels."""
        return {"T": kind, "S": symbol, "o": o, "h": h, "l": low, "c": c, "v": v, "t": t}

    @staticmethod
    def quote_item(symbol: str, bid: float, ask: float, ms: int = 1614009105335) -> dict[str, Any]:
        return {
            "T": "q", "S": symbol, "bx": "U", "bp": bid, "bs": 1, "ax": "Q", "ap": ask, "as": 4,
            "t": _rfc3339_ns(ms), "c": ["R"], "z": "C",
        }  # fmt: skip

    async def trade(self, symbol: str, price: float) -> int:
        return await self.broadcast(
            [self.trade_item(symbol, price), self.quote_item(symbol, price - 0.01, price + 0.01)],
            to=lambda c: symbol in c.subs,
        )

    async def status(
        self, symbol: str, code: str, message: str, reason_code: str = "", reason: str = ""
    ) -> int:
        """A trading status of ``symbol`` (the fixture's shape: ``sc``/``sm`` status, ``rc``/``rm`` reason), to
        the connections subscribed to its statuses."""
        item = {
            "T": "s", "S": symbol, "sc": code, "sm": message, "rc": reason_code, "rm": reason,
            "t": _rfc3339_ns(1614021300000), "z": "C",
        }  # fmt: skip
        return await self.broadcast([item], to=lambda c: symbol in self.statuses.get(c, set()))

    async def slow_client(self) -> None:
        for conn in list(self.conns):
            await conn.send(self.error(407, "slow client"))
            await conn.close(1008)
