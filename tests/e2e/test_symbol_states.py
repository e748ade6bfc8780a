"""Unknown symbols and symbol states against a real server: refusals on every transport, ``closed`` outside
market hours, ``down`` when a replay ends, states pushed when they change."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from feeds.recording.format import write_all
from feeds.recording.replay import ReplayFeed
from feeds.simulated import SimulatedFeed
from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.schemas import protocol_schemas
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv, recv_until, send
from ticker.quote import Quote
from ticker.server.config import Config
from ticker.server.node import Node
from ticker.server.service import Service


async def directory_loaded(srv: InProcessServer) -> None:
    await eventually(lambda: srv.node.directory.complete, what="the feeds' directory to load")


@pytest.fixture
async def srv() -> AsyncIterator[InProcessServer]:
    async with serve_in_process(sim_rate=20.0, seed=7) as s:
        await directory_loaded(s)
        yield s


async def test_unknown_symbols_are_refused_on_every_transport_with_suggestions(srv: InProcessServer):
    async with connect(srv.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": ["AAPL", "APPL"]})
        err = await recv(ws)
        assert err["code"] == "unknown_symbol" and err["symbols"] == ["APPL"]
        assert err["message"].startswith("No symbol APPL — did you mean AAPL (Apple Inc.)")
        assert "AAPL" in err["suggestions"]["APPL"]
        assert await recv(ws) == {"type": "subscribed", "symbols": ["AAPL"], "delayed": [], "rates": {}}
    async with httpx.AsyncClient(timeout=timeout(5)) as http:
        r = await http.get(f"{srv.url}/api/quotes?symbols=AAPL,NOPEX")
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "unknown_symbol" and r.json()["error"]["symbols"] == ["NOPEX"]
        r = await http.get(f"{srv.url}/sse?symbols=AAPL,NOPEX")
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_symbol"
        r = await http.get(f"{srv.url}/api/symbols")
        assert "APPL" not in r.json()["symbols"] and "NOPEX" not in r.json()["symbols"]
    assert "APPL" not in srv.node.demand() and srv.node.hub.last("APPL") is None


async def test_unknown_symbols_allowed_by_flag() -> None:
    async with serve_in_process(sim_rate=20.0, unknown_symbols="allow") as s:
        await directory_loaded(s)
        async with connect(s.ws_url) as ws:
            await send(ws, {"op": "subscribe", "symbols": ["NOPEX"]})
            assert (await recv(ws))["symbols"] == ["NOPEX"]


def saturday_noon_new_york() -> float:
    return datetime.datetime(
        2026, 11, 28, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
    ).timestamp()


async def test_a_closed_market_says_closed_on_every_transport() -> None:
    feed = SimulatedFeed(rate=20.0, seed=7, session="us-equities", clock=saturday_noon_new_york)
    async with serve_in_process(feed=feed) as s:
        async with connect(s.ws_url) as ws:
            await send(ws, {"op": "subscribe", "symbols": ["AAPL"]})
            status = await recv_until(ws, lambda m: m["type"] == "status")
            jsonschema.Draft202012Validator(protocol_schemas()[1]).validate(status)
            [entry] = status["data"]
            assert entry["s"] == "AAPL" and entry["state"] == "closed"
            assert "closed" in entry["reason"] and "Mon" in entry["reason"]
        async with (
            httpx.AsyncClient(timeout=timeout(5)) as http,
            aconnect_sse(http, "GET", f"{s.url}/sse?symbols=AAPL") as source,
        ):
            kinds = []
            async for ev in source.aiter_sse():
                kinds.append(ev.event)
                if ev.event == "status":
                    assert ev.json()["data"][0]["state"] == "closed"
                    break
            assert kinds[0] == "snapshot"
        async with httpx.AsyncClient(timeout=timeout(5)) as http:
            body = (await http.get(f"{s.url}/api/quotes?symbols=AAPL")).json()
            states = [e.get("state") for e in body["data"]] + [e["state"] for e in body.get("status", [])]
            assert states == ["closed"]


async def test_a_replay_that_ends_turns_its_symbols_down_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl.gz"
    t0 = 1_790_000_000_000
    records = [(t0 + i * 100, Quote("AAA", 10.0 + i, t0 + i * 100)) for i in range(20)]
    write_all(path, ["test"], records)
    async with serve_in_process(feed=ReplayFeed(path, speed=1.0)) as s, connect(s.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": ["AAA", "BBB"]})
        err = await recv_until(ws, lambda m: m["type"] == "error")
        assert err["code"] == "unknown_symbol" and err["symbols"] == ["BBB"]

        def down(m: dict[str, Any]) -> bool:
            return m["type"] == "status" and m["data"][0]["state"] == "down"

        msg = await recv_until(ws, down, within=10)
        assert msg["data"][0]["s"] == "AAA" and "recording ended" in msg["data"][0]["reason"]


async def test_a_provider_that_drops_and_stays_down_turns_down_then_live_when_it_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiohttp import web

    from feeds.registry import create_feeds
    from tests.support.fakes.finnhub import FakeFinnhub
    from tests.support.fakes.sink import feed_options

    monkeypatch.setenv("FINNHUB_TOKEN", "test-token")
    fake = FakeFinnhub()
    await fake.start()
    refusing = False
    fake.refuse = lambda request: web.Response(status=503, text="down") if refusing else None  # type: ignore[method-assign]
    cfg = Config(host="127.0.0.1", port=0, unknown_symbols="allow")
    [feed] = create_feeds(["finnhub"], feed_options(fake.url, symbols=["AAPL"]))
    service = Service(cfg, Node(cfg, feeds=[feed]))
    await service.start()
    try:
        s = InProcessServer(service)
        async with connect(s.ws_url) as ws:
            await send(ws, {"op": "subscribe", "symbols": ["AAPL"]})
            await fake.wait_for(lambda: fake.symbols() == {"AAPL"}, what="upstream subscribe")

            async def quoted() -> bool:
                await fake.trade("AAPL", 101.0)
                return s.node.hub.last("AAPL") is not None

            await eventually(quoted, what="a first quote")
            refusing = True
            fake.kill_all()

            def state_is(state: str) -> Any:
                return lambda m: (
                    m["type"] == "status" and any(e["s"] == "AAPL" and e["state"] == state for e in m["data"])
                )

            down = await recv_until(ws, state_is("down"), within=10)
            assert "finnhub" in down["data"][0]["reason"]
            refusing = False
            await recv_until(ws, state_is("live"), within=10)
    finally:
        await asyncio.wait_for(service.stop(), timeout(10))
        await fake.close()
