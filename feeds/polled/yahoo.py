"""``yahoo``: Yahoo Finance's UNOFFICIAL, undocumented v7 quote endpoint, polled in batches.

Yahoo publishes no API for this; the endpoint, its fields and its limits can change or
vanish without notice, and its terms may not allow your use. It needs a session cookie
(from ``fc.yahoo.com``) and a crumb (``/v1/test/getcrumb``) sent as ``crumb=``; both are
fetched on start and again after a 401. One request carries up to 50 symbols
(``/v7/finance/quote?symbols=AAPL,MSFT&formatted=false``). Unknown symbols are simply
missing from ``quoteResponse.result``; they are reported once and polled on.

Reference data: none. Yahoo has no symbol list, only a search (``/v1/finance/search?q=``), so
:meth:`YahooFeed.load_reference` says it cannot tell and the symbols of this feed stay ``pending``.

History (:meth:`YahooFeed.load_history`), as UNOFFICIAL: the v8 chart endpoint
``/v8/finance/chart/{symbol}?interval=&period1=&period2=&includePrePost=false`` (UNIX seconds) with the
session's cookie and crumb, paced by the same bucket as the quotes: ``1m`` and ``5m`` as they are, ``1h``
from ``5m`` bars merged into clock hours (Yahoo's ``60m`` bars start at the half hour), ``1d`` as they are
(Yahoo stamps them at the session's open: moved to midnight in the exchange's time zone); no ``1s``. Intraday bars go back 60 days
at most (the start is moved up to that), ``1m`` a week per request. Null rows (intervals without trades) and
the 0-volume bar stamped at the session's close are skipped; a symbol Yahoo does not know (404) has no bars.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp

from feeds import history
from feeds.errors import AuthFailed, Malformed, RateLimited
from feeds.options import FeedOptions
from feeds.polled.engine import PollingFeed, number
from feeds.ratelimit import retry_after
from feeds.simhistory import aggregate
from ticker.bars import Bar, DayStart, zone_day_start
from ticker.directory import SymbolInfo

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
CRUMB_URL = "https://query2.finance.yahoo.com/v1/test/getcrumb"
COOKIE_URL = "https://fc.yahoo.com"
DEFAULT_INTERVAL = 5.0  # seconds between polls of the demand
DEFAULT_RATE = 0.5  # requests per second (Yahoo publishes no limit; be gentle)
BATCH = 50  # symbols per request
CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/"
DAY_MS = 86_400_000
#: Our intervals: (Yahoo's interval asked, the span of one request in ms, how far back it goes in ms).
CHART: dict[str, tuple[str, int | None, int | None]] = {
    "1m": ("1m", 7 * DAY_MS, 29 * DAY_MS),
    "5m": ("5m", 59 * DAY_MS, 59 * DAY_MS),
    "1h": ("5m", 59 * DAY_MS, 59 * DAY_MS),  # merged into clock hours
    "1d": ("1d", None, None),
}


def _num(value: Any) -> float | None:
    """A number, also in Yahoo's ``formatted=true`` form ``{"raw": 1.2, "fmt": "1.20"}``."""
    if isinstance(value, dict):
        value = value.get("raw")
    return number(value)


def parse_chart(data: Any, rows: history.BarRows, days: bool = False) -> None:
    """Keep the bars of a v8 chart answer (``timestamp`` and ``indicators.quote[0]`` arrays, nulls skipped,
    the 0-volume bar at the session's close skipped); ``days``: day bars, stamped at midnight in the
    exchange's time zone (``meta.exchangeTimezoneName``) rather than at the session's open."""
    if not isinstance(data, dict) or not isinstance(data.get("chart"), dict):
        raise Malformed("chart: expected an object with chart")
    chart = data["chart"]
    if chart.get("error") is not None or not isinstance(chart.get("result"), list) or not chart["result"]:
        raise Malformed(f"chart: error {str(chart.get('error'))[:200]}")
    result = chart["result"][0]
    stamps = result.get("timestamp") or []  # absent when there are no bars
    if not stamps:
        return
    try:
        quote = result["indicators"]["quote"][0]
        cols = [quote[k] for k in ("open", "high", "low", "close", "volume")]
    except (KeyError, IndexError, TypeError):
        raise Malformed("chart: no indicators.quote[0] open/high/low/close/volume") from None
    if not isinstance(stamps, list) or any(not isinstance(c, list) or len(c) != len(stamps) for c in cols):
        raise Malformed("chart: timestamp and the quote arrays differ in length")
    meta = result.get("meta") if isinstance(result.get("meta"), dict) else {}
    close_at = ((meta.get("currentTradingPeriod") or {}).get("regular") or {}).get("end")
    midnight = _day_start(meta.get("exchangeTimezoneName")) if days else None
    for t, o, h, low, c, v in zip(stamps, *cols, strict=True):
        if t == close_at and v == 0:
            continue  # the session's closing stamp, not a bar
        ms = int(t * 1000) if isinstance(t, int | float) and not isinstance(t, bool) else None
        if ms is not None and midnight is not None:
            ms = midnight(ms)
        rows.add(ms, o, h, low, c, v)


def _day_start(zone: Any) -> DayStart | None:
    """Midnight in the exchange's time zone (an IANA name), None for a name this system does not know."""
    if not isinstance(zone, str) or not zone:
        return None
    try:
        return zone_day_start(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return None


class YahooFeed(PollingFeed):
    """Polls the v7 quote endpoint in batches (Yahoo's own symbols: ``AAPL``, ``BRK-B``, ``BTC-USD``)."""

    batch_size = BATCH
    # Keep cookies of IP-address hosts too (a proxy or a local fake given by --feed-url).
    cookies_for_ip_hosts = True

    def __init__(
        self,
        *,
        url: str | None = None,
        interval: float = DEFAULT_INTERVAL,
        rate: float = DEFAULT_RATE,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        name: str = "yahoo",
    ) -> None:
        super().__init__(
            name,
            interval=interval,
            rate=rate,
            burst=1.0,
            concurrency=2,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        if url:
            base = url.rstrip("/")
            self.quote_url = base + "/v7/finance/quote"
            self.crumb_url = base + "/v1/test/getcrumb"
            self.cookie_url = base + "/"
            self.chart_url = base + "/v8/finance/chart/"
        else:
            self.quote_url, self.crumb_url, self.cookie_url = QUOTE_URL, CRUMB_URL, COOKIE_URL
            self.chart_url = CHART_URL
        self._crumb: str | None = None
        self._auth_lock = asyncio.Lock()

    async def authenticate(self, session: aiohttp.ClientSession) -> None:
        if self._crumb is not None:
            return
        async with self._auth_lock:
            if self._crumb is not None:
                return
            # The cookie host answers 404 but sets the session cookie; only the cookie matters.
            async with session.get(self.cookie_url, allow_redirects=False) as resp:
                await resp.read()
            self.requests += 1
            async with session.get(self.crumb_url, allow_redirects=False) as resp:
                body = (await resp.content.read(1024)).decode("utf-8", "replace").strip()
                status, ra = resp.status, resp.headers.get("Retry-After")
            self.requests += 1
            if status == 429:
                raise RateLimited(retry_after(ra))
            if status != 200 or not body or len(body) > 64 or "<" in body or " " in body:
                raise AuthFailed(f"could not get a Yahoo crumb (HTTP {status})")
            self._crumb = body

    async def load_reference(self) -> list[SymbolInfo] | None:
        """None: Yahoo publishes no list of its symbols (only a search by text), so this feed cannot tell
        which symbols it carries; they stay ``pending`` until quotes show them."""
        return None

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Bars of ``symbol`` from the v8 chart endpoint (see the module docstring); None for ``1s``."""
        spec = CHART.get(interval)
        if spec is None:
            return None
        asked, span, back = spec
        if back is not None:
            start_ms = max(start_ms, int(time.time() * 1000) - back)
        rows = history.BarRows()
        own = self._session is None  # not started: a session of its own for this load
        session = self.make_session() if own else self._session
        assert session is not None
        if own:
            self._crumb = None  # a crumb goes with its session's cookie
        try:
            # the chart may answer without a crumb; its own refusal says more
            with contextlib.suppress(AuthFailed, RateLimited, aiohttp.ClientError, OSError, TimeoutError):
                await self.authenticate(session)
            for lo, hi in history.windows(start_ms, end_ms, span or max(1, end_ms - start_ms)):
                await history.take_token(self.bucket)
                params = {
                    "interval": asked,
                    "period1": str(lo // 1000),
                    "period2": str(-(-hi // 1000)),
                    "includePrePost": "false",
                }
                if self._crumb:
                    params["crumb"] = self._crumb
                self.requests += 1
                try:
                    data = await history.get_json(
                        session, self.chart_url + symbol, what="yahoo chart", params=params, missing=(404,)
                    )
                except AuthFailed:
                    self._crumb = None  # cookie and crumb again next time
                    raise
                if data is None:
                    return []
                parse_chart(data, rows, days=interval == "1d")
        finally:
            if own:
                await session.close()
        if interval == "1h":
            return aggregate(
                rows.result(start_ms - start_ms % 3_600_000, end_ms), 3_600_000, start_ms, end_ms
            )
        return rows.result(start_ms, end_ms)

    def unauthorized(self, status: int, body: bytes, host: str = "upstream") -> str:
        self._crumb = None  # fetch cookie and crumb again before the next poll
        return f"{host} refused the session (HTTP {status}); renewing cookie and crumb"

    def request(self, batch: Sequence[str]) -> tuple[str, dict[str, str], dict[str, str]]:
        params = {"symbols": ",".join(batch), "formatted": "false"}
        if self._crumb:
            params["crumb"] = self._crumb
        return self.quote_url, params, {}

    def parse(self, batch: Sequence[str], data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("quoteResponse"), dict):
            raise ValueError("response without a quoteResponse object")
        qr = data["quoteResponse"]
        if qr.get("error") is not None:
            raise ValueError(f"upstream error: {str(qr['error'])[:200]}")
        result = qr.get("result")
        if not isinstance(result, list):
            raise ValueError("quoteResponse.result is not a list")
        wanted = set(batch)
        seen: set[str] = set()
        now_ms = int(time.time() * 1000)
        for item in result:
            sym = item.get("symbol") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(sym, str):
                self.problem("malformed", "quote item without a symbol: %.200r", item)
                continue
            sym = sym.upper()
            if sym not in wanted:
                continue
            price = _num(item.get("regularMarketPrice"))
            if price is None:  # listed but without a price (delisted, not yet traded)
                continue
            seen.add(sym)
            self.report_known(sym)
            t = _num(item.get("regularMarketTime"))
            bid, ask = _num(item.get("bid")), _num(item.get("ask"))
            self.offer(
                self.book.update(
                    sym,
                    int(t * 1000) if t and t > 0 else now_ms,
                    price=price,
                    bid=bid if bid else None,  # Yahoo sends 0 outside trading hours
                    ask=ask if ask else None,
                    volume=_num(item.get("regularMarketVolume")),
                    prev_close=_num(item.get("regularMarketPreviousClose")) or None,
                    change=_num(item.get("regularMarketChange")),
                    change_percent=_num(item.get("regularMarketChangePercent")),
                    open=_num(item.get("regularMarketOpen")) or None,
                    high=_num(item.get("regularMarketDayHigh")) or None,
                    low=_num(item.get("regularMarketDayLow")) or None,
                )
            )
        for sym in wanted - seen:
            self.report_unknown(sym)


def create(options: FeedOptions) -> YahooFeed:
    """``--feed yahoo``."""
    return YahooFeed(**options.poll_kwargs())
