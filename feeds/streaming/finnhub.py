"""Finnhub WebSocket trades feed (token from ``FINNHUB_TOKEN``).

Symbols are Finnhub's: US stocks as tickers (``AAPL``, ``BRK.B``), other venues as
``EXCHANGE:SYMBOL`` (``BINANCE:BTCUSDT``, ``OANDA:EUR_USD``). One subscribe or unsubscribe
message per symbol; a ``trade`` frame may carry several trades (``s`` symbol, ``p`` price,
``t`` epoch ms, ``v`` volume, which is 0 on some forex and crypto venues). Finnhub only
sends trades, so quotes carry price and accumulated volume but no bid/ask. The plan's
symbol limit (about 50 on the free plan) is enforced here (``--finnhub-max-symbols``): the
symbols over it are logged, counted and shown in the feed's health instead of silently
missing. ``{"type": "ping"}`` frames and ``{"type": "error"}`` frames (reported by users,
not in the official docs) are understood; "too many symbols" lowers the limit to what the
provider accepted. The token travels in the URL query, which is never logged.

Reference data (shared with ``finnhub-rest``, :func:`load_finnhub_reference`):
``GET /api/v1/stock/symbol?exchange=US`` (every US listing, one JSON array of tens of thousands of rows,
read up to 64 MiB), plus the crypto and forex venues of :data:`VENUES` (``/crypto/symbol``, ``/forex/symbol``), the token in the
``X-Finnhub-Token`` header. The US list must load; a venue list that fails keeps that venue's entries of the
last load, and fails the whole load when there are none (the directory would refuse the venue's symbols).

History (both Finnhub feeds, :class:`FinnhubCandles`): ``GET /api/v1/stock/candle?symbol=&resolution=&from=&to=``
(``1m`` → ``1``, ``5m`` → ``5``, ``1h`` → ``60``, ``1d`` → ``D``; no ``1s``; ``from``/``to`` in UNIX seconds),
the token in the ``X-Finnhub-Token`` header, paced by the feed's reference bucket (the free plan's 60 calls a
minute); intraday spans are asked a month at a time (Finnhub's limit per request). ``s: no_data`` is no
bars. Candles are a premium endpoint: a 403 (a plan without them) means this feed has no history, and it
stops asking. Symbols of a venue (``BINANCE:BTCUSDT``) have no stock candles: None.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from yarl import URL

from feeds import history, reference
from feeds.credentials import require_env
from feeds.errors import FeedError, Malformed
from feeds.options import FeedOptions
from feeds.ratelimit import wait_for_token
from feeds.reference import Rows, asset_type, text_or
from feeds.streaming.engine import StreamFeed
from feeds.wire import epoch_ms, num, text
from ticker.bars import Bar
from ticker.directory import SymbolInfo
from ticker.tokenbucket import TokenBucket

SYMBOL_RE = re.compile(r"^([A-Z][A-Z0-9]{0,9}(\.[A-Z]{1,2})?|[A-Z0-9]+:[A-Z0-9_.\-]+)$")
REST_URL = "https://finnhub.io"
REST_HOSTS = {"finnhub.io": REST_URL}
REFERENCE_MAX_BODY = 64 * 1024 * 1024  # bytes: the US list is tens of thousands of rows in one array
#: Venue lists loaded besides the US stocks: (endpoint kind, exchange parameter, venue name, asset type).
VENUES = (
    ("crypto", "binance", "Binance", "crypto"),
    ("crypto", "coinbase", "Coinbase", "crypto"),
    ("forex", "oanda", "OANDA", "fx"),
)
FREE_PLAN_RATE = 1.0  # requests per second: the free plan's 60 calls per minute
CREDENTIALS = ("FINNHUB_TOKEN",)
#: Our intervals as candle resolutions; no seconds.
RESOLUTIONS = {"1m": "1", "5m": "5", "1h": "60", "1d": "D"}
INTRADAY_SPAN_MS = 30 * 86_400_000  # intraday candles: at most a month per request


def parse_stock_symbols(data: Any, rows: Rows) -> None:
    """Keep the rows of a ``/stock/symbol`` answer: ``symbol`` (what the API and the stream take),
    ``description`` as the name, ``mic`` as the exchange, ``type`` mapped, ``currency``."""

    def row(r: dict[str, Any]) -> None:
        rows.keep(
            r.get("symbol"),
            r.get("description"),
            exchange=r.get("mic"),
            type=asset_type(r.get("type"), "other" if r.get("type") else "stock"),
            currency=text_or(r.get("currency"), "USD"),
        )

    rows.each(data, "stock symbols", row)


def parse_venue_symbols(data: Any, rows: Rows, exchange: str, venue: str, kind: str) -> None:
    """Keep the rows of a ``/crypto/symbol`` or ``/forex/symbol`` answer (``BINANCE:BTCUSDT``,
    ``OANDA:EUR_USD``); the currency is the quote of ``displaySymbol`` (``BTC/USDT``)."""
    prefix = exchange.upper() + ":"

    def row(r: dict[str, Any]) -> None:
        symbol = r.get("symbol")
        if isinstance(symbol, str) and ":" not in symbol:
            symbol = prefix + symbol  # a row without its venue prefix (seen in Finnhub's own sample)
        pair = text_or(r.get("displaySymbol"))
        quote = pair.rpartition("/")[2] if "/" in pair else ""
        rows.keep(
            symbol,
            r.get("description") or pair,
            exchange=venue,
            type=kind,
            currency=quote or "USD",
        )

    rows.each(data, f"{exchange} symbols", row)


async def load_finnhub_reference(
    api: str,
    token: str,
    rows: Rows,
    *,
    bucket: TokenBucket,
    venues: dict[str, list[SymbolInfo]],
    max_body: int = REFERENCE_MAX_BODY,
    request_timeout: float = reference.TIMEOUT,
    log: logging.Logger,
) -> None:
    """Fill ``rows`` from Finnhub's symbol lists under ``api`` (``.../api/v1``), paced by ``bucket``.

    The US stock list must load (its errors are raised). ``venues`` holds each venue's entries of the
    last load (the caller keeps it between loads; updated here): a venue list of :data:`VENUES` that fails
    keeps those, logged; with none to keep, its error is raised and the whole load is retried later."""
    headers = {"X-Finnhub-Token": token}
    async with reference.session(request_timeout) as http:
        await wait_for_token(bucket)
        await reference.fetch_rows(
            http,
            api + "/stock/symbol",
            rows,
            parse_stock_symbols,
            what="finnhub stock symbols",
            params={"exchange": "US"},
            headers=headers,
            max_body=max_body,
            credentials=CREDENTIALS,
        )
        for kind_path, exchange, venue, kind in VENUES:
            await wait_for_token(bucket)
            what = f"finnhub {kind_path} symbols of {exchange}"
            start = len(rows.entries)

            def parse(
                data: Any, rows: Rows, exchange: str = exchange, venue: str = venue, kind: str = kind
            ) -> None:
                parse_venue_symbols(data, rows, exchange, venue, kind)

            try:
                await reference.fetch_rows(
                    http,
                    f"{api}/{kind_path}/symbol",
                    rows,
                    parse,
                    what=what,
                    params={"exchange": exchange},
                    headers=headers,
                    max_body=max_body,
                    credentials=CREDENTIALS,
                )
            except FeedError as exc:
                kept = venues.get(exchange)
                if not kept:
                    raise
                log.warning(
                    "%s not loaded (%s); keeping its %d entries of the last load", what, exc, len(kept)
                )
                rows.restore(kept)
                continue
            venues[exchange] = rows.entries[start:]


def parse_candles(data: Any, rows: history.BarRows) -> None:
    """Keep the candles of a ``/stock/candle`` answer (parallel arrays ``t`` in seconds, ``o h l c v``);
    ``s: no_data`` has none."""
    if not isinstance(data, dict):
        raise Malformed("candles: expected a JSON object")
    status = data.get("s")
    if status == "no_data":
        return
    if status != "ok":
        raise Malformed(f"candles: status {str(status)[:40]!r}")
    cols: list[list[Any]] = []
    for key in ("t", "o", "h", "l", "c", "v"):
        col = data.get(key)
        if not isinstance(col, list) or (cols and len(col) != len(cols[0])):
            raise Malformed("candles: t, o, h, l, c and v must be arrays of one length")
        cols.append(col)
    for t, o, h, low, c, v in zip(*cols, strict=True):
        ms = t * 1000 if isinstance(t, int | float) and not isinstance(t, bool) else None
        rows.add(ms, o, h, low, c, v)


class FinnhubCandles:
    """Finnhub's stock candles for one feed (see the module docstring): ``api`` its REST base
    (``.../api/v1``), ``bucket`` the feed's request pacing."""

    def __init__(self, api: str, token: str, bucket: Callable[[], TokenBucket], log: logging.Logger) -> None:
        self.api = api
        self._token = token
        self._bucket = bucket
        self._log = log
        #: Finnhub refused candles (a plan without them): no more asking.
        self.refused = False

    async def load(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        resolution = RESOLUTIONS.get(interval)
        if resolution is None or ":" in symbol or self.refused:
            return None
        span = INTRADAY_SPAN_MS if interval != "1d" else max(1, end_ms - start_ms)
        rows = history.BarRows()
        async with history.session() as http:
            for lo, hi in history.windows(start_ms, end_ms, span):
                await history.take_token(self._bucket())
                data = await history.get_json(
                    http,
                    self.api + "/stock/candle",
                    what="finnhub candles",
                    params={
                        "symbol": symbol,
                        "resolution": resolution,
                        "from": str(lo // 1000),
                        "to": str((hi - 1) // 1000),
                    },
                    headers={"X-Finnhub-Token": self._token},
                    credentials=CREDENTIALS,
                    missing=(403,),
                )
                if data is None:
                    self.refused = True
                    self._log.warning(
                        "finnhub refused stock candles (HTTP 403: a plan without them); no history"
                    )
                    return None
                parse_candles(data, rows)
        return rows.result(start_ms, end_ms)


class FinnhubFeed(StreamFeed):
    """Finnhub real-time trades."""

    default_url = "wss://ws.finnhub.io"
    max_batch = 50

    reference_max_body = REFERENCE_MAX_BODY
    reference_rate = FREE_PLAN_RATE  # reference requests per second (Finnhub's limits count them)
    credentials_env = CREDENTIALS

    def __init__(
        self,
        name: str = "finnhub",
        *,
        token: str,
        max_symbols: int | None = 50,
        reference_url: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, max_symbols=max_symbols, **kw)
        self._token = token
        base = reference_url or reference.reference_base(self.url, REST_HOSTS, REST_URL)
        self.reference_api = base.rstrip("/") + "/api/v1"
        self._reference_bucket: TokenBucket | None = None
        self._venues: dict[str, list[SymbolInfo]] = {}  # each venue's entries of the last load
        self.candles = FinnhubCandles(self.reference_api, token, self._requests, self.log)

    def _requests(self) -> TokenBucket:
        """The pacing of this feed's REST requests (reference lists and candles)."""
        if self._reference_bucket is None:
            self._reference_bucket = TokenBucket(self.reference_rate, 1.0, time.monotonic())
        return self._reference_bucket

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Finnhub's stock candles (:class:`FinnhubCandles`)."""
        return await self.candles.load(symbol, interval, start_ms, end_ms)

    async def load_reference(self) -> list[SymbolInfo]:
        """US stocks and the crypto and forex venues of :data:`VENUES` (Finnhub's symbol lists)."""
        bucket = self._requests()
        rows = self.reference_rows()
        await load_finnhub_reference(
            self.reference_api,
            self._token,
            rows,
            bucket=bucket,
            venues=self._venues,
            max_body=self.reference_max_body,
            request_timeout=self.reference_timeout,
            log=self.log,
        )
        return self.reference_loaded(rows, "finnhub symbol lists")

    def owns(self, symbol: str) -> bool:
        return SYMBOL_RE.match(symbol) is not None

    def connect_url(self) -> str:
        return str(URL(self.url).update_query(token=self._token))

    def subscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"type": "subscribe", "symbol": s} for s in symbols]

    def unsubscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"type": "unsubscribe", "symbol": s} for s in symbols]

    def _on_trade(self, trade: Any) -> None:
        if not isinstance(trade, dict):
            raise Malformed("expected a trade object")
        self.update(
            text(trade.get("s"), "s"),
            epoch_ms(trade.get("t"), "t"),
            price=num(trade.get("p"), "p"),
            size=num(trade.get("v", 0), "v"),
        )

    def on_message(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise Malformed("expected a JSON object")
        kind = msg.get("type")
        if kind == "trade":
            self.each_item(msg.get("data"), self._on_trade, "trade")
        elif kind == "ping":
            return  # liveness only
        elif kind == "error":
            detail = str(msg.get("msg", ""))[:200]
            if "too many symbols" in detail.lower():
                self.provider_limit_hit(self.last_subscribed[-1:], f"finnhub: {detail}")
            else:
                self.problem("upstream_error", f"finnhub error: {detail}")
        else:
            self.problem("unexpected", f"unexpected message type {str(kind)[:40]!r}")


def create(options: FeedOptions) -> FinnhubFeed:
    """``--feed finnhub``."""
    (token,) = require_env("finnhub", "FINNHUB_TOKEN")
    return FinnhubFeed(
        "finnhub", token=token, max_symbols=options.finnhub_max_symbols or None, **options.stream_kwargs()
    )
