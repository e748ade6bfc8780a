"""The Redis broker on a real Redis Cluster (docs/scaling.md, "Redis Cluster"): 3 masters with a replica each on
loopback, ``ticker feed`` and ``ticker serve`` with ``--broker redis+cluster://...``, sharded pub/sub, the keys of
each symbol on one shard, the lease fenced on every shard, and each master in turn lost: one frozen (SIGSTOP),
the master of slot 0 killed, then the master of the lease killed. The last tests change the cluster for good:
they run last, in this order."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from typing import Any

import pytest
from redis.asyncio.client import PubSub
from websockets.asyncio.client import connect

from tests.support.leasekit import active_of, never_interleaved, one_price_per_q, publisher_id
from tests.support.rediscluster import (
    ClusterNodeProcess,
    LocalCluster,
    ShardQuoteRecorder,
    cluster_edge,
    cluster_feed,
    spread_symbols,
)
from tests.support.redisproc import FeedProcess
from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import eventually, timeout
from tests.support.wsclient import Inbox
from ticker.broker import redis_fence as rf
from ticker.broker import redis_layout as rc
from ticker.broker import redis_lease as rl
from ticker.broker.redis_slots import BUCKETS, TAGS, bucket_of, slot_of
from ticker.quote import Quote, encode_entry

CANDIDATES = ("AAPL", "MSFT", "IBM", "NVDA", "AMZN", "ORCL", "INTC", "CSCO", "AMD", "GOOG", "META", "TSLA")
LAYOUT = rc.Layout("ticker", cluster=True)
TTL = 3.0  # --lease-ttl's default
BOUND = TTL + 1.0  # a standby publishes within the TTL plus a second of the active's death (or pause)
RESUME = 10.0  # every process resumes within this of a master's death (the promise: never scaled)
#: The longest a healthy master's symbols may pause at a client while another master fails over: the failover's
#: CLUSTERDOWN (every master refuses commands from the dead one's FAIL flag to its replica's promotion, about 1 s
#: with cluster-node-timeout 1 s) plus a publish round. Well below the reviewer's 8.6 s, and below the lease TTL.
FLOWING = 2.5


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(masters=3, replicas=1) as c:
        yield c


@pytest.fixture(scope="module")
def syms(cluster: LocalCluster) -> list[str]:
    """One symbol on each master."""
    return spread_symbols(cluster, CANDIDATES)


@dataclass
class Deployment:
    pubs: list[FeedProcess]
    edges: list[ServerProcess]
    inboxes: list[Inbox]


@asynccontextmanager
async def deployment(
    cluster: LocalCluster, syms: list[str], publishers: int, edges: int
) -> AsyncIterator[Deployment]:
    """``publishers`` feeds (the first starts first, so it is active), ``edges`` edge nodes, a client of each."""
    pubs: list[FeedProcess] = []
    nodes: list[ServerProcess] = []
    cluster.flushall()  # no last value, lease or epoch of an earlier test
    try:
        for _ in range(publishers):
            feed = cluster_feed(cluster, "--symbols", ",".join(syms), "--metrics-port", "0")
            pubs.append(await asyncio.to_thread(feed.start))
        nodes = list(
            await asyncio.gather(*(asyncio.to_thread(cluster_edge(cluster).start) for _ in range(edges)))
        )
        async with _clients(nodes, syms) as inboxes:
            yield Deployment(pubs, nodes, inboxes)
    finally:
        for p in [*pubs, *nodes]:
            if p.proc is not None and p.proc.poll() is None:
                p.proc.send_signal(signal.SIGCONT)
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in [*pubs, *nodes]))


@asynccontextmanager
async def _clients(nodes: list[ServerProcess], syms: list[str]) -> AsyncIterator[list[Inbox]]:
    query = "?symbols=" + ",".join(syms)
    if not nodes:
        yield []
        return
    async with connect(nodes[0].ws_url + query) as first, _clients(nodes[1:], syms) as rest:
        inbox = Inbox(first)
        await inbox.wait(
            lambda: {e["s"] for e in inbox.entries("quotes")} == set(syms), 10.0, "quotes of every shard"
        )
        yield [inbox, *rest]


def undisturbed(d: Deployment) -> None:
    """No client was disconnected, no edge closed a connection, each (symbol, q) a client saw has one price."""
    for inbox, edge in zip(d.inboxes, d.edges, strict=True):
        assert not inbox.closed
        m = scrape(edge.url)
        assert m['ticker_connections{transport="ws"}'] == 1
        assert not any(k.startswith("ticker_connections_closed_total") and v for k, v in m.items())
        assert one_price_per_q(inbox.entries("quotes") + inbox.entries("snapshot")) >= 3


def master(cluster: LocalCluster, key: str | bytes) -> ClusterNodeProcess:
    return cluster.master_of(slot_of(key))


async def test_quotes_of_every_shard_reach_two_edges_and_each_symbol_lives_on_its_bucket_master(
    cluster: LocalCluster, syms: list[str]
):
    async with deployment(cluster, syms, publishers=1, edges=2) as d:
        owners = {master(cluster, LAYOUT.channel(s)).port for s in syms}
        assert len(owners) == 3  # the symbols (and the quotes every client got) span the three masters
        for s in syms:
            home = master(cluster, LAYOUT.channel(s))
            b = bucket_of(s)
            # The symbol's channel, last value and bars live on the master of its bucket's slot...
            assert slot_of(LAYOUT.channel(s)) == slot_of(LAYOUT.last_of(b)) == slot_of(LAYOUT.bars(s, "1m"))
            assert home.command("PUBSUB", "SHARDNUMSUB", LAYOUT.channel(s))[1] == 2  # both edges, sharded
            assert home.command("HEXISTS", LAYOUT.last_of(b), s) == 1
            await eventually(partial(home.command, "EXISTS", LAYOUT.bars_ready(s)), 10.0, "its bars")
            # ...and nowhere else: no other master has a subscriber to it.
            for other in {n.port for n in cluster.live()} - {home.port}:
                assert cluster.by_port(other).command("PUBSUB", "SHARDNUMSUB", LAYOUT.channel(s))[1] == 0
        # The keys of no symbol (lease, health, demand, directory) are on the master of the prefix's slot.
        control = master(cluster, LAYOUT.lease)
        token = control.command("GET", LAYOUT.lease)
        assert token == f"{publisher_id(d.pubs[0])}#1"
        await eventually(
            lambda: control.command("EXISTS", LAYOUT.health, LAYOUT.nodes, LAYOUT.directory_meta) == 3,
            5.0,
            "the health report, the nodes and the directory on the prefix's master",
        )
        assert control.command("PUBSUB", "SHARDNUMSUB", LAYOUT.ctl)[1] == 3  # the publisher and both edges
        # Every bucket's fence holds the lease's token, on its own master: 40 buckets on each.
        per_master: dict[int, int] = {}
        for b in range(BUCKETS):
            home = master(cluster, LAYOUT.fence(b))
            assert home.command("GET", LAYOUT.fence(b)) == token
            per_master[home.port] = per_master.get(home.port, 0) + 1
        assert sorted(per_master.values()) == [40, 40, 40]
        # Both edges passed on the same prices for the same updates.
        a, b2 = ({(e["s"], e["q"]): e["p"] for e in i.entries("quotes")} for i in d.inboxes)
        common = a.keys() & b2.keys()
        assert len(common) >= 3 and all(a[k] == b2[k] for k in common)
        undisturbed(d)
        # A symbol the publisher carries only because a client wants it: the demand reaches it through the cluster.
        extra = next(s for s in CANDIDATES if s not in syms)
        async with connect(d.edges[1].ws_url + "?symbols=" + extra) as ws:
            inbox = Inbox(ws)
            await inbox.wait(lambda: bool(inbox.entries("quotes")), 5.0, f"quotes of {extra}, demanded")
        await eventually(lambda: f"+{extra}" in d.pubs[0].output(), 5.0, f"the publisher to carry {extra}")


async def test_a_publisher_paused_past_its_lease_never_writes_to_any_shard_again(
    cluster: LocalCluster, syms: list[str]
):
    async with (
        ShardQuoteRecorder("", cluster=cluster, symbols=tuple(syms)) as rec,
        deployment(cluster, syms, publishers=2, edges=1) as d,
    ):
        first, second = d.pubs
        assert [await asyncio.to_thread(active_of, p) for p in d.pubs] == [1, 0]
        epoch = (await eventually(lambda: rec.quotes[-1] if rec.quotes else None, 5.0, "a quote")).epoch
        first.signal(signal.SIGSTOP)
        paused = time.monotonic()
        new = await rec.wait_epoch(epoch + 1, BOUND + 2.0)
        assert new.at - paused < BOUND, f"the standby published {new.at - paused:.2f} s after the pause"
        resumed = time.monotonic()
        first.signal(signal.SIGCONT)  # its timers fire, its feeds tick: every shard refuses it
        a, b = publisher_id(first), publisher_id(second)
        line = f"publisher {a} stands by: publisher {b} (epoch {epoch + 1}) took over"
        await eventually(lambda: line in first.output(), 5.0, "the resumed publisher to stand by")
        assert await asyncio.to_thread(active_of, first) == 0

        def every_shard_after_resume() -> bool:
            return {q.symbol for q in rec.quotes if q.at > resumed and q.epoch == epoch + 1} == set(syms)

        await eventually(every_shard_after_resume, 5.0, "the new publisher's quotes on every shard")
        assert not [q for q in rec.quotes if q.epoch == epoch and q.at > resumed]
        assert rec.epochs() == [epoch, epoch + 1]
        token = f"{b}#{epoch + 1}"
        assert all(
            master(cluster, LAYOUT.fence(i)).command("GET", LAYOUT.fence(i)) == token for i in range(BUCKETS)
        )
        assert never_interleaved(rec, d.inboxes[0].entries("quotes")) >= 2 * len(syms)
        undisturbed(d)
        # The resumed one is a standby like any: a clean stop of the active hands over to it (sharded release).
        await asyncio.to_thread(second.stop)
        await rec.wait_epoch(epoch + 2, 3.0)
        assert (
            f"publisher {b} released the lease (epoch {epoch + 1}); standbys listening: 1" in second.output()
        )
        assert await asyncio.to_thread(active_of, first) == 1


async def test_each_shard_refuses_a_stale_token_and_a_fence_not_mirrored_asks_for_a_renewal(
    cluster: LocalCluster, syms: list[str]
):
    """The fence itself, in this process: the cluster's scripts on the real shards, two leases of one prefix."""
    layout = rc.Layout("fence", cluster=True)
    client = rc.connect(cluster.url, "test")
    sub_client = rc.connect(cluster.url, "test", socket_timeout=None)
    pubsub = sub_client.pubsub()
    old, new = rf.ClusterLease(layout, "old", 0.5), rf.ClusterLease(layout, "new", 3.0)

    def window(lease: rl.Lease, *symbols: str) -> list[object]:
        args: list[object] = [b"", b"", b"", rc.HELLO, 0]
        for s in symbols:
            entry = encode_entry(Quote(s, 1.0, 1_000), 1)
            args += [s, entry, rc.encode_message([entry], 1.0, lease.epoch)]
        return args

    async def fences() -> set[object]:
        return {await client.get(layout.fence(b)) for b in range(BUCKETS)}

    async def all_hold(token: bytes) -> bool:
        return await fences() == {token}

    try:
        assert await old.acquire(client, force=True) == (rl.ACQUIRED, "old#1")
        await eventually(partial(all_hold, b"old#1"), 3.0, "every bucket of every master to mirror old#1")
        assert await new.acquire(client, force=False) == (rl.HELD, "old#1")

        # The holder is "paused": its lease lapses, and its fences with it (they never outlive the lease).
        async def vacant() -> bool:
            return await client.get(layout.lease) is None and await fences() == {None}

        await eventually(vacant, 3.0, "the lease and every fence to lapse")
        assert await new.acquire(client, force=False) == (rl.ACQUIRED, "new#2")
        await eventually(partial(all_hold, b"new#2"), 3.0, "every fence to hold new#2")
        # Each fence expires with the lease (PXAT the lease master's clock at the renewal + TTL), never later.
        lease_left = await client.pttl(layout.lease)
        fence_left = [await client.pttl(layout.fence(b)) for b in range(0, BUCKETS, 7)]
        assert all(0 < left <= lease_left + 50 for left in fence_left), (lease_left, fence_left)
        await pubsub.subscribe(*(layout.channel(s) for s in syms))
        # The old one resumes, unaware: every shard refuses its window, and it learns it stands down.
        assert await old.flush(client, window(old, *syms)) is None
        assert (
            old.token is None and old.lost.is_set() and "publisher new (epoch 2) took over" in old.lost_reason
        )
        assert await rc.read_last(client, layout, syms) == [None] * len(syms)
        stale = rf.ClusterLease(layout, "old", 0.5)
        stale.token, stale.epoch = "old#1", 1  # one that does not know yet: bars, and a mirror, refused
        with pytest.raises(rl.Fenced) as refused:
            await (
                stale.pipeline(client)
                .set(layout.bars_ready(syms[0]), b"x")
                .publish(layout.ctl, rc.HELLO)
                .execute()
            )
        assert refused.value.holder == "new#2" and await client.exists(layout.bars_ready(syms[0])) == 0
        stale.token, stale.epoch = "old#1", 1
        await stale.mirror(client, round(time.time() * 1000) + 3_000)
        assert stale.lost.is_set() and await fences() == {b"new#2"}
        # A mirror that comes late (its lease lapsed already) writes nothing, even in a vacant fence.
        late = rf.ClusterLease(layout, "late", 3.0)
        late.token, late.epoch = "late#9", 9
        await client.delete(layout.fence(0))
        await late.mirror(client, round(time.time() * 1000) - 1)
        assert await client.exists(layout.fence(0)) == 0 and not late.lost.is_set()
        await new.mirror(client, round(time.time() * 1000) + 3_000)
        # The holder's window goes through, one message per symbol on its shard.
        assert await new.flush(client, window(new, *syms)) == len(syms)
        got = await _take(pubsub, len(syms), 5.0)
        assert {layout.symbol_of(m["channel"]) for m in got} == set(syms)
        assert all(v is not None for v in await rc.read_last(client, layout, syms))
        # A fence lost (a shard failed over before the mirror replicated): a refusal asks for a renewal, no
        # stand-down; the renewal mirrors it again.
        await client.delete(layout.fence(bucket_of(syms[0])))
        assert await new.flush(client, window(new, syms[0])) is None
        assert new.renew_wanted.is_set() and not new.lost.is_set() and new.token == "new#2"
        assert await new.renew(client) == (rl.ACQUIRED, "new#2")  # it mirrors in the background
        await eventually(partial(all_hold, b"new#2"), 3.0, "the renewal to mirror the lost fence again")
        assert await new.flush(client, window(new, syms[0])) == 1
        assert await new.release(client) and await client.exists(layout.lease) == 0
        assert TAGS[bucket_of(syms[0])] in layout.fence(bucket_of(syms[0]))
    finally:
        await pubsub.aclose()
        await client.aclose()
        await sub_client.aclose()


async def _take(pubsub: PubSub, n: int, within: float) -> list[dict[str, Any]]:
    """The next ``n`` messages of ``pubsub`` (failing after ``within`` s, scaled)."""

    async def take() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async for msg in pubsub.listen():
            if msg["type"] == "message":
                got.append(msg)
                if len(got) == n:
                    break
        return got

    try:
        return await asyncio.wait_for(take(), timeout(within))
    except TimeoutError:
        raise AssertionError(f"fewer than {n} messages within {timeout(within):g} s") from None


async def test_a_channel_dropped_and_subscribed_again_at_once_is_no_moved_slot(
    cluster: LocalCluster, syms: list[str]
):
    """The late SUNSUBSCRIBE confirmation of a channel subscribed again meanwhile is not taken for the master
    giving it up (which would resubscribe it and make an edge resync every client)."""
    client = rc.connect(cluster.url, "test", socket_timeout=None)
    pubsub = client.pubsub()
    ch = LAYOUT.channel(syms[0])
    items: list[dict[str, Any]] = []

    async def read() -> None:
        async for msg in pubsub.listen():
            items.append(msg)

    reader = asyncio.get_running_loop().create_task(read())
    try:
        await pubsub.subscribe(ch)
        for _ in range(30):
            await pubsub.unsubscribe(ch)
            await pubsub.subscribe(ch)
        home = master(cluster, ch)
        await eventually(lambda: home.command("PUBSUB", "SHARDNUMSUB", ch)[1] == 1, 5.0, "one subscriber")
        home.command("SPUBLISH", ch, "after")
        await eventually(lambda: [m for m in items if m.get("data") == b"after"], 5.0, "the message")
        assert not [m for m in items if m["type"] == rc.RESUBSCRIBED]  # every confirmation came before it
        assert [m["type"] for m in items] == ["message"]
    finally:
        reader.cancel()
        await pubsub.aclose()
        await client.aclose()


def quiet(inbox: Inbox, symbols: list[str], since: float, until: float) -> float:
    """The longest time between ``since`` and ``until`` that the client went without a quote of one of
    ``symbols`` (the worst symbol's)."""
    worst = 0.0
    for s in symbols:
        ats = [at for at, m in inbox.msgs if m["type"] == "quotes" and any(e["s"] == s for e in m["data"])]
        times = [since, *(at for at in ats if since < at < until), until]
        worst = max(worst, *(b - a for a, b in pairwise(times)))
    return worst


def quoted_since(inbox: Inbox, symbols: list[str], t: float) -> float | None:
    """When the client had a quote of every one of ``symbols`` received after ``t`` (None: not yet)."""
    firsts: dict[str, float] = {}
    for at, m in inbox.msgs:
        if at > t and m["type"] == "quotes":
            for e in m["data"]:
                firsts.setdefault(e["s"], at)
    return max(firsts[s] for s in symbols) if all(s in firsts for s in symbols) else None


async def lose_a_master(
    cluster: LocalCluster, syms: list[str], victim: ClusterNodeProcess, freeze: bool
) -> None:
    """Kill (or freeze, until its shard is back on its promoted replica) ``victim``, a master that does not hold
    the lease: the other shards' symbols keep flowing at every client, the lease never lapses, and the victim's
    symbols come back within :data:`RESUME`."""
    lease_home = master(cluster, LAYOUT.lease)
    assert victim is not lease_home
    mine = [s for s in syms if master(cluster, LAYOUT.channel(s)) is victim]
    others = [s for s in syms if s not in mine]
    assert mine and others
    async with deployment(cluster, syms, publishers=1, edges=2) as d:
        token = lease_home.command("GET", LAYOUT.lease)
        replica = cluster.replica_of(victim)
        if freeze:
            victim.freeze()
        else:
            victim.kill()
        lost = time.monotonic()
        try:
            await eventually(
                lambda: asyncio.to_thread(cluster.promoted, replica), RESUME, "the replica's promotion"
            )
            promoted = time.monotonic()
            took = [
                await eventually(
                    partial(quoted_since, inbox, mine, promoted), RESUME, "the lost shard's quotes"
                )
                - lost
                for inbox in d.inboxes
            ]
        finally:
            if freeze:
                victim.thaw()
        until = time.monotonic()
        gaps = [quiet(inbox, others, lost, until) for inbox in d.inboxes]
        how = "frozen" if freeze else "killed"
        print(f"\nmaster of {mine} {how}: replica promoted after {promoted - lost:.2f} s, its symbols back after "
              + ", ".join(f"{t:.2f} s" for t in took) + "; the other shards' longest pause "
              + ", ".join(f"{g:.2f} s" for g in gaps))  # fmt: skip
        assert max(took) < RESUME  # the promise: not scaled
        assert max(gaps) < FLOWING, f"the other shards paused {max(gaps):.2f} s"
        assert lease_home.command("GET", LAYOUT.lease) == token  # never lapsed: the same term throughout
        assert "retook the lease" not in d.pubs[0].output() and "stands by" not in d.pubs[0].output()
        for p in [*d.pubs, *d.edges]:  # no session started again: only the lost shard's channels and writes
            out = p.output()
            assert "Redis is back" not in out and "lost Redis" not in out, out
        undisturbed(d)
    if freeze:  # it came back as its replica's replica: the cluster is whole again for the next tests
        await eventually(lambda: asyncio.to_thread(cluster.healthy), 20.0, "the frozen master to rejoin")


async def test_a_frozen_master_pauses_only_its_own_shard_and_the_lease_holds(
    cluster: LocalCluster, syms: list[str]
):
    """SIGSTOP of a master holding neither slot 0 nor the lease: hung connections, not refused ones."""
    victim = next(
        n
        for n in cluster.live()
        if n.command("ROLE")[0] == "master" and n not in (cluster.master_of(0), master(cluster, LAYOUT.lease))
    )
    await lose_a_master(cluster, syms, victim, freeze=True)


async def test_the_master_of_slot_0_killed_pauses_only_its_own_shard_and_the_lease_holds(
    cluster: LocalCluster, syms: list[str]
):
    """redis-py learns its command table from, and sends keyless commands to, the master of slot 0: not here."""
    await lose_a_master(cluster, syms, cluster.master_of(0), freeze=False)


async def test_a_killed_master_fails_over_and_the_publisher_and_edges_resume_within_10_s(
    cluster: LocalCluster, syms: list[str]
):
    async with deployment(cluster, syms, publishers=1, edges=2) as d:
        victim = master(cluster, LAYOUT.lease)  # the shard of the lease, the demand and the control channel
        replica = cluster.replica_of(victim)
        assert any(master(cluster, LAYOUT.channel(s)) is victim for s in syms)
        victim.kill()
        killed = time.monotonic()
        await eventually(
            lambda: asyncio.to_thread(cluster.promoted, replica), RESUME, "the replica's promotion"
        )
        promoted = time.monotonic() - killed

        def resumed(inbox: Inbox) -> float | None:
            """When the client had a snapshot after the kill and then quotes of every symbol (None: not yet)."""
            snaps = [at for at, m in inbox.msgs if at > killed and m["type"] == "snapshot"]
            if not snaps:
                return None
            firsts: dict[str, float] = {}
            for at, m in inbox.msgs:
                if at > snaps[-1] and m["type"] == "quotes":
                    for e in m["data"]:
                        firsts.setdefault(e["s"], at)
            return max(firsts.values()) - killed if set(firsts) == set(syms) else None

        took: list[float] = []
        for inbox in d.inboxes:
            took.append(await eventually(partial(resumed, inbox), RESUME + 5.0, "the client's resync"))
        retook = "retook the lease" in d.pubs[0].output()
        print(f"\nmaster killed: replica promoted after {promoted:.2f} s, clients resumed after "
              + ", ".join(f"{t:.2f} s" for t in took) + (", lease taken again" if retook else ", lease held"))  # fmt: skip
        assert max(took) < RESUME  # the promise: not scaled
        for p in [*d.pubs, *d.edges]:
            assert "Redis is back" in p.output()
        assert scrape(f"http://127.0.0.1:{d.pubs[0].metrics_port}")["ticker_broker_up"] == 1
        assert all(scrape(e.url)["ticker_broker_up"] == 1 for e in d.edges)
        assert master(cluster, LAYOUT.lease) is replica
        undisturbed(d)
