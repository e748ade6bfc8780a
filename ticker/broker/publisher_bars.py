"""The publisher's bars: aggregated once for every edge node, the history kept in Redis (bounded).

A :class:`PublisherBars` holds a :class:`~ticker.barbook.BarBook` fed by every quote the publisher emits (day
statistics filled in) and by the providers' own bars. When a symbol is first carried it backfills it in the
background (at most :data:`BACKFILL_CONCURRENCY` at once, never holding up quotes): first from the history a
publisher wrote to Redis before (a restarted publisher, a symbol demanded again within the TTL), then from the
provider's history endpoint over the spans a single node loads (:data:`~ticker.bars.HISTORY_SPANS`: ``1m`` and ``5m`` from the
session start four days back, ``1h`` two weeks, ``1d`` a year; ``5m``, ``1h`` and ``1d`` made of the ``1m``
bars where the provider has none at that interval; ``1s`` has no history), retried with backoff. Once the first attempt ends (loaded, no history, or failed: retries go on)
the symbol's whole history is written to Redis with its ``P:bars:SYMBOL`` mark, then every
:data:`~ticker.broker.redis_bars.FLUSH_EVERY` s the bars that changed, in one pipelined round trip for all
symbols: one atomic Lua write per changed series and one ``PUBLISH`` per changed symbol. Changes are taken
from the book even while Redis is away, so after a blip the missed bars are written; a series whose mark is
gone (Redis restarted empty) is rewritten whole. Layout and codec: :mod:`ticker.broker.redis_bars`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from feeds.ratelimit import ThrottledLog
from ticker.backoff import Backoff
from ticker.barbook import BarBook, aggregate
from ticker.bars import HISTORY, HISTORY_SPANS, INTERVALS, Bar, DayStart, history_start
from ticker.broker import redis_bars as rb
from ticker.broker import redis_layout as rc
from ticker.broker.redis_lease import Fenced
from ticker.quote import Quote
from ticker.tasks import cancel_and_wait

log = logging.getLogger("ticker.publisher")

#: ``FeedRunner.history``: a symbol's bars at an interval starting in ``[start_ms, end_ms)``; None: none.
History = Callable[[str, str, int, int], Awaitable[list[Bar] | None]]

BACKFILL_CONCURRENCY = 4  # symbols loading history at once
RETRY_BASE = 1.0  # seconds: backoff of a failed history load (full jitter) ...
RETRY_CAP = 60.0  # ... doubling up to this
SESSION_WAIT = 10.0  # seconds a backfill waits for the directory to say which session days a symbol has
FULL_PER_PASS = 20  # symbols whose whole history one write pass rewrites (about 5,000 bars each)
#: How far back each interval is loaded from the provider, in days (``1m`` and ``5m`` from a session start),
#: as a single node's loader does (ticker/server/history.py); the book keeps :data:`~ticker.bars.HISTORY`.
SPANS = [i for i in HISTORY_SPANS if i != "1s"]  # the provider's history (none has seconds)


class PublisherBars:
    """The bars of the symbols a publisher carries, aggregated here and written to Redis."""

    def __init__(
        self,
        layout: rc.Layout,
        history: History,
        session_of: Callable[[str], DayStart],
        publisher: str,
        can_load: asyncio.Event | None = None,
        settled: Callable[[str], bool] = lambda symbol: True,
        clock: Callable[[], float] = time.time,
        on_loaded: Callable[[str, int], None] | None = None,
        writes: Callable[[Redis], Any] | None = None,
    ) -> None:
        """``on_loaded(symbol, now_ms)`` is called after a load that brought bars (the publisher seeds its day
        statistics with the session so far). ``writes`` makes the pipeline of each write (default: a plain one;
        the publisher's is fenced by its lease, ticker/broker/redis_lease.py)."""
        # the symbols carried keep their bars (past the bound only those nobody carries are forgotten)
        self.book = BarBook(session_of, keep=lambda s: s in self._ready or s in self._loading)
        self.on_loaded = on_loaded
        self._writes = writes or (lambda client: client.pipeline(transaction=False))
        self.layout = layout
        self.publisher = publisher
        self._history = history
        self._can_load = can_load  # set once the feeds run (their history endpoints need them started)
        self._settled = (
            settled  # whether a symbol's session days are known (its directory entry, or none to come)
        )
        self._clock = clock
        self._limit = asyncio.Semaphore(BACKFILL_CONCURRENCY)
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._ready: set[str] = set()  # symbols whose history goes to Redis (first backfill attempt done)
        self._full: dict[str, None] = {}  # ready symbols whose whole history the next passes rewrite
        self._dirty: dict[str, dict[str, dict[int, None]]] = {}  # symbol → interval → starts of changed bars
        self._current: dict[
            str, dict[str, int]
        ] = {}  # symbol → interval → start of its current bar when taken
        self._client: Redis | None = None
        self._attached = asyncio.Event()
        self._check_marks = False
        self._loop_task: asyncio.Task[None] | None = None
        self._refreshed = clock()  # when every carried symbol's TTL was last refreshed
        self._errors = ThrottledLog(log, interval=60.0)
        self.written = 0  # bars written to Redis (for logs and tests)

    # -- bars in -------------------------------------------------------------------------------
    def on_quote(self, quote: Quote) -> None:
        """Aggregate one emitted quote (day statistics filled in)."""
        self.book.on_quote(quote)

    def on_bar(self, symbol: str, interval: str, bar: Bar, final: bool) -> None:
        """A provider's own bar: it wins over the aggregated one."""
        self.book.apply(symbol, interval, bar, final, derive=True)

    def carry(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """The carried symbols changed: forget the ``removed`` (their Redis history expires with its TTL), and
        backfill the ``added`` in the background."""
        for s in removed:
            task = self._loading.pop(s, None)
            if task is not None:
                task.cancel()
            self.book.forget(s)
            self._ready.discard(s)
            self._full.pop(s, None)
            self._dirty.pop(s, None)
            self._current.pop(s, None)
        loop = asyncio.get_running_loop()
        for s in added:
            if s not in self._loading and s not in self._ready:
                self._loading[s] = loop.create_task(self._backfill(s), name=f"bars-{s}")

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start taking changes from the book (every :data:`~ticker.broker.redis_bars.FLUSH_EVERY` s)."""
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="publisher-bars")

    async def stop(self, within: float = 1.0) -> None:
        """Stop loading; write what changed (best effort, ``within`` seconds); stop."""
        for task in list(self._loading.values()):
            await cancel_and_wait(task)
        client = self._client
        if client is not None and self._loop_task is not None:
            self._collect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._write(client), within)
        await cancel_and_wait(self._loop_task)
        self._loop_task = None

    async def attach(self, client: Redis) -> None:
        """A Redis session began: load the write script; the next pass checks which histories Redis still has."""
        await client.script_load(rb.WRITE_SERIES)
        self._check_marks = True
        self._client = client
        self._attached.set()

    def detach(self) -> None:
        """The Redis session ended: keep taking changes, write them once attached again."""
        self._client = None
        self._attached.clear()

    # -- backfill ------------------------------------------------------------------------------
    async def _backfill(self, symbol: str) -> None:
        try:
            await self._backfill_steps(symbol)
        finally:
            if self._loading.get(symbol) is asyncio.current_task():
                del self._loading[symbol]

    async def _backfill_steps(self, symbol: str) -> None:
        if self._can_load is not None:
            await self._can_load.wait()
        waited = 0.0
        while not self._settled(symbol) and waited < SESSION_WAIT:  # 1d bars start at its session's midnight
            await asyncio.sleep(0.1)
            waited += 0.1
        backoff = Backoff(RETRY_BASE, RETRY_CAP)
        todo = list(SPANS)
        minutes: list[Bar] = []  # the provider's 1m bars, for the intervals it has none of
        stored = False
        while True:
            loaded = False
            try:
                if not stored:  # what a publisher wrote before: read before anything of ours replaces it
                    await self._attached.wait()
                async with self._limit:
                    if not stored:
                        self.book.resession(symbol)  # its directory entry may have come after its first quote
                        loaded = await self._read_stored(symbol)
                        stored = True
                    while todo:
                        got = await self._load(symbol, todo[0], minutes)
                        if todo[0] == "1m" and got:
                            minutes = got
                        loaded = loaded or bool(got)
                        del todo[0]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # FeedError, a provider's timeout, Redis away: retried
                self._errors.warning("history", "could not load the history of %s: %s", symbol, exc)
            if stored and (symbol not in self._ready or loaded):
                self._ready.add(symbol)  # its history goes to Redis now, complete or not
                self._full[symbol] = None
            if loaded and self.on_loaded is not None:
                self.on_loaded(symbol, int(self._clock() * 1000))
            if not todo:
                return
            await asyncio.sleep(backoff.next_delay())

    async def _read_stored(self, symbol: str) -> bool:
        """Merge the history a publisher wrote to Redis before; whether there was any."""
        client = self._client
        if client is None:
            raise ConnectionError("Redis is away")
        pipe = client.pipeline(transaction=False)
        for interval in INTERVALS:
            pipe.zrange(self.layout.bars(symbol, interval), 0, -1)
        got = await pipe.execute()
        now = int(self._clock() * 1000)
        found = False
        for interval, members in zip(INTERVALS, got, strict=True):
            bars, bad = rb.decode_history(members)
            if bad:
                self._errors.warning("stored", "skipped %d malformed bars of %s in Redis", bad, symbol)
            if bars:
                self.book.backfill(symbol, interval, bars, now)
                found = True
        return found

    async def _load(self, symbol: str, interval: str, minutes: list[Bar]) -> list[Bar]:
        """Merge the provider's history at ``interval`` over its span (made of ``minutes`` where the provider
        has none at that interval); the bars merged."""
        now = int(self._clock() * 1000)
        days = self.book.session_of(symbol)
        start = history_start(interval, now, days)
        got = await self._history(symbol, interval, start, now + 1)
        if got is None and minutes and interval != "1m":
            got = aggregate((b for b in minutes if b.t >= start), interval, days)
        if got:
            self.book.backfill(symbol, interval, got, now)
        return got or []

    # -- writing -------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(rb.FLUSH_EVERY)
            self._collect()
            client = self._client
            if client is None:
                continue
            try:
                await self._write(client)
            except Fenced:  # not the active publisher (any more): the lease says what happens next
                pass
            except NoScriptError:  # the script cache was flushed under us: load it again
                with contextlib.suppress(RedisError, OSError):
                    await client.script_load(rb.WRITE_SERIES)
            except (RedisError, OSError) as exc:  # the session notices a lost connection and reconnects
                self._errors.warning("write", "could not write bars to Redis: %s", exc)
            except Exception as exc:  # a bug: logged with its traceback, and the next pass tries again
                self._errors.log(logging.ERROR, "bug", "writing bars failed: %r", exc, exc_info=exc)

    def _collect(self) -> None:
        """Take the book's changes into the bars due for Redis (those of symbols not ready wait for their
        whole history's write). A symbol that traded: its current bar of each interval, and every bar since
        the one current when last taken (the end of a bar that closed in between)."""
        changed, changed_bars = self.book.take_changes()
        ready, dirty, book = self._ready, self._dirty, self.book
        for s in changed:
            if s not in ready:
                continue
            per = dirty.setdefault(s, {})
            seen = self._current.setdefault(s, {})
            for interval in INTERVALS:
                cur = book.current(s, interval)
                if cur is None:
                    continue
                starts = per.setdefault(interval, {})
                prev = seen.get(interval)
                if prev != cur.t:  # bars opened since: the one current then, and any in between
                    for b in book.range(s, interval, prev, cur.t, HISTORY[interval]):
                        starts[b.t] = None
                    seen[interval] = cur.t
                starts[cur.t] = None
        for (s, interval), starts in changed_bars.items():
            if s in ready:
                dirty.setdefault(s, {}).setdefault(interval, {}).update(starts)

    async def _write(self, client: Redis) -> None:
        """One pipelined round trip: whole histories due, changed bars, their messages, TTL refreshes."""
        if self._check_marks:
            await self._find_lost(client)
            self._check_marks = False
        now = self._clock()
        refresh = now - self._refreshed >= rb.TTL_REFRESH and bool(self._ready)
        if not self._full and not self._dirty and not refresh:
            return
        book, layout = self.book, self.layout
        full = list(self._full)[:FULL_PER_PASS]
        dirty, self._dirty = self._dirty, {}
        pipe = self._writes(client)
        written = 0
        messages: dict[str, dict[str, list[Bar]]] = {}
        for s in full:
            dirty.pop(s, None)
            news: dict[str, list[Bar]] = {}
            current = self._current[s] = {}
            for interval in INTERVALS:
                series = book.series(s, interval)
                bars = [] if series is None else series.last(series.maxlen)
                self._script(pipe, s, interval, bars, replace=True)
                written += len(bars)
                if bars:
                    news[interval] = bars[-1:]
                    current[interval] = bars[-1].t
            pipe.set(layout.bars_ready(s), self.publisher, ex=rb.BARS_TTL)
            messages[s] = news
        for s, per in dirty.items():
            news = messages[s] = {}
            for interval, starts in per.items():
                bars = [b for t in sorted(starts) if (b := book.bar_at(s, interval, t)) is not None]
                if bars:
                    self._script(pipe, s, interval, bars, replace=False)
                    written += len(bars)
                    news[interval] = bars
        if refresh:
            for s in self._ready:
                pipe.expire(layout.bars_ready(s), rb.BARS_TTL)
                for interval in INTERVALS:
                    pipe.expire(layout.bars(s, interval), rb.BARS_TTL)
        pt = now * 1000.0
        whole = set(full)
        for s, news in messages.items():
            if news or s in whole:
                pipe.publish(layout.bar_channel(s), rb.encode_update(s, news, pt, ready=s in whole))
        try:
            await pipe.execute()
        except BaseException:
            for s, per in dirty.items():  # written again next pass (a write is idempotent)
                mine = self._dirty.setdefault(s, {})
                for interval, starts in per.items():
                    mine.setdefault(interval, {}).update(starts)
            raise
        for s in full:
            self._full.pop(s, None)
        if refresh:
            self._refreshed = now
        self.written += written

    def _script(self, pipe: Any, symbol: str, interval: str, bars: list[Bar], replace: bool) -> None:
        args = rb.write_args(bars, HISTORY[interval], replace)
        pipe.evalsha(rb.WRITE_SERIES_SHA, 1, self.layout.bars(symbol, interval), *args)

    async def _find_lost(self, client: Redis) -> None:
        """Rewrite whole every ready symbol whose history mark Redis lost (it restarted empty)."""
        ready = sorted(self._ready)
        for i in range(0, len(ready), 1000):
            chunk = ready[i : i + 1000]
            marks = await rc.mget(client, [self.layout.bars_ready(s) for s in chunk])
            for s, mark in zip(chunk, marks, strict=True):
                if mark is None:
                    self._full[s] = None
