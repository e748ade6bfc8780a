"""The common machinery of HTTP-polled feeds (finnhub-rest, yahoo) on aiohttp.

A :class:`PollingFeed` polls only the demanded symbols, in batches a subclass chooses
(one symbol per request for Finnhub, many for Yahoo), never faster than its token bucket
allows. A 429 pauses all requests for the ``Retry-After`` the provider gives, else for a
full-jitter backoff delay; network errors and 5xx back off the same way. Malformed bodies
are counted with ``ctx.error(kind)`` and logged once in a while. Unchanged quotes are not
emitted again, so a quiet symbol costs requests but no fan-out. The health reason says what went
wrong in words (:mod:`feeds.reasons`); a symbol the provider does not know, or the plan does not
cover, is ``unavailable`` (:meth:`PollingFeed.symbol_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp
import orjson
from yarl import URL

from feeds import reasons, reference
from feeds.base import Feed, FeedContext
from feeds.errors import AuthFailed, BodyTooLarge, RateLimited
from feeds.normalize import QuoteBook
from feeds.ratelimit import ThrottledLog, retry_after, wait_for_token
from feeds.reference import Rows
from ticker.backoff import Backoff
from ticker.directory import SymbolInfo
from ticker.quote import Quote
from ticker.status import UNAVAILABLE, SymbolStatus
from ticker.tokenbucket import TokenBucket

log = logging.getLogger("ticker.feeds.poll")

MAX_BODY = 4 * 1024 * 1024  # bytes; a larger response body is refused as malformed
USER_AGENT = "Mozilla/5.0 (compatible; ticker/0.1; +https://github.com/ticker)"


class PollingFeed(Feed):
    """Base class of HTTP-polled feeds; subclasses build requests and parse bodies.

    Every demanded symbol is polled once per ``interval`` seconds, or as often as ``rate``
    requests per second allow when that is slower. ``concurrency`` requests may be in flight.
    """

    #: How many symbols one request carries; 1 means one request per symbol.
    batch_size = 1
    #: Whether the session keeps cookies set by hosts given as IP addresses.
    cookies_for_ip_hosts = False
    reference_timeout: float = reference.TIMEOUT  # seconds per reference request (load_reference)
    reference_max_body: int = reference.MAX_BODY  # bytes per reference response
    #: The environment variables holding this provider's credentials (named when the provider refuses them).
    credentials_env: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        name: str,
        *,
        interval: float,
        rate: float,
        burst: float = 1.0,
        concurrency: int = 4,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        super().__init__(name)
        if interval < 0:
            raise ValueError("poll interval must be >= 0")
        self.interval = interval
        self.bucket = TokenBucket(rate, burst, time.monotonic())
        self.backoff = Backoff(backoff_base, backoff_cap)
        self.timeout = timeout
        self.book = QuoteBook()
        self.unknown: set[str] = set()  # demanded symbols the provider does not serve
        self._unavailable: dict[str, SymbolStatus] = {}  # the same, with why
        self.requests = 0  # requests sent (for tests and diagnostics)
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._last_emitted: dict[str, tuple[Any, ...]] = {}
        self._resume_at = 0.0  # monotonic time before which no request is sent (429, backoff)
        self._wake = asyncio.Event()
        self._ctx: FeedContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._log = ThrottledLog(log)
        self._health.reason = "starting"

    # -- what subclasses provide -------------------------------------------------------------

    @abstractmethod
    def request(self, batch: Sequence[str]) -> tuple[str, dict[str, str], dict[str, str]]:
        """Return ``(url, query params, headers)`` of the request that polls ``batch``."""

    @abstractmethod
    def parse(self, batch: Sequence[str], data: Any) -> None:
        """Emit quotes from the decoded body for ``batch`` (via :meth:`offer`); ValueError if malformed."""

    async def authenticate(self, session: aiohttp.ClientSession) -> None:
        """Obtain whatever session state the provider needs before polling (default: nothing)."""

    def refused(self, batch: Sequence[str], status: int, body: bytes) -> bool:
        """Whether a 4xx answer refuses only these symbols (not the whole feed); default: no."""
        return False

    def unauthorized(self, status: int, body: bytes, host: str = "upstream") -> str:
        """Handle a 401/403 from ``host`` and return the reason shown in health; subclasses may reset auth state."""
        return reasons.refused_credentials(host, status, self.credentials_env)

    def make_session(self) -> aiohttp.ClientSession:
        """The one ClientSession this feed uses (subclasses may configure cookies)."""
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=self.cookies_for_ip_hosts),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    # -- helpers for subclasses --------------------------------------------------------------

    def offer(self, quote: Quote | None) -> None:
        """Emit ``quote`` unless it equals the last one emitted for its symbol."""
        if quote is None or quote.symbol not in self.demand or self._ctx is None:
            return
        key = (
            quote.price,
            quote.bid,
            quote.ask,
            quote.volume,
            quote.change,
            quote.change_percent,
            quote.prev_close,
            quote.open,
            quote.high,
            quote.low,
            quote.vwap,
            quote.ts_ms,
        )
        if self._last_emitted.get(quote.symbol) == key:
            return
        self._last_emitted[quote.symbol] = key
        self._ctx.emit(quote)

    def report_unknown(
        self, symbol: str, kind: str = "unknown_symbol", why: str = "the provider does not know"
    ) -> None:
        """Count and log (once per symbol while demanded) a symbol the provider does not serve."""
        if symbol in self.unknown:
            return
        self.unknown.add(symbol)
        self._unavailable[symbol] = SymbolStatus(UNAVAILABLE, f"{why} {symbol}")
        if self._ctx is not None:
            self._ctx.error(kind)
        log.warning("%s: %s symbol %s; it gets no quotes", self.name, why, symbol)

    def report_known(self, symbol: str) -> None:
        self.unknown.discard(symbol)
        self._unavailable.pop(symbol, None)

    def reference_rows(self) -> Rows:
        """A :class:`~feeds.reference.Rows` for :meth:`load_reference`: this feed's symbols only; each
        malformed row is counted as a ``reference_malformed`` error and logged (throttled)."""
        return Rows(self.owns, lambda why: self.problem("reference_malformed", "reference data: %s", why))

    def reference_loaded(self, rows: Rows, source: str) -> list[SymbolInfo]:
        """Log what a load kept and left out (one line), and return its entries."""
        log.info("%s: reference data from %s: %s", self.name, source, rows.summary())
        return rows.complete(source)

    def problem(self, kind: str, msg: str, *args: object) -> None:
        """Count an upstream problem of ``kind`` and log it once in a while."""
        if self._ctx is not None:
            self._ctx.error(kind)
        self._log.warning(kind, "%s: " + msg, self.name, *args)

    # -- Feed interface ----------------------------------------------------------------------

    def set_demand(self, symbols: frozenset[str]) -> None:
        for gone in self.demand - symbols:
            self.book.forget(gone)
            self._last_emitted.pop(gone, None)
            self.report_known(gone)
        super().set_demand(symbols)
        self._wake.set()

    def symbol_state(self, symbol: str) -> SymbolStatus | None:
        """``unavailable`` for a symbol the provider does not know or the plan does not cover."""
        return self._unavailable.get(symbol)

    async def start(self, ctx: FeedContext) -> None:
        self._ctx = ctx
        self._session = self.make_session()
        self._run_in_background(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._inflight) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._task = None
        self._inflight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._mark_down("stopped")

    # -- the poll loop -----------------------------------------------------------------------

    def batches(self, symbols: Sequence[str]) -> list[list[str]]:
        n = max(1, self.batch_size)
        return [list(symbols[i : i + n]) for i in range(0, len(symbols), n)]

    async def _sleep(self, secs: float) -> None:
        """Sleep up to ``secs``; a demand change ends the sleep early."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(secs, 0.0))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            symbols = sorted(self.demand)
            if not symbols:
                if not self._health.up and self._health.reason in ("starting", ""):
                    self._mark_up()  # idle: nothing demanded, nothing wrong
                self._wake.clear()
                await self._wake.wait()
                continue
            cycle_start = loop.time()
            for batch in self.batches(symbols):
                if not any(s in self.demand for s in batch):
                    continue
                await wait_for_token(self.bucket)
                while True:  # a 429 or backoff may push the resume time on while we wait
                    wait = self._resume_at - time.monotonic()
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                await self._sem.acquire()
                batch = [s for s in batch if s in self.demand]  # demand may have shrunk meanwhile
                if not batch:
                    self._sem.release()
                    continue
                task = loop.create_task(self._poll(batch))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            await self._sleep(self.interval - (loop.time() - cycle_start))

    def _pause(self, secs: float) -> None:
        self._resume_at = max(self._resume_at, time.monotonic() + secs)

    async def _poll(self, batch: list[str]) -> None:
        try:
            await self._poll_inner(batch)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in a parser must not end polling
            if self._ctx is not None:
                self._ctx.error("internal")
            log.exception("%s: unexpected error polling %s", self.name, batch)
        finally:
            self._sem.release()

    def _rate_limited(self, delay: float | None) -> None:
        if delay is None:
            delay = self.backoff.next_delay()
        self._pause(delay)
        self._health.reason = f"rate limited upstream; pausing {delay:.1f}s"
        self.problem("rate_limited", "HTTP 429 from upstream; pausing %.1fs", delay)

    async def _poll_inner(self, batch: list[str]) -> None:
        session = self._session
        if session is None:
            return
        url, params, headers = self.request(batch)
        host = URL(url).host or "upstream"
        try:
            await self.authenticate(session)
            url, params, headers = self.request(batch)  # again: authenticating may change it (a crumb)
            self.requests += 1
            async with session.get(url, params=params, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                ra = resp.headers.get("Retry-After")
                body = await _read_limited(resp)
        except RateLimited as exc:
            self._rate_limited(exc.retry_after)
            return
        except AuthFailed as exc:
            self._pause(self.backoff.next_delay())
            self._mark_down(str(exc))
            self.problem("auth", "%s", exc)
            return
        except BodyTooLarge as exc:
            self.problem("malformed", "refused response for %s: %s", ",".join(batch), exc)
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            delay = self.backoff.next_delay()
            self._pause(delay)
            reason = reasons.connection_failed(host, exc, within=self.timeout)
            self._mark_down(reason)
            self.problem("network", "request failed (%s); retrying in %.1fs", reason, delay)
            return
        if status == 429:
            self._rate_limited(retry_after(ra))
            return
        if 400 <= status < 500 and self.refused(batch, status, body):
            self._mark_up()
            self._mark_data()
            return
        if status in (401, 403):
            reason = self.unauthorized(status, body, host)
            self._pause(self.backoff.next_delay())
            self._mark_down(reason)
            self.problem("auth", "%s", reason)
            return
        if status != 200:
            kind = "http_5xx" if status >= 500 else "http_status"
            delay = self.backoff.next_delay() if status >= 500 else 0.0
            self._pause(delay)
            if status >= 500:
                self._mark_down(reasons.answered(host, status))
            self.problem(kind, "unexpected HTTP %d for %s", status, ",".join(batch))
            return
        try:
            data = orjson.loads(body)
            self.parse(batch, data)
        except (ValueError, TypeError, KeyError) as exc:
            self.problem("malformed", "malformed response for %s: %s", ",".join(batch), exc)
            return
        self.backoff.reset()
        self._mark_up()
        self._mark_data()


async def _read_limited(resp: aiohttp.ClientResponse) -> bytes:
    """Read a response body of at most :data:`MAX_BODY` bytes, else raise :class:`BodyTooLarge`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(f"response body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (not bool, not NaN), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if f == f and f not in (float("inf"), float("-inf")) else None
