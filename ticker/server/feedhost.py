"""The ``--workers`` feed process: the configured feeds, run once for every worker of the host.

:class:`FeedHost` runs the feeds (one :class:`~feeds.runner.FeedRunner`), fills in the day statistics the
feeds leave out (seeded from the day bars the workers ask for) and numbers every quote at the source
(:class:`~ticker.numbering.SourceNumbering`) before anything else sees it, then relays to the workers over the
supervisor's Unix socket (:mod:`ticker.relay`, one :class:`~ticker.server.workerlink.WorkerLink` per worker):

- the quotes of a loop pass go out at the end of that pass, each encoded once, the same bytes to every worker;
- a joining worker gets ``hello`` (this process's epoch), every last value and a full report; one that served
  an earlier feed process's numbers has every later number (and the last values again) put above them;
- it follows the union of the workers' demand; a departed worker's demand is kept :data:`DEMAND_LINGER`
  seconds (a reconnect, a restart), then dropped;
- every second, each feed's health and the states of the symbols it carries (``st``);
- the workers' directory and history requests are answered by the feeds (identical requests in flight
  share one call, a history ask of the same start within the same minute too; a directory is reused for
  :data:`REFERENCE_FRESH` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from feeds.base import Feed, FeedContext
from feeds.errors import FeedError, RateLimited
from feeds.ratelimit import ThrottledLog
from feeds.registry import create_feeds
from feeds.runner import FeedRunner
from feeds.states import owner
from ticker import relay
from ticker.bars import Bar
from ticker.daystats import listed_day_stats
from ticker.directory import SymbolInfo
from ticker.numbering import SourceNumbering
from ticker.quote import Quote, encode_entry
from ticker.server.config import Config
from ticker.server.logs import set_worker
from ticker.server.supervision import heartbeat
from ticker.server.workerlink import MAX_REQUESTS, WorkerLink
from ticker.status import SymbolStatus
from ticker.tasks import cancel_and_wait

log = logging.getLogger("ticker.relay")

DEMAND_LINGER = 5.0  # seconds a departed worker's demand is kept
REPORT_EVERY = 1.0  # seconds between two reports of the feeds' health and states
REFERENCE_FRESH = 60.0  # seconds a feed's directory answers further requests (every worker asks at start)


class FeedHost:
    """The feeds of ``config`` (or ``feeds``), relayed to the workers that connect to :meth:`start`'s socket."""

    def __init__(
        self,
        config: Config,
        feeds: list[Feed] | None = None,
        epoch: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.feeds = feeds if feeds is not None else create_feeds(config.feeds, config.feed_options)
        if config.unknown_symbols == "allow":  # a lab: the simulated market makes up any demanded symbol
            for feed in self.feeds:
                if hasattr(feed, "invent"):
                    feed.invent = True
        self.names = [f.name for f in self.feeds]
        #: Names this feed process (a snapshot's ``e``): a restarted one has another.
        self.epoch = epoch or secrets.token_hex(6)
        self.runner = FeedRunner(self.feeds, self._context, load_reference=False)
        self.day_stats = listed_day_stats(lambda: self.runner.directory)
        self.numbers = SourceNumbering()
        self.demand: frozenset[str] = frozenset()
        self.links: dict[WorkerLink, None] = {}  # the joined ones, in joining order
        self._demands: dict[int, frozenset[str]] = {}  # worker index → its demand
        self._holders: dict[int, WorkerLink] = {}  # worker index → the link its demand came on
        self._lingering: dict[int, asyncio.TimerHandle] = {}
        self._entries: dict[int, list[bytes]] = {}  # feed index → this pass's encoded quotes
        self._frames: list[bytes] = []  # this pass's other frames (bars, events)
        self._flush_due = False
        self._report_due = False
        self._known: list[list[str] | None] = [None] * len(self.feeds)  # last broadcast
        self._inflight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self._references: dict[int, tuple[float, list[SymbolInfo] | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reporter: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._throttle = ThrottledLog(log)
        self._wall = wall

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, listener: socket.socket) -> None:
        """Start the feeds, then take the workers' connections on ``listener`` (a listening Unix socket)."""
        await self.start_feeds()
        await asyncio.start_unix_server(self._accept, sock=listener)
        log.info("feed process: feeds %s, epoch %s", ",".join(self.names), self.epoch)

    async def start_feeds(self) -> None:
        """Start the feeds and the reports (what :meth:`start` does before it listens)."""
        self._loop = loop = asyncio.get_running_loop()
        await self.runner.start(lambda: self.demand)
        self._reporter = loop.create_task(self._report_loop(), name="feed-reports")

    async def stop(self) -> None:
        """Drop the workers' links, then stop the feeds (within 1.5 s)."""
        for link in list(self.links):
            link.close()
        await cancel_and_wait(self._reporter)
        for task in list(self._tasks):
            await cancel_and_wait(task)
        await self.runner.stop(within=1.5)

    # -- from the feeds ----------------------------------------------------------------------
    def _context(self, feed: Feed) -> FeedContext:
        i = next(n for n, f in enumerate(self.feeds) if f is feed)
        return FeedContext(
            emit=partial(self._emit, i),
            error=partial(self._error, i),
            reconnected=partial(self._reconnected, i),
            bar=partial(self._bar, i),
        )

    def _emit(self, feed: int, quote: Quote) -> None:
        quote = self.numbers.number(self.day_stats.apply(quote))
        if not self.links:
            return
        entry = encode_entry(quote, quote.seq)
        entries = self._entries.get(feed)
        if entries is None:
            self._entries[feed] = [entry]
        else:
            entries.append(entry)
        self._schedule()

    def _bar(self, feed: int, symbol: str, interval: str, bar: Bar, final: bool) -> None:
        self._other(relay.bar(feed, symbol, interval, bar, final))

    def _error(self, feed: int, kind: str) -> None:
        self._other(relay.error_event(feed, kind))

    def _reconnected(self, feed: int) -> None:
        self._other(relay.reconnect_event(feed))

    def _other(self, frame: bytes) -> None:
        if self.links:
            self._frames.append(frame)
            self._schedule()

    def _schedule(self) -> None:
        if not self._flush_due and self._loop is not None:
            self._flush_due = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send this pass's quotes (each encoded once) and other frames: the same bytes to every worker."""
        self._flush_due = False
        entries, self._entries = self._entries, {}
        frames: list[bytes] = []
        for feed, batch in entries.items():
            frames += relay.quotes(feed, batch)
        frames += self._frames
        self._frames = []
        if frames:
            data = b"".join(frames)
            for link in list(self.links):
                link.send(data)

    # -- the workers -------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = WorkerLink(reader, writer, self._throttle)
        link.send(relay.hello(self.epoch, self.names))
        try:
            await link.serve(self.on_message)
        finally:
            self.left(link)

    def on_message(self, link: WorkerLink, msg: relay.RelayMessage) -> None:
        """One message of ``link``'s worker; :class:`~ticker.relay.RelayError` if it has no place here."""
        if isinstance(msg, relay.RelayJoin):
            self._joined(link, msg)
        elif link.worker is None:
            raise relay.RelayError(f"{type(msg).__name__} before join")
        elif isinstance(msg, relay.RelayDemand):
            self._demands[link.worker] = msg.symbols
            self._holders[link.worker] = link
            self._demand_changed()
        elif isinstance(msg, relay.RelayRequest):
            self._request(link, msg)
        else:
            raise relay.RelayError(f"the feed process takes no {type(msg).__name__}")

    def _joined(self, link: WorkerLink, msg: relay.RelayJoin) -> None:
        if link.worker is not None:
            raise relay.RelayError("join again")
        self.flush()  # what this pass numbered goes to the links there were
        link.worker = msg.worker
        timer = self._lingering.pop(msg.worker, None)
        if timer is not None:
            timer.cancel()
        # A worker that served another feed process's numbers: ours go above them from now on.
        again = self.numbers.raise_floor(msg.floor) if msg.epoch != self.epoch else []
        if again:
            data = b"".join(relay.quotes(None, [encode_entry(q, q.seq) for q in again]))
            for other in self.links:
                other.send(data, catch_up=True)
        latest = [encode_entry(q, q.seq) for q in self.numbers.latest()]
        link.send(b"".join(relay.quotes(None, latest)), catch_up=True)
        link.send(self._report(full=True))
        self.links[link] = None
        log.info(
            "%r joined (%d last values%s)",
            link,
            len(latest),
            f", numbered above {msg.floor}" if again else "",
        )

    def left(self, link: WorkerLink) -> None:
        """``link`` is gone: its worker's demand lingers :data:`DEMAND_LINGER` s (unless it is back by then)."""
        self.links.pop(link, None)
        w = link.worker
        if w is None or self._holders.get(w) is not link:
            return
        log.info("%r left; its demand is kept %g s", link, DEMAND_LINGER)
        del self._holders[w]
        if self._loop is not None:
            self._lingering[w] = self._loop.call_later(DEMAND_LINGER, self._forget, w)

    def _forget(self, worker: int) -> None:
        self._lingering.pop(worker, None)
        if worker not in self._holders and self._demands.pop(worker, None) is not None:
            self._demand_changed()

    def _demand_changed(self) -> None:
        union = frozenset().union(*self._demands.values())
        if union != self.demand:
            self.demand = union
            self.runner.set_demand(union)
            if (
                not self._report_due and self._loop is not None
            ):  # new symbols' states without waiting a second
                self._report_due = True
                self._loop.call_soon(self._broadcast_report)

    # -- reports -----------------------------------------------------------------------------
    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY)
            self._broadcast_report()

    def _broadcast_report(self) -> None:
        self._report_due = False
        if self.links:
            try:
                data = self._report(full=False)
            except Exception as exc:  # a feed's health or symbol_state that fails must not end the reports
                self._throttle.log(logging.ERROR, "report", "feed report failed: %r", exc, exc_info=exc)
                return
            for link in list(self.links):
                link.send(data)

    def _report(self, full: bool) -> bytes:
        """Every feed's health and the states of the symbols it carries (wanted or on offer); the symbols on
        offer when ``full`` or changed since the last broadcast."""
        now = time.monotonic()
        directory = self.runner.directory
        out = []
        for i, feed in enumerate(self.feeds):
            h = feed.health()
            known = feed.known_symbols()
            changed = known != self._known[i]
            if changed and not full:
                self._known[i] = known
            states: dict[str, SymbolStatus] = {}
            for s in self.demand.union(known):
                if owner(self.feeds, s, directory) is feed and (st := feed.symbol_state(s)) is not None:
                    states[s] = st
            age = None if h.last_data is None else max(0.0, now - h.last_data)
            send_known = known if full or changed else None
            out.append(
                relay.RelayFeedState(h.up, age, h.reason, feed.steady, feed.symbol_limit, states, send_known)
            )
        return relay.status(out)

    # -- requests ----------------------------------------------------------------------------
    def _request(self, link: WorkerLink, req: relay.RelayRequest) -> None:
        if not 0 <= req.feed < len(self.feeds):
            link.send(relay.reply_error(req.id, f"no feed #{req.feed}"))
            return
        if link.requests >= MAX_REQUESTS:
            link.send(relay.reply_error(req.id, f"{MAX_REQUESTS} requests of this worker in progress"))
            return
        link.requests += 1
        task = asyncio.get_running_loop().create_task(self._answer(link, req))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, link: WorkerLink, req: relay.RelayRequest) -> None:
        try:
            if req.args is None:
                value = relay.encode_reference(await self._reference(req.feed))
            else:
                value = relay.encode_bars(await self._history(req.feed, *req.args))
            answer = relay.reply(req.id, value)
        except RateLimited as exc:
            answer = relay.reply_error(req.id, str(exc), exc.retry_after)
        except (FeedError, OSError, TimeoutError) as exc:
            answer = relay.reply_error(req.id, str(exc) or type(exc).__name__)
        except Exception as exc:  # a bug: the worker retries later; logged with its traceback
            self._throttle.log(logging.ERROR, "request", "answering %r failed: %r", req, exc, exc_info=exc)
            answer = relay.reply_error(req.id, f"{type(exc).__name__}: {exc}")
        finally:
            link.requests -= 1
        link.send(answer)

    async def _shared(self, key: tuple[Any, ...], call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()``'s result; callers asking with the same ``key`` meanwhile share the one call."""
        task = self._inflight.get(key)
        if task is None:
            task = self._inflight[key] = asyncio.ensure_future(call())
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _reference(self, feed: int) -> list[SymbolInfo] | None:
        cached = self._references.get(feed)
        if cached is not None and time.monotonic() - cached[0] < REFERENCE_FRESH:
            return cached[1]
        entries: list[SymbolInfo] | None = await self._shared(
            (relay.REFERENCE, feed), partial(self._load_reference, feed)
        )
        return entries

    async def _load_reference(self, i: int) -> list[SymbolInfo] | None:
        feed = self.feeds[i]
        entries = await feed.load_reference()
        self._references[i] = (time.monotonic(), entries)
        if entries is not None:  # the day statistics' sessions follow it (New York days for US equities)
            self.runner.directory.replace(feed.name, entries)
        return entries

    async def _history(
        self, feed: int, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> list[Bar] | None:
        load = partial(self.feeds[feed].load_history, symbol, interval, start_ms, end_ms)
        # Every worker asks for a newly demanded symbol's bars from the same start (a day's, a session's) up to
        # its now: asks within the same minute share one call (the bar still filling comes with live quotes).
        key = (relay.HISTORY, feed, symbol, interval, start_ms, end_ms // 60_000)
        bars: list[Bar] | None = await self._shared(key, load)
        if interval == "1d" and bars:  # the session so far and the previous close, for the day statistics
            self.day_stats.seed_days(symbol, bars[-2:], int(self._wall() * 1000))
        return bars


def run_feed_process(
    config: Config, listener: socket.socket, delay: float = 0.0, beat: int | None = None
) -> int:
    """The feed process's life (a child of the supervisor, its stop signals blocked): wait ``delay`` seconds
    (a restart's backoff), run a :class:`FeedHost` on ``listener`` until SIGTERM; returns the exit status.
    SIGINT is ignored: the supervisor stops this process once its workers are gone. ``beat``: the pipe of
    its heartbeat to the supervisor (:func:`~ticker.server.supervision.heartbeat`)."""
    set_worker("feed")
    asyncio.run(_serve(config, listener, delay, beat))
    return 0


async def _serve(config: Config, listener: socket.socket, delay: float, beat: int | None = None) -> None:
    stop = asyncio.Event()
    heartbeat(beat)  # from the start: a restart's backoff delay counts as alive
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return
    host = FeedHost(config)
    await host.start(listener)
    orphaned = asyncio.get_running_loop().create_task(_orphaned(os.getppid(), stop))
    await stop.wait()
    orphaned.cancel()
    await host.stop()


async def _orphaned(parent: int, stop: asyncio.Event) -> None:
    """Stop the feed process once its supervisor is gone (killed outright): nobody would stop it else."""
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            break
    log.warning("the supervisor (pid %d) is gone: the feed process stops", parent)
    stop.set()
