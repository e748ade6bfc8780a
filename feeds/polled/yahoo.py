"""``yahoo``: Yahoo Finance's UNOFFICIAL, undocumented v7 quote endpoint, polled in batches.

Yahoo publishes no API for this; the endpoint, its fields and its limits can change or
vanish without notice, and its terms may not allow your use. It needs a session cookie
(from ``fc.yahoo.com``) and a crumb (``/v1/test/getcrumb``) sent as ``crumb=``; both are
fetched on start and again after a 401. One request carries up to 50 symbols
(``/v7/finance/quote?symbols=AAPL,MSFT&formatted=false``). Unknown symbols are simply
missing from ``quoteResponse.result``; they are reported once and polled on.

Reference data: none. Yahoo has no symbol list, only a search (``/v1/finance/search?q=``), so
:meth:`YahooFeed.load_reference` says it cannot tell and the symbols of this feed stay ``pending``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from feeds.errors import AuthFailed, RateLimited
from feeds.options import FeedOptions
from feeds.polled.engine import PollingFeed, number
from feeds.ratelimit import retry_after
from ticker.directory import SymbolInfo

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
CRUMB_URL = "https://query2.finance.yahoo.com/v1/test/getcrumb"
COOKIE_URL = "https://fc.yahoo.com"
DEFAULT_INTERVAL = 5.0  # seconds between polls of the demand
DEFAULT_RATE = 0.5  # requests per second (Yahoo publishes no limit; be gentle)
BATCH = 50  # symbols per request


def _num(value: Any) -> float | None:
    """A number, also in Yahoo's ``formatted=true`` form ``{"raw": 1.2, "fmt": "1.20"}``."""
    if isinstance(value, dict):
        value = value.get("raw")
    return number(value)


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
        else:
            self.quote_url, self.crumb_url, self.cookie_url = QUOTE_URL, CRUMB_URL, COOKIE_URL
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
