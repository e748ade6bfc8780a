"""The JSON Schemas of docs/protocol.md: what clients may send and what the server sends."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def protocol_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(client schema, server schema), the first two JSON blocks under "## JSON Schema", both checked valid."""
    text = DOC.read_text().split("## JSON Schema", 1)[1]
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    client, server = (json.loads(b) for b in blocks[:2])
    jsonschema.Draft202012Validator.check_schema(client)
    jsonschema.Draft202012Validator.check_schema(server)
    return client, server


def http_schema() -> dict[str, Any]:
    """The schema of the ``/api/*`` bodies: the third JSON block under "## JSON Schema", checked valid."""
    text = DOC.read_text().split("## JSON Schema", 1)[1]
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    schema: dict[str, Any] = json.loads(blocks[2])
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema
