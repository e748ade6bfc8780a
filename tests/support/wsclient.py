"""Small helpers around a real ``websockets`` client for the tests."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next message, decoded."""
    raw = await asyncio.wait_for(ws.recv(), timeout)
    msg = orjson.loads(raw)
    assert isinstance(msg, dict)
    return msg


async def recv_until(
    ws: ClientConnection, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """Read messages until one matches ``pred``; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError("no matching message in time")
        msg = await recv(ws, left)
        if pred(msg):
            return msg


async def send(ws: ClientConnection, obj: Any) -> None:
    """Send ``obj`` as a JSON text frame."""
    await ws.send(orjson.dumps(obj).decode())


async def collect_quotes(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every Q entry of quotes frames received within ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    out: list[dict[str, Any]] = []
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await recv(ws, left)
        except TimeoutError:
            break
        if msg["type"] == "quotes":
            out.extend(msg["data"])
    return out


def stalled_client(port: int, symbols: list[str]) -> socket.socket:
    """Open /ws subscribed to ``symbols`` with a tiny receive buffer, then never read."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET /ws?symbols={','.join(symbols)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s
