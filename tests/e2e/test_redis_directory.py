"""The symbol directory through Redis: the publisher owns it, every edge node answers with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from tests.support.redisproc import RedisProcess, node, publisher
from tests.support.serverproc import ServerProcess
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv_until, send
from ticker.broker import redis_directory as rd
from ticker.broker import redis_layout as rc
from ticker.directory import Directory, SymbolInfo

LAYOUT = rc.Layout("ticker")
AAPL = SymbolInfo("AAPL", "Apple Inc.", "NASDAQ", "stock", "USD")
NEWQ = SymbolInfo("NEWQ", "Newly Listed Holdings", "NYSE", "stock", "USD")


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


@pytest.fixture
async def redis_client(redis_srv: RedisProcess) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_srv.url, socket_timeout=timeout(5))
    yield client
    await client.aclose()


async def entry(srv: ServerProcess, symbol: str) -> tuple[int, Any]:
    """``GET /api/symbols/SYMBOL`` of ``srv``: (status, body)."""
    async with httpx.AsyncClient(base_url=srv.url, timeout=timeout(5)) as http:
        r = await http.get(f"/api/symbols/{symbol}")
        return r.status_code, r.json()


async def answers(nodes: list[ServerProcess], symbol: str, status: int, what: str) -> Any:
    """Wait until every node answers ``status`` for ``symbol``; the bodies, all the same, of one node."""

    async def same() -> tuple[Any] | None:
        got = [await entry(n, symbol) for n in nodes]
        if any(code != status for code, _ in got) or any(body != got[0][1] for _, body in got):
            return None
        return (got[0][1],)

    return (await eventually(same, 10.0, what, interval=0.05))[0]


def directory(entries: list[SymbolInfo], *loading: str) -> Directory:
    d = Directory()
    for name in ("feed", *loading):
        d.expect(name)
    d.replace("feed", entries)
    return d


async def test_two_edges_answer_with_the_publishers_directory(redis_srv: RedisProcess):
    with publisher(redis_srv, "--symbols", "AAPL,ZZQX") as pub, node(redis_srv) as a, node(redis_srv) as b:

        def written() -> dict[str, Any] | None:
            raw = redis_srv.command("GET", "ticker:directory:meta")
            meta = orjson.loads(raw) if raw else None
            return meta if meta and meta["complete"] else None

        meta = await eventually(written, 15.0, "the publisher to write a complete directory")
        assert meta["symbols"] == redis_srv.command("HLEN", "ticker:directory") > 100
        assert "wrote the symbol directory" in pub.output()
        stored = orjson.loads(redis_srv.command("HGET", "ticker:directory", "AAPL"))
        body = await answers([a, b], "AAPL", 200, "both edges to know AAPL")
        assert body == {"s": "AAPL", **stored} and body["name"].startswith("Apple")
        await answers([a, b], "ZZQX", 200, "both edges to know a symbol the publisher carries by --symbols")
        missing = await answers([a, b], "NOPEQ", 404, "both edges to refuse NOPEQ")
        assert missing["error"]["code"] == "unknown_symbol"
        async with httpx.AsyncClient(timeout=timeout(5)) as http:
            found = [(await http.get(n.url + "/api/search", params={"q": "apple"})).json() for n in (a, b)]
        assert found[0] == found[1] and found[0]["results"][0]["s"] == "AAPL"
        # Over WebSocket too: the known symbol is applied, the unknown one refused by name, on both edges.
        for srv in (a, b):
            async with connect(srv.ws_url) as ws:
                await send(ws, {"op": "subscribe", "symbols": ["AAPL", "NOPEQ"]})
                err = await recv_until(ws, lambda m: m["type"] == "error")
                assert err["code"] == "unknown_symbol" and err["symbols"] == ["NOPEQ"]
                await recv_until(ws, lambda m: m["type"] == "quotes" and m["data"][0]["s"] == "AAPL")


async def test_a_new_publishers_directory_reaches_the_edges(redis_srv: RedisProcess):
    with node(redis_srv) as a, node(redis_srv) as b:
        with publisher(redis_srv, "--symbols", "AAPL,ZZQX"):
            await answers([a, b], "ZZQX", 200, "both edges to know ZZQX")
            await answers([a, b], "YYQX", 404, "both edges to refuse YYQX")
        with publisher(redis_srv, "--symbols", "AAPL,YYQX"):
            await answers([a, b], "YYQX", 200, "both edges to know YYQX from the new publisher")
            await answers([a, b], "ZZQX", 404, "both edges to refuse ZZQX, which the new publisher lacks")


async def test_edges_follow_each_directory_written(redis_srv: RedisProcess, redis_client: Redis):
    """No publisher process: the test writes directories with the publisher's own writer, change by change."""
    with node(redis_srv) as a, node(redis_srv) as b:
        nodes = [a, b]
        # Before any publisher wrote one, nothing is refused: every symbol is pending.
        code, body = await entry(a, "AAPL")
        assert code == 404 and "yet" in body["error"]["message"]
        # The publisher's feeds partly loaded: what it has is known, the rest pending (accepted, not refused).
        await rd.write(redis_client, LAYOUT, "pub-1", directory([AAPL], "finnhub"))
        await answers(nodes, "AAPL", 200, "both edges to know AAPL")
        pending = await answers(nodes, "NEWQ", 404, "NEWQ to be pending")
        assert "yet" in pending["error"]["message"]
        async with connect(a.ws_url) as ws:
            await send(ws, {"op": "subscribe", "symbols": ["NEWQ", "GONEQ"]})
            subscribed = await recv_until(ws, lambda m: m["type"] == "subscribed")
            assert sorted(subscribed["symbols"]) == ["GONEQ", "NEWQ"]
            # Complete now: NEWQ is listed, GONEQ is not. The notification brings it at once (the poll is 60 s),
            # and the client that took GONEQ as pending is told it is unknown.
            await rd.write(redis_client, LAYOUT, "pub-1", directory([AAPL, NEWQ]))
            body = await answers(nodes, "NEWQ", 200, "both edges to know NEWQ within seconds")
            assert body == NEWQ.to_json()
            err = await recv_until(ws, lambda m: m["type"] == "error", within=5.0)
            assert err["code"] == "unknown_symbol" and err["symbols"] == ["GONEQ"]
        # Malformed rows are skipped, the rest is read.
        await redis_client.hset(LAYOUT.directory, mapping={"BADQ": b"{", "bad sym": rd.encode_info(AAPL)})
        meta = rd.DirectoryMeta("pub-1", 99, (), 4)
        await redis_client.set(LAYOUT.directory_meta, meta.encode())
        await redis_client.publish(LAYOUT.ctl, rc.DIRECTORY)
        await eventually(
            lambda: "skipped 2 malformed entries" in a.output(), 5.0, "the edge to skip two rows"
        )
        await answers(nodes, "NEWQ", 200, "the edges to keep the good rows")
        await answers(nodes, "BADQ", 404, "the edges to drop the malformed row")
        # Redis restarts empty: the edges keep the directory they have until a publisher writes one again.
        redis_srv.kill()
        redis_srv.start()
        await eventually(lambda: a.output().count("Redis is back") >= 1, 10.0, "edge A to reconnect")
        await answers(nodes, "NEWQ", 200, "the edges to keep their directory")
        await answers(nodes, "GONEQ", 404, "the edges to keep refusing GONEQ")
        fresh = Redis.from_url(redis_srv.url, socket_timeout=timeout(5))
        try:
            await rd.write(fresh, LAYOUT, "pub-2", directory([NEWQ]))
            await answers(nodes, "AAPL", 404, "the edges to take the new publisher's directory")
        finally:
            await fresh.aclose()
