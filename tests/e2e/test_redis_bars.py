"""Bars through Redis end to end: the publisher aggregates and keeps the bounded history in a real
redis-server, two edge nodes serve it over REST and WebSocket, and an edge restart loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.support.redisproc import RedisProcess, node, publisher
from tests.support.serverproc import ServerProcess
from tests.support.symbolkit import knows
from tests.support.timing import eventually, timeout
from tests.support.wsclient import Inbox, recv_until
from ticker.bars import HISTORY, INTERVALS, Bar
from ticker.broker import redis_bars as rb

SERVED = ("1m", "5m", "1h", "1d")  # the intervals a node loads history of (1s has none)


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


def stored(r: RedisProcess, symbol: str, interval: str) -> list[dict[str, Any]]:
    """The publisher's history of ``symbol`` at ``interval`` in Redis, oldest first."""
    return [orjson.loads(m) for m in r.command("ZRANGE", f"ticker:bars:{symbol}:{interval}", "0", "-1")]


async def rest_bars(srv: ServerProcess, symbol: str, interval: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=srv.url, timeout=timeout(10)) as http:
        r = await http.get("/api/bars", params={"symbol": symbol, "interval": interval, "limit": "5000"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["s"] == symbol and body["interval"] == interval
    return body["bars"]


async def directory_read(*nodes: ServerProcess) -> None:
    """Wait until every node has read the publisher's directory: a node picks a symbol's session days (New
    York midnight for a US stock: the start of its 1d bars) when its bars first arrive."""
    await eventually(
        lambda: all(knows(n.url, "AAPL") for n in nodes), 10.0, "the nodes to read the directory"
    )


def settled(bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All but the newest bar (the current one moves while it is read)."""
    return bars[:-1]


async def same_history(a: ServerProcess, b: ServerProcess, r: RedisProcess, symbol: str) -> None:
    """Both nodes serve the publisher's history of ``symbol`` at every served interval (the current bar may
    move between the reads: each is retried until the reads agree)."""
    for interval in SERVED:

        async def agree(interval: str = interval) -> list[dict[str, Any]] | None:
            ba, bb = await rest_bars(a, symbol, interval), await rest_bars(b, symbol, interval)
            inredis = stored(r, symbol, interval)
            ok = ba and settled(ba) == settled(bb) == settled(inredis)[-len(settled(ba)) :]
            return ba if ok else None

        got = await eventually(agree, 10.0, f"both nodes and Redis to hold the same {interval} bars")
        assert len(got) >= 2


def test_the_write_script_replaces_a_bar_by_its_start_trims_by_rank_and_expires(redis_srv: RedisProcess):
    c = redis_srv.client()

    def write(bars: list[Bar], maxlen: int, replace: bool = False) -> int:
        return int(c.eval(rb.WRITE_SERIES, 1, "k", *rb.write_args(bars, maxlen, replace, ttl=100)))

    bars = [Bar(t, t, t + 1, t - 1, t, 1) for t in (60_000, 120_000, 180_000)]
    assert write(bars, 3) == 0
    assert write([Bar(120_000, 5, 9, 1, 8, 7)], 3) == 0  # a correction: in place, not beside
    got = [orjson.loads(m) for m in redis_srv.command("ZRANGE", "k", "0", "-1")]
    assert [b["t"] for b in got] == [60_000, 120_000, 180_000]
    assert got[1] == Bar(120_000, 5, 9, 1, 8, 7).to_json()
    assert write([Bar(240_000, 1, 1, 1, 1), Bar(300_000, 1, 1, 1, 1)], 3) == 2  # the oldest two trimmed
    pairs = redis_srv.command("ZRANGE", "k", "0", "-1", "WITHSCORES")  # each bar's score is its start
    assert [(orjson.loads(m)["t"], float(score)) for m, score in pairs] == [
        (t, t) for t in (180_000, 240_000, 300_000)
    ]
    assert write([Bar(0, 1, 1, 1, 1)], 3) == 1 and c.zcard("k") == 3  # older than a full history: dropped
    assert 0 < c.ttl("k") <= 100
    assert write([Bar(60_000, 2, 2, 2, 2)], 3, replace=True) == 0 and c.zcard("k") == 1
    assert write([], 3, replace=True) == 0 and c.exists("k") == 0
    c.close()


async def test_two_edges_serve_the_same_bars_and_an_edge_restart_loses_nothing(redis_srv: RedisProcess):
    with publisher(redis_srv, "--symbols", "AAPL"), node(redis_srv) as a:
        b = node(redis_srv).start()
        try:
            await directory_read(a, b)
            # IBM is demanded only by a client of node B: when B restarts, nobody wants it for a moment.
            async with connect(b.ws_url + "?symbols=IBM", close_timeout=0.5) as wb:
                await recv_until(wb, lambda m: m["type"] == "quotes")
                await eventually(lambda: len(stored(redis_srv, "IBM", "1s")) >= 4, 10.0, "IBM's live 1s bars")
                await same_history(a, b, redis_srv, "AAPL")
                before = settled(stored(redis_srv, "IBM", "1s"))
                minute = settled(await rest_bars(b, "IBM", "1m"))
                assert len(minute) > 100  # the simulated market's session history, through the publisher
            b.stop()
            # B's demand went with it: the publisher drops IBM, its history stays in Redis (with a TTL).
            b = node(redis_srv).start()
            await directory_read(b)
            async with connect(b.ws_url + "?symbols=IBM", close_timeout=0.5) as wb:
                await recv_until(wb, lambda m: m["type"] == "quotes")
                after = await rest_bars(b, "IBM", "1m")
                assert settled(after)[: len(minute) - 1] == minute[:-1]  # the restarted edge serves it all
                await eventually(
                    lambda: len(stored(redis_srv, "IBM", "1s")) > len(before) + 1, 10.0, "IBM's new 1s bars"
                )
                keep = {x["t"]: x for x in stored(redis_srv, "IBM", "1s")}
                assert all(keep.get(x["t"]) == x for x in before)  # the publisher's live bars of before, kept
                await same_history(a, b, redis_srv, "AAPL")
            # Redis stays bounded: every series within its bound, a symbol's history under a megabyte or so.
            size = 0
            for interval in INTERVALS:
                key = f"ticker:bars:AAPL:{interval}"
                assert redis_srv.command("ZCARD", key) <= HISTORY[interval]
                assert 0 < redis_srv.command("TTL", key) <= rb.BARS_TTL
                size += redis_srv.command("MEMORY", "USAGE", key)
            assert redis_srv.command("ZCARD", "ticker:bars:AAPL:1d") == HISTORY["1d"]  # a year given: trimmed
            assert size < 1_500_000
        finally:
            b.stop()


async def bar_stream(ws: Any, symbol: str, interval: str) -> Inbox:
    await ws.send(
        orjson.dumps({"op": "subscribe_bars", "symbol": symbol, "interval": interval, "history": 50}).decode()
    )
    first = await recv_until(ws, lambda m: m["type"] == "bars")
    assert first["s"] == symbol and first["interval"] == interval
    return Inbox(ws)


def closed_bars(inbox: Inbox) -> dict[int, dict[str, Any]]:
    """The last word on each bar a ``bar`` stream has moved past (a later bar opened since)."""
    last: dict[int, dict[str, Any]] = {}
    for m in inbox.since(0.0, "bar"):
        last[m["bar"]["t"]] = m["bar"]
    newest = max(last, default=0)
    return {t: b for t, b in last.items() if t < newest}


async def test_live_bars_reach_both_edges_alike_and_resume_after_redis_restarts(redis_srv: RedisProcess):
    with publisher(redis_srv, "--symbols", "AAPL"), node(redis_srv) as a, node(redis_srv) as b:
        await directory_read(a, b)
        async with connect(a.ws_url) as wa, connect(b.ws_url) as wb:
            ia, ib = await bar_stream(wa, "AAPL", "1s"), await bar_stream(wb, "AAPL", "1s")

            def common(n: int) -> list[int] | None:
                ca, cb = closed_bars(ia), closed_bars(ib)
                both = sorted(ca.keys() & cb.keys())
                return both if len(both) >= n else None

            both = await eventually(lambda: common(3), 10.0, "three closed 1s bars on both edges")
            ca, cb = closed_bars(ia), closed_bars(ib)
            assert [ca[t] for t in both] == [cb[t] for t in both]  # the publisher's bars, not each node's own
            assert all(ca[t] == x for x in stored(redis_srv, "AAPL", "1s") if (t := x["t"]) in ca)

            redis_srv.kill()
            redis_srv.start()  # empty: the publisher writes every history again, the edges resubscribe
            seen = max(both)
            await eventually(
                lambda: (c := common(1)) is not None and max(c) > seen + 3_000, 15.0, "live 1s bars again"
            )
            await eventually(
                lambda: len(stored(redis_srv, "AAPL", "1m")) > 100, 10.0, "the history rewritten"
            )
            assert redis_srv.command("GET", "ticker:bars:AAPL") is not None
            await same_history(a, b, redis_srv, "AAPL")


async def test_a_node_waits_for_the_publisher_to_write_a_history_first_demanded(redis_srv: RedisProcess):
    with publisher(redis_srv), node(redis_srv) as a:
        await directory_read(a)
        # Nobody wants QCOM yet: the read demands it, waits for the publisher's backfill, and answers it.
        bars = await rest_bars(a, "QCOM", "1m")
        assert len(bars) > 100
        assert redis_srv.command("GET", "ticker:bars:QCOM") is not None
