"""Binance spot WebSocket feed: combined streams ``<symbol>@ticker``, ``@bookTicker`` and ``@trade``, no key.

Symbols are Binance pairs in capitals (``BTCUSDT``); stream names use them lower-cased
(``btcusdt@ticker``). The connection goes to the combined endpoint (``/stream``), so every
payload arrives wrapped as ``{"stream": name, "data": payload}``; subscriptions change with
``SUBSCRIBE``/``UNSUBSCRIBE`` requests whose ids come back in ``{"result": null, "id": N}``
acks. Binance allows 5 incoming messages per second per connection (pongs included) and
1024 streams per connection, pings every 20 seconds, disconnects after 24 hours and sends
``serverShutdown`` before maintenance: the feed stays under 4 messages per second, holds at
most ``1024 // streams-per-symbol`` symbols, answers pings, and reconnects on both. The ``24hrTicker``
statistics are a rolling 24 hours: its open (``o``, also the previous close, the reference of its
change ``p`` and ``P``), high, low and weighted average price (``w``) make the quote's day statistics.

Reference data: ``GET /api/v3/exchangeInfo?symbolStatus=TRADING&showPermissionSets=false`` on the REST
host (public, weight 20, one object with every symbol, no paging), keeping the symbols whose status is
``TRADING``. Binance has no names: an entry is named after its assets (``BTC/USDT``).

History (:meth:`BinanceFeed.load_history`): ``GET /api/v3/klines?symbol=&interval=&startTime=&endTime=&limit=1000``
on the REST host (public, weight 2), every interval of ours by its own name (``1s``, ``1m``, ``5m``, ``1h``,
``1d``, days at midnight UTC), paged forward from the last open time while a page is full, up to
:data:`feeds.history.MAX_PAGES` pages. A kline is ``[open time ms, open, high, low, close, volume, ...]``,
decimals as strings.
"""

from __future__ import annotations

import re
import time
from typing import Any

from feeds import history, reference
from feeds.errors import FeedConfigError, Malformed, UpstreamError
from feeds.options import FeedOptions
from feeds.reference import Rows, text_or
from feeds.streaming.engine import StreamFeed
from feeds.wire import epoch_ms, num, opt_num, text
from ticker.bars import INTERVALS, Bar
from ticker.directory import SymbolInfo
from ticker.tokenbucket import TokenBucket

STREAMS = ("ticker", "bookTicker", "trade")
MAX_STREAMS = 1024  # per connection
MAX_PARAMS = 200  # streams per SUBSCRIBE request (keeps each request small)
QUOTE_ASSETS = ("USDT", "FDUSD", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")
_PAIR_RE = re.compile(r"^[A-Z0-9]{4,20}$")
REST_URL = "https://api.binance.com"
#: Binance domains and their REST hosts (``binance.vision``: the market-data-only hosts).
REST_HOSTS = {"binance.vision": "https://data-api.binance.vision", "binance.com": REST_URL}
EXCHANGE_INFO = {"symbolStatus": "TRADING", "showPermissionSets": "false"}
VENUE = "Binance"
REFERENCE_MAX_BODY = 32 * 1024 * 1024  # bytes: every spot symbol with its filters
KLINES_LIMIT = 1000  # klines per request (Binance's maximum)
HISTORY_RATE = 10.0  # kline requests per second (weight 2 each, far below 6,000 weight a minute)


def parse_klines(data: Any, rows: history.BarRows) -> int | None:
    """Keep the klines of one ``/api/v3/klines`` answer; return the open time of the last (None: none)."""
    if not isinstance(data, list):
        raise Malformed("klines: expected a JSON array")
    last: int | None = None
    for k in data:
        if not isinstance(k, list) or len(k) < 6:
            rows.skipped += 1
            continue
        rows.add(k[0], k[1], k[2], k[3], k[4], k[5])
        if isinstance(k[0], int) and not isinstance(k[0], bool):
            last = k[0] if last is None else max(last, k[0])
    return last


def parse_exchange_info(data: Any, rows: Rows) -> None:
    """Keep the symbols of an ``exchangeInfo`` answer that trade now (status ``TRADING``)."""
    if not isinstance(data, dict):
        raise Malformed("exchangeInfo: expected a JSON object")

    def symbol(s: dict[str, Any]) -> None:
        if s.get("status") != "TRADING" or s.get("isSpotTradingAllowed") is False:
            rows.leave_out("not trading")
            return
        base, quote = text_or(s.get("baseAsset")), text_or(s.get("quoteAsset"))
        if not base or not quote:
            raise ValueError("a symbol without baseAsset or quoteAsset")
        rows.keep(s.get("symbol"), f"{base}/{quote}", exchange=VENUE, type="crypto", currency=quote)

    rows.each(data.get("symbols"), "exchangeInfo symbols", symbol)


class BinanceFeed(StreamFeed):
    """Binance spot combined streams."""

    default_url = "wss://stream.binance.com:9443/stream"
    control_rate = 4  # at most 1 + 4 = 5 frames in any second: the documented limit, pongs included
    client_ping = False  # the server pings every 20 s; those pings prove the link alive
    reference_max_body = REFERENCE_MAX_BODY
    limit_words = "Binance's limit per connection"

    def __init__(
        self,
        name: str = "binance",
        *,
        streams: tuple[str, ...] = ("ticker", "trade"),
        reference_url: str | None = None,
        **kw: Any,
    ):
        bad = [s for s in streams if s not in STREAMS]
        if bad or not streams:
            raise FeedConfigError(
                f"--binance-streams: choose from {', '.join(STREAMS)} (got {bad or 'none'})"
            )
        per_conn = MAX_STREAMS // len(streams)
        limit = kw.pop("max_symbols", None)
        super().__init__(name, max_symbols=min(limit or per_conn, per_conn), **kw)
        self.streams = tuple(streams)
        self.max_batch = MAX_PARAMS // len(streams)
        self.pending: dict[int, str] = {}  # request id -> method, until acknowledged
        self._next_id = 1
        self.reference_url = reference_url or reference.reference_base(self.url, REST_HOSTS, REST_URL)
        self._history_bucket: TokenBucket | None = None

    def owns(self, symbol: str) -> bool:
        return _PAIR_RE.match(symbol) is not None and any(
            symbol.endswith(q) and len(symbol) > len(q) + 1 for q in QUOTE_ASSETS
        )

    async def load_reference(self) -> list[SymbolInfo]:
        """Every spot symbol Binance trades now (``GET /api/v3/exchangeInfo``)."""
        url = self.reference_url + "/api/v3/exchangeInfo"
        return await self.reference_get(url, parse_exchange_info, "binance exchangeInfo", EXCHANGE_INFO)

    async def load_history(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Klines of ``symbol`` (see the module docstring)."""
        if interval not in INTERVALS:
            return None
        if self._history_bucket is None:
            self._history_bucket = TokenBucket(HISTORY_RATE, 10.0, time.monotonic())
        rows = history.BarRows()
        since = start_ms
        async with history.session() as http:
            for _ in range(history.MAX_PAGES):
                await history.take_token(self._history_bucket)
                data = await history.get_json(
                    http,
                    self.reference_url + "/api/v3/klines",
                    what="binance klines",
                    params={
                        "symbol": symbol,
                        "interval": interval,
                        "startTime": str(since),
                        "endTime": str(max(since, end_ms - 1)),
                        "limit": str(KLINES_LIMIT),
                    },
                )
                last = parse_klines(data, rows)
                if last is None or len(data) < KLINES_LIMIT or last + 1 >= end_ms or last < since:
                    break
                since = last + 1
            else:
                self.log.warning(
                    "feed %s: %s %s history cut at %d pages", self.name, symbol, interval, history.MAX_PAGES
                )
        return rows.result(start_ms, end_ms)

    def _request(self, method: str, symbols: list[str]) -> dict[str, Any]:
        rid = self._next_id
        self._next_id += 1
        if len(self.pending) > 1000:  # acks that never came must not grow memory without bound
            self.pending.clear()
        self.pending[rid] = method
        params = [f"{s.lower()}@{st}" for s in symbols for st in self.streams]
        return {"method": method, "params": params, "id": rid}

    def subscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [self._request("SUBSCRIBE", symbols)]

    def unsubscribe_messages(self, symbols: list[str]) -> list[Any]:
        return [self._request("UNSUBSCRIBE", symbols)]

    def on_message(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise Malformed("expected a JSON object")
        if "data" in msg and "stream" in msg:
            data = msg["data"]
            if not isinstance(data, dict):
                raise Malformed("data: expected an object")
        elif "id" in msg and "result" in msg:
            if self.pending.pop(msg["id"], None) is None:
                self.problem("unexpected", f"ack for unknown request id {str(msg['id'])[:20]}")
            return
        elif "code" in msg and "msg" in msg:
            self.pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
            self.problem("upstream_error", f"binance error {msg['code']}: {str(msg['msg'])[:200]}")
            return
        else:
            data = msg  # a raw (unwrapped) stream payload
        self._on_data(data)

    def _on_data(self, d: dict[str, Any]) -> None:
        event = d.get("e")
        if event == "24hrTicker":
            self.update(
                text(d.get("s"), "s"),
                epoch_ms(d.get("E"), "E"),
                price=num(d.get("c"), "c"),
                bid=opt_num(d.get("b"), "b"),
                ask=opt_num(d.get("a"), "a"),
                volume=opt_num(d.get("v"), "v"),
                change=opt_num(d.get("p"), "p"),
                change_percent=opt_num(d.get("P"), "P"),
                # a rolling 24 hours: its open is the reference of p and P, so the previous close too
                prev_close=opt_num(d.get("o"), "o"),
                open=opt_num(d.get("o"), "o"),
                high=opt_num(d.get("h"), "h"),
                low=opt_num(d.get("l"), "l"),
                vwap=opt_num(d.get("w"), "w"),
            )
        elif event == "trade":
            self.update(
                text(d.get("s"), "s"),
                epoch_ms(d.get("T", d.get("E")), "T"),
                price=num(d.get("p"), "p"),
                size=num(d.get("q"), "q"),
            )
        elif event is None and "u" in d and "b" in d and "a" in d:  # bookTicker has no event field
            self.update(
                text(d.get("s"), "s"),
                int(time.time() * 1000),
                bid=num(d.get("b"), "b"),
                ask=num(d.get("a"), "a"),
            )
        elif event == "serverShutdown":
            raise UpstreamError("server shutdown announced", "server_shutdown")
        else:
            self.problem("unexpected", f"unexpected event {str(event)[:40]!r}")


def create(options: FeedOptions) -> BinanceFeed:
    """``--feed binance``."""
    streams = tuple(s.strip() for s in str(options.binance_streams).split(",") if s.strip())
    return BinanceFeed("binance", streams=streams, **options.stream_kwargs())
