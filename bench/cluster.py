"""Redis Cluster figures: publish throughput through sharded pub/sub, and the load of each shard, 1 vs 3 masters.

For each ``--masters`` count, starts its own cluster of ``redis-server`` processes on loopback (no replicas,
``tests/support/rediscluster.py``), one ``ticker feed`` (simulated market, ``--symbols`` × ``--rate``) and two
``ticker serve --broker redis+cluster://...`` edge nodes, each with one WebSocket client wanting every symbol (so
each edge subscribes to every channel), then measures for ``--seconds`` after a warm-up:

- messages/s and quote updates/s each edge received through Redis (``ticker_broker_messages_total``,
  ``ticker_hub_updates_total``) and its broker lag (publish → receipt; mean and p99 bucket);
- per master: script calls/s (``EVALSHA``: one per bucket with changes per publish window), ``SPUBLISH``/s
  (messages published on that shard), the shard channels it holds, and its CPU share;
- the quotes/s the publisher's feed produced, the messages/s it published, and the CPU share of the publisher
  and of each edge node.

    .venv/bin/python -m bench.cluster --symbols 500 --rate 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from websockets.asyncio.client import connect

from bench.procs import cpu_seconds
from bench.redis_capacity import delta, histogram_stats
from tests.support.rediscluster import ClusterNodeProcess, LocalCluster, cluster_edge, cluster_feed
from tests.support.serverproc import ServerProcess, scrape

COMMANDS = ("evalsha", "spublish")


def command_calls(node: ClusterNodeProcess) -> dict[str, int]:
    """Calls so far of :data:`COMMANDS` on ``node`` (``INFO commandstats``, commands run by scripts included)."""
    stats = node.command("INFO", "commandstats")
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in COMMANDS}


async def client(url: str, symbols: list[str], until: float) -> None:
    """A WebSocket client wanting every symbol, reading until ``until`` (monotonic)."""
    async with connect(url, max_size=None) as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "symbols": symbols}).decode())
        while (left := until - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break


async def measure(masters: int, args: argparse.Namespace) -> dict[str, Any]:
    symbols = [f"S{i:04d}" for i in range(args.symbols)]
    with LocalCluster(masters=masters, replicas=0) as cluster:
        feed = cluster_feed(
            cluster, "--symbols", ",".join(symbols), "--metrics-port", "0", "--log-level", "warning"
        )
        feed.args[feed.args.index("--sim-rate") + 1] = str(args.rate)
        with feed as pub:
            edges: list[ServerProcess] = []
            try:
                edges = [cluster_edge(cluster, "--log-level", "warning").start() for _ in range(2)]
                warm = time.monotonic() + args.warmup
                until = warm + args.seconds
                readers = [asyncio.create_task(client(e.ws_url, symbols, until)) for e in edges]
                await asyncio.sleep(
                    warm - time.monotonic()
                )  # the warm-up: the window measured starts after it
                nodes = cluster.live()
                channels = [len(n.command("PUBSUB", "SHARDCHANNELS")) for n in nodes]
                before = [scrape(e.url) for e in edges]
                pub_url = f"http://127.0.0.1:{pub.metrics_port}"
                pub0 = scrape(pub_url)
                calls0 = [command_calls(n) for n in nodes]
                pids = {"publisher": pub.proc, **{f"edge{i}": e.proc for i, e in enumerate(edges)}}
                cpu0 = {k: cpu_seconds([p.pid]) for k, p in pids.items() if p is not None}
                rcpu0 = [cpu_seconds([n.proc.pid]) for n in nodes if n.proc is not None]
                t0 = time.monotonic()
                await asyncio.gather(*readers)
                elapsed = time.monotonic() - t0
                after = [scrape(e.url) for e in edges]
                pub1 = scrape(pub_url)
                calls1 = [command_calls(n) for n in nodes]
                cpu = {
                    k: (cpu_seconds([p.pid]) - cpu0[k]) / elapsed for k, p in pids.items() if p is not None
                }
                rcpu = [
                    (cpu_seconds([n.proc.pid]) - c) / elapsed
                    for n, c in zip(nodes, rcpu0, strict=True)
                    if n.proc
                ]
            finally:
                for e in edges:
                    e.stop()
    per_edge = []
    for i, (a, b) in enumerate(zip(after, before, strict=True)):
        mean, p99 = histogram_stats(a, "ticker_broker_lag_seconds")
        per_edge.append(
            {
                "messages_per_s": round(delta(a, b, "ticker_broker_messages_total") / elapsed),
                "quotes_per_s": round(delta(a, b, "ticker_hub_updates_total") / elapsed),
                "cpu": round(cpu[f"edge{i}"], 2),
                "lag_mean_ms": round(mean * 1000, 1),
                "lag_p99_ms_le": round(p99 * 1000, 1),
            }
        )
    shards = [
        {
            "evalsha_per_s": round((c1["evalsha"] - c0["evalsha"]) / elapsed),
            "spublish_per_s": round((c1["spublish"] - c0["spublish"]) / elapsed),
            "shard_channels": ch,
            "cpu": round(rc, 3),
        }
        for c0, c1, ch, rc in zip(calls0, calls1, channels, rcpu, strict=True)
    ]
    return {
        "masters": masters,
        "symbols": args.symbols,
        "offered_quotes_per_s": round(args.symbols * args.rate),
        "seconds": round(elapsed, 1),
        "publisher": {
            "quotes_per_s": round(delta(pub1, pub0, 'ticker_feed_updates_total{feed="simulated"}') / elapsed),
            "messages_per_s": round(delta(pub1, pub0, "ticker_broker_messages_total") / elapsed),
            "cpu": round(cpu["publisher"], 2),
        },
        "edges": per_edge,
        "shards": shards,
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [await measure(m, args) for m in args.masters]


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=500, help="symbols carried (500)")
    p.add_argument("--rate", type=float, default=20.0, help="simulated ticks per second per symbol (20)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds (10)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (3)")
    p.add_argument("--masters", type=int, nargs="+", default=[1, 3], help="cluster sizes to compare (1 3)")
    args = p.parse_args()
    print(orjson.dumps(asyncio.run(run(args)), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
