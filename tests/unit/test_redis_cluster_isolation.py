"""One Redis Cluster master's trouble stays its own (ticker/broker/redis_fence.py, ticker/broker/redis_cluster.py),
against fakes of the cluster: a publish window does not wait for a hung master, whose buckets wait (conflated,
in order) and go to its replica once promoted; a late SUNSUBSCRIBE confirmation is no moved slot; the first node
to answer is asked for the slot map. The real cluster is in tests/e2e/test_redis_cluster.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from ticker.broker import redis_cluster as rcl
from ticker.broker import redis_fence as rf
from ticker.broker import redis_layout as rc
from ticker.broker.redis_slots import BUCKET_SLOTS, bucket_of

LAYOUT = rc.Layout("ticker", cluster=True)


@dataclass
class FakeNode:
    name: str


@dataclass
class FakeCluster:
    """Masters by name: ``owner`` slot → master (else ``default``); ``hung`` masters never answer. Each FLUSH
    received is kept as (master, [(symbol, message), ...])."""

    owner: dict[int, str] = field(default_factory=dict)
    default: str = "a"
    hung: set[str] = field(default_factory=set)
    flushes: list[tuple[str, list[tuple[str, Any]]]] = field(default_factory=list)

    async def masters(self, slot_numbers: Any) -> list[FakeNode]:
        return [FakeNode(self.owner.get(s, self.default)) for s in slot_numbers]

    def forget_slots(self) -> None:
        pass

    def suspect(self, name: str) -> None:
        pass

    async def execute_command(self, *args: Any, target_nodes: FakeNode) -> list[Any]:
        if target_nodes.name in self.hung:
            await asyncio.Event().wait()
        words, i, written = args[3:], 1, []
        while i < len(words):  # per bucket: fence, hash, prefix, D, N, D symbols, N (symbol, Q, message)
            dropped, quotes = int(words[i + 3]), int(words[i + 4])
            first = i + 5 + dropped
            written += [(words[j], words[j + 2]) for j in range(first, first + 3 * quotes, 3)]
            i = first + 3 * quotes
        self.flushes.append((target_nodes.name, written))
        return [len(written)]


def window(*quotes: tuple[str, str]) -> list[Any]:
    """A publish window's args (as the publisher passes them): no hello, nothing dropped, one message each."""
    args: list[Any] = [b"", b"", b"", rc.HELLO, 0]
    for sym, message in quotes:
        args += [sym, b"{}", message]
    return args


def sent_to(cluster: FakeCluster, master: str) -> list[tuple[str, Any]]:
    return [w for name, written in cluster.flushes if name == master for w in written]


async def test_a_hung_master_holds_only_its_buckets_which_go_conflated_to_its_replica_once_promoted(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(rf, "FLUSH_WAIT", 0.05)
    hung_sym, ok_sym = "AAPL", "MSFT"
    assert bucket_of(hung_sym) != bucket_of(ok_sym)
    slot = BUCKET_SLOTS[bucket_of(hung_sym)]
    cluster = FakeCluster(owner={slot: "b"}, hung={"b"})
    lease = rf.ClusterLease(LAYOUT, "me", 3.0)
    lease.token, lease.epoch = "me#1", 1
    client = cast(Any, cluster)

    began = time.monotonic()
    assert await lease.flush(client, window((ok_sym, "m1"), (hung_sym, "h1"))) == 1
    assert time.monotonic() - began < 1.0  # the healthy master's write counted; the hung one not waited for
    assert await lease.flush(client, window((ok_sym, "m2"), (hung_sym, "h2"))) == 1
    assert await lease.flush(client, window((hung_sym, "h3"))) == 0
    assert sent_to(cluster, "a") == [(ok_sym, "m1"), (ok_sym, "m2")]
    assert sent_to(cluster, "b") == []
    # Its replica is promoted: the write hanging on the old master is given up, and the bucket's latest
    # message (h3, which replaced h2; h1 went back before it and was replaced too) goes to the new one.
    cluster.owner[slot] = "c"
    await asyncio.sleep(0.06)
    for _ in range(3):
        await lease.flush(client, window((ok_sym, "m3")))
    assert sent_to(cluster, "c") == [(hung_sym, "h3")]
    assert sent_to(cluster, "a")[-1] == (ok_sym, "m3") and not lease.lost.is_set()


async def test_a_failed_write_goes_again_before_the_newer_ones_and_a_refusal_is_not_retried():
    cluster = FakeCluster()
    lease = rf.ClusterLease(LAYOUT, "me", 3.0)
    lease.token, lease.epoch = "me#1", 1
    failing = True

    async def flaky(*args: Any, target_nodes: FakeNode) -> list[Any]:
        if failing:
            raise rcl.RedisConnectionError("lost")
        return await FakeCluster.execute_command(cluster, *args, target_nodes=target_nodes)

    cluster.execute_command = flaky  # type: ignore[method-assign]
    client = cast(Any, cluster)
    assert await lease.flush(client, window(("AAPL", "a1"), ("MSFT", "m1"))) == 0
    failing = False
    state = next(iter(lease._masters.values()))
    state.retry_at = 0.0  # skip the backoff
    assert await lease.flush(client, window(("AAPL", "a2"))) == 2
    assert sorted(sent_to(cluster, "a")) == [("AAPL", "a2"), ("MSFT", "m1")]  # a1 replaced by a2, m1 kept


def test_a_bucket_backlog_keeps_each_symbols_latest_write_in_order():
    older = rf._Backlog(quotes={"A": (b"q1", b"m1"), "B": (b"q1", b"n1")})
    newer = rf._Backlog(dropped={"B"}, quotes={"A": (b"q2", b"m2")})
    got = older.then(newer)
    assert got.quotes == {"A": (b"q2", b"m2")} and got.dropped == {"B"}
    again = got.then(rf._Backlog(quotes={"B": (b"q3", b"n3")}))  # dropped then carried again: HDEL, then HSET
    assert again.dropped == {"B"} and again.quotes["B"] == (b"q3", b"n3")
    words = again.words(LAYOUT, 7)
    assert words[:4] == [LAYOUT.last_of(7), LAYOUT.channel_prefix(7), 1, 2] and words[4] == "B"


@pytest.mark.parametrize(
    ("error", "moving"),
    [
        ("ERR Script attempted to access a non local key in a cluster node script: ...", True),
        ("MOVED 3999 127.0.0.1:6381", True),
        ("TRYAGAIN Multiple keys request during rehashing of slot", True),
        ("Script attempted to execute a command while the cluster is down", False),
        ("Connection closed by server.", False),
    ],
)
def test_a_script_refused_for_a_moving_slot_is_told_from_other_errors(error: str, moving: bool):
    assert rf._moving(Exception(error)) is moving


class FakePubSub:
    """Hands out ``messages``, then waits for ever."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    async def get_message(self, timeout: float | None = None) -> dict[str, Any] | None:
        if self.messages:
            return self.messages.pop(0)
        await asyncio.Event().wait()
        return None


class FakeSubscriptionCluster:
    forgot = 0

    def forget_slots(self) -> None:
        self.forgot += 1


def _shard(kind: str, channel: bytes, data: Any = 1) -> dict[str, Any]:
    return {"type": kind, "pattern": None, "channel": channel, "data": data}


async def test_a_late_sunsubscribe_confirmation_is_no_moved_slot_but_the_masters_own_is():
    ch, other = LAYOUT.channel("AAPL"), LAYOUT.channel("MSFT")
    cluster = FakeSubscriptionCluster()
    sub = rcl.ShardedSubscription(cast(Any, cluster))
    messages = [
        _shard("sunsubscribe", ch),  # ours (dropped then added again at once): two confirmations pending
        _shard("ssubscribe", ch),
        _shard("sunsubscribe", ch),
        _shard("ssubscribe", ch),
        _shard("smessage", ch, b"still here"),
        _shard("sunsubscribe", other),  # not asked for: the master gave it up
        _shard("smessage", ch, b"after"),
    ]
    node = rcl._NodeSubscription("n1", cast(Any, None), cast(Any, FakePubSub(messages)))
    node.channels = {ch, other}
    node.leaving.update([ch, ch])
    sub._nodes["n1"] = node
    sub._where.update({ch: "n1", other: "n1"})
    reader = asyncio.get_running_loop().create_task(sub._read(node))
    got = [cast(dict[str, Any], await sub._queue.get()) for _ in range(2)]
    reader.cancel()
    assert [m["data"] for m in got] == [b"still here", b"after"] and all(m["type"] == "message" for m in got)
    assert sub._orphans == {other} and node.channels == {ch} and cluster.forgot == 1
    assert not node.leaving


async def test_the_slot_map_is_asked_of_the_first_node_to_answer(monkeypatch: pytest.MonkeyPatch):
    class Node:
        def __init__(self, name: str, delay: float | None, fails: bool = False) -> None:
            self.name, self.delay, self.fails = name, delay, fails

        async def execute_command(self, *args: Any) -> bool:
            if self.delay is None:
                await asyncio.Event().wait()
            await asyncio.sleep(self.delay or 0.0)
            if self.fails:
                raise rcl.RedisConnectionError("refused")
            return True

    hung, refused, slow, quick = (
        Node("hung", None),
        Node("refused", 0.0, True),
        Node("slow", 0.2),
        Node("q", 0.01),
    )
    nodes = cast(Any, [hung, refused, slow, quick])
    assert await rcl._first_to_answer(nodes) is quick
    monkeypatch.setattr(rcl, "TOPOLOGY_TIMEOUT", 0.05)
    began = time.monotonic()
    assert await rcl._first_to_answer(cast(Any, [hung, refused])) is None
    assert time.monotonic() - began < 1.0
