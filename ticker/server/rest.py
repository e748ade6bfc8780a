"""The REST endpoints: ``/api/quotes`` (last values), ``/api/symbols`` (what can be subscribed), the
directory: ``/api/symbols/<SYMBOL>`` (one entry) and ``/api/search`` (by ticker and name), and
``/api/bars`` (a symbol's OHLCV bars).

With ``--auth jwt`` both need a token (:mod:`ticker.server.access`); a delayed symbol's value is
the one the delayed tier released, never a newer one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from ticker.bars import DEFAULT_LIMIT, INTERVALS, MAX_LIMIT, parse_interval
from ticker.delay import delayed_key, symbol_of
from ticker.directory import Known
from ticker.entitlements import EVERYTHING, Entitlements, Identity, Tier
from ticker.errors import BAD_REQUEST, ForbiddenSymbols, InvalidSymbol, ProtocolError, UnknownSymbols
from ticker.search import Allow, search, suggest
from ticker.server.access import Refused, forbidden, identify
from ticker.server.gate import admit_request
from ticker.server.ops import JsonHandler
from ticker.session import hub_keys, query_symbols, suggestions_of, symbol_limit, visible_to
from ticker.symbols import valid_symbol

if TYPE_CHECKING:
    from ticker.server.node import Node

TRANSPORT = "rest"  # the transport label of ticker_auth_failures_total
#: Seconds /api/quotes waits at most for an edge node's read through from Redis (then answers what it has).
READ_WAIT = 1.0


class _Base(JsonHandler):
    def initialize(self, server: Node) -> None:
        self.server = server
        self.cors = server.config.host_policy  # CORS as /sse (ops.JsonHandler)

    def prepare(self) -> None:
        super().prepare()
        try:  # --rest-rate per client address, before any work
            admit_request(self.server, self.request, TRANSPORT)
        except Refused as exc:
            self._refuse(exc)

    async def _identity(self) -> Identity | None:
        """The caller, or None after answering 401."""
        try:
            identity = await identify(self.server, self.request, TRANSPORT)
        except Refused as exc:
            self._refuse(exc)
            return None
        assert identity is not None
        return identity

    def _refuse_symbols(self, exc: ProtocolError) -> None:
        """Answer a refused symbol request: ``unknown_symbol`` 400 with suggestions, ``forbidden_symbol`` 403,
        any other protocol error 400."""
        if isinstance(exc, ForbiddenSymbols):
            self._refuse(forbidden(self.server, exc, TRANSPORT))
            return
        body: dict[str, object] = {"code": exc.code, "message": exc.message}
        if isinstance(exc, UnknownSymbols):
            body.update(symbols=exc.symbols, suggestions=suggestions_of(exc))
        self.send_json({"error": body}, 400)

    def _refuse(self, exc: Refused) -> None:
        for name, value in exc.headers.items():
            self.set_header(name, value)
        self.send_json(exc.body, exc.status)


class QuotesHandler(_Base):
    """``GET /api/quotes?symbols=A,B``: the last value of each symbol (all cached ones without ``symbols``); on
    an edge node current from Redis whether or not its clients receive them (``Broker.read_through``)."""

    async def get(self) -> None:
        srv = self.server
        identity = await self._identity()
        if identity is None:
            return
        ents = identity.entitlements
        raw = self.get_query_argument("symbols", None)
        limit = symbol_limit(srv.config.max_symbols, ents)
        if raw is None:  # everything this user may see that has a value
            rt, dl, _forbidden = ents.split(srv.hub.cached_symbols())
            keys = (rt + [delayed_key(s) for s in dl])[:limit]
        else:
            try:
                symbols = query_symbols(raw, limit, "request")
                if not symbols:
                    raise InvalidSymbol(raw)
                refused = srv.board.unknown(symbols, visible_to(ents) if srv.access.required else None)
                if refused is not None:
                    raise refused
                keys, dl = hub_keys(symbols, ents)
            except ProtocolError as exc:  # unknown (with suggestions), forbidden (403), malformed
                self._refuse_symbols(exc)
                return
        if raw is not None:  # an edge node reads through from Redis the symbols no client here receives
            await srv.broker.read_through([symbol_of(k) for k in keys], READ_WAIT)
        line = srv.delay_line
        if dl and line is not None:  # keep recording those the node carries, so that a later read has a value
            carried = [s for s in dl if srv.hub.last(s) is not None]
            line.keep(carried, time.monotonic() + line.delay)
        states = {e["s"]: e for e in srv.board.statuses((symbol_of(k) for k in keys), remember=False)}
        entries = []
        for key in keys:
            found = srv.hub.last_encoded([key])
            entry = found[0] if found else None
            state = states.pop(symbol_of(key), None)
            if entry is None:
                if state is not None:
                    states[state["s"]] = state  # no value to carry it: listed under "status"
                continue
            if state is not None:  # a value whose symbol is not live: the entry says so
                entry = (
                    entry[:-1]
                    + b',"state":'
                    + orjson.dumps(state["state"])
                    + b',"reason":'
                    + orjson.dumps(state["reason"])
                    + b"}"
                )
            entries.append(entry)
        tail = b',"status":' + orjson.dumps(list(states.values())) if states else b""
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"data":[' + b",".join(entries) + b"]" + tail + b"}")


class SymbolsHandler(_Base):
    """``GET /api/symbols``: symbols the feeds offer and those with a last value (those the caller may see)."""

    async def get(self) -> None:
        identity = await self._identity()
        if identity is None:
            return
        rt, dl, _forbidden = identity.entitlements.split(self.server.known_symbols())
        self.send_json({"symbols": sorted(rt + dl)})


SEARCH_LIMIT = 10  # results of /api/search without ?limit=
MAX_SEARCH_LIMIT = 50


def _search_limit(raw: str | None) -> int | None:
    """``?limit=`` of /api/search: the default without it, None when it is not a number from 1 to 50."""
    if raw is None:
        return SEARCH_LIMIT
    try:
        n = int(raw)
    except ValueError:
        return None
    return n if 1 <= n <= MAX_SEARCH_LIMIT else None


def _allow(ents: Entitlements) -> Allow:
    """Who may see a symbol, for the search: None when the caller may see everything."""
    if ents == EVERYTHING:
        return None
    return lambda symbol: ents.tier(symbol) is not Tier.FORBIDDEN


class SearchHandler(_Base):
    """``GET /api/search?q=TEXT&limit=N``: directory entries matching TEXT, best first (:mod:`ticker.search`),
    those the caller may see."""

    async def get(self) -> None:
        identity = await self._identity()
        if identity is None:
            return
        text = self.get_query_argument("q", None)
        limit = _search_limit(self.get_query_argument("limit", None))
        if text is None or limit is None:
            what = '"q" (the text to search for) is required' if text is None else ""
            what = what or f'"limit" must be a whole number from 1 to {MAX_SEARCH_LIMIT}'
            self.send_json({"error": {"code": BAD_REQUEST, "message": what}}, 400)
            return
        found = search(self.server.directory, text, limit, _allow(identity.entitlements))
        self.send_json({"results": [e.to_json() for e in found]})


class SymbolEntryHandler(_Base):
    """``GET /api/symbols/<SYMBOL>``: the directory entry of one symbol; 404 ``unknown_symbol`` (with "did you
    mean") when no feed knows it, 403 when the caller may not see it."""

    async def get(self, raw: str) -> None:
        srv = self.server
        identity = await self._identity()
        if identity is None:
            return
        symbol = valid_symbol(raw)
        if symbol is None:
            exc = InvalidSymbol(raw)
            self.send_json({"error": {"code": exc.code, "message": exc.message}}, 400)
            return
        directory = srv.directory
        entry = directory.get(symbol)
        if entry is None:
            allow = _allow(identity.entitlements)
            near = [(e.symbol, e.name) for e in suggest(directory, symbol, allow=allow)]
            unknown = UnknownSymbols([symbol], {symbol: near})
            error = {"code": unknown.code, "message": unknown.message, "symbols": unknown.symbols}
            if directory.known(symbol) is Known.PENDING:  # some feed is still loading, or cannot tell
                error["message"] = (
                    f"No symbol {symbol} in the directory yet: a feed is still loading its symbols."
                )
            self.send_json({"error": {**error, "suggestions": suggestions_of(unknown)}}, 404)
            return
        if identity.entitlements.tier(symbol) is Tier.FORBIDDEN:
            self._refuse(forbidden(srv, ForbiddenSymbols([symbol]), TRANSPORT))
            return
        self.send_json(entry.to_json())


_MS_DIGITS = 16  # from/to: epoch milliseconds, at most 16 digits


class _BadQuery(Exception):
    """A query parameter of /api/bars that is missing or malformed (400 ``bad_request``)."""


def _epoch_ms(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MS_DIGITS):
        raise _BadQuery(f'"{name}" must be a time in epoch milliseconds (a whole number)')
    return int(raw)


def bars_query(
    interval: str | None, from_raw: str | None, to_raw: str | None, limit_raw: str | None
) -> tuple[str, int | None, int | None, int]:
    """(interval, from, to, limit) of ``/api/bars``; raises :class:`_BadQuery` or
    :class:`~ticker.bars.InvalidInterval`. ``limit``: :data:`DEFAULT_LIMIT` without it, refused past
    :data:`MAX_LIMIT`."""
    if interval is None:
        raise _BadQuery(f'"interval" is required: one of {", ".join(INTERVALS)}')
    interval = parse_interval(interval)
    from_ms = _epoch_ms("from", from_raw)
    to_ms = _epoch_ms("to", to_raw)
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise _BadQuery(f'"from" ({from_ms}) is after "to" ({to_ms})')
    limit = DEFAULT_LIMIT
    if limit_raw is not None:
        if not (limit_raw.isascii() and limit_raw.isdigit() and len(limit_raw) <= 6) or not (
            1 <= int(limit_raw) <= MAX_LIMIT
        ):
            raise _BadQuery(f'"limit" must be a whole number from 1 to {MAX_LIMIT}')
        limit = int(limit_raw)
    return interval, from_ms, to_ms, limit


class BarsHandler(_Base):
    """``GET /api/bars?symbol=AAPL&interval=1m[&from=ms][&to=ms][&limit=N]``: bars starting in ``[from, to)``,
    oldest first, at most ``limit`` (the newest ones, or the oldest after ``from`` without ``to``). A
    symbol's history is loaded on its first read (waited for a few seconds). A delayed user gets only the
    bars that ended ``--delay`` seconds ago or earlier."""

    async def get(self) -> None:
        srv = self.server
        identity = await self._identity()
        if identity is None:
            return
        ents = identity.entitlements
        arg = self.get_query_argument
        try:
            raw = arg("symbol", None)
            if raw is None:
                raise _BadQuery('"symbol" is required')
            symbol = valid_symbol(raw)
            if symbol is None:
                raise InvalidSymbol(raw)
            interval, from_ms, to_ms, limit = bars_query(
                arg("interval", None), arg("from", None), arg("to", None), arg("limit", None)
            )
            refused = srv.board.unknown([symbol], visible_to(ents) if srv.access.required else None)
            if refused is not None:
                raise refused
            tier = ents.tier(symbol)
            if tier is Tier.FORBIDDEN:
                raise ForbiddenSymbols([symbol])
        except _BadQuery as exc:
            self.send_json({"error": {"code": BAD_REQUEST, "message": str(exc)}}, 400)
            return
        except ProtocolError as exc:  # unknown (with suggestions), forbidden (403), malformed
            self._refuse_symbols(exc)
            return
        await srv.history(symbol)  # a symbol nobody receives still has its history
        horizon = None
        if tier is Tier.DELAYED:
            horizon = int((time.time() - srv.config.access.delay) * 1000)
        bars = srv.bars.range(symbol, interval, from_ms, to_ms, limit, before_end=horizon)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"s": symbol, "interval": interval, "bars": bars}))
