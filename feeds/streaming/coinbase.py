"""Coinbase Exchange WebSocket feed: the public ``ticker`` channel, no key.

Symbols are Coinbase product ids as they are (``BTC-USD``, ``ETH-EUR``). A ticker message
carries the last trade price, best bid/ask, 24-hour volume, the high and low of the last 24 hours
and the price 24 hours ago (``open_24h``: the quote's open, and its previous close for change and
change percent); all decimals arrive as strings. The server drops a client that subscribes to nothing within 5 seconds
of connecting, so every connection at once subscribes the ``heartbeat`` channel of one
product: that keeps an idle connection open and proves it alive every second.

Reference data: ``GET /products`` on the Exchange REST API (public, no key; one JSON array of every
product, no paging), keeping the products that are ``online`` and not ``trading_disabled``.

History (:meth:`CoinbaseFeed.load_history`): ``GET /products/{id}/candles?granularity=&start=&end=`` (public),
``1m`` → 60, ``5m`` → 300, ``1h`` → 3600, ``1d`` → 86400 seconds (no ``1s``), at most 300 candles per
request, so a range is asked in windows of 300 candles (the newest :data:`feeds.history.MAX_PAGES` of them).
A candle is ``[time s, low, high, open, close, volume]``, newest first; candles before ``start`` are dropped.
"""

from __future__ import annotations

import re
import time
from typing import Any

from feeds import history, reference
from feeds.errors import Malformed
from feeds.options import FeedOptions
from feeds.reference import Rows, text_or
from feeds.streaming.engine import StreamFeed
from feeds.streaming.link import UpstreamLink
from feeds.wire import num, opt_num, rfc3339_ms, text
from ticker.bars import Bar
from ticker.directory import SymbolInfo
from ticker.tokenbucket import TokenBucket

PRODUCT_RE = re.compile(r"^[A-Z0-9]{2,10}-[A-Z0-9]{2,10}$")
_INVALID_RE = re.compile(r"^(\S+) is not a valid product")
REST_URL = "https://api.exchange.coinbase.com"
#: Coinbase domains and the REST base of each (the sandbox has its own, smaller product list).
REST_HOSTS = {
    "sandbox.exchange.coinbase.com": "https://api-public.sandbox.exchange.coinbase.com",
    "coinbase.com": REST_URL,
}
VENUE = "Coinbase"
#: Our intervals as candle granularities in seconds; no ``1s``.
GRANULARITY = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
MAX_CANDLES = 300  # per request
HISTORY_RATE = 5.0  # candle requests per second (Coinbase allows about 10 per second per IP, public)


def parse_candles(data: Any, rows: history.BarRows) -> None:
    """Keep the candles of a ``/products/{id}/candles`` answer: ``[time s, low, high, open, close, volume]``."""
    if not isinstance(data, list):
        raise Malformed("candles: expected a JSON array")
    for c in data:
        if (
            not isinstance(c, list)
            or len(c) < 6
            or isinstance(c[0], bool)
            or not isinstance(c[0], int | float)
        ):
            rows.skipped += 1
            continue
        rows.add(c[0] * 1000, c[3], c[2], c[1], c[4], c[5])


def parse_products(data: Any, rows: Rows) -> None:
    """Keep the products of a ``GET /products`` answer that trade now (``online``, not ``trading_disabled``)."""

    def product(p: dict[str, Any]) -> None:
        if p.get("trading_disabled") is True or p.get("status", "online") != "online":
            rows.leave_out("not trading")
            return
        base, quote = text_or(p.get("base_currency")), text_or(p.get("quote_currency"))
        name = f"{base}/{quote}" if base and quote else text_or(p.get("display_name"))
        rows.keep(p.get("id"), name, exchange=VENUE, type="crypto", currency=quote or "USD")

    rows.each(data, "products", product)


class CoinbaseFeed(StreamFeed):
    """Coinbase Exchange ``ticker`` + ``heartbeat`` channels."""

    default_url = "wss://ws-feed.exchange.coinbase.com"
    max_batch = 100
    control_rate = 7  # at most 8 frames in any second: the documented inbound limit is about 8-10
    client_ping = False  # the heartbeat channel proves the link alive every second
    heartbeat_product = "BTC-USD"

    def __init__(self, name: str = "coinbase", *, reference_url: str | None = None, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.reference_url = reference_url or reference.reference_base(self.url, REST_HOSTS, REST_URL)
        self._history_bucket: TokenBucket | None = None

    def owns(self, symbol: str) -> bool:
        return PRODUCT_RE.match(symbol) is not None

    async def load_reference(self) -> list[SymbolInfo]:
        """Every product Coinbase trades now (``GET /products``)."""
        return await self.reference_get(self.reference_url + "/products", parse_products, "coinbase products")

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Candles of ``symbol`` (see the module docstring); None for ``1s``."""
        seconds = GRANULARITY.get(interval)
        if seconds is None:
            return None
        if self._history_bucket is None:
            self._history_bucket = TokenBucket(HISTORY_RATE, 5.0, time.monotonic())
        rows = history.BarRows()
        step = seconds * 1000
        lo_all = start_ms - start_ms % step  # candle starts: whole buckets
        async with history.session() as http:
            for lo, hi in history.windows(lo_all, end_ms, MAX_CANDLES * step):
                await history.take_token(self._history_bucket)
                data = await history.get_json(
                    http,
                    f"{self.reference_url}/products/{symbol}/candles",
                    what="coinbase candles",
                    params={
                        "granularity": str(seconds),
                        "start": history.rfc3339(lo),
                        "end": history.rfc3339(hi - 1),
                    },
                )
                parse_candles(data, rows)
        return rows.result(start_ms, end_ms)

    async def after_connect(self, link: UpstreamLink) -> None:
        await link.send(
            {
                "type": "subscribe",
                "channels": [{"name": "heartbeat", "product_ids": [self.heartbeat_product]}],
            }
        )

    def subscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"type": "subscribe", "product_ids": symbols, "channels": ["ticker"]}]

    def unsubscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"type": "unsubscribe", "product_ids": symbols, "channels": ["ticker"]}]

    def on_message(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise Malformed("expected a JSON object")
        kind = msg.get("type")
        if kind in ("ticker", "ticker_batch"):
            ts = rfc3339_ms(msg["time"]) if "time" in msg else int(time.time() * 1000)
            self.update(
                text(msg.get("product_id"), "product_id"),
                ts,
                price=num(msg.get("price"), "price"),
                bid=opt_num(msg.get("best_bid"), "best_bid"),
                ask=opt_num(msg.get("best_ask"), "best_ask"),
                volume=opt_num(msg.get("volume_24h"), "volume_24h"),
                prev_close=opt_num(msg.get("open_24h"), "open_24h"),
                open=opt_num(msg.get("open_24h"), "open_24h"),  # a rolling 24 hours, as Binance's
                high=opt_num(msg.get("high_24h"), "high_24h"),
                low=opt_num(msg.get("low_24h"), "low_24h"),
            )
        elif kind in ("heartbeat", "subscriptions"):
            return  # liveness (any frame counts) and subscription acks
        elif kind == "error":
            self._on_error(str(msg.get("message", "")), str(msg.get("reason", "")))
        else:
            self.problem("unexpected", f"unexpected message type {str(kind)[:40]!r}")

    def _on_error(self, message: str, reason: str) -> None:
        m = _INVALID_RE.match(reason)
        if m:
            # The whole subscribe failed: drop the bad product and subscribe the rest of its batch again.
            self.invalid_symbol(m.group(1), reason)
            self.resubscribe(s for s in self.last_subscribed if s != m.group(1))
            return
        self.problem("upstream_error", f"coinbase error: {message[:200]} {reason[:200]}".rstrip())


def create(options: FeedOptions) -> CoinbaseFeed:
    """``--feed coinbase``."""
    return CoinbaseFeed("coinbase", **options.stream_kwargs())
