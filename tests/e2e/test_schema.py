"""Every message a real server sends matches docs/protocol.md's server schema."""

from __future__ import annotations

import jsonschema
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
        for q in await collect_quotes(ws, 1.0):
            v.validate({"type": "quotes", "data": [q]})
    assert {"subscribed", "snapshot", "pong", "error"} <= seen.keys()
