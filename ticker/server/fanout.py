"""Fan-out: turns hub flushes into frames and writes the same bytes to every subscriber.

At most one frame per connection per flush. The flush schedule adapts to load (:data:`DUTY`): after a
flush that ran from ``start`` to ``end``, the next may run at ``min(start + flush_interval, end + DUTY *
(end - start))``, and an update due at or past that time is flushed on the next loop pass. So an idle
server writes an update in the loop pass after it came (with whatever else came in that pass); as flushes
grow longer with load, updates gather for longer between them and batches grow by themselves; and no
update waits longer than ``flush_interval`` (``--flush-ms``) after the previous flush began. A connection whose unsent bytes pass
``slow_bytes`` is *conflated*: it stops receiving frames and only remembers which symbols
changed; once it drains below half the bound it gets one frame with the latest value of
each. A connection that stays over the bound longer than ``slow_timeout`` is closed (1013).

A global budget (``max_buffered``, ``--max-buffered-bytes``) bounds the unsent bytes of all connections
together, quotes and replies. The fan-out keeps the connections last seen with unsent bytes and how
many (set on each write that leaves some, refreshed by the sweep), so a reader that keeps up costs
one comparison per write. When the total passes the budget the slowest readers (most unsent bytes,
then longest conflated) are conflated, and those still holding bytes at the next check are closed
(1013) until the total is under three quarters of the budget. What closed connections held, and their own
objects, is counted for the node (:meth:`Fanout.take_released`), which then trims the heap
(``ticker/server/heap.py``).

Bar subscriptions (:class:`~ticker.barhub.BarHub`, once :meth:`Fanout.serve_bars` is called) go
out in the same flush, after the quotes: one ``bar`` payload per changed (key, interval), framed
once per transport. A conflated connection skips them and remembers the oldest bar it missed per
subscription; on resume it gets those bars as they are now.

The fan-out alone holds that conflation state; transports ask it (:meth:`Fanout.is_conflating`)
and tell it (:meth:`Fanout.unsubscribed`, :meth:`Fanout.mark_slow`). Its clock and scheduler are
injected, so tests drive flushes and sweeps by hand.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol

from ticker import protocol
from ticker.barhub import BarBatch, BarHub, BarKey, BarSource
from ticker.delay import DelayLine
from ticker.errors import ProtocolError
from ticker.hub import Hub
from ticker.metrics.registry import Metrics
from ticker.quote import Quote
from ticker.server import heap
from ticker.views import is_delta_key

log = logging.getLogger("ticker")

SWEEP_INTERVAL = 0.05  # seconds between checks of conflated and backlogged connections
#: After a flush of ``d`` seconds the next waits at least ``DUTY * d`` (and at most until ``flush_interval``
#: after the last began): the loop keeps at least that share of its time for reading input between flushes.
DUTY = 1.0
REPLY_FACTOR = 4  # a connection's replies may hold this many times ``slow_bytes`` before it is closed


class Cancellable(Protocol):
    """A scheduled call that can be called off (an ``asyncio.Handle``)."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the fan-out needs of an event loop: run a callback soon, or after ``delay`` seconds."""

    def call_soon(self, callback: Callable[[], object], /) -> Cancellable: ...

    def call_later(self, delay: float, callback: Callable[[], object], /) -> Cancellable: ...


class Connection(ABC):
    """A subscriber as the fan-out sees it; each transport implements it."""

    transport: ClassVar[str]  # the transport's name, a metric label ("ws", "sse")

    @staticmethod
    @abstractmethod
    def framer(payload: bytes) -> bytes:
        """This transport's frame around one JSON payload."""

    @abstractmethod
    def write_frame(self, frame: bytes) -> int:
        """Hand ``frame`` to the socket; return the bytes still unsent afterwards, or -1 if the connection is gone."""

    @abstractmethod
    def buffered(self) -> int:
        """Bytes accepted but not yet written to the socket."""

    @abstractmethod
    def close_slow(self) -> None:
        """Close because the peer does not keep up (WebSocket code 1013)."""

    def heartbeat(self, now: float) -> None:  # noqa: B027 - a transport without keep-alives keeps this
        """Called every second or so with the monotonic time: send keep-alives, drop dead peers."""

    def receives_delayed(self) -> bool:
        """Whether the connection receives at least one symbol delayed (``ticker_connections_delayed``)."""
        return False

    @abstractmethod
    def send_message(self, kind: str, payload: bytes) -> None:
        """Send one control message (``status``, ``error``) of type ``kind`` outside a flush."""

    @abstractmethod
    def drop_symbols(self, symbols: list[str], refusal: ProtocolError) -> None:
        """Unsubscribe ``symbols`` (and their delayed keys) and tell the client why (``unknown_symbol``)."""

    @abstractmethod
    def close_going_away(self) -> None:
        """Close because the server shuts down (WebSocket code 1001)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""


class _Conflation:
    """A conflated connection: the symbols that changed meanwhile, the oldest bar start it missed per bar
    subscription, and when it passed the bound."""

    __slots__ = ("bars", "changed", "epoch", "since")

    def __init__(self, since: float, epoch: str) -> None:
        self.changed: dict[str, None] = {}
        self.bars: dict[BarKey, int] = {}
        self.since = since
        self.epoch = epoch  # the hub's epoch when it began: another at the resume makes it a snapshot


class Fanout:
    """Schedules flushes of the hub, writes their batches to the connections and conflates slow ones."""

    def __init__(
        self,
        hub: Hub[Connection],
        metrics: Metrics,
        flush_interval: float = 0.02,
        slow_bytes: int = 256 << 10,
        slow_timeout: float = 10.0,
        max_buffered: int = 256 << 20,
        clock: Callable[[], float] = time.monotonic,
        scheduler: Scheduler | None = None,
        delay: DelayLine | None = None,
        wall: Callable[[], float] = time.time,
        duty: float | None = DUTY,
    ) -> None:
        """``scheduler`` defaults to the running asyncio loop at the time of each call; ``delay`` is the
        delayed tier's line (None: no delayed tier, ``--auth none``), ``wall`` the epoch clock it needs;
        ``duty`` None: flushes at most once per ``flush_interval`` however idle (the schedule before 2026-12)."""
        self.hub = hub
        self.metrics = metrics
        self.flush_interval = flush_interval
        self.duty = duty
        self.slow_bytes = slow_bytes
        self.slow_timeout = slow_timeout
        self.max_buffered = max_buffered
        #: Connections last seen with unsent bytes, and how many; their sum is ``_total``.
        self._backlog: dict[Connection, int] = {}
        self._total = 0
        self._released = 0  # bytes let go by connections gone since take_released() (unsent, their objects)
        self.closed = 0  # connections removed since the start (the node collects after a burst of them)
        self._dropped: dict[Connection, int] = {}  # closed as slow, not yet gone: what they held
        self._shedding = False  # over the budget, and not yet back under three quarters of it
        self._budget_check: Cancellable | None = None
        self._clock = clock
        self._scheduler = scheduler
        self._conflated: dict[Connection, _Conflation] = {}
        self._handle: Cancellable | None = None
        self._last_flush = 0.0
        #: When the scheduled flush runs (0.0: on the next loop pass; inf: none is scheduled), and the
        #: earliest a flush may run (see the module docstring). A due update needs a flush by then.
        self._flush_at = math.inf
        self._earliest = flush_interval
        self._sweeper: Cancellable | None = None
        self._closed = False
        self.delay = delay
        self._wall = wall
        self._releaser: Cancellable | None = None
        self._release_at = math.inf  # when _releaser fires (monotonic; inf: none scheduled)
        self.bar_hub: BarHub[Connection] | None = None
        self.bar_book: BarSource | None = None
        self._bar_symbols: dict[str, dict[str, None]] = {}  # symbols with live real-time bar subscribers

    def serve_bars(self, bar_hub: BarHub[Connection], book: BarSource) -> None:
        """Send the bar subscriptions of ``bar_hub`` the changes of ``book`` in each flush."""
        self.bar_hub = bar_hub
        self.bar_book = book
        self._bar_symbols = bar_hub.realtime

    def _loop(self) -> Scheduler:
        return self._scheduler if self._scheduler is not None else asyncio.get_running_loop()

    # -- input -------------------------------------------------------------------------------
    def publish(self, quote: Quote) -> None:
        """Take one update into the hub and make sure a flush is scheduled."""
        self.publish_many([quote])

    def publish_many(self, quotes: list[Quote], prepare: Callable[[Quote], object] | None = None) -> None:
        """Take ``quotes`` into the hub, in order, with one clock reading, and make sure a flush is scheduled (or
        a throttled view's wake); ``prepare(quote)`` first, for each in turn (what the node does to a quote
        before the hub takes it). The delayed tier's line records each as the hub took it."""
        now = self._clock()
        hub = self.hub
        take = hub.publish
        bar_symbols = self._bar_symbols
        line = self.delay
        recording = line.recording if line is not None else None
        due = False
        try:
            for quote in quotes:
                if prepare is not None:
                    prepare(quote)
                if take(quote, now) or quote.symbol in bar_symbols:
                    due = True
                if recording and quote.symbol in recording:
                    self._record_delayed(quote, now)
        finally:  # what the hub took before anything raised is flushed all the same
            if not self._closed:
                if due:
                    if self._flush_at > self._earliest:  # none scheduled, or only a later wake
                        self._schedule_flush(now)
                elif hub.wake_at < self._flush_at:  # a throttled view waits for its time
                    self._schedule_wake(now)

    def _record_delayed(self, quote: Quote, now: float) -> None:
        """Keep ``quote``, just taken by the hub, on the delayed tier's line (its symbol is recorded)."""
        line = self.delay
        assert line is not None
        st = self.hub.state(quote.symbol)
        assert st is not None and st.encoded is not None  # the hub has just taken it
        if line.record(quote, st.encoded, st.seq, now, self._wall()) < self._release_at:
            self._schedule_release(now)  # due before the release timer (or none is set)

    def _schedule_flush(self, now: float) -> None:
        """Flush as soon as the interval allows (replacing a wake scheduled for later)."""
        if self._handle is not None:
            self._handle.cancel()
        at = self._earliest
        if at > now:
            self._handle = self._loop().call_later(at - now, self.flush)
            self._flush_at = at
        else:  # quiet period: flush on the next loop pass, coalescing what arrives meanwhile
            self._handle = self._loop().call_soon(self.flush)
            self._flush_at = 0.0

    def _schedule_wake(self, now: float) -> None:
        """Flush when the earliest throttled view may send (not before the interval allows), unless a flush
        is scheduled by then."""
        at = max(self.hub.wake_at, self._earliest)
        if at >= self._flush_at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop().call_later(max(0.0, at - now), self.flush)
        self._flush_at = at

    def bars_changed(self) -> None:
        """A provider's bar was applied to the book: make sure a flush is scheduled if anyone gets bars."""
        hub = self.bar_hub
        if hub is None:
            return
        if not hub.active:  # nobody receives bars: what changed is of no use, and must not pile up
            self._drop_bar_changes()
        elif self._flush_at > self._earliest and not self._closed:
            self._schedule_flush(self._clock())

    def _drop_bar_changes(self) -> None:
        if self.bar_book is not None:
            self.bar_book.take_changes()

    def release_bars(self) -> None:
        """The delayed tier's bar timer (about once a second): the next flush sends the bars that passed
        the delay horizon."""
        hub = self.bar_hub
        if hub is not None and hub.has_delayed:
            hub.delayed_due = True
            if self._flush_at > self._earliest and not self._closed:
                self._schedule_flush(self._clock())

    # -- the delayed tier --------------------------------------------------------------------
    def _schedule_release(self, now: float) -> None:
        """(Re)set the release timer to the line's next due time, replacing one set for later."""
        if self._releaser is not None:
            self._releaser.cancel()
            self._releaser = None
        self._release_at = math.inf
        line = self.delay
        at = None if line is None else line.next_due()
        if at is not None and not self._closed:
            self._releaser = self._loop().call_later(max(0.0, at - now), self._release)
            self._release_at = at

    def _release(self) -> None:
        """Hand the entries the delay line releases now to the hub under their delayed keys."""
        self._releaser = None
        self._release_at = math.inf
        line = self.delay
        if line is None:
            return
        now = self._clock()
        hub = self.hub
        due = False
        for symbol, encoded, seq in line.due(now):
            due = hub.publish_delayed(symbol, encoded, seq, now) or due
        if self._closed:
            pass
        elif due and self._flush_at > self._earliest:
            self._schedule_flush(now)
        elif hub.wake_at < self._flush_at:
            self._schedule_wake(now)
        self._schedule_release(now)

    # -- connections -------------------------------------------------------------------------
    def remove(self, conn: Connection) -> None:
        """Forget a closed connection."""
        self._conflated.pop(conn, None)
        held = self._backlog.pop(conn, 0)
        self._total -= held
        self._released += held + self._dropped.pop(conn, 0) + heap.CONNECTION_BYTES
        self.closed += 1

    def is_conflating(self, conn: Connection) -> bool:
        """Whether ``conn`` is over the unsent-bytes bound and only collects changed symbols."""
        return conn in self._conflated

    def unsubscribed(self, conn: Connection, symbols: Iterable[str]) -> None:
        """``conn`` dropped ``symbols``: a conflated connection no longer owes them."""
        c = self._conflated.get(conn)
        if c is not None:
            for s in symbols:
                c.changed.pop(s, None)

    # -- flushing ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every pending update: one frame per batch, the same bytes to each of its members."""
        self._handle = None
        self._flush_at = math.inf
        start = self._last_flush = self._clock()
        self._earliest = start + self.flush_interval
        bar_hub = self.bar_hub
        bars = None
        if bar_hub is not None and bar_hub.active:
            assert self.bar_book is not None
            bars = bar_hub.flush(self.bar_book, int(self._wall() * 1000))
        else:  # the changes since the last flush are nobody's: forget them (a later subscriber starts afresh)
            self._drop_bar_changes()
        hub = self.hub
        if hub.wake_at <= start:
            hub.flush_timers(start)
        if not hub.pending:
            if bars:
                self._write_bars(bars, start)
            if self.duty is not None:
                self._earliest = min(self._earliest, self._clock() * (1 + self.duty) - start * self.duty)
            if hub.wake_at < math.inf and not self._closed:
                self._schedule_wake(start)
            return
        fl = hub.flush(start)
        frames_sent = updates_sent = bytes_sent = conflated = 0
        slow_bytes = self.slow_bytes
        slow = self._conflated
        backlog = self._backlog
        # Once per frame where each connection has a symbol set of its own (its own batch): the batch's frame is
        # built for the first connection's transport and kept in locals (a dict only for a second transport), and
        # the counts are kept per batch.
        for payload, members, states in fl.batches:
            kind: str | None = None  # the transport ``frame`` is built for
            frame = b""
            frame_of: dict[str, bytes] | None = None  # other transports' frames (a batch of mixed transports)
            written = 0  # frames written in this batch
            for conn in members:
                if slow and conn in slow:  # no lookup at all while nobody is conflated
                    changed = slow[conn].changed
                    for st in states:
                        if st.symbol in changed:
                            conflated += 1
                        else:
                            changed[st.symbol] = None
                    continue
                if conn.transport is not kind:
                    if kind is None:
                        kind, frame = conn.transport, conn.framer(payload)
                    else:
                        bytes_sent += written * len(frame)
                        frames_sent += written
                        updates_sent += written * len(states)
                        written = 0
                        if frame_of is None:
                            frame_of = {}
                        frame_of[kind] = frame
                        kind = conn.transport
                        frame = frame_of.get(kind) or conn.framer(payload)
                unsent = conn.write_frame(frame)
                if unsent:
                    if unsent < 0:
                        continue
                    self._total += unsent - backlog.get(conn, 0)
                    backlog[conn] = unsent
                    if unsent > slow_bytes:
                        self._start_conflating(conn, start)
                written += 1
            if written:
                bytes_sent += written * len(frame)
                frames_sent += written
                updates_sent += written * len(states)
        if bars:
            self._write_bars(bars, start)
        if backlog:
            self._backlogged(start)
        end = self._clock()
        m = self.metrics
        observe = m.fanout_latency.observe
        for t in fl.pending_since:
            observe(end - t)
        m.flush_duration.observe(end - start)
        if frames_sent:
            m.frames_sent.inc(frames_sent)
            m.updates_sent.inc(updates_sent)
            m.bytes_sent.inc(bytes_sent)
        if conflated:
            m.updates_conflated.inc(conflated)
        if self.duty is not None:
            self._earliest = min(self._earliest, end + self.duty * (end - start))
        if hub.wake_at < math.inf and not self._closed:
            self._schedule_wake(end)

    def _write_bars(self, batches: list[BarBatch[Connection]], now: float) -> None:
        """Write each ``bar`` payload to its subscribers, framed once per transport; conflated ones skip it."""
        frames_sent = bytes_sent = 0
        slow = self._conflated
        for payload, members, bk, t in batches:
            frame_of: dict[str, bytes] = {}
            for conn in members:
                if slow and conn in slow:
                    missed = slow[conn].bars
                    if missed.get(bk, t) >= t:
                        missed[bk] = t
                    continue
                frame = frame_of.get(conn.transport)
                if frame is None:
                    frame = frame_of[conn.transport] = conn.framer(payload)
                unsent = conn.write_frame(frame)
                if unsent < 0:
                    continue
                frames_sent += 1
                bytes_sent += len(frame)
                if unsent:
                    self._note(conn, unsent)
                    if unsent > self.slow_bytes:
                        self._start_conflating(conn, now)
        if frames_sent:
            self.metrics.frames_sent.inc(frames_sent)
            self.metrics.bytes_sent.inc(bytes_sent)

    def resync(self, connections: Iterable[Connection], empty: bool = False) -> int:
        """Send each of ``connections`` a ``snapshot`` of its symbols' last values (after a broker resume;
        ``empty``: an empty one too where none has a value, for a new epoch must reach every connection).

        One payload per distinct symbol set and one frame per transport, as in :meth:`flush`; a
        conflated connection instead gets every symbol marked, so it resumes with the latest values.
        Returns the number of connections written to.
        """
        hub = self.hub
        payloads: dict[frozenset[str], bytes | None] = {}
        frames: dict[tuple[frozenset[str], str], bytes] = {}
        sent = 0
        for conn in list(connections):
            key = hub.symbols_of(conn)
            if not key:
                continue
            c = self._conflated.get(conn)
            if c is not None:
                c.changed.update(dict.fromkeys(key))
                continue
            if key not in payloads:
                entries = hub.last_encoded(sorted(key))
                payloads[key] = protocol.encode_snapshot(entries, hub.epoch) if entries or empty else None
            payload = payloads[key]
            if payload is None:
                continue
            frame = frames.get((key, conn.transport))
            if frame is None:
                frame = frames[key, conn.transport] = conn.framer(payload)
            if conn.write_frame(frame) >= 0:
                sent += 1
        if sent:
            log.info("resynced %d connections", sent)
        return sent

    # -- slow connections --------------------------------------------------------------------
    def _note(self, conn: Connection, unsent: int) -> None:
        """``conn`` was left with ``unsent`` (> 0) bytes after a write."""
        self._total += unsent - self._backlog.get(conn, 0)
        self._backlog[conn] = unsent

    def _backlogged(self, now: float) -> None:
        """After writes that left bytes unsent: keep the sweep running, and check the budget if passed."""
        if self._sweeper is None and not self._closed:
            self._sweeper = self._loop().call_later(SWEEP_INTERVAL, self._sweep)
        if self._shedding or self._total > self.max_buffered:
            self._check_budget(now)

    def replied(self, conn: Connection, unsent: int) -> None:
        """``conn`` was written outside a flush (a reply, a status) and has ``unsent`` bytes left (-1: gone).

        Past ``slow_bytes`` it is conflated, past :data:`REPLY_FACTOR` times that closed (1013), so a
        client that sends but never reads cannot make replies queue; over the global budget the slowest
        readers are shed at the end of this loop pass.
        """
        if unsent <= 0:
            return
        self._note(conn, unsent)
        if unsent > REPLY_FACTOR * self.slow_bytes:
            self.drop_slow(conn)
            return
        if unsent > self.slow_bytes:
            self.mark_slow(conn)
        elif self._sweeper is None and not self._closed:
            self._sweeper = self._loop().call_later(SWEEP_INTERVAL, self._sweep)
        if self._total > self.max_buffered and self._budget_check is None and not self._closed:
            self._budget_check = self._loop().call_soon(self._deferred_check)

    def _deferred_check(self) -> None:
        self._budget_check = None
        self._check_budget(self._clock())

    def buffered_total(self) -> int:
        """Unsent bytes of every connection, as last seen (``ticker_buffered_bytes``)."""
        return self._total

    def take_released(self) -> int:
        """About the bytes the connections gone since the last call let go: their unsent bytes and
        :data:`~ticker.server.heap.CONNECTION_BYTES` each (when to trim the heap)."""
        n, self._released = self._released, 0
        return n

    def _check_budget(self, now: float) -> None:
        """Over ``max_buffered``: conflate the slowest readers, close (1013) those conflated before ``now``,
        most unsent bytes first, until the total would be under three quarters of the budget."""
        total, budget = self._total, self.max_buffered
        low = budget - budget // 4
        if total <= low or (total <= budget and not self._shedding):
            if self._shedding:
                self._shedding = False
                log.info("unsent bytes back under the budget: %d of %d", total, budget)
            return
        if not self._shedding:
            self._shedding = True
            log.warning(
                "unsent bytes %d over --max-buffered-bytes %d: closing the slowest readers (%d with a backlog)",
                total,
                budget,
                len(self._backlog),
            )
        conflated = self._conflated

        def slowest(item: tuple[Connection, int]) -> tuple[int, float]:
            c = conflated.get(item[0])
            return (-item[1], c.since if c is not None else now)

        excess = total - low
        for conn, unsent in sorted(self._backlog.items(), key=slowest):
            if excess <= 0:
                break
            c = conflated.get(conn)
            if c is None:
                self._start_conflating(conn, now)
            elif c.since < now:  # conflated at an earlier check and still holding bytes
                self.metrics.budget_disconnects.inc()
                self.drop_slow(conn)
            excess -= unsent

    def mark_slow(self, conn: Connection) -> None:
        """``conn`` has passed the unsent-bytes bound outside a flush (control messages): conflate it."""
        if conn not in self._conflated:
            self._start_conflating(conn, self._clock())

    def drop_slow(self, conn: Connection) -> None:
        """Close ``conn`` as a slow consumer (1013) and count it; its unsent bytes are no longer counted."""
        self._conflated.pop(conn, None)
        held = self._backlog.pop(conn, 0)
        self._total -= held
        if held:  # freed once the transport lets go of the socket (remove)
            self._dropped[conn] = held
        self.metrics.slow_disconnects.inc()
        conn.close_slow()

    def _start_conflating(self, conn: Connection, now: float) -> None:
        self._conflated[conn] = _Conflation(now, self.hub.epoch)
        if self._sweeper is None and not self._closed:
            self._sweeper = self._loop().call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        """Refresh the backlog; check conflated connections: resume those drained below half the bound
        (while over the budget: drained entirely); close (1013) those that have not drained within
        ``slow_timeout`` of passing it; then check the budget."""
        self._sweeper = None
        now = self._clock()
        backlog = self._backlog
        total = 0
        for conn in list(backlog):
            unsent = conn.buffered()
            if unsent > 0:
                backlog[conn] = unsent
                total += unsent
            else:
                del backlog[conn]
        self._total = total
        resume_at = 0 if self._shedding else self.slow_bytes // 2
        for conn, c in list(self._conflated.items()):
            if conn.buffered() <= resume_at:
                self._resume(conn, c)
            elif now - c.since > self.slow_timeout:
                self.drop_slow(conn)
        self._check_budget(now)
        if (self._conflated or backlog) and not self._closed:
            self._sweeper = self._loop().call_later(SWEEP_INTERVAL, self._sweep)

    def _resume(self, conn: Connection, c: _Conflation) -> None:
        del self._conflated[conn]
        wanted = self.hub.symbols_of(conn)
        entries = self.hub.last_encoded(s for s in c.changed if s in wanted)
        epoch_changed = c.epoch != self.hub.epoch  # numbered by another source since: it starts again
        if entries or epoch_changed:  # a delta connection's catch-up is full entries: a snapshot, not merged
            if epoch_changed or any(map(is_delta_key, wanted)):
                payload = protocol.encode_snapshot(entries, self.hub.epoch)
            else:
                payload = protocol.encode_quotes(protocol.QUOTES, entries)
            frame = conn.framer(payload)
            if conn.write_frame(frame) >= 0:
                self.metrics.frames_sent.inc()
                self.metrics.updates_sent.inc(len(entries))
                self.metrics.bytes_sent.inc(len(frame))
        bar_hub = self.bar_hub
        if c.bars and bar_hub is not None and self.bar_book is not None:
            for payload in bar_hub.catch_up(self.bar_book, conn, c.bars, int(self._wall() * 1000)):
                frame = conn.framer(payload)
                if conn.write_frame(frame) < 0:
                    break
                self.metrics.frames_sent.inc()
                self.metrics.bytes_sent.inc(len(frame))

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop scheduling flushes and sweeps (server shutdown)."""
        self._closed = True
        for h in (self._handle, self._sweeper, self._releaser, self._budget_check):
            if h is not None:
                h.cancel()
        self._handle = self._sweeper = self._releaser = self._budget_check = None
        self._flush_at = math.inf

    def stats(self) -> dict[str, Any]:
        """Numbers for logs and tests."""
        return {"slow": len(self._conflated)}
