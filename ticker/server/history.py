"""Loading each symbol's bar history into the node's :class:`~ticker.barbook.BarBook`, in the background.

Two loads, each from the first source that has an interval (the broker's history, Redis, then the feeds'
history endpoints):

- **Day bars** when a symbol is first demanded (a quote subscription): its last :data:`DAY_BARS` ``1d`` bars
  (asked for :data:`DAY_LOOKBACK` days back, past a long weekend), the session so far and the previous
  close for the day statistics and the day range; no more is kept until someone reads its bars. One
  symbol at a time, in the background: a watchlist of hundreds costs one request each, paced, never a
  burst. The pace is a duty cycle: after each symbol's day bars the loading pauses :data:`DAY_DUTY` times
  the CPU time the loop's thread spent meanwhile (at most :data:`DAY_PAUSE_MAX` s), so that it never takes
  more than half the loop, however many symbols arrive at once (a source that answers at once, such as the
  simulated market generating each symbol's history, costs CPU for every one; a provider's request mostly
  waits, which does not count, while the loop's other work during it does: a busy server loads slower).
  A bar read's load is not paced.
- **The whole history** at the first bar read (``subscribe_bars``, ``/sse?bars=``, ``/api/bars``), per
  symbol once (concurrent callers share one task), at most :data:`CONCURRENCY` symbols at a time: ``1m``
  and ``5m`` bars from the start of the session four days back (the current and the previous session,
  across a weekend or a holiday), ``1h`` for two weeks, ``1d`` for a year, ``1s`` for the last 15 minutes
  where a source has them (Redis: the publisher's); ``5m``, ``1h`` and ``1d`` are made of the ``1m`` bars
  where no source has them. The live bars since the symbol was demanded are kept (a provider's snapshot of
  the bar still filling merges with them); of ``1s``, only the last :data:`UNREAD_SECONDS` until this load,
  15 minutes from then on (:meth:`~ticker.barbook.BarBook.widen`).

A symbol someone receives stays loaded: its live bars keep it whole, and the book never drops them. The
history of a symbol nobody receives (a REST read) is reloaded when read again after :data:`FRESH_FOR`
seconds; such loads are limited to :data:`COLD_RATE` a second (a burst of :data:`COLD_BURST`), past which a
read gets what the node holds. The bars of a symbol nobody receives any more are dropped :data:`LINGER`
seconds after its demand ended (back within that time, it goes on as if it never left), those loaded for
a read :data:`FRESH_FOR` seconds after the load (:meth:`HistoryLoader.sweep`, every :data:`SWEEP_EVERY` s).
A failed load is logged (at most a line a minute) and retried after a backoff (by the next read, or by
itself while the symbol is demanded), never in a tight loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from operator import attrgetter

from ticker.backoff import Backoff
from ticker.barbook import BarBook, aggregate
from ticker.bars import HISTORY_SPANS, Bar, history_start
from ticker.tasks import cancel_and_wait
from ticker.tokenbucket import TokenBucket

log = logging.getLogger("ticker")

#: Where bars come from: ``(symbol, interval, start_ms, end_ms) -> bars | None`` (None: none at that interval).
LoadBars = Callable[[str, str, int, int], Awaitable[list[Bar] | None]]

CONCURRENCY = 4  # symbols loading at once
WAIT = 3.0  # seconds a bar read waits for a symbol's history before answering with what there is
FRESH_FOR = 60.0  # seconds the history of a symbol nobody receives is served before it is loaded again
RELOADS = 2  # loads again of a symbol that started afresh during its load (its session days changed)
COLD_RATE = 1.0  # loads a second of symbols nobody receives (REST reads), after a burst of COLD_BURST
COLD_BURST = 10.0
RETRY_BASE = 5.0  # a failed load is retried after RETRY_BASE plus a backoff of up to RETRY_CAP seconds
RETRY_CAP = 300.0
LOG_EVERY = 60.0  # seconds between two log lines about failed loads
DAY_BARS = 2  # day bars a newly demanded symbol gets: the session so far and the one before (its close)
DAY_LOOKBACK = 10  # days back they are asked from (a weekend, a holiday, a provider's missing day)
DAY_DUTY = 1.0  # after each symbol's day bars, a pause this many times as long as they took
DAY_PAUSE_MAX = 1.0  # seconds such a pause lasts at most (a slow provider's answer is mostly waiting)
LINGER = 30.0  # seconds the bars of a symbol nobody receives any more are kept (a reload, a reconnect)
SWEEP_EVERY = 5.0  # seconds between two looks for bars to drop
UNREAD_SECONDS = 60  # 1s bars a symbol keeps until someone reads its bars (then 15 minutes' worth)
BAR_BYTES = 64  # what a bar takes at most (ticker/bars.py)
SYMBOL_BYTES = 4_000  # what a symbol's five series take at first (4.4 KB measured with tracemalloc)
_DAY_MS = 86_400_000

_DERIVED = ("5m", "1h", "1d")  # made of 1m bars where no source has them
_start_of = attrgetter("t")


class HistoryLoader:
    """Backfills a :class:`BarBook` from ``sources``; ``demanded(symbol)``: whether someone receives it."""

    def __init__(
        self,
        bars: BarBook,
        sources: Sequence[LoadBars],
        demanded: Callable[[str], bool],
        concurrency: int = CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_loaded: Callable[[str, int], None] | None = None,
        on_dropped: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        """``on_loaded(symbol, now_ms)`` is called after each successful load (the node seeds its day statistics),
        ``on_dropped(symbol)`` when the sweep lets a symbol nobody receives go (its seeded statistics may go too);
        ``sleep`` makes the pauses of the day loading (:data:`DAY_DUTY`), measured with ``cpu_clock``: the event
        loop's thread's CPU time, so a provider's network wait does not count, the loop's other work meanwhile does."""
        self.bars = bars
        self.on_loaded = on_loaded
        self.on_dropped = on_dropped
        self.sources = tuple(sources)
        self.demanded = demanded
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._cpu = cpu_clock
        self._slots = asyncio.Semaphore(concurrency)
        self._cold = TokenBucket(COLD_RATE, COLD_BURST, clock())
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._fresh: dict[str, tuple[int | None, float]] = {}  # symbol → (book generation, fresh until)
        self._retry: dict[str, tuple[float, Backoff]] = {}  # symbol → (not before, its backoff)
        self._logged_at = -math.inf
        self._unlogged = 0
        self._closed = False
        self._days_due: dict[str, None] = {}  # demanded symbols waiting for their day bars, in order
        self._days_done: dict[str, int | None] = {}  # symbol → the book generation its day bars went into
        self._day_symbol: str | None = None  # the one whose day bars load now
        self._day_worker: asyncio.Task[None] | None = None
        self._idle: dict[str, float] = {}  # symbols nobody receives → when their bars are dropped
        self._sweeper: asyncio.TimerHandle | None = None
        self._released = 0  # bytes of the bars dropped since take_released, about

    def loading(self) -> int:
        """Symbols whose history is loading (or waiting for a slot), their day bars included."""
        return len(self._tasks) + len(self._days_due) + (self._day_symbol is not None)

    def ensure(self, symbol: str) -> asyncio.Task[None] | None:
        """Start loading ``symbol``'s history unless it is loaded, loading, or waiting for a retry; the
        loading task (shared by every caller), None when there is nothing to wait for."""
        task = self._tasks.get(symbol)
        if task is not None or self._closed:
            return task
        now = self._clock()
        fresh = self._fresh.get(symbol)
        if fresh is not None and fresh[1] > now and fresh[0] == self.bars.generation(symbol):
            return None
        retry = self._retry.get(symbol)
        if retry is not None and retry[0] > now:
            return None
        if not self.demanded(symbol) and not self._cold.take(now):
            # A read of a symbol nobody receives: at most COLD_RATE such loads a second (a burst of
            # COLD_BURST), so that reads of every known symbol cannot spend a provider's quota.
            return None
        task = self._tasks[symbol] = asyncio.get_running_loop().create_task(
            self._load(symbol), name=f"history {symbol}"
        )
        task.add_done_callback(
            lambda t: self._tasks.pop(symbol, None) if self._tasks.get(symbol) is t else None
        )
        return task

    async def wait(self, symbol: str, within: float = WAIT) -> None:
        """Load ``symbol``'s history if it needs it, waiting at most ``within`` seconds (the load goes on)."""
        task = self.ensure(symbol)
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=within)

    def demand_changed(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Symbols someone now receives get their day bars (the session so far, for the day statistics and the
        day range; the rest of the history comes with the first bar read); those nobody receives any more
        go stale, and their bars go :data:`LINGER` seconds later."""
        now = self._clock()
        for symbol in removed:
            self._days_due.pop(symbol, None)
            fresh = self._fresh.get(symbol)
            if fresh is not None and fresh[1] == math.inf:
                self._fresh[symbol] = (fresh[0], now + FRESH_FOR)
            self._idle[symbol] = now + LINGER
        for symbol in added:
            self._idle.pop(symbol, None)
            fresh = self._fresh.get(symbol)
            generation = self.bars.generation(symbol)
            if fresh is not None and fresh[1] > now and fresh[0] == generation:
                # its bars kept since it was last received: live from here on
                self._fresh[symbol] = (fresh[0], math.inf)
            elif symbol not in self._tasks and self._days_done.get(symbol, -1) != generation:
                self._days_due[symbol] = None
        if self._days_due and self._day_worker is None and not self._closed:
            self._day_worker = asyncio.get_running_loop().create_task(self._load_days(), name="history days")
        self._arm()

    def stats_forgotten(self, symbol: str) -> None:
        """``symbol``'s day statistics were dropped: its day bars are loaded again (and seed them) when it is
        next demanded (even within FRESH_FOR of a read's load, whose bars would otherwise be taken as they are)."""
        self._days_done.pop(symbol, None)
        self._fresh.pop(symbol, None)

    def sweep(self) -> int:
        """Drop the bars of the symbols nobody receives whose time is up (:data:`LINGER` after their demand
        ended, :data:`FRESH_FOR` after a read's load); how many went. A loading symbol waits for its load."""
        now = self._clock()
        due = [s for s, at in self._idle.items() if at <= now]
        dropped = 0
        for symbol in due:
            if symbol in self._tasks or symbol == self._day_symbol:
                continue
            del self._idle[symbol]
            if self.demanded(symbol):
                continue
            self._fresh.pop(symbol, None)
            self._days_done.pop(symbol, None)
            if self.on_dropped is not None:
                self.on_dropped(symbol)
            if symbol in self.bars:
                self._released += SYMBOL_BYTES + BAR_BYTES * self.bars.bars_held(symbol)
                self.bars.forget(symbol)
                dropped += 1
        return dropped

    def take_released(self) -> int:
        """About how many bytes the bars dropped since the last call held (the node trims the heap after
        enough were let go)."""
        released, self._released = self._released, 0
        return released

    def _arm(self) -> None:
        """Sweep in :data:`SWEEP_EVERY` seconds while some symbol's bars wait to be dropped."""
        if self._idle and self._sweeper is None and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._swept)

    def _swept(self) -> None:
        self._sweeper = None
        self.sweep()
        self._arm()

    async def _load_days(self) -> None:
        """Load the day bars of the demanded symbols one at a time (a watchlist of hundreds costs one request
        each, in the background, and never more than one at once), each followed by a pause as long as it
        took (:data:`DAY_DUTY`), failures left to a later bar read."""
        try:
            while self._days_due and not self._closed:
                symbol = next(iter(self._days_due))
                del self._days_due[symbol]
                if symbol in self._tasks or not self.demanded(symbol):
                    continue
                began = self._cpu()
                await self._load_day(symbol)  # no yield of its own: a source that answers at once is all CPU
                took = max(0.0, self._cpu() - began)
                await self._sleep(min(DAY_PAUSE_MAX, DAY_DUTY * took))
        finally:
            self._day_worker = None

    async def _load_day(self, symbol: str) -> None:
        """Load ``symbol``'s day bars (a failure logged)."""
        self._day_symbol = symbol
        try:
            async with self._slots:
                await self._fill(symbol, ("1d",), DAY_BARS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log_failure(symbol, exc, None)
            return
        finally:
            self._day_symbol = None
        self._days_done[symbol] = self.bars.generation(symbol)
        if self.on_loaded is not None:
            self.on_loaded(symbol, int(self._wall() * 1000))
        self._prune()

    async def stop(self) -> None:
        """Stop loading (tasks cancelled and awaited)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in [*self._tasks.values(), self._day_worker]:
            await cancel_and_wait(task)

    # -- one load ----------------------------------------------------------------------------
    async def _load(self, symbol: str) -> None:
        async with self._slots:
            try:
                for _ in range(RELOADS + 1):
                    filled = await self._fill(symbol)
                    if self.bars.generation(symbol) == filled:
                        break
                    # The symbol started afresh meanwhile (its directory entry came: other session days),
                    # so part of the load went into bars that are gone: load it again.
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a provider's failure: logged, retried later
                self._failed(symbol, exc)
                if not self.demanded(symbol):  # what it got goes as a read's load would
                    self._idle.setdefault(symbol, self._clock() + FRESH_FOR)
                    self._arm()
                return
        self._retry.pop(symbol, None)
        if self.on_loaded is not None:
            self.on_loaded(symbol, int(self._wall() * 1000))
        if self.demanded(symbol):
            until = math.inf
        else:  # a read's load: served FRESH_FOR seconds, then dropped
            until = self._idle[symbol] = self._clock() + FRESH_FOR
            self._arm()
        self._fresh[symbol] = (self.bars.generation(symbol), until)
        self._prune()

    async def _fill(
        self, symbol: str, intervals: Iterable[str] = HISTORY_SPANS, newest: int | None = None
    ) -> int | None:
        """Load ``intervals`` of ``symbol`` into the book; the generation of its bars they went into. With
        ``newest`` (day bars of a newly demanded symbol): only the newest bars, of :data:`DAY_LOOKBACK` days."""
        book = self.bars
        book.resession(symbol)
        book.bars_of(symbol)  # held even when no source has bars: a read of it does not load again at once
        if newest is None:  # its bars are read: all of them kept from now on
            book.widen(symbol)
        generation = book.generation(symbol)
        days = book.session_of(symbol)
        now_ms = int(self._wall() * 1000)
        end_ms = now_ms + 1
        minutes: list[Bar] | None = None
        for interval in intervals:
            start = history_start(interval, now_ms, days)
            if newest is not None:
                start = max(start, days(now_ms - DAY_LOOKBACK * _DAY_MS))
            if newest is None:  # a source that answers at once (the simulated market) still lets the loop run
                await asyncio.sleep(0)  # (the day loading yields by its pauses instead)
            got = await self._fetch(symbol, interval, start, end_ms)
            if interval == "1m":
                minutes = got
            elif got is None and minutes and interval in _DERIVED:
                got = aggregate((b for b in minutes if b.t >= start), interval, days)
            if got and newest is not None:
                got = sorted(got, key=_start_of)[-newest:]
            if got:
                book.backfill(symbol, interval, got, now_ms)
        return generation

    async def _fetch(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        for source in self.sources:
            got = await source(symbol, interval, start_ms, end_ms)
            if got is not None:
                return got
        return None

    def _failed(self, symbol: str, exc: Exception) -> None:
        now = self._clock()
        backoff = self._retry[symbol][1] if symbol in self._retry else Backoff(RETRY_BASE, RETRY_CAP)
        delay = RETRY_BASE + backoff.next_delay()
        self._retry[symbol] = (now + delay, backoff)
        self._log_failure(symbol, exc, delay)
        self._prune()
        if not self._closed:
            asyncio.get_running_loop().call_later(delay, self._retry_if_demanded, symbol)

    def _log_failure(self, symbol: str, exc: Exception, delay: float | None) -> None:
        """At most a line a minute (counting the others); ``delay``: when it is retried (None: at a bar read)."""
        now = self._clock()
        if now - self._logged_at >= LOG_EVERY:
            more = f" ({self._unlogged} more failed since the last line)" if self._unlogged else ""
            when = "at the next bar read" if delay is None else f"in {delay:.0f} s"
            log.warning("history of %s not loaded: %s; retrying %s%s", symbol, _one_line(exc), when, more)
            self._logged_at = now
            self._unlogged = 0
        else:
            self._unlogged += 1

    def _retry_if_demanded(self, symbol: str) -> None:
        if not self._closed and self.demanded(symbol):
            retry = self._retry.get(symbol)
            if retry is not None:  # due now: a timer may fire a hair before the clock says so
                self._retry[symbol] = (min(retry[0], self._clock()), retry[1])
            self.ensure(symbol)

    def _prune(self) -> None:
        """Forget what is known of symbols the book no longer holds (bounded by twice its symbols, or its
        bound: a look at every entry only once they doubled)."""
        most = 2 * max(self.bars.max_symbols, len(self.bars))
        if len(self._fresh) > most:
            gen = self.bars.generation
            self._fresh = {s: f for s, f in self._fresh.items() if f[0] is not None and f[0] == gen(s)}
        if len(self._days_done) > most:
            gen = self.bars.generation
            self._days_done = {s: g for s, g in self._days_done.items() if g is not None and g == gen(s)}
        if len(self._retry) > 2 * self.bars.max_symbols:
            now = self._clock()
            self._retry = {s: r for s, r in self._retry.items() if r[0] > now - RETRY_CAP}


def _one_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
