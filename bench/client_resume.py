"""How long the Python client takes to resume after its server restarts on the same port.

Run: ``.venv/bin/python bench/client_resume.py [ROUNDS]``. The time is dominated by the client's
reconnect backoff (0.5 s doubling to 30 s, full jitter) and by how long the new process takes to
start; it is a behaviour check, not a throughput number.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.serverproc import ServerProcess
from ticker.client import Event, EventKind, TickerClient

ARGS = ["--sim-rate", "20", "--log-level", "warning"]


async def main(rounds: int) -> None:
    srv = ServerProcess(ARGS).start()
    port = srv.port
    resumed = asyncio.Event()

    def on_event(ev: Event) -> None:
        if ev.kind is EventKind.RESUMED:
            resumed.set()

    listening_to_resumed: list[float] = []
    stop_to_resumed: list[float] = []
    try:
        async with TickerClient(srv.ws_url, ["AAPL", "MSFT"], on_event=on_event):
            for _ in range(rounds):
                resumed.clear()
                t0 = time.monotonic()
                await asyncio.to_thread(srv.stop)
                srv = await asyncio.to_thread(ServerProcess(ARGS, port=port).start)
                t1 = time.monotonic()
                await asyncio.wait_for(resumed.wait(), 60)
                t2 = time.monotonic()
                listening_to_resumed.append(t2 - t1)
                stop_to_resumed.append(t2 - t0)
    finally:
        srv.stop()
    for name, xs in (
        ("new server listening -> resumed", listening_to_resumed),
        ("stop -> resumed", stop_to_resumed),
    ):
        print(
            f"{name}: median {statistics.median(xs):.3f} s, max {max(xs):.3f} s ({[round(x, 3) for x in xs]})"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
