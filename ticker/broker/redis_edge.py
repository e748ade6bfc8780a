"""The Redis broker of an edge node (``ticker serve --broker redis://...``).

The node subscribes in Redis only to the channels of the symbols its clients want, in one
SUBSCRIBE/UNSUBSCRIBE per demand change, and reads the last values of newly wanted symbols
from the last-value hash in one HMGET, so their subscribers get data at once. It advertises
its demand to the publisher as a set with a TTL that it refreshes, so a dead node's demand
expires. When Redis comes back after a loss, or a publisher (re)starts, the node re-reads
every wanted symbol and sends each connection a fresh snapshot. The node also reads the
publisher's symbol directory (:mod:`ticker.broker.redis_directory`) at each connection, when the
publisher announces a new one, and every minute anyway, and answers with it. Every second it reads the
publisher's health report (:mod:`ticker.broker.redis_health`, one GET) and answers
:meth:`RedisBroker.symbol_status` from it: a symbol the publisher's feed says is not live, or every
symbol ``down`` once the report has expired (the publisher is not running).

Bars come ready-made (``aggregates_bars`` False): with each symbol's quote channel the node subscribes to its
bar channel and hands every bar update to ``bar_sink``; :meth:`RedisBroker.load_bars` reads the publisher's
history from Redis (waiting briefly for a symbol whose history the publisher has not written yet). After a
reconnect, a publisher's ``hello``, or a rewrite of a symbol's history, the node reads the bars it may have
missed since its last update of that symbol and hands them on too (:mod:`ticker.broker.redis_bars`).

The quotes carry the ``q`` the publisher gave them, so every edge node gives the same ``q`` to the same update;
the publisher's source epoch (``P:source``, and each message's ``"src"``) names that numbering, and the node
passes it on as its clients' ``e`` (``on_epoch``: ``Node.set_epoch``). A message of another source (a publisher
took over, or a new one started) is held back (the latest per symbol), and makes the next loop pass read
``P:source`` and every wanted symbol's last value again; once ``P:source`` names it, the node calls ``on_epoch``
(which drops every value the old source numbered), then delivers the values read and the messages held, in the
same loop pass, so the snapshot every connection gets under the new epoch holds the new source's values only;
late messages of the source left behind are dropped. A message of a source ``P:source`` does not name (yet) is
dropped, and checked again at most once per :data:`CHECK_INTERVAL`.

Any node answers everything: a symbol whose quotes are read here though no client receives it
(:meth:`RedisBroker.read_through`, REST) joins the demand and the subscriptions for :data:`READ_DEMAND` s after
the last read, so its value is as fresh as a subscribed symbol's (its bars go on only to symbols clients
receive, as before).
Layout: ticker/broker/redis_layout.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError, ResponseError

from ticker.bars import INTERVALS, Bar
from ticker.broker import redis_bars as rb
from ticker.broker import redis_directory as rd
from ticker.broker import redis_health as rh
from ticker.broker import redis_layout as rc
from ticker.broker.base import Broker, Deliver
from ticker.directory import Directory
from ticker.metrics.registry import Metrics
from ticker.quote import Quote
from ticker.search import index_of
from ticker.status import DOWN, SymbolStatus
from ticker.tasks import cancel_and_wait

log = logging.getLogger("ticker.redis")

CHECK_INTERVAL = 1.0  # seconds between liveness and refresh checks
PUBSUB_PING_AFTER = 5.0  # idle seconds on the subscription before pinging it
PUBSUB_DEAD_AFTER = 15.0  # idle seconds (pings unanswered) before the subscription counts as dead
START_WAIT = 3.0  # seconds start() waits for the first connection before serving without it
DIRECTORY_POLL = 60.0  # seconds between checks of the directory's meta (a notification may be missed)
READ_DEMAND = 60.0  # seconds a symbol read here (bars, REST quotes) stays in the demand after the read
#: Symbols read through at once at most (REST quotes nobody here receives): past it, a read of another symbol is
#: answered with what the node holds, so REST reads cannot make the publisher carry without bound.
MAX_WATCHING = 1000
#: Every symbol's state while no publisher reports (its report expired: the process is dead or stopped).
NO_PUBLISHER = SymbolStatus(DOWN, f"the publisher is not running (no health report for more than {rh.TTL} s)")


class RedisBroker(Broker):
    """Edge side of the Redis broker: demanded symbols in, demand out."""

    name = "redis"
    aggregates_bars = False

    def __init__(
        self,
        url: str,
        metrics: Metrics,
        last: Callable[[str], Quote | None],
        resync: Callable[[], object] | None = None,
        prefix: str = "ticker",
        demand_ttl: float = 15.0,
        on_epoch: Callable[[str], object] | None = None,
    ) -> None:
        """``on_epoch(source)``: the publisher's source epoch is now ``source`` (it resyncs every connection)."""
        super().__init__()
        self.url = rc.check_url(url)
        self.metrics = metrics
        self.layout = rc.layout_of(self.url, prefix)
        self.node = rc.node_id()
        self.demand_ttl = demand_ttl
        self._last = last
        self._resync = resync
        self._on_epoch = on_epoch
        self.source: str | None = None  # the publisher's source epoch in force here (None: none heard of yet)
        self._left: str | None = None  # the one before: its late messages are dropped
        self._heard: str | None = None  # the last other source a message named (its check is due or done)
        self._heard_at = 0.0  # when its check was asked (monotonic)
        #: The latest quote of each symbol from ``_heard``, held until the pass that switches to it delivers it.
        self._held: dict[str, Quote] = {}
        self._demand: frozenset[str] = frozenset()
        self._subscribed: set[str] = set()
        self._wake = asyncio.Event()
        self._full = False
        self._up = False
        self._ever_up = False
        self._first_up = asyncio.Event()
        self._refresh_due = 0.0
        self._last_rx = 0.0
        self._task: asyncio.Task[None] | None = None
        self._client: Redis | None = None
        self._directory = rd.build(None, ())  # every symbol pending until the publisher's is read
        self._directory_raw: bytes | None = None  # the meta of the directory held (or last refused)
        self._directory_wake = asyncio.Event()
        self._health: rh.HealthReport | None = None  # the publisher's last report; None: none in Redis
        self._health_raw: bytes | None = None
        self._health_read = False  # whether the report was read at least once
        self._up_event = asyncio.Event()
        self._bars_seen: dict[
            str, float
        ] = {}  # symbol → wall ms of its last bar update (catch-up from there)
        self._bars_behind: dict[
            str, float
        ] = {}  # symbol → since when the next loop pass reads its missed bars
        self._bars_ready: dict[str, asyncio.Event] = {}  # symbols whose history a load_bars waits for
        self._bars_waiters: dict[
            str, int
        ] = {}  # symbol → load_bars calls waiting (its event goes with the last)
        self._bad_bars_logged = False
        #: Symbols whose history was read though no client here receives them → until when (monotonic) they
        #: stay in this node's demand, so the publisher carries them and writes their history.
        self._reading: dict[str, float] = {}
        #: Symbols whose quotes were read (:meth:`read_through`) though no client here receives them → until
        #: when (monotonic) they stay in the demand and subscribed, their values delivered to the hub.
        self._watching: dict[str, float] = {}
        self._advertised: frozenset[str] = frozenset()
        self._passes_begun = 0  # sync passes begun and done: a read waits for one begun after it asked
        self._passes_done = 0
        self._changed = asyncio.Event()  # replaced at each pass's end, each awaited quote and each up/down
        self._awaited: dict[str, int] = {}  # symbol → read_through calls waiting for its value

    # -- Broker interface --------------------------------------------------------------------
    async def start(self, deliver: Deliver) -> None:
        """Connect in the background; wait a moment for the first connection so snapshots are ready."""
        self._deliver = deliver
        self._task = asyncio.get_running_loop().create_task(self._run(), name="redis-broker")
        try:
            await asyncio.wait_for(self._first_up.wait(), START_WAIT)
        except TimeoutError:
            log.warning("Redis at %s is not reachable yet; serving and retrying", rc.redact(self.url))

    async def stop(self) -> None:
        """Withdraw this node's demand (best effort), then disconnect."""
        client = self._client
        if client is not None and self._up:
            with contextlib.suppress(Exception):
                pipe = client.pipeline(transaction=True)
                pipe.delete(self.layout.demand(self.node))
                pipe.srem(self.layout.nodes, self.node)
                rc.announce(pipe, self.layout, rc.DEMAND)
                await asyncio.wait_for(pipe.execute(), 1.0)
        await cancel_and_wait(self._task)
        self._task = None
        self._set_up(False)
        self._deliver = None

    def set_demand(self, symbols: frozenset[str]) -> None:
        """The hub's demand changed: (un)subscribe in Redis on the next loop pass, batched."""
        if symbols != self._demand:
            self._demand = symbols
            self._wake.set()

    @property
    def up(self) -> bool:
        return self._up

    def directory(self) -> Directory:
        """The publisher's directory as last read (a new object each read; pending until the first)."""
        return self._directory

    async def load_bars(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar]:
        """The publisher's bars of ``symbol`` at ``interval`` starting in ``[start_ms, end_ms)``, oldest first,
        from Redis. Waits up to :data:`~ticker.broker.redis_bars.LOAD_WAIT` s for the publisher to write the
        symbol's history (a symbol just demanded) and answers what Redis has then; raises ``ConnectionError``
        when Redis stays unreachable that long. A symbol no client of this node receives joins its demand for
        :data:`READ_DEMAND` s, so the publisher carries it (and writes its history)."""
        deadline = time.monotonic() + rb.LOAD_WAIT
        if symbol not in self._demand:  # a read of a symbol nobody here receives: the publisher must carry it
            if symbol not in self._reading:
                self._wake.set()
            self._reading[symbol] = deadline + READ_DEMAND
        self._bars_waiters[symbol] = self._bars_waiters.get(symbol, 0) + 1
        try:
            while True:
                left = deadline - time.monotonic()
                client = self._client
                if client is None or not self._up:
                    if left <= 0:
                        raise ConnectionError("lost the connection to the redis broker")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._up_event.wait(), left)
                    continue
                try:
                    ready, members = await rb.read_history(
                        client, self.layout, symbol, interval, start_ms, end_ms
                    )
                except (RedisError, OSError) as exc:
                    if left <= 0:
                        raise ConnectionError(f"could not read bars from the redis broker: {exc}") from None
                    await asyncio.sleep(min(0.1, left))  # the session notices the loss and reconnects
                    continue
                if ready or left <= 0:
                    bars, bad = rb.decode_history(members)
                    if bad:
                        self._bad_bars(f"{bad} malformed bars of {symbol} {interval} in Redis")
                    return bars
                event = self._bars_ready.setdefault(symbol, asyncio.Event())
                with contextlib.suppress(
                    TimeoutError
                ):  # a notice missed (not subscribed yet): look again soon
                    await asyncio.wait_for(event.wait(), min(0.25, left))
        finally:  # the last waiter gone (answered, gave up, cancelled): its event goes, written or not
            waiting = self._bars_waiters.pop(symbol) - 1
            if waiting:
                self._bars_waiters[symbol] = waiting
            else:
                self._bars_ready.pop(symbol, None)

    async def read_through(self, symbols: Sequence[str], within: float) -> None:
        """Bring the node's last values of ``symbols`` up to date from Redis: a symbol no client here receives
        joins the demand and the subscriptions for :data:`READ_DEMAND` s (a later read extends it); waits at
        most ``within`` s for the sync pass that HMGETs their last values (and for a first value of a symbol
        the publisher starts carrying only now). Returns at once while Redis is down, never raises."""
        now = time.monotonic()
        watching = self._watching
        reads = [s for s in dict.fromkeys(symbols) if s not in self._demand]
        room = MAX_WATCHING - len(watching)
        reads = [s for s in reads if s in watching or (room := room - 1) >= 0]
        if not reads:
            return
        for s in reads:
            watching[s] = now + READ_DEMAND
        last = self._last
        if all(s in self._subscribed and last(s) is not None for s in reads):
            return  # already flowing in: the hub's values are current
        target = self._passes_begun + 1  # the next pass begins after this read: it subscribes and fetches
        self._wake.set()
        deadline = now + within
        for s in reads:
            self._awaited[s] = self._awaited.get(s, 0) + 1
        try:
            while self._up and (self._passes_done < target or any(last(s) is None for s in reads)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
        finally:
            for s in reads:
                n = self._awaited.pop(s) - 1
                if n:
                    self._awaited[s] = n

    def _notify(self) -> None:
        """Wake the reads waiting in :meth:`read_through`."""
        self._changed.set()
        self._changed = asyncio.Event()

    def symbol_status(self, symbol: str) -> SymbolStatus | None:
        """What the publisher's last health report (read every second) says of ``symbol``: its state
        when not live; :data:`NO_PUBLISHER` (``down``) once no report is in Redis; None when live as far
        as the publisher knows, or while Redis is down (the node says that itself) or not read yet."""
        if not self._up or not self._health_read:
            return None
        if self._health is None:
            return NO_PUBLISHER
        return self._health.symbols.get(symbol)

    # -- connection loop ---------------------------------------------------------------------
    def _set_up(self, up: bool) -> None:
        self._up = up
        self.metrics.broker_up.set(1 if up else 0)
        self._notify()
        if up:
            self._up_event.set()
        else:
            self._up_event.clear()

    async def _run(self) -> None:
        await rc.stay_connected(self._session, self.url, lambda: self._up, lambda: self._set_up(False))

    async def _session(self) -> None:
        name = f"ticker-edge:{self.node}"
        client = rc.connect(self.url, name)
        sub_client = rc.connect(self.url, name, socket_timeout=None)
        pubsub = sub_client.pubsub(ignore_subscribe_messages=True)
        reader: asyncio.Task[None] | None = None
        loader: asyncio.Task[None] | None = None
        health: asyncio.Task[None] | None = None
        try:
            await client.ping()
            self._client = client
            self._subscribed = set()
            await pubsub.subscribe(self.layout.ctl)
            self._last_rx = time.monotonic()
            reader = asyncio.get_running_loop().create_task(self._read(pubsub), name="redis-reader")
            loader = asyncio.get_running_loop().create_task(
                self._directory_loop(client), name="redis-directory"
            )
            await self._read_health(client)  # before up: the states are known as soon as the node is
            health = asyncio.get_running_loop().create_task(self._health_loop(client), name="redis-health")
            reconnect = self._ever_up
            resynced = await self._sync(client, pubsub, full=True)
            self._set_up(True)
            self._ever_up = True
            self._first_up.set()
            if reconnect:
                self.metrics.broker_reconnects.inc()
                log.info("Redis is back; resubscribed %d symbols", len(self._subscribed))
                if not resynced:
                    self._resync_clients()
            else:
                log.info("connected to Redis at %s as node %s", rc.redact(self.url), self.node)
            while True:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {reader, waiter}, timeout=CHECK_INTERVAL, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                if reader.done():
                    reader.result()  # raises the reader's error
                    raise ConnectionError("subscription ended")
                if loader.done():
                    loader.result()
                    raise ConnectionError("directory reader ended")
                if health.done():
                    health.result()  # raises the failed read's error
                    raise ConnectionError("health reader ended")
                full, self._full = self._full, False
                resynced = await self._sync(client, pubsub, full=full)
                if full and not resynced:
                    self._resync_clients()
                idle = time.monotonic() - self._last_rx
                if idle > PUBSUB_DEAD_AFTER:
                    raise ConnectionError(f"subscription silent for {idle:.0f} s")
                if idle > PUBSUB_PING_AFTER:
                    await pubsub.ping()
        finally:
            self._client = None
            await rc.end_session([reader, loader, health], pubsub, client, sub_client)

    async def _read(self, pubsub: PubSub) -> None:
        ctl = self.layout.ctl
        bars = self.layout.bar_channel_prefix
        async for msg in pubsub.listen():
            self._last_rx = time.monotonic()
            if msg["type"] != "message":
                if msg["type"] == rc.RESUBSCRIBED:  # a cluster master's channels, lost and subscribed again
                    rc.topology_changed(self._client)  # on the master that took them over
                    self._full = True
                    self._wake.set()
                continue
            channel = msg["channel"]
            if channel == ctl:
                if msg["data"] == rc.HELLO:  # a publisher (re)started: re-read everything
                    self._full = True
                    self._wake.set()
                elif msg["data"] == rc.DIRECTORY:
                    self._directory_wake.set()
            elif channel.startswith(bars):
                self._on_bars(channel, msg["data"])
            else:
                self._on_quotes(channel, msg["data"])

    def _on_quotes(self, channel: bytes, data: bytes) -> None:
        deliver = self._deliver
        if deliver is None:
            return
        m = self.metrics
        try:
            pt, quotes, src = rc.decode_sourced(data)
            symbol = self.layout.symbol_of(channel)
            if any(q.symbol != symbol for q in quotes):
                raise ValueError(f"quote for another symbol on {channel!r}")
        except ValueError as exc:
            m.broker_errors.inc()
            log.debug("dropped a message: %s", exc)
            return
        if src is not None and src != self.source and src == self._left:
            return  # sent before the takeover, read after it: numbered by the source left behind
        m.broker_messages.inc()
        m.broker_lag.observe(max(0.0, time.time() - pt / 1000.0))
        if src is not None and src != self.source:
            now = time.monotonic()
            if src != self._heard or now - self._heard_at > CHECK_INTERVAL:  # read P:source and its values
                if src != self._heard:
                    self._held = {}
                self._heard, self._heard_at = src, now
                self._full = True
                self._wake.set()
            if quotes:  # not under the epoch in force: held until the switch, which delivers the latest
                self._held[symbol] = quotes[-1]
            return
        for q in quotes:
            deliver(q)
        if self._awaited and symbol in self._awaited:
            self._notify()

    # -- bars ----------------------------------------------------------------------------------
    def _bad_bars(self, what: str) -> None:
        """Count a malformed bar message or entry; log the first at warning, the rest at debug."""
        self.metrics.broker_errors.inc()
        level = logging.DEBUG if self._bad_bars_logged else logging.WARNING
        self._bad_bars_logged = True
        log.log(level, "dropped %s", what)

    def _on_bars(self, channel: bytes, data: bytes) -> None:
        try:
            update = rb.decode_update(data)
            if self.layout.bar_channel(update.symbol) != channel:
                raise ValueError(f"bars of another symbol on {channel!r}")
        except ValueError as exc:
            self._bad_bars(f"a bar message: {exc}")
            return
        symbol = update.symbol
        if symbol not in self._subscribed:
            return  # unsubscribed in the meantime
        if update.ready:
            event = self._bars_ready.pop(symbol, None)
            if event is not None:
                event.set()
            seen = self._bars_seen.get(symbol)
            if seen is not None:  # a rewritten history (Redis restarted): read what this node missed
                self._bars_behind.setdefault(symbol, seen)
                self._wake.set()
        if symbol in self._watching and symbol not in self._demand:
            return  # subscribed for a read (quotes): bars go to the symbols clients here receive
        self._bars_seen[symbol] = update.pt
        self._sink(symbol, update.bars)

    def _sink(self, symbol: str, bars: dict[str, list[Bar]]) -> None:
        sink = self.bar_sink
        if sink is None:
            return
        for interval, series in bars.items():
            for bar in series:
                sink(symbol, interval, bar)

    async def _catch_up(self, client: Redis) -> None:
        """Read the bars of the symbols behind (since their last update, less two intervals) and hand them on.
        A symbol whose read fails for want of its master (or of Redis) stays behind for a later pass; an error
        answer that would come again (``WRONGTYPE``) is counted instead."""
        behind, self._bars_behind = self._bars_behind, {}
        symbols = [s for s in behind if s in self._subscribed]
        if not symbols or self.bar_sink is None:
            return
        calls = [
            ("ZRANGEBYSCORE", self.layout.bars(s, interval), int(behind[s]) - 2 * ms, "+inf")
            for s in symbols
            for interval, ms in INTERVALS.items()
        ]
        try:
            got = await rc.run_keyed(client, self.layout, calls)
        except BaseException:  # Redis lost (one server), or the session ends: the next one reads them
            for s in symbols:
                self._still_behind(s, behind[s])
            raise
        replies = iter(got)
        for s in symbols:
            each = [next(replies) for _ in INTERVALS]
            if any(isinstance(r, BaseException) and type(r) is not ResponseError for r in each):
                self._still_behind(s, behind[s])  # its master lost, moving or loading: read it again
                continue
            caught: dict[str, list[Bar]] = {}
            for interval, raw in zip(INTERVALS, each, strict=True):
                if isinstance(raw, BaseException):  # a plain error answer: reading again would not help
                    self._bad_bars(f"the bars of {s} {interval}: {raw}")
                    continue
                bars, bad = rb.decode_history(raw)
                if bad:
                    self._bad_bars(f"{bad} malformed bars of {s} {interval} in Redis")
                caught[interval] = bars
            self._sink(s, caught)

    def _still_behind(self, symbol: str, since: float) -> None:
        """Keep ``symbol`` behind from ``since``, or from an earlier time noted meanwhile."""
        noted = self._bars_behind.get(symbol)
        if noted is None or since < noted:
            self._bars_behind[symbol] = since

    # -- the symbol directory ------------------------------------------------------------------
    async def _directory_loop(self, client: Redis) -> None:
        """Read the directory now, on each ``directory`` notification and every :data:`DIRECTORY_POLL` s."""
        while True:
            self._directory_wake.clear()
            try:
                await self._load_directory(client)
            except (RedisError, OSError) as exc:  # a lost connection: the session notices and reconnects
                log.debug("could not read the symbol directory: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._directory_wake.wait(), DIRECTORY_POLL)

    async def _load_directory(self, client: Redis) -> None:
        raw = await rd.read_meta(client, self.layout)
        if raw is None or raw == self._directory_raw:
            return  # unchanged, or none (yet, or Redis restarted empty: ours holds until the publisher rewrites it)
        try:
            got = await rd.read(client, self.layout)
        except ValueError as exc:
            self._directory_raw = raw
            self.metrics.broker_errors.inc()
            log.warning("ignored the symbol directory in Redis: %s", exc)
            return
        if got is None:
            return
        self._directory_raw, meta, entries = got
        directory = rd.build(meta, entries)
        await asyncio.to_thread(index_of, directory)  # searchable before it is in use, built beside the loop
        self._directory = directory
        state = "complete" if meta.complete else "still loading: " + ", ".join(meta.loading)
        log.info("symbol directory of publisher %s: %d symbols (%s)", meta.publisher, len(entries), state)

    # -- the publisher's health -----------------------------------------------------------------
    async def _health_loop(self, client: Redis) -> None:
        """Read the health report every :data:`~ticker.broker.redis_health.EVERY` s; a failed read ends
        the loop, and the session reconnects."""
        while True:
            await asyncio.sleep(rh.EVERY)
            await self._read_health(client)

    async def _read_health(self, client: Redis) -> None:
        raw = await client.get(self.layout.health)
        if isinstance(raw, str):
            raw = raw.encode()
        first, self._health_read = not self._health_read, True
        if raw is None:
            if self._health is not None or first:
                log.warning(
                    "no publisher is reporting: every symbol is down until one does (is ticker feed running?)"
                )
            self._health, self._health_raw = None, None
            return
        if raw == self._health_raw:
            return
        try:
            got = rh.HealthReport.decode(raw)
        except ValueError as exc:
            self.metrics.broker_errors.inc()
            log.warning("ignored the publisher's health report: %s", exc)
            got = rh.HealthReport("?")  # somebody reports: say nothing rather than "not running"
        if self._health_raw is None:
            log.info("publisher %s reports: %d symbols not live", got.publisher, len(got.symbols))
        self._health, self._health_raw = got, raw

    # -- demand and last values --------------------------------------------------------------
    async def _sync(self, client: Redis, pubsub: PubSub, full: bool) -> bool:
        """Bring subscriptions in line with demand and the symbols read here; fetch last values of new symbols
        (all when ``full``, and the publisher's source epoch: when it changed, ``on_epoch`` comes first, then the
        new source's values read and held, with no await between them). True when ``on_epoch`` resyncs the
        clients."""
        self._passes_begun += 1
        begun = self._passes_begun
        now = time.monotonic()
        for held in (self._reading, self._watching):
            for s in [s for s, until in held.items() if until <= now]:
                del held[s]
        want = self._demand
        subs = want | frozenset(self._watching)
        add = [s for s in subs if s not in self._subscribed]
        drop = [s for s in self._subscribed if s not in subs]
        lay = self.layout
        if add:
            self._subscribed.update(add)  # before: the reader may see the first bar message within the await
            await pubsub.subscribe(*(c for s in add for c in (lay.channel(s), lay.bar_channel(s))))
        if drop:
            await pubsub.unsubscribe(*(c for s in drop for c in (lay.channel(s), lay.bar_channel(s))))
            self._subscribed.difference_update(drop)
            for s in drop:
                self._bars_seen.pop(s, None)
        for s in [s for s in self._bars_seen if s not in want]:  # left the demand (may stay subscribed, read)
            del self._bars_seen[s]
        if full:
            for s, seen in self._bars_seen.items():
                self._bars_behind.setdefault(s, seen)
        if self._bars_behind:
            await self._catch_up(client)
        fetch = sorted(subs) if full else add
        source: str | None = None
        if full:
            raw = await client.get(self.layout.source)
            source = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        renumbered = source is not None and source != self.source
        values = await rc.read_last(client, self.layout, fetch) if fetch else []
        resynced = False
        if renumbered:  # the epoch first (every value of the old source goes), then the new source's values
            assert source is not None
            self._left, self.source = self.source, source
            log.info("the publisher's source epoch is %s (was %s)", source, self._left)
            if self._on_epoch is not None:
                resynced = bool(self._on_epoch(source))
        if fetch:
            self._apply_last(fetch, values, renumbered)
        if full:
            early, self._held = self._held, {}
            if self._heard == self.source:  # what came from it before the switch, where newer than the read
                self._release(early)
        advertised = subs | frozenset(self._reading)
        changed = bool(add or drop or full) or advertised != self._advertised
        if changed or time.monotonic() >= self._refresh_due:
            await self._write_demand(client, advertised, announce=changed)
            self._advertised = advertised
        self._passes_done = begun
        self._notify()
        return resynced

    def _apply_last(
        self, symbols: list[str], values: list[bytes | str | None], renumbered: bool = False
    ) -> None:
        """Deliver the last values read that are newer than the hub's (a greater ``q``; the time when either has
        none). ``renumbered``: the source changed, so a ``q`` of the new numbering may be lower than the hub's
        value of the old one: delivered too unless that value is newer in time (a message that overtook the read)."""
        deliver = self._deliver
        if deliver is None:
            return
        for symbol, raw in zip(symbols, values, strict=True):
            if raw is None:
                continue
            try:
                q = rc.decode_published(orjson.loads(raw))
                if q.symbol != symbol:
                    raise ValueError("symbol mismatch")
            except ValueError:  # not JSON, or a malformed Q (MalformedQuote)
                self.metrics.broker_errors.inc()
                continue
            cur = self._last(symbol)
            if cur is None:
                deliver(q)
            elif q.seq and cur.seq:
                if q.seq > cur.seq or (renumbered and q.seq < cur.seq and q.ts_ms >= cur.ts_ms):
                    deliver(q)
            elif q.ts_ms > cur.ts_ms:
                deliver(q)

    def _release(self, held: dict[str, Quote]) -> None:
        """Deliver the quotes of the new source held back until the switch, those newer than the hub's value."""
        deliver = self._deliver
        if deliver is None:
            return
        for symbol, q in held.items():
            cur = self._last(symbol)
            if symbol in self._subscribed and (cur is None or q.seq > cur.seq):
                deliver(q)

    async def _write_demand(self, client: Redis, want: frozenset[str], announce: bool) -> None:
        """Rewrite this node's demand set with its TTL (a full rewrite also heals a Redis restart)."""
        key = self.layout.demand(self.node)
        pipe = client.pipeline(transaction=True)
        pipe.sadd(self.layout.nodes, self.node)
        pipe.delete(key)
        if want:
            pipe.sadd(key, *want)
            pipe.expire(key, max(1, round(self.demand_ttl)))
        if announce:
            rc.announce(pipe, self.layout, rc.DEMAND)
        await pipe.execute()
        self._refresh_due = time.monotonic() + self.demand_ttl / 3

    def _resync_clients(self) -> None:
        if self._resync is not None:
            self._resync()
