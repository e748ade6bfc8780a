"""Every message a real server sends matches docs/protocol.md's server schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from websockets.asyncio.client import connect

from tests.support.inprocess import InProcessServer
from tests.support.schemas import protocol_schemas
from tests.support.wsclient import collect_quotes, recv, send


async def test_server_messages_match_the_schema(inprocess: InProcessServer):
    _, schema = protocol_schemas()
    v = jsonschema.Draft202012Validator(schema)
    seen: dict[str, int] = {}
    async with connect(inprocess.ws_url) as ws:
        for frame in (
            {"op": "subscribe", "symbols": ["AAPL", "MSFT", "bad$"]},
            {"op": "ping", "id": "x"},
            {"op": "unsubscribe", "symbols": ["MSFT"]},
            {"op": "nope"},
        ):
            await send(ws, frame)
        await ws.send("{")
        for _ in range(8):
            msg = await recv(ws)
            v.validate(msg)
            seen[msg["type"]] = seen.get(msg["type"], 0) + 1
        quotes = await collect_quotes(ws, 1.0)
        for q in quotes:
            v.validate({"type": "quotes", "data": [q]})
    assert {"subscribed", "snapshot", "pong", "error"} <= seen.keys()
    assert quotes and all({"o", "h", "l", "pc"} <= q.keys() for q in quotes)  # day statistics validated


def test_the_q_schema_types_the_day_statistics() -> None:
    v = jsonschema.Draft202012Validator(protocol_schemas()[1])
    good = {"s": "AAPL", "p": 2.0, "o": 1.5, "h": 2.5, "l": 1.0, "pc": 1.9, "vw": 1.8, "t": 1, "q": 1}
    v.validate({"type": "quotes", "data": [good]})
    v.validate({"type": "snapshot", "e": "9c41d07a2b5e#7", "data": [{"s": "AAPL", "p": 2.0, "t": 1, "q": 1}]})
    with pytest.raises(jsonschema.ValidationError):  # a snapshot says its epoch
        v.validate({"type": "snapshot", "data": [{"s": "AAPL", "p": 2.0, "t": 1, "q": 1}]})
    for key in ("o", "h", "l", "pc", "vw"):
        with pytest.raises(jsonschema.ValidationError):
            v.validate({"type": "quotes", "data": [{**good, key: "1.5"}]})


async def test_messages_of_auth_jwt_match_the_schema(monkeypatch: pytest.MonkeyPatch):
    from tests.support.inprocess import serve_in_process
    from tests.support.tokens import SECRET, mint
    from ticker.auth.options import AuthOptions

    monkeypatch.setenv("TICKER_JWT_SECRET", SECRET)
    client_schema, schema = protocol_schemas()
    v = jsonschema.Draft202012Validator(schema)
    c = jsonschema.Draft202012Validator(client_schema)
    seen: list[dict[str, Any]] = []
    async with serve_in_process(access=AuthOptions(auth="jwt", delay=1.0)) as srv, connect(srv.ws_url) as ws:
        for frame in (
            {"op": "subscribe", "symbols": ["AAPL"]},
            {"op": "auth", "token": mint(realtime=["AAPL"], delayed=["MSFT"])},
            {"op": "subscribe", "symbols": ["AAPL", "MSFT", "KO"]},
            {"op": "refresh", "token": mint(realtime=["AAPL"])},
        ):
            c.validate(frame)
            await send(ws, frame)
        while len([m for m in seen if m["type"] == "authenticated"]) < 2 or seen[-1]["type"] != "error":
            msg = await recv(ws)
            v.validate(msg)
            seen.append(msg)
    kinds = [(m["type"], m.get("code")) for m in seen if m["type"] not in ("snapshot", "quotes")]
    assert kinds == [
        ("error", "unauthorized"),
        ("authenticated", None),
        ("error", "forbidden_symbol"),
        ("subscribed", None),
        ("authenticated", None),
        ("subscribed", None),
        ("error", "forbidden_symbol"),
    ]
    assert [m["delayed"] for m in seen if m["type"] == "subscribed"] == [["MSFT"], []]


async def test_http_bodies_match_the_schema(inprocess: InProcessServer):
    import httpx

    from tests.support.schemas import http_schema
    from tests.support.timing import eventually

    v = jsonschema.Draft202012Validator(http_schema())
    await eventually(lambda: inprocess.node.directory.complete, what="the directory to load")
    async with httpx.AsyncClient() as http:
        for path, status in (
            ("/api/quotes?symbols=AAPL,MSFT", 200),
            ("/api/quotes", 200),
            ("/api/quotes?symbols=APPL", 400),
            ("/api/quotes?symbols=bad$", 400),
            ("/api/search?q=apple", 200),
            ("/api/search", 400),
            ("/api/symbols", 200),
            ("/api/symbols/AAPL", 200),
            ("/api/symbols/APPL", 404),
        ):
            r = await http.get(f"{inprocess.url}{path}")
            assert r.status_code == status, path
            v.validate(r.json())
