"""Small helpers around a real ``websockets`` client for the tests; every wait scales with the timing factor."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.timing import eventually, timeout
from tests.support.wsframes import server_frames, upgrade_request


async def _next(ws: ClientConnection, seconds: float) -> dict[str, Any]:
    """The next message, decoded, waiting at most ``seconds`` (not scaled)."""
    raw = await asyncio.wait_for(ws.recv(), seconds)
    msg = orjson.loads(raw)
    assert isinstance(msg, dict)
    return msg


async def recv(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    """The next message, decoded; fails after ``within`` seconds (scaled)."""
    return await _next(ws, timeout(within))


async def recv_until(
    ws: ClientConnection, pred: Callable[[dict[str, Any]], bool], within: float = 5.0
) -> dict[str, Any]:
    """Read messages until one matches ``pred``; fail after ``within`` seconds (scaled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(within)
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError("no matching message in time")
        msg = await _next(ws, left)
        if pred(msg):
            return msg


async def send(ws: ClientConnection, obj: Any) -> None:
    """Send ``obj`` as a JSON text frame."""
    await ws.send(orjson.dumps(obj).decode())


async def collect_frames(ws: ClientConnection, seconds: float) -> list[list[dict[str, Any]]]:
    """The Q entries of each quotes frame received within a window of ``seconds`` (a window, not a timeout)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    frames: list[list[dict[str, Any]]] = []
    while (left := end - loop.time()) > 0:
        try:
            msg = await _next(ws, left)
        except TimeoutError:
            break
        if msg["type"] == "quotes":
            frames.append(msg["data"])
    return frames


async def collect_quotes(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every Q entry of quotes frames received within a window of ``seconds`` (a window, not a timeout)."""
    return [e for frame in await collect_frames(ws, seconds) for e in frame]


async def ws_quotes(
    url: str, symbols: list[str], want: Callable[[list[dict[str, Any]]], bool], within: float = 20
) -> list[dict[str, Any]]:
    """Subscribe to ``symbols`` on ``url``/ws and collect Q entries (snapshot and quotes) until ``want(entries)``."""
    entries: list[dict[str, Any]] = []
    async with (
        asyncio.timeout(timeout(within)),
        websockets.connect(url.replace("http", "ws", 1) + "/ws") as ws,
    ):
        await send(ws, {"op": "subscribe", "symbols": symbols})
        while not want(entries):
            msg = orjson.loads(await ws.recv())
            if msg.get("type") in ("snapshot", "quotes"):
                entries.extend(msg["data"])
            elif msg.get("type") == "error":
                raise AssertionError(f"server error: {msg}")
    return entries


class Inbox:
    """Reads every message of a WebSocket client in the background, with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.msgs: list[tuple[float, dict[str, Any]]] = []
        self.close_code: int | None = None
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async for raw in self.ws:
                self.msgs.append((time.monotonic(), orjson.loads(raw)))
        except ConnectionClosed:
            pass
        self.closed = True
        self.close_code = self.ws.close_code

    def since(self, t: float, kind: str) -> list[dict[str, Any]]:
        """Messages of ``kind`` received after monotonic time ``t``."""
        return [m for at, m in self.msgs if at > t and m["type"] == kind]

    def entries(self, kind: str = "quotes", since: float = 0.0) -> list[dict[str, Any]]:
        """Every Q entry of ``kind`` messages received after ``since``."""
        return [e for m in self.since(since, kind) for e in m["data"]]

    async def wait(self, pred: Callable[..., object], within: float = 5.0, what: str = "messages") -> None:
        """Wait until ``pred()`` is truthy; fail after ``within`` seconds (scaled)."""
        await eventually(pred, within, what)


def _upgrade(s: socket.socket, port: int, path: str) -> None:
    """Send the upgrade request of ``path`` on ``s`` and read the response head, byte by byte (no frame is
    read with it): it must be a 101."""
    s.sendall(upgrade_request(f"127.0.0.1:{port}", path))
    head = b""
    while b"\r\n\r\n" not in head:
        byte = s.recv(1)
        assert byte, f"closed during the handshake: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head


def open_raw_ws(port: int, path: str = "/ws") -> socket.socket:
    """A raw client socket past the handshake of ``path`` (blocking, with a scaled timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout(10))
    _upgrade(s, port, path)
    return s


def frames_until_close(s: socket.socket) -> tuple[list[tuple[int, bytes]], int | None]:
    """Read server frames until a Close frame, EOF or a reset: the frames before it, and its code (None: no
    Close frame). What the kernel received before a reset is still read: a server that closes with our
    frames unread resets the connection, but the frames it sent first arrive."""
    got: list[tuple[int, bytes]] = []
    buf = b""
    while True:
        frames, buf = server_frames(buf)
        for op, payload in frames:
            if op == 0x8:
                return got, int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            got.append((op, payload))
        try:
            chunk = s.recv(1 << 16)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return got, None
        buf += chunk


def stalled_client(port: int, symbols: list[str]) -> socket.socket:
    """Open /ws subscribed to ``symbols`` with a tiny receive buffer, then never read."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(timeout(5))
    s.connect(("127.0.0.1", port))
    _upgrade(s, port, f"/ws?symbols={','.join(symbols)}")
    s.settimeout(None)
    return s
