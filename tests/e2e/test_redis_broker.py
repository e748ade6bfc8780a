"""The Redis broker end to end: one publisher, edge nodes, a real redis-server, real WebSocket clients."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.support.redisproc import RedisProcess, node, publisher
from tests.support.timing import eventually, timeout
from tests.support.wsclient import Inbox, recv, recv_until

SYMS = "AAPL,MSFT,IBM"  # IBM is published only because a client demands it (the publisher carries AAPL,MSFT)


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


def by_key(entries: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[Any, ...]]:
    return {(e["s"], e["t"]): (e["p"], e.get("b"), e.get("a"), e.get("v"), e.get("c")) for e in entries}


async def test_two_nodes_get_the_same_prices_and_snapshots(redis_srv: RedisProcess):
    with publisher(redis_srv, "--symbols", "AAPL,MSFT"), node(redis_srv) as a, node(redis_srv) as b:
        async with connect(a.ws_url + "?symbols=" + SYMS) as wa, connect(b.ws_url + "?symbols=" + SYMS) as wb:
            ra, rb = Inbox(wa), Inbox(wb)

            def both() -> tuple[dict[tuple[str, int], tuple[Any, ...]], ...] | None:
                ea, eb = by_key(ra.entries("quotes")), by_key(rb.entries("quotes"))
                common = ea.keys() & eb.keys()
                enough = len(common) > 40 and len(common) >= 0.8 * max(len(ea), len(eb))
                return (ea, eb) if enough else None

            ea, eb = await eventually(both, 10.0, "both nodes to deliver more than 40 common ticks")
            assert {s for s, _ in ea} == {s for s, _ in eb} == {"AAPL", "MSFT", "IBM"}
            common = ea.keys() & eb.keys()
            for k in common:  # the same feed tick carries the same prices on both nodes
                assert ea[k] == eb[k], k
            # A later client on each node gets a snapshot of every symbol at once.
            async with connect(a.ws_url) as la, connect(b.ws_url) as lb:
                snaps = []
                for ws in (la, lb):
                    t = time.monotonic()
                    await ws.send('{"op":"subscribe","symbols":["AAPL","MSFT","IBM"]}')
                    assert (await recv(ws))["type"] == "subscribed"
                    snap = await recv(ws)
                    assert snap["type"] == "snapshot" and time.monotonic() - t < 0.5
                    assert {e["s"] for e in snap["data"]} == {"AAPL", "MSFT", "IBM"}
                    snaps.append(snap["data"])
                # The latest values may still be in the nodes' next flush to the first clients: wait for them.
                latest = by_key(snaps[0]).keys() | by_key(snaps[1]).keys()

                def delivered() -> tuple[dict[tuple[str, int], tuple[Any, ...]], ...] | None:
                    ea, eb = by_key(ra.entries("quotes")), by_key(rb.entries("quotes"))
                    return (ea, eb) if latest <= ea.keys() and latest <= eb.keys() else None

                ea, eb = await eventually(delivered, 5.0, "the snapshots' values to reach the first clients")
                matched = 0
                for entries, own, other in ((snaps[0], ea, eb), (snaps[1], eb, ea)):
                    for k, v in by_key(entries).items():
                        assert own[k] == v  # a snapshot is the node's latest value
                        if k in other:
                            assert other[k] == v
                            matched += 1
                assert matched >= 3


async def test_publisher_follows_the_nodes_demand(redis_srv: RedisProcess):
    pub = publisher(redis_srv, "--symbols", "AAPL").start()
    a = node(redis_srv).start()
    b = node(redis_srv, "--demand-ttl", "2").start()
    watcher = redis_srv.client().pubsub(ignore_subscribe_messages=True)
    watcher.psubscribe("ticker:q:*")

    def published(seconds: float) -> set[str]:
        end = time.monotonic() + seconds
        seen: set[str] = set()
        while (left := end - time.monotonic()) > 0:
            msg = watcher.get_message(timeout=left)
            if msg and msg["type"] == "pmessage":
                seen.add(msg["channel"].split(":", 2)[2])
        return seen

    async def until_published(expected: set[str], within: float) -> None:
        """Wait until a 0.6 s window sees exactly ``expected`` published."""

        async def exactly() -> bool:
            return await asyncio.to_thread(published, 0.6) == expected

        await eventually(exactly, within, f"exactly {sorted(expected)} published")

    try:
        assert published(1.0) == {"AAPL"}
        # Nodes subscribe to nothing their clients do not want.
        assert redis_srv.command("PUBSUB", "CHANNELS", "ticker:q:*") == []
        async with connect(a.ws_url + "?symbols=IBM") as wa:
            await recv_until(wa, lambda m: m["type"] == "quotes" and m["data"][0]["s"] == "IBM")
            assert redis_srv.command("PUBSUB", "NUMSUB", "ticker:q:IBM", "ticker:q:AAPL") == [
                "ticker:q:IBM",
                1,
                "ticker:q:AAPL",
                0,
            ]
            await until_published({"AAPL", "IBM"}, 3.0)
            assert "+IBM" in pub.output()
            # Node B's client wants CSCO; node B dies without withdrawing: its demand expires with the TTL.
            async with connect(b.ws_url + "?symbols=CSCO", close_timeout=0.5) as wb:
                await recv_until(wb, lambda m: m["type"] == "quotes" and m["data"][0]["s"] == "CSCO")
                await until_published({"AAPL", "IBM", "CSCO"}, 3.0)
                assert b.proc is not None
                b.proc.kill()
            await until_published({"AAPL", "IBM"}, 8.0)
        # The last client of IBM leaves: node A withdraws it at once and its last value leaves the hash.
        await until_published({"AAPL"}, 3.0)
        assert redis_srv.command("HGET", "ticker:last", "IBM") is None
        assert redis_srv.command("HGET", "ticker:last", "AAPL") is not None
    finally:
        watcher.close()
        a.stop()
        b.stop()
        pub.stop()


async def test_workers_share_one_publisher(redis_srv: RedisProcess):
    with (
        publisher(redis_srv, "--symbols", "AAPL,MSFT"),
        node(redis_srv, "--workers", "2", "--log-level", "warning") as srv,
    ):
        conns = [await connect(srv.ws_url + "?symbols=AAPL,MSFT,QCOM") for _ in range(16)]
        try:
            recs = [Inbox(ws) for ws in conns]
            wanted = {"AAPL", "MSFT", "QCOM"}
            await eventually(
                lambda: all({e["s"] for e in r.entries("quotes")} == wanted for r in recs),
                10.0,
                "quotes of every symbol on every client",
            )
            nodes = redis_srv.command("SMEMBERS", "ticker:nodes")
            assert len(nodes) == 2 and len({n.split(":")[1] for n in nodes}) == 2  # two worker processes
            for n in nodes:  # both workers got clients and told the publisher what they want
                assert set(redis_srv.command("SMEMBERS", f"ticker:demand:{n}")) == {"AAPL", "MSFT", "QCOM"}
        finally:
            await asyncio.gather(*(ws.close() for ws in conns))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["serve", "--broker", "http://x:1"], "must start with redis://"),
        (["serve", "--broker", "redis://h:99999/0"], "bad port"),
        (["serve", "--broker", "redis://h:6379/x"], "DB number"),
        (["serve", "--broker", "redis://h:6379/0", "--feed", "simulated"], "ticker feed"),
        (["serve", "--demand-ttl", "0"], "must be positive"),
        (["feed"], "--broker"),
        (["feed", "--broker", "memory"], "needs a Redis URL"),
        (["feed", "--broker", "redis://h:6379/0", "--feed", "none"], "needs a feed"),
        (["feed", "--broker", "redis://h:6379/0", "--broker-prefix", "a b"], "prefix"),
    ],
)
def test_bad_broker_flags_give_one_line_and_exit_2(argv: list[str], needle: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
    r = subprocess.run(
        [sys.executable, "-m", "ticker", *argv],
        capture_output=True,
        text=True,
        timeout=timeout(30),
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
