"""Polygon stocks WebSocket feed (``POLYGON_API_KEY``): trades ``T.SYM`` and quotes ``Q.SYM``.

Real time at ``wss://socket.polygon.io/stocks``; the 15-minute delayed cluster is
``--feed-url wss://delayed.polygon.io/stocks``. Symbols are US tickers (``AAPL``). The
session is: ``[{"ev":"status","status":"connected"}]`` → ``{"action":"auth","params":KEY}``
→ ``[{"ev":"status","status":"auth_success"}]`` → ``{"action":"subscribe","params":
"T.AAPL,Q.AAPL,AM.AAPL"}`` (trades, quotes and per-minute aggregates). Every server frame is a JSON array of events and may carry several.
``auth_failed`` keeps the feed down (retrying with growing backoff); ``max_connections``
(a second connection with the same key disconnects the first) reconnects with backoff.
A per-minute aggregate (``AM``: ``o``/``h``/``l``/``c``, ``v`` the minute's volume, ``s``/``e`` its start and
end in epoch ms) is the provider's final word on that minute: ``ctx.bar(symbol, "1m", bar, final=True)``.

History (:meth:`PolygonFeed.load_history`): ``GET /v2/aggs/ticker/{sym}/range/{n}/{span}/{from}/{to}``
(``adjusted=true&sort=asc&limit=50000``, ``from``/``to`` in epoch ms; ``1m`` → 1 minute, ``5m`` → 5 minute,
``1h`` → 1 hour, ``1d`` → 1 day, stamped at midnight New York; no ``1s``) on the REST host, the key in the
``Authorization`` header, following ``next_url`` (its path and cursor asked of our own REST base) up to
:data:`feeds.history.MAX_PAGES` pages, paced by the same bucket as the reference pages (the free plan's
5 requests per minute; a wait over :data:`feeds.history.MAX_WAIT` is :class:`RateLimited`).

Reference data: ``GET /v3/reference/tickers?market=stocks&active=true&order=asc&sort=ticker&limit=1000``
on the REST host, the key in an ``Authorization: Bearer`` header, following each page's ``next_url``
cursor (on the same host, the key sent again) up to :data:`MAX_PAGES` pages (a list longer than that fails
the load: an incomplete list would make its missing tickers unknown), paced to the free plan's 5 requests
per minute; a 429 waits its ``Retry-After`` (up to a minute; longer ones, and a 429 that keeps coming, end
the load for the runner to retry later) and asks for the same page again.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
from yarl import URL

from feeds import history, reference
from feeds.credentials import require_env
from feeds.errors import AuthFailed, IncompleteReference, Malformed, RateLimited, UpstreamError
from feeds.options import FeedOptions
from feeds.ratelimit import wait_for_token
from feeds.reference import Rows, asset_type, text_or
from feeds.streaming.engine import StreamFeed
from feeds.streaming.link import UpstreamLink
from feeds.wire import book_fields, epoch_ms, text, trade_fields
from ticker.bars import Bar
from ticker.directory import SymbolInfo
from ticker.tokenbucket import TokenBucket

SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z]{1,2})?$")
IGNORED = frozenset({"A", "LULD", "NOI"})
REST_URL = "https://api.polygon.io"
REST_HOSTS = {"polygon.io": REST_URL, "massive.com": "https://api.massive.com"}
TICKERS_PATH = "/v3/reference/tickers"
TICKERS_QUERY = {"market": "stocks", "active": "true", "order": "asc", "sort": "ticker", "limit": "1000"}
MAX_PAGES = 50  # pages of 1000 tickers: far above the ~12,000 active US stock tickers (13 pages)
CREDENTIALS = ("POLYGON_API_KEY",)
FREE_PLAN_RATE = 5 / 60  # requests per second: the Basic plan's 5 requests per minute
RATE_LIMIT_RETRIES = 3  # times one page is asked for again after a 429
MAX_WAIT = 60.0  # seconds: a 429 asking to wait longer (or without Retry-After: this long) ends the load
AGGS_PATH = "/v2/aggs/ticker/"
#: Our intervals as aggregate ranges (multiplier, timespan); no seconds.
TIMESPANS = {"1m": ("1", "minute"), "5m": ("5", "minute"), "1h": ("1", "hour"), "1d": ("1", "day")}
AGGS_QUERY = {"adjusted": "true", "sort": "asc", "limit": "50000"}


def parse_tickers(data: Any, rows: Rows) -> str | None:
    """Keep the active tickers of one ``/v3/reference/tickers`` page; return its ``next_url`` (None: last page)."""
    if not isinstance(data, dict):
        raise Malformed("tickers: expected a JSON object")
    if "results" not in data and data.get("status") not in ("OK", "DELAYED"):
        raise Malformed("tickers: a page with neither results nor status OK")

    def ticker(t: dict[str, Any]) -> None:
        if t.get("active", True) is not True:
            rows.leave_out("inactive")
            return
        rows.keep(
            t.get("ticker"),
            t.get("name"),
            exchange=t.get("primary_exchange"),
            type=asset_type(t.get("type")),
            currency=text_or(t.get("currency_name"), "USD"),
        )

    rows.each(data.get("results", []), "tickers results", ticker)
    nxt = data.get("next_url")
    if nxt is not None and not isinstance(nxt, str):
        raise Malformed("tickers: next_url is not a string")
    return nxt or None


def parse_aggs(data: Any, rows: history.BarRows) -> str | None:
    """Keep the bars of one ``/v2/aggs`` page (``results`` may be missing: no bars); return its ``next_url``."""
    if not isinstance(data, dict):
        raise Malformed("aggregates: expected a JSON object")
    results = data.get("results", [])
    if data.get("status") not in ("OK", "DELAYED") or not isinstance(results, list):
        raise Malformed(f"aggregates: status {str(data.get('status'))[:40]!r} without results")
    for r in results:
        if isinstance(r, dict):
            rows.add(r.get("t"), r.get("o"), r.get("h"), r.get("l"), r.get("c"), r.get("v"))
        else:
            rows.skipped += 1
    nxt = data.get("next_url")
    if nxt is not None and not isinstance(nxt, str):
        raise Malformed("aggregates: next_url is not a string")
    return nxt or None


def aggs_next(next_url: str) -> tuple[str, dict[str, str]]:
    """The path and query (its cursor, never a key) of an aggregates ``next_url``, to ask our own REST base."""
    url = URL(next_url)
    if not url.path.startswith(AGGS_PATH) or "cursor" not in url.query:
        raise Malformed("aggregates: next_url is not an aggregates page with a cursor")
    return url.path, {k: v for k, v in url.query.items() if k.lower() != "apikey"}


def minute_bar(item: dict[str, Any]) -> Bar:
    """An ``AM`` event as the minute's :class:`Bar` (its start ``s``)."""
    return history.stream_bar(epoch_ms(item.get("s"), "s"), item, "AM")


def next_query(next_url: str) -> dict[str, str]:
    """The query of a ``next_url`` (its cursor), to ask our own REST base for the next page with it.

    Only the cursor travels on: the key is never sent to a host a response names."""
    url = URL(next_url)
    if not url.path.endswith(TICKERS_PATH) or "cursor" not in url.query:
        raise Malformed("tickers: next_url is not a tickers page with a cursor")
    return {k: v for k, v in url.query.items() if k.lower() != "apikey"}


class PolygonFeed(StreamFeed):
    """Polygon stocks trades and quotes."""

    default_url = "wss://socket.polygon.io/stocks"
    max_batch = 100

    #: Reference pages per second, sustained (bursts of 5): the free plan's limit; paid plans allow more.
    reference_rate = FREE_PLAN_RATE
    reference_max_pages = MAX_PAGES
    reference_max_wait = MAX_WAIT
    credentials_env = CREDENTIALS

    def __init__(
        self, name: str = "polygon", *, api_key: str, reference_url: str | None = None, **kw: Any
    ) -> None:
        super().__init__(name, **kw)
        self._api_key = api_key
        self.reference_url = reference_url or reference.reference_base(self.url, REST_HOSTS, REST_URL)
        self._reference_bucket: TokenBucket | None = None

    def owns(self, symbol: str) -> bool:
        return SYMBOL_RE.match(symbol) is not None

    async def load_reference(self) -> list[SymbolInfo]:
        """Every active US stock ticker (``/v3/reference/tickers``, page after page)."""
        if self._reference_bucket is None:
            self._reference_bucket = TokenBucket(self.reference_rate, 5.0, time.monotonic())
        rows = self.reference_rows()
        query: dict[str, str] = dict(TICKERS_QUERY)
        cursors: set[str] = set()
        pages = 0
        async with reference.session(self.reference_timeout) as http:
            while pages < self.reference_max_pages:
                nxt = await self._page(http, query, rows)
                pages += 1
                if nxt is None:
                    break
                query = next_query(nxt)
                if query["cursor"] in cursors:
                    raise Malformed("tickers: next_url repeats an earlier cursor")
                cursors.add(query["cursor"])
            else:
                raise IncompleteReference(
                    f"polygon tickers: more than {self.reference_max_pages} pages; the list is incomplete"
                )
        return self.reference_loaded(rows, f"polygon tickers ({pages} page(s))")

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Aggregates of ``symbol`` (see the module docstring); None for ``1s``."""
        span = TIMESPANS.get(interval)
        if span is None:
            return None
        if self._reference_bucket is None:
            self._reference_bucket = TokenBucket(self.reference_rate, 5.0, time.monotonic())
        rows = history.BarRows()
        path = f"{AGGS_PATH}{symbol}/range/{span[0]}/{span[1]}/{start_ms}/{max(start_ms, end_ms - 1)}"
        query = dict(AGGS_QUERY)
        cursors: set[str] = set()
        async with history.session() as http:
            for _ in range(history.MAX_PAGES):
                await history.take_token(self._reference_bucket)
                data = await history.get_json(
                    http,
                    self.reference_url + path,
                    what="polygon aggregates",
                    params=query,
                    headers={"Authorization": f"Bearer {self._api_key}"},
                    credentials=CREDENTIALS,
                )
                nxt = parse_aggs(data, rows)
                if nxt is None:
                    break
                path, query = aggs_next(nxt)
                if query["cursor"] in cursors:
                    raise Malformed("aggregates: next_url repeats an earlier cursor")
                cursors.add(query["cursor"])
            else:
                self.log.warning(
                    "feed %s: %s %s history cut at %d pages", self.name, symbol, interval, history.MAX_PAGES
                )
        return rows.result(start_ms, end_ms)

    async def _page(self, http: aiohttp.ClientSession, query: dict[str, str], rows: Rows) -> str | None:
        """One page into ``rows``, paced to the plan's rate; a 429 waits (``Retry-After``, at most
        ``reference_max_wait``) and asks again. Returns the next page's URL (None: the last page)."""
        assert self._reference_bucket is not None
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            await wait_for_token(self._reference_bucket)
            try:
                return await reference.fetch_rows(
                    http,
                    self.reference_url + TICKERS_PATH,
                    rows,
                    parse_tickers,
                    what="polygon tickers",
                    params=query,
                    headers={"Authorization": f"Bearer {self._api_key}"},
                    max_body=self.reference_max_body,
                    credentials=CREDENTIALS,
                )
            except RateLimited as exc:
                delay = exc.retry_after if exc.retry_after is not None else self.reference_max_wait
                if attempt == RATE_LIMIT_RETRIES or delay > self.reference_max_wait:
                    raise
                self.log.info("feed %s: tickers rate limited; asking again in %.1f s", self.name, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def handshake(self, link: UpstreamLink) -> None:
        await self._expect(link, "connected")
        await link.send({"action": "auth", "params": self._api_key})
        await self._expect(link, "auth_success")

    async def _expect(self, link: UpstreamLink, want: str) -> None:
        while True:
            frame = await self.next_message(link)
            for item in frame if isinstance(frame, list) else [frame]:
                if isinstance(item, dict) and item.get("ev") == "status":
                    if item.get("status") == want:
                        return
                    self._on_status(item)
            self.problem("unexpected", f"expected status {want!r} during the handshake")

    def subscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"action": "subscribe", "params": ",".join(f"T.{s},Q.{s},AM.{s}" for s in symbols)}]

    def unsubscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"action": "unsubscribe", "params": ",".join(f"T.{s},Q.{s},AM.{s}" for s in symbols)}]

    def on_message(self, msg: Any) -> None:
        self.each_item(msg, self._on_event, "event")

    def _on_event(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise Malformed("expected an object in the array")
        ev = item.get("ev")
        if ev == "T":
            self.update(text(item.get("sym"), "sym"), epoch_ms(item.get("t"), "t"), **trade_fields(item))
        elif ev == "Q":
            self.update(text(item.get("sym"), "sym"), epoch_ms(item.get("t"), "t"), **book_fields(item))
        elif ev == "AM":
            self.provider_bar(text(item.get("sym"), "sym"), "1m", minute_bar(item), True)
        elif ev == "status":
            self._on_status(item)
        elif ev in IGNORED:
            return
        else:
            self.problem("unexpected", f"unexpected event {str(ev)[:40]!r}")

    def _on_status(self, item: dict[str, Any]) -> None:
        status = item.get("status")
        detail = str(item.get("message", ""))[:200]
        if status == "auth_failed":
            raise AuthFailed(f"polygon refused the key: {detail}; check POLYGON_API_KEY")
        if status == "max_connections":
            raise UpstreamError(f"polygon: {detail or 'too many connections'}", "connection_limit")
        if status in ("success", "connected", "auth_success"):
            return
        self.problem("upstream_error", f"polygon status {str(status)[:40]}: {detail}")


def create(options: FeedOptions) -> PolygonFeed:
    """``--feed polygon``."""
    (api_key,) = require_env("polygon", "POLYGON_API_KEY")
    return PolygonFeed("polygon", api_key=api_key, **options.stream_kwargs())
