"""The publisher process (``ticker feed --broker redis://...``): feed adapters → Redis.

It runs the feed adapters, follows the union of every edge node's demand plus ``--symbols``,
and publishes normalized quotes: per symbol channel, one message per publish window holding
that window's quotes, all of a window's messages and the last-value hash update in one
pipelined round trip. While Redis is away it keeps only the last value per symbol; when
Redis is back it rewrites the hash and says ``hello`` so nodes resync. It also writes its feeds'
symbol directory for the nodes (:mod:`ticker.broker.redis_directory`): at each connection and
whenever the directory changed (checked every second); and, every second with a short TTL, its health
report (:mod:`ticker.broker.redis_health`): its feeds' health and the carried symbols that are not live,
so nodes tell their clients ``down``, ``closed`` or ``halted``, and that the publisher is gone once the report expires.
It aggregates the bars of its carried symbols and keeps their bounded history in Redis for every edge node
(:mod:`ticker.broker.publisher_bars`, :mod:`ticker.broker.redis_bars`).
A publisher runs while its process holds the publisher lease (:mod:`ticker.broker.candidate`): every write an edge
node could see (quotes and last values, hello, directory, health report, bars) is fenced by it
(:mod:`ticker.broker.redis_lease`), so Redis refuses them once another publisher took over; each message says its
lease epoch (``"e"``).
It numbers each symbol's quotes once, here (the ``q`` every edge node passes on), carrying on from the ``q`` of
the last value in Redis where there is one (a publisher that took over), and names that numbering with its
source epoch ``RANDOM#TERM`` (:attr:`Publisher.source`: ``P:source``, and each message's ``"src"``), which
edge nodes give their clients as a snapshot's ``e`` (docs/protocol.md, "Ordering").
Layout: ticker/broker/redis_layout.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from feeds.base import Feed
from feeds.runner import FeedRunner, metered
from ticker.bars import Bar
from ticker.broker import redis_directory as rd
from ticker.broker import redis_health as rh
from ticker.broker import redis_layout as rc
from ticker.broker.publisher_bars import PublisherBars
from ticker.broker.redis_lease import Fenced, Lease
from ticker.daystats import listed_day_stats, listing_sessions, new_york_day_start
from ticker.errors import InvalidSymbol
from ticker.metrics.registry import Metrics
from ticker.quote import Quote, encode_entry
from ticker.symbols import normalize_symbol
from ticker.tasks import cancel_and_wait

log = logging.getLogger("ticker.publisher")

DEMAND_POLL = 2.0  # seconds between demand reads without notifications (expires dead nodes' demand)
DEMAND_DEBOUNCE = 0.02  # seconds to gather notifications of several nodes into one read
MAX_PER_SYMBOL = 64  # quotes of one symbol kept per window; older ones are conflated away
START_WAIT = 3.0
DIRECTORY_POLL = 1.0  # seconds between checks whether the feeds' directory changed
DIRECTORY_KEEP = 60.0  # seconds a complete directory in Redis is kept while this publisher's feeds load

# Union of every live node's demand set; prunes nodes whose demand key expired. One round trip, atomic.
_READ_DEMAND = """
local seen, out = {}, {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. node
  if redis.call('EXISTS', key) == 1 then
    for _, s in ipairs(redis.call('SMEMBERS', key)) do
      if not seen[s] then seen[s] = true; out[#out + 1] = s end
    end
  else
    redis.call('SREM', KEYS[1], node)
  end
end
return out
"""


class Publisher:
    """Runs ``feeds`` and publishes their quotes to Redis, following the nodes' demand."""

    def __init__(
        self,
        url: str,
        feeds: list[Feed],
        metrics: Metrics,
        *,
        lease: Lease,
        symbols: frozenset[str] = frozenset(),
        window: float = 0.005,
        stale_after: float | None = 15.0,
    ) -> None:
        """``lease``: this process's lease (held when the publisher starts); its layout names the prefix."""
        self.url = rc.check_url(url)
        self.lease = lease
        self.metrics = metrics
        self.stale_after = stale_after
        self.runner = FeedRunner(feeds, metered(metrics, self._emit, bar=self._bar), stale_after=stale_after)
        #: The day statistics a feed leaves out, filled in here once for every edge node (ticker/daystats.py).
        self.day_stats = listed_day_stats(lambda: self.runner.directory)
        self.static = symbols
        self.layout = lease.layout
        self.id = lease.publisher
        #: Names this publisher's numbering of ``q`` (its term): random, so no other deployment or term has it.
        self.source = f"{secrets.token_hex(6)}#{lease.epoch}"
        #: symbol → the last ``q`` given; kept when a symbol is dropped, so it goes on rising when carried again.
        self._seq: dict[str, int] = {}
        self._feeds_started = asyncio.Event()  # health reports and history loads begin once the feeds run
        #: The bars of the carried symbols, aggregated once here; their history lives in Redis.
        self.bars = PublisherBars(
            self.layout,
            self.runner.history,
            listing_sessions(lambda: self.runner.directory, new_york_day_start()),
            self.id,
            can_load=self._feeds_started,
            settled=lambda s: self.runner.directory.complete or self.runner.directory.get(s) is not None,
            on_loaded=lambda s, now_ms: self.day_stats.seed_days(s, self.bars.book.last(s, "1d", 2), now_ms),
            writes=lease.pipeline,
        )
        self.window = window
        self.carried: frozenset[str] = symbols
        self.published = 0  # quotes published (for logs and tests)
        self._last: dict[str, bytes] = {}  # symbol → its latest encoded Q
        self._buf: dict[str, list[bytes]] = {}
        self._pending = asyncio.Event()
        self._flushed = asyncio.Event()
        self._demand_dirty = asyncio.Event()
        self._dropped: set[str] = set()  # symbols no longer carried whose last value must leave the hash
        self._up = False
        self._ever_up = False
        self._first_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_flush = 0.0
        self._hello_due = False
        self._restore_due = False  # republish every last value and say hello (the lease was retaken)
        self._client: Redis | None = None
        self._health_lock = asyncio.Lock()  # one report write at a time; stop() withdraws the report under it
        self._stopping = False

    @property
    def up(self) -> bool:
        """Whether the publisher is connected to Redis."""
        return self._up

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect (waiting briefly, so the feeds start with the nodes' demand), then start the feeds."""
        self.bars.start()
        self.bars.carry(self.carried, ())
        self._task = asyncio.get_running_loop().create_task(self._run(), name="publisher")
        try:
            await asyncio.wait_for(self._first_up.wait(), START_WAIT)
        except TimeoutError:
            log.warning(
                "Redis at %s is not reachable yet; feeds start, publishing when it is", rc.redact(self.url)
            )
        await self.runner.start(lambda: self.carried)
        self._feeds_started.set()

    async def stop(self, withdraw_health: bool = True) -> None:
        """Withdraw the health report (nodes say at once that the publisher is gone; not when a standby is to
        take over), stop the feeds, publish what is buffered (briefly), disconnect."""
        self._stopping = True
        if withdraw_health:
            with contextlib.suppress(Exception):  # best effort: the report expires anyway
                await asyncio.wait_for(self._withdraw_health(), 1.0)
        await self.runner.stop(within=1.0)
        await self.bars.stop(within=1.0)
        if self._up and self._buf and self.lease.token is not None:
            self._flushed.clear()
            self._pending.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flushed.wait(), 1.0)
        await cancel_and_wait(self._task)
        self._set_up(False)

    def retaken(self) -> None:
        """The lease lapsed and is this publisher's again (new epoch): republish every last value, say hello."""
        self._restore_due = True
        self._pending.set()

    def _emit(self, quote: Quote) -> None:
        sym = quote.symbol
        if sym not in self.carried:  # nobody wants it (a feed still winding down a symbol)
            return
        quote = self.day_stats.apply(quote)
        self.bars.on_quote(quote)
        n = self._seq.get(sym, 0) + 1
        self._seq[sym] = n
        enc = encode_entry(quote, n)
        self._last[sym] = enc
        if not self._up:
            return
        entries = self._buf.get(sym)
        if entries is None:
            self._buf[sym] = [enc]
        else:
            entries.append(enc)
            if len(entries) > MAX_PER_SYMBOL:
                del entries[0]
        if not self._pending.is_set():
            self._pending.set()

    def _bar(self, symbol: str, interval: str, bar: Bar, final: bool) -> None:
        """A provider's own bar (it wins over the aggregated one)."""
        if symbol in self.carried:
            self.bars.on_bar(symbol, interval, bar, final)

    # -- connection --------------------------------------------------------------------------
    def _set_up(self, up: bool) -> None:
        self._up = up
        self.metrics.broker_up.set(1 if up else 0)
        if not up:
            self._buf = {}

    async def _run(self) -> None:
        await rc.stay_connected(self._session, self.url, lambda: self._up, lambda: self._set_up(False))

    async def _session(self) -> None:
        client = rc.connect(self.url, "ticker-publisher")
        sub_client = rc.connect(self.url, "ticker-publisher", socket_timeout=None)
        pubsub = sub_client.pubsub(ignore_subscribe_messages=True)
        tasks: list[asyncio.Task[None]] = []
        try:
            read_demand = client.register_script(_READ_DEMAND)
            await pubsub.subscribe(self.layout.ctl)
            await self._update_demand(client, read_demand)
            await self._carry_on_numbering(client)
            await self._announce(client)
            if self._last:  # Redis may have restarted empty: restore every last value, then say hello
                await self._restore(client)
            else:  # a fresh publisher says hello with its first data
                self._hello_due = True
            self._buf = {}
            self._set_up(True)
            if self._ever_up:
                self.metrics.broker_reconnects.inc()
                log.info("Redis is back; republished %d last values", len(self._last))
            else:
                log.info("publishing to Redis at %s", rc.redact(self.url))
            self._ever_up = True
            self._client = client
            await self.bars.attach(client)
            self._first_up.set()
            loop = asyncio.get_running_loop()
            tasks = [
                loop.create_task(self._flusher(client)),
                loop.create_task(self._read(pubsub)),
                loop.create_task(self._demand_loop(client, read_demand)),
                loop.create_task(self._directory_loop(client)),
                loop.create_task(self._health_loop(client)),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
            raise ConnectionError("a publisher task ended")
        finally:
            self._client = None
            self.bars.detach()
            await rc.end_session(tasks, pubsub, client, sub_client)

    # -- numbering -------------------------------------------------------------------------------
    async def _carry_on_numbering(self, client: Redis) -> None:
        """Go on from the ``q`` of each last value in Redis (an earlier publisher's) where it is above this one's:
        the same update keeps its ``q`` and a later one gets a greater one, whichever publisher sent it. A value
        numbered before (Redis unreachable at the start) is numbered again above it."""
        seq, last = self._seq, self._last
        for field, raw in (await rc.read_all_last(client, self.layout)).items():
            try:
                q = orjson.loads(raw).get("q")
                sym = field.decode() if isinstance(field, bytes) else str(field)
            except (orjson.JSONDecodeError, AttributeError, UnicodeDecodeError):
                continue
            if type(q) is not int or q <= seq.get(sym, 0):
                continue
            seq[sym] = q
            enc = last.get(sym)
            if enc is not None:
                seq[sym] = q + 1
                last[sym] = encode_entry(rc.decode_published(orjson.loads(enc)), q + 1)

    async def _announce(self, client: Redis) -> None:
        """Set ``P:source`` (fenced), so an edge node that starts or reconnects knows whose ``q`` it passes on."""
        try:
            await self.lease.pipeline(client).set(self.layout.source, self.source).execute()
        except Fenced as exc:
            log.debug("source epoch not announced: %s", exc)
        else:
            log.info("numbering quotes as source epoch %s", self.source)

    # -- publishing --------------------------------------------------------------------------
    async def _restore(self, client: Redis) -> None:
        """Every last value into the hash, then hello (nodes re-read and resync), fenced; refused: the lease
        decides (a vacant one is retaken, and :meth:`retaken` asks for this again)."""
        self._restore_due = False
        try:
            await (
                self.lease.pipeline(client)
                .hset(self.layout.last, dict(self._last))
                .set(self.layout.source, self.source)
                .publish(self.layout.ctl, rc.HELLO)
                .execute()
            )
            self._hello_due = False
        except Fenced as exc:
            log.debug("last values not restored: %s", exc)

    async def _flusher(self, client: Redis) -> None:
        """One fenced round trip per window (one script call): the last-value hash and one PUBLISH per symbol."""
        m = self.metrics
        qprefix = self.layout.channel("")
        while True:
            await self._pending.wait()
            delay = self._last_flush + self.window - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # gather the window's quotes
            self._pending.clear()
            if self._restore_due:
                await self._restore(client)
            buf, self._buf = self._buf, {}
            dropped, self._dropped = self._dropped, set()
            if not buf and not dropped:
                continue
            pt = time.time() * 1000.0
            hello = self._hello_due and bool(buf)  # this publisher's first data: nodes re-read and resync
            epoch = self.lease.epoch
            args: list[object] = [
                b"",
                qprefix,
                self.layout.ctl if hello else b"",
                rc.HELLO,
                len(dropped),
                *dropped,
            ]
            n = 0
            for sym, entries in buf.items():
                args += (sym, entries[-1], rc.encode_message(entries, pt, epoch, self.source))
                n += len(entries)
            if (
                await self.lease.flush(client, args) is None
            ):  # refused: no longer (or not yet again) the holder
                continue
            if hello:
                self._hello_due = False
            self._flushed.set()
            self._last_flush = time.monotonic()
            self.published += n
            m.broker_messages.inc(len(buf))

    async def _read(self, pubsub: PubSub) -> None:
        async for msg in pubsub.listen():
            if msg["type"] == "message" and msg["data"] == rc.DEMAND:
                self._demand_dirty.set()

    # -- the symbol directory ------------------------------------------------------------------
    async def _directory_loop(self, client: Redis) -> None:
        """Write the directory now (Redis may have restarted empty) and whenever it changed; but while its feeds
        load, for at most :data:`DIRECTORY_KEEP` s, a complete directory in Redis (the publisher's it took over
        from, of the same feeds) is kept rather than replaced by a loading one."""
        written: tuple[int, bool] | None = None
        keep_until = time.monotonic() + DIRECTORY_KEEP
        while True:
            d = self.runner.directory
            state = (d.version, d.complete)
            if state != written and not d.complete and time.monotonic() < keep_until:
                if await self._complete_in_redis(client):
                    await asyncio.sleep(DIRECTORY_POLL)
                    continue
                keep_until = 0.0  # none there: ours, loading, from now on
            if state != written:
                try:
                    meta = await rd.write(client, self.layout, self.id, d, commit=self.lease.pipeline)
                except Fenced:
                    await asyncio.sleep(DIRECTORY_POLL)
                    continue
                written = (meta.version, meta.complete)
                log.info(
                    "wrote the symbol directory: %d symbols%s",
                    meta.symbols,
                    "" if meta.complete else " (loading: " + ", ".join(meta.loading) + ")",
                )
            await asyncio.sleep(DIRECTORY_POLL)

    async def _complete_in_redis(self, client: Redis) -> bool:
        raw = await rd.read_meta(client, self.layout)
        try:
            return raw is not None and rd.DirectoryMeta.decode(raw).complete
        except ValueError:
            return False

    # -- the health report ---------------------------------------------------------------------
    def health_report(self) -> rh.HealthReport:
        """This publisher's feeds and the carried symbols that are not live, now."""
        runner = self.runner
        return rh.report(
            self.id, runner.feeds, self.carried, time.monotonic(), self.stale_after, runner.directory
        )

    async def _withdraw_health(self) -> None:
        async with self._health_lock:  # after a write in flight, and none after this
            client = self._client
            if client is not None and self._up:
                await self.lease.pipeline(client).delete(self.layout.health).execute()

    async def _health_loop(self, client: Redis) -> None:
        """Once the feeds run, set ``P:health`` every :data:`~ticker.broker.redis_health.EVERY` s with its TTL."""
        await self._feeds_started.wait()
        while True:
            async with self._health_lock:
                if not self._stopping:
                    with contextlib.suppress(Fenced):
                        report = self.health_report().encode()
                        await self.lease.pipeline(client).set(self.layout.health, report, ex=rh.TTL).execute()
            await asyncio.sleep(rh.EVERY)

    # -- demand ------------------------------------------------------------------------------
    async def _demand_loop(self, client: Redis, read_demand: object) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._demand_dirty.wait(), DEMAND_POLL)
                await asyncio.sleep(DEMAND_DEBOUNCE)
            self._demand_dirty.clear()
            await self._update_demand(client, read_demand)

    async def _update_demand(self, client: Redis, read_demand: object) -> None:
        prefix = self.layout.demand("")
        raw = await read_demand(keys=[self.layout.nodes], args=[prefix], client=client)  # type: ignore[operator]
        want: set[str] = set()
        for item in raw:
            try:
                want.add(normalize_symbol(item.decode() if isinstance(item, bytes) else str(item)))
            except (InvalidSymbol, UnicodeDecodeError):
                self.metrics.broker_errors.inc()
        self._set_carried(frozenset(want) | self.static)

    def _set_carried(self, carried: frozenset[str]) -> None:
        if carried == self.carried:
            return
        added = carried - self.carried
        removed = self.carried - carried
        self.carried = carried
        log.info(
            "carrying %d symbols (+%s, -%s)",
            len(carried),
            ",".join(sorted(added)[:10]) or "none",
            ",".join(sorted(removed)[:10]) or "none",
        )
        self.runner.set_demand(carried)
        self.bars.carry(added, removed)
        self._dropped -= added
        for s in removed:
            self._last.pop(s, None)
            self._buf.pop(s, None)
        if removed:
            self._dropped.update(removed)
            self._pending.set()
