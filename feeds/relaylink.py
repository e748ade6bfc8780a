"""A worker's link to the ``--workers`` feed process: one Unix socket carrying every feed (asyncio streams).

The link connects (again and again, with backoff, while any :class:`~feeds.relayed.RelayedFeed` runs), reads
``hello``, names the feed process's epoch to the node (``on_epoch``), says ``join`` (the epoch it had and the
highest ``q`` it delivered) and its demand, then hands each frame on: quotes and provider bars into the
contexts of their feeds (the node's runner counts them as it would an in-process feed's), a catch-up of last
values to ``catch_up``, every feed's state to :attr:`states` (the relayed feeds mirror it), replies to the
requests waiting for them. Frames and messages: :mod:`ticker.relay`.

While the link is down its feeds say so in their health (readiness fails with the reason), requests fail with
:class:`~feeds.errors.FeedError` (their callers retry). A malformed frame is logged (at most once a minute per
kind) and the link is dropped and made again; a feed process that sends nothing for :data:`SILENCE` seconds
(it reports every second) is taken for gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from feeds.base import FeedContext
from feeds.errors import FeedError, RateLimited
from feeds.ratelimit import ThrottledLog
from ticker import relay
from ticker.backoff import Backoff
from ticker.quote import Quote
from ticker.tasks import cancel_and_wait

log = logging.getLogger("feeds.relay")

CONNECT_WAIT = 5.0  # seconds to connect and get hello (a restarting feed process answers when it runs)
SILENCE = (
    10.0  # seconds without a frame before the link is taken for dead (the feed process reports every 1 s)
)
RETRY_MIN = 0.05  # seconds between two attempts at least, whatever the jitter
MAX_PENDING = 256  # requests in flight on the link
STEADY_AFTER = 10.0  # seconds a link must last for its backoff to start over


class FeedProcessLink:
    """The worker's side of the relay; ``names``: the ``--feed`` names, in order (the feed process's too)."""

    def __init__(
        self,
        path: str,
        names: Sequence[str],
        worker: int,
        on_epoch: Callable[[str], object] = lambda epoch: None,
        catch_up: Callable[[Quote], None] | None = None,
    ) -> None:
        self.path = path
        self.names = tuple(names)
        self.worker = worker
        self.on_epoch = on_epoch
        #: Where a catch-up's last values go (they count for no feed); None: into the first attached feed.
        self.catch_up = catch_up
        self.up = False
        self.reason = "connecting to the feed process"
        self.epoch: str | None = None
        self.top = 0  # the highest q delivered, over every connection (a new feed process numbers above it)
        #: Each feed's last report (None until the first); see :class:`ticker.relay.RelayFeedState`.
        self.states: list[relay.RelayFeedState | None] = [None] * len(self.names)
        self.known: list[list[str]] = [[] for _ in self.names]
        #: Monotonic time of each feed's last quote on this link.
        self.last_data: list[float | None] = [None] * len(self.names)
        self._contexts: dict[int, FeedContext] = {}
        self._demand: dict[int, frozenset[str]] = {}
        self._sent_demand: frozenset[str] | None = None
        self._demand_due = False
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[relay.RelayReply]] = {}
        self._next_id = 0
        self._linked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._throttle = ThrottledLog(log)

    # -- the relayed feeds -------------------------------------------------------------------
    def attach(self, index: int, ctx: FeedContext) -> None:
        """Feed ``index`` started: its data goes to ``ctx``; the first one starts the link."""
        self._contexts[index] = ctx
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="feed-process-link")

    async def detach(self, index: int) -> None:
        """Feed ``index`` stopped; the last one ends the link."""
        self._contexts.pop(index, None)
        self._demand.pop(index, None)
        if not self._contexts:
            await cancel_and_wait(self._task)
            self._task = None
            self._down("stopped")

    def set_demand(self, index: int, symbols: frozenset[str]) -> None:
        """Feed ``index``'s part of the node's demand; the union is sent once per loop pass."""
        self._demand[index] = symbols
        if not self._demand_due:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop yet: the link sends the demand once it is up
                return
            self._demand_due = True
            loop.call_soon(self._send_demand)

    def _send_demand(self) -> None:
        self._demand_due = False
        wanted = frozenset().union(*self._demand.values())
        if self._writer is not None and wanted != self._sent_demand:
            self._sent_demand = wanted
            self._writer.write(relay.demand(wanted))

    # -- requests ----------------------------------------------------------------------------
    async def request(self, message: Callable[[int], bytes], within: float) -> Any:
        """Send the request ``message(id)`` once the link is up and return its reply's value, all within
        ``within`` seconds; :class:`FeedError` when the link is down that long, is lost meanwhile, or the feed
        process answers with an error (:class:`RateLimited` with its ``Retry-After``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        try:
            if not self._linked.is_set():
                await asyncio.wait_for(self._linked.wait(), within)
        except TimeoutError:
            raise FeedError(f"no link to the feed process for {within:g} s: {self.reason}") from None
        writer = self._writer
        if writer is None:
            raise FeedError(f"no link to the feed process: {self.reason}")
        if len(self._pending) >= MAX_PENDING:
            raise FeedError(f"{MAX_PENDING} requests to the feed process in flight already")
        self._next_id += 1
        rid = self._next_id
        waiter: asyncio.Future[relay.RelayReply] = loop.create_future()
        self._pending[rid] = waiter
        try:
            writer.write(message(rid))
            answer = await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise FeedError(f"the feed process did not answer within {within:g} s") from None
        finally:
            self._pending.pop(rid, None)
        if answer.error is not None:
            if answer.retry_after is not None:
                raise RateLimited(answer.retry_after)
            raise FeedError(answer.error)
        return answer.value

    # -- the connection ----------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = Backoff(base=0.1, cap=2.0)
        while True:
            began = time.monotonic()
            try:
                await self._session()
                reason = "the feed process closed the link"
            except (OSError, EOFError, TimeoutError) as exc:
                reason = _describe(exc)
            except relay.RelayError as exc:
                reason = f"malformed input from the feed process ({exc})"
                self._throttle.warning("malformed", "worker %d: %s; dropping the link", self.worker, reason)
            except Exception as exc:  # a bug must not end the link for good (CancelledError is no Exception)
                reason = f"{type(exc).__name__}: {exc}"
                self._throttle.log(logging.ERROR, "bug", "the link to the feed process failed", exc_info=exc)
            was_up = self.up
            self._down(reason)
            if was_up:
                log.warning("lost the link to the feed process (%s); reconnecting", reason)
            if time.monotonic() - began > STEADY_AFTER:
                backoff.reset()
            await asyncio.sleep(max(RETRY_MIN, backoff.next_delay()))

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path), CONNECT_WAIT)
        try:
            try:
                hello = await asyncio.wait_for(_read(reader), CONNECT_WAIT)
            except TimeoutError:
                raise TimeoutError(f"the feed process did not say hello within {CONNECT_WAIT:g} s") from None
            if not isinstance(hello, relay.RelayHello):
                raise relay.RelayError(f"expected hello first, got {type(hello).__name__}")
            self._greeted(hello, writer)
            while True:
                try:
                    msg = await asyncio.wait_for(_read(reader), SILENCE)
                except TimeoutError:
                    raise TimeoutError(f"the feed process sent nothing for {SILENCE:g} s") from None
                self._dispatch(msg)
        finally:
            writer.close()

    def _greeted(self, hello: relay.RelayHello, writer: asyncio.StreamWriter) -> None:
        """The feed process said ``hello``: say ``join`` (the epoch this worker had and the highest ``q`` it
        delivered), name the feed process's epoch to the node (a new one drops every value the old numbered,
        before the catch-up brings this one's), send the demand, and take the link as up."""
        if hello.feeds != self.names:
            theirs, ours = ",".join(hello.feeds), ",".join(self.names)
            raise relay.RelayError(f"the feed process runs {theirs}, not {ours}")
        writer.write(relay.join(self.worker, self.epoch, self.top))
        self.on_epoch(hello.epoch)
        if self.epoch is None:
            log.info("linked to the feed process (epoch %s)", hello.epoch)
        elif hello.epoch == self.epoch:
            log.info("the link to the feed process is back (epoch %s)", hello.epoch)
        else:
            log.info("linked to a new feed process (epoch %s, was %s)", hello.epoch, self.epoch)
        self.epoch = hello.epoch
        self._writer = writer
        self._sent_demand = None
        self._send_demand()
        self.up = True
        self.reason = ""
        self._linked.set()

    def _down(self, reason: str) -> None:
        self.up = False
        self.reason = reason
        self._writer = None
        self._linked.clear()
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(FeedError("lost the link to the feed process"))

    def _dispatch(self, msg: relay.RelayMessage) -> None:
        if isinstance(msg, relay.RelayQuotes):
            self._quotes(msg)
        elif isinstance(msg, relay.RelayStatus):
            if len(msg.feeds) != len(self.names):
                raise relay.RelayError(f"a report of {len(msg.feeds)} feeds, not {len(self.names)}")
            for i, state in enumerate(msg.feeds):
                if state.known is not None:
                    self.known[i] = state.known
                self.states[i] = state
        elif isinstance(msg, relay.RelayReply):
            waiter = self._pending.get(msg.id)
            if waiter is not None and not waiter.done():
                waiter.set_result(msg)
        elif isinstance(msg, relay.RelayBar):
            ctx = self._contexts.get(msg.feed)
            if ctx is not None:
                ctx.bar(msg.symbol, msg.interval, msg.bar, msg.final)
        elif isinstance(msg, relay.RelayEvent):
            ctx = self._contexts.get(msg.feed)
            if ctx is not None:
                ctx.reconnected() if msg.kind is None else ctx.error(msg.kind)
        else:
            raise relay.RelayError(f"a worker takes no {type(msg).__name__}")

    def _quotes(self, msg: relay.RelayQuotes) -> None:
        quotes = msg.quotes
        if not quotes:
            return
        top = max(q.seq for q in quotes)
        if top > self.top:
            self.top = top
        if msg.feed is None:
            sink = self.catch_up
            if sink is None:
                ctx = next(iter(self._contexts.values()), None)
                sink = ctx.emit if ctx is not None else None
            if sink is not None:
                for q in quotes:
                    sink(q)
            return
        ctx = self._contexts.get(msg.feed)
        if ctx is None:
            return
        self.last_data[msg.feed] = time.monotonic()
        if ctx.emit_many is not None:  # the message's quotes, decoded for this call alone, in one
            ctx.emit_many(quotes)
            return
        emit = ctx.emit
        for q in quotes:
            emit(q)


async def _read(reader: asyncio.StreamReader) -> relay.RelayMessage:
    n = relay.frame_length(await reader.readexactly(relay.HEADER))
    return relay.decode(await reader.readexactly(n))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the feed process closed the link"
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return "the feed process is not running"
    if isinstance(exc, TimeoutError) and not str(exc):
        return "the feed process did not answer"
    return str(exc) or type(exc).__name__
