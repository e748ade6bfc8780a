"""``GET /api/bars`` against real servers: history of the simulated market, live bars, a replay, errors,
the symbol rules of ``/api/quotes``, and a delayed user's view. Every body is checked against the schema."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from websockets.asyncio.client import connect

from tests.support.schemas import http_schema
from tests.support.serverproc import ServerProcess, serving
from tests.support.symbolkit import write_recording
from tests.support.timing import eventually, timeout
from tests.support.tokens import SECRET, bearer, mint

LENGTH = {"1s": 1_000, "1m": 60_000, "5m": 300_000, "1h": 3_600_000}
VALIDATOR = jsonschema.Draft202012Validator(http_schema())


def checked(r: httpx.Response, status: int = 200) -> Any:
    """The body of ``r``, which answered ``status`` with a body the documented schema accepts."""
    assert r.status_code == status, r.text
    assert (
        r.headers["content-type"].startswith("application/json") and r.headers["cache-control"] == "no-store"
    )
    body = r.json()
    VALIDATOR.validate(body)
    return body


def well_formed(bars: list[dict[str, Any]], interval: str) -> None:
    """Oldest first, no repeated start, aligned (below a day), and each low <= open, close <= high."""
    starts = [b["t"] for b in bars]
    assert starts == sorted(set(starts))
    for b in bars:
        assert b["l"] <= min(b["o"], b["c"]) <= max(b["o"], b["c"]) <= b["h"] and b["v"] >= 0
        if interval in LENGTH:
            assert b["t"] % LENGTH[interval] == 0


@pytest.fixture(scope="module")
def sim() -> Any:
    with ServerProcess(
        ["--host", "127.0.0.1", "--seed", "7", "--sim-rate", "20", "--log-level", "warning"]
    ) as srv:
        yield srv


@pytest.fixture
async def http(sim: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=timeout(10)) as client:
        yield client


async def test_a_fresh_server_has_history_of_a_symbol_nobody_receives(http: httpx.AsyncClient):
    got = {}
    for interval in ("1m", "5m", "1h", "1d"):
        body = checked(await http.get("/api/bars", params={"symbol": "aapl", "interval": interval}))
        assert body["s"] == "AAPL" and body["interval"] == interval
        well_formed(body["bars"], interval)
        got[interval] = body["bars"]
    assert len(got["1m"]) == 500 and len(got["1d"]) > 200  # the default limit; a year of days
    now = time.time() * 1000
    assert now - 10 * 60_000 < got["1m"][-1]["t"] <= now  # up to now
    assert len(checked(await http.get("/api/bars?symbol=AAPL&interval=1m&limit=5000"))["bars"]) > 500
    seconds = checked(await http.get("/api/bars?symbol=AAPL&interval=1s&limit=5000"))["bars"]
    assert all(b["t"] > now - 20 * 60_000 for b in seconds)  # 1s: only live bars (no history), 15 minutes


async def test_limit_and_range_page_through_the_history(http: httpx.AsyncClient):
    every = checked(await http.get("/api/bars?symbol=MSFT&interval=1m&limit=5000"))["bars"]
    t = [b["t"] for b in every]
    assert len(t) > 20

    async def starts(query: str) -> list[int]:
        bars = checked(await http.get(f"/api/bars?symbol=MSFT&interval=1m&{query}"))["bars"]
        return [b["t"] for b in bars]

    assert await starts("limit=3") == t[-3:] or (await starts("limit=3"))[:2] == t[-2:]  # a minute may open
    assert await starts(f"from={t[5]}&limit=4") == t[5:9]  # paging forward: the oldest after from
    assert await starts(f"to={t[10]}&limit=4") == t[6:10]  # paging backward: the newest before to
    assert await starts(f"from={t[2]}&to={t[7]}") == t[2:7]  # [from, to)
    assert await starts(f"from={t[3]}&to={t[3]}") == []


async def test_live_bars_form_for_a_subscribed_symbol(sim: ServerProcess, http: httpx.AsyncClient):
    async with connect(sim.ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "symbols": ["NVDA"]}))

        async def seconds() -> list[dict[str, Any]]:
            bars = checked(await http.get("/api/bars?symbol=NVDA&interval=1s"))["bars"]
            return bars if len(bars) >= 3 else []

        bars = await eventually(seconds, 15, "three 1s bars of live NVDA quotes")
        well_formed(bars, "1s")
        minute = checked(await http.get("/api/bars?symbol=NVDA&interval=1m&limit=1"))["bars"][0]
        assert minute["t"] <= bars[-1]["t"] < minute["t"] + 60_000  # the live minute holds the live second
        assert minute["l"] <= bars[-1]["c"] <= minute["h"]


@pytest.mark.parametrize(
    ("query", "code", "needle"),
    [
        (
            "symbol=AAPL&interval=2m",
            "bad_request",
            "invalid interval '2m': expected one of 1s, 1m, 5m, 1h, 1d",
        ),
        ("symbol=AAPL&interval=1M", "bad_request", "invalid interval"),
        ("symbol=AAPL", "bad_request", '"interval" is required'),
        ("interval=1m", "bad_request", '"symbol" is required'),
        (
            "symbol=AAPL&interval=1m&from=yesterday",
            "bad_request",
            '"from" must be a time in epoch milliseconds',
        ),
        ("symbol=AAPL&interval=1m&to=-5", "bad_request", '"to" must be'),
        ("symbol=AAPL&interval=1m&from=20&to=10", "bad_request", '"from" (20) is after "to" (10)'),
        ("symbol=AAPL&interval=1m&limit=0", "bad_request", '"limit" must be a whole number from 1 to 5000'),
        ("symbol=AAPL&interval=1m&limit=5001", "bad_request", "from 1 to 5000"),
        ("symbol=AAPL&interval=1m&limit=ten", "bad_request", "from 1 to 5000"),
        ("symbol=bad$&interval=1m", "invalid_symbol", "'bad$'"),
    ],
)
async def test_bad_requests_get_a_clear_400(http: httpx.AsyncClient, query: str, code: str, needle: str):
    err = checked(await http.get(f"/api/bars?{query}"), 400)["error"]
    assert err["code"] == code and needle in err["message"]


async def test_an_unknown_symbol_gets_suggestions_as_in_api_quotes(http: httpx.AsyncClient):
    bars = checked(await http.get("/api/bars?symbol=APPL&interval=1m"), 400)["error"]
    quotes = checked(await http.get("/api/quotes?symbols=APPL"), 400)["error"]
    assert bars == quotes and bars["code"] == "unknown_symbol" and "AAPL" in bars["suggestions"]["APPL"]


async def test_bars_of_a_replay_are_made_of_its_quotes(tmp_path: Path):
    recording = write_recording(tmp_path / "rising.jsonl", ["AAPL"], seconds=6)  # 100, 101, ... every 100 ms
    async with (
        serving("--feed", "replay", "--replay-file", str(recording), "--log-level", "warning") as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=timeout(10)) as http,
        connect(srv.ws_url) as ws,
    ):
        await ws.send(json.dumps({"op": "subscribe", "symbols": ["AAPL"]}))

        async def seconds() -> list[dict[str, Any]]:
            bars = checked(await http.get("/api/bars?symbol=AAPL&interval=1s"))["bars"]
            return bars if len(bars) >= 3 else []

        bars = await eventually(seconds, 20, "three 1s bars of the replay")
        well_formed(bars, "1s")
        for b in bars:  # prices only rise: each bar opens at its low and closes at its high
            assert 100 <= b["o"] == b["l"] <= b["c"] == b["h"] and b["v"] == 0  # the recording has no volume
        full = bars[1]  # a whole second between two others: about ten quotes
        assert 7 <= full["c"] - full["o"] <= 11


@pytest.fixture(scope="module")
def jwt_server() -> Any:
    args = ["--host", "127.0.0.1", "--seed", "7", "--auth", "jwt", "--delay", "180", "--log-level", "warning"]
    with ServerProcess(args, env={"TICKER_JWT_SECRET": SECRET}) as srv:
        yield srv


async def test_auth_forbidden_and_delayed_bars(jwt_server: ServerProcess):
    token = mint(realtime=["AAPL"], delayed=["MSFT"])
    async with httpx.AsyncClient(base_url=jwt_server.url, timeout=timeout(10), headers=bearer(token)) as http:
        err = checked(await http.get("/api/bars?symbol=AAPL&interval=1m", headers={"Authorization": ""}), 401)
        assert err["error"]["code"] == "unauthorized"
        err = checked(await http.get("/api/bars?symbol=KO&interval=1m"), 403)
        assert err["error"]["code"] == "forbidden_symbol"
        err = checked(await http.get("/api/bars?symbol=APPL&interval=1m"), 400)["error"]
        assert err["code"] == "unknown_symbol" and err["suggestions"]["APPL"] == [
            "AAPL"
        ]  # not APP: forbidden

        realtime = checked(await http.get("/api/bars?symbol=AAPL&interval=1m"))["bars"]
        now = time.time() * 1000
        assert realtime and realtime[-1]["t"] > now - 120_000  # the current minute or the one before
        for interval in ("1m", "5m", "1d"):
            delayed = checked(await http.get(f"/api/bars?symbol=MSFT&interval={interval}&limit=5000"))["bars"]
            horizon = time.time() * 1000 - 180_000  # the server's horizon was no later than this
            assert delayed, interval
            well_formed(delayed, interval)
            last = delayed[-1]["t"]
            end = last + LENGTH[interval] if interval in LENGTH else None
            if end is not None:
                assert end <= horizon, (interval, last, horizon)
                assert end > horizon - 3 * LENGTH[interval]  # and nothing ended earlier is held back
            else:  # 1d: today's bar has not ended, so the last one is an earlier session's
                assert last < horizon - 12 * 3_600_000
