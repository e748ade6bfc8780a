"""Building transport frames once per payload (pure): WebSocket text frames and SSE events."""

from __future__ import annotations

import struct

_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")
#: The headers of payloads shorter than this, made once (a quote frame's header is one lookup, not a pack).
HEAD_TABLE = 2048
_HEADS = tuple(bytes((0x81, n)) if n < 126 else _LEN16.pack(0x81, 126, n) for n in range(HEAD_TABLE))


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2) as sent by a server."""
    n = len(payload)
    if n < HEAD_TABLE:
        return _HEADS[n] + payload
    if n < 65536:
        return _LEN16.pack(0x81, 126, n) + payload
    return _LEN64.pack(0x81, 127, n) + payload


def sse_event(event: str, payload: bytes) -> bytes:
    """A Server-Sent Events message ``event: NAME`` with one ``data:`` line (JSON has no raw newlines)."""
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
