"""The publisher lease on a Redis Cluster: the lease on one shard, its token mirrored on every bucket's slot.

A Lua script cannot read a key of another master, so the scripts that write a symbol's keys cannot read the lease
(``{P}:lease``, on the slot of the prefix). Instead every bucket (ticker/broker/redis_slots.py) has a **fence**
``P:fence:{TAG}`` on its own slot, and every fenced write of a bucket's keys checks that bucket's fence as a single
Redis checks the lease: a publish window runs one :data:`FLUSH` per master, which checks the fence of each bucket
it writes (the last values and the ``SPUBLISH`` of each of the bucket's symbols) and skips a bucket refused;
other writes (bars) run :data:`~ticker.broker.redis_lease.FENCED` once per slot with ``KEYS[1]`` = the fence of
that slot, or the lease itself for the keys of no symbol (health, directory, source, ``hello``).

The lease holder writes the fences (:data:`MIRROR`): when it takes the lease and after each renewal, it sets every
fence to its token expiring at an absolute time (``PXAT``): the lease master's clock when it renewed (its
``TIME``, returned by :data:`ACQUIRE` and :data:`RENEW`) plus the TTL, so a fence ends no later than the lease it
mirrors, and a mirror that arrives late lands already expired (the masters' clocks must agree: a master whose
clock is behind keeps a fence that much longer). A fence holding another publisher's token is overwritten only
if that token's epoch is lower (an earlier term) or it is this publisher's own; otherwise the mirror is refused,
as a write is. So:

- a publisher paused or cut off past its lease finds, when it resumes, every fence lapsed (they lived no longer
  than its lease) or holding the successor's token: every write of its is refused, on every shard;
- a successor mirrors every fence before it publishes, and from then on each shard refuses the old token. The
  old one's writes that a shard ran before that came before any of the successor's there, so no channel ever
  carries an older term after a newer one;
- a refusal that finds a fence vacant or holding an earlier term (a fence not mirrored yet, a shard that lost
  it in a failover) asks for a renewal at once (which mirrors again), never a stand-down; one holding a later
  term makes the publisher stand by, as on a single Redis.

One master's trouble stays its own. The mirrors of a renewal run in the background, one at a time per master and
each bounded by half the TTL, so a hung master never delays the next renewal. A publish window sends each
master's buckets concurrently and waits :data:`FLUSH_WAIT` s at most: a master that has not answered by then (or
failed) keeps its buckets, whose newer windows wait, conflated (the latest value and message of each symbol), and
go once its write is done or, after a failure, after a backoff (:data:`RETRY_BASE`..:data:`RETRY_CAP` s) on the
master that owns them then. A master that refuses the window's script because a slot moves (resharding: "non
local key", ``MOVED``, ``ASK``, ``TRYAGAIN``) is written one bucket at a time, for :data:`SPLIT_FOR` s, by
:data:`FLUSH_ONE`, whose keys are declared so that redis-py follows the slot where it goes. :data:`FLUSH` cannot
declare its keys: Redis refuses declared keys of several slots (``CROSSSLOT``) even with ``allow-cross-slot-keys``,
so it names its target master, and reads every bucket's keys before it writes any, so that a key the master does
not own fails it before anything was written. The keys of no symbol (``hello``) go last, after the window's
buckets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import ClusterDownError, NoScriptError, RedisClusterException, RedisError

from ticker import lease as pure
from ticker.backoff import Backoff
from ticker.broker import redis_layout as rc
from ticker.broker import redis_lease as rl
from ticker.broker import redis_slots as slots
from ticker.broker.redis_cluster import ClusterClient

log = logging.getLogger("ticker.publisher")

FLUSH_WAIT = 0.25  # seconds a publish window waits for a master's write before going on without it
RETRY_BASE, RETRY_CAP = 0.05, 0.25  # backoff of the writes of a master that failed (one write in flight each)
DOWN_RETRY = 0.1  # seconds between two tries while the cluster is down (a failover under way: it ends soon)
STUCK_CHECK = 1.0  # seconds between two readings of the slot map while a master's write hangs
SPLIT_FOR = (
    10.0  # seconds a master that failed a window's script for a moving slot is written bucket by bucket
)

_TIME = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: :data:`~ticker.broker.redis_lease.ACQUIRE`, answering also the lease master's clock (unix ms) when it ran.
ACQUIRE = (
    _TIME
    + """
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur, now} end
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[2]) == 0 then return {2, '', now} end
local token = ARGV[1] .. '#' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {1, token, now}
"""
)

#: :data:`~ticker.broker.redis_lease.RENEW`, answering also the lease master's clock (unix ms) when it ran.
RENEW = (
    _TIME
    + """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, cur, now}
end
if cur then return {0, cur, now} end
local token = ARGV[3] .. '#' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {3, token, now}
"""
)

#: KEYS: a fence; ARGV: the holder's token, when it expires (unix ms), its publisher id, its epoch. 1 if set (or
#: already holding the token as long; 0 when that time has passed here: too late); else the token there.
MIRROR = (
    _TIME
    + """
local cur = redis.call('GET', KEYS[1])
local at = tonumber(ARGV[2])
if cur and cur ~= ARGV[1] then
  local id, epoch = string.match(cur, '^(.*)#(%d+)$')
  if id and id ~= ARGV[3] and tonumber(epoch) >= tonumber(ARGV[4]) then return cur end
end
if at <= now then return 0 end
if cur == ARGV[1] and redis.call('PEXPIRETIME', KEYS[1]) >= at then return 1 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1
"""
)

#: The writes of one bucket (Lua): ARGV[s] is its last-value hash, then its channels' prefix, D, N, D symbols leaving
#: the hash, N times (symbol, its last Q, its channel message). Returns the messages published.
_WRITE = """
local function write(s)
  local last, prefix = ARGV[s], ARGV[s + 1]
  local first = s + 4
  local quotes = first + tonumber(ARGV[s + 2])
  local after = quotes + 3 * tonumber(ARGV[s + 3])
  for j = first, quotes - 1 do redis.call('HDEL', last, ARGV[j]) end
  for j = quotes, after - 1, 3 do
    redis.call('HSET', last, ARGV[j], ARGV[j + 1])
    redis.call('SPUBLISH', prefix .. ARGV[j], ARGV[j + 2])
  end
  return (after - quotes) / 3
end
"""

#: One publish window on one master, fenced per bucket (no declared keys: they span several slots). ARGV: the
#: writer's token, then per bucket with changes: its fence, then the bucket's writes (``_WRITE``). First every
#: bucket's fence and hash are read (a key the master does not own fails the script before anything is written),
#: then each bucket whose fence holds the token is written. Returns {messages published, then the fence's value
#: ('' when vacant) of each bucket skipped}. ``allow-cross-slot-keys``: Redis 7.
FLUSH = (
    "#!lua flags=allow-cross-slot-keys\n"
    + _WRITE
    + """
local token, i = ARGV[1], 2
local starts, holders = {}, {}
while i <= #ARGV do
  holders[#holders + 1] = redis.call('GET', ARGV[i]) or ''
  redis.call('EXISTS', ARGV[i + 1])
  starts[#starts + 1] = i + 1
  i = i + 5 + tonumber(ARGV[i + 3]) + 3 * tonumber(ARGV[i + 4])
end
local out = {0}
for k, s in ipairs(starts) do
  if holders[k] == token then out[1] = out[1] + write(s) else out[#out + 1] = holders[k] end
end
return out
"""
)

#: One bucket's writes, fenced. KEYS: its fence, its last-value hash; ARGV: the writer's token, then the bucket's
#: writes (``_WRITE``; ARGV[2] repeats the hash). Returns as :data:`FLUSH` does.
FLUSH_ONE = (
    _WRITE
    + """
local holder = redis.call('GET', KEYS[1]) or ''
if holder ~= ARGV[1] then return {0, holder} end
return {write(2)}
"""
)


def _sharded(source: str) -> str:
    """``source`` with ``SPUBLISH`` for ``PUBLISH``: every channel of a cluster is a shard channel."""
    if "'PUBLISH'" not in source:
        raise ValueError("the script publishes nothing")
    return source.replace("'PUBLISH'", "'SPUBLISH'")


_ACQUIRE, _RENEW, _MIRROR = rl.Script(ACQUIRE), rl.Script(RENEW), rl.Script(MIRROR)
_FLUSH, _FLUSH_ONE = rl.Script(FLUSH), rl.Script(FLUSH_ONE)
_RELEASE = rl.Script(_sharded(rl.RELEASE))
_FENCED = rl.Script(rl.FENCED)

Call = tuple[rl.Script, Sequence[Any], Sequence[Any]]


def _evalsha(call: Call) -> tuple[int, list[Any]]:
    script, keys, args = call
    return slots.slot_of(keys[0]), ["EVALSHA", script.sha, len(keys), *keys, *args]


async def run_all(client: Redis | ClusterClient, calls: Sequence[Call]) -> list[Any]:
    """Run script calls ``(script, keys, args)``, each on the master of its first key's slot: the calls of a master
    in one pipelined round trip, the masters concurrently. Each call's reply or error (its master's, when that one
    is lost); a script a master does not know (a replica just promoted) is sent whole (``EVAL``) again."""
    cluster = cast(ClusterClient, client)
    results = await cluster.per_master([_evalsha(c) for c in calls])
    missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
    if missing:
        again = []
        for i in missing:
            script, keys, args = calls[i]
            again.append((slots.slot_of(keys[0]), ["EVAL", script.source, len(keys), *keys, *args]))
        for i, got in zip(missing, await cluster.per_master(again), strict=True):
            results[i] = got
    return results


async def run_calls(client: Redis, calls: Sequence[Call]) -> list[Any]:
    """:func:`run_all`, raising the first error."""
    results = await run_all(client, calls)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def stale(holder: str, publisher: str, epoch: int) -> bool:
    """Whether a fence holding ``holder`` is merely not mirrored yet for ``publisher`` in term ``epoch``: vacant,
    or the token of one of its own terms or of an earlier term."""
    parsed = pure.parse_token(holder)
    return not holder or (parsed is not None and (parsed[0] == publisher or parsed[1] < epoch))


@dataclass
class _Backlog:
    """One bucket's writes not done yet: symbols leaving its hash, and each symbol's latest (Q, message)."""

    dropped: set[str] = field(default_factory=set)
    quotes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def then(self, newer: _Backlog) -> _Backlog:
        """These writes followed by ``newer``'s (a symbol's later value replaces its earlier one)."""
        for sym in newer.dropped:
            self.quotes.pop(sym, None)
        self.dropped |= newer.dropped
        self.quotes.update(newer.quotes)
        return self

    def words(self, layout: rc.Layout, bucket: int) -> list[Any]:
        """The bucket's writes as :data:`FLUSH` and :data:`FLUSH_ONE` take them (``_WRITE``)."""
        out: list[Any] = [
            layout.last_of(bucket),
            layout.channel_prefix(bucket),
            len(self.dropped),
            len(self.quotes),
        ]
        out += self.dropped
        for sym, (last, message) in self.quotes.items():
            out += (sym, last, message)
        return out


@dataclass
class _Outcome:
    """What one master's write of a window did."""

    sent: int = 0
    holders: list[str] = field(default_factory=list)  # of the buckets refused
    failed: dict[int, _Backlog] = field(default_factory=dict)  # buckets not written: they wait and go again
    error: BaseException | None = None
    split: bool = False  # its script was refused for a moving slot: write it bucket by bucket a while


@dataclass
class _Master:
    """A master's state as the publisher writes to it."""

    backoff: Backoff = field(default_factory=lambda: Backoff(RETRY_BASE, RETRY_CAP))
    retry_at: float = 0.0  # monotonic: its buckets wait until then after a failure
    split_until: float = 0.0  # monotonic: bucket by bucket until then
    failing: bool = False  # a failure was logged; its recovery will be


@dataclass
class _Write:
    """A master's write in flight."""

    node: str
    token: str
    work: dict[int, _Backlog]
    started: float = field(default_factory=time.monotonic)


class ClusterLease(rl.Lease):
    """The publisher lease on a cluster: :class:`~ticker.broker.redis_lease.Lease` plus the fences it mirrors, and
    publish windows whose masters each fail on their own."""

    def __init__(self, layout: rc.Layout, publisher: str, ttl: float) -> None:
        super().__init__(layout, publisher, ttl)
        self._mirrors: dict[str, asyncio.Task[None]] = {}  # master → its mirror in flight
        self._client: ClusterClient | None = None  # the client of the writes below
        self._term: str | None = None  # the token they were made with
        self._pending: dict[int, _Backlog] = {}  # bucket → writes waiting
        self._writes: dict[asyncio.Task[_Outcome], _Write] = {}
        self._busy: set[int] = set()  # buckets with a write in flight
        self._masters: dict[str, _Master] = {}
        self._checked = 0.0  # when the slot map was last read again for a hanging write (monotonic)

    # -- the lease and its mirrors -------------------------------------------------------------
    async def acquire(self, client: Redis, force: bool) -> tuple[int, str]:
        """Take the lease, then mirror it on every fence before the publisher starts (waiting a third of the TTL
        at most: a fence not written yet refuses the writes of its bucket, which ask for a renewal)."""
        status, value, now_ms = await _ACQUIRE.run(
            client,
            [self.layout.lease, self.layout.epoch],
            [self.publisher, self.ttl_ms, "1" if force else "0"],
        )
        value = rl.text(value)
        if status == rl.ACQUIRED:
            self._hold(value)
            await self._mirror_quietly(client, int(now_ms) + self.ttl_ms, self.ttl / 3)
        return int(status), value

    async def renew(self, client: Redis) -> tuple[int, str]:
        """Extend the lease (as :meth:`Lease.renew <ticker.broker.redis_lease.Lease.renew>`), then mirror it in
        the background: this returns once the lease master answered."""
        current = self.token
        if current is None:
            return rl.HELD, ""
        status, value, now_ms = await _RENEW.run(
            client, [self.layout.lease, self.layout.epoch], [current, self.ttl_ms, self.publisher]
        )
        value = rl.text(value)
        if self.token != current:  # stood down meanwhile (a refused write): keep what it decided
            return rl.HELD, value
        if status == rl.RETAKEN:
            self._hold(value)
        elif status == rl.HELD:
            self.stand_down(pure.lost_reason(value, refused=False))
            return int(status), value
        await self._mirror_quietly(client, int(now_ms) + self.ttl_ms, 0.0)
        return int(status), value

    async def _mirror_quietly(self, client: Redis, expire_at_ms: int, within: float) -> None:
        try:
            await self.mirror(client, expire_at_ms, within)
        except (RedisError, OSError, RedisClusterException) as exc:
            log.debug("could not mirror the lease on every shard now: %r", exc)
            self.renew_wanted.set()

    async def mirror(self, client: Redis, expire_at_ms: int, within: float | None = None) -> None:
        """Set every fence to this publisher's token until ``expire_at_ms`` (unix ms, the lease master's clock),
        one call per master concurrently, each bounded by half the TTL; a master whose last mirror still runs is
        left to it. Waits ``within`` s at most for them (None: until all are done)."""
        token = self.token
        if token is None:
            return
        cluster = cast(ClusterClient, client)
        nodes = await cluster.masters(slots.BUCKET_SLOTS)
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for b, node in enumerate(nodes):
            groups.setdefault(node.name, (node, []))[1].append(b)
        started = []
        loop = asyncio.get_running_loop()
        for name, (node, buckets) in groups.items():
            running = self._mirrors.get(name)
            if running is not None and not running.done():
                continue
            task = loop.create_task(self._mirror_on(cluster, node, token, expire_at_ms, buckets))
            self._mirrors[name] = task
            started.append(task)
        if started and (within is None or within > 0):
            await asyncio.wait(started, timeout=within)

    async def _mirror_on(
        self, cluster: ClusterClient, node: ClusterNode, token: str, expire_at_ms: int, buckets: list[int]
    ) -> None:
        args = [token, expire_at_ms, self.publisher, self.epoch]
        calls: list[Call] = [(_MIRROR, [self.layout.fence(b)], args) for b in buckets]
        try:
            got = await asyncio.wait_for(run_all(cluster, calls), self.ttl / 2)
        except (TimeoutError, RedisError, OSError, RedisClusterException) as exc:
            log.debug("no mirror on %s: %r", node.name, exc)
            cluster.suspect(node.name)
            cluster.forget_slots()  # its slots may have gone to its replica meanwhile
            return
        for r in got:
            if isinstance(r, bytes | str) and self.token == token:
                self.refused(rl.text(r))
        errors = [r for r in got if isinstance(r, BaseException)]
        if errors:
            log.debug("%d mirrors on %s failed: %r", len(errors), node.name, errors[0])

    def refused(self, holder: str) -> None:
        """A refused write (or mirror) found ``holder`` in a fence: stand down only for a later term's token."""
        if self.token is not None and holder != self.token and stale(holder, self.publisher, self.epoch):
            holder = ""  # not mirrored yet (or lost in a failover): renew, which mirrors again
        super().refused(holder)

    async def release(self, client: Redis) -> bool:
        """Give the lease up and tell the standbys (on the sharded ``P:publishers``)."""
        self._drop_writes()
        for task in self._mirrors.values():
            task.cancel()
        self._mirrors.clear()
        current, self.token = self.token, None
        if current is None:
            return False
        message = rl.RELEASE_MESSAGE + current.encode()
        done = await _RELEASE.run(client, [self.layout.lease], [current, self.layout.publishers, message])
        return bool(done)

    def pipeline(self, client: Redis) -> ClusterFencedPipeline:
        return ClusterFencedPipeline(client, self)

    # -- publish windows -----------------------------------------------------------------------
    async def flush(self, client: Redis, args: list[Any]) -> int | None:
        """One publish window (``args`` as :meth:`Lease.flush` takes them): each master's buckets in one
        :data:`FLUSH`, the masters concurrently, waiting :data:`FLUSH_WAIT` s at most (a master slower than that,
        or failing, keeps its buckets: above); then ``hello`` (if asked) fenced by the lease. The messages sent by
        the writes done meanwhile; None when a bucket refused. Raises only when no slot map can be had."""
        current = self.token
        if current is None:
            return None
        cluster = cast(ClusterClient, client)
        if cluster is not self._client or current != self._term:  # a new session or term: it restores all
            self._drop_writes()
            self._client, self._term = cluster, current
        ctl, hello, dropped_n = args[2], args[3], int(args[4])
        dropped, rest = args[5 : 5 + dropped_n], args[5 + dropped_n :]
        window: dict[int, _Backlog] = {}
        for sym in dropped:
            window.setdefault(slots.bucket_of(sym), _Backlog()).dropped.add(sym)
        for i in range(0, len(rest), 3):
            window.setdefault(slots.bucket_of(rest[i]), _Backlog()).quotes[rest[i]] = (
                rest[i + 1],
                rest[i + 2],
            )
        for b, work in window.items():
            self._pending[b] = self._pending[b].then(work) if b in self._pending else work
        sent, refused = self._settle()
        started = await self._start_writes(cluster, current)
        if started:
            await asyncio.wait(started, timeout=FLUSH_WAIT)
        more, refused_now = self._settle()
        if refused or refused_now:
            return None
        if ctl:
            try:
                await self.pipeline(client).publish(ctl, hello).execute()
            except rl.Fenced:
                return None
        return sent + more

    async def _start_writes(self, cluster: ClusterClient, token: str) -> list[asyncio.Task[_Outcome]]:
        """A write per master of its waiting buckets that may go now (none in flight, the master not in backoff).
        A write hanging past :data:`FLUSH_WAIT` s is given up once the slot map (read again every
        :data:`STUCK_CHECK` s meanwhile) gives its buckets to another master: a replica promoted."""
        now = time.monotonic()
        stuck = {t: w for t, w in self._writes.items() if not t.done() and now - w.started > FLUSH_WAIT}
        if stuck and now - self._checked > STUCK_CHECK:
            self._checked = now
            cluster.forget_slots()
        ready = [b for b in self._pending if b not in self._busy]
        hung = [b for w in stuck.values() for b in w.work]
        if not ready and not hung:
            return []
        try:
            nodes = await cluster.masters(slots.BUCKET_SLOTS[b] for b in [*ready, *hung])
        except RedisClusterException as exc:
            raise ConnectionError(f"no slot map: {exc}") from exc
        owner = {b: n.name for b, n in zip([*ready, *hung], nodes, strict=True)}
        for task, write in stuck.items():
            if all(owner[b] != write.node for b in write.work):
                task.cancel()  # settled as not written: its buckets go to their new master
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for b, node in zip(ready, nodes, strict=False):
            groups.setdefault(node.name, (node, []))[1].append(b)
        started: list[asyncio.Task[_Outcome]] = []
        loop = asyncio.get_running_loop()
        for name, (node, buckets) in groups.items():
            state = self._masters.setdefault(name, _Master())
            if state.retry_at > now:
                continue
            work = {b: self._pending.pop(b) for b in buckets}
            self._busy.update(work)
            task = loop.create_task(self._write(cluster, node, token, work, split=state.split_until > now))
            self._writes[task] = _Write(name, token, work)
            started.append(task)
        return started

    async def _write(
        self, cluster: ClusterClient, node: ClusterNode, token: str, work: dict[int, _Backlog], split: bool
    ) -> _Outcome:
        """Write ``work`` to ``node``: one :data:`FLUSH`, or one :data:`FLUSH_ONE` per bucket (``split``, or after
        the master refused the script for a moving slot)."""
        layout = self.layout
        if not split:
            words: list[Any] = [token]
            for b, backlog in work.items():
                words += [layout.fence(b), *backlog.words(layout, b)]
            try:
                got = await _on_node(cluster, _FLUSH, node, words)
                return _Outcome(int(got[0]), [rl.text(h) for h in got[1:]])
            except (RedisError, OSError, RedisClusterException) as exc:
                if not _moving(exc):
                    return _Outcome(failed=work, error=exc)
                cluster.forget_slots()
        calls: list[Call] = [
            (_FLUSH_ONE, [layout.fence(b), layout.last_of(b)], [token, *backlog.words(layout, b)])
            for b, backlog in work.items()
        ]
        out = _Outcome(split=True)
        for (b, backlog), got in zip(work.items(), await run_all(cluster, calls), strict=True):
            if isinstance(got, BaseException):
                out.failed[b] = backlog
                out.error = out.error or got
            else:
                out.sent += int(got[0])
                out.holders += [rl.text(h) for h in got[1:]]
        return out

    def _settle(self) -> tuple[int, bool]:
        """Take the outcome of every write done: (messages sent, whether a bucket refused). A bucket not written
        goes back before its newer writes; its master waits a backoff."""
        sent, refused = 0, False
        now = time.monotonic()
        for task in [t for t in self._writes if t.done()]:
            write = self._writes.pop(task)
            self._busy.difference_update(write.work)
            out = _Outcome(failed=write.work) if task.cancelled() else task.result()
            sent += out.sent
            if write.token == self.token:
                for holder in out.holders:
                    self.refused(holder)
                    refused = True
                for b, backlog in out.failed.items():
                    self._pending[b] = backlog.then(self._pending[b]) if b in self._pending else backlog
            state = self._masters.setdefault(write.node, _Master())
            if out.split and state.split_until <= now:
                log.info(
                    "%s refused a window for a slot on the move: writing its buckets one by one", write.node
                )
                state.split_until = now + SPLIT_FOR
            if out.error is not None:
                down = "cluster is down" in str(out.error) or isinstance(out.error, ClusterDownError)
                state.retry_at = now + (DOWN_RETRY if down else state.backoff.next_delay())
                if not state.failing:
                    state.failing = True
                    log.warning(
                        "could not publish to %s (%s); its %d buckets wait and go again",
                        write.node,
                        out.error or type(out.error).__name__,
                        len(out.failed),
                    )
                else:
                    log.debug("publishing to %s failed again: %r", write.node, out.error)
            elif not out.failed:
                state.backoff.reset()
                state.retry_at = 0.0
                if state.failing:
                    state.failing = False
                    log.info("publishing to %s again", write.node)
        return sent, refused

    def _drop_writes(self) -> None:
        """Forget the waiting writes and cancel those in flight (a new session restores every last value)."""
        for task in self._writes:
            task.cancel()
        self._writes.clear()
        self._busy.clear()
        self._pending.clear()
        self._masters.clear()


def _moving(exc: BaseException) -> bool:
    """Whether a master refused a script because a slot it touches is moving (or moved) to another master."""
    text = str(exc)
    return any(w in text for w in ("non local key", "MOVED", "ASK", "TRYAGAIN", "CROSSSLOT"))


async def _on_node(cluster: ClusterClient, script: rl.Script, node: ClusterNode, args: list[Any]) -> Any:
    """Run ``script`` (declaring no key: it touches several slots of ``node``) on ``node``."""
    try:
        return await cluster.execute_command("EVALSHA", script.sha, 0, *args, target_nodes=node)
    except NoScriptError:
        return await cluster.execute_command("EVAL", script.source, 0, *args, target_nodes=node)


class ClusterFencedPipeline(rl.FencedPipeline):
    """A fenced write on a cluster: its commands grouped by slot, each group checked against its fence (the
    lease for keys of no symbol, which run last); ``publish`` is ``SPUBLISH``."""

    def publish(self, channel: bytes | str, message: bytes | str) -> rl.FencedPipeline:
        return self._add("SPUBLISH", channel, message)

    def hset(self, key: str, mapping: Any) -> rl.FencedPipeline:
        if key == self.lease.layout.last:  # the last values: each bucket's in its own hash
            by_bucket: dict[int, dict[str, bytes | str]] = {}
            for sym, value in mapping.items():
                by_bucket.setdefault(slots.bucket_of(sym), {})[sym] = value
            for bucket, part in by_bucket.items():
                super().hset(self.lease.layout.last_of(bucket), part)
            return self
        return super().hset(key, mapping)

    async def execute(self) -> int:
        if self.token is None:
            raise rl.Fenced("")
        layout = self.lease.layout
        groups: dict[str, list[list[Any]]] = {}
        for words in self.commands:
            keys = words[1:] if words[0] == "DEL" else words[1:2]  # a DEL of several keys: one per key
            for key in keys:
                one = words if words[0] != "DEL" else ["DEL", key]
                groups.setdefault(layout.fence_of(key), []).append(one)
        control = groups.pop(layout.lease, [])
        ran = 0
        for batch in (groups, {layout.lease: control} if control else {}):
            calls: list[Call] = []
            for fence, commands in batch.items():
                part = rl.FencedPipeline(self.client, self.lease)
                part.commands = commands
                calls += [(_FENCED, [fence], [self.token, *argv]) for argv in part.calls()]
            for got in await run_calls(self.client, calls):
                if isinstance(got, bytes | str):
                    holder = rl.text(got)
                    self.lease.refused(holder)
                    raise rl.Fenced(holder)
                ran += int(got)
        return ran


def new_lease(layout: rc.Layout, publisher: str, ttl: float) -> rl.Lease:
    """This process's lease under ``layout``: mirrored on every shard's fences in a cluster."""
    return ClusterLease(layout, publisher, ttl) if layout.cluster else rl.Lease(layout, publisher, ttl)
