"""docs/protocol.md's client schema accepts what the server's parser accepts, and refuses what it refuses."""

from __future__ import annotations

import jsonschema

from tests.support.schemas import protocol_schemas


def test_client_schema_matches_what_the_parser_accepts():
    client, _ = protocol_schemas()
    v = jsonschema.Draft202012Validator(client)
    assert v.is_valid({"op": "subscribe", "symbols": ["aapl", "BTC-USD"]})
    assert v.is_valid({"op": "ping", "id": [1]})
    assert not v.is_valid({"op": "subscribe", "symbols": "AAPL"})
    assert not v.is_valid({"op": "subscribe", "symbols": ["bad$"]})
