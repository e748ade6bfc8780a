"""``replay``: plays a recording (see :mod:`feeds.recording.format`) back as a live feed.

Quotes are spaced as they were received when recorded, divided by ``speed`` (1 = real
time, 10 = ten times faster, 0 = as fast as possible). Every recorded symbol is replayed
whatever clients demand, so snapshots are ready for all of them at once. Timestamps are
rewritten to the time of replay unless ``keep_timestamps`` is set. With ``loop`` the file
starts over at its end, after the recording's mean gap between quotes; without it the feed
reports itself down ("the recording ended") once the last quote is out. Its directory is the
recording's symbols (exchange ``REPLAY``, type ``other``: recordings carry no reference data, so
each symbol is named after itself).
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from pathlib import Path

from feeds.base import Feed, FeedContext
from feeds.errors import RecordingError
from feeds.options import FeedOptions
from feeds.ratelimit import ThrottledLog
from feeds.recording.format import Reader, Summary, scan
from ticker.directory import SymbolInfo

log = logging.getLogger("ticker.feeds.replay")

BATCH = 1000  # quotes read per trip to the reading thread
ENDED = "the recording ended"  # the health reason once a replay without loop is over


def sample_recording() -> Path:
    """The sample recording shipped in the package (about 30 symbols of the simulated market)."""
    return Path(str(resources.files("feeds.recording") / "sample.jsonl.gz"))


class ReplayFeed(Feed):
    """Replays a recording; :meth:`start` raises :class:`~feeds.recording.format.RecordingError` for a bad file."""

    steady = True

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        speed: float = 1.0,
        loop: bool = False,
        keep_timestamps: bool = False,
        name: str = "replay",
    ) -> None:
        super().__init__(name)
        if speed < 0 or speed != speed:
            raise ValueError("--replay-speed must be >= 0 (0 = as fast as possible)")
        self.path = Path(path) if path else sample_recording()
        self.speed = speed
        self.loop = loop
        self.keep_timestamps = keep_timestamps
        self.summary: Summary | None = None
        self.emitted = 0
        self.laps = 0
        self.finished = asyncio.Event()
        self._ctx: FeedContext | None = None
        self._log = ThrottledLog(log)

    def known_symbols(self) -> list[str]:
        return list(self.summary.symbols) if self.summary else []

    def carried_symbols(self) -> list[str]:
        return self.known_symbols()  # every recorded symbol is played, whatever the demand

    async def load_reference(self) -> list[SymbolInfo] | None:
        """The recorded symbols (None before :meth:`start` has scanned the file: cannot tell yet)."""
        if self.summary is None:
            return None
        return [SymbolInfo(sym, sym, "REPLAY", "other", "USD") for sym in self.summary.symbols]

    async def start(self, ctx: FeedContext) -> None:
        self._ctx = ctx
        self.summary = await asyncio.to_thread(scan, self.path)
        if self.summary.count == 0:
            raise RecordingError(f"recording {str(self.path)!r} holds no quotes")
        self._mark_up()
        self._run_in_background(self._run())

    async def stop(self) -> None:
        await self._stop_background()

    async def _run(self) -> None:
        try:
            await self._play()
            self._mark_down(ENDED)  # only a replay without loop returns
        except RecordingError as exc:  # the file changed or vanished since start
            self._mark_down(str(exc))
            log.error("%s: %s", self.name, exc)
        finally:
            self.finished.set()

    async def _play(self) -> None:
        assert self._ctx is not None and self.summary is not None
        loop = asyncio.get_running_loop()
        emit = self._ctx.emit
        fast = self.speed == 0 or self.speed == float("inf")
        gap_s = self.summary.mean_gap_ms / 1000.0
        lap_start = loop.time()
        while True:
            reader = await asyncio.to_thread(Reader, self.path)
            try:
                base_r: int | None = None
                last_due = lap_start
                while True:
                    batch, bad = await asyncio.to_thread(reader.read_batch, BATCH)
                    for line_no, reason in bad:
                        self._ctx.error("malformed")
                        self._log.warning(
                            "malformed", "%s: %s line %d: %s", self.name, self.path, line_no, reason
                        )
                    if not batch:
                        break
                    for r, quote in batch:
                        if base_r is None:  # anchor the lap at its first quote (reading takes a while)
                            base_r = r
                            lap_start = last_due = max(lap_start, loop.time())
                        if not fast:
                            # monotone schedule: a quote received "earlier" than its predecessor goes at once
                            due = max(last_due, lap_start + (r - base_r) / 1000.0 / self.speed)
                            last_due = due
                            if (wait := due - loop.time()) > 0.0005:
                                await asyncio.sleep(wait)
                        if not self.keep_timestamps:  # the reader's fresh object, not emitted yet
                            quote.ts_ms = int(time.time() * 1000)
                        emit(quote)
                        self.emitted += 1
                    self._mark_data()
                    if fast:
                        await asyncio.sleep(0)  # let the server breathe between batches
            finally:
                reader.close()
            self.laps += 1
            if not self.loop:
                log.info("%s: finished %s after %d quotes", self.name, self.path, self.emitted)
                return
            lap_start = (last_due if not fast else loop.time()) + (0.0 if fast else gap_s / self.speed)


def create(options: FeedOptions) -> ReplayFeed:
    """``--feed replay``; a missing or foreign file is an error now, at startup, not later."""
    feed = ReplayFeed(
        options.replay_file,
        speed=options.replay_speed,
        loop=options.replay_loop,
        keep_timestamps=options.replay_keep_time,
    )
    Reader(feed.path).close()
    return feed
