"""Fake Polygon stocks WebSocket (``/stocks``), per the documented wire format.

Every server frame is a JSON array of events. connected → auth (``auth_failed`` on a bad
key) → ``subscribe``/``unsubscribe`` with ``"T.AAPL,Q.AAPL"`` params, each answered by
``success`` statuses. One connection per key: a new connection disconnects the older one
with a ``max_connections`` status.

``GET /v3/reference/tickers`` (the key as ``apiKey=`` or ``Authorization: Bearer``) pages through
:attr:`FakePolygon.tickers` in ticker order, filtered by ``active`` and ``market``; ``limit`` (default 100)
is capped at :attr:`FakePolygon.max_limit` (1000 upstream); each page but the last carries a ``next_url``
with an opaque ``cursor`` on :attr:`FakePolygon.next_base` (this fake, unless a test points it elsewhere).

``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}`` (``from``/``to`` in ms or
``YYYY-MM-DD``, ``to`` inclusive) answers :func:`~tests.support.fakes.barsdata.fake_bars` of the tickers it
knows (day bars at midnight New York), :attr:`FakePolygon.aggs_page` results per page with a ``next_url``
cursor; an unknown ticker gets ``resultsCount`` 0 without ``results``; a ticker in
:attr:`FakePolygon.not_entitled` gets the documented 403 ``NOT_AUTHORIZED``. Faults come from ``desk``.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from aiohttp import web

from feeds.sessions import new_york
from tests.support.fakes.barsdata import fake_bars
from tests.support.fakes.refdata import polygon_tickers
from tests.support.fakes.upstream import FakeConn, FakeUpstream


def _ms(text: str, end: bool = False) -> int:
    """Epoch ms of an aggregates ``from``/``to``: ms, or a date (``to``: the end of that day, New York)."""
    if text.isdigit():
        return int(text)
    day = datetime.fromisoformat(text).replace(tzinfo=new_york())
    return int(day.timestamp() * 1000) + (86_400_000 - 1 if end else 0)


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
        self.aggs_page = 5000  # results per aggregates page
        self.not_entitled: set[str] = set()  # tickers whose aggregates the plan does not include

    def _authorized(self, request: web.Request) -> bool:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return self.key in (request.query.get("apiKey"), bearer)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v3/reference/tickers", self.list_tickers)
        app.router.add_get("/v2/aggs/ticker/{ticker}/range/{mult}/{span}/{start}/{end}", self.aggs)

    async def aggs(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        if not self._authorized(request):
            hit.status = 401
            return web.json_response(
                {"status": "ERROR", "request_id": "r1", "error": "Unknown API Key"}, status=401
            )
        instead = await self.desk.gate(request, hit)
        if instead is not None:
            return instead
        m = request.match_info
        ticker = m["ticker"]
        if ticker in self.not_entitled:
            hit.status = 403
            return web.json_response(
                {"status": "NOT_AUTHORIZED", "request_id": "r2",
                 "message": "Your plan doesn't include this data timeframe. Please upgrade your plan at https://polygon.io/pricing"},
                status=403,
            )  # fmt: skip
        unit = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}[m["span"]]
        start, end = _ms(m["start"]), _ms(m["end"], end=True)
        known = any(t.get("ticker") == ticker for t in self.tickers)
        bars = fake_bars(ticker, int(m["mult"]) * unit, start, end + 1) if known else []
        offset = (
            int(json.loads(base64.urlsafe_b64decode(request.query["cursor"])))
            if "cursor" in request.query
            else 0
        )
        page = bars[offset : offset + self.aggs_page]
        body: dict[str, Any] = {"ticker": ticker, "queryCount": len(page), "resultsCount": len(page),
                                "adjusted": True, "status": "OK", "request_id": f"a{offset}"}  # fmt: skip
        if page:
            body["results"] = [
                {"v": b.v, "vw": round((b.h + b.l) / 2, 4), "o": b.o, "c": b.c, "h": b.h, "l": b.l, "t": b.t, "n": 7}
                for b in page
            ]  # fmt: skip
        if offset + self.aggs_page < len(bars):
            cursor = base64.urlsafe_b64encode(json.dumps(offset + self.aggs_page).encode()).decode()
            body["next_url"] = f"{self.next_base or self.http_url}{request.path}?cursor={cursor}"
        hit.status = 200
        return web.json_response(body)

    async def list_tickers(self, request: web.Request) -> web.StreamResponse:
        hit = self.desk.log(request)
        q = request.query
        if not self._authorized(request):
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
