"""Fake Coinbase Exchange WebSocket feed: ticker and heartbeat channels, per the documented wire format.

Subscriptions are ``channel:product`` strings in ``conn.subs``. A client that subscribes to
nothing within ``subscribe_deadline`` seconds is disconnected; a subscribe naming a product
in ``invalid`` fails as a whole with ``{"type":"error","message":"Failed to subscribe",...}``.
``GET /products`` (public, one JSON array) answers with :attr:`FakeCoinbase.products`.
``GET /products/{id}/candles?granularity=&start=&end=`` answers ``[time, low, high, open, close, volume]``
candles, newest first, with one candle before ``start`` (as Coinbase may); a granularity outside the
documented set, or a range of more than 300 candles, gets HTTP 400 with Coinbase's message.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from feeds.wire import rfc3339_ms
from tests.support.fakes.barsdata import fake_bars
from tests.support.fakes.refdata import coinbase_products
from tests.support.fakes.upstream import FakeConn, FakeUpstream


class FakeCoinbase(FakeUpstream):
    path = "/"

    def __init__(self, subscribe_deadline: float = 5.0, heartbeat_interval: float = 1.0) -> None:
        super().__init__()
        self.subscribe_deadline = subscribe_deadline
        self.heartbeat_interval = heartbeat_interval
        self.invalid: set[str] = set()
        self.deadline_kicks = 0
        self.deadlines_passed = 0  # connections whose subscribe deadline has come (kicked or not)
        self.sequence = 1000
        self.products = coinbase_products()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/products", self.list_products)
        app.router.add_get("/products/{product}/candles", self.candles)

    async def candles(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        q = request.query
        gran = int(q.get("granularity", 0))
        if gran not in (60, 300, 900, 3600, 21600, 86400):
            hit.status = 400
            return web.json_response({"message": "Unsupported granularity"}, status=400)
        start, end = rfc3339_ms(q["start"]), rfc3339_ms(q["end"])
        if (end - start) // (gran * 1000) > 300:
            hit.status = 400
            return web.json_response(
                {"message": "granularity too small for the requested time range. Count of aggregations requested exceeds 300"},
                status=400,
            )  # fmt: skip
        product = request.match_info["product"]
        known = any(p.get("id") == product for p in self.products if isinstance(p, dict))
        step = gran * 1000
        bars = fake_bars(product, step, start - step, end + 1, ny_days=False) if known else []
        hit.status = 200
        return web.json_response([[b.t // 1000, b.l, b.h, b.o, b.c, b.v] for b in reversed(bars)])

    async def list_products(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        hit.status = 200
        return web.json_response(self.products)

    async def on_connect(self, conn: FakeConn) -> None:
        self.background(self._deadline(conn))
        self.background(self._heartbeats(conn))

    async def _deadline(self, conn: FakeConn) -> None:
        await asyncio.sleep(self.subscribe_deadline)
        self.deadlines_passed += 1
        if not conn.subs and not conn.ws.closed:
            self.deadline_kicks += 1
            await conn.close(1008, b"no subscribe within 5 seconds")

    async def _heartbeats(self, conn: FakeConn) -> None:
        while not conn.ws.closed:
            await asyncio.sleep(self.heartbeat_interval)
            for sub in sorted(conn.subs):
                channel, product = sub.split(":", 1)
                if channel == "heartbeat" and not self.silent:
                    self.sequence += 1
                    await conn.send(
                        {
                            "type": "heartbeat",
                            "sequence": self.sequence,
                            "last_trade_id": 20,
                            "product_id": product,
                            "time": "2014-11-07T08:19:28.464459Z",
                        }
                    )

    @staticmethod
    def _pairs(msg: dict[str, Any]) -> list[tuple[str, str]]:
        top = msg.get("product_ids", [])
        pairs = []
        for ch in msg.get("channels", []):
            if isinstance(ch, str):
                pairs += [(ch, p) for p in top]
            else:
                pairs += [(ch["name"], p) for p in ch.get("product_ids", top)]
        return pairs

    async def on_message(self, conn: FakeConn, msg: Any) -> None:
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await conn.send({"type": "error", "message": "Failed to parse", "reason": f"unknown type {kind}"})
            return
        pairs = self._pairs(msg)
        bad = [p for _, p in pairs if p in self.invalid]
        if bad:
            await conn.send(
                {
                    "type": "error",
                    "message": "Failed to subscribe",
                    "reason": f"{bad[0]} is not a valid product",
                }
            )
            return
        for channel, product in pairs:
            key = f"{channel}:{product}"
            (conn.subs.add if kind == "subscribe" else conn.subs.discard)(key)
        channels: dict[str, list[str]] = {}
        for sub in sorted(conn.subs):
            channel, product = sub.split(":", 1)
            channels.setdefault(channel, []).append(product)
        await conn.send(
            {
                "type": "subscriptions",
                "channels": [{"name": n, "product_ids": p} for n, p in channels.items()],
            }
        )

    BAD = (
        '{"type":"ticker","product_id":"BTC-USD","price":"12x","time":"2022-10-19T23:28:22Z"}',
        '{"type":"ticker","product_id":"BTC-USD","price":"1.5","time":"yesterday"}',
        '{"type":"ticker","price":"1.5"}',
        '["ticker"]',
    )

    def symbols(self) -> set[str]:
        return {s.split(":", 1)[1] for s in self.subscribed() if s.startswith("ticker:")}

    tickers = symbols

    async def trade(self, symbol: str, price: float) -> int:
        return await self.ticker(symbol, f"{price:.2f}", f"{price - 0.01:.2f}", f"{price + 0.01:.2f}")

    async def ticker(self, product: str, price: str, bid: str, ask: str, **extra: Any) -> int:
        """Send a ticker message (decimal strings) to every connection subscribed to ``product``."""
        self.sequence += 1
        msg = {
            "type": "ticker",
            "sequence": self.sequence,
            "product_id": product,
            "price": price,
            "open_24h": "1310.79",
            "volume_24h": "245532.79269678",
            "low_24h": "1280.52",
            "high_24h": "1313.8",
            "volume_30d": "9788783.60117027",
            "best_bid": bid,
            "best_bid_size": "0.46688654",
            "best_ask": ask,
            "best_ask_size": "1.56637040",
            "side": "buy",
            "time": "2022-10-19T23:28:22.061769Z",
            "trade_id": 370843401,
            "last_size": "11.4396987",
        }
        msg.update(extra)
        return await self.broadcast(msg, to=lambda c: f"ticker:{product}" in c.subs)
