"""Fair demand against real servers: ``--max-active-symbols`` and a feed's plan limit are shared round-robin
between connections; the symbols left out are ``unavailable`` with the reason, counted in
``ticker_symbols_unserved`` and named by ``/readyz``; when a connection leaves they turn live."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from websockets.asyncio.client import ClientConnection, connect

from tests.support.fakes.finnhub import FakeFinnhub
from tests.support.serverproc import ServerProcess, scrape_async, serving
from tests.support.timing import eventually, timeout
from tests.support.wsclient import Inbox, send

FIRST = ["MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "COST"]  # in the bundled directory
SECOND = ["NFLX", "AMD", "ADBE", "PEP", "INTC", "WMT", "CSCO", "QCOM"]
BUDGET_WORDS = "the server carries its maximum of 10 symbols"


def states(inbox: Inbox) -> dict[str, tuple[str, str]]:
    """Each symbol's latest state as the connection was told it (``status`` messages, in order)."""
    out: dict[str, tuple[str, str]] = {}
    for _, m in inbox.msgs:
        if m["type"] == "status":
            for e in m["data"]:
                out[e["s"]] = (e["state"], e["reason"])
    return out


def quoted(inbox: Inbox) -> set[str]:
    """Symbols the connection received a quote (or snapshot entry) of."""
    return {e["s"] for _, m in inbox.msgs if m["type"] in ("quotes", "snapshot") for e in m["data"]}


def readyz(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=timeout(5)) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@asynccontextmanager
async def subscriber(url: str, symbols: list[str]) -> AsyncIterator[tuple[ClientConnection, Inbox]]:
    async with connect(url) as ws:
        inbox = Inbox(ws)
        await send(ws, {"op": "subscribe", "symbols": symbols})
        await inbox.wait(lambda: any(m["type"] == "subscribed" for _, m in inbox.msgs), what="subscribed")
        yield ws, inbox


def unavailable(inbox: Inbox, words: str) -> set[str]:
    return {s for s, (st, why) in states(inbox).items() if st == "unavailable" and why == words}


async def test_the_budget_is_shared_between_connections_and_freed_when_one_leaves() -> None:
    args = ["--symbols", "AAPL", "--sim-rate", "20", "--seed", "7", "--max-active-symbols", "10"]
    async with serving(*args, "--log-level", "warning") as srv:
        async with subscriber(srv.ws_url, FIRST) as (_, first):
            await first.wait(lambda: quoted(first) == set(FIRST), what="all 8 served while they fit")
            async with subscriber(srv.ws_url, SECOND) as (_, second):
                # Round-robin: five each, each connection's first five in subscribe order.
                await second.wait(
                    lambda: unavailable(second, BUDGET_WORDS) == set(SECOND[5:]), what="3 unavailable"
                )
                told = [m for _, m in second.msgs if m["type"] in ("subscribed", "status")][:2]
                assert told[0]["type"] == "subscribed"  # accepted, and told right after it which do not fit
                assert {e["s"] for e in told[1]["data"]} == set(SECOND[5:])
                await first.wait(lambda: unavailable(first, BUDGET_WORDS) == set(FIRST[5:]), what="3 pushed")
                await second.wait(lambda: quoted(second) == set(SECOND[:5]), what="5 served")
                assert not quoted(second) & set(SECOND[5:])  # nobody asks the feed for them

                async def six_unserved() -> bool:
                    return (await scrape_async(srv.url)).get("ticker_symbols_unserved") == 6

                await eventually(six_unserved, what="ticker_symbols_unserved 6")
                code, body = await asyncio.to_thread(readyz, srv.url)
                assert code == 200 and body["status"] == "ready"  # what it serves, it serves well
                assert body["reason"] == f"ready; 6 symbols unserved: {BUDGET_WORDS}"
            # The second leaves: the first one's three turn live and bring quotes.
            await first.wait(lambda: not unavailable(first, BUDGET_WORDS), what="the 3 pushed live")
            assert all(states(first)[s] == ("live", "") for s in FIRST[5:])
            await first.wait(lambda: quoted(first) >= set(FIRST[5:]), what="quotes of the 3")
            assert (await scrape_async(srv.url))["ticker_symbols_unserved"] == 0
            assert (await asyncio.to_thread(readyz, srv.url))[1]["reason"] == "ready"
        assert "Traceback" not in srv.output()


async def test_a_plan_limit_is_shared_fairly_between_two_connections() -> None:
    fake = FakeFinnhub(token="test-token")
    await fake.start()
    args = ["--feed", "finnhub", "--feed-url", fake.url, "--finnhub-max-symbols", "4", "--feed-linger", "0.2"]
    args += ["--reconnect-base", "0.05", "--reconnect-cap", "0.2", "--log-level", "warning"]
    srv = ServerProcess(args, env={"FINNHUB_TOKEN": "test-token"})
    await asyncio.to_thread(srv.start)
    plan = "feed finnhub carries its maximum of 4 symbols (the provider plan's limit)"
    a_syms, b_syms = FIRST[:4], FIRST[4:]
    try:
        async with subscriber(srv.ws_url, a_syms) as (_, a):
            await fake.wait_for(lambda: fake.symbols() == set(a_syms), what="the first one's 4 upstream")
            async with subscriber(srv.ws_url, b_syms) as (_, b):
                # One connection held every slot; now each holds two, the rest unavailable with the reason.
                share = set(a_syms[:2] + b_syms[:2])
                await fake.wait_for(lambda: fake.symbols() == share, what="the slots shared two and two")
                await b.wait(lambda: unavailable(b, plan) == set(b_syms[2:]), what="b told")
                await a.wait(lambda: unavailable(a, plan) == set(a_syms[2:]), what="a told by a push")

                async def trade_seen(inbox: Inbox, symbol: str) -> bool:
                    await fake.trade(symbol, 101.0)
                    return symbol in quoted(inbox)

                for inbox, s in ((a, a_syms[0]), (b, b_syms[1])):
                    await eventually(partial(trade_seen, inbox, s), what=f"{s} to flow", interval=0.2)
                assert (await scrape_async(srv.url))["ticker_symbols_unserved"] == 4
                assert plan in (await asyncio.to_thread(readyz, srv.url))[1]["reason"]
            await fake.wait_for(lambda: fake.symbols() == set(a_syms), what="b left: a's 4 upstream again")
            await a.wait(lambda: not unavailable(a, plan), what="a's two pushed live")
        assert "Traceback" not in srv.output()
    finally:
        await asyncio.to_thread(srv.stop)
        await fake.close()
