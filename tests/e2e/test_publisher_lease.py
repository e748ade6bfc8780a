"""One active publisher (docs/scaling.md, "One active publisher"): two ``ticker feed`` processes, one edge node,
a client; the lease in a real redis-server. Every quote Redis carries is recorded with its epoch."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from tests.support.leasekit import (
    QuoteRecorder,
    active_of,
    lease_holder,
    never_interleaved,
    one_price_per_q,
    publisher_id,
)
from tests.support.redisproc import FeedProcess, RedisProcess, node, publisher
from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import eventually, timeout
from tests.support.wsclient import Inbox
from ticker.broker import redis_layout as rc
from ticker.broker import redis_lease as rl
from ticker.quote import Quote, encode_entry

SYMS = ("AAPL", "MSFT", "IBM")  # IBM only because the client wants it
TTL = 3.0  # --lease-ttl's default
BOUND = TTL + 1.0  # the promise: a standby publishes within the TTL plus a second of the active's death


@pytest.fixture
def redis_srv() -> Iterator[RedisProcess]:
    with RedisProcess() as r:
        yield r


@dataclass
class Deployment:
    recorder: QuoteRecorder
    pubs: list[FeedProcess]
    edge: ServerProcess
    inbox: Inbox

    async def roles(self, *pubs: FeedProcess) -> list[float]:
        return [await asyncio.to_thread(active_of, p) for p in pubs]


@asynccontextmanager
async def deployment(r: RedisProcess) -> AsyncIterator[Deployment]:
    """Two publishers (the first starts first, so it is active), an edge node and one client of it."""
    async with QuoteRecorder(r.url) as recorder:
        pubs: list[FeedProcess] = []
        edge: ServerProcess | None = None
        try:
            for _ in range(2):
                pubs.append(
                    await asyncio.to_thread(
                        publisher(r, "--symbols", "AAPL,MSFT", "--metrics-port", "0").start
                    )
                )
            edge = await asyncio.to_thread(node(r).start)
            async with connect(edge.ws_url + "?symbols=" + ",".join(SYMS)) as ws:
                inbox = Inbox(ws)
                await inbox.wait(lambda: {e["s"] for e in inbox.entries("quotes")} == set(SYMS), 10.0)
                yield Deployment(recorder, pubs, edge, inbox)
        finally:
            for p in [*pubs, *([edge] if edge else [])]:
                if p.proc is not None and p.proc.poll() is None:
                    p.proc.send_signal(signal.SIGCONT)
                await asyncio.to_thread(p.stop)


async def quotes_of_each_symbol_after(inbox: Inbox, since: float, within: float = 5.0) -> None:
    await inbox.wait(lambda: {e["s"] for e in inbox.entries("quotes", since)} == set(SYMS), within)


def undisturbed(d: Deployment) -> None:
    """The client is still connected, the edge closed no connection, and no quotes interleaved."""
    assert not d.inbox.closed
    m = scrape(d.edge.url)
    assert m['ticker_connections{transport="ws"}'] == 1
    assert not any(k.startswith("ticker_connections_closed_total") and v for k, v in m.items())
    assert never_interleaved(d.recorder, d.inbox.entries("quotes")) >= 2 * len(SYMS)
    assert one_price_per_q(d.inbox.entries("quotes") + d.inbox.entries("snapshot")) >= 2 * len(SYMS)


async def test_exactly_one_publishes_and_a_standby_takes_over_within_the_lease_after_a_kill(
    redis_srv: RedisProcess,
):
    async with deployment(redis_srv) as d:
        first, second = d.pubs
        assert await d.roles(first, second) == [1, 0]
        standby = scrape(f"http://127.0.0.1:{second.metrics_port}")
        assert standby["ticker_broker_up"] == 1 and not any(k.startswith("ticker_feed_up{") for k in standby)
        a = publisher_id(first)
        assert f"publisher {a} is now active (epoch 1): no publisher held the lease" in first.output()
        assert f"standing by: publisher {a} (epoch 1) is active" in second.output()
        assert lease_holder(redis_srv) == f"{a}#1"
        assert d.recorder.epochs() == [1]  # the standby published nothing
        assert redis_srv.command("PUBSUB", "NUMSUB", "ticker:publishers")[1] == 1  # the standby listens

        first.kill()
        killed = time.monotonic()
        new = await d.recorder.wait_epoch(2, BOUND + 2.0)
        took = new.at - killed
        assert took < BOUND, f"the standby published {took:.2f} s after the kill"  # the promise: not scaled
        b = publisher_id(second)
        line = f"publisher {b} is now active (epoch 2): the lease of publisher {a} (epoch 1) expired"
        assert line in second.output()
        assert await d.roles(second) == [1]
        await quotes_of_each_symbol_after(d.inbox, new.at)
        await d.inbox.wait(lambda: bool(d.inbox.since(killed, "snapshot")), 5.0, "the edge's resync")
        undisturbed(d)
        assert d.recorder.epochs() == [1, 2]


async def test_a_paused_publisher_that_resumes_after_a_takeover_never_publishes_again(
    redis_srv: RedisProcess,
):
    async with deployment(redis_srv) as d:
        first, second = d.pubs
        a = publisher_id(first)
        first.signal(signal.SIGSTOP)  # paused past its lease: the standby takes over
        paused = time.monotonic()
        new = await d.recorder.wait_epoch(2, BOUND + 2.0)
        assert new.at - paused < BOUND
        b = publisher_id(second)
        assert await d.roles(second) == [1]
        resumed = time.monotonic()
        first.signal(signal.SIGCONT)  # its feeds tick on, its timers fire: every write of its is refused
        await eventually(lambda: f"publisher {a} stands by: publisher {b} (epoch 2) took over" in first.output(),
                         5.0, "the resumed publisher to stand by")  # fmt: skip
        assert await d.roles(first) == [0]

        async def feeds_stopped() -> bool:  # a standby runs no feed, and reports none; it is connected
            m = await asyncio.to_thread(scrape, f"http://127.0.0.1:{first.metrics_port}")
            return not any(k.startswith("ticker_feed_up{") for k in m) and m["ticker_broker_up"] == 1

        await eventually(feeds_stopped, 5.0, "the resumed publisher's feeds to stop")
        await quotes_of_each_symbol_after(d.inbox, time.monotonic())  # the new one's quotes flow on
        assert d.recorder.epochs() == [1, 2]
        assert not [q for q in d.recorder.quotes if q.epoch == 1 and q.at > resumed]
        undisturbed(d)

        # The resumed one is a standby like any: a clean stop of the active hands over to it at once.
        stopping = time.monotonic()
        await asyncio.to_thread(second.stop)
        third = await d.recorder.wait_epoch(3, 3.0)
        assert third.at - stopping < timeout(3.0)
        assert f"publisher {b} released the lease (epoch 2); standbys listening: 1" in second.output()
        assert (
            f"publisher {a} is now active (epoch 3): publisher {b} (epoch 2) released the lease"
            in first.output()
        )
        assert await d.roles(first) == [1]
        assert redis_srv.command("EXISTS", "ticker:health") == 1  # left to its successor, never withdrawn
        await quotes_of_each_symbol_after(d.inbox, third.at)
        undisturbed(d)


async def test_redis_refuses_the_writes_of_a_publisher_whose_lease_another_took(redis_srv: RedisProcess):
    """The fence itself, in this process: the Lua scripts against the real server, two leases of one prefix."""
    layout = rc.Layout("fence")
    client = Redis.from_url(redis_srv.url)
    old, new = rl.Lease(layout, "old", 0.5), rl.Lease(layout, "new", 3.0)
    quote = encode_entry(Quote("AAPL", 1.0, 1_000))
    try:
        assert await old.acquire(client, force=False) == (rl.VACANT_LOST, "")  # no epoch: a first start...
        assert await old.acquire(client, force=True) == (rl.ACQUIRED, "old#1")  # ...takes it when sure
        assert await new.acquire(client, force=False) == (rl.HELD, "old#1")
        assert await old.renew(client) == (rl.ACQUIRED, "old#1")
        # The old holder is "paused": its lease lapses and the other takes it.
        await eventually(lambda: redis_srv.command("GET", "fence:lease") is None, 3.0, "the lease to lapse")
        assert await new.acquire(client, force=False) == (rl.ACQUIRED, "new#2")
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(layout.channel("AAPL"))
        # The old one resumes, unaware: Redis refuses its window, and it learns it stands down.
        args: list[object] = [b"", layout.channel(""), b"", rc.HELLO, 0, "AAPL", quote, b"old"]
        assert await old.flush(client, args) is None
        assert (
            old.token is None and old.lost.is_set() and "publisher new (epoch 2) took over" in old.lost_reason
        )
        assert redis_srv.command("HGET", "fence:last", "AAPL") is None
        with pytest.raises(rl.Fenced):  # any other write too, refused here already
            await old.pipeline(client).set(layout.health, b"{}").execute()
        stale = rl.Lease(layout, "old", 0.5)
        stale.token = "old#1"  # one that does not know yet
        with pytest.raises(rl.Fenced) as refused:
            await stale.pipeline(client).set(layout.health, b"{}").publish(layout.ctl, rc.HELLO).execute()
        assert refused.value.holder == "new#2" and redis_srv.command("EXISTS", "fence:health") == 0
        assert await old.renew(client) == (rl.HELD, "")  # it holds nothing to renew
        # The holder's writes go through.
        args = [b"", layout.channel(""), b"", rc.HELLO, 0, "AAPL", quote, b"new"]
        assert await new.flush(client, args) == 1
        msg = await eventually(lambda: pubsub.get_message(timeout=0.1), 3.0, "the holder's message")
        assert msg["data"] == b"new"  # the first message on the channel: the refused one never was
        await pubsub.aclose()
        assert await new.pipeline(client).set(layout.health, b"{}", ex=5).execute() == 1
        # Redis restarts empty (here: the keys go): the holder retakes its lease at its next renewal, a
        # standby that saw it would leave it the grace first.
        redis_srv.command("DEL", "fence:lease", "fence:epoch")
        assert await old.acquire(client, force=False) == (rl.VACANT_LOST, "")
        assert await new.renew(client) == (rl.RETAKEN, "new#1")
        assert new.epoch == 1
        assert await new.release(client) and new.token is None
        assert redis_srv.command("EXISTS", "fence:lease") == 0
    finally:
        await client.aclose()
