"""The publisher lease in Redis, and the fenced writes of the active publisher.

Layout (``P`` is ``--broker-prefix``): ``P:lease`` holds the active publisher's token ``ID#EPOCH`` with a TTL of
``--lease-ttl``; ``P:epoch`` counts the takeovers (``INCR`` at each, so a token is never reused); the channel
``P:publishers`` carries ``release TOKEN`` when the active one stops (standbys subscribe, and take over at once).

Every script is atomic. :data:`ACQUIRE` takes a vacant lease, :data:`RENEW` extends the holder's (or retakes a
vacant one: Redis restarted empty, or the holder was away longer than the TTL and nobody took it), :data:`RELEASE`
gives it up. Every write of the active publisher that an edge node could see goes through a script that first
checks the lease still holds the writer's token (:data:`FLUSH` for quotes, :data:`FENCED` for anything else), so
Redis itself refuses the writes of a publisher that lost the lease; the script answers the holder instead, and
:meth:`Lease.refused` says what the publisher does (:func:`ticker.lease.refusal`). The pure rules are
:mod:`ticker.lease`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from ticker import lease as pure
from ticker.broker import redis_bars as rb
from ticker.broker import redis_layout as rc

# Answers of ACQUIRE and RENEW: {status, token}.
HELD = 0  # another publisher holds the lease (its token)
ACQUIRED = 1  # ACQUIRE: taken (the new token); RENEW: still ours, extended
VACANT_LOST = 2  # ACQUIRE: vacant but its epoch is gone too (Redis lost its data): not taken without force
RETAKEN = 3  # RENEW: it was vacant and is ours again, in a new epoch (the new token)

RELEASE_MESSAGE = b"release "  # + the token, on P:publishers
MAX_WORDS = 20_000  # words of one fenced script call (more go in further calls of the same round trip)
HSET_CHUNK = 1_000  # fields of one HSET in a fenced write (Lua's unpack has a limit)

#: KEYS: lease, epoch; ARGV: publisher id, TTL ms, '1' to take it even when the epoch is gone.
ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[2]) == 0 then return {2, ''} end
local token = ARGV[1] .. '#' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {1, token}
"""

#: KEYS: lease, epoch; ARGV: the holder's token, TTL ms, its publisher id.
RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, cur}
end
if cur then return {0, cur} end
local token = ARGV[3] .. '#' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {3, token}
"""

#: KEYS: lease; ARGV: the holder's token, the channel, the message. 1 if released.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

#: KEYS: lease, then keys to delete only while nobody holds the lease (a stopping publisher's health report).
VACATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""

#: KEYS: lease; ARGV: the writer's token, then commands, each as its number of words and the words: a Redis
#: command, or ``SERIES key bound ttl replace t bar t bar ...`` (a bar series, ticker/broker/redis_bars.py).
#: Returns how many commands ran, or the lease's holder ('' when vacant) when it is not the writer.
FENCED = (
    rb.SERIES_FUNCTION
    + """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return holder or '' end
local i, n = 2, 0
while i <= #ARGV do
  local len = tonumber(ARGV[i])
  if ARGV[i + 1] == 'SERIES' then
    write_series(ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5] == '1', ARGV, i + 6, i + len)
  else
    redis.call(unpack(ARGV, i + 1, i + len))
  end
  i = i + len + 1
  n = n + 1
end
return n
"""
)

#: One publish window, fenced. KEYS: lease, last-value hash; ARGV: the token, the quote channels' prefix, the
#: control channel ('' for no hello), the hello message, D, D symbols leaving the hash, then per symbol:
#: symbol, its last Q, its channel message. Returns the messages published, or the holder as FENCED does.
FLUSH = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return holder or '' end
local first = 6 + tonumber(ARGV[5])
for i = 6, first - 1 do redis.call('HDEL', KEYS[2], ARGV[i]) end
local n = 0
for i = first, #ARGV, 3 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('PUBLISH', ARGV[2] .. ARGV[i], ARGV[i + 2])
  n = n + 1
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return n
"""


@dataclass(frozen=True)
class Script:
    """A Lua script run by its SHA1, sent whole when Redis does not know it (after a restart)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    async def run(self, client: Redis, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


_ACQUIRE, _RENEW, _RELEASE, _VACATE = Script(ACQUIRE), Script(RENEW), Script(RELEASE), Script(VACATE)
_FENCED, _FLUSH = Script(FENCED), Script(FLUSH)


def text(value: bytes | str) -> str:
    """A reply as text."""
    return value.decode() if isinstance(value, bytes) else value


class Fenced(Exception):
    """Redis refused a write: the lease does not hold the writer's token (``holder`` does; "" when vacant)."""

    def __init__(self, holder: str) -> None:
        super().__init__(
            f"refused: the lease is held by {pure.describe(holder)}" if holder else "refused: no lease"
        )
        self.holder = holder


class Lease:
    """This process's side of the publisher lease under one prefix: its token while it holds the lease.

    :attr:`lost` is set once it knows it lost the lease (a renewal found another holder, or Redis refused a
    write), with :attr:`lost_reason`; :attr:`renew_wanted` once a refused write found the lease vacant."""

    def __init__(self, layout: rc.Layout, publisher: str, ttl: float) -> None:
        self.layout = layout
        self.publisher = publisher
        self.ttl = ttl
        self.ttl_ms = max(1, round(ttl * 1000))
        self.token: str | None = None
        self.epoch = 0
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.renew_wanted = asyncio.Event()

    def _hold(self, token: str) -> None:
        parsed = pure.parse_token(token)
        self.token = token
        self.epoch = parsed[1] if parsed else 0
        self.lost.clear()
        self.lost_reason = ""

    async def acquire(self, client: Redis, force: bool) -> tuple[int, str]:
        """Try to take the lease: (:data:`ACQUIRED`, token), (:data:`HELD`, holder) or (:data:`VACANT_LOST`, "")."""
        status, value = await _ACQUIRE.run(
            client,
            [self.layout.lease, self.layout.epoch],
            [self.publisher, self.ttl_ms, "1" if force else "0"],
        )
        value = text(value)
        if status == ACQUIRED:
            self._hold(value)
        return int(status), value

    async def renew(self, client: Redis) -> tuple[int, str]:
        """Extend the lease: (:data:`ACQUIRED`, token), (:data:`RETAKEN`, new token) or (:data:`HELD`, holder),
        in which case the lease is :attr:`lost`."""
        current = self.token
        if current is None:
            return HELD, ""
        status, value = await _RENEW.run(
            client, [self.layout.lease, self.layout.epoch], [current, self.ttl_ms, self.publisher]
        )
        value = text(value)
        if self.token != current:  # stood down meanwhile (a refused write): keep what it decided
            return HELD, value
        if status == RETAKEN:
            self._hold(value)
        elif status == HELD:
            self.stand_down(pure.lost_reason(value, refused=False))
        return int(status), value

    async def release(self, client: Redis) -> bool:
        """Give the lease up (it stops) and tell the standbys; whether it still held it."""
        current, self.token = self.token, None
        if current is None:
            return False
        message = RELEASE_MESSAGE + current.encode()
        done = await _RELEASE.run(client, [self.layout.lease], [current, self.layout.publishers, message])
        return bool(done)

    async def vacate(self, client: Redis, *keys: str) -> bool:
        """Delete ``keys`` if nobody holds the lease (nobody took over from a stopping publisher)."""
        return bool(await _VACATE.run(client, [self.layout.lease, *keys], []))

    def stand_down(self, reason: str) -> None:
        """This publisher no longer holds the lease: every write of its is refused from now on, here."""
        self.token = None
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()

    def refused(self, holder: str) -> None:
        """Redis refused a write because the lease held ``holder``."""
        what = pure.refusal(self.token, holder)
        if what is pure.Refusal.RENEW:
            self.renew_wanted.set()
        elif what is pure.Refusal.STAND_DOWN:
            self.stand_down(pure.lost_reason(holder, refused=True))

    def pipeline(self, client: Redis) -> FencedPipeline:
        """A batch of writes that Redis runs only while this publisher holds the lease."""
        return FencedPipeline(client, self)

    async def flush(self, client: Redis, args: list[Any]) -> int | None:
        """Run one publish window (:data:`FLUSH`; ``args[0]`` is left for the token); None when refused."""
        current = self.token
        if current is None:
            return None
        args[0] = current
        got = await _FLUSH.run(client, [self.layout.lease, self.layout.last], args)
        if isinstance(got, bytes | str):
            self.refused(text(got))
            return None
        return int(got)


class FencedPipeline:
    """The commands of one write, as redis-py's pipeline takes them (the subset the publisher uses), run by
    :data:`FENCED` in one round trip: Redis runs them only while the lease holds the token this batch was made
    with. A bar series' write (``evalsha`` of :data:`~ticker.broker.redis_bars.WRITE_SERIES`) is run as its
    ``SERIES`` command. :meth:`execute` raises :class:`Fenced` when refused."""

    def __init__(self, client: Redis, lease: Lease) -> None:
        self.client = client
        self.lease = lease
        self.token = lease.token
        self.commands: list[list[Any]] = []

    def _add(self, *words: Any) -> FencedPipeline:
        self.commands.append(list(words))
        return self

    def set(self, key: str, value: bytes | str, ex: int | None = None) -> FencedPipeline:
        return self._add("SET", key, value) if ex is None else self._add("SET", key, value, "EX", ex)

    def expire(self, key: str, seconds: int) -> FencedPipeline:
        return self._add("EXPIRE", key, seconds)

    def delete(self, *keys: str) -> FencedPipeline:
        return self._add("DEL", *keys)

    def rename(self, src: str, dst: str) -> FencedPipeline:
        return self._add("RENAME", src, dst)

    def persist(self, key: str) -> FencedPipeline:
        return self._add("PERSIST", key)

    def publish(self, channel: bytes | str, message: bytes | str) -> FencedPipeline:
        return self._add("PUBLISH", channel, message)

    def hset(self, key: str, mapping: Mapping[str, bytes | str]) -> FencedPipeline:
        items = list(mapping.items())
        for start in range(0, len(items), HSET_CHUNK):
            self._add("HSET", key, *(w for item in items[start : start + HSET_CHUNK] for w in item))
        return self

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> FencedPipeline:
        if sha != rb.WRITE_SERIES_SHA or numkeys != 1:
            raise ValueError("a fenced write runs no script but the bar series' write")
        return self._add("SERIES", *keys_and_args)

    def calls(self) -> list[list[Any]]:
        """The ARGV of each script call after the token: ``len, words...`` per command, at most
        :data:`MAX_WORDS` words a call (a larger command goes alone)."""
        out: list[list[Any]] = []
        cur: list[Any] = []
        for words in self.commands:
            if cur and len(cur) + len(words) + 1 > MAX_WORDS:
                out.append(cur)
                cur = []
            cur.append(len(words))
            cur.extend(words)
        if cur:
            out.append(cur)
        return out

    async def execute(self) -> int:
        """Run the batch; the number of commands run. Raises :class:`Fenced` when Redis (or this process,
        knowing it holds no lease) refused it."""
        if self.token is None:
            raise Fenced("")
        calls = self.calls()
        if not calls:
            return 0
        try:
            results = await self._send(calls)
        except NoScriptError:  # Redis restarted, or its script cache was flushed
            await self.client.script_load(FENCED)
            results = await self._send(calls)
        ran = 0
        for got in results:
            if isinstance(got, bytes | str):
                holder = text(got)
                self.lease.refused(holder)
                raise Fenced(holder)
            ran += int(got)
        return ran

    async def _send(self, calls: Iterable[list[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        token = self.token or ""
        for argv in calls:
            pipe.evalsha(_FENCED.sha, 1, self.lease.layout.lease, token, *argv)
        return list(await pipe.execute())
