"""Fan-out: turns hub flushes into frames and writes the same bytes to every subscriber.

At most one frame per connection per flush interval. A connection whose unsent bytes pass
``slow_bytes`` is *conflated*: it stops receiving frames and only remembers which symbols
changed; once it drains below half the bound it gets one frame with the latest value of
each. A connection that stays over the bound longer than ``slow_timeout`` is closed (1013).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from ticker import protocol
from ticker.hub import Hub
from ticker.metrics.registry import Metrics
from ticker.quote import Quote


class Connection:
    """A subscriber as the fan-out sees it; each transport subclasses it."""

    transport: ClassVar[str] = "?"

    @staticmethod
    def framer(payload: bytes) -> bytes:
        """This transport's frame around one JSON payload."""
        raise NotImplementedError

    def init_fanout_state(self) -> None:
        """Set the per-connection conflation state; transports call it when the connection opens."""
        self.conflating = False
        self.pending: dict[str, None] = {}
        self.over_since: float | None = None

    def write_frame(self, frame: bytes) -> int:
        """Hand ``frame`` to the socket; return the bytes still unsent afterwards, or -1 if the connection is gone."""
        raise NotImplementedError

    def buffered(self) -> int:
        """Bytes accepted but not yet written to the socket."""
        raise NotImplementedError

    def close_slow(self) -> None:
        """Close because the peer does not keep up (WebSocket code 1013)."""
        raise NotImplementedError

    def heartbeat(self, now: float) -> None:
        """Called every second or so with the monotonic time: send keep-alives, drop dead peers."""

    def close_going_away(self) -> None:
        """Close because the server shuts down (WebSocket code 1001)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        raise NotImplementedError


class Fanout:
    """Schedules flushes of the hub and writes their batches to the connections."""

    def __init__(
        self,
        hub: Hub[Connection],
        metrics: Metrics,
        flush_interval: float = 0.02,
        slow_bytes: int = 1 << 20,
        slow_timeout: float = 10.0,
    ) -> None:
        self.hub = hub
        self.metrics = metrics
        self.flush_interval = flush_interval
        self.slow_bytes = slow_bytes
        self.slow_timeout = slow_timeout
        self._slow: set[Connection] = set()
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_flush = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    # -- input -------------------------------------------------------------------------------
    def publish(self, quote: Quote) -> None:
        """Take one update into the hub and make sure a flush is scheduled."""
        now = time.monotonic()
        if self.hub.publish(quote, now) and self._handle is None and not self._closed:
            loop = asyncio.get_running_loop()
            delay = self._last_flush + self.flush_interval - now
            if delay > 0:
                self._handle = loop.call_later(delay, self.flush)
            else:  # quiet period: flush on the next loop pass, coalescing what arrives meanwhile
                self._handle = loop.call_soon(self.flush)

    def publish_many(self, quotes: list[Quote]) -> None:
        """Take a batch of updates (a broker message) into the hub."""
        for q in quotes:
            self.publish(q)

    def remove(self, conn: Connection) -> None:
        """Forget a closed connection."""
        self._slow.discard(conn)

    # -- flushing ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every pending update: one frame per batch, the same bytes to each of its members."""
        self._handle = None
        start = self._last_flush = time.monotonic()
        if not self.hub.pending:
            return
        fl = self.hub.flush()
        frames_sent = updates_sent = bytes_sent = conflated = 0
        slow_bytes = self.slow_bytes
        for payload, members, states in fl.batches:
            n = len(states)
            frame_of: dict[str, bytes] = {}  # this batch's frame per transport, built once
            for conn in members:
                if conn.conflating:
                    pending = conn.pending
                    for st in states:
                        if st.symbol in pending:
                            conflated += 1
                        else:
                            pending[st.symbol] = None
                    continue
                frame = frame_of.get(conn.transport)
                if frame is None:
                    frame = frame_of[conn.transport] = conn.framer(payload)
                unsent = conn.write_frame(frame)
                if unsent < 0:
                    continue
                frames_sent += 1
                updates_sent += n
                bytes_sent += len(frame)
                if unsent > slow_bytes:
                    self._start_conflating(conn, start)
        end = time.monotonic()
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

    def mark_slow(self, conn: Connection) -> None:
        """``conn`` has passed the unsent-bytes bound outside a flush (control messages): conflate it."""
        if not conn.conflating:
            self._start_conflating(conn, time.monotonic())

    def drop_slow(self, conn: Connection) -> None:
        """Close ``conn`` as a slow consumer (1013) and count it."""
        self._slow.discard(conn)
        self.metrics.slow_disconnects.inc()
        conn.close_slow()

    def _start_conflating(self, conn: Connection, now: float) -> None:
        conn.conflating = True
        conn.over_since = now
        self._slow.add(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(0.05, self._sweep)

    def _sweep(self) -> None:
        """Check conflated connections: resume those drained below half the bound; close (1013) those
        that have not drained within ``slow_timeout`` of passing it."""
        self._sweeper = None
        now = time.monotonic()
        for conn in list(self._slow):
            if conn.buffered() <= self.slow_bytes // 2:
                self._resume(conn)
            elif conn.over_since is not None and now - conn.over_since > self.slow_timeout:
                self.drop_slow(conn)
        if self._slow and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(0.05, self._sweep)

    def _resume(self, conn: Connection) -> None:
        self._slow.discard(conn)
        conn.conflating = False
        conn.over_since = None
        wanted = self.hub.symbols_of(conn)
        entries = self.hub.last_encoded(s for s in conn.pending if s in wanted)
        conn.pending = {}
        if entries:
            frame = conn.framer(protocol.encode_quotes(protocol.QUOTES, entries))
            if conn.write_frame(frame) >= 0:
                self.metrics.frames_sent.inc()
                self.metrics.updates_sent.inc(len(entries))
                self.metrics.bytes_sent.inc(len(frame))

    def close(self) -> None:
        """Stop scheduling flushes (server shutdown)."""
        self._closed = True
        for h in (self._handle, self._sweeper):
            if h is not None:
                h.cancel()
        self._handle = self._sweeper = None

    def stats(self) -> dict[str, Any]:
        """Numbers for logs and tests."""
        return {"slow": len(self._slow)}
