"""Capacity of the Redis deployment: publish throughput through Redis, updates/s per edge node.

Starts its own redis-server (ephemeral port, no persistence), one ``ticker feed`` publisher
(simulated market) and two ``ticker serve --broker redis://... --feed none`` edge nodes with a
few WebSocket clients each, then measures for ``--seconds``:

- quotes/s and messages/s the publisher gets through Redis (counted by a Redis subscriber),
- per node: quote updates/s into its hub, updates/s and frames/s it sent to its clients (and how
  many the clients, all in this one benchmark process, managed to read), CPU share,
- ``ticker_broker_lag_seconds`` (publish → receipt at the node) mean and p99 bucket.

    .venv/bin/python bench/redis_capacity.py --symbols 500 --rate 20 --clients 4 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import cpu_seconds  # noqa: E402
from tests.support.redisproc import FeedProcess, RedisProcess  # noqa: E402
from tests.support.serverproc import ServerProcess, scrape  # noqa: E402


def count_redis(r: RedisProcess, stop: threading.Event, out: dict[str, int]) -> None:
    """Count messages and quotes published on every quote channel."""
    ps = r.client().pubsub(ignore_subscribe_messages=True)
    ps.psubscribe("ticker:q:*")
    while not stop.is_set():
        msg = ps.get_message(timeout=0.2)
        if msg and msg["type"] == "pmessage":
            out["messages"] += 1
            out["quotes"] += len(orjson.loads(msg["data"])["q"])
    ps.close()


async def client(url: str, symbols: list[str], until: float, out: dict[str, int]) -> None:
    """One WebSocket client subscribed to ``symbols``, counting frames and Q entries."""
    async with connect(url, max_size=None) as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "symbols": symbols}).decode())
        while (left := until - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            msg = orjson.loads(raw)
            if msg["type"] == "quotes":
                out["frames"] += 1
                out["updates"] += len(msg["data"])


def histogram_stats(m: dict[str, float], name: str) -> tuple[float, float]:
    """(mean, p99 upper bound) of a Prometheus histogram in scraped samples."""
    count = m.get(f"{name}_count", 0.0)
    if not count:
        return 0.0, 0.0
    mean = m[f"{name}_sum"] / count
    buckets = sorted(
        (float(k.split('le="')[1].rstrip('"}')), v)
        for k, v in m.items()
        if k.startswith(f"{name}_bucket") and "+Inf" not in k
    )
    p99 = next((le for le, v in buckets if v >= 0.99 * count), float("inf"))
    return mean, p99


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    symbols = [f"S{i:04d}" for i in range(args.symbols)]
    with RedisProcess() as r:
        feed_args = ["--broker", r.url, "--feed", "simulated", "--seed", "1", "--log-level", "warning"]
        feed_args += ["--sim-rate", str(args.rate), "--symbols", ",".join(symbols)]
        with FeedProcess(feed_args) as pub:
            nodes = [
                ServerProcess(["--broker", r.url, "--feed", "none", "--log-level", "warning"]).start()
                for _ in range(2)
            ]
            try:
                # Every client of a node wants every symbol; both nodes see the whole stream.
                stop = threading.Event()
                seen = {"messages": 0, "quotes": 0}
                counts = [{"frames": 0, "updates": 0} for _ in range(2 * args.clients)]
                warm = time.monotonic() + 2.0
                until = warm + args.seconds
                tasks = [
                    asyncio.create_task(client(nodes[i % 2].ws_url, symbols, until, counts[i]))
                    for i in range(2 * args.clients)
                ]
                await asyncio.sleep(warm - time.monotonic())
                for c in counts:
                    c["frames"] = c["updates"] = 0
                counter = threading.Thread(target=count_redis, args=(r, stop, seen))
                counter.start()
                before = [scrape(n.url) for n in nodes]
                assert pub.proc is not None and r.proc is not None
                pids = [pub.proc.pid, r.proc.pid] + [n.proc.pid for n in nodes if n.proc is not None]
                cpu0 = {pid: cpu_seconds([pid]) for pid in pids}
                t0 = time.monotonic()
                await asyncio.gather(*tasks)
                elapsed = time.monotonic() - t0
                stop.set()
                counter.join()
                after = [scrape(n.url) for n in nodes]
                cpu = {pid: (cpu_seconds([pid]) - c) / elapsed for pid, c in cpu0.items()}
            finally:
                for n in nodes:
                    n.stop()
        result: dict[str, Any] = {
            "symbols": args.symbols,
            "sim_rate": args.rate,
            "offered_quotes_per_s": args.symbols * args.rate,
            "clients_per_node": args.clients,
            "seconds": round(elapsed, 1),
            "redis_quotes_per_s": round(seen["quotes"] / elapsed),
            "redis_messages_per_s": round(seen["messages"] / elapsed),
            "publisher_cpu": round(cpu[pub.proc.pid], 2),
            "redis_cpu": round(cpu[r.proc.pid], 2),
            "nodes": [],
        }
        for i, n in enumerate(nodes):
            assert n.proc is not None
            mean, p99 = histogram_stats(after[i], "ticker_broker_lag_seconds")
            mine = counts[i::2]
            result["nodes"].append(
                {
                    "hub_updates_per_s": round(
                        delta(after[i], before[i], "ticker_hub_updates_total") / elapsed
                    ),
                    "sent_updates_per_s": round(
                        delta(after[i], before[i], "ticker_updates_sent_total") / elapsed
                    ),
                    "sent_frames_per_s": round(
                        delta(after[i], before[i], "ticker_frames_sent_total") / elapsed
                    ),
                    "conflated_per_s": round(
                        delta(after[i], before[i], "ticker_updates_conflated_total") / elapsed
                    ),
                    "clients_received_updates_per_s": round(sum(c["updates"] for c in mine) / elapsed),
                    "cpu": round(cpu[n.proc.pid], 2),
                    "broker_lag_mean_ms": round(mean * 1000, 2),
                    "broker_lag_p99_ms_le": round(p99 * 1000, 2),
                }
            )
        return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=500, help="symbols carried (500)")
    p.add_argument("--rate", type=float, default=20.0, help="simulated ticks per second per symbol (20)")
    p.add_argument(
        "--clients", type=int, default=4, help="WebSocket clients per node, each on every symbol (4)"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds after a 2 s warm-up (10)")
    args = p.parse_args()
    print(orjson.dumps(asyncio.run(run(args)), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
