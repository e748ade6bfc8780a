"""Raw loopback clients of the stress suite (``make stress``): cheap, and free to misbehave.

Every socket is bound to a chosen source address of ``127.0.0.0/8`` before it connects, so that one
attack can play one address (the per-address limits) or many (a distributed attacker). :class:`Conn` is
one connection as an asyncio Protocol: it sends its request, reads the HTTP answer's status line and,
after a ``101``, either reads every frame (answering pings, noting a close) or never reads again
(a slow reader: reading paused and a 4 KiB receive buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from tests.support.wsframes import client_frame, upgrade_request

#: Linux: bind the address now and the port at connect (so that many sockets can share a source address).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
SLOW_RCVBUF = 4096  # receive buffer of a client that never reads
PING, PONG, CLOSE = 0x9, 0xA, 0x8


def addresses(block: int, n: int) -> list[str]:
    """``n`` source addresses of their own for one attack: ``127.<block>.x.y`` (block 1..254)."""
    return [f"127.{block}.{i // 250}.{i % 250 + 1}" for i in range(n)]


async def tcp(port: int, src: str, rcvbuf: int | None = None, host: str = "127.0.0.1") -> socket.socket:
    """A non-blocking TCP socket from ``src`` connected to ``host:port``."""
    s = socket.socket()
    try:
        s.setblocking(False)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        with contextlib.suppress(OSError):
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((src, 0))
        await asyncio.get_running_loop().sock_connect(s, (host, port))
    except BaseException:
        s.close()
        raise
    return s


def ws_request(port: int, path: str = "/ws", host: str = "", extra: str = "") -> bytes:
    """The upgrade request of ``path``; ``host`` replaces the ``Host`` header, ``extra`` adds header lines."""
    req = upgrade_request(host or f"127.0.0.1:{port}", path)
    return req[:-2] + extra.encode() + b"\r\n" if extra else req


def http_request(port: int, path: str, method: str = "GET", host: str = "", extra: str = "") -> bytes:
    """A plain HTTP/1.1 request without a body (``extra``: more header lines, each ending in CRLF)."""
    return f"{method} {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n{extra}\r\n".encode()


def text_frame(payload: bytes) -> bytes:
    """A masked final text frame."""
    return client_frame(0x1, payload)


def empty_frames(first: int, then: int, count: int) -> bytes:
    """One masked empty frame with byte 0 ``first``, then ``count - 1`` with byte 0 ``then``."""
    return bytes((first, 0x80)) + os.urandom(4) + (bytes((then, 0x80)) + os.urandom(4)) * (count - 1)


class Conn(asyncio.Protocol):
    """One connection: ``request`` is written at once; ``status`` is the HTTP answer's (0 before it)."""

    def __init__(self, request: bytes, read: bool = True, watch: tuple[bytes, ...] = ()) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.read = read
        self.status = 0
        self.retry_after: float | None = None
        self.head: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.received = 0
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None
        self.body = bytearray()  # the start of a refusal's body (after a status other than 101)
        self.watch = watch
        self.seen: set[bytes] = set()  # the ``watch`` patterns met in what was received
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.request:
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_result(0)
        if not self.closed.done():
            self.closed.set_result(None)
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    @property
    def open(self) -> bool:
        """Whether the connection is up (upgraded or not)."""
        return not self.closed.done()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        for pattern in self.watch:
            if pattern not in self.seen and pattern in data:
                self.seen.add(pattern)
        if self._buf:
            data, self._buf = self._buf + data, b""
        if not self.head.done():
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buf = data
                return
            head = data[:end].decode("latin-1")
            parts = head.split(" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "retry-after":
                    with contextlib.suppress(ValueError):
                        self.retry_after = float(value.strip())
            self.head.set_result(self.status)
            if self.status != 101:
                self.body += data[end + 4 : end + 1028]
                return
            if not self.read:
                assert self.transport is not None
                self.transport.pause_reading()
                return
            data = data[end + 4 :]
        if self.status == 101:
            self._frames(data)
        elif len(self.body) < 1024:
            self.body += data[: 1024 - len(self.body)]

    def _frames(self, data: bytes) -> None:
        """Walk complete frames: answer pings, note a close; keep an incomplete tail."""
        n, i = len(data), 0
        while n - i >= 2:
            length, head = data[i + 1] & 0x7F, 2
            if length == 126:
                if n - i < 4:
                    break
                length, head = int.from_bytes(data[i + 2 : i + 4], "big"), 4
            elif length == 127:
                if n - i < 10:
                    break
                length, head = int.from_bytes(data[i + 2 : i + 10], "big"), 10
            if i + head + length > n:
                break
            opcode = data[i] & 0x0F
            if opcode in (PING, CLOSE):
                self._control(opcode, data[i + head : i + head + length])
            i += head + length
        if i < n:
            self._buf = data[i:]

    def _control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == PING:
            self.transport.write(client_frame(PONG, payload))
            return
        self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        self.transport.write(client_frame(CLOSE, payload[:2]))
        self.transport.close()
        self.writable.set()  # a writer waiting for the buffer to drain looks at the close instead

    def send(self, data: bytes) -> None:
        """Write ``data`` if the connection is up."""
        if self.transport is not None and self.open:
            self.transport.write(data)

    def abort(self) -> None:
        """Drop the connection at once."""
        if self.transport is not None:
            self.transport.abort()


async def connect(
    port: int,
    src: str,
    request: bytes,
    read: bool = True,
    rcvbuf: int | None = None,
    within: float = 10.0,
    watch: tuple[bytes, ...] = (),
) -> Conn:
    """Open a connection from ``src`` and wait (``within`` s) for the status of ``request``'s answer
    (0: closed or timed out before one; none awaited when ``request`` is empty). A non-101 one is closed."""
    loop = asyncio.get_running_loop()
    conn: Conn | None = None
    try:
        async with asyncio.timeout(within):
            sock = await tcp(port, src, rcvbuf if not read else None)
            _, conn = await loop.create_connection(lambda: Conn(request, read, watch), sock=sock)
            if request:
                await conn.head
    except BaseException:
        if conn is not None:
            conn.abort()
        raise
    if request and conn.status != 101:
        conn.abort()
    return conn


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read one HTTP response (status, lower-case headers) and its ``Content-Length`` body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)
    return status, headers


_CODE = re.compile(rb'"code":"(\w+)"')


def refusal(conn: Conn) -> str:
    """How a handshake ended, for counting: ``101``, ``503 full`` (``--max-connections``), ``429 ip_limit``,
    ``0`` (closed or timed out without an answer), ..."""
    if conn.status in (0, 101):
        return str(conn.status)
    if b"on this server" in conn.body:
        return f"{conn.status} full"
    m = _CODE.search(bytes(conn.body))
    return f"{conn.status} {m.group(1).decode()}" if m else str(conn.status)


@dataclass
class Job:
    """What one attacker process does: ``n`` connections (or clients) of ``attack`` from ``addrs``
    (slot ``i`` uses ``addrs[i % len(addrs)]``) against ``127.0.0.1:port`` for ``seconds``."""

    attack: str
    port: int
    addrs: list[str]
    n: int = 0
    seconds: float = 10.0
    within: float = 60.0  # fd attacks: how long the connections may take to open before the hold
    idle: int = 0  # fd attacks: idle TCP connections opened after the WebSockets; churn: slow readers
    symbols: list[str] = field(default_factory=list)
    size: int = 0  # attack-specific: ping ids' bytes, symbols per connection, ...
    seed: int = 0


class Tally:
    """Counts and samples of one attacker process (merged by the orchestrator)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, Counter[float]] = {}

    def add(self, key: str, n: int = 1) -> None:
        """Count ``n`` more ``key``."""
        self.counts[key] += n

    def sample(self, key: str, value: float) -> None:
        """Count one value of ``key`` (a lifetime, a delay) in a histogram of tenths of a second."""
        self.samples.setdefault(key, Counter())[round(value, 1)] += 1

    def as_json(self) -> dict[str, Any]:
        """The tally as one JSON-able dict (histograms as [[value, count], ...])."""
        return {
            "counts": dict(self.counts),
            "samples": {k: sorted(h.items()) for k, h in self.samples.items()},
        }


def deadline(seconds: float) -> float:
    """The loop time ``seconds`` from now."""
    return asyncio.get_running_loop().time() + seconds


def left(until: float) -> float:
    """Seconds from now to the loop time ``until`` (negative once past)."""
    return until - asyncio.get_running_loop().time()
