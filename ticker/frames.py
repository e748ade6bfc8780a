"""Building transport frames once per payload (pure): WebSocket text frames and SSE events."""

from __future__ import annotations

import struct

_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2) as sent by a server."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return _LEN16.pack(0x81, 126, n) + payload
    return _LEN64.pack(0x81, 127, n) + payload


def sse_event(event: str, payload: bytes) -> bytes:
    """A Server-Sent Events message ``event: NAME`` with one ``data:`` line (JSON has no raw newlines)."""
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
