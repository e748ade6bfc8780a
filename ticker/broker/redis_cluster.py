"""Redis Cluster connections (``--broker redis+cluster://HOST:PORT[,HOST:PORT...]``): commands and sharded pub/sub.

Commands go through redis-py's :class:`~redis.asyncio.cluster.RedisCluster`, which routes each to the master of its
key's slot and follows ``MOVED``/``ASK``. :class:`ClusterClient` makes one master's failure stop only what goes to
that master:

- the slot map comes from the node that answers a ``PING`` first (every seed asked at once; nodes that failed lately
  only when no other answers; ``CLUSTER SLOTS`` bounded by :data:`TOPOLOGY_TIMEOUT` s); the command table is
  learnt once per URL, and the default node (keyless commands such as ``PING``) is a master that answers.
  redis-py would ask the master of slot 0 for both, so while it is down no new client could start;
- a command or pipeline that finds a master gone marks it (asked last for :data:`SUSPECT_FOR` s) and makes the
  next command learn the slot map again, before it picks its route (redis-py, without a map, sends a script with
  keys to a random master); ``CLUSTERDOWN`` (a failover under way) is waited out for up to :data:`DOWN_WAIT` s,
  without closing the connections of the other commands in flight (as redis-py would);
  :meth:`ClusterClient.per_master` runs commands as one pipeline per master, each master's failure its own
  commands' error;
- a transaction (``pipeline(transaction=True)``, its keys on one slot) goes to the slot's master by a plain client
  (:class:`_SlotTransaction`): redis-py's cluster transactions run every queued command in an event loop of their
  own, on a thread this loop waits for, which blocked an edge node for seconds once a master died.

Pub/sub is sharded (``SSUBSCRIBE``/``SPUBLISH``, Redis 7): a channel lives on the master of its slot only, so each
master carries the messages of its own symbols and none crosses the cluster bus. redis-py's async cluster pub/sub
reads the masters' connections by polling them in turn; :class:`ShardedSubscription` instead keeps one plain
connection per master it needs, reads each in its own task and hands every message on in one bounded stream. A
master's connection that dies, stays silent, or gives up a channel (its slot moved, or it was demoted after a
failover) loses only its own channels: they are subscribed again in the background on the master that owns them
now, and a :data:`RESUBSCRIBED` item tells the reader to re-read their last values; the other masters' channels
flow on. The nodes seen are remembered as seeds of the next client, so losing the node named in the URL is no
outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import PRIMARY
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ticker.backoff import Backoff
from ticker.broker.redis_slots import slot_of

log = logging.getLogger("ticker.redis")

SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme → TLS
TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs")  # query options a rediss+cluster:// URL may carry
DEFAULT_PORT = 6379
TOPOLOGY_TIMEOUT = 1.0  # seconds a node may take to answer CLUSTER SLOTS before the next one is asked
COMMAND_TIMEOUT = 2.0  # seconds a master may take to answer COMMAND (once per URL) before the next is asked
SUSPECT_FOR = 30.0  # seconds a node that failed is asked last for the slot map
DOWN_WAIT = 3.0  # seconds a command waits out CLUSTERDOWN (a failover under way) before failing
SUBSCRIBE_TIMEOUT = 3.0  # seconds a master may take to accept a subscription connection and its (S)SUBSCRIBE
PING_AFTER = 1.0  # idle seconds of one master's subscription before it is pinged
CHECK_AFTER = (
    2.0  # idle seconds (a ping unanswered) before the slot map is read again: does it still own them?
)
CHECK_EVERY = 1.0  # seconds between two such readings
DEAD_AFTER = 10.0  # idle seconds (pings unanswered) before it counts as dead
WATCH_EVERY = 0.5  # seconds between two looks at the masters' subscriptions
QUEUE_MAX = 10_000  # messages read but not taken yet: past it, the masters' readers wait (TCP pushes back)
REPAIR_BASE, REPAIR_CAP = 0.1, 2.0  # backoff of the resubscription of channels a master lost
#: An item of :meth:`ShardedSubscription.listen`: ``data`` lists channels subscribed again after their master lost
#: them (messages may have been missed: their last values are due).
RESUBSCRIBED = "resubscribed"
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)  # a node lost (not an answer of the node)
#: Every node address seen, per URL: seeds of the next connection besides the URL's own.
_SEEN: dict[str, list[tuple[str, int]]] = {}
#: Per URL: the command table (redis-py routes by it), learnt once.
_COMMANDS: dict[str, Any] = {}
#: Per URL: node name → when it last failed (monotonic).
_SUSPECTS: dict[str, dict[str, float]] = {}
#: Set while a command runs (per task): redis-py's aclose() from within it only asks for a new slot map.
_IN_COMMAND: ContextVar[bool] = ContextVar("ticker_cluster_command", default=False)


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """What a ``redis+cluster://`` URL says."""

    seeds: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = None
    tls_options: tuple[tuple[str, str], ...] = ()


def is_cluster(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url.split("://", 1)[0].lower() in SCHEMES


def parse_url(url: str) -> ClusterURL:
    """Parse ``redis[s]+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/0]``; ``ValueError`` with a reason."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"a cluster URL starts with redis+cluster:// or rediss+cluster://, got {url!r}")
    parts = urlsplit("//" + rest)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"broker URL {url!r}: a Redis Cluster has only DB 0")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for item in hosts.split(","):
        try:
            one = urlsplit("//" + item.strip())
            host, port = one.hostname, one.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"broker URL {url!r} has a bad port in {item!r}") from None
        if not host:
            raise ValueError(f"broker URL {url!r} has no host in {item!r}")
        seeds.append((host, port))
    options = parse_qsl(parts.query)
    if any(k not in TLS_OPTIONS for k, _ in options) or (options and not SCHEMES[scheme.lower()]):
        raise ValueError(f"broker URL {url!r}: a cluster URL takes only {', '.join(TLS_OPTIONS)} with rediss")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = user or None, secret if colon else None
    return ClusterURL(tuple(seeds), SCHEMES[scheme.lower()], username, password, tuple(options))


async def _first_to_answer(nodes: list[ClusterNode]) -> ClusterNode | None:
    """The first of ``nodes`` to answer ``PING`` (asked concurrently) within :data:`TOPOLOGY_TIMEOUT` s."""
    pending = {asyncio.ensure_future(n.execute_command("PING")): n for n in nodes}
    deadline = time.monotonic() + TOPOLOGY_TIMEOUT
    try:
        while pending:
            done, _ = await asyncio.wait(
                pending, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                return None
            for task in done:
                node = pending.pop(task)
                if not task.cancelled() and task.exception() is None:
                    return node
        return None
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _lost(result: object) -> bool:
    """Whether ``result`` says its node is lost or the cluster is down (not a node's answer to the command)."""
    return isinstance(result, (*_DOWN, ClusterDownError, SlotNotCoveredError))


class ClusterClient(RedisCluster):
    """A :class:`RedisCluster` that fails fast (no internal retries: the caller owns reconnects) but survives the
    loss of any one master (above), whose :meth:`pubsub` is sharded (:class:`ShardedSubscription`), and which
    remembers the nodes it saw for the next session."""

    def __init__(
        self, url: str, name: str, socket_timeout: float | None, connect_timeout: float, password: str | None
    ) -> None:
        """``password``: used when the URL has none."""
        parsed = parse_url(url)
        self.url = url
        seeds = list(dict.fromkeys([*parsed.seeds, *_SEEN.get(url, ())]))
        self.node_kwargs: dict[str, Any] = {
            "username": parsed.username,
            "password": parsed.password if parsed.password is not None else password,
            "client_name": name,
            "socket_connect_timeout": connect_timeout,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
        }
        if parsed.tls:
            self.node_kwargs.update({"ssl": True, **dict(parsed.tls_options)})
        self._socket_timeout = socket_timeout
        self._plain: dict[
            str, Redis
        ] = {}  # node → a plain client of it, for transactions (:class:`_SlotTransaction`)
        super().__init__(
            startup_nodes=[ClusterNode(host, port) for host, port in seeds],
            socket_timeout=socket_timeout,
            dynamic_startup_nodes=False,  # the seeds (below) keep their short timeouts
            **self.node_kwargs,
        )
        #: The nodes asked for the slot map: every one seen, each with short timeouts.
        self._seeds: dict[str, ClusterNode] = {}
        for host, port in seeds:
            self._add_seed(host, port)
        self.nodes_manager.startup_nodes = self._seeds

    def _add_seed(self, host: str, port: int) -> None:
        quick = {"socket_timeout": TOPOLOGY_TIMEOUT, "socket_connect_timeout": TOPOLOGY_TIMEOUT}
        node = ClusterNode(host, port, **{**self.connection_kwargs, **quick})
        self._seeds.setdefault(node.name, node)

    # -- nodes that failed ---------------------------------------------------------------------
    def suspect(self, name: str) -> None:
        """Node ``name`` failed: ask it last for the slot map for a while."""
        _SUSPECTS.setdefault(self.url, {})[name] = time.monotonic()

    def suspected(self, name: str) -> bool:
        """Whether node ``name`` failed in the last :data:`SUSPECT_FOR` s."""
        at = _SUSPECTS.get(self.url, {}).get(name)
        return at is not None and time.monotonic() - at < SUSPECT_FOR

    def forget_slots(self) -> None:
        """The next command learns the slot map again (a master failed, or refused a key it no longer owns)."""
        self._initialize = True

    # -- the slot map --------------------------------------------------------------------------
    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RedisCluster:
        """Learn the slot map (once, or again after an error), and remember the nodes seen. No node reachable, or
        slots not covered, raise ``ConnectionError`` (a lost Redis, as for one server)."""
        if not self._initialize:
            return self
        if not self._lock:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._initialize:
                return self
            if last_failed_node_name:
                self.suspect(last_failed_node_name)
            began = time.monotonic()
            try:
                await self._learn_slots()
                await self._learn_commands()
            except BaseException as exc:
                await self.nodes_manager.aclose()
                await self.nodes_manager.aclose("startup_nodes")
                if isinstance(exc, RedisClusterException):
                    raise RedisConnectionError(str(exc)) from exc
                raise
            self._initialize = False
            log.debug("learnt the slot map in %.3f s", time.monotonic() - began)
        seen = [(n.host, int(n.port)) for n in self.nodes_manager.nodes_cache.values()]
        _SEEN[self.url] = list(dict.fromkeys([*seen, *_SEEN.get(self.url, ())]))[:32]
        for host, port in seen:
            self._add_seed(host, port)
        return self

    async def _learn_slots(self) -> None:
        """``CLUSTER SLOTS`` of the seed that answered a ``PING`` first (all asked at once: a hung one costs
        nothing), else of the first seed that answers: those that did not fail lately first."""
        manager = self.nodes_manager
        trusted = {k: n for k, n in self._seeds.items() if not self.suspected(k)}
        doubted = {k: n for k, n in self._seeds.items() if k not in trusted}
        first = await _first_to_answer(list(trusted.values()) or list(doubted.values()))
        error: RedisClusterException | None = None
        try:
            for group in ({first.name: first} if first else {}, trusted, doubted):
                if not group:
                    continue
                manager.startup_nodes = group
                try:
                    await manager.initialize()
                    return
                except RedisClusterException as exc:
                    error = exc
        finally:
            manager.startup_nodes = self._seeds
        raise error or RedisClusterException("no node of the cluster is known")

    async def _learn_commands(self) -> None:
        """The command table (once per URL) and a default node: a master that answers, not the first by slot."""
        masters = sorted(
            self.nodes_manager.get_nodes_by_server_type(PRIMARY), key=lambda n: self.suspected(n.name)
        )
        if not masters:
            raise RedisConnectionError("the cluster has no master")
        parser = self.commands_parser
        answering = await _first_to_answer(masters)
        known = _COMMANDS.get(self.url)
        if known is not None:
            chosen = answering or masters[0]
            parser.commands, parser.node = known, chosen
            self.nodes_manager.default_node = chosen
            return
        if answering is not None:
            masters.remove(answering)
            masters.insert(0, answering)
        errors: list[BaseException] = []
        for node in masters:
            try:
                await asyncio.wait_for(parser.initialize(node), COMMAND_TIMEOUT)
            except (*_DOWN, TimeoutError, RedisError) as exc:
                self.suspect(node.name)
                errors.append(exc)
                continue
            _COMMANDS[self.url] = parser.commands
            self.nodes_manager.default_node = node
            return
        raise RedisConnectionError(f"no master answers COMMAND: {errors[-1]!r}")

    async def _execute_command(self, target_node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        """redis-py's, marking a node that failed (it is asked last for the slot map)."""
        token = _IN_COMMAND.set(True)
        try:
            return await super()._execute_command(target_node, *args, **kwargs)
        except _DOWN:
            self.suspect(target_node.name)
            raise
        finally:
            _IN_COMMAND.reset(token)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py's, with ``CLUSTERDOWN`` (a failover under way) waited out for up to :data:`DOWN_WAIT` s."""
        deadline = time.monotonic() + DOWN_WAIT
        while True:
            # Learn the map first: redis-py picks a command's route before it does, and without a map (a new client,
            # or one closed after CLUSTERDOWN) it sends a script with keys to a random master, maybe a hung one.
            await self.initialize()
            try:
                return await super().execute_command(*args, **kwargs)
            except (ClusterDownError, SlotNotCoveredError):  # redis-py closed and paused 0.25 s already
                if time.monotonic() >= deadline:
                    raise

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        """redis-py's pipeline, which forgets the slot map when a node is lost (it would keep it); a transaction
        (its commands all on one slot) is a :class:`_SlotTransaction`."""
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        if transaction:
            return _SlotTransaction(self)
        return _Pipeline(self, transaction)  # type: ignore[abstract]

    def plain(self, node: ClusterNode) -> Redis:
        """A plain client of ``node`` (kept until :meth:`aclose`)."""
        client = self._plain.get(node.name)
        if client is None:
            client = Redis(
                host=node.host, port=int(node.port), socket_timeout=self._socket_timeout, **self.node_kwargs
            )
            self._plain[node.name] = client
        return client

    async def aclose(self) -> None:
        """Close every connection (redis-py's, and the plain clients of transactions). Called by redis-py within a
        command that got ``CLUSTERDOWN`` (or too many ``MOVED``), it only makes the next command learn the slot
        map again: closing every connection would fail the commands in flight to the other masters too."""
        if _IN_COMMAND.get():
            self._initialize = True
            return
        plain, self._plain = self._plain, {}
        await super().aclose()
        for client in plain.values():
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- routing -------------------------------------------------------------------------------
    async def masters(self, slot_numbers: Iterable[int]) -> list[ClusterNode]:
        """The master owning each of ``slot_numbers`` (learning the slot map first if needed)."""
        await self.initialize()
        return [self.nodes_manager.get_node_from_slot(s) for s in slot_numbers]

    async def master_of(self, key: str | bytes) -> ClusterNode:
        """The master owning ``key``'s slot (learning the slot map first if needed)."""
        return (await self.masters([slot_of(key)]))[0]

    async def on_master(self, node: ClusterNode, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Run ``commands`` (each routed by its keys, ``MOVED``/``ASK`` followed; expected on ``node``) in one
        pipeline: each one's reply or error. A lost connection is every command's error (``node`` is then
        suspected and the slot map learnt again); ``CLUSTERDOWN`` is waited out as by :meth:`execute_command`."""
        deadline = time.monotonic() + DOWN_WAIT
        while True:
            pipe = self.pipeline(transaction=False)
            for args in commands:
                pipe.execute_command(*args)
            try:
                got: list[Any] = list(await pipe.execute(raise_on_error=False))
            except (*_DOWN, RedisError, RedisClusterException) as exc:
                got = [exc] * len(commands)
            if any(isinstance(r, _DOWN) for r in got):
                self.suspect(node.name)
            if any(_lost(r) for r in got):
                self.forget_slots()
            down = any(isinstance(r, (ClusterDownError, SlotNotCoveredError)) for r in got)
            if not down or time.monotonic() >= deadline:
                return got
            await asyncio.sleep(0.25)

    async def per_master(self, calls: Sequence[tuple[int, Sequence[Any]]]) -> list[Any]:
        """Run commands ``(slot, args)``: one pipeline per master (:meth:`on_master`), the masters concurrently.
        Each command's reply, or its error (its master's, when that one is lost): no master waits for another."""
        if not calls:
            return []
        nodes = await self.masters(slot for slot, _ in calls)
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, node in enumerate(nodes):
            groups.setdefault(node.name, (node, []))[1].append(i)
        out: list[Any] = [None] * len(calls)
        replies = await asyncio.gather(
            *(self.on_master(node, [calls[i][1] for i in idx]) for node, idx in groups.values())
        )
        for (_, idx), got in zip(groups.values(), replies, strict=True):
            for i, r in zip(idx, got, strict=True):
                out[i] = r
        return out

    # -- pub/sub -------------------------------------------------------------------------------
    def pubsub(self, **kwargs: Any) -> ShardedSubscription:  # type: ignore[override]
        """A sharded subscription over this cluster (``ignore_subscribe_messages`` is implied)."""
        return ShardedSubscription(self)

    def node_client(self, host: str, port: int) -> Redis:
        """A plain client of one node, for a subscription (no socket timeout: an idle subscription is no error; the
        subscription bounds its own waits)."""
        return Redis(host=host, port=port, socket_timeout=None, **self.node_kwargs)


class _Pipeline(ClusterPipeline):
    """redis-py's cluster pipeline; a node lost (or the cluster down) makes its client learn the slot map again."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        client = self.cluster_client
        try:
            got: list[Any] = await super().execute(raise_on_error, allow_redirections)
        except (*_DOWN, ClusterDownError, SlotNotCoveredError):
            client._initialize = True
            raise
        if any(_lost(r) for r in got):
            client._initialize = True
        return got


class _SlotTransaction:
    """``MULTI``/``EXEC`` of commands whose keys share one slot, queued like a pipeline's (``pipe.sadd(...)``) and
    sent by a plain client to the master of the first command's key: redis-py's cluster transactions run every
    command queued on a thread of its own, in an event loop of its own, while this one waits (and with
    connections shared between the two loops)."""

    def __init__(self, cluster: ClusterClient) -> None:
        self._cluster = cluster
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> _SlotTransaction:
            self._calls.append((name, args, kwargs))
            return self

        return queue

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self._calls:
            return []
        name, args, _ = self._calls[0]
        key = args[1] if name == "execute_command" else args[0]
        cluster = self._cluster
        node = await cluster.master_of(key)
        pipe = cluster.plain(node).pipeline(transaction=True)
        for name, args, kwargs in self._calls:
            getattr(pipe, name)(*args, **kwargs)
        self._calls = []
        try:
            return list(await pipe.execute(raise_on_error))
        except _DOWN:
            cluster.suspect(node.name)
            cluster.forget_slots()
            raise
        except RedisError as exc:
            if "MOVED" in str(exc) or "ASK" in str(exc) or "CLUSTERDOWN" in str(exc):
                cluster.forget_slots()
            raise


@dataclass
class _NodeSubscription:
    """One master's connection of a :class:`ShardedSubscription`."""

    name: str
    client: Redis
    pubsub: PubSub
    reader: asyncio.Task[None] | None = None
    last_rx: float = field(default_factory=time.monotonic)
    checked: float = 0.0  # when the slot map was last read for its silence (monotonic)
    channels: set[bytes] = field(default_factory=set)
    #: SUNSUBSCRIBEs sent, per channel, whose confirmation has not come back: they are not a slot that moved.
    leaving: Counter[bytes] = field(default_factory=Counter)


def _by_slot(channels: Iterable[bytes]) -> list[list[bytes]]:
    """``channels`` grouped by hash slot (one SSUBSCRIBE may only name channels of one slot)."""
    groups: dict[int, list[bytes]] = {}
    for c in channels:
        groups.setdefault(slot_of(c), []).append(c)
    return list(groups.values())


def _raw(channel: bytes | str) -> bytes:
    return channel.encode() if isinstance(channel, str) else channel


class ShardedSubscription:
    """Sharded pub/sub over a cluster, used like redis-py's :class:`PubSub`: :meth:`subscribe` and :meth:`unsubscribe`
    send ``SSUBSCRIBE``/``SUNSUBSCRIBE`` to the master of each channel's slot; :meth:`listen` yields every message
    of every master as ``{"type": "message", "channel", "data"}`` (and ``pong`` replies, and :data:`RESUBSCRIBED`
    items); subscribe confirmations are dropped. A master whose connection dies, stays silent past
    :data:`DEAD_AFTER` s (pinged after :data:`PING_AFTER` s; past :data:`CHECK_AFTER` s the slot map is read
    again, and a master that no longer owns its channels' slots is left at once), or gives up a channel it was
    not asked to (its slot moved) loses those channels only: they are subscribed again, on their slot's master,
    by a background task (backoff :data:`REPAIR_BASE`..:data:`REPAIR_CAP` s)."""

    def __init__(self, cluster: ClusterClient) -> None:
        self.cluster = cluster
        self._nodes: dict[str, _NodeSubscription] = {}
        self._where: dict[bytes, str] = {}  # channel → the node it is subscribed on
        self._orphans: set[bytes] = (
            set()
        )  # wanted channels whose master was lost: the repair resubscribes them
        self._queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue(QUEUE_MAX)
        self._lock = asyncio.Lock()  # one change of the subscriptions at a time
        self._repair_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []  # the watchdog and the repair
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def subscribed(self) -> bool:
        return bool(self._where or self._orphans)

    def _start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._watch(), name="ssub-watchdog"),
                loop.create_task(self._repair(), name="ssub-repair"),
            ]

    async def subscribe(self, *channels: bytes | str) -> None:
        """Subscribe each channel on its master; a master that cannot take them now leaves them to the repair."""
        self._start()
        async with self._lock:
            await self._place([_raw(c) for c in channels])

    async def _place(self, channels: list[bytes], again: bool = False) -> list[bytes]:
        """Subscribe ``channels`` on their masters (under the lock); the channels placed. ``again``: the repair's
        try (a failure is logged once, when the channels were lost)."""
        self._orphans.difference_update(channels)
        by_node: dict[str, tuple[ClusterNode, list[bytes]]] = {}
        try:
            nodes = await self.cluster.masters(slot_of(c) for c in channels)
        except (*_DOWN, RedisError, RedisClusterException) as exc:
            log.debug("no slot map to subscribe with: %r", exc)
            self._orphans.update(channels)
            self._repair_wake.set()
            return []
        for ch, node in zip(channels, nodes, strict=True):
            was = self._where.get(ch)
            if was != node.name:
                if was is not None and was in self._nodes:  # its slot moved: the old master no longer has it
                    self._nodes[was].channels.discard(ch)
                by_node.setdefault(node.name, (node, []))[1].append(ch)
        placed: list[bytes] = []
        for name, (node, chans) in by_node.items():
            sub = self._nodes.get(name)
            if sub is None:
                client = self.cluster.node_client(node.host, int(node.port))
                sub = self._nodes[name] = _NodeSubscription(name, client, client.pubsub())
            sub.channels.update(chans)  # before any wait: the watchdog looks after them from now on
            self._where.update(dict.fromkeys(chans, name))
            try:
                await asyncio.wait_for(self._ssubscribe(sub, chans), SUBSCRIBE_TIMEOUT)
            except (*_DOWN, TimeoutError, RedisError) as exc:
                self._lose(sub, f"could not subscribe: {exc!r}", quiet=again)
                continue
            placed += chans
            if sub.reader is None:
                sub.last_rx = time.monotonic()
                sub.reader = asyncio.get_running_loop().create_task(self._read(sub), name=f"ssub-{name}")
        return placed

    @staticmethod
    async def _ssubscribe(sub: _NodeSubscription, channels: list[bytes]) -> None:
        for group in _by_slot(channels):
            await sub.pubsub.ssubscribe(*group)

    async def unsubscribe(self, *channels: bytes | str) -> None:
        async with self._lock:
            by_node: dict[str, list[bytes]] = {}
            for ch in map(_raw, channels):
                self._orphans.discard(ch)
                name = self._where.pop(ch, None)
                if name is not None:
                    by_node.setdefault(name, []).append(ch)
            for name, chans in by_node.items():
                sub = self._nodes.get(name)
                if sub is None:
                    continue
                sub.channels.difference_update(chans)
                sub.leaving.update(chans)
                try:
                    for group in _by_slot(chans):
                        await asyncio.wait_for(sub.pubsub.sunsubscribe(*group), SUBSCRIBE_TIMEOUT)
                except (*_DOWN, TimeoutError, RedisError) as exc:
                    self._lose(sub, f"could not unsubscribe: {exc!r}")

    def _lose(
        self, sub: _NodeSubscription, why: str, channels: Iterable[bytes] | None = None, quiet: bool = False
    ) -> None:
        """``sub``'s master lost ``channels`` (all of them when None): the repair subscribes them again."""
        gone = set(sub.channels if channels is None else channels) & sub.channels
        if channels is None and self._nodes.get(sub.name) is sub:  # the whole connection goes
            del self._nodes[sub.name]
            task = asyncio.get_running_loop().create_task(self._close(sub), name=f"ssub-close-{sub.name}")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        sub.channels -= gone
        for ch in gone:
            if self._where.get(ch) == sub.name:
                del self._where[ch]
                self._orphans.add(ch)
        if gone:
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "lost %d shard channels on %s (%s); subscribing them again",
                len(gone),
                sub.name,
                why,
            )
            self.cluster.forget_slots()
            self._repair_wake.set()

    @staticmethod
    async def _close(sub: _NodeSubscription) -> None:
        if sub.reader is not None and sub.reader is not asyncio.current_task():
            sub.reader.cancel()
            with contextlib.suppress(BaseException):
                await sub.reader
        for closing in (sub.pubsub.aclose(), sub.client.aclose()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closing, 1.0)

    async def _read(self, sub: _NodeSubscription) -> None:
        put = self._queue.put
        try:
            while True:  # not listen(): it ends when no channel is left, and one may come again
                msg = await sub.pubsub.get_message(timeout=None)
                if msg is None:
                    continue
                sub.last_rx = time.monotonic()
                kind = msg["type"]
                if kind == "smessage":
                    msg["type"] = "message"
                    await put(msg)
                elif kind == "pong":
                    await put(msg)
                elif kind == "sunsubscribe":
                    ch = msg["channel"]
                    if sub.leaving[ch] > 0:  # the confirmation of one of ours
                        sub.leaving[ch] -= 1
                        if not sub.leaving[ch]:
                            del sub.leaving[ch]
                    elif ch in sub.channels:  # the master gave it up: its slot moved
                        self._lose(sub, "its slot moved", [ch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a lost connection: its channels go to the repair
            self._lose(sub, repr(exc))

    async def _repair(self) -> None:
        """Subscribe the channels of lost masters again, on their slot's master now, with backoff; then say so."""
        backoff = Backoff(REPAIR_BASE, REPAIR_CAP)
        while True:
            if not self._orphans:
                backoff.reset()
                self._repair_wake.clear()
                await self._repair_wake.wait()
                continue
            await asyncio.sleep(backoff.next_delay())
            async with self._lock:
                placed = await self._place(sorted(self._orphans), again=True)
            if placed:
                await self._queue.put({"type": RESUBSCRIBED, "channel": None, "data": placed})
                if not self._orphans:
                    log.info("subscribed %d shard channels again", len(placed))

    async def _watch(self) -> None:
        """Ping a master's subscription idle for :data:`PING_AFTER` s; past :data:`CHECK_AFTER` s read the slot map
        again (every :data:`CHECK_EVERY` s), leaving a master that no longer owns its channels; past :data:`DEAD_AFTER` s
        leave it anyway."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            now = time.monotonic()
            for sub in list(self._nodes.values()):
                if not sub.channels or sub.reader is None:
                    continue
                idle = now - sub.last_rx
                if idle > DEAD_AFTER:
                    self._lose(sub, f"silent for {idle:.0f} s")
                elif idle > CHECK_AFTER and now - sub.checked > CHECK_EVERY:
                    sub.checked = now
                    if not await self._still_owner(sub):
                        self._lose(sub, "its slots moved while it was silent")
                elif idle > PING_AFTER:
                    with contextlib.suppress(*_DOWN, TimeoutError, RedisError):
                        await asyncio.wait_for(sub.pubsub.ping(), 1.0)

    async def _still_owner(self, sub: _NodeSubscription) -> bool:
        """Whether the slot map read now still gives ``sub``'s master every one of its channels."""
        self.cluster.forget_slots()
        chans = list(sub.channels)
        try:
            nodes = await self.cluster.masters(slot_of(c) for c in chans)
        except (*_DOWN, RedisError, RedisClusterException):
            return True  # no map now: the silence alone decides
        return all(n.name == sub.name for n in nodes)

    async def listen(self) -> AsyncIterator[dict[str, Any]]:
        """Every message of every master, in arrival order per master; raises when the subscription fails."""
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    async def ping(self) -> None:
        """Ping every master's subscription (their replies come through :meth:`listen` as ``pong``)."""
        for sub in list(self._nodes.values()):
            if sub.channels:
                with contextlib.suppress(*_DOWN, TimeoutError, RedisError):
                    await asyncio.wait_for(sub.pubsub.ping(), 1.0)

    async def aclose(self) -> None:
        """Stop reading and close every connection."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        subs = list(self._nodes.values())
        self._nodes.clear()
        self._where.clear()
        self._orphans.clear()
        await asyncio.gather(*(self._close(s) for s in subs), *self._closing, return_exceptions=True)


async def shard_listeners(client: ClusterClient, channel: bytes | str) -> int:
    """How many connections subscribe to the shard ``channel`` (``PUBSUB SHARDNUMSUB`` on its master)."""
    node = await client.master_of(channel)
    got = await client.pubsub_shardnumsub(channel, target_nodes=node)
    return int(got[0][1]) if got else 0
