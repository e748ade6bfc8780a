"""The REST endpoints: ``/api/quotes`` (last values) and ``/api/symbols`` (what can be subscribed).

With ``--auth jwt`` both need a token (:mod:`ticker.server.access`); a delayed symbol's value is
the one the delayed tier released, never a newer one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ticker.delay import delayed_key
from ticker.entitlements import Identity
from ticker.errors import ForbiddenSymbols, InvalidSymbol, ProtocolError
from ticker.server.access import Refused, forbidden, identify
from ticker.server.ops import JsonHandler
from ticker.session import hub_keys, query_symbols, symbol_limit

if TYPE_CHECKING:
    from ticker.server.node import Node

TRANSPORT = "rest"  # the transport label of ticker_auth_failures_total


class _Base(JsonHandler):
    def initialize(self, server: Node) -> None:
        self.server = server
        self.allowed_origins = server.config.allowed_origins  # CORS as /sse (ops.JsonHandler)

    async def _identity(self) -> Identity | None:
        """The caller, or None after answering 401."""
        try:
            identity = await identify(self.server, self.request, TRANSPORT)
        except Refused as exc:
            self._refuse(exc)
            return None
        assert identity is not None
        return identity

    def _refuse(self, exc: Refused) -> None:
        for name, value in exc.headers.items():
            self.set_header(name, value)
        self.send_json(exc.body, exc.status)


class QuotesHandler(_Base):
    """``GET /api/quotes?symbols=A,B``: the last value of each symbol (all cached ones without ``symbols``)."""

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
                keys, dl = hub_keys(symbols, ents)
            except ForbiddenSymbols as exc:
                self._refuse(forbidden(srv, exc, TRANSPORT))
                return
            except ProtocolError as exc:
                self.send_json({"error": {"code": exc.code, "message": exc.message}}, 400)
                return
        line = srv.delay_line
        if dl and line is not None:  # keep recording those the node carries, so that a later read has a value
            carried = [s for s in dl if srv.hub.last(s) is not None]
            line.keep(carried, time.monotonic() + line.delay)
        entries = srv.hub.last_encoded(keys)
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"data":[' + b",".join(entries) + b"]}")


class SymbolsHandler(_Base):
    """``GET /api/symbols``: symbols the feeds offer and those with a last value (those the caller may see)."""

    async def get(self) -> None:
        identity = await self._identity()
        if identity is None:
            return
        rt, dl, _forbidden = identity.entitlements.split(self.server.known_symbols())
        self.send_json({"symbols": sorted(rt + dl)})
