"""What every provider adapter's ``load_reference`` shares: one bounded HTTP GET of a reference endpoint,
its errors mapped onto :mod:`feeds.errors`, the provider's asset words mapped onto
:data:`~ticker.directory.ASSET_TYPES`, and :class:`Rows`, which keeps the valid rows and counts the rest.

An adapter's reference endpoint lives on the provider's REST host, not on its WebSocket host:
:func:`reference_base` picks it from the feed's URL (a provider host maps to the provider's REST host; any
other host, a local fake or a proxy, serves both). Bodies are read up to a cap (:class:`BodyTooLarge`),
requests time out, redirects are not followed, and no URL with a query is ever put into an error
message (tokens never travel in URLs here anyway). A body is decoded and its rows built off the event
loop (:func:`fetch_rows`): the largest lists hold tens of thousands of rows. A load cut short by the row
limit is refused (:meth:`Rows.complete`), never taken for the whole list.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import orjson
from yarl import URL

from feeds import reasons
from feeds.errors import AuthFailed, BodyTooLarge, IncompleteReference, Malformed, RateLimited, UpstreamError
from feeds.ratelimit import retry_after
from ticker.directory import ASSET_TYPES, SymbolInfo
from ticker.symbols import valid_symbol

log = logging.getLogger("ticker.feeds.reference")

MAX_BODY = 16 * 1024 * 1024  # bytes: one reference response (a Polygon page, Coinbase products, ...)
TIMEOUT = 120.0  # seconds for one request, body included (a large list on a slow link)
CONNECT_TIMEOUT = 10.0
MAX_ENTRIES = 200_000  # rows kept from one load at most (the largest list, Finnhub US, has tens of thousands)
MAX_NAME = 200  # characters of a name kept
USER_AGENT = "ticker/0.1 (reference data)"
MAX_HELD_REPORTS = 1000  # malformed-row reasons kept word for word while rows are built off the loop

T = TypeVar("T")

#: Provider words for what an instrument is (lower-cased), onto the directory's asset types.
ASSET_WORDS: dict[str, str] = {
    # stocks: Finnhub security types, Polygon type codes, Alpaca classes, Yahoo quote types
    **dict.fromkeys(
        (
            "common stock", "cs", "os", "equity", "us_equity", "stock", "adr", "adrc", "adrp", "gdr",
            "nvdr", "sdr", "ny reg shrs", "nyrs", "reit", "preference", "pfd", "preferred stock",
            "tracking stk", "foreign sh.", "savings share", "public", "mlp", "royalty trst", "dutch cert",
            "cdi", "receipt", "stapled security",
        ),
        "stock",
    ),
    **dict.fromkeys(("etf", "etp", "etn", "etv", "ets", "exchange traded fund"), "etf"),
    **dict.fromkeys(("fund", "closed-end fund", "open-end fund", "mutual fund", "mutualfund"), "fund"),
    **dict.fromkeys(("index", "indices"), "index"),
    **dict.fromkeys(("crypto", "cryptocurrency"), "crypto"),
    **dict.fromkeys(("fx", "forex", "currency", "currencies"), "fx"),
}  # fmt: skip


def asset_type(word: object, default: str = "other") -> str:
    """The directory's asset type for a provider's word (``"Common Stock"``, ``"CS"``, ``"ETP"``), else ``default``."""
    if not isinstance(word, str):
        return default
    return ASSET_WORDS.get(word.strip().lower(), default)


def reference_base(feed_url: str | None, hosts: Mapping[str, str], default: str) -> str:
    """The base URL (scheme, host, port) of a feed's reference endpoints.

    ``hosts`` maps a provider's domains to its REST base: a feed URL on such a domain (its real
    endpoint, a delayed cluster, a market-data-only host) uses that base; any other host (a local fake,
    a proxy given with ``--feed-url``) serves the reference endpoints itself, over HTTP(S) for WS(S).
    """
    if not feed_url:
        return default
    url = URL(feed_url)
    host = (url.host or "").lower()
    for domain, base in hosts.items():
        if host == domain or host.endswith("." + domain):
            return base
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme or "https")
    return str(URL.build(scheme=scheme, host=url.host or "", port=url.explicit_port))


def session(timeout: float = TIMEOUT) -> aiohttp.ClientSession:
    """A short-lived client session for one load (reference data is loaded once a day)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(CONNECT_TIMEOUT, timeout)),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )


def _detail(body: bytes) -> str:
    """A provider's error text from a JSON error body (``error``, ``message``, ``msg``), at most 200 chars."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(data, dict):
        for key in ("error", "message", "msg"):
            if isinstance(data.get(key), str):
                return ": " + " ".join(data[key].split())[:200]
    return ""


async def _read_capped(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    too_large = BodyTooLarge(f"{what}: response body over {limit} bytes")
    if resp.content_length is not None and resp.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def get_body(
    http: aiohttp.ClientSession,
    url: str,
    *,
    what: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_body: int = MAX_BODY,
    credentials: Sequence[str] = (),
    missing: Collection[int] = (),
) -> bytes | None:
    """GET ``url`` and return its body (HTTP 200 only). ``what`` names the endpoint in errors (never the URL);
    ``credentials`` names the variables to check when the host refuses them; a status in ``missing`` (a
    provider's "no such symbol") returns None.

    Raises :class:`AuthFailed` (401, 403), :class:`RateLimited` (429, and Binance's 418 ban, with the
    ``Retry-After``), :class:`UpstreamError` (any other status, network failures and timeouts) or
    :class:`BodyTooLarge` (over ``max_body``): all are :class:`~feeds.errors.FeedError`, which the feed
    runner retries with backoff. Their reasons are :mod:`feeds.reasons`' words.
    """
    host = URL(url).host or "upstream"
    try:
        async with http.get(url, params=params, headers=headers, allow_redirects=False) as resp:
            status = resp.status
            ra = resp.headers.get("Retry-After")
            body = await (_read_capped(resp, max_body, what) if status == 200 else resp.content.read(4096))
    except (
        aiohttp.ClientError,
        OSError,
        TimeoutError,
    ) as exc:  # timeouts first: aiohttp's are client errors too
        within = None
        if isinstance(exc, TimeoutError):
            connecting = isinstance(exc, aiohttp.ConnectionTimeoutError)
            within = http.timeout.sock_connect if connecting else http.timeout.total
        kind = "timeout" if isinstance(exc, TimeoutError) else "connect"
        raise UpstreamError(f"{what}: {reasons.connection_failed(host, exc, within=within)}", kind) from None
    if status in missing:
        return None
    if status in (401, 403):
        raise AuthFailed(f"{what}: {reasons.refused_credentials(host, status, credentials)}{_detail(body)}")
    if status in (418, 429):
        raise RateLimited(retry_after(ra))
    if status != 200:
        kind = "http_5xx" if status >= 500 else "http_status"
        raise UpstreamError(f"{what}: {reasons.answered(host, status)}{_detail(body)}", kind)
    return body


def decode(body: bytes, what: str) -> Any:
    """``body`` as JSON, else :class:`Malformed`."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Malformed(f"{what}: the response is not JSON") from None


async def fetch_rows(
    http: aiohttp.ClientSession,
    url: str,
    rows: Rows,
    parse: Callable[[Any, Rows], T],
    *,
    what: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_body: int = MAX_BODY,
    credentials: Sequence[str] = (),
) -> T:
    """GET ``url`` (:func:`get_body`), then decode it and ``parse(data, rows)`` off the event loop
    (:func:`off_loop`); returns what ``parse`` returns (a next page, say)."""
    body = await get_body(
        http, url, what=what, params=params, headers=headers, max_body=max_body, credentials=credentials
    )
    assert body is not None  # no status counts as missing here
    return await off_loop(rows, lambda: parse(decode(body, what), rows))


async def off_loop(rows: Rows, build: Callable[[], T]) -> T:
    """Run ``build`` (decoding a body and keeping its rows into ``rows``) in a worker thread: tens of thousands
    of rows take a few hundred milliseconds, which must not hold the event loop. The malformed rows it
    finds are reported afterwards, on the loop (the feed's counters and log are not thread-safe)."""
    held: list[str] = []
    rows._held = held
    result = await asyncio.to_thread(build)
    rows._held = None
    for why in held:
        rows._report(why)
    return result


_SPACES = re.compile(r"\s+")


def text_or(value: object, default: str = "") -> str:
    """``value`` as one line of text (whitespace collapsed) if it is a non-empty string, else ``default``."""
    if isinstance(value, str):
        out = _SPACES.sub(" ", value).strip()
        if out:
            return out
    return default


class Rows:
    """The entries of one load: valid rows kept, others counted as left out (by reason) or malformed.

    ``owns`` is the feed's symbol convention: a row whose symbol the feed would not carry (or that is
    not a well-formed ticker symbol, exactly as given) is left out, as a client could not subscribe to
    it there. ``report`` is told of each malformed row (the feed counts and logs it, throttled).
    """

    def __init__(
        self,
        owns: Callable[[str], bool] = lambda symbol: True,
        report: Callable[[str], None] = lambda why: None,
        limit: int = MAX_ENTRIES,
    ) -> None:
        self.entries: list[SymbolInfo] = []
        self.left_out: Counter[str] = Counter()
        self.malformed = 0
        self._owns = owns
        self._report = report
        self._limit = limit
        self._seen: set[str] = set()
        self._held: list[str] | None = None  # reports held back while rows are built off the loop
        #: Whether a row was left out for the limit: the load is incomplete (:meth:`complete` refuses it).
        self.truncated = False

    def keep(
        self,
        symbol: object,
        name: object,
        *,
        exchange: object = "",
        type: str = "other",
        currency: object = "USD",
    ) -> bool:
        """Add one entry unless its symbol is missing (malformed), not subscribable here or a duplicate."""
        if not isinstance(symbol, str) or not symbol:
            self.bad("a row without a symbol")
            return False
        if valid_symbol(symbol) != symbol:
            self.leave_out("symbol outside ticker's syntax")
            return False
        if not self._owns(symbol):
            self.leave_out("symbol this feed does not carry")
            return False
        if symbol in self._seen:
            self.leave_out("duplicate")
            return False
        if len(self.entries) >= self._limit:
            self.leave_out(f"over {self._limit} entries")
            self.truncated = True
            return False
        self._seen.add(symbol)
        self.entries.append(
            SymbolInfo(
                symbol=symbol,
                name=text_or(name, symbol)[:MAX_NAME],
                exchange=text_or(exchange)[:40],
                type=type if type in ASSET_TYPES else "other",
                currency=text_or(currency, "USD").upper()[:12],
            )
        )
        return True

    def restore(self, entries: list[SymbolInfo]) -> None:
        """Keep ``entries`` of an earlier load again (a part of a list that failed to load this time)."""
        for e in entries:
            self.keep(e.symbol, e.name, exchange=e.exchange, type=e.type, currency=e.currency)

    def complete(self, what: str) -> list[SymbolInfo]:
        """The entries, unless rows were left out for the limit: then :class:`IncompleteReference`, since
        a symbol missing from a list the directory takes for whole would be refused as unknown."""
        if self.truncated:
            raise IncompleteReference(f"{what}: more than {self._limit} entries; the list is incomplete")
        return self.entries

    def leave_out(self, reason: str) -> None:
        """Count a well-formed row that is not kept (inactive, not tradable, not carried)."""
        self.left_out[reason] += 1

    def bad(self, why: str) -> None:
        """Count and report a malformed row; it is skipped."""
        self.malformed += 1
        if self._held is None:
            self._report(why)
        else:
            self._held.append(why if len(self._held) < MAX_HELD_REPORTS else "a malformed row")

    def each(self, items: object, what: str, handle: Callable[[dict[str, Any]], None]) -> None:
        """Run ``handle`` on every object of the list ``items``; a row that is not an object, or on which
        ``handle`` raises a lookup, type or value error, is malformed and skipped. ``items`` must be a list."""
        if not isinstance(items, list):
            raise Malformed(f"{what}: expected a JSON array")
        for item in items:
            if not isinstance(item, dict):
                self.bad(f"{what}: a row that is not an object")
                continue
            try:
                handle(item)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.bad(f"{what}: {type(exc).__name__}: {exc}"[:200])

    def summary(self) -> str:
        """One line for the log: kept, left out by reason, malformed."""
        out = [f"{len(self.entries)} kept"]
        if self.left_out:
            out.append("left out: " + ", ".join(f"{n} {why}" for why, n in sorted(self.left_out.items())))
        if self.malformed:
            out.append(f"{self.malformed} malformed")
        return "; ".join(out)
