"""Faults of the Redis deployment: Redis restarts, publisher restarts, Redis absent at start."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.redisproc import FeedProcess, RedisProcess, node, publisher
from tests.support.serverproc import ServerProcess, scrape
from tests.support.system import free_port
from tests.support.timing import eventually, timeout
from tests.support.wsclient import Inbox

SYMS = ("AAPL", "MSFT", "IBM")


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


def readyz(srv: ServerProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(srv.url + "/readyz", timeout=timeout(3)) as r:
            return r.status, json.loads(r.read())["reason"]
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["reason"]


async def wait_ready(srv: ServerProcess, status: int, within: float) -> str:
    """The reason /readyz gives once it answers ``status``; fails after ``within`` seconds (scaled)."""

    async def answers() -> tuple[int, str] | None:
        code, reason = await asyncio.to_thread(readyz, srv)
        return (code, reason) if code == status else None

    _, reason = await eventually(answers, within, f"/readyz to answer {status}", interval=0.1)
    return reason


async def resumed(recs: list[Inbox], since: float, within: float = 5.0) -> None:
    """Every client got a fresh snapshot of all its symbols and new quotes of each after ``since``."""
    for r in recs:
        # The resync snapshot may follow the first fresh quotes: wait for both.
        await r.wait(lambda r=r: {e["s"] for e in r.entries("quotes", since)} == set(SYMS), within)
        await r.wait(lambda r=r: bool(r.since(since, "snapshot")), within)
        snaps = r.since(since, "snapshot")
        assert {e["s"] for e in snaps[-1]["data"]} == set(SYMS)
        assert not r.closed


async def clients(nodes: list[ServerProcess]) -> tuple[list[ClientConnection], list[Inbox]]:
    conns = [await connect(n.ws_url + "?symbols=" + ",".join(SYMS)) for n in nodes]
    recs = [Inbox(ws) for ws in conns]
    for r in recs:
        await r.wait(lambda r=r: {e["s"] for e in r.entries("quotes")} == set(SYMS))
    return conns, recs


async def test_redis_restart_mid_stream(redis_srv: RedisProcess):
    with publisher(redis_srv, "--symbols", "AAPL,MSFT") as pub, node(redis_srv) as a, node(redis_srv) as b:
        conns, recs = await clients([a, b])
        try:
            before = [scrape(n.url) for n in (a, b)]
            redis_srv.kill()
            reason = await wait_ready(a, 503, 5.0)
            assert reason == "broker redis is down"
            assert scrape(a.url)["ticker_broker_up"] == 0
            await asyncio.sleep(0.5)  # the scenario: Redis stays down a moment; then wait for the resume
            back = time.monotonic()  # before the start: a node may resync before start() returns
            await asyncio.to_thread(redis_srv.start)
            await resumed(recs, back, 5.0)
            for n, old in zip((a, b), before, strict=True):
                await wait_ready(n, 200, 3.0)

                async def lag_measured(
                    n: ServerProcess = n, old: dict[str, float] = old
                ) -> dict[str, float] | None:
                    m = await asyncio.to_thread(scrape, n.url)
                    lagged = m["ticker_broker_lag_seconds_count"] > old["ticker_broker_lag_seconds_count"]
                    return m if lagged else None

                # The first quotes after the restart may come from the last-value hash (no lag measured).
                m = await eventually(
                    lag_measured, 5.0, "a broker lag measured after the restart", interval=0.1
                )
                assert m["ticker_broker_up"] == 1
                assert m["ticker_broker_reconnects_total"] == old["ticker_broker_reconnects_total"] + 1
                assert m["ticker_broker_lag_seconds_count"] > old["ticker_broker_lag_seconds_count"]
                assert m['ticker_connections{transport="ws"}'] == 1
                assert not any(k.startswith("ticker_connections_closed_total") and v for k, v in m.items())
            assert "Redis is back" in pub.output() and "Redis is back" in a.output()
            # Redis restarted empty: the publisher restored the last values, the nodes their demand.
            assert set(redis_srv.command("HKEYS", "ticker:last")) >= set(SYMS)
            assert len(redis_srv.command("SMEMBERS", "ticker:nodes")) == 2
        finally:
            await asyncio.gather(*(ws.close() for ws in conns))


async def test_publisher_restart_disconnects_no_client(redis_srv: RedisProcess):
    pub = publisher(redis_srv, "--symbols", "AAPL,MSFT").start()
    try:
        with node(redis_srv) as a, node(redis_srv) as b:
            conns, recs = await clients([a, b])
            try:
                t_before = [max(e["t"] for e in r.entries("quotes")) for r in recs]
                pub.kill()  # a crash: no goodbye
                await asyncio.sleep(1.0)  # the scenario: the publisher stays away; then wait for the resume
                quiet = time.monotonic()
                assert all(not r.entries("quotes", quiet) for r in recs)
                assert (await asyncio.to_thread(readyz, a))[0] == 200  # Redis is up: nodes stay ready
                pub = publisher(redis_srv, "--symbols", "AAPL,MSFT").start()
                await resumed(recs, quiet, 5.0)
                for r, t in zip(recs, t_before, strict=True):  # the new publisher's ticks, newer than before
                    assert min(e["t"] for e in r.entries("quotes", quiet)) > t
                for n in (a, b):
                    assert scrape(n.url)['ticker_connections{transport="ws"}'] == 1
            finally:
                await asyncio.gather(*(ws.close() for ws in conns))
    finally:
        pub.stop()


async def test_node_starts_before_redis_and_catches_up():
    port = free_port()
    r = RedisProcess(port)
    with node(r) as a:
        try:
            code, reason = await asyncio.to_thread(readyz, a)
            assert (code, reason) == (503, "broker redis is down")
            async with connect(a.ws_url + "?symbols=AAPL") as ws:
                rec = Inbox(ws)
                await asyncio.to_thread(r.start)
                with FeedProcess(["--broker", r.url, "--symbols", "AAPL", "--sim-rate", "20"]):
                    await wait_ready(a, 200, 5.0)
                    await rec.wait(lambda: rec.entries("quotes"), 5.0)
                    assert not rec.closed
        finally:
            r.stop()
