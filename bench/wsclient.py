"""A minimal WebSocket subscriber as an asyncio Protocol, built to cost the load generator little.

It does the RFC 6455 client handshake, sends masked text frames, answers pings, and reads the
server's unmasked frames chunk by chunk: a short Python loop only walks the frame headers (to
find control frames and where the last complete frame ends); counting quotes frames, updates
(``"s":`` keys) and acknowledgements is done by ``bytes.count`` over the whole chunk, and
tick→client latency is sampled from a few ``"t":`` values per chunk, weighted so that each
update counts once. Per-frame Python work stays at a few integer operations.

A connection may present a token (``Authorization: Bearer`` on the upgrade, for ``--auth jwt``); a
*delayed* one (its token makes its symbols delayed) has its updates also counted apart and its
latency, about the server's ``--delay``, kept in a histogram of its own.

A connection may also send ``subscribe_bars`` requests right after its ``subscribe``: it is then
acknowledged once it has ``subscribed`` and a ``bars`` reply for each, and its ``bar`` messages (one per
frame) are counted apart from the quote updates (their ``"s":`` is taken off the updates, and their
bar's ``"t":``, the bar's start, is never taken for a quote's in the latency samples).

Every byte received is counted (``wire_bytes``: frames with their headers, as read from the socket), so
runs with and without changed-fields deltas compare by the bytes on the wire; a delta entry (no ``"t":``
when its time did not change) still counts as one update by its ``"s":``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from tests.support.wsframes import client_frame, upgrade_request

QUOTES = b'{"type":"quotes"'
SNAPSHOT = b'"type":"snapshot"'
SUBSCRIBED = b'"type":"subscribed"'
ERROR = b'"type":"error"'
BAR = b'{"type":"bar","s":'  # a live bar message (one per frame); not the ``bars`` reply below
BARS_REPLY = b'{"type":"bars","s":'
T_KEY = b'"t":'
LATENCY_SAMPLES = 8  # "t" values sampled per chunk at most


class Stats:
    """Counters of one load-generator process over the current window."""

    def __init__(self) -> None:
        self.reset()
        self.subscribed = 0
        self.expected = 0  # acknowledgements awaited
        self.all_acked = asyncio.Event()
        self.connect_failed = 0
        self.stopping = False

    def reset(self) -> None:
        """Zero the window's counters."""
        self.frames = 0
        self.updates = 0
        self.bytes = 0  # of the chunks that held quotes (or bars)
        self.wire_bytes = 0  # every byte received (WebSocket frames, headers included)
        self.snapshots = 0
        self.server_errors = 0
        self.disconnects = 0
        self.latency: dict[int, float] = {}
        self.delayed_updates = 0  # updates received by delayed connections (also in ``updates``)
        self.delayed_latency: dict[int, float] = {}  # theirs, apart from ``latency``
        self.bars = 0  # ``bar`` messages (not in ``updates`` or ``frames``)


def _quote_t(data: bytes, start: int, end: int) -> int:
    """Index of the next quote's ``"t":`` in ``data[start:end]`` (-1: none); a bar's ``"t":`` (its start,
    first in its object, so right after ``{``) is skipped."""
    find = data.find
    i = find(T_KEY, start, end)
    while i > 0 and data[i - 1] == 0x7B:  # "{"
        i = find(T_KEY, i + 4, end)
    return i


def sample_latency(data: bytes, end: int, updates: int, hist: dict[int, float]) -> None:
    """Add ``updates`` worth of tick→client latency (ms) to ``hist`` from quotes' ``"t":`` values in ``data[:end]``."""
    now = int(time.time() * 1000)
    samples = min(updates, LATENCY_SAMPLES)
    weight = updates / samples
    stride = end // samples
    for k in range(samples):
        i = _quote_t(data, k * stride, end)
        if i < 0:
            i = _quote_t(data, 0, end)
            if i < 0:
                return
        start = i + 4
        stop = start
        while 48 <= data[stop] <= 57:
            stop += 1
        x = now - int(data[start:stop])
        hist[x] = hist.get(x, 0.0) + weight


class Subscriber(asyncio.Protocol):
    """One connection: handshake, then subscribe on request, then count what arrives."""

    def __init__(
        self,
        stats: Stats,
        host: str,
        path: str,
        request: bytes,
        token: str | None = None,
        delayed: bool = False,
        bar_requests: tuple[bytes, ...] = (),
    ) -> None:
        self.stats = stats
        self.request = request
        self.bar_requests = bar_requests
        self.bar_replies = 0  # ``bars`` replies received (acknowledged once all have come)
        self.handshake = upgrade_request(host, path)
        if token is not None:
            self.handshake = self.handshake[:-2] + f"Authorization: Bearer {token}\r\n\r\n".encode()
        self.delayed = delayed
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.acked = False
        self.quotes_acked = False
        self.closed = False
        self.buf = b""

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        transport = self.transport
        transport.write(self.handshake)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed during the handshake"))
        elif not self.stats.stopping and not self.closed:
            self.stats.disconnects += 1
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.stats.wire_bytes += len(data)
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            head_end = data.find(b"\r\n\r\n")
            if head_end < 0:
                self.buf = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self.open.set_exception(ConnectionError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            self.open.set_result(None)
            data = data[head_end + 4 :]
            if not data:
                return
        self.frames(data)

    # -- frames ------------------------------------------------------------------------------
    def subscribe(self) -> None:
        """Send this connection's subscribe request, then its ``subscribe_bars`` requests (one write)."""
        if self.transport is not None and not self.closed:
            frames = [client_frame(0x1, r) for r in (self.request, *self.bar_requests)]
            self.transport.write(b"".join(frames))

    def frames(self, data: bytes) -> None:
        """Walk complete frames in ``data``; count them in bulk; keep an incomplete tail for later."""
        n = len(data)
        i = 0
        special = False
        while n - i >= 2:
            b0 = data[i]
            length = data[i + 1] & 0x7F
            head = 2
            if length == 126:
                if n - i < 4:
                    break
                length = (data[i + 2] << 8) | data[i + 3]
                head = 4
            elif length == 127:
                if n - i < 10:
                    break
                length = int.from_bytes(data[i + 2 : i + 10], "big")
                head = 10
            end = i + head + length
            if end > n:
                break
            if b0 & 0x08:  # control frame: ping, pong or close
                special = True
                self.control(b0 & 0x0F, data[i + head : end])
            i = end
        if i < n:
            self.buf = data[i:]
        if i == 0:
            return
        st = self.stats
        count = data.count
        quotes = count(QUOTES, 0, i)
        bars = count(BAR, 0, i) if self.bar_requests else 0
        if bars:
            st.bars += bars
            if not quotes:
                st.bytes += i
        if quotes:
            updates = count(b'"s":', 0, i)
            if self.bar_requests:  # a bar message, or a ``bars`` reply, has an "s" of its own
                updates -= bars + (0 if self.acked else count(BARS_REPLY, 0, i))
            st.frames += quotes
            st.updates += updates
            st.bytes += i
            if self.delayed:
                st.delayed_updates += updates
                sample_latency(data, i, updates, st.delayed_latency)
            else:
                sample_latency(data, i, updates, st.latency)
        if quotes == 0 or special or not self.acked:
            self.rare(data[:i])

    def rare(self, data: bytes) -> None:
        """Acknowledgements, snapshots and errors (only looked for when they can be there)."""
        st = self.stats
        if not self.acked:
            if not self.quotes_acked and SUBSCRIBED in data:
                self.quotes_acked = True
            if self.bar_requests:
                self.bar_replies += data.count(BARS_REPLY)
            if self.quotes_acked and self.bar_replies >= len(self.bar_requests):
                self.acked = True
                st.subscribed += 1
                if st.subscribed >= st.expected:
                    st.all_acked.set()
        st.snapshots += data.count(SNAPSHOT)
        st.server_errors += data.count(ERROR)

    def control(self, opcode: int, payload: bytes) -> None:
        """Answer a ping, note a close."""
        assert self.transport is not None
        if opcode == 0x9:
            self.transport.write(client_frame(0xA, payload))
        elif opcode == 0x8:
            if not self.stats.stopping and not self.closed:
                self.stats.disconnects += 1
            self.closed = True
            self.transport.write(client_frame(0x8, payload[:2]))
            self.transport.close()

    def disconnect(self) -> None:
        """Drop the connection without a closing handshake (end of run)."""
        if self.transport is not None:
            self.transport.abort()


async def connect(
    stats: Stats,
    host: str,
    port: int,
    path: str,
    request: bytes,
    token: str | None = None,
    delayed: bool = False,
    bar_requests: tuple[bytes, ...] = (),
) -> Subscriber:
    """Open one connection (presenting ``token`` if given) and complete its handshake (callers bound the time)."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: Subscriber(stats, f"{host}:{port}", path, request, token, delayed, bar_requests), host, port
    )
    await proto.open
    return proto


def as_event(stats: Stats) -> dict[str, Any]:
    """The window's counters as report fields."""
    return {
        "frames": stats.frames,
        "updates": stats.updates,
        "bytes": stats.bytes,
        "wire_bytes": stats.wire_bytes,
        "snapshots": stats.snapshots,
        "server_errors": stats.server_errors,
        "disconnects": stats.disconnects,
        "latency_ms": sorted(stats.latency.items()),
        "delayed_updates": stats.delayed_updates,
        "delayed_latency_ms": sorted(stats.delayed_latency.items()),
        "bars": stats.bars,
    }
