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
"""

from __future__ import annotations

import re
from typing import Any

from yarl import URL

from feeds.credentials import require_env
from feeds.errors import Malformed
from feeds.options import FeedOptions
from feeds.streaming.engine import StreamFeed
from feeds.wire import epoch_ms, num, text

SYMBOL_RE = re.compile(r"^([A-Z][A-Z0-9]{0,9}(\.[A-Z]{1,2})?|[A-Z0-9]+:[A-Z0-9_.\-]+)$")


class FinnhubFeed(StreamFeed):
    """Finnhub real-time trades."""

    default_url = "wss://ws.finnhub.io"
    max_batch = 50

    def __init__(self, name: str = "finnhub", *, token: str, max_symbols: int | None = 50, **kw: Any) -> None:
        super().__init__(name, max_symbols=max_symbols, **kw)
        self._token = token

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
