"""Server-Sent Events end to end: a real server (in the test's event loop, or a process where the process is
what is tested) and a real SSE client (httpx-sse)."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import socket
import time
import weakref
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from websockets.asyncio.client import connect

from tests.support.inprocess import InProcessServer, serve_in_process
from tests.support.serverproc import ServerProcess, scrape_async
from tests.support.timing import eventually, timeout
from tests.support.wsclient import collect_quotes, recv


async def events(
    url: str, n: int, within: float = 10.0, **kw: Any
) -> tuple[httpx.Response, list[ServerSentEvent]]:
    """The first ``n`` events of the stream at ``url``, within ``within`` seconds (scaled)."""
    out: list[ServerSentEvent] = []
    limit = timeout(within)
    async with httpx.AsyncClient(timeout=limit) as http, aconnect_sse(http, "GET", url, **kw) as source:
        source.response.raise_for_status()
        async with asyncio.timeout(limit):
            async for ev in source.aiter_sse():
                out.append(ev)
                if len(out) == n:
                    break
        return source.response, out


async def test_stream_parses_with_a_real_sse_client(inprocess: InProcessServer):
    resp, evs = await events(inprocess.url + "/sse?symbols=aapl,MSFT", 20)
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["cache-control"] == "no-store"
    assert "content-encoding" not in resp.headers  # httpx asked for gzip: the stream is never compressed
    first = evs[0]
    assert first.event == "snapshot" and first.retry == 2000 and first.id
    snap = first.json()
    assert snap["type"] == "snapshot" and {e["s"] for e in snap["data"]} == {"AAPL", "MSFT"}
    last = {e["s"]: e["q"] for e in snap["data"]}
    for ev in evs[1:]:
        assert ev.event == "quotes"
        msg = ev.json()
        assert msg["type"] == "quotes"
        syms = [e["s"] for e in msg["data"]]
        assert len(syms) == len(set(syms)) and set(syms) <= {"AAPL", "MSFT"}
        for e in msg["data"]:
            assert {"s", "p", "t", "q"} <= e.keys()
            assert e["q"] > last[e["s"]]  # the same ordering rule as WebSocket
            last[e["s"]] = e["q"]


async def test_same_payloads_as_websocket(inprocess: InProcessServer):
    """An SSE and a WebSocket subscriber of the same symbols get the very same quotes payloads."""
    async with connect(inprocess.ws_url + "?symbols=NVDA,TSLA") as ws:
        await recv(ws)
        ws_task = asyncio.create_task(collect_quotes(ws, 2.0))
        _, evs = await events(inprocess.url + "/sse?symbols=NVDA,TSLA", 15)
        ws_entries = await ws_task
    sse_entries = {json.dumps(e, sort_keys=True) for ev in evs[1:] for e in ev.json()["data"]}
    common = sse_entries & {json.dumps(e, sort_keys=True) for e in ws_entries}
    assert len(common) >= len(sse_entries) - 2  # the first/last flush may fall outside the WS window


async def test_instance_id_is_stable_per_process_and_last_event_id_resumes(server: ServerProcess):
    _, a = await events(server.url + "/sse?symbols=AAPL", 1)
    _, b = await events(server.url + "/sse?symbols=AAPL", 1, headers={"Last-Event-ID": a[0].id})
    assert a[0].id == b[0].id
    assert (
        b[0].event == "snapshot" and b[0].json()["data"][0]["s"] == "AAPL"
    )  # a resume gets the full snapshot
    with ServerProcess(["--log-level", "warning"]) as other:
        _, c = await events(other.url + "/sse?symbols=AAPL", 1, headers={"Last-Event-ID": a[0].id})
        assert c[0].id != a[0].id


async def test_heartbeat_comments():
    async with serve_in_process(symbols=["QUIET"], sim_rate=0.001, ping_interval=0.3) as srv:
        lines: list[str] = []
        async with (
            httpx.AsyncClient(timeout=timeout(5)) as http,
            http.stream("GET", srv.url + "/sse?symbols=QUIET") as r,
        ):
            async with asyncio.timeout(timeout(5)):
                async for line in r.aiter_lines():
                    lines.append(line)
                    if lines.count(": hb") >= 3:
                        break
        assert lines[:2] == ["retry: 2000", lines[1]] and lines[1].startswith("id: ")
        assert lines.count(": hb") == 3


def _get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(url, headers=headers or {}, timeout=timeout(5))


async def _aget(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout(5)) as http:
        return await http.get(url, headers=headers or {})


@pytest.mark.parametrize(
    ("query", "code", "needle"),
    [
        ("symbols=AAPL,bad$", "invalid_symbol", "'bad$'"),
        ("symbols=", "bad_request", "symbols"),
        ("", "bad_request", "symbols"),
        (
            "symbols=" + ",".join(f"S{i}" for i in range(501)),
            "too_many_symbols",
            "501 symbols requested; the limit is 500 per connection",
        ),
    ],
)
async def test_bad_symbols_get_400_before_the_stream(
    inprocess: InProcessServer, query: str, code: str, needle: str
):
    r = await _aget(inprocess.url + "/sse?" + query)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["code"] == code and needle in err["message"]


async def test_closed_streams_are_freed_without_the_cycle_collector(inprocess: InProcessServer):
    # As for /ws (run.py freezes the collector): a closed stream must go by reference counting alone.
    node = inprocess.node
    enabled = gc.isenabled()
    gc.disable()
    try:
        async with httpx.AsyncClient(timeout=timeout(5)) as http, asyncio.TaskGroup() as streams:
            opened = asyncio.Semaphore(0)
            stop = asyncio.Event()

            async def stream() -> None:
                async with aconnect_sse(http, "GET", inprocess.url + "/sse?symbols=AAPL") as source:
                    events = source.aiter_sse()  # kept: closing the iterator would end the stream
                    assert (await anext(events)).event == "snapshot"
                    opened.release()
                    await stop.wait()

            for _ in range(10):
                streams.create_task(stream())
            for _ in range(10):
                await asyncio.wait_for(opened.acquire(), timeout(5))
            handlers = [weakref.ref(conn) for conn in node.connections]
            assert len(handlers) == 10
            stop.set()
        await eventually(lambda: node.connection_count() == 0, 5.0, "the server to see every close")

        def alive() -> int:
            return sum(ref() is not None for ref in handlers)

        await eventually(lambda: alive() == 0, 5.0, "every closed stream handler to be freed (gc disabled)")
    finally:
        if enabled:
            gc.enable()


async def test_origin_rules(inprocess: InProcessServer):
    r = await _aget(inprocess.url + "/sse?symbols=AAPL", {"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_origin"
    own = f"http://127.0.0.1:{inprocess.port}"
    resp, evs = await events(inprocess.url + "/sse?symbols=AAPL", 1, headers={"Origin": own})
    assert evs[0].event == "snapshot" and resp.headers["access-control-allow-origin"] == own


async def test_allowed_origins_flag_applies_to_sse():
    with ServerProcess(["--allowed-origins", "https://desk.example.com", "--log-level", "warning"]) as srv:
        ok = {"Origin": "https://desk.example.com"}
        _, evs = await events(srv.url + "/sse?symbols=AAPL", 1, headers=ok)
        assert evs[0].event == "snapshot"
        assert _get(srv.url + "/sse?symbols=AAPL", {"Origin": "https://other.example.com"}).status_code == 403


async def test_metrics_count_sse_connections(inprocess: InProcessServer):
    key = 'ticker_connections{transport="sse"}'
    before = await scrape_async(inprocess.url)
    async with (
        httpx.AsyncClient(timeout=timeout(5)) as http,
        aconnect_sse(http, "GET", inprocess.url + "/sse?symbols=AAPL") as s,
    ):
        it = s.aiter_sse()
        for _ in range(5):
            await anext(it)
        during = await scrape_async(inprocess.url)
        assert during[key] == before.get(key, 0) + 1
        assert during["ticker_subscriptions"] >= 1

    async def closed() -> dict[str, float] | None:
        m = await scrape_async(inprocess.url)
        return m if m[key] == before.get(key, 0) else None

    after = await eventually(closed, 5.0, "the SSE connection to be counted closed")
    assert after['ticker_connections_opened_total{transport="sse"}'] > before.get(
        'ticker_connections_opened_total{transport="sse"}', 0
    )
    assert after['ticker_connections_closed_total{reason="client",transport="sse"}'] >= 1
    assert after["ticker_frames_sent_total"] > before["ticker_frames_sent_total"]


async def test_shutdown_ends_the_stream_cleanly():
    with ServerProcess(["--log-level", "warning"]) as srv:
        async with (
            httpx.AsyncClient(timeout=timeout(10)) as http,
            aconnect_sse(http, "GET", srv.url + "/sse?symbols=AAPL") as s,
        ):
            it = s.aiter_sse()
            assert (await anext(it)).event == "snapshot"
            srv.signal(signal.SIGTERM)
            t0 = time.monotonic()
            async with asyncio.timeout(timeout(8)):
                async for _ in it:  # ends without a protocol error: the last chunk came
                    pass
            assert time.monotonic() - t0 < 5
        assert srv.wait(10) == 0


def _read_http_10_stream(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as s:
        s.sendall(f"GET /sse?symbols=AAPL HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        while data.count(b"event: quotes") < 3:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
    return data


async def test_http_10_gets_an_unchunked_stream(inprocess: InProcessServer):
    data = await asyncio.to_thread(_read_http_10_stream, inprocess.port)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert body.startswith(b"retry: 2000\nid: ")
    for block in body.split(b"\n\n")[1:3]:
        name, data_line = block.split(b"\n")
        assert name == b"event: quotes" and json.loads(data_line.removeprefix(b"data: "))["type"] == "quotes"


def stalled_sse_client(port: int, symbols: list[str]) -> socket.socket:
    """Open /sse with a tiny receive buffer, then never read."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(timeout(5))
    s.connect(("127.0.0.1", port))
    s.settimeout(None)
    s.sendall(f"GET /sse?symbols={','.join(symbols)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return s


async def test_stalled_sse_reader_is_conflated_then_closed():
    symbols = [f"S{i}" for i in range(50)]
    args = ["--symbols", ",".join(symbols), "--sim-rate", "200", "--flush-ms", "5"]
    args += ["--slow-bytes", "65536", "--slow-timeout", "2", "--log-level", "warning"]
    with ServerProcess(args) as srv:
        slow = await asyncio.to_thread(stalled_sse_client, srv.port, symbols)
        key = 'ticker_connections_closed_total{reason="slow_consumer",transport="sse"}'

        async def closed_slow() -> dict[str, float] | None:
            m = await scrape_async(srv.url)
            return m if m.get(key) == 1 else None

        m = await eventually(closed_slow, 40.0, "the stalled SSE reader to be closed", interval=0.2)
        # A counter: once conflated, it stays above 0.
        assert m["ticker_updates_conflated_total"] > 0, "the stalled reader was never conflated"
        assert m["ticker_slow_consumer_disconnects_total"] == 1
        assert m['ticker_connections{transport="sse"}'] == 0
        slow.settimeout(timeout(10))
        total = 0
        while chunk := slow.recv(1 << 16):  # the server closed it: draining ends in EOF
            total += len(chunk)
        slow.close()
        assert total > 65536
