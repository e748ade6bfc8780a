"""What the Redis publisher and the Redis edge nodes agree on: key layout, payload codec, connections.

Layout (``P`` is ``--broker-prefix``, default ``ticker``; Redis pub/sub ignores the DB number,
so deployments sharing a Redis must use different prefixes):

- ``P:q:SYMBOL`` — one pub/sub channel per symbol. A message is
  ``{"pt":publish_ms,"e":epoch,"src":source,"q":[Q,...]}``: the publish time (epoch ms, fractional), the
  publisher's lease epoch, its source epoch (below), and every quote of that symbol in one publish window,
  oldest first. Q is the wire protocol's entry with the ``q`` the publisher numbered (per symbol, once, so
  every edge node gives the same ``q`` to the same update), as ``ticker.quote.encode_entry(quote, seq)``
  writes it and :func:`decode_published` reads it.
- ``P:source`` — the active publisher's source epoch, ``RANDOM#TERM``: what clients get as a snapshot's ``e``
  (docs/protocol.md, "Ordering"); set by each publisher as it starts, and carried by its messages.
- ``P:last`` — hash SYMBOL → Q: the last value of every carried symbol, for snapshots.
- ``P:demand:NODE`` — set of the symbols node NODE's clients want, with a TTL the node refreshes.
- ``P:nodes`` — set of node ids that may hold a demand key (the publisher prunes expired ones).
- ``P:ctl`` — channel: ``demand`` (a node's demand changed), ``hello`` (a publisher (re)started) and
  ``directory`` (the publisher wrote a new symbol directory).
- ``P:directory`` — hash SYMBOL → ``{"name","exchange","type","currency"}``: the publisher's symbol
  directory; ``P:directory:meta`` — what it is (``{"publisher","version","complete","loading","symbols"}``);
  ``P:directory:tmp:PUBLISHER`` — the next directory while it is written (codec: :mod:`ticker.broker.redis_directory`).
- ``P:health`` — the publisher's health report (its feeds, and its symbols that are not live), set every
  second with a 5 s TTL, so it vanishes when the publisher dies (codec: :mod:`ticker.broker.redis_health`).
- ``P:b:SYMBOL`` — channel: the publisher's bar updates of one symbol; ``P:bars:SYMBOL:INTERVAL`` — sorted
  set, the bounded bar history (score ``t``); ``P:bars:SYMBOL`` — the publisher has written that symbol's
  history (codec and bounds: :mod:`ticker.broker.redis_bars`).
- ``P:lease`` — the active publisher's token ``ID#EPOCH`` with a TTL (``--lease-ttl``); ``P:epoch`` — the
  takeover counter; ``P:publishers`` — channel: ``release TOKEN`` when the active one stops (standbys
  subscribe; :mod:`ticker.broker.redis_lease`).

On a Redis Cluster (``redis+cluster://HOST:PORT[,HOST:PORT...]``, Redis 7) the same names carry hash tags, so
that every key and channel of a symbol lives on one shard and the keys of no symbol on another, and every
channel is a shard channel (``SPUBLISH``/``SSUBSCRIBE``: a message goes to the shard of its channel only):

- keys of no symbol: ``{P}:NAME`` (``{P}:lease``, ``{P}:epoch``, ``{P}:source``, ``{P}:nodes``,
  ``{P}:demand:NODE``, ``{P}:directory``..., ``{P}:health``; channels ``{P}:ctl``, ``{P}:publishers``), all on
  the slot of the prefix, so the lease, demand and directory scripts and transactions run as on one Redis;
- keys of a symbol: ``P:q:{TAG}:SYMBOL``, ``P:b:{TAG}:SYMBOL``, ``P:bars:{TAG}:SYMBOL[:INTERVAL]``, where ``TAG``
  is the hash tag of the symbol's bucket (one of 120, :mod:`ticker.broker.redis_slots`: the symbol's own
  CRC16 slot picks it, so symbols spread as evenly as CRC16 spreads them, and equal masters own equal
  numbers of buckets);
- per bucket: ``P:last:{TAG}`` — the last values of its symbols (one hash per bucket, not one for all);
  ``P:fence:{TAG}`` — the lease holder's token mirrored on the bucket's slot, which every write there checks
  (:mod:`ticker.broker.redis_fence`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.retry import Retry

from ticker.backoff import Backoff
from ticker.broker import redis_slots as slots
from ticker.broker.redis_cluster import RESUBSCRIBED as RESUBSCRIBED  # a subscription item (redis_edge.py)
from ticker.broker.redis_cluster import ClusterClient, is_cluster, parse_url, shard_listeners
from ticker.quote import Quote, decode_entry

log = logging.getLogger("ticker.redis")

# Reconnect backoff (full jitter) towards Redis: it is our own infrastructure, so retry fast.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
SOCKET_TIMEOUT = 5.0  # seconds a command may take before the connection counts as dead
HELLO = b"hello"
DEMAND = b"demand"
DIRECTORY = b"directory"


def check_url(url: str) -> str:
    """Validate a ``redis://`` / ``rediss://`` / ``unix://`` URL, or a ``redis+cluster://`` /
    ``rediss+cluster://`` one (:func:`ticker.broker.redis_cluster.parse_url`); raise ``ValueError`` with a clear
    reason."""
    if is_cluster(url):
        parse_url(url)
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"broker URL must start with redis://, rediss://, unix:// or redis+cluster://, got {url!r}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"broker URL {url!r} has a bad port") from None
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ValueError(f"broker URL {url!r}: the path must be a DB number")
    return url


def redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def connect(url: str, name: str, socket_timeout: float | None = SOCKET_TIMEOUT) -> Redis:
    """A client that fails fast (no internal retries): the caller owns reconnects and backoff.

    Pub/sub clients pass ``socket_timeout=None`` (an idle subscription is no error) and check
    liveness with their own pings. A password may come from the URL or, to keep it off the command line, from ``TICKER_REDIS_PASSWORD``.
    A cluster URL gives a :class:`~ticker.broker.redis_cluster.ClusterClient` (typed as ``Redis`` for its callers).
    """
    kwargs: dict[str, Any] = {}
    password = os.environ.get("TICKER_REDIS_PASSWORD")
    if is_cluster(url):  # answers every command this package sends (routed by slot); its pubsub() is sharded
        return cast(Redis, ClusterClient(url, name, socket_timeout, SOCKET_TIMEOUT, password or None))
    if password and urlsplit(url).password is None:
        kwargs["password"] = password
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=SOCKET_TIMEOUT,
        socket_timeout=socket_timeout,
        socket_keepalive=True,
        client_name=name,
        **kwargs,
    )


def node_id() -> str:
    """A unique id for this process: host, pid and a random part (a restarted process is a new node)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def layout_of(url: str, prefix: str) -> Layout:
    """The layout under ``prefix`` for the broker at ``url`` (hash-tagged names for a cluster)."""
    return Layout(prefix, cluster=is_cluster(url))


def announce(pipe: Any, layout: Layout, message: bytes) -> None:
    """Queue ``message`` on the control channel in ``pipe`` (a pipeline: ``SPUBLISH`` in a cluster)."""
    pipe.execute_command(layout.publish_command, layout.ctl, message)


async def listeners(client: Redis, layout: Layout, channel: bytes) -> int:
    """How many connections subscribe to ``channel`` (``PUBSUB NUMSUB``; ``SHARDNUMSUB`` on its master)."""
    if isinstance(client, ClusterClient):
        return await shard_listeners(client, channel)
    got = await client.pubsub_numsub(channel)
    return int(got[0][1]) if got else 0


async def read_last(client: Redis, layout: Layout, symbols: list[str]) -> list[bytes | str | None]:
    """The last values of ``symbols`` (None where there is none): one ``HMGET``; in a cluster one per bucket,
    pipelined (one round trip per master, concurrently; a master that fails gives None for its symbols, unless
    every master failed)."""
    if not layout.cluster:
        return cast(list[bytes | str | None], await client.hmget(layout.last, symbols))
    by_bucket: dict[int, list[str]] = {}
    for s in symbols:
        by_bucket.setdefault(slots.bucket_of(s), []).append(s)
    calls = [(slots.BUCKET_SLOTS[b], ("HMGET", layout.last_of(b), *group)) for b, group in by_bucket.items()]
    replies = await cast(ClusterClient, client).per_master(calls)
    errors = [r for r in replies if isinstance(r, BaseException)]
    if errors and len(errors) == len(replies):
        raise errors[0]
    got: dict[str, bytes | str | None] = {}
    for group, values in zip(by_bucket.values(), replies, strict=True):
        if not isinstance(values, BaseException):  # else None: its master's resubscription re-reads them
            got.update(zip(group, values, strict=True))
    return [got.get(s) for s in symbols]


async def run_keyed(client: Redis, layout: Layout, calls: list[tuple[Any, ...]]) -> list[Any]:
    """Run commands whose second item is their key: each one's reply, or its error. In a cluster one pipeline
    per master, concurrently (a master that fails fails its own commands only); else one pipeline (a lost
    server raises)."""
    if not layout.cluster:
        pipe = client.pipeline(transaction=False)
        for args in calls:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))
    return await cast(ClusterClient, client).per_master([(slots.slot_of(args[1]), args) for args in calls])


def topology_changed(client: Redis | None) -> None:
    """A cluster master's channels moved (:data:`RESUBSCRIBED`): ``client``'s next command learns the slot map
    again, rather than finding the lost master first."""
    if isinstance(client, ClusterClient):
        client.forget_slots()


async def read_all_last(client: Redis, layout: Layout) -> dict[bytes, bytes]:
    """Every last value (field → Q): ``HGETALL``; in a cluster every bucket's hash, one round trip per master."""
    if not layout.cluster:
        return cast(dict[bytes, bytes], await client.hgetall(layout.last))
    calls = [(slots.BUCKET_SLOTS[b], ("HGETALL", layout.last_of(b))) for b in range(slots.BUCKETS)]
    out: dict[bytes, bytes] = {}
    for part in await cast(ClusterClient, client).per_master(calls):
        if isinstance(part, BaseException):
            raise part
        out.update(part)
    return out


async def mget(client: Redis, keys: list[str]) -> list[bytes | None]:
    """``MGET`` of ``keys`` (in a cluster split by slot, one round trip per master)."""
    if isinstance(client, ClusterClient):
        return cast(list[bytes | None], await client.mget_nonatomic(keys))
    return cast(list[bytes | None], await client.mget(keys))


@dataclass(frozen=True, slots=True)
class Layout:
    """Key and channel names under one prefix; ``cluster``: the hash-tagged names of a Redis Cluster (above)."""

    prefix: str = "ticker"
    cluster: bool = False

    def _global(self, name: str) -> str:
        """A key of no symbol: ``P:name``; in a cluster ``{P}:name``, all on the slot of the prefix."""
        return f"{{{self.prefix}}}:{name}" if self.cluster else f"{self.prefix}:{name}"

    def _of(self, kind: str, symbol: str) -> str:
        """A key of ``symbol``: ``P:kind:SYMBOL``; in a cluster ``P:kind:{TAG}:SYMBOL``, on its bucket's slot."""
        if self.cluster:
            return f"{self.prefix}:{kind}:{{{slots.TAGS[slots.bucket_of(symbol)]}}}:{symbol}"
        return f"{self.prefix}:{kind}:{symbol}"

    def channel(self, symbol: str) -> bytes:
        """The pub/sub channel of ``symbol``."""
        return self._of("q", symbol).encode()

    def symbol_of(self, channel: bytes) -> str:
        """The symbol of a quote channel."""
        start = len(self.prefix) + 3
        if self.cluster:
            start = channel.index(b"}:", start) + 2
        return channel[start:].decode()

    @property
    def last(self) -> str:
        """The last-value hash (one Redis; a cluster has one per bucket: :meth:`last_of`)."""
        return f"{self.prefix}:last"

    def last_of(self, bucket: int) -> str:
        """The last-value hash of the symbols of ``bucket`` (a cluster)."""
        return f"{self.prefix}:last:{{{slots.TAGS[bucket]}}}"

    def fence(self, bucket: int) -> str:
        """The lease holder's token mirrored on ``bucket``'s slot (a cluster; ticker/broker/redis_fence.py)."""
        return f"{self.prefix}:fence:{{{slots.TAGS[bucket]}}}"

    def channel_prefix(self, bucket: int) -> bytes:
        """What the quote channels of ``bucket``'s symbols start with (a cluster; the symbol follows)."""
        return f"{self.prefix}:q:{{{slots.TAGS[bucket]}}}:".encode()

    def fence_of(self, key: str | bytes) -> str:
        """The key a fenced write of ``key`` checks in a cluster: the lease for a key of no symbol, else the fence
        of the key's bucket (raises ``ValueError`` for a key of neither)."""
        tag = slots.hash_tag(key)
        if tag == self.prefix:
            return self.lease
        bucket = slots.TAG_BUCKETS.get(tag or "")
        if bucket is None:
            raise ValueError(f"{key!r} is no key of this layout")
        return self.fence(bucket)

    @property
    def publish_command(self) -> str:
        """``PUBLISH``; ``SPUBLISH`` in a cluster, where every channel is a shard channel."""
        return "SPUBLISH" if self.cluster else "PUBLISH"

    @property
    def nodes(self) -> str:
        return self._global("nodes")

    def demand(self, node: str) -> str:
        """The demand set of ``node``."""
        return self._global(f"demand:{node}")

    @property
    def ctl(self) -> bytes:
        return self._global("ctl").encode()

    @property
    def directory(self) -> str:
        return self._global("directory")

    @property
    def directory_meta(self) -> str:
        return self._global("directory:meta")

    @property
    def health(self) -> str:
        return self._global("health")

    def bar_channel(self, symbol: str) -> bytes:
        """The pub/sub channel of ``symbol``'s bar updates."""
        return self._of("b", symbol).encode()

    @property
    def bar_channel_prefix(self) -> bytes:
        """What every bar channel starts with (then the symbol; in a cluster its bucket's ``{TAG}:`` first)."""
        return f"{self.prefix}:b:".encode()

    def bars(self, symbol: str, interval: str) -> str:
        """The history of ``symbol`` at ``interval`` (a symbol is upper case, an interval ends in a lower-case
        letter, so no two (symbol, interval) pairs share a name)."""
        return f"{self._of('bars', symbol)}:{interval}"

    def bars_ready(self, symbol: str) -> str:
        """Set once the publisher has written ``symbol``'s history (after its backfill)."""
        return self._of("bars", symbol)

    @property
    def lease(self) -> str:
        return self._global("lease")

    @property
    def source(self) -> str:
        return self._global("source")

    @property
    def epoch(self) -> str:
        return self._global("epoch")

    @property
    def publishers(self) -> bytes:
        return self._global("publishers").encode()

    def directory_tmp(self, publisher: str) -> str:
        """Where ``publisher`` writes its next directory before renaming it into place."""
        return self._global(f"directory:tmp:{publisher}")


def encode_message(
    entries: Iterable[bytes], publish_ms: float, epoch: int | None = None, source: str | None = None
) -> bytes:
    """A channel message from Q entries of one symbol, each encoded once with ``encode_entry(quote, seq)``;
    ``epoch``: the publisher's lease epoch (``"e"``), which names the term that published it; ``source``: the
    source epoch that numbered the entries' ``q`` (``"src"``, a client's snapshot ``e``)."""
    head = b'{"pt":' + repr(round(publish_ms, 3)).encode()
    if epoch is not None:
        head += b',"e":' + str(epoch).encode()
    if source is not None:
        head += b',"src":"' + source.encode() + b'"'
    return head + b',"q":[' + b",".join(entries) + b"]}"


def json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object; else ``ValueError("malformed <what>: ...")``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed {what}: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"malformed {what}: not an object")
    return obj


def decode_published(obj: Any) -> Quote:
    """A Q entry from Redis: with the publisher's ``q`` as ``seq`` (0 from a publisher that numbered none)."""
    return decode_entry(obj, sequenced=isinstance(obj, dict) and "q" in obj)


def decode_sourced(data: bytes) -> tuple[float, list[Quote], str | None]:
    """(publish time in epoch ms, quotes, source epoch or None) of a channel message; ``ValueError`` when
    malformed."""
    msg = json_object(data, "quote message")
    pt, entries, src = msg.get("pt"), msg.get("q"), msg.get("src")
    if isinstance(pt, bool) or not isinstance(pt, int | float):
        raise ValueError("malformed quote message: bad pt")
    if not isinstance(entries, list):
        raise ValueError("malformed quote message: q is not a list")
    if src is not None and not isinstance(src, str):
        raise ValueError("malformed quote message: src is not a string")
    return float(pt), [decode_published(e) for e in entries], src


def decode_message(data: bytes) -> tuple[float, list[Quote]]:
    """(publish time in epoch ms, quotes) of a channel message; raises ``ValueError`` when malformed."""
    pt, quotes, _src = decode_sourced(data)
    return pt, quotes


async def end_session(tasks: Iterable[asyncio.Task[None] | None], pubsub: PubSub, *clients: Redis) -> None:
    """End one Redis session: cancel and await its ``tasks``, then close the subscription and ``clients``
    (a second each, errors ignored: the connection may already be gone)."""
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    for closing in (pubsub.aclose(), *(c.aclose() for c in clients)):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(closing, 1.0)


async def stay_connected(
    session: Callable[[], Awaitable[None]], url: str, was_up: Callable[[], bool], set_down: Callable[[], None]
) -> None:
    """Run ``session`` for ever: after any loss of Redis, wait (backoff with full jitter) and start again."""
    backoff = Backoff(BACKOFF_BASE, BACKOFF_CAP)
    while True:
        try:
            await session()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any loss of Redis: reconnect with backoff
            if was_up():
                log.warning("lost Redis at %s: %s; reconnecting", redact(url), exc or type(exc))
                backoff.reset()
            else:
                log.debug("cannot reach Redis: %r", exc)
        set_down()
        await asyncio.sleep(backoff.next_delay())
