"""The WebSocket protocol end to end: a real server (in the test's event loop, or a process where a flag is
what is tested) and real WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import weakref
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.serverproc import ServerProcess, scrape_async
from tests.support.timing import eventually, timeout
from tests.support.wsclient import (
    collect_frames,
    collect_quotes,
    frames_until_close,
    open_raw_ws,
    recv,
    recv_until,
    send,
    stalled_client,
)
from tests.support.wsframes import client_frame


async def test_subscribe_snapshot_updates_unsubscribe(inprocess: InProcessServer):
    async with connect(inprocess.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": ["aapl", "MSFT"]})
        assert await recv(ws) == {
            "type": "subscribed",
            "symbols": ["AAPL", "MSFT"],
            "delayed": [],
            "rates": {},
        }
        snap = await recv(ws)
        assert snap["type"] == "snapshot"
        assert {e["s"] for e in snap["data"]} == {"AAPL", "MSFT"}
        for e in snap["data"]:
            assert {"s", "p", "t", "q"} <= e.keys() and e["b"] < e["a"]
        entries = await collect_quotes(ws, 1.0)
        assert {e["s"] for e in entries} == {"AAPL", "MSFT"}
        last_q: dict[str, int] = {e["s"]: e["q"] for e in snap["data"]}
        for e in entries:  # per-symbol sequence never goes back
            assert e["q"] >= last_q[e["s"]]
            last_q[e["s"]] = e["q"]
        await send(ws, {"op": "unsubscribe", "symbols": ["aapl"]})
        await recv_until(ws, lambda m: m["type"] == "subscribed")
        frames = await collect_frames(ws, 1.0)
        # A flush already on the wire when the unsubscribe was handled may still carry AAPL: one at most.
        assert len(frames) > 1 and all({e["s"] for e in f} == {"MSFT"} for f in frames[1:]), frames
        assert {e["s"] for e in frames[0]} <= {"AAPL", "MSFT"}


async def test_at_most_one_entry_per_symbol_per_frame(inprocess: InProcessServer):
    async with connect(inprocess.ws_url + "?symbols=AAPL,MSFT,NVDA") as ws:
        frames = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.5
        while loop.time() < end:
            m = await recv(ws)
            if m["type"] == "quotes":
                frames += 1
                syms = [e["s"] for e in m["data"]]
                assert len(syms) == len(set(syms))
        assert frames > 5


async def test_query_subscribe_at_connect(inprocess: InProcessServer):
    async with connect(inprocess.ws_url + "?symbols=nvda,TSLA") as ws:
        assert await recv(ws) == {
            "type": "subscribed",
            "symbols": ["NVDA", "TSLA"],
            "delayed": [],
            "rates": {},
        }
        assert (await recv(ws))["type"] == "snapshot"


async def test_many_clients_each_get_exactly_their_symbols(inprocess: InProcessServer):
    sets = [["AAPL"], ["AAPL", "MSFT"], ["MSFT", "NVDA"], ["NVDA"], ["AAPL", "MSFT", "NVDA"], ["AMZN"]] * 3
    conns = [await connect(inprocess.ws_url) for _ in sets]
    try:
        for ws, syms in zip(conns, sets, strict=True):
            await send(ws, {"op": "subscribe", "symbols": syms})
        got = await asyncio.gather(*(collect_quotes(ws, 1.5) for ws in conns))
        for entries, syms in zip(got, sets, strict=True):
            assert {e["s"] for e in entries} == set(syms)
    finally:
        await asyncio.gather(*(ws.close() for ws in conns))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{nope", "bad_json"),
        ('["subscribe"]', "bad_request"),
        ('{"op":"subscribe","symbols":"AAPL"}', "bad_request"),
        ('{"op":"teleport"}', "unknown_op"),
        ('{"op":"subscribe","symbols":["AAPL$"]}', "invalid_symbol"),
    ],
)
async def test_errors_keep_the_connection_open(inprocess: InProcessServer, frame: str, code: str):
    async with connect(inprocess.ws_url) as ws:
        await ws.send(frame)
        err = await recv(ws)
        assert err["type"] == "error" and err["code"] == code and err["message"]
        await send(ws, {"op": "ping", "id": 42})
        assert await recv_until(ws, lambda m: m["type"] == "pong") == {"type": "pong", "id": 42}


async def test_invalid_symbol_is_named_and_valid_ones_still_subscribe(inprocess: InProcessServer):
    async with connect(inprocess.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": ["AAPL", "no good", "MSFT"]})
        err = await recv(ws)
        assert err["code"] == "invalid_symbol" and "'no good'" in err["message"]
        assert await recv(ws) == {
            "type": "subscribed",
            "symbols": ["AAPL", "MSFT"],
            "delayed": [],
            "rates": {},
        }


async def test_binary_frame_is_refused(inprocess: InProcessServer):
    async with connect(inprocess.ws_url) as ws:
        await ws.send(b'{"op":"ping"}')
        err = await recv(ws)
        assert err["code"] == "bad_request"


async def test_too_many_symbols():
    async with serve_in_process(unknown_symbols="allow") as srv, connect(srv.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": [f"S{i}" for i in range(501)]})
        err = await recv(ws)
        assert err["code"] == "too_many_symbols"
        await send(ws, {"op": "subscribe", "symbols": [f"S{i}" for i in range(500)]})
        sub = await recv(ws)
        assert sub["type"] == "subscribed" and len(sub["symbols"]) == 500


async def test_too_many_symbols_names_the_whole_subscription():
    async with serve_in_process(unknown_symbols="allow") as srv, connect(srv.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": [f"S{i}" for i in range(400)]})
        assert len((await recv(ws))["symbols"]) == 400
        await send(ws, {"op": "subscribe", "symbols": [f"T{i}" for i in range(101)]})
        err = await recv_until(ws, lambda m: m["type"] == "error")  # quotes of the first 400 may come first
        assert err["message"] == "subscription would hold 501 symbols; the limit is 500 per connection"


async def test_closed_connections_are_freed_without_the_cycle_collector(inprocess: InProcessServer):
    # run.py freezes the collector and raises its thresholds: a handler kept by a reference cycle would
    # stay until a full collection. A closed connection must go by reference counting alone.
    node = inprocess.node
    enabled = gc.isenabled()
    gc.disable()
    try:
        clients = [await connect(inprocess.ws_url + "?symbols=AAPL") for _ in range(20)]
        for ws in clients:
            assert (await recv(ws))["type"] == "subscribed"  # opened, registered, subscribed
        await send(clients[0], {"op": "ping", "id": 1})
        await recv_until(clients[0], lambda m: m["type"] == "pong")
        handlers = [weakref.ref(conn) for conn in node.connections]
        assert len(handlers) == 20
        await asyncio.gather(*(ws.close() for ws in clients))
        await eventually(lambda: node.connection_count() == 0, 5.0, "the server to see every close")

        def alive() -> int:
            return sum(ref() is not None for ref in handlers)

        await eventually(lambda: alive() == 0, 5.0, "every closed handler to be freed (gc disabled)")
    finally:
        if enabled:
            gc.enable()


async def test_oversize_frame_closes_1009(inprocess: InProcessServer):
    async with connect(inprocess.ws_url, max_size=None) as ws:
        await ws.send("x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout(5))
        assert ws.close_code == 1009


async def test_frame_at_the_limit_is_accepted(inprocess: InProcessServer):
    async with connect(inprocess.ws_url) as ws:
        frame = json.dumps({"op": "ping", "id": 7, "pad": "y" * (64 * 1024 - 40)})  # unknown fields: ignored
        assert len(frame) <= 64 * 1024
        await ws.send(frame)
        assert (await recv_until(ws, lambda m: m["type"] == "pong"))["id"] == 7


async def test_flood_is_rate_limited_then_closed(inprocess: InProcessServer):
    """400 pings in one write (a raw socket: a client still writing when the server resets the connection
    would lose what it had not read yet): ``rate_limited`` errors, then a Close 1008."""
    pings = b"".join(client_frame(0x1, orjson.dumps({"op": "ping", "id": i})) for i in range(400))

    def flood() -> tuple[list[tuple[int, bytes]], int | None]:
        with open_raw_ws(inprocess.port) as s:
            with contextlib.suppress(OSError):  # the server may close before taking them all
                s.sendall(pings)
            return frames_until_close(s)

    frames, code = await asyncio.to_thread(flood)
    msgs = [orjson.loads(payload) for op, payload in frames if op == 0x1]
    assert "rate_limited" in [m["code"] for m in msgs if m["type"] == "error"]
    assert {m["type"] for m in msgs} == {"pong", "error"}
    assert code == 1008


async def test_foreign_origin_refused_same_host_allowed(inprocess: InProcessServer):
    with pytest.raises(InvalidStatus) as info:
        await connect(inprocess.ws_url, origin="http://evil.example")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    async with connect(inprocess.ws_url, origin=f"http://127.0.0.1:{inprocess.port}") as ws:  # type: ignore[arg-type]
        await send(ws, {"op": "ping", "id": 1})
        assert (await recv(ws))["type"] == "pong"


async def test_allowed_origins_flag():
    with ServerProcess(["--allowed-origins", "https://desk.example.com", "--log-level", "warning"]) as srv:
        async with connect(srv.ws_url, origin="https://desk.example.com") as ws:  # type: ignore[arg-type]
            await send(ws, {"op": "ping", "id": 1})
            assert (await recv(ws))["type"] == "pong"
        with pytest.raises(InvalidStatus):
            await connect(srv.ws_url, origin="https://other.example.com")  # type: ignore[arg-type]


async def test_metrics_move(inprocess: InProcessServer):
    before = await scrape_async(inprocess.url)
    async with connect(inprocess.ws_url + "?symbols=AAPL,MSFT") as ws:
        await collect_quotes(ws, 1.0)
        await ws.send("garbage")
        await recv_until(ws, lambda m: m["type"] == "error")
        during = await scrape_async(inprocess.url)
        assert during['ticker_connections{transport="ws"}'] >= 1
        assert during["ticker_subscriptions"] >= 2
        assert during["ticker_symbols_active"] >= 2
    after = await scrape_async(inprocess.url)
    for name in (
        "ticker_frames_sent_total",
        "ticker_updates_sent_total",
        "ticker_bytes_sent_total",
        "ticker_fanout_latency_seconds_count",
        'ticker_feed_updates_total{feed="simulated"}',
    ):
        assert after[name] > before.get(name, 0), name
    assert after['ticker_client_errors_total{code="bad_json"}'] >= 1
    assert after['ticker_feed_up{feed="simulated"}'] == 1
    assert after["ticker_bytes_sent_total"] > after["ticker_updates_sent_total"] * 20


async def _get(url: str) -> tuple[int, httpx.Headers, Any]:
    async with httpx.AsyncClient(timeout=timeout(5)) as http:
        r = await http.get(url)
    return r.status_code, r.headers, r.json() if r.headers["content-type"] == "application/json" else r.text


async def test_http_endpoints(inprocess: InProcessServer):
    status, headers, body = await _get(inprocess.url + "/api/quotes?symbols=aapl,MSFT")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert {e["s"] for e in body["data"]} == {"AAPL", "MSFT"}
    status, _, body = await _get(inprocess.url + "/api/quotes?symbols=AAPL,bad$")
    assert status == 400 and body["error"]["code"] == "invalid_symbol" and "bad$" in body["error"]["message"]
    status, _, body = await _get(inprocess.url + "/api/symbols")
    assert status == 200 and "AAPL" in body["symbols"] and len(body["symbols"]) >= 30
    assert (await _get(inprocess.url + "/healthz"))[0] == 200
    status, _, body = await _get(inprocess.url + "/readyz")
    assert status == 200 and body["status"] == "ready"
    status, headers, page = await _get(inprocess.url + "/")
    assert status == 200 and "<html" in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]


async def test_readyz_fails_when_the_feed_stops_producing():
    # A replay-free way to starve the feed: a sim rate so low nothing ticks within stale_after.
    quiet = serve_in_process(symbols=["QUIET"], sim_rate=0.001, stale_after=1.0)
    async with quiet as srv, connect(srv.ws_url + "?symbols=QUIET") as ws:
        await recv(ws)

        async def not_ready() -> Any:
            status, _, body = await _get(srv.url + "/readyz")
            return body if status == 503 else None

        body = await eventually(not_ready, 5.0, "/readyz to answer 503 once the feed is quiet")
        assert "no data" in body["reason"]


async def test_peer_that_never_answers_pings_is_dropped_while_live_ones_stay():
    pinging = serve_in_process(sim_rate=5.0, ping_interval=0.5, ping_timeout=0.5)
    # The live client is a websockets client: it answers pings itself.
    async with pinging as srv, connect(srv.ws_url + "?symbols=AAPL") as live:
        mute = await asyncio.to_thread(stalled_client, srv.port, ["AAPL"])
        mute.settimeout(timeout(10))
        got = b""
        while chunk := await asyncio.to_thread(mute.recv, 1 << 16):  # read, but never answer a ping
            got += chunk
        assert b"\x89\x04" in got  # it was pinged (a 4-byte nonce) before being dropped
        mute.close()
        # The scenario: the live client stays through several more ping rounds (3 x 0.5 s)...
        await asyncio.sleep(1.5)
        assert await collect_quotes(live, 0.5)
        closed = 'ticker_connections_closed_total{reason="ping_timeout",transport="ws"}'

        async def dropped_once() -> dict[str, float] | None:
            m = await scrape_async(srv.url)
            return m if m.get(closed) == 1 else None

        # ... and the metrics show the one drop (counted once its close completed) and the live client.
        m = await eventually(dropped_once, 5.0, "the ping_timeout close in the metrics")
        assert m['ticker_connections{transport="ws"}'] == 1
