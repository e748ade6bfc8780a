"""``finnhub-rest``: Finnhub's quote endpoint (``GET /api/v1/quote``), polled per demanded symbol.

One request per symbol, round-robin over the demand, within the rate limit: 60 calls per
minute on the free plan by default, never above Finnhub's 30 calls per second cap of every
plan. The token (``FINNHUB_TOKEN``) travels in the ``X-Finnhub-Token`` header, never in a URL.
Response fields: ``c`` current, ``d`` change, ``dp`` percent change, ``h``/``l``/``o`` day
high/low/open, ``pc`` previous close, ``t`` UNIX seconds; all but ``t`` make the quote (a 0 is
"not known"). A symbol Finnhub does not know
comes back as all zeros and is reported, not emitted; one outside the plan gets 403 and is
reported likewise (kind ``no_access``), without marking the feed down.

Reference data: Finnhub's symbol lists, loaded like the ``finnhub`` stream feed does
(:func:`feeds.streaming.finnhub.load_finnhub_reference`), paced by the same token bucket as the quotes.
History: Finnhub's stock candles, as the ``finnhub`` feed loads them (:class:`feeds.streaming.finnhub.FinnhubCandles`),
paced by that bucket too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from feeds.credentials import secret
from feeds.options import FeedOptions
from feeds.polled.engine import PollingFeed, log, number
from feeds.streaming.finnhub import (
    CREDENTIALS,
    REFERENCE_MAX_BODY,
    FinnhubCandles,
    load_finnhub_reference,
)
from ticker.bars import Bar
from ticker.directory import SymbolInfo

DEFAULT_URL = "https://finnhub.io"
FREE_PLAN_RATE = 1.0  # requests per second: the free plan's 60 API calls per minute
MAX_RATE = 30.0  # requests per second: Finnhub's cap on top of every plan's limit
DEFAULT_INTERVAL = 1.0  # seconds: at most one poll per symbol per second


class FinnhubRestFeed(PollingFeed):
    """Polls ``/api/v1/quote`` for each demanded symbol (Finnhub's symbols: ``AAPL``, ``BINANCE:BTCUSDT``)."""

    batch_size = 1
    reference_max_body = REFERENCE_MAX_BODY
    credentials_env = CREDENTIALS

    def __init__(
        self,
        token: str,
        *,
        url: str | None = None,
        interval: float = DEFAULT_INTERVAL,
        rate: float = FREE_PLAN_RATE,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        name: str = "finnhub-rest",
    ) -> None:
        if not token:
            raise ValueError(
                "finnhub-rest needs an API token in FINNHUB_TOKEN (or a file named by FINNHUB_TOKEN_FILE)"
            )
        super().__init__(
            name,
            interval=interval,
            rate=min(rate, MAX_RATE),
            burst=1.0,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        base = (url or DEFAULT_URL).rstrip("/")
        self.api_url = base if base.endswith("/api/v1") else base + "/api/v1"
        self.quote_url = self.api_url + "/quote"
        self._token = token
        self._venues: dict[str, list[SymbolInfo]] = {}  # each venue's entries of the last load
        self.candles = FinnhubCandles(self.api_url, token, lambda: self.bucket, log)

    def __repr__(self) -> str:  # never show the token
        return f"FinnhubRestFeed(url={self.quote_url!r})"

    async def load_reference(self) -> list[SymbolInfo]:
        """Finnhub's US stocks and its crypto and forex venues, as the ``finnhub`` feed loads them."""
        rows = self.reference_rows()
        await load_finnhub_reference(
            self.api_url,
            self._token,
            rows,
            bucket=self.bucket,
            venues=self._venues,
            max_body=self.reference_max_body,
            request_timeout=self.reference_timeout,
            log=log,
        )
        return self.reference_loaded(rows, "finnhub symbol lists")

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Finnhub's stock candles (:class:`~feeds.streaming.finnhub.FinnhubCandles`)."""
        return await self.candles.load(symbol, interval, start_ms, end_ms)

    def request(self, batch: Sequence[str]) -> tuple[str, dict[str, str], dict[str, str]]:
        return self.quote_url, {"symbol": batch[0]}, {"X-Finnhub-Token": self._token}

    def refused(self, batch: Sequence[str], status: int, body: bytes) -> bool:
        # Finnhub answers 403 "You don't have access to this resource." for a symbol outside the plan;
        # a bad token gets 401, so a 403 blocks only this symbol.
        if status != 403:
            return False
        self.report_unknown(batch[0], "no_access", "the plan has no access to")
        return True

    def parse(self, batch: Sequence[str], data: Any) -> None:
        symbol = batch[0]
        if not isinstance(data, dict):
            raise ValueError("quote response is not an object")
        if "error" in data:
            raise ValueError(f"upstream error: {str(data['error'])[:200]}")
        price = number(data.get("c"))
        if price is None:
            raise ValueError("quote response without a numeric 'c'")
        t = number(data.get("t")) or 0.0
        prev_close = number(data.get("pc")) or None
        if price == 0 and t == 0:  # Finnhub's answer for a symbol it does not know
            self.report_unknown(symbol)
            return
        self.report_known(symbol)
        ts_ms = int(t * 1000) if t > 0 else int(time.time() * 1000)
        self.offer(
            self.book.update(
                symbol,
                ts_ms,
                price=price,
                change=number(data.get("d")),
                change_percent=number(data.get("dp")),
                prev_close=prev_close,
                open=number(data.get("o")) or None,
                high=number(data.get("h")) or None,
                low=number(data.get("l")) or None,
            )
        )


def create(options: FeedOptions) -> FinnhubRestFeed:
    """``--feed finnhub-rest``: the token from ``FINNHUB_TOKEN`` (or the file ``FINNHUB_TOKEN_FILE`` names)."""
    return FinnhubRestFeed(secret("FINNHUB_TOKEN") or "", **options.poll_kwargs())
