"""Polygon stocks WebSocket feed (``POLYGON_API_KEY``): trades ``T.SYM`` and quotes ``Q.SYM``.

Real time at ``wss://socket.polygon.io/stocks``; the 15-minute delayed cluster is
``--feed-url wss://delayed.polygon.io/stocks``. Symbols are US tickers (``AAPL``). The
session is: ``[{"ev":"status","status":"connected"}]`` → ``{"action":"auth","params":KEY}``
→ ``[{"ev":"status","status":"auth_success"}]`` → ``{"action":"subscribe","params":
"T.AAPL,Q.AAPL"}``. Every server frame is a JSON array of events and may carry several.
``auth_failed`` keeps the feed down (retrying with growing backoff); ``max_connections``
(a second connection with the same key disconnects the first) reconnects with backoff.
"""

from __future__ import annotations

import re
from typing import Any

from feeds.credentials import require_env
from feeds.errors import AuthFailed, Malformed, UpstreamError
from feeds.options import FeedOptions
from feeds.streaming.engine import StreamFeed
from feeds.streaming.link import UpstreamLink
from feeds.wire import book_fields, epoch_ms, text, trade_fields

SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z]{1,2})?$")
IGNORED = frozenset({"A", "AM", "LULD", "NOI"})


class PolygonFeed(StreamFeed):
    """Polygon stocks trades and quotes."""

    default_url = "wss://socket.polygon.io/stocks"
    max_batch = 100

    def __init__(self, name: str = "polygon", *, api_key: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        self._api_key = api_key

    def owns(self, symbol: str) -> bool:
        return SYMBOL_RE.match(symbol) is not None

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
        return [{"action": "subscribe", "params": ",".join(f"T.{s},Q.{s}" for s in symbols)}]

    def unsubscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"action": "unsubscribe", "params": ",".join(f"T.{s},Q.{s}" for s in symbols)}]

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
            raise AuthFailed(f"polygon refused the key: {detail}")
        if status == "max_connections":
            raise UpstreamError(f"polygon: {detail or 'too many connections'}", "connection_limit")
        if status in ("success", "connected", "auth_success"):
            return
        self.problem("upstream_error", f"polygon status {str(status)[:40]}: {detail}")


def create(options: FeedOptions) -> PolygonFeed:
    """``--feed polygon``."""
    (api_key,) = require_env("polygon", "POLYGON_API_KEY")
    return PolygonFeed("polygon", api_key=api_key, **options.stream_kwargs())
