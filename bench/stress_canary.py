"""The stress suite's canary: one ordinary subscriber beside the attacks, in a process of its own.

``python -m bench.stress_canary --port P --symbols A,B,...`` subscribes (aiohttp, as a user's client
would) and reports once a second, as one JSON line on stdout: ``m`` (``time.monotonic()``, the same
clock in every process of the machine), ``n`` quotes frames, ``lat`` tick→client lag in ms (the
client's clock minus each entry's ``t``: {ms: count}), ``gap`` the longest time between two frames that
ended in that second, ``open`` the time since the last frame, ``dc`` disconnects. It reconnects at
once when the connection is lost. Pick symbols that tick often enough that a gap means a stall.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter

import aiohttp
import orjson


class Window:
    """What the canary saw since its last report."""

    def __init__(self) -> None:
        self.frames = 0
        self.lag: Counter[int] = Counter()
        self.gap = 0.0
        self.disconnects = 0


async def report(w: list[Window], last: list[float]) -> None:
    """Every second: print the window and start a new one."""
    while True:
        await asyncio.sleep(1.0)
        cur, w[0] = w[0], Window()
        now = time.monotonic()
        line = {
            "m": round(now, 3),
            "n": cur.frames,
            "lat": dict(cur.lag),
            "gap": round(cur.gap, 3),
            "open": round(now - last[0], 3) if last[0] else 0.0,
            "dc": cur.disconnects,
        }
        sys.stdout.write(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
        sys.stdout.flush()


async def receive(port: int, symbols: list[str], w: list[Window], last: list[float]) -> None:
    """Subscribe and note every quotes frame; reconnect at once when the connection is lost."""
    url = f"ws://127.0.0.1:{port}/ws"
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.ws_connect(url, heartbeat=None, autoping=True) as ws:
                    await ws.send_str(orjson.dumps({"op": "subscribe", "symbols": symbols}).decode())
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        now = time.monotonic()
                        data = orjson.loads(msg.data)
                        if data.get("type") != "quotes":
                            continue
                        wall_ms = time.time() * 1000
                        cur = w[0]
                        cur.frames += 1
                        for e in data["data"]:
                            cur.lag[max(0, int(wall_ms - e["t"]))] += 1
                        if last[0]:
                            cur.gap = max(cur.gap, now - last[0])
                        last[0] = now
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            w[0].disconnects += 1
            await asyncio.sleep(0.2)


async def main_async(port: int, symbols: list[str]) -> None:
    w = [Window()]
    last = [0.0]  # monotonic time of the last quotes frame (0: none yet)
    await asyncio.gather(report(w, last), receive(port, symbols, w, last))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--symbols", required=True)
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(main_async(args.port, args.symbols.split(",")))


if __name__ == "__main__":
    main()
