"""Unknown symbols refused by real servers of every feed kind the simulated market's tests leave out: a
provider (the Coinbase fake's ``/products``) on WebSocket, SSE and REST, a replay on SSE and REST, and an
SSE stream whose pending symbol turns out unknown once the directory loads (docs/protocol.md, "Unknown
symbols")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from websockets.asyncio.client import connect

from tests.support.fakes.coinbase import FakeCoinbase
from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.schemas import protocol_schemas
from tests.support.serverproc import ServerProcess, serving
from tests.support.symbolkit import knows, write_recording
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv, send
from ticker.directory import Known, SymbolInfo


async def loaded(srv: ServerProcess, symbol: str) -> None:
    """Wait until the server's directory knows ``symbol`` (until then an unknown one is only pending)."""
    await eventually(lambda: asyncio.to_thread(knows, srv.url, symbol), 15, f"the directory to know {symbol}")


async def suggested(http: httpx.AsyncClient, symbol: str) -> list[str]:
    """The "did you mean" of ``GET /api/symbols/SYMBOL`` (a 404)."""
    r = await http.get(f"/api/symbols/{symbol}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_symbol"
    found: list[str] = r.json()["error"]["suggestions"].get(symbol, [])
    return found


def refusal(r: httpx.Response) -> dict[str, Any]:
    """The error of a ``400 unknown_symbol`` answer."""
    assert r.status_code == 400, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == "unknown_symbol"
    return error


# -- a provider: the Coinbase fake ----------------------------------------------------------------


@pytest.fixture
async def coinbase() -> AsyncIterator[FakeCoinbase]:
    fake = FakeCoinbase(heartbeat_interval=0.1)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


async def test_a_provider_server_refuses_unknown_symbols_on_every_transport(coinbase: FakeCoinbase) -> None:
    async with serving("--feed", "coinbase", "--feed-url", coinbase.url, "--log-level", "warning") as srv:
        await loaded(srv, "BTC-USD")
        async with httpx.AsyncClient(base_url=srv.url, timeout=timeout(5)) as http:
            # A long typo is answered from the "did you mean" index the server builds beside its event
            # loop once the directory has loaded: wait for that, then every refusal carries it.
            await eventually(lambda: suggested(http, "BTC-UDS"), what="a suggestion for BTC-UDS")
            assert (await suggested(http, "BTC-UDS"))[0] == "BTC-USD"

            # XYZ-USD is served by /products but not tradable: the adapter leaves it out of the directory.
            async with connect(srv.ws_url) as ws:
                await send(ws, {"op": "subscribe", "symbols": ["BTC-USD", "NOPE-USD", "BTC-UDS", "XYZ-USD"]})
                err = await recv(ws)
                jsonschema.Draft202012Validator(protocol_schemas()[1]).validate(err)
                assert err["code"] == "unknown_symbol"
                assert err["symbols"] == ["NOPE-USD", "BTC-UDS", "XYZ-USD"]
                assert err["suggestions"]["BTC-UDS"][0] == "BTC-USD"
                assert "BTC-UDS" in err["message"] and "BTC-USD" in err["message"]
                assert await recv(ws) == {
                    "type": "subscribed",
                    "symbols": ["BTC-USD"],
                    "delayed": [],
                    "rates": {},
                }
                # The known symbol reaches the provider; the unknown ones never reach the feed.
                await eventually(lambda: "BTC-USD" in coinbase.symbols(), what="BTC-USD subscribed upstream")
                assert coinbase.symbols() & {"NOPE-USD", "BTC-UDS", "XYZ-USD"} == set()
                await coinbase.ticker("BTC-USD", "64000.00", "63999.50", "64000.50")

                async def listed() -> list[str]:
                    symbols: list[str] = (await http.get("/api/symbols")).json()["symbols"]
                    return symbols if "BTC-USD" in symbols else []

                # Symbols with values (and everyone's suggestions): the known one, never the unknown ones.
                assert not {"NOPE-USD", "BTC-UDS", "XYZ-USD"} & set(await eventually(listed))

            r = await http.get("/sse", params={"symbols": "BTC-USD,NOPE-USD"})
            assert refusal(r)["symbols"] == ["NOPE-USD"]
            r = await http.get("/api/quotes", params={"symbols": "BTC-USD,NOPE-USD,BTC-UDS"})
            error = refusal(r)
            assert error["symbols"] == ["NOPE-USD", "BTC-UDS"]
            assert error["suggestions"]["BTC-UDS"][0] == "BTC-USD"
            r = await http.get("/api/quotes", params={"symbols": "BTC-USD"})
            assert r.status_code == 200 and [q["s"] for q in r.json()["data"]] == ["BTC-USD"]


# -- a replay -------------------------------------------------------------------------------------


async def test_a_replay_server_refuses_symbols_outside_its_recording_on_sse_and_rest(tmp_path: Path) -> None:
    recording = write_recording(tmp_path / "two.jsonl", ["AAPL", "MSFT"], seconds=30)
    async with serving("--feed", "replay", "--replay-file", str(recording), "--log-level", "warning") as srv:
        await loaded(srv, "AAPL")
        async with httpx.AsyncClient(base_url=srv.url, timeout=timeout(5)) as http:
            r = await http.get("/sse", params={"symbols": "AAPL,NVDA"})  # NVDA: real, but not recorded
            assert refusal(r)["symbols"] == ["NVDA"]
            r = await http.get("/api/quotes", params={"symbols": "AAPL,NVDA,AAPK"})
            error = refusal(r)
            assert error["symbols"] == ["NVDA", "AAPK"]
            assert error["suggestions"]["AAPK"] == ["AAPL"]  # a short typo: one edit, no index needed
            await eventually(lambda: suggested(http, "MSFTT"), what="a suggestion for MSFTT")
            r = await http.get("/sse", params={"symbols": "MSFTT"})
            assert refusal(r)["suggestions"] == {"MSFTT": ["MSFT"]}
            # The recorded symbols themselves are served.
            assert (await http.get("/api/quotes", params={"symbols": "AAPL,MSFT"})).status_code == 200
            async with aconnect_sse(http, "GET", "/sse", params={"symbols": "AAPL"}) as source:
                assert source.response.status_code == 200
                first = await anext(source.aiter_sse())
                assert first.event == "snapshot"


# -- pending, then unknown ------------------------------------------------------------------------


async def events_until(
    events: AsyncIterator[ServerSentEvent], kind: str, within: float = 5.0
) -> list[ServerSentEvent]:
    """The events read up to and including the first of ``kind``; fails after ``within`` seconds (scaled)."""
    seen: list[ServerSentEvent] = []
    async with asyncio.timeout(timeout(within)):
        async for ev in events:
            seen.append(ev)
            if ev.event == kind:
                return seen
    raise AssertionError(f"the stream ended before an event {kind!r}: {[e.event for e in seen]}")


@pytest.fixture
async def loading() -> AsyncIterator[InProcessServer]:
    """A server whose directory has a second source still loading (``x``): every symbol the simulated
    market does not know is ``pending`` until the test loads ``x``."""
    async with serve_in_process(sim_rate=20.0, seed=7) as srv:
        srv.node.runner.directory.expect("x")
        assert srv.node.directory.known("ZZZQ") is Known.PENDING
        yield srv


@pytest.mark.parametrize("options", ["", "&max_hz=2", "&fields=p&delta=1"])  # views of the symbols too
async def test_an_sse_stream_is_told_when_its_pending_symbol_turns_out_unknown(
    loading: InProcessServer, options: str
) -> None:
    srv = loading
    async with (
        httpx.AsyncClient(timeout=timeout(10)) as http,
        aconnect_sse(http, "GET", f"{srv.url}/sse?symbols=AAPL,ZZZQ{options}") as source,
    ):
        assert source.response.status_code == 200
        events = source.aiter_sse()
        opening = await events_until(events, "status")
        assert [e.event for e in opening if e.event != "subscribed"] == ["snapshot", "status"]
        pending = {e["s"]: e["state"] for e in opening[-1].json()["data"]}
        assert pending == {"ZZZQ": "pending"}
        assert "ZZZQ" in srv.node.demand()

        srv.node.runner.directory.replace("x", [SymbolInfo("ZZZA", "Zeta Zeta Alpha Inc.")])  # loaded
        got = await events_until(events, "error", within=5)  # on the board's next tick (once a second)
        error = got[-1].json()
        jsonschema.Draft202012Validator(protocol_schemas()[1]).validate(error)
        assert error["code"] == "unknown_symbol" and error["symbols"] == ["ZZZQ"]
        assert "ZZZQ" in error["message"]
        assert "ZZZQ" not in srv.node.demand()  # dropped from the hub and the feeds' demand

        # The stream goes on with the symbol that exists.
        quotes = (await events_until(events, "quotes"))[-1].json()
        assert {q["s"] for q in quotes["data"]} == {"AAPL"}


@pytest.mark.parametrize("options", ["", "&max_hz=2&delta=1"])
async def test_an_sse_stream_of_only_unknown_symbols_ends_after_saying_so(
    loading: InProcessServer, options: str
) -> None:
    srv = loading
    async with (
        httpx.AsyncClient(timeout=timeout(10)) as http,
        aconnect_sse(http, "GET", f"{srv.url}/sse?symbols=ZZZQ{options}") as source,
    ):
        assert source.response.status_code == 200
        events = source.aiter_sse()
        await events_until(events, "status")  # pending
        srv.node.runner.directory.replace("x", [])
        error = (await events_until(events, "error"))[-1].json()
        assert error["code"] == "unknown_symbol" and error["symbols"] == ["ZZZQ"]
        async with asyncio.timeout(timeout(5)):
            rest = [ev.event async for ev in events]
        assert rest == []  # nothing left to stream: the server ended the response
    assert not srv.node.demand() & {"ZZZQ"}
