"""Any node answers everything: REST on an edge node reads through from Redis the symbols no client there
receives, as fresh as a subscribed symbol (``Broker.read_through``), and lists the publisher's symbols."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.support.redisproc import RedisProcess, node, publisher
from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv_until
from ticker.quote import decode_entry

SYMBOLS = ("AAPL", "NVDA")


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


def in_redis(r: RedisProcess, symbol: str) -> int:
    """The time (epoch ms) of ``symbol``'s last value in Redis' last-value hash (0: none)."""
    raw = r.command("HGET", "ticker:last", symbol)
    return 0 if raw is None else decode_entry(orjson.loads(raw), sequenced=False).ts_ms


async def quotes(srv: ServerProcess, *symbols: str) -> dict[str, Any]:
    """``GET /api/quotes?symbols=...`` of ``srv``: symbol → entry."""
    async with httpx.AsyncClient(base_url=srv.url, timeout=timeout(5)) as http:
        r = await http.get("/api/quotes", params={"symbols": ",".join(symbols)})
        assert r.status_code == 200, r.text
        return {e["s"]: e for e in r.json()["data"]}


async def current(r: RedisProcess, srv: ServerProcess, what: str) -> None:
    """Eventually a read answers, for every symbol, a value at least as new as Redis held before the read
    (a frozen value never does once the market moves), and the values move between reads."""
    first = await quotes(srv, *SYMBOLS)

    async def fresh() -> bool:
        before = {s: in_redis(r, s) for s in SYMBOLS}
        got = await quotes(srv, *SYMBOLS)
        return all(s in got and got[s]["t"] >= before[s] and got[s]["t"] > first[s]["t"] for s in SYMBOLS)

    await eventually(fresh, 10.0, f"{what}: values as new as Redis', moving", interval=0.5)


async def test_a_fresh_edge_answers_every_symbol_current(redis_srv: RedisProcess):
    with publisher(redis_srv), node(redis_srv) as edge:
        await eventually(lambda: all(in_redis(redis_srv, s) for s in SYMBOLS), 10.0, "Redis to hold them")
        start = time.monotonic()
        got = await quotes(edge, *SYMBOLS)
        assert set(got) == set(SYMBOLS)  # at once: the first read, no client on this node
        assert time.monotonic() - start < timeout(1.0) + 1.0
        await current(redis_srv, edge, "a fresh edge with no clients")


async def test_an_edge_whose_last_client_left_serves_moving_values(redis_srv: RedisProcess):
    with publisher(redis_srv), node(redis_srv) as edge:
        async with connect(edge.ws_url + "?symbols=" + ",".join(SYMBOLS)) as ws:
            await recv_until(ws, lambda m: m["type"] == "quotes")
        # The client left: the node unsubscribes; its hub keeps the last values it had.
        await eventually(
            lambda: redis_srv.command("PUBSUB", "NUMSUB", "ticker:q:AAPL")[1] == 0, 10.0, "AAPL dropped"
        )
        await current(redis_srv, edge, "an edge whose last client left")


async def test_an_edge_lists_the_publishers_symbols(redis_srv: RedisProcess):
    with publisher(redis_srv), node(redis_srv) as edge:
        carried = await eventually(
            lambda: set(redis_srv.command("HKEYS", "ticker:last")) or None, 10.0, "the publisher's values"
        )
        assert len(carried) >= 32 and set(SYMBOLS) <= carried

        async def listed() -> bool:
            async with httpx.AsyncClient(base_url=edge.url, timeout=timeout(5)) as http:
                r = await http.get("/api/symbols")
            return r.status_code == 200 and set(r.json()["symbols"]) >= carried

        await eventually(
            listed, 10.0, "/api/symbols on an edge with no clients to list the publisher's symbols"
        )
