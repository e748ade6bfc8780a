"""Every message a real server sends, and the client messages we accept, match docs/protocol.md's schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
from websockets.asyncio.client import connect

from tests.support.serverproc import ServerProcess
from tests.support.wsclient import collect_quotes, recv, send

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def schemas() -> tuple[dict, dict]:
    text = DOC.read_text().split("## JSON Schema", 1)[1]
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    client, server = (json.loads(b) for b in blocks[:2])
    jsonschema.Draft202012Validator.check_schema(client)
    jsonschema.Draft202012Validator.check_schema(server)
    return client, server


def test_client_schema_matches_what_the_parser_accepts():
    client, _ = schemas()
    v = jsonschema.Draft202012Validator(client)
    assert v.is_valid({"op": "subscribe", "symbols": ["aapl", "BTC-USD"]})
    assert v.is_valid({"op": "ping", "id": [1]})
    assert not v.is_valid({"op": "subscribe", "symbols": "AAPL"})
    assert not v.is_valid({"op": "subscribe", "symbols": ["bad$"]})


async def test_server_messages_match_the_schema(server: ServerProcess):
    _, schema = schemas()
    v = jsonschema.Draft202012Validator(schema)
    seen: dict[str, int] = {}
    async with connect(server.ws_url) as ws:
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
