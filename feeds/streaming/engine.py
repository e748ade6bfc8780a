"""Shared machinery of the WebSocket feed adapters (aiohttp).

:class:`StreamFeed` holds everything the streaming providers have in common, once:

- a connect loop with exponential backoff and full jitter (``--reconnect-base``/``--reconnect-cap``),
  calling ``ctx.reconnected()`` after each reconnect and resubscribing everything held;
- silence detection: no data, heartbeat, ping or pong for ``--feed-silence`` seconds counts as dead
  and is reconnected (WebSocket pings are sent on a quiet link so an idle but healthy one proves alive);
- demand following (:class:`~feeds.demand.DemandTracker`): subscribe when the first client wants a
  symbol, unsubscribe after the last one leaves and ``--feed-linger`` seconds passed, within the
  provider's symbol limit, reporting the symbols that do not fit;
- control messages batched (``max_batch`` symbols per message, changes gathered for a moment) and
  paced to ``control_rate`` messages per second where the provider limits that;
- malformed or unexpected messages counted through ``ctx.error(kind)`` and logged once in a while;
- health: up/down with a reason in words (:mod:`feeds.reasons`: ``DNS lookup failed for HOST``),
  the time of the last data, symbols over the limit;
- what it says of each symbol (:meth:`symbol_state`): ``unavailable`` over the limit or refused by the
  provider, ``halted`` while the provider reports a trading halt (:meth:`halt`, :meth:`resume`).

A subclass only describes its provider: ``default_url`` (or :meth:`connect_url`), an optional
:meth:`handshake` (auth), :meth:`subscribe_messages`/:meth:`unsubscribe_messages`, and
:meth:`on_message`, which turns each parsed JSON message into :meth:`update` calls (and a provider's own
bars into :meth:`provider_bar` calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from feeds import reasons, reference
from feeds.base import Feed, FeedContext, FeedHealth
from feeds.demand import DemandTracker
from feeds.errors import FeedConfigError, Malformed, UpstreamError
from feeds.normalize import QuoteBook
from feeds.ratelimit import ThrottledLog
from feeds.reference import Rows
from feeds.streaming.link import UpstreamLink, chunks, redact_url
from feeds.wire import PARSE_ERRORS
from ticker.backoff import Backoff
from ticker.bars import Bar
from ticker.directory import SymbolInfo
from ticker.status import HALTED, UNAVAILABLE, SymbolStatus
from ticker.tokenbucket import TokenBucket

CONNECT_TIMEOUT = 10.0  # seconds to open the WebSocket
HANDSHAKE_TIMEOUT = 10.0  # seconds for the provider's welcome/auth exchange
STABLE_AFTER = 10.0  # a connection that lived this long (or brought data) resets the backoff


class StreamFeed(Feed):
    """Base class of WebSocket feed adapters; see the module docstring for what it does."""

    default_url: ClassVar[str] = ""
    max_batch: int = 100  # symbols per subscribe/unsubscribe message
    control_rate: ClassVar[float | None] = None  # frames per second (sustained; bursts of one more)
    client_ping: ClassVar[bool] = True  # ping a quiet link (providers without app heartbeats)
    batch_window: ClassVar[float] = 0.02  # seconds to gather demand changes into one batch
    reference_timeout: float = reference.TIMEOUT  # seconds per reference request (load_reference)
    reference_max_body: int = reference.MAX_BODY  # bytes per reference response
    #: The environment variables holding this provider's credentials (named when the provider refuses them).
    credentials_env: ClassVar[tuple[str, ...]] = ()
    #: What the symbol limit is, in the words of an ``unavailable`` symbol's reason.
    limit_words: ClassVar[str] = "the provider plan's limit"

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        reconnect_base: float = 0.5,
        reconnect_cap: float = 30.0,
        silence: float = 30.0,
        linger: float = 5.0,
        max_symbols: int | None = None,
    ) -> None:
        super().__init__(name)
        self.url = url or self.default_url
        if not self.url:
            raise FeedConfigError(f"feed {name!r} needs --feed-url")
        self.host = URL(self.url).host or "upstream"  # named in health reasons
        if silence <= 0:
            raise FeedConfigError("--feed-silence must be > 0")
        self.silence = silence
        self.book = QuoteBook()
        self.log = logging.getLogger(f"feeds.{name}")
        self.connections = 0  # successful sessions so far
        self._backoff = Backoff(reconnect_base, reconnect_cap)
        self._tracker = DemandTracker(max_symbols, linger)
        self._throttle = ThrottledLog(self.log)
        self._held: set[str] = set()  # subscribed upstream on the current link
        self._live: set[str] = set()  # symbols whose data is forwarded
        self._rejected: list[str] = []
        self._rejected_set: frozenset[str] = frozenset()
        self._invalid: dict[str, str] = {}  # symbol -> why the provider refused it
        self._halted: dict[str, SymbolStatus] = {}  # symbol -> its halt, as the provider reported it
        self._last_subscribed: list[str] = []
        self._wake = asyncio.Event()
        self._link: UpstreamLink | None = None
        self._ctx: FeedContext | None = None
        self._got_data = False

    # ---- what subclasses describe -------------------------------------------------------------

    def connect_url(self) -> str:
        """The URL to connect to (override to add credentials; it is never logged unredacted)."""
        return self.url

    def connect_headers(self) -> dict[str, str] | None:
        """Extra HTTP headers for the WebSocket upgrade."""
        return None

    async def handshake(self, link: UpstreamLink) -> None:
        """Provider welcome and auth exchange before subscribing; raise :class:`AuthFailed` on refusal."""

    async def after_connect(self, link: UpstreamLink) -> None:
        """Messages to send once connected, before the held symbols are subscribed."""

    @abstractmethod
    def subscribe_messages(self, symbols: list[str]) -> list[Any]:
        """The control messages that subscribe ``symbols`` (at most ``max_batch`` of them)."""

    @abstractmethod
    def unsubscribe_messages(self, symbols: list[str]) -> list[Any]:
        """The control messages that unsubscribe ``symbols``."""

    @abstractmethod
    def on_message(self, msg: Any) -> None:
        """Handle one parsed upstream message: :meth:`update` for data, :meth:`problem` for the unexpected;
        raise :class:`~feeds.wire.Malformed` (or a lookup/type error) for a message of the wrong shape."""

    # ---- helpers for subclasses ---------------------------------------------------------------

    def update(self, symbol: str, ts_ms: int, **fields: float | None) -> None:
        """Merge a partial update for ``symbol`` and emit the quote (data for symbols not held is dropped)."""
        if symbol not in self._live or self._ctx is None:
            return
        quote = self.book.update(symbol, ts_ms, **fields)
        self._got_data = True
        self._mark_data()
        if quote is not None:
            self._ctx.emit(quote)

    def provider_bar(self, symbol: str, interval: str, bar: Bar, final: bool) -> None:
        """Hand the provider's own bar of ``symbol`` to ``ctx.bar`` (see :meth:`ticker.bars.BarSeries.apply_bar`);
        a bar of a symbol not held is dropped."""
        if symbol not in self._live or self._ctx is None:
            return
        self._got_data = True
        self._mark_data()
        self._ctx.bar(symbol, interval, bar, final)

    def problem(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """Count an error of ``kind`` and log ``message`` (at most once a minute per kind)."""
        if self._ctx is not None:
            self._ctx.error(kind)
        self._throttle.log(level, kind, "feed %s: %s", self.name, message)

    def each_item(self, items: Any, handle: Callable[[Any], None], what: str = "item") -> None:
        """Run ``handle`` on every element of a batched frame; a malformed element is counted and skipped,
        so one bad item does not cost the rest of the batch."""
        if not isinstance(items, list):
            raise Malformed(f"expected a JSON array of {what}s")
        for item in items:
            try:
                handle(item)
            except PARSE_ERRORS as exc:
                self.problem("malformed", f"malformed {what} ignored ({type(exc).__name__}: {exc})")

    def provider_limit_hit(self, refused: list[str], detail: str) -> None:
        """The provider refused ``refused`` for its own symbol limit: cap this connection at what it holds."""
        self._held.difference_update(refused)
        self._tracker.cap = len(self._held)
        self.problem("symbol_limit", f"{detail}; holding {len(self._held)} symbols")
        self._wake.set()

    def invalid_symbol(self, symbol: str, reason: str) -> None:
        """The provider does not offer ``symbol``: stop asking for it until clients stop demanding it."""
        if symbol not in self.demand or symbol in self._invalid:
            return
        self._invalid[symbol] = reason
        self._held.discard(symbol)
        self._tracker.discard(symbol)
        self.problem("invalid_symbol", f"{symbol}: {reason}")
        self._wake.set()

    def halt(self, symbol: str, reason: str) -> None:
        """The provider reports a trading halt of ``symbol`` (``reason`` in its words): ``halted`` until
        :meth:`resume`, until clients stop demanding it, or until the next connection."""
        if symbol in self.demand:
            self._halted[symbol] = SymbolStatus(HALTED, reason)

    def resume(self, symbol: str) -> None:
        """Trading in ``symbol`` resumed."""
        self._halted.pop(symbol, None)

    def resubscribe(self, symbols: Iterable[str]) -> None:
        """Consider ``symbols`` not held upstream, so they are subscribed again."""
        self._held.difference_update(symbols)
        self._wake.set()

    @property
    def last_subscribed(self) -> list[str]:
        """The symbols of the most recent subscribe batch (to attribute a refusal to them)."""
        return self._last_subscribed

    @property
    def symbol_limit(self) -> int | None:
        """Most symbols held at once now (configured limit or learned provider cap); ``None``: no limit."""
        return self._tracker.effective_limit

    @property
    def held(self) -> frozenset[str]:
        """Symbols currently subscribed upstream."""
        return frozenset(self._held)

    def reference_rows(self) -> Rows:
        """A :class:`~feeds.reference.Rows` for :meth:`load_reference`: this feed's symbols only; each
        malformed row is counted as a ``reference_malformed`` error and logged (throttled)."""
        return Rows(self.owns, lambda why: self.problem("reference_malformed", f"reference data: {why}"))

    def reference_loaded(self, rows: Rows, source: str) -> list[SymbolInfo]:
        """Log what a load kept and left out (one line), and return its entries (an incomplete load
        raises :class:`~feeds.errors.IncompleteReference`)."""
        self.log.info("feed %s: reference data from %s: %s", self.name, source, rows.summary())
        return rows.complete(source)

    async def reference_get(
        self,
        url: str,
        parse: Callable[[Any, Rows], object],
        what: str,
        params: Mapping[str, str] | None = None,
    ) -> list[SymbolInfo]:
        """:meth:`load_reference` from one GET of ``url`` (no paging): ``parse`` keeps its rows; ``what``
        names the endpoint in errors and the log."""
        rows = self.reference_rows()
        async with reference.session(self.reference_timeout) as http:
            await reference.fetch_rows(
                http, url, rows, parse, what=what, params=params, max_body=self.reference_max_body
            )
        return self.reference_loaded(rows, what)

    async def next_message(self, link: UpstreamLink, within: float = HANDSHAKE_TIMEOUT) -> Any:
        """The next well-formed JSON message on ``link`` (for handshakes); malformed ones are counted."""
        while True:
            try:
                return await link.recv(min(within, self.silence))
            except Malformed as exc:
                self.problem("malformed", f"malformed message ignored: {exc}")

    # ---- the Feed interface -------------------------------------------------------------------

    def set_demand(self, symbols: frozenset[str]) -> None:
        owned = frozenset(s for s in symbols if self.owns(s))
        super().set_demand(owned)
        for sym in [s for s in self._invalid if s not in owned]:
            del self._invalid[sym]
        for sym in [s for s in self._halted if s not in owned]:
            del self._halted[sym]
        self._tracker.set_demand(self._wanted(), time.monotonic())
        self._wake.set()

    def symbol_state(self, symbol: str) -> SymbolStatus | None:
        """``halted`` as the provider reported; ``unavailable`` when the provider refused the symbol or it
        does not fit the symbol limit; else nothing to say."""
        halted = self._halted.get(symbol)
        if halted is not None:
            return halted
        refused = self._invalid.get(symbol)
        if refused is not None:
            return SymbolStatus(UNAVAILABLE, f"{self.name} refused {symbol}: {refused}")
        if symbol in self._rejected_set:
            limit = self._tracker.effective_limit
            return SymbolStatus(UNAVAILABLE, f"over {self.limit_words} of {limit} symbols")
        return None

    def health(self) -> FeedHealth:
        h = self._health
        if h.up:
            h.reason = self._limits_note()
        return h

    async def start(self, ctx: FeedContext) -> None:
        self._ctx = ctx
        self._mark_down("connecting")
        self._run_in_background(self._run())

    async def stop(self) -> None:
        await self._stop_background()

    # ---- internals ----------------------------------------------------------------------------

    def _wanted(self) -> list[str]:
        return [s for s in self.demand if s not in self._invalid]

    def _limits_note(self) -> str:
        notes = []
        if self._rejected:
            shown = ", ".join(self._rejected[:5]) + (", …" if len(self._rejected) > 5 else "")
            notes.append(
                f"{len(self._rejected)} symbol(s) over the limit of {self._tracker.effective_limit}: {shown}"
            )
        if self._invalid:
            notes.append("refused by provider: " + ", ".join(sorted(self._invalid)[:5]))
        return "; ".join(notes)

    def _report_rejected(self, rejected: list[str]) -> None:
        new = [s for s in rejected if s not in self._rejected_set]
        self._rejected = rejected
        self._rejected_set = frozenset(rejected)
        if new:
            for _ in new:
                if self._ctx is not None:
                    self._ctx.error("symbol_limit")
            self._throttle.warning(
                "symbol_limit",
                "feed %s: symbol limit %s reached, not subscribed: %s",
                self.name,
                self._tracker.effective_limit,
                ", ".join(new[:10]),
            )

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                started = time.monotonic()
                self._got_data = False
                try:
                    await self._session(session)
                    reason, kind = f"the connection to {self.host} ended", "disconnect"
                except UpstreamError as exc:
                    reason, kind = exc.reason, exc.kind
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    refused = isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status in (401, 403)
                    reason = reasons.connection_failed(
                        self.host, exc, within=CONNECT_TIMEOUT, credentials=self.credentials_env
                    )
                    kind = "auth" if refused else "connect"
                except Exception as exc:  # a bug must not end the feed: count, log, reconnect
                    reason, kind = f"internal error ({type(exc).__name__}: {exc})", "internal"
                self._link = None
                self._mark_down(reason)
                level = logging.ERROR if kind in ("auth", "internal") else logging.WARNING
                self.problem(kind, f"{reason} ({redact_url(self.url)}); reconnecting", level)
                if self._got_data or time.monotonic() - started >= STABLE_AFTER:
                    self._backoff.reset()
                await asyncio.sleep(self._backoff.next_delay())

    async def _session(self, session: aiohttp.ClientSession) -> None:
        ws = await asyncio.wait_for(
            session.ws_connect(
                self.connect_url(), autoping=False, headers=self.connect_headers(), max_msg_size=16 << 20
            ),
            CONNECT_TIMEOUT,
        )
        try:
            link = UpstreamLink(
                ws,
                TokenBucket(self.control_rate, 1.0, time.monotonic()) if self.control_rate else None,
                self.host,
            )
            try:
                await asyncio.wait_for(self.handshake(link), HANDSHAKE_TIMEOUT)
            except TimeoutError:
                raise UpstreamError(
                    f"{self.host} did not finish its welcome and login within {HANDSHAKE_TIMEOUT:g} s",
                    "connect",
                ) from None
            self._link = link
            self._held = set()
            self._halted.clear()  # halts are what this connection reports (a resume may have been missed)
            self._tracker.cap = None
            self.connections += 1
            self._mark_up()
            if self.connections > 1 and self._ctx is not None:
                self._ctx.reconnected()
            self.log.info("feed %s: connected to %s", self.name, redact_url(self.url))
            await self.after_connect(link)
            tasks = [asyncio.create_task(self._read_loop(link)), asyncio.create_task(self._sync_loop(link))]
            if self.client_ping:
                tasks.append(asyncio.create_task(self._ping_loop(link)))
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)

    async def _read_loop(self, link: UpstreamLink) -> None:
        while True:
            try:
                self.on_message(await link.recv(self.silence))
            except PARSE_ERRORS as exc:
                self.problem("malformed", f"malformed message ignored ({type(exc).__name__}: {exc})")

    async def _ping_loop(self, link: UpstreamLink) -> None:
        interval = self.silence / 3
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - link.last_alive >= interval:
                await link.ping()

    async def _sync_loop(self, link: UpstreamLink) -> None:
        """Keep upstream subscriptions equal to the plan: unsubscribe first (frees slots), then subscribe."""
        while True:
            self._wake.clear()
            plan = self._tracker.plan(time.monotonic())
            self._report_rejected(plan.rejected)
            target = set(plan.target)
            drop = sorted(s for s in self._held if s not in target)
            add = [s for s in plan.target if s not in self._held]
            self._live = target
            for sym in drop:
                self.book.forget(sym)
            for chunk in chunks(drop, self.max_batch):
                self._held.difference_update(chunk)
                for msg in self.unsubscribe_messages(chunk):
                    await link.send(msg)
            for chunk in chunks(add, self.max_batch):
                self._held.update(chunk)  # before sending: a refusal may arrive while later chunks are paced
                self._last_subscribed = chunk
                for msg in self.subscribe_messages(chunk):
                    await link.send(msg)
            deadline = self._tracker.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) + 0.001
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            await asyncio.sleep(self.batch_window)
