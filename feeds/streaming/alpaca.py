"""Alpaca market data stream v2 (``ALPACA_KEY_ID``, ``ALPACA_SECRET_KEY``): trades and quotes.

``--alpaca-feed iex`` (default, free, IEX only) or ``sip`` (all US exchanges, paid plan)
picks ``wss://stream.data.alpaca.markets/v2/{feed}``. Symbols are US tickers (``AAPL``).
The session is: ``[{"T":"success","msg":"connected"}]`` → ``{"action":"auth",...}`` →
``[{"T":"success","msg":"authenticated"}]`` → ``{"action":"subscribe","trades":[...],
"quotes":[...]}`` → ``[{"T":"subscription",...}]`` (always the full current set). Every
server frame is a JSON array; data is batched. Trades (``T: t``) update price and volume,
quotes (``T: q``) bid and ask; timestamps are RFC 3339 with nanoseconds.

Errors, as documented: 402 auth failed, 408 v2 not enabled, 409 insufficient subscription
→ the feed is down with that reason and retries with growing backoff; 404 auth timeout,
406 connection limit exceeded (another connection uses the keys) and 407 slow client (the
server drops the connection) → reconnect with backoff; 405 symbol limit exceeded → the
refused symbols are reported and the feed holds what Alpaca accepted; 400, 401, 403, 410,
500 → counted and logged. The IEX plan allows 30 symbols (``--alpaca-max-symbols``).

Reference data: the Trading API's ``GET /v2/assets?status=active&asset_class=us_equity`` (the same keys
in ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` headers; one JSON array, no paging), keeping the active,
``tradable`` assets. Paper and live keys each work on their own host only: the paper host is tried first,
then the live one, and the host that answered is asked first next time.
"""

from __future__ import annotations

import re
from typing import Any

from feeds import reference
from feeds.credentials import require_env
from feeds.errors import AuthFailed, FeedConfigError, Malformed, UpstreamError
from feeds.options import ALPACA_IEX_LIMIT, ALPACA_SOURCES, FeedOptions
from feeds.reference import Rows, text_or
from feeds.streaming.engine import StreamFeed
from feeds.streaming.link import UpstreamLink
from feeds.wire import book_fields, rfc3339_ms, text, trade_fields
from ticker.directory import SymbolInfo

SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z]{1,2})?$")
AUTH_CODES = {402: "auth failed", 408: "v2 not enabled", 409: "insufficient subscription"}
IGNORED = frozenset({"c", "x", "s", "l", "b", "d", "u"})  # corrections, cancels, statuses, LULDs, bars
PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
ASSETS_QUERY = {"status": "active", "asset_class": "us_equity"}
# Alpaca's assets carry no fund flag: a name that says it is an exchange-traded product is an ETF.
_ETF_NAME = re.compile(r"\b(ETF|ETN|ETP)s?\b|Exchange[- ]Traded", re.IGNORECASE)


def parse_assets(data: Any, rows: Rows) -> None:
    """Keep the assets of a ``GET /v2/assets`` answer that are active and tradable on Alpaca."""

    def asset(a: dict[str, Any]) -> None:
        if a.get("status") != "active" or a.get("tradable") is not True:
            rows.leave_out("inactive or not tradable")
            return
        if a.get("class", "us_equity") != "us_equity":
            rows.leave_out("not a US equity")
            return
        name = text_or(a.get("name"))
        kind = "etf" if _ETF_NAME.search(name) else "stock"
        rows.keep(a.get("symbol"), name, exchange=a.get("exchange"), type=kind, currency="USD")

    rows.each(data, "assets", asset)


class AlpacaFeed(StreamFeed):
    """Alpaca real-time trades and quotes (v2)."""

    default_url = "wss://stream.data.alpaca.markets/v2/{source}"
    max_batch = 200

    def __init__(
        self,
        name: str = "alpaca",
        *,
        key_id: str,
        secret: str,
        source: str = "iex",
        max_symbols: int | None = None,
        url: str | None = None,
        reference_url: str | None = None,
        **kw: Any,
    ) -> None:
        if source not in ALPACA_SOURCES:
            raise FeedConfigError(f"--alpaca-feed must be iex or sip, not {source!r}")
        if max_symbols is None and source == "iex":
            max_symbols = ALPACA_IEX_LIMIT
        super().__init__(
            name, url=url or self.default_url.format(source=source), max_symbols=max_symbols, **kw
        )
        self.source = source
        self._key_id = key_id
        self._secret = secret
        self.confirmed: frozenset[str] = frozenset()  # symbols in Alpaca's last subscription ack
        base = reference_url or reference.reference_base(url, {"alpaca.markets": ""}, "")
        #: Trading API hosts to ask for the assets, in order (paper, then live, for Alpaca's own hosts).
        self.trading_urls = [base] if base else [PAPER_URL, LIVE_URL]

    def owns(self, symbol: str) -> bool:
        return SYMBOL_RE.match(symbol) is not None

    async def load_reference(self) -> list[SymbolInfo]:
        """Every active, tradable US equity (``GET /v2/assets`` on the Trading API)."""
        headers = {"APCA-API-KEY-ID": self._key_id, "APCA-API-SECRET-KEY": self._secret}
        refused: AuthFailed | None = None
        async with reference.session(self.reference_timeout) as http:
            for base in list(self.trading_urls):
                try:
                    data = await reference.get_json(
                        http,
                        base + "/v2/assets",
                        what="alpaca assets",
                        params=ASSETS_QUERY,
                        headers=headers,
                        max_body=self.reference_max_body,
                    )
                except AuthFailed as exc:  # paper keys on the live host, or the other way round
                    refused = exc
                    continue
                self.trading_urls.remove(base)
                self.trading_urls.insert(0, base)
                break
            else:
                assert refused is not None
                raise refused
        rows = self.reference_rows()
        parse_assets(data, rows)
        return self.reference_loaded(rows, "alpaca assets")

    async def handshake(self, link: UpstreamLink) -> None:
        await self._expect(link, "connected")
        await link.send({"action": "auth", "key": self._key_id, "secret": self._secret})
        await self._expect(link, "authenticated")
        self.confirmed = frozenset()

    async def _expect(self, link: UpstreamLink, want: str) -> None:
        while True:
            frame = await self.next_message(link)
            for item in frame if isinstance(frame, list) else [frame]:
                if not isinstance(item, dict):
                    continue
                if item.get("T") == "success" and item.get("msg") == want:
                    return
                if item.get("T") == "error":
                    self._on_error(item)
            self.problem("unexpected", f"expected {want!r} during the handshake")

    def subscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"action": "subscribe", "trades": symbols, "quotes": symbols}]

    def unsubscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [{"action": "unsubscribe", "trades": symbols, "quotes": symbols}]

    def on_message(self, msg: Any) -> None:
        self.each_item(msg, self._on_item)

    def _on_item(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise Malformed("expected an object in the array")
        kind = item.get("T")
        if kind == "t":
            self.update(text(item.get("S"), "S"), rfc3339_ms(item.get("t"), "t"), **trade_fields(item))
        elif kind == "q":
            self.update(text(item.get("S"), "S"), rfc3339_ms(item.get("t"), "t"), **book_fields(item))
        elif kind == "subscription":
            trades, quotes = item.get("trades"), item.get("quotes")
            if not isinstance(trades, list) or not isinstance(quotes, list):
                raise Malformed("subscription: expected trades and quotes lists")
            self.confirmed = frozenset(trades) | frozenset(quotes)
        elif kind == "error":
            self._on_error(item)
        elif kind == "success" or kind in IGNORED:
            return
        else:
            self.problem("unexpected", f"unexpected message type {str(kind)[:40]!r}")

    def _on_error(self, item: dict[str, Any]) -> None:
        code = item.get("code")
        detail = f"{str(item.get('msg', ''))[:200]} ({code})"
        if code in AUTH_CODES:
            hint = " - try --alpaca-feed iex" if code == 409 and self.source == "sip" else ""
            raise AuthFailed(f"alpaca refused the session: {detail}{hint}")
        if code == 404:
            raise UpstreamError(f"alpaca: {detail}", "auth")
        if code == 406:
            raise UpstreamError(f"alpaca: {detail}: another connection uses these keys", "connection_limit")
        if code == 407:
            raise UpstreamError(
                f"alpaca: {detail}: the server drops a client that reads too slowly", "slow_client"
            )
        if code == 405:
            refused = [s for s in self.last_subscribed if s not in self.confirmed]
            self.provider_limit_hit(refused, f"alpaca: {detail}")
            return
        self.problem("upstream_error", f"alpaca error: {detail}")


def create(options: FeedOptions) -> AlpacaFeed:
    """``--feed alpaca``."""
    key_id, secret = require_env("alpaca", "ALPACA_KEY_ID", "ALPACA_SECRET_KEY")
    return AlpacaFeed(
        "alpaca",
        key_id=key_id,
        secret=secret,
        source=str(options.alpaca_feed),
        max_symbols=options.alpaca_max_symbols or None,
        **options.stream_kwargs(),
    )
