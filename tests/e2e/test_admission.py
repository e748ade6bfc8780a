"""Per-IP admission against a real server: connections per address (429), connect rate per address (429)
and per process (503), the REST request rate (429), each with ``Retry-After`` and the documented body,
counted in ``ticker_connections_refused_total``; addresses behind ``--trusted-proxies``; an honest client
with backoff still gets in."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.support.serverproc import ServerProcess, scrape_async, serving
from tests.support.timing import eventually, timeout
from ticker.client import TickerClient

SSE = "/sse?symbols=AAPL"


def refused_key(transport: str, reason: str) -> str:
    """The sample of ``ticker_connections_refused_total`` for ``transport`` and ``reason``."""
    return f'ticker_connections_refused_total{{reason="{reason}",transport="{transport}"}}'


async def ws_refusal(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of a WebSocket handshake that must be refused."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers=headers, open_timeout=timeout(5)):
            pass
    resp = info.value.response
    return resp.status_code, dict(resp.headers), orjson.loads(resp.body or b"null")


async def sse_status(srv: ServerProcess) -> httpx.Response:
    """The answer to ``GET /sse`` that must be a refusal (its body is read in full)."""
    async with httpx.AsyncClient(timeout=timeout(5)) as http:
        resp = await http.get(srv.url + SSE)
    assert resp.headers["content-type"].startswith("application/json")
    return resp


def retry_after(headers: dict[str, str] | httpx.Headers, most: int) -> int:
    value = int(headers["Retry-After"] if "Retry-After" in headers else headers["retry-after"])
    assert 1 <= value <= most, value
    return value


async def test_connections_per_address_are_capped_with_429_before_the_upgrade() -> None:
    async with serving("--max-connections-per-ip", "2") as srv, AsyncExitStack() as stack:
        first: ClientConnection = await stack.enter_async_context(connect(srv.ws_url))
        await stack.enter_async_context(connect(srv.ws_url))
        status, headers, body = await ws_refusal(srv.ws_url)
        assert status == 429
        retry_after(headers, 60)
        assert body == {"error": {"code": "ip_limit", "message": "too many connections from this address"}}
        resp = await sse_status(srv)  # /sse counts against the same cap
        assert resp.status_code == 429 and resp.json()["error"]["code"] == "ip_limit"
        retry_after(resp.headers, 60)
        metrics = await scrape_async(srv.url)
        assert metrics[refused_key("ws", "ip_limit")] == 1
        assert metrics[refused_key("sse", "ip_limit")] == 1
        await first.close()

        async def gets_in() -> bool:  # the closed connection's slot comes back
            try:
                async with connect(srv.ws_url, open_timeout=timeout(5)):
                    return True
            except InvalidStatus:
                return False

        await eventually(gets_in, what="a connection once one of the two closed")


async def test_connect_rate_per_address_gives_429_past_the_burst() -> None:
    async with serving("--connect-rate", "0.02", "--connect-burst", "3") as srv:
        for _ in range(3):
            async with connect(srv.ws_url):
                pass
        status, headers, body = await ws_refusal(srv.ws_url)
        assert status == 429
        wait = retry_after(headers, 50)  # 0.02 connects a second: the next one is due within 50 s
        assert body == {
            "error": {
                "code": "rate_limited",
                "message": f"too many connection attempts from this address; retry after {wait} s",
            }
        }
        resp = await sse_status(srv)
        assert resp.status_code == 429 and resp.json()["error"]["code"] == "rate_limited"
        retry_after(resp.headers, 50)
        async with httpx.AsyncClient(timeout=timeout(5)) as http:  # REST has its own bucket
            assert (await http.get(srv.url + "/api/symbols")).status_code == 200
        metrics = await scrape_async(srv.url)
        assert metrics[refused_key("ws", "ip_rate")] == 1
        assert metrics[refused_key("sse", "ip_rate")] == 1


async def test_process_connect_rate_gives_503_to_every_address() -> None:
    async with serving("--process-connect-rate", "0.02", "--process-connect-burst", "2") as srv:
        for _ in range(2):
            async with connect(srv.ws_url):
                pass
        status, headers, body = await ws_refusal(srv.ws_url)
        assert status == 503
        wait = retry_after(headers, 50)
        assert body == {
            "error": {"code": "unavailable", "message": f"too many connection attempts; retry after {wait} s"}
        }
        resp = await sse_status(srv)
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "unavailable"
        metrics = await scrape_async(srv.url)
        assert metrics[refused_key("ws", "process_rate")] == 1
        assert metrics[refused_key("sse", "process_rate")] == 1
        assert metrics.get(refused_key("ws", "ip_rate"), 0) == 0


async def test_rest_requests_per_address_get_429_past_the_burst() -> None:
    async with serving("--rest-rate", "0.02", "--rest-burst", "3") as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=timeout(5)) as http:
            for path in ("/api/symbols", "/api/quotes?symbols=AAPL", "/api/search?q=apple"):
                assert (await http.get(path)).status_code == 200, path
            for path in ("/api/bars?symbol=AAPL&interval=1m", "/api/quotes", "/api/symbols/AAPL"):
                resp = await http.get(path)
                assert resp.status_code == 429, path
                wait = retry_after(resp.headers, 50)
                assert resp.json() == {
                    "error": {
                        "code": "rate_limited",
                        "message": f"too many requests from this address; retry after {wait} s",
                    }
                }
            assert (await http.get("/healthz")).status_code == 200  # the ops endpoints are not limited
        async with connect(srv.ws_url):  # nor are connects, which have their own bucket
            pass
        metrics = await scrape_async(srv.url)
        assert metrics[refused_key("rest", "ip_rate")] == 3


async def test_the_address_behind_a_trusted_proxy_is_what_counts() -> None:
    args = ("--trusted-proxies", "127.0.0.1", "--max-connections-per-ip", "1")
    async with serving(*args) as srv, AsyncExitStack() as stack:
        alice = {"X-Forwarded-For": "203.0.113.5"}
        await stack.enter_async_context(connect(srv.ws_url, additional_headers=alice))
        status, _, body = await ws_refusal(srv.ws_url, alice)
        assert status == 429 and body["error"]["code"] == "ip_limit"
        # Another client behind the same proxy, and the proxy itself, each have their own slots.
        await stack.enter_async_context(
            connect(srv.ws_url, additional_headers={"X-Forwarded-For": "203.0.113.6"})
        )
        await stack.enter_async_context(connect(srv.ws_url))
        # IPv6 clients count by their /64.
        await stack.enter_async_context(
            connect(srv.ws_url, additional_headers={"X-Forwarded-For": "2001:db8::1"})
        )
        status, _, _ = await ws_refusal(srv.ws_url, {"X-Forwarded-For": "2001:db8::2"})
        assert status == 429


async def test_honest_clients_with_backoff_get_in_through_the_connect_rate() -> None:
    async with serving("--connect-rate", "2", "--connect-burst", "2") as srv:
        clients = [TickerClient(srv.ws_url, ["AAPL"]) for _ in range(6)]  # the default backoff
        async with AsyncExitStack() as stack:
            await asyncio.wait_for(
                asyncio.gather(*(stack.enter_async_context(c) for c in clients)), timeout(40)
            )

            async def every_one_has_a_quote() -> bool:
                return all("AAPL" in c.latest for c in clients)

            await eventually(every_one_has_a_quote, within=10, what="a quote on every client")
        metrics = await scrape_async(srv.url)
        assert metrics[refused_key("ws", "ip_rate")] >= 1  # some of them were turned away first


async def test_the_client_waits_at_least_the_retry_after_of_a_refusal() -> None:
    from ticker.client import Event, EventKind, TooManyConnectionsError

    async with serving("--max-connections-per-ip", "1") as srv, connect(srv.ws_url) as _held:
        events: list[Event] = []
        client = TickerClient(srv.ws_url, ["AAPL"], on_event=events.append)
        task = asyncio.create_task(client.start())
        try:
            await eventually(
                lambda: any(e.kind is EventKind.RECONNECTING for e in events), 10.0, "a refused attempt"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
        refused = next(e for e in events if e.kind is EventKind.RECONNECTING)
        assert isinstance(refused.error, TooManyConnectionsError) and refused.error.retry_after == 10
        assert refused.delay is not None and refused.delay >= 10  # the server's Retry-After, not the backoff
