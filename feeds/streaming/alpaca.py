"""Alpaca market data stream v2 (``ALPACA_KEY_ID``, ``ALPACA_SECRET_KEY``): trades and quotes.

``--alpaca-feed iex`` (default, free, IEX only) or ``sip`` (all US exchanges, paid plan)
picks ``wss://stream.data.alpaca.markets/v2/{feed}``. Symbols are US tickers (``AAPL``).
The session is: ``[{"T":"success","msg":"connected"}]`` → ``{"action":"auth",...}`` →
``[{"T":"success","msg":"authenticated"}]`` → ``{"action":"subscribe","trades":[...],
"quotes":[...]}`` → ``[{"T":"subscription",...}]`` (always the full current set). Every
server frame is a JSON array; data is batched. Trades (``T: t``) update price and volume,
quotes (``T: q``) bid and ask; timestamps are RFC 3339 with nanoseconds. Each symbol's minute bars
are subscribed too (``"bars"``, ``"updatedBars"``): a bar (``T: b``) is Alpaca's final word on its minute
and an updated bar (``T: u``, a late correction of the last one) replaces it, both handed to
``ctx.bar(symbol, "1m", bar, final=True)``. Each symbol's trading
statuses are subscribed too (``"statuses"``): a status ``T: s`` with a halt code (``sc`` UTP ``H``
trading halt, ``P`` volatility pause; CTA ``2``) makes the symbol ``halted``, with the status and reason
messages (``sm``, ``rm``) as its reason, until a resumption (UTP ``T``, CTA ``3``). Should Alpaca refuse
the statuses channel once logged in (409, 410), it is dropped and the symbols subscribed again without it.

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

History (:meth:`AlpacaFeed.load_history`): the Market Data API's ``GET /v2/stocks/{symbol}/bars`` on
``data.alpaca.markets`` (the feed URL's host for any other host), ``timeframe`` ``1Min``/``5Min``/``1Hour``/
``1Day`` (no ``1s``), ``start``/``end`` in RFC 3339, ``adjustment=split``, ``feed`` the ``--alpaca-feed``
source, ``limit=10000``, repeated with ``page_token`` while ``next_page_token`` is set (up to
:data:`feeds.history.MAX_PAGES` pages), paced to the free plan's 200 calls per minute. Daily bars are stamped
at midnight New York. The free plan cannot query the latest 15 minutes of SIP data (``--alpaca-feed sip``):
Alpaca refuses such a request, and the live bars fill those minutes.
"""

from __future__ import annotations

import re
import time
from typing import Any

from feeds import history, reasons, reference
from feeds.credentials import require_env
from feeds.errors import AuthFailed, FeedConfigError, Malformed, UpstreamError
from feeds.options import ALPACA_IEX_LIMIT, ALPACA_SOURCES, FeedOptions
from feeds.reference import Rows, text_or
from feeds.streaming.engine import StreamFeed
from feeds.streaming.link import UpstreamLink
from feeds.wire import book_fields, rfc3339_ms, text, trade_fields
from ticker.bars import Bar
from ticker.directory import SymbolInfo
from ticker.tokenbucket import TokenBucket

SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z]{1,2})?$")
AUTH_CODES = {402: "auth failed", 408: "v2 not enabled", 409: "insufficient subscription"}
CREDENTIALS = ("ALPACA_KEY_ID", "ALPACA_SECRET_KEY")
IGNORED = frozenset({"c", "x", "l", "d", "i"})  # corrections, cancels, LULDs, daily bars, imbalances
BAR_KINDS = frozenset({"b", "u"})  # minute bars and updated (corrected) minute bars
HALT_CODES = frozenset({"H", "P", "2"})  # status codes: UTP trading halt, volatility pause; CTA trading halt
RESUME_CODES = frozenset({"T", "3"})  # UTP trading resumption, CTA resume ("Q": quotes only, still halted)
STATUS_REFUSED = (409, 410)  # insufficient subscription, invalid subscribe action: after login, the statuses
PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
ASSETS_QUERY = {"status": "active", "asset_class": "us_equity"}
DATA_URL = "https://data.alpaca.markets"
#: Our intervals as Alpaca timeframes; no seconds.
TIMEFRAMES = {"1m": "1Min", "5m": "5Min", "1h": "1Hour", "1d": "1Day"}
HISTORY_RATE = 200 / 60  # requests per second: the free plan's 200 historical calls per minute
HISTORY_LIMIT = "10000"  # bars per page (Alpaca's maximum)
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


def parse_bars(data: Any, rows: history.BarRows) -> str | None:
    """Keep the bars of one ``/v2/stocks/{symbol}/bars`` page; return its ``next_page_token`` (None: the last)."""
    if not isinstance(data, dict) or "bars" not in data:
        raise Malformed("bars: expected an object with bars")
    bars = data["bars"] or []  # null when there are none
    if not isinstance(bars, list):
        raise Malformed("bars: expected a list")
    for b in bars:
        try:
            rows.add(rfc3339_ms(b.get("t"), "t"), b.get("o"), b.get("h"), b.get("l"), b.get("c"), b.get("v"))
        except (Malformed, AttributeError):
            rows.skipped += 1
    token = data.get("next_page_token")
    if token is not None and not isinstance(token, str):
        raise Malformed("bars: next_page_token is not a string")
    return token or None


def stream_bar(item: dict[str, Any]) -> Bar:
    """A bar (``T: b``) or an updated bar (``T: u``) as a :class:`Bar`."""
    return history.stream_bar(rfc3339_ms(item.get("t"), "t"), item, "bar")


class AlpacaFeed(StreamFeed):
    """Alpaca real-time trades and quotes (v2)."""

    default_url = "wss://stream.data.alpaca.markets/v2/{source}"
    max_batch = 200
    credentials_env = CREDENTIALS

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
        self.statuses = True  # subscribe each symbol's trading statuses (halts) too
        self._logged_in = False
        base = reference_url or reference.reference_base(url, {"alpaca.markets": ""}, "")
        #: Trading API hosts to ask for the assets, in order (paper, then live, for Alpaca's own hosts).
        self.trading_urls = [base] if base else [PAPER_URL, LIVE_URL]
        #: The Market Data API's REST base (history).
        self.data_url = reference.reference_base(self.url, {"alpaca.markets": DATA_URL}, DATA_URL)
        self._history_bucket: TokenBucket | None = None

    def owns(self, symbol: str) -> bool:
        return SYMBOL_RE.match(symbol) is not None

    async def load_reference(self) -> list[SymbolInfo]:
        """Every active, tradable US equity (``GET /v2/assets`` on the Trading API)."""
        headers = {"APCA-API-KEY-ID": self._key_id, "APCA-API-SECRET-KEY": self._secret}
        refused: AuthFailed | None = None
        rows = self.reference_rows()
        async with reference.session(self.reference_timeout) as http:
            for base in list(self.trading_urls):
                try:
                    await reference.fetch_rows(
                        http,
                        base + "/v2/assets",
                        rows,
                        parse_assets,
                        what="alpaca assets",
                        params=ASSETS_QUERY,
                        headers=headers,
                        max_body=self.reference_max_body,
                        credentials=CREDENTIALS,
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
        return self.reference_loaded(rows, "alpaca assets")

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Bars of ``symbol`` from the Market Data API (see the module docstring); None for ``1s``."""
        timeframe = TIMEFRAMES.get(interval)
        if timeframe is None:
            return None
        if self._history_bucket is None:
            self._history_bucket = TokenBucket(HISTORY_RATE, 10.0, time.monotonic())
        headers = {"APCA-API-KEY-ID": self._key_id, "APCA-API-SECRET-KEY": self._secret}
        query = {
            "timeframe": timeframe,
            "start": history.rfc3339(start_ms),
            "end": history.rfc3339(end_ms + 999),  # inclusive, whole seconds: the range is cut after
            "adjustment": "split",
            "feed": self.source,
            "limit": HISTORY_LIMIT,
            "sort": "asc",
        }
        rows = history.BarRows()
        tokens: set[str] = set()
        async with history.session() as http:
            for _ in range(history.MAX_PAGES):
                await history.take_token(self._history_bucket)
                data = await history.get_json(
                    http,
                    f"{self.data_url}/v2/stocks/{symbol}/bars",
                    what="alpaca bars",
                    params=query,
                    headers=headers,
                    credentials=CREDENTIALS,
                )
                token = parse_bars(data, rows)
                if token is None:
                    break
                if token in tokens:
                    raise Malformed("bars: next_page_token repeats an earlier one")
                tokens.add(token)
                query["page_token"] = token
            else:
                self.log.warning(
                    "feed %s: %s %s history cut at %d pages", self.name, symbol, interval, history.MAX_PAGES
                )
        return rows.result(start_ms, end_ms)

    async def handshake(self, link: UpstreamLink) -> None:
        self._logged_in = False
        await self._expect(link, "connected")
        await link.send({"action": "auth", "key": self._key_id, "secret": self._secret})
        await self._expect(link, "authenticated")
        self.confirmed = frozenset()
        self._logged_in = True

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

    def _channels(self, action: str, symbols: list[str]) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "action": action,
            "trades": symbols,
            "quotes": symbols,
            "bars": symbols,
            "updatedBars": symbols,
        }
        if self.statuses:
            msg["statuses"] = symbols
        return msg

    def subscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [self._channels("subscribe", symbols)]

    def unsubscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [self._channels("unsubscribe", symbols)]

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
        elif kind in BAR_KINDS:
            self.provider_bar(text(item.get("S"), "S"), "1m", stream_bar(item), True)
        elif kind == "subscription":
            trades, quotes = item.get("trades"), item.get("quotes")
            if not isinstance(trades, list) or not isinstance(quotes, list):
                raise Malformed("subscription: expected trades and quotes lists")
            self.confirmed = frozenset(trades) | frozenset(quotes)
        elif kind == "s":
            self._on_status(item)
        elif kind == "error":
            self._on_error(item)
        elif kind == "success" or kind in IGNORED:
            return
        else:
            self.problem("unexpected", f"unexpected message type {str(kind)[:40]!r}")

    def _on_status(self, item: dict[str, Any]) -> None:
        """A trading status: a halt code halts the symbol (with Alpaca's words), a resumption ends it."""
        symbol = text(item.get("S"), "S")
        code = text(item.get("sc"), "sc")
        if code in HALT_CODES:
            words = [text_or(item.get(k))[:200] for k in ("sm", "rm")]
            self.halt(symbol, ": ".join(w for w in words if w) or f"trading halted (status {code})")
        elif code in RESUME_CODES:
            self.resume(symbol)

    def _on_error(self, item: dict[str, Any]) -> None:
        code = item.get("code")
        detail = f"{str(item.get('msg', ''))[:200]} ({code})"
        if code in STATUS_REFUSED and self.statuses and self._logged_in:
            # Logged in, so the feed itself is allowed: what was refused is the statuses channel.
            self.statuses = False
            self.problem(
                "upstream_error", f"alpaca refused the statuses channel: {detail}; halts go unreported"
            )
            self.resubscribe(self.held)
            return
        if code in AUTH_CODES:
            hint = " - try --alpaca-feed iex" if code == 409 and self.source == "sip" else ""
            if code == 402:
                hint = f"; {reasons.check(CREDENTIALS)}"
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
