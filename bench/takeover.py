"""Takeover time of the publisher lease: how long after the active ``ticker feed`` dies a standby publishes.

Starts its own redis-server and two ``ticker feed`` publishers (simulated market), then ``--kills`` times: waits a
random part of a second (so the kill falls anywhere between two renewals), SIGKILLs the active publisher (the one
the lease names), and measures from the kill

- to the lease naming the standby (polled every 10 ms): the lease TTL less the time since the last renewal, plus
  the standby's poll;
- to the standby's first quote through Redis (a ``PSUBSCRIBE`` of every quote channel, with the epoch of each
  message): the above, plus starting its feeds and its first publish window. This is what clients wait;

then starts a fresh standby in place of the dead one. Prints median and max of both as JSON.

    .venv/bin/python bench/takeover.py --kills 10
    .venv/bin/python bench/takeover.py --kills 10 --stop   # SIGTERM instead: the handover of a clean stop
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.leasekit import QuoteRecorder, lease_holder, never_interleaved  # noqa: E402
from tests.support.redisproc import FeedProcess, RedisProcess, publisher  # noqa: E402


async def holder_changes(r: RedisProcess, old: str, within: float) -> float:
    """Monotonic time at which the lease first names another holder than ``old``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        holder = await asyncio.to_thread(lease_holder, r)
        if holder is not None and holder != old:
            return time.monotonic()
        await asyncio.sleep(0.01)
    raise TimeoutError("no standby took the lease")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--symbols", "AAPL,MSFT", "--lease-ttl", str(args.ttl), "--log-level", "warning"]
    with RedisProcess() as r:
        async with QuoteRecorder(r.url) as recorder:
            pubs: list[FeedProcess] = []
            lease_s: list[float] = []
            quotes_s: list[float] = []
            try:
                for _ in range(2):
                    pubs.append(await asyncio.to_thread(publisher(r, *extra).start))
                for _ in range(args.kills):
                    old = await asyncio.to_thread(lease_holder, r)
                    assert old is not None
                    epoch = int(old.rsplit("#", 1)[1])
                    [active] = [p for p in pubs if p.proc is not None and f":{p.proc.pid}:" in old]
                    await recorder.wait_epoch(epoch, 10.0)  # it publishes
                    await asyncio.sleep(random.uniform(1.0, 2.0))  # the scenario: a kill at any phase
                    t0 = time.monotonic()
                    if args.stop:
                        active.signal(signal.SIGTERM)
                    else:
                        active.signal(signal.SIGKILL)
                    lease_s.append(await holder_changes(r, old, args.ttl + 10.0) - t0)
                    quotes_s.append((await recorder.wait_epoch(epoch + 1, args.ttl + 10.0)).at - t0)
                    await asyncio.to_thread(active.stop)
                    pubs.remove(active)
                    pubs.append(await asyncio.to_thread(publisher(r, *extra).start))  # a fresh standby
                never_interleaved(recorder, [])
            finally:
                for p in pubs:
                    await asyncio.to_thread(p.stop)

    def stats(xs: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(xs), 3), "max": round(max(xs), 3), "min": round(min(xs), 3)}

    return {
        "signal": "SIGTERM" if args.stop else "SIGKILL",
        "lease_ttl_s": args.ttl,
        "takeovers": args.kills,
        "to_lease_s": stats(lease_s),
        "to_first_quote_s": stats(quotes_s),
        "bound_s": args.ttl + 1.0,
        "epochs_in_order": recorder.epochs() == sorted(set(recorder.epochs())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=10, help="takeovers measured (10)")
    p.add_argument("--ttl", type=float, default=3.0, help="--lease-ttl of the publishers (3)")
    p.add_argument("--stop", action="store_true", help="SIGTERM the active one instead of SIGKILL")
    args = p.parse_args()
    print(orjson.dumps(asyncio.run(run(args)), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
