"""``--max-buffered-bytes``: many clients that never read are closed (1013) once their unsent bytes together
pass the budget, long before their own ``--slow-bytes`` bound or ``--slow-timeout``; memory stays bounded
and a reader beside them keeps getting quotes."""

from __future__ import annotations

import asyncio
import socket

from websockets.asyncio.client import connect

from tests.support.serverproc import ServerProcess, scrape_async
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv, recv_until, stalled_client

SYMBOLS = [f"S{i}" for i in range(10)]  # frames under 2 KiB: Tornado copies each into the stream's buffer
STALLED = 60
SHED = 20  # closed by the budget before the test looks at memory (all would be, given the time)
SLOW_BYTES = 2 << 20  # a stalled reader alone would hold 2 MiB before being conflated
BUDGET = 4 << 20


async def test_non_readers_past_the_budget_are_closed_1013_memory_stays_bounded_a_reader_keeps_up():
    args = ["--symbols", ",".join(SYMBOLS), "--sim-rate", "300", "--flush-ms", "5"]
    args += ["--slow-bytes", str(SLOW_BYTES), "--slow-timeout", "600", "--max-buffered-bytes", str(BUDGET)]
    args += ["--log-level", "warning"]
    with ServerProcess(args) as srv:
        async with connect(srv.ws_url + "?symbols=" + ",".join(SYMBOLS), ping_interval=None) as canary:
            await recv(canary)
            rss_start = srv.rss_kib()
            stalled: list[socket.socket] = []
            for _ in range(STALLED):
                stalled.append(await asyncio.to_thread(stalled_client, srv.port, SYMBOLS))
            peak_buffered = 0.0
            quotes_seen = 0

            async def shed_enough() -> bool:
                """Reads the canary on (it must keep getting quotes); True once SHED stalled readers are closed."""
                nonlocal peak_buffered, quotes_seen
                msg = await recv_until(canary, lambda m: m["type"] == "quotes")
                quotes_seen += len(msg["data"])
                m = await scrape_async(srv.url)
                peak_buffered = max(peak_buffered, m["ticker_buffered_bytes"])
                return m.get("ticker_buffer_budget_disconnects_total", 0) >= SHED

            await eventually(
                shed_enough, 90.0, f"{SHED} stalled readers to be closed by the budget", interval=0.05
            )
            m = await scrape_async(srv.url)
            shed = m["ticker_buffer_budget_disconnects_total"]
            assert (
                m["ticker_slow_consumer_disconnects_total"] == shed
            )  # none by --slow-bytes or --slow-timeout
            # Sampled between flushes: the total may pass the budget by what one flush and one sweep add.
            assert peak_buffered < 2 * BUDGET, peak_buffered
            key = 'ticker_connections_closed_total{reason="slow_consumer",transport="ws"}'

            async def counted_closed() -> bool:  # Tornado drops a peer that does not answer Close in 5 s
                return (await scrape_async(srv.url)).get(key, 0) >= shed

            await eventually(counted_closed, 20.0, "the closes to be counted as slow_consumer", interval=0.1)
            # Readers that each could hold 2 MiB held about 4 MiB between them.
            grown = srv.rss_kib() - rss_start
            assert grown < 48_000, f"RSS grew {grown} KiB"
            # The canary is still served, and was all along.
            before = quotes_seen
            for _ in range(5):
                msg = await recv_until(canary, lambda m: m["type"] == "quotes")
                quotes_seen += len(msg["data"])
            assert quotes_seen > before and before > 0
        # A stalled reader's socket ends once drained: the server really closed it.
        sock = stalled[0]
        sock.settimeout(timeout(10))
        while sock.recv(1 << 16):
            pass
        for s in stalled:
            s.close()
