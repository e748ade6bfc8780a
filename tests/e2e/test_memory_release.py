"""Never-reading clients cost little memory while they stay and leave little after they go (issue 17).

400 clients subscribe to 100 symbols and never read until each holds its ``--slow-bytes`` backlog, then
leave. Behind a backlog the frames are held by reference (``ticker/server/tornado_io.py``): the same bytes
for every client, so RSS grows far less than the unsent bytes (before: 89 MiB for about 50 MiB unsent,
each frame wrapped in objects of its own; now about 9 MiB), and what stays after they left is bounded
(before: about 38 MiB; now about 9). Only memory is asserted, never how fast it goes.
"""

from __future__ import annotations

import socket

from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import eventually_sync
from tests.support.wsclient import stalled_client

SYMBOLS = [f"S{i:03d}" for i in range(1, 101)]  # frames over 2 KiB: Tornado would wrap each in objects
CLIENTS = 400
RETAINED_KIB = 20 << 10  # what may stay after they left (the bars made meanwhile included)


def test_never_reading_clients_share_their_backlogs_and_leave_little_behind() -> None:
    args = ["--symbols", ",".join(SYMBOLS), "--sim-rate", "10", "--seed", "1", "--log-level", "warning"]
    args += ["--connect-rate", "1000", "--connect-burst", "1000", "--slow-timeout", "600"]
    with ServerProcess(args) as srv:
        eventually_sync(
            lambda: scrape(srv.url).get("ticker_hub_updates_total", 0) > 5_000,
            30,
            "the market to run a while",
        )
        baseline = srv.rss_kib()
        socks: list[socket.socket] = []
        try:
            for _ in range(CLIENTS):
                socks.append(stalled_client(srv.port, SYMBOLS))
            # most of them hold their backlog (the kernel's socket buffers filled first)
            eventually_sync(
                lambda: scrape(srv.url)["ticker_buffered_bytes"] > CLIENTS * 128 << 10,
                60,
                "the clients' backlogs to fill",
            )
            peak = srv.rss_kib()
            unsent_kib = scrape(srv.url)["ticker_buffered_bytes"] // 1024
            assert peak - baseline < unsent_kib // 2, (
                f"RSS grew {peak - baseline} KiB for {unsent_kib} KiB unsent: the backlogs are not shared"
            )
        finally:
            for s in socks:
                s.close()
        eventually_sync(lambda: scrape(srv.url)["ticker_buffered_bytes"] == 0, 30, "the backlogs to go")
        last: list[int] = []

        def released() -> bool:
            last.append(srv.rss_kib() - baseline)
            return last[-1] < RETAINED_KIB

        try:
            eventually_sync(released, 60, "RSS to come back near its baseline", interval=1.0)
        except AssertionError:
            raise AssertionError(
                f"RSS {baseline} KiB before, {peak} KiB with the clients, still {last[-1]} KiB above the "
                f"baseline after they left (bound {RETAINED_KIB} KiB)"
            ) from None
