"""Fake Polygon stocks WebSocket (``/stocks``), per the documented wire format.

Every server frame is a JSON array of events. connected → auth (``auth_failed`` on a bad
key) → ``subscribe``/``unsubscribe`` with ``"T.AAPL,Q.AAPL"`` params, each answered by
``success`` statuses. One connection per key: a new connection disconnects the older one
with a ``max_connections`` status.

``GET /v3/reference/tickers`` (the key as ``apiKey=`` or ``Authorization: Bearer``) pages through
:attr:`FakePolygon.tickers` in ticker order, filtered by ``active`` and ``market``; ``limit`` (default 100)
is capped at :attr:`FakePolygon.max_limit` (1000 upstream); each page but the last carries a ``next_url``
with an opaque ``cursor`` on :attr:`FakePolygon.next_base` (this fake, unless a test points it elsewhere).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from tests.support.fakes.refdata import polygon_tickers
from tests.support.fakes.upstream import FakeConn, FakeUpstream


def status(state: str, message: str) -> list[dict[str, str]]:
    return [{"ev": "status", "status": state, "message": message}]


class FakePolygon(FakeUpstream):
    path = "/stocks"
    BAD = (
        '{"ev":"T","sym":"AAPL","p":1}',
        '[{"ev":"T","sym":"AAPL","p":"x","s":1,"t":1}]',
        '[{"ev":"Q","sym":"AAPL","bp":1,"ap":2,"t":"noon"}]',
        '["T"]',
    )

    def __init__(self, key: str = "POLYKEY") -> None:
        super().__init__()
        self.key = key
        self.tickers = polygon_tickers()
        self.max_limit = 1000
        self.next_base: str | None = None  # host of next_url (default: this fake)
        self.repeat_cursor = False  # a broken upstream whose next_url never advances

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v3/reference/tickers", self.list_tickers)

    async def list_tickers(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        q = request.query
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.key not in (q.get("apiKey"), bearer):
            hit.status = 401
            return web.json_response(
                {"status": "ERROR", "request_id": "r1", "error": "Unknown API Key"}, status=401
            )
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        if "cursor" in q:
            params = json.loads(base64.urlsafe_b64decode(q["cursor"]))
        else:
            params = {"offset": 0, **{k: v for k, v in q.items() if k != "apiKey"}}
        active = params.get("active", "true") == "true"
        market = params.get("market")
        rows = [
            t for t in self.tickers if t.get("active", True) == active and market in (None, t.get("market"))
        ]
        offset, limit = int(params["offset"]), min(int(params.get("limit", 100)), self.max_limit)
        page = rows[offset : offset + limit]
        body: dict[str, Any] = {
            "results": page,
            "status": "OK",
            "request_id": f"r{offset}",
            "count": len(page),
        }
        if offset + limit < len(rows):
            following = {**params, "offset": offset if self.repeat_cursor else offset + limit}
            cursor = base64.urlsafe_b64encode(json.dumps(following).encode()).decode()
            body["next_url"] = f"{self.next_base or self.http_url}/v3/reference/tickers?cursor={cursor}"
        hit.status = 200
        return web.json_response(body)

    async def on_connect(self, conn: FakeConn) -> None:
        for other in [c for c in self.conns if c is not conn and c.authed]:
            await other.send(
                status(
                    "max_connections",
                    "Maximum number of websocket connections exceeded. You have been disconnected.",
                )
            )
            await other.close(1008)
        await conn.send(status("connected", "Connected Successfully"))

    async def on_message(self, conn: FakeConn, msg: Any) -> None:
        action = msg.get("action") if isinstance(msg, dict) else None
        params = msg.get("params", "") if isinstance(msg, dict) else ""
        if action == "auth":
            if params == self.key:
                conn.authed = True
                await conn.send(status("auth_success", "authenticated"))
            else:
                await conn.send(status("auth_failed", "authentication failed"))
                await conn.close(1008)
        elif action in ("subscribe", "unsubscribe") and conn.authed:
            channels = [p for p in params.split(",") if p]
            for ch in channels:
                (conn.subs.add if action == "subscribe" else conn.subs.discard)(ch)
            word = "subscribed" if action == "subscribe" else "unsubscribed"
            await conn.send([s for ch in channels for s in status("success", f"{word} to: {ch}")])
        else:
            await conn.send(status("error", "not authorized" if not conn.authed else "unknown action"))

    def symbols(self) -> set[str]:
        subs = self.subscribed()
        return {c[2:] for c in subs if c.startswith("T.") and f"Q.{c[2:]}" in subs}

    async def events(self, *events: dict[str, Any]) -> int:
        """One array frame of ``events`` to every authenticated connection."""
        return await self.broadcast(list(events), to=lambda c: c.authed)

    async def trade(self, symbol: str, price: float) -> int:
        t = 1536036818784
        return await self.broadcast(
            [
                {"ev": "T", "sym": symbol, "x": 4, "i": "12345", "z": 3, "p": price, "s": 100, "c": [0, 12], "t": t, "q": 1},
                {"ev": "Q", "sym": symbol, "bx": 4, "bp": price - 0.01, "bs": 100, "ax": 7, "ap": price + 0.01,
                 "as": 160, "c": 0, "i": [604], "t": t, "q": 2, "z": 3},
            ],
            to=lambda c: f"T.{symbol}" in c.subs,
        )  # fmt: skip
