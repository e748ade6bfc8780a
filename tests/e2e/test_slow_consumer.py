"""A client that stops reading is conflated, then closed, while everyone else stays on time."""

from __future__ import annotations

import asyncio
import time

from websockets.asyncio.client import connect

from tests.support.serverproc import ServerProcess, scrape_async
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv, stalled_client
from tests.support.wsframes import client_frame

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
            async with asyncio.timeout(timeout(40)):  # read on until the stalled reader is disconnected
                while True:
                    msg = await recv(good, 5)
                    now = time.monotonic()
                    worst_gap = max(worst_gap, now - last)
                    last = now
                    if msg["type"] == "quotes":
                        entries += len(msg["data"])
                        worst_lag = max(worst_lag, time.time() - min(e["t"] for e in msg["data"]) / 1000)
                    if entries % 2000 < 60:
                        m = await scrape_async(srv.url)
                        if m["ticker_slow_consumer_disconnects_total"] >= 1:
                            break
            metrics = await scrape_async(srv.url)
            # A counter: once the stalled reader was conflated, it stays above 0.
            assert metrics["ticker_updates_conflated_total"] > 0, "the stalled reader was never conflated"
            assert metrics["ticker_slow_consumer_disconnects_total"] == 1
            # Tornado waits up to 5 s for the peer to answer the close before dropping the socket.
            key = 'ticker_connections_closed_total{reason="slow_consumer",transport="ws"}'

            async def counted_closed() -> bool:
                return (await scrape_async(srv.url)).get(key) == 1

            await eventually(counted_closed, 10.0, "the slow consumer's close to be counted", interval=0.1)
            # The good client kept getting fresh updates the whole time.
            assert entries > 5000
            assert worst_gap < 1.0, worst_gap
            assert worst_lag < 1.0, worst_lag
            # Memory stayed bounded: nothing queued for the stalled reader beyond the bound.
            assert srv.rss_kib() - rss_start < 30_000
        # The server really closed the stalled socket: draining it ends in EOF.
        slow.settimeout(timeout(10))
        total = 0
        while chunk := slow.recv(1 << 16):
            total += len(chunk)
        slow.close()
        assert total > 65536


async def test_peer_that_sends_but_never_reads_is_closed_and_memory_stays_bounded():
    args = ["--slow-bytes", "65536", "--slow-timeout", "1", "--rate-limit", "2000", "--log-level", "warning"]
    with ServerProcess(args) as srv:
        rss_start = srv.rss_kib()
        sock = await asyncio.to_thread(stalled_client, srv.port, [])  # no quotes: only replies queue
        # 50 pings with the largest id echoed (256 bytes of JSON): 50 pongs of about 280 bytes the peer never reads
        frame = client_frame(0x1, b'{"op":"ping","id":"' + b"x" * 250 + b'"}') * 50
        sock.settimeout(0.5)

        async def ping_until_closed() -> bool:
            """50 more pings; True once the server closed the peer."""
            try:
                sock.sendall(frame)
            except OSError:
                return True
            return (await scrape_async(srv.url))["ticker_slow_consumer_disconnects_total"] >= 1

        # About 1,500 pings a second (under --rate-limit 2000), until the server gives up on the peer.
        await eventually(ping_until_closed, 30.0, "a peer that never reads its replies to be closed", 1 / 30)
        sock.close()
        assert srv.rss_kib() - rss_start < 30_000
