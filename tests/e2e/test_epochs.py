"""The epoch rule end to end (docs/protocol.md, "The epoch rule"): the Redis publisher numbers ``q`` once, so two
edge nodes give the same update the same ``q`` under the same ``e``; a client moved to another edge keeps
deduplicating; after a publisher takeover every client gets a snapshot of the new epoch and keeps receiving."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from tests.support.leasekit import one_price_per_q
from tests.support.redisproc import RedisProcess, node, publisher
from tests.support.tcpswitch import TcpSwitch
from tests.support.timing import eventually, timeout
from tests.support.wsclient import Inbox
from ticker.backoff import Backoff
from ticker.client import TickerClient
from ticker.quote import Quote

SYMS = ("AAPL", "MSFT", "IBM")  # IBM only because clients want it
QUERY = "?symbols=" + ",".join(SYMS)
FAST = Backoff(base=0.05, cap=0.5)
SOURCE = re.compile(r"[0-9a-f]{12}#\d+")  # the publisher's source epoch: RANDOM#TERM


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


def source_of(r: RedisProcess) -> str | None:
    """The active publisher's source epoch, as it announced it in Redis."""
    got = r.command("GET", "ticker:source")
    return None if got is None else str(got)


def rising(quotes: Iterable[tuple[str, int]], what: str, again: bool = False) -> int:
    """Check that each symbol's ``q`` only rises (nothing older; nothing again unless ``again``); how many."""
    last: dict[str, int] = {}
    n = 0
    for s, q in quotes:
        assert q > last.get(s, 0) or (again and q == last[s]), f"{what}: {s} q {q} after {last[s]}"
        last[s] = q
        n += 1
    return n


@asynccontextmanager
async def yielding(client: TickerClient) -> AsyncIterator[list[Quote]]:
    """Every quote ``client`` yields, in order, gathered in the background."""
    got: list[Quote] = []

    async def read() -> None:
        async for quote in client:
            got.append(quote)

    task = asyncio.get_running_loop().create_task(read())
    try:
        yield got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def sse_opening(url: str) -> tuple[str, dict[str, Any]]:
    """The ``id`` and the snapshot of the first event of ``url``'s ``/sse?symbols=AAPL``."""
    async with (
        httpx.AsyncClient(timeout=timeout(10)) as http,
        aconnect_sse(http, "GET", url + "/sse?symbols=AAPL") as source,
    ):
        async for ev in source.aiter_sse():
            return ev.id, ev.json()
    raise AssertionError("the stream ended without an event")


def every_symbol(quotes: Iterable[Quote]) -> bool:
    return {q.symbol for q in quotes} == set(SYMS)


async def test_two_edges_give_the_same_update_the_same_q_under_the_same_epoch(redis_srv: RedisProcess):
    with publisher(redis_srv, "--symbols", "AAPL,MSFT"), node(redis_srv) as a, node(redis_srv) as b:
        async with connect(a.ws_url + QUERY) as wa, connect(b.ws_url + QUERY) as wb:
            ra, rb = Inbox(wa), Inbox(wb)

            def common() -> tuple[dict[Any, Any], dict[Any, Any], set[Any]] | None:
                ka = {(e["s"], e["q"]): e for e in ra.entries("quotes")}
                kb = {(e["s"], e["q"]): e for e in rb.entries("quotes")}
                both = ka.keys() & kb.keys()
                return (ka, kb, both) if len(both) > 40 and {s for s, _ in both} == set(SYMS) else None

            ka, kb, both = await eventually(common, 10.0, "both edges to deliver 40 common (symbol, q)")
            for k in both:  # one update: one q, the same price and feed time on both edges
                assert (ka[k]["p"], ka[k]["t"]) == (kb[k]["p"], kb[k]["t"]), k
            everything = [e for r in (ra, rb) for kind in ("snapshot", "quotes") for e in r.entries(kind)]
            assert one_price_per_q(everything) > 40
            source = source_of(redis_srv)
            assert source is not None and SOURCE.fullmatch(source), source
            snaps = ra.since(0, "snapshot") + rb.since(0, "snapshot")
            assert snaps and {m["e"] for m in snaps} == {source}  # the publisher's epoch, not the edges' own
            for edge in (a, b):  # an SSE stream's id is the epoch too
                sse_id, snap = await sse_opening(edge.url)
                assert sse_id == snap["e"] == source
            assert rising(((e["s"], e["q"]) for e in ra.entries("quotes")), "edge a") > 20


async def test_a_client_moved_to_another_edge_keeps_deduplicating(redis_srv: RedisProcess):
    """A load balancer moves the client to the other edge (its connection cut): the other edge's snapshot, with
    the same ``e``, mostly repeats what the client had (2 ticks/s per symbol); nothing is yielded again."""
    market = ("--symbols", "AAPL,MSFT", "--sim-rate", "2")
    with publisher(redis_srv, *market), node(redis_srv) as a, node(redis_srv) as b, TcpSwitch(a.port) as lb:
        async with connect(b.ws_url + QUERY) as wb:  # the other edge holds every symbol's latest value
            rb = Inbox(wb)
            async with TickerClient(lb.ws_url, list(SYMS), backoff=FAST) as client, yielding(client) as got:
                await eventually(lambda: every_symbol(got), 10.0, "quotes of every symbol")
                epoch = client.epoch
                assert epoch is not None and epoch == source_of(redis_srv)
                await rb.wait(lambda: {e["s"] for e in rb.entries("quotes")} == set(SYMS), 10.0)
                lb.switch(b.port)
                await eventually(lambda: client.connections == 2, 10.0, "the client to reconnect")
                moved = len(got)
                await eventually(
                    lambda: every_symbol(got[moved:]), 10.0, "quotes of every symbol from edge b"
                )
                assert client.epoch == epoch and lb.accepted == 2
        assert rising(((q.symbol, q.seq) for q in got), "the client") == len(got)
        assert one_price_per_q([q.to_wire() for q in got] + rb.entries("quotes")) >= len(got)


async def test_after_a_takeover_every_client_gets_a_snapshot_of_the_new_epoch(redis_srv: RedisProcess):
    pubs = [publisher(redis_srv, "--symbols", "AAPL,MSFT") for _ in range(2)]
    try:
        for p in pubs:  # the first to start is the active one
            await asyncio.to_thread(p.start)
        with node(redis_srv) as a, node(redis_srv) as b:
            async with (
                connect(a.ws_url + QUERY) as wa,
                TickerClient(b.ws_url, list(SYMS), backoff=FAST) as client,
                yielding(client) as got,
            ):
                ra = Inbox(wa)
                await ra.wait(lambda: {e["s"] for e in ra.entries("quotes")} == set(SYMS), 10.0)
                await eventually(lambda: every_symbol(got), 10.0, "the client's quotes of every symbol")
                old = source_of(redis_srv)
                assert old is not None and old.endswith("#1") and client.epoch == old
                pubs[0].kill()
                killed = time.monotonic()

                def another() -> str | None:
                    s = source_of(redis_srv)
                    return s if s != old else None

                new = await eventually(another, 10.0, "a new source")
                assert SOURCE.fullmatch(new) and new.endswith("#2")

                def resync() -> dict[str, Any] | None:
                    return next((m for m in ra.since(killed, "snapshot") if m["e"] == new), None)

                snap = await eventually(resync, 10.0, "a snapshot of the new epoch on edge a")
                assert {e["s"] for e in snap["data"]} == set(SYMS)
                await eventually(lambda: client.epoch == new, 10.0, "the client to follow the new epoch")
                turned = len(got)
                after = time.monotonic()
                await ra.wait(lambda: {e["s"] for e in ra.entries("quotes", after)} == set(SYMS), 10.0)
                await eventually(lambda: every_symbol(got[turned:]), 10.0, "the client's quotes after it")
                # Nobody was disconnected, and the new publisher carried each symbol's q on from Redis (the
                # values read again at the switch may repeat in the quotes after the snapshot: never lower).
                assert not ra.closed and client.connections == 1
                await ra.wait(lambda: len(ra.entries("quotes")) > 10, 10.0, "more than 10 quotes on edge a")
                quotes = ra.entries("quotes")
                assert rising(((e["s"], e["q"]) for e in quotes), "edge a", again=True) == len(quotes)
                one_price_per_q(quotes + ra.entries("snapshot"))  # fails on a (symbol, q) with two prices
                # Another epoch starts again (the new snapshot may repeat a q); never anything older here.
                assert rising(((q.symbol, q.seq) for q in got), "the client", again=True) == len(got)
                before = {q.symbol: q.seq for q in got[:turned]}
                await eventually(
                    lambda: {q.symbol for q in got[turned:] if q.seq > before[q.symbol]} == set(SYMS),
                    10.0,
                    "the client's quotes numbered on by the new publisher",
                )
    finally:
        for p in pubs:
            await asyncio.to_thread(p.stop)


class ByTheRule:
    """A client's view of one WebSocket (docs/protocol.md, "The epoch rule"): each entry with the epoch it came
    under, and whether the rule applies it (a greater ``q`` than the last applied; anything, for a snapshot of
    another epoch)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def entries(self) -> list[tuple[float, str, dict[str, Any], bool]]:
        """(arrival, epoch, entry, applied) of every snapshot and quotes entry so far."""
        epoch: str | None = None
        last: dict[str, int] = {}
        out = []
        for at, m in list(self.inbox.msgs):
            if m["type"] == "snapshot" and m["e"] != epoch:
                epoch, last = m["e"], {}
            if m["type"] in ("snapshot", "quotes"):
                assert epoch is not None, "an entry before the first snapshot"
                for e in m["data"]:
                    applied = e["q"] > last.get(e["s"], 0)
                    if applied:
                        last[e["s"]] = e["q"]
                    out.append((at, epoch, e, applied))
        return out


async def test_a_new_publisher_after_redis_lost_its_values_is_followed_at_once(redis_srv: RedisProcess):
    """Redis restarted empty (FLUSHALL) and a new publisher numbers each symbol's ``q`` from 1 again: the
    snapshot of the new epoch holds none of the old source's values (q near 100 here), so every client applies
    the new source's updates at once instead of dropping them until their ``q`` passes the old one."""
    syms = ("AAPL", "MSFT", "IBM", "NVDA")
    query = "?symbols=" + ",".join(syms)
    first = publisher(redis_srv, "--symbols", "AAPL,MSFT", "--sim-rate", "50")
    second = publisher(redis_srv, "--symbols", "AAPL,MSFT", "--sim-rate", "5")  # 20 s to reach q 100
    try:
        await asyncio.to_thread(first.start)
        with node(redis_srv) as a, node(redis_srv) as b:
            async with (
                connect(a.ws_url + query) as wa,
                connect(b.ws_url + query) as wb,
                TickerClient(a.ws_url, list(syms), backoff=FAST) as client,
                yielding(client) as got,
            ):
                views = [ByTheRule(Inbox(wa)), ByTheRule(Inbox(wb))]

                def far() -> bool:  # every symbol well past q 60 on both edges
                    return all(
                        {e["s"] for _, _, e, _ in v.entries() if e["q"] > 60} == set(syms) for v in views
                    )

                await eventually(far, 20.0, "every symbol past q 60")
                old = source_of(redis_srv)
                await asyncio.to_thread(first.kill)
                redis_srv.command("FLUSHALL")  # Redis restarted empty, or a failover lost the writes
                await asyncio.to_thread(second.start)
                new = await eventually(lambda: (s := source_of(redis_srv)) != old and s, 10.0, "a new source")

                def turned(v: ByTheRule) -> float | None:
                    return next((at for at, e, _, _ in v.entries() if e == new), None)

                await eventually(lambda: all(turned(v) for v in views), 10.0, "the new epoch on both edges")
                for v in views:
                    since = turned(v)
                    assert since is not None

                    def applied(v: ByTheRule = v, since: float = since) -> bool:
                        ok = {e["s"] for t, ep, e, yes in v.entries() if ep == new and yes and t > since}
                        return ok == set(syms)

                    # The new source's updates are applied within a couple of seconds (5 ticks/s per symbol).
                    await eventually(applied, 3.0, "updates of the new source applied for every symbol")
                    under_new = [(e, yes) for _, ep, e, yes in v.entries() if ep == new]
                    assert all(e["q"] < 60 for e, _ in under_new)  # nothing of the old numbering
                    one_price_per_q(e for e, _ in under_new)
                await eventually(lambda: client.epoch == new, 10.0, "the client to follow the new epoch")
                turn = len(got)
                await eventually(
                    lambda: {q.symbol for q in got[turn:]} == set(syms), 3.0, "the client's quotes"
                )
                assert max(q.seq for q in got[turn:]) < 60 and client.connections == 1
    finally:
        for p in (first, second):
            await asyncio.to_thread(p.stop)
