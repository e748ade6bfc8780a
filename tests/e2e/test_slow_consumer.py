"""A client that stops reading is conflated, then closed, while everyone else stays on time."""

from __future__ import annotations

import asyncio
import os
import time

from websockets.asyncio.client import connect

from tests.support.serverproc import ServerProcess, scrape
from tests.support.wsclient import recv, stalled_client

SYMBOLS = [f"S{i}" for i in range(50)]


async def test_stalled_reader_is_conflated_then_closed_1013_others_unaffected():
    args = [
        "--symbols",
        ",".join(SYMBOLS),
        "--sim-rate",
        "200",
        "--flush-ms",
        "5",
        "--slow-bytes",
        "65536",
        "--slow-timeout",
        "2",
        "--log-level",
        "warning",
    ]
    with ServerProcess(args) as srv:
        async with connect(srv.ws_url + "?symbols=" + ",".join(SYMBOLS)) as good:
            await recv(good)
            rss_start = srv.rss_kib()
            slow = await asyncio.to_thread(stalled_client, srv.port, SYMBOLS)
            worst_lag = 0.0
            worst_gap = 0.0
            last = time.monotonic()
            entries = 0
            conflated_seen = False
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                msg = await recv(good, 5)
                now = time.monotonic()
                worst_gap = max(worst_gap, now - last)
                last = now
                if msg["type"] == "quotes":
                    entries += len(msg["data"])
                    worst_lag = max(worst_lag, time.time() - min(e["t"] for e in msg["data"]) / 1000)
                if entries % 2000 < 60:
                    m = await asyncio.to_thread(scrape, srv.url)
                    conflated_seen |= m["ticker_updates_conflated_total"] > 0
                    if m["ticker_slow_consumer_disconnects_total"] >= 1:
                        break
            metrics = await asyncio.to_thread(scrape, srv.url)
            assert conflated_seen, "the stalled reader was never conflated"
            assert metrics["ticker_slow_consumer_disconnects_total"] == 1
            # Tornado waits up to 5 s for the peer to answer the close before dropping the socket.
            key = 'ticker_connections_closed_total{reason="slow_consumer",transport="ws"}'
            for _ in range(100):
                metrics = await asyncio.to_thread(scrape, srv.url)
                if metrics.get(key) == 1:
                    break
                await asyncio.sleep(0.1)
            assert metrics.get(key) == 1
            # The good client kept getting fresh updates the whole time.
            assert entries > 5000
            assert worst_gap < 1.0, worst_gap
            assert worst_lag < 1.0, worst_lag
            # Memory stayed bounded: nothing queued for the stalled reader beyond the bound.
            assert srv.rss_kib() - rss_start < 30_000
        # The server really closed the stalled socket: draining it ends in EOF.
        slow.settimeout(10)
        total = 0
        while chunk := slow.recv(1 << 16):
            total += len(chunk)
        slow.close()
        assert total > 65536


def masked_text_frame(payload: bytes) -> bytes:
    """A client's (masked) WebSocket text frame."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_peer_that_sends_but_never_reads_is_closed_and_memory_stays_bounded():
    args = ["--slow-bytes", "65536", "--slow-timeout", "1", "--rate-limit", "40", "--log-level", "warning"]
    with ServerProcess(args) as srv:
        rss_start = srv.rss_kib()
        sock = await asyncio.to_thread(stalled_client, srv.port, [])  # no quotes: only replies queue
        frame = masked_text_frame(b'{"op":"ping","id":"' + b"x" * 30_000 + b'"}')
        sock.settimeout(0.5)
        closed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(frame)  # each ping makes a 30 KB pong the peer never reads
            except OSError:
                closed = True
            await asyncio.sleep(1 / 30)
            m = await asyncio.to_thread(scrape, srv.url)
            closed = closed or m["ticker_slow_consumer_disconnects_total"] >= 1
        sock.close()
        assert closed, "a peer that never reads its replies was never closed"
        assert srv.rss_kib() - rss_start < 30_000
