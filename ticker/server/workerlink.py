"""One worker's connection to the ``--workers`` feed process, on the feed process's side (asyncio streams).

It reads the worker's frames (:mod:`ticker.relay`) and hands each message to the feed process; it writes
what the feed process sends without waiting: a worker that stops reading is dropped once
:data:`MAX_BACKLOG` bytes wait for it, a catch-up of last values aside (it reconnects and catches up), so
no worker can hold the others back or grow the feed process's memory. Input that breaks the format is logged (at most once a minute) and the
link dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from feeds.ratelimit import ThrottledLog
from ticker import relay

log = logging.getLogger("ticker.relay")

MAX_BACKLOG = 16 << 20  # unsent bytes a worker may hold before its link is dropped
MAX_REQUESTS = 64  # requests of one worker being answered at once


class WorkerLink:
    """A worker's connection; :attr:`worker` is its index once it said ``join``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, throttle: ThrottledLog
    ) -> None:
        self.worker: int | None = None
        self.requests = 0  # being answered now
        self.closed = False
        self._exempt = 0  # unsent bytes of catch-ups, at most (not counted against MAX_BACKLOG)
        self._reader = reader
        self._writer = writer
        self._throttle = throttle

    def __repr__(self) -> str:
        return f"worker w{self.worker}" if self.worker is not None else "a worker (not joined yet)"

    def send(self, data: bytes, catch_up: bool = False) -> None:
        """Write ``data`` now (the transport buffers it); drop the link if the worker reads too little.
        ``catch_up``: last values again (a join's, a renumbering's), up to
        :data:`~ticker.numbering.MAX_SYMBOLS` entries (about 20 MB): they do not count against
        :data:`MAX_BACKLOG` while they wait to be read."""
        if self.closed:
            return
        self._writer.write(data)
        backlog = self._writer.transport.get_write_buffer_size()
        # The buffer drains first in, first out: of the catch-ups, at most what precedes ``data`` is left.
        self._exempt = min(self._exempt, max(0, backlog - len(data))) + (len(data) if catch_up else 0)
        if backlog - self._exempt > MAX_BACKLOG:
            log.warning("%r does not read its link (%d MiB unsent): dropped", self, backlog >> 20)
            self.close()

    def close(self) -> None:
        """Drop the connection at once, unsent bytes with it."""
        if not self.closed:
            self.closed = True
            self._writer.transport.abort()

    async def serve(self, on_message: Callable[[WorkerLink, relay.RelayMessage], None]) -> None:
        """Read messages into ``on_message`` until the worker goes, or sends what breaks the format (or
        ``on_message`` raises :class:`~ticker.relay.RelayError`); then the link is closed."""
        reader = self._reader
        try:
            while not self.closed:
                n = relay.frame_length(await reader.readexactly(relay.HEADER))
                on_message(self, relay.decode(await reader.readexactly(n)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except relay.RelayError as exc:
            self._throttle.warning("malformed", "malformed input from %r (%s): link dropped", self, exc)
        finally:
            self.close()
