"""End to end, per streaming adapter: fake upstream → ``ticker serve --feed NAME`` → a WebSocket subscriber.

The fake runs in the test's event loop; the server is a real subprocess pointed at it with
``--feed-url``; a real WebSocket client on ``/ws`` receives the fake's prices. Demand reaches
upstream only when the client subscribes, and leaves it after the client does (plus linger).
"""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from websockets.asyncio.client import connect

from tests.support.fakes.providers import PROVIDERS, Provider
from tests.support.fakes.upstream import FakeUpstream
from tests.support.serverproc import ServerProcess, scrape, scrape_async
from tests.support.timing import eventually, timeout
from tests.support.wsclient import recv, recv_until, send


@pytest.fixture(params=PROVIDERS, ids=str)
async def stack(request):
    prov: Provider = request.param
    fake = prov.make_fake()
    await fake.start()
    srv = ServerProcess(
        [
            "--feed", prov.name, "--feed-url", fake.url, "--symbols", prov.symbol,
            "--feed-linger", "0.2", "--reconnect-base", "0.05", "--reconnect-cap", "0.2",
            "--log-level", "info",
        ],
        env=prov.env,
    )  # fmt: skip
    await asyncio.to_thread(srv.start)
    try:
        yield prov, fake, srv
    finally:
        await asyncio.to_thread(srv.stop)
        await fake.close()


def _readyz(srv: ServerProcess) -> int:
    try:
        with urllib.request.urlopen(srv.url + "/readyz", timeout=timeout(5)) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def _quote_with(ws, fake: FakeUpstream, symbol: str, price: float) -> dict:
    """Have the fake trade ``symbol`` at ``price`` until the subscriber sees it (a connection the server's
    feed is just abandoning may take a trade), waiting 0.5 s after each; fails after 5 s (scaled)."""

    def has_price(m: dict) -> bool:
        return m["type"] in ("quotes", "snapshot") and any(
            e["s"] == symbol and e["p"] == price for e in m["data"]
        )

    async def seen() -> dict | None:
        await fake.trade(symbol, price)
        try:
            msg = await recv_until(ws, has_price, within=0.5)
        except (AssertionError, TimeoutError):
            return None
        return next(e for e in msg["data"] if e["s"] == symbol and e["p"] == price)

    return await eventually(seen, 5.0, f"the subscriber to see {symbol} at {price}", interval=0)


async def test_subscriber_receives_the_fake_providers_prices(stack):
    prov, fake, srv = stack
    await eventually(lambda: fake.conns, what="the server's feed to connect upstream")
    assert fake.symbols() == set(), "subscribed upstream before any client asked"
    async with connect(srv.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": [prov.symbol]})
        assert await recv(ws) == {"type": "subscribed", "symbols": [prov.symbol], "delayed": [], "rates": {}}
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol}, what="upstream subscribe on demand")
        entry = await _quote_with(ws, fake, prov.symbol, 101.25)
        assert entry["t"] > 0 and entry["q"] >= 1
        entry = await _quote_with(ws, fake, prov.symbol, 101.5)
        up = f'ticker_feed_up{{feed="{prov.name}"}}'

        async def feed_up() -> bool:
            return (await scrape_async(srv.url))[up] == 1

        await eventually(feed_up, what="ticker_feed_up 1 (health loop ticks each second)")
        assert scrape(srv.url)[f'ticker_feed_updates_total{{feed="{prov.name}"}}'] >= 2
        assert _readyz(srv) == 200
    await fake.wait_for(lambda: fake.symbols() == set(), what="upstream unsubscribe after the client left")


async def test_upstream_drop_reconnects_and_the_subscriber_keeps_getting_prices(stack):
    prov, fake, srv = stack
    async with connect(srv.ws_url) as ws:
        await send(ws, {"op": "subscribe", "symbols": [prov.symbol]})
        await fake.wait_for(lambda: fake.symbols() == {prov.symbol}, what="upstream subscribe")
        await _quote_with(ws, fake, prov.symbol, 55.5)
        fake.kill_all()
        await fake.wait_for(
            lambda: fake.connects >= 2 and len(fake.conns) == 1 and fake.symbols() == {prov.symbol},
            what="reconnect and resubscribe",
        )
        await _quote_with(ws, fake, prov.symbol, 56.75)
    metrics = await asyncio.to_thread(scrape, srv.url)
    assert metrics[f'ticker_feed_reconnects_total{{feed="{prov.name}"}}'] >= 1
    assert "Traceback" not in srv.output()
