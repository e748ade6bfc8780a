"""Symbol states through Redis: the publisher reports what its feeds say, and edge nodes (which run no
feed) tell their clients ``down`` when its replay ends, when it stops and when it dies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.redisproc import FeedProcess, RedisProcess, node, publisher
from tests.support.symbolkit import write_recording
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv_until, send
from ticker.broker.redis_edge import NO_PUBLISHER, RedisBroker
from ticker.metrics.registry import Metrics
from ticker.status import DOWN, SymbolStatus

ENDED = SymbolStatus(DOWN, "feed replay is down: the recording ended")


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


@asynccontextmanager
async def edge_broker(r: RedisProcess, *symbols: str) -> AsyncIterator[RedisBroker]:
    """An edge node's broker in this process, wanting ``symbols``: what it answers is read directly."""
    broker = RedisBroker(r.url, Metrics(), last=lambda s: None)
    await broker.start(lambda q: None)
    broker.set_demand(frozenset(symbols))
    try:
        yield broker
    finally:
        await broker.stop()


async def subscribed(url: str, symbol: str) -> ClientConnection:
    """A WebSocket client of ``url`` subscribed to ``symbol``."""
    ws = await connect(url)
    await send(ws, {"op": "subscribe", "symbols": [symbol]})
    await recv_until(ws, lambda m: m["type"] == "subscribed")
    return ws


def status_of(symbol: str, ok: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    """A ``status`` message with an entry of ``symbol`` that ``ok`` accepts."""
    return lambda m: m["type"] == "status" and any(e["s"] == symbol and ok(e) for e in m["data"])


def replay_publisher(r: RedisProcess, recording: Path) -> FeedProcess:
    return FeedProcess(
        ["--broker", r.url, "--feed", "replay", "--replay-file", str(recording), "--log-level", "info"]
    )


async def test_edges_say_down_when_the_publishers_replay_ends_and_when_it_stops(
    redis_srv: RedisProcess, tmp_path: Path
):
    recording = write_recording(tmp_path / "short.jsonl.gz", ["AAA", "BBB"], seconds=4.0)
    with replay_publisher(redis_srv, recording) as pub, node(redis_srv) as a, node(redis_srv) as b:
        async with edge_broker(redis_srv, "AAA") as broker:
            clients = [await subscribed(n.ws_url, "AAA") for n in (a, b)]
            try:
                for ws in clients:  # live while it plays
                    await recv_until(ws, lambda m: m["type"] in ("quotes", "snapshot") and bool(m["data"]))
                await eventually(lambda: redis_srv.command("EXISTS", "ticker:health"), 5.0, "a health report")
                assert broker.symbol_status("AAA") is None
                report = orjson.loads(redis_srv.command("GET", "ticker:health"))
                assert report["feeds"]["replay"]["up"] is True and report["feeds"]["replay"]["steady"] is True
                # The recording ends: the publisher's replay is down, and every edge says why.
                for ws in clients:
                    msg = await recv_until(ws, status_of("AAA", lambda e: e["state"] == "down"), within=10.0)
                    [entry] = [e for e in msg["data"] if e["s"] == "AAA"]
                    assert entry["reason"] == ENDED.reason
                assert (
                    await eventually(lambda: broker.symbol_status("AAA"), 3.0, "the broker's state") == ENDED
                )
                report = orjson.loads(redis_srv.command("GET", "ticker:health"))
                assert report["feeds"]["replay"] == {
                    "up": False,
                    "reason": "the recording ended",
                    "quiet_s": report["feeds"]["replay"]["quiet_s"],
                    "steady": True,
                }
                assert report["symbols"]["AAA"] == {"state": "down", "reason": ENDED.reason}
                # A clean stop withdraws the report: edges say the publisher is gone within a read and a
                # tick, well before the report's 5 s TTL would have run out.
                stopped = time.monotonic()
                assert pub.stop() == 0
                for ws in clients:
                    await recv_until(
                        ws, status_of("AAA", lambda e: e["reason"] == NO_PUBLISHER.reason), within=3.0
                    )
                assert time.monotonic() - stopped < timeout(3.0)
                # The test's own edge broker reads the report on its own second: it follows within one.
                await eventually(
                    lambda: broker.symbol_status("AAA") == NO_PUBLISHER, 3.0, "the broker to follow"
                )
                assert "no publisher is reporting" in a.output()
            finally:
                await asyncio.gather(*(ws.close() for ws in clients))


async def test_edges_say_down_within_seconds_of_the_publishers_death_and_live_once_it_is_back(
    redis_srv: RedisProcess,
):
    pub = publisher(redis_srv, "--symbols", "AAPL").start()
    try:
        with node(redis_srv) as a, node(redis_srv) as b:
            async with edge_broker(redis_srv, "AAPL") as broker:
                clients = [await subscribed(n.ws_url, "AAPL") for n in (a, b)]
                try:
                    for ws in clients:
                        await recv_until(ws, lambda m: m["type"] == "quotes")
                    report = orjson.loads(
                        await eventually(
                            lambda: redis_srv.command("GET", "ticker:health"), 5.0, "a health report"
                        )
                    )
                    assert report["feeds"]["simulated"]["up"] is True and "AAPL" not in report["symbols"]
                    assert 0 < redis_srv.command("TTL", "ticker:health") <= 5
                    assert broker.symbol_status("AAPL") is None
                    pub.kill()  # a crash: the report is not withdrawn, it expires
                    died = time.monotonic()
                    for ws in clients:
                        msg = await recv_until(
                            ws, status_of("AAPL", lambda e: e["state"] == "down"), within=8.0
                        )
                        assert msg["data"][0]["reason"] == NO_PUBLISHER.reason
                    took = time.monotonic() - died
                    # TTL 5 s, plus up to a second before the edge reads and a second before its board ticks.
                    assert took < timeout(8.0), took
                    # The test's own edge broker reads the report on its own second: it follows within one.
                    await eventually(
                        lambda: broker.symbol_status("AAPL") == NO_PUBLISHER, 3.0, "the broker to follow"
                    )
                    # A new publisher: live again on every edge.
                    pub = publisher(redis_srv, "--symbols", "AAPL").start()
                    for ws in clients:
                        await recv_until(ws, status_of("AAPL", lambda e: e["state"] == "live"), within=8.0)
                    await eventually(
                        lambda: broker.symbol_status("AAPL") is None, 3.0, "the broker to follow"
                    )
                finally:
                    await asyncio.gather(*(ws.close() for ws in clients))
    finally:
        pub.stop()
