"""Bar subscriptions end to end: ``subscribe_bars`` on WebSocket and ``/sse?bars=`` against real servers with the
simulated market (20 ticks/s), every message checked against docs/protocol.md's server schema."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jsonschema
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection, connect

from tests.support.fakes.slowhistory import SlowHistoryFeed
from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.schemas import protocol_schemas
from tests.support.serverproc import serving
from tests.support.timing import timeout
from tests.support.tokens import SECRET, bearer, mint
from tests.support.wsclient import recv, recv_until, send
from ticker.auth.options import AuthOptions

SCHEMA = jsonschema.Draft202012Validator(protocol_schemas()[1])


async def valid(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    msg = await recv(ws, within)
    SCHEMA.validate(msg)
    return msg


async def test_bars_then_live_bars_that_close_at_the_latest_quote_price(inprocess: InProcessServer):
    async with connect(inprocess.ws_url + "?symbols=AAPL") as ws:
        await send(ws, {"op": "subscribe_bars", "symbol": "aapl", "interval": "1s", "history": 5})
        await send(ws, {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 50})
        quotes: list[dict[str, Any]] = []
        history: dict[str, dict[str, Any]] = {}
        checked = 0
        async with asyncio.timeout(timeout(15)):
            while checked < 15:
                msg = await valid(ws)
                if msg["type"] in ("snapshot", "quotes"):
                    quotes += msg["data"]
                elif msg["type"] == "bars":
                    history[msg["interval"]] = msg
                elif msg["type"] == "bar":
                    assert msg["interval"] in history, "a bar before its subscription's history"
                    bar, length = msg["bar"], 1000 if msg["interval"] == "1s" else 60_000
                    inside = [q for q in quotes if bar["t"] <= q["t"] < bar["t"] + length]
                    assert inside, msg
                    assert bar["c"] == inside[-1]["p"], (bar, inside[-1])  # same flush: quotes then bars
                    assert bar["l"] <= bar["c"] <= bar["h"]
                    checked += 1
        assert history["1m"]["s"] == "AAPL" and history["1m"]["delayed"] is False
        assert 1 <= len(history["1m"]["data"]) <= 50  # the simulated market's session history
        ts = [b["t"] for b in history["1m"]["data"]]
        assert ts == sorted(ts) and all(t % 60_000 == 0 for t in ts)
        assert len(history["1s"]["data"]) <= 5
        assert inprocess.node.hub.symbols_of(next(iter(inprocess.node.connections))) == {"AAPL"}


async def test_two_subscribers_get_byte_identical_bar_frames_and_unsubscribe_stops_them(
    inprocess: InProcessServer,
):
    async with connect(inprocess.ws_url) as a, connect(inprocess.ws_url) as b:
        for ws in (a, b):
            await send(ws, {"op": "subscribe_bars", "symbol": "MSFT", "interval": "1s", "history": 0})
            assert (await valid(ws))["data"] == []

        async def raw_bars(ws: ClientConnection, n: int) -> list[str | bytes]:
            return [await asyncio.wait_for(ws.recv(), timeout(5)) for _ in range(n)]

        got_a, got_b = await asyncio.gather(raw_bars(a, 12), raw_bars(b, 8))
        # a went live one round trip before b (maybe a flush or two earlier): from b's first frame on, both
        # got every flush, the same bytes in the same order
        assert all('"type":"bar"' in f for f in got_a + got_b)
        assert any(got_a[i : i + len(got_b)] == got_b for i in range(len(got_a) - len(got_b) + 1)), (
            got_a,
            got_b,
        )
        await send(a, {"op": "unsubscribe_bars", "symbol": "MSFT", "interval": "1s"})
        await recv_until(a, lambda m: m["type"] == "bars_unsubscribed")
        extra: list[Any] = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):  # b keeps getting bars meanwhile: a gets none
                while True:
                    extra.append(await recv(a, 2.0))
        assert extra == [] and inprocess.node.bar_hub.demand() == {"MSFT"}
        assert (await valid(b))["type"] == "bar"


async def test_history_slower_than_the_wait_comes_as_one_more_bars_without_resubscribing():
    feed = SlowHistoryFeed(symbols=["AAPL", "MSFT"], rate=20.0, seed=7)
    url_sse = "/sse?bars=AAPL:1m,MSFT:5m&history=300"
    async with (
        serve_in_process(feed=feed) as srv,
        connect(srv.ws_url) as ws,
        httpx.AsyncClient(timeout=timeout(15)) as http,
    ):
        await send(ws, {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 300})
        async with aconnect_sse(http, "GET", srv.url + url_sse) as source:  # opens after the wait
            source.response.raise_for_status()
            events = source.aiter_sse()

            async def next_event() -> dict[str, Any]:
                ev = await asyncio.wait_for(anext(events), timeout(10))
                msg = ev.json()
                SCHEMA.validate(msg)
                assert ev.event == msg["type"]
                return msg

            first = await valid(ws, 10)  # the wait ran out: what the book had (the live quotes' bars)
            assert first["type"] == "bars" and (first["s"], first["interval"]) == ("AAPL", "1m")
            assert len(first["data"]) <= 2 and not feed.gate.is_set()
            opening = [await next_event() for _ in range(3)]
            assert [m["type"] for m in opening] == ["snapshot", "bars", "bars"]
            assert all(len(m["data"]) <= 2 for m in opening[1:])
            # the stream's symbols were loaded side by side, not one wait after the other
            assert abs(feed.asked_at["AAPL"] - feed.asked_at["MSFT"]) < 1.5, feed.asked_at

            feed.gate.set()  # the provider answers at last
            again = await recv_until(ws, lambda m: m["type"] == "bars", within=10)
            SCHEMA.validate(again)
            assert (again["s"], again["interval"], again["delayed"]) == ("AAPL", "1m", False)
            ts = [b["t"] for b in again["data"]]
            assert (
                len(ts) == 300
                and ts == sorted(ts)
                and ts[-1] >= max((b["t"] for b in first["data"]), default=0)
            )
            live = await recv_until(ws, lambda m: m["type"] == "bar", within=10)  # still live, no resubscribe
            assert live["bar"]["t"] >= ts[-1]
            resent: dict[tuple[str, str], dict[str, Any]] = {}
            async with asyncio.timeout(timeout(10)):
                while len(resent) < 2:
                    msg = await next_event()
                    if msg["type"] == "bars":
                        resent[msg["s"], msg["interval"]] = msg
            # as many as the book holds (four days of 5m bars may be fewer than 300 after a holiday or weekend)
            msft = [b["t"] for b in resent["MSFT", "5m"]["data"]]
            query = f"/api/bars?symbol=MSFT&interval=5m&limit=300&to={msft[-1] + 1}"
            rest = (await http.get(srv.url + query)).json()["bars"]
            assert 250 <= len(rest) <= 300 and msft == [b["t"] for b in rest]
            assert len(resent["AAPL", "1m"]["data"]) == 300
            assert resent["AAPL", "1m"] == again  # one payload per key, interval and history


async def test_the_cap_refuses_past_max_bar_subscriptions_and_bad_requests_are_answered():
    async with (
        serving("--sim-rate", "20", "--seed", "7", "--max-bar-subscriptions", "2") as srv,
        connect(srv.ws_url) as ws,
    ):
        for interval in ("1s", "1m"):
            await send(ws, {"op": "subscribe_bars", "symbol": "AAPL", "interval": interval, "history": 1})
            SCHEMA.validate(await recv_until(ws, lambda m: m["type"] == "bars"))
        await send(ws, {"op": "subscribe_bars", "symbol": "MSFT", "interval": "1m"})
        err = await recv_until(ws, lambda m: m["type"] == "error")
        SCHEMA.validate(err)
        assert err["code"] == "too_many_bar_subscriptions" and "limit is 2" in err["message"]
        for bad, code in (
            ({"op": "subscribe_bars", "symbol": "AAPL", "interval": "2m"}, "bad_request"),
            ({"op": "subscribe_bars", "symbol": "APPL", "interval": "1m"}, "unknown_symbol"),
            (
                {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1m", "history": 9999},
                "bad_request",
            ),
        ):
            await send(ws, {"op": "unsubscribe_bars", "symbol": "AAPL", "interval": "1m"})
            await recv_until(ws, lambda m: m["type"] == "bars_unsubscribed")
            await send(ws, bad)
            err = await recv_until(ws, lambda m: m["type"] == "error")
            SCHEMA.validate(err)
            assert err["code"] == code, err


async def test_a_delayed_user_gets_no_bar_newer_than_the_delay(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TICKER_JWT_SECRET", SECRET)
    delay = 2.0
    access = AuthOptions(auth="jwt", delay=delay)
    async with serve_in_process(symbols=["AAPL", "MSFT"], sim_rate=20.0, access=access) as srv:
        tok = mint(sub="late", realtime=["MSFT"], delayed=["AAPL"])
        async with connect(srv.ws_url, additional_headers=bearer(tok)) as ws:
            await send(ws, {"op": "subscribe_bars", "symbol": "AAPL", "interval": "1s", "history": 100})
            first = await valid(ws, 10)
            assert first["type"] == "bars" and first["delayed"] is True
            horizon = time.time() * 1000 - delay * 1000
            assert all(b["t"] + 1000 <= horizon for b in first["data"])
            bars: list[tuple[float, dict[str, Any]]] = []
            async with asyncio.timeout(timeout(12)):
                while len(bars) < 3:
                    msg = await valid(ws, 5)
                    assert msg["type"] == "bar" and msg["s"] == "AAPL"
                    bars.append((time.time() * 1000, msg["bar"]))
            for at, bar in bars:
                assert bar["t"] + 1000 <= at - delay * 1000, (at, bar)  # ended at least the delay ago
            ts = [b["t"] for _, b in bars]
            assert ts == sorted(ts) and len(set(ts)) == len(ts)  # each completed bar once, in order
            await send(ws, {"op": "subscribe_bars", "symbol": "NVDA", "interval": "1m"})
            err = await recv_until(ws, lambda m: m["type"] == "error")
            assert err["code"] == "forbidden_symbol" and err["symbols"] == ["NVDA"]


async def test_sse_bars_then_bar_events_with_the_websocket_payloads(inprocess: InProcessServer):
    url = inprocess.url + "/sse?bars=aapl:1s,MSFT:1m&history=3"
    events: list[tuple[str, dict[str, Any]]] = []
    async with httpx.AsyncClient(timeout=timeout(10)) as http, aconnect_sse(http, "GET", url) as source:
        source.response.raise_for_status()
        async with asyncio.timeout(timeout(10)):
            async for ev in source.aiter_sse():
                msg = ev.json()
                SCHEMA.validate(msg)
                assert ev.event == msg["type"]
                events.append((ev.event, msg))
                if sum(1 for e, _ in events if e == "bar") >= 5:
                    break
    kinds = [e for e, _ in events]
    assert kinds[:3] == ["snapshot", "bars", "bars"] and set(kinds[3:]) == {"bar"}
    assert events[0][1]["data"] == []  # no symbols=: an empty snapshot
    assert [(m["s"], m["interval"]) for _, m in events[1:3]] == [("AAPL", "1s"), ("MSFT", "1m")]
    assert all(len(m["data"]) <= 3 for _, m in events[1:3])
    assert {(m["s"], m["interval"]) for _, m in events[3:]} <= {("AAPL", "1s"), ("MSFT", "1m")}


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("bars=AAPL", 400, "bad_request"),
        ("bars=AAPL:2m", 400, "bad_request"),
        ("bars=b$d:1m", 400, "invalid_symbol"),
        ("bars=APPL:1m", 400, "unknown_symbol"),
        ("bars=AAPL:1m&history=-1", 400, "bad_request"),
        ("bars=AAPL:1m&history=%C2%B2", 400, "bad_request"),  # "²" is a digit to str.isdigit, not to int()
        ("bars=AAPL:1m&history=" + "9" * 4400, 400, "bad_request"),  # past int()'s 4,300 digits
        (
            "bars=" + ",".join(f"AAPL:{i}" for i in ("1s", "1m", "5m", "1h", "1d")) + ",MSFT:1m",
            400,
            "too_many_bar_subscriptions",
        ),
    ],
)
async def test_sse_bar_refusals_come_before_the_stream(query: str, status: int, code: str):
    async with (
        serve_in_process(max_bar_subscriptions=5) as srv,
        httpx.AsyncClient(timeout=timeout(10)) as http,
    ):
        resp = await http.get(f"{srv.url}/sse?{query}")
        assert resp.status_code == status and resp.json()["error"]["code"] == code, resp.text
