"""Writing the normalized quote stream of any feed to a recording file (``ticker record`` runs it).

A :class:`Recorder`'s :meth:`~Recorder.record` is the ``emit`` of a feed's
:class:`~feeds.base.FeedContext`: every emitted quote is encoded on the event loop and written
by a background flush in a worker thread, so a slow disk never blocks the loop. Pending lines
are bounded; beyond the bound quotes are dropped and counted rather than letting memory grow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import IO

from feeds.recording.format import encode, header, open_write
from ticker.quote import Quote
from ticker.tasks import cancel_and_wait

log = logging.getLogger("ticker.feeds.recorder")

FLUSH_INTERVAL = 0.25  # seconds between background writes
MAX_PENDING = 200_000  # lines waiting for the disk before new quotes are dropped


class Recorder:
    """Writes quotes to ``path`` in the recording format: :meth:`open`, then :meth:`record` each quote
    (a feed context's ``emit``), then :meth:`close`."""

    def __init__(self, path: str | Path, feeds: list[str], symbols: list[str] | None = None) -> None:
        self.path = Path(path)
        self.feeds = feeds
        self.symbols = symbols
        self.written = 0
        self.dropped = 0
        self.symbols_seen: set[str] = set()
        self._pending: list[bytes] = []
        self._fh: IO[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the file and write the header (raises ``OSError`` if the path is not writable)."""
        self._fh = await asyncio.to_thread(open_write, self.path)
        await asyncio.to_thread(self._fh.write, header(self.feeds, self.symbols))
        self._task = asyncio.get_running_loop().create_task(self._flusher(), name="recorder-flush")

    def record(self, quote: Quote) -> None:
        """Queue one quote for writing (stamped with the time it arrived)."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending.append(encode(quote, int(time.time() * 1000)))
        self.symbols_seen.add(quote.symbol)

    async def flush(self) -> None:
        """Write everything queued so far."""
        async with self._write_lock:
            if not self._pending or self._fh is None:
                return
            chunk, self._pending = self._pending, []
            await asyncio.to_thread(self._fh.write, b"".join(chunk))
            self.written += len(chunk)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except OSError as exc:  # disk full, file gone: keep the process alive, stop recording
                log.error("recording to %s failed: %s; recording stopped", self.path, exc)
                self._pending.clear()
                self._fh = None
                return

    async def close(self) -> None:
        """Write what is queued and close the file."""
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()
        if self._fh is not None:
            await asyncio.to_thread(self._fh.close)
            self._fh = None
