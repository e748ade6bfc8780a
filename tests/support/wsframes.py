"""Raw WebSocket bytes of the client side (RFC 6455), for clients that must misbehave or cost little.

Used by the tests' stalled readers and by the bench's load generator (``bench/wsclient.py``).
"""

from __future__ import annotations

import base64
import os


def upgrade_request(host: str, path: str, key: str | None = None) -> bytes:
    """The HTTP/1.1 request opening a WebSocket at ``path`` on ``host`` (``host:port``); a random key by default."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (clients must mask, RFC 6455 §5.3)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if n == 0:
        return header + mask
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + mask + masked


def server_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The whole (unmasked) server frames at the start of ``buf`` as (opcode, payload), and the rest."""
    frames: list[tuple[int, bytes]] = []
    while len(buf) >= 2:
        op, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + n:
            break
        frames.append((op, buf[at : at + n]))
        buf = buf[at + n :]
    return frames, buf
