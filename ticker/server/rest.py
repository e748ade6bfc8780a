"""The REST endpoints: ``/api/quotes`` (last values) and ``/api/symbols`` (what can be subscribed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ticker.errors import InvalidSymbol, ProtocolError
from ticker.server.ops import JsonHandler
from ticker.session import query_symbols

if TYPE_CHECKING:
    from ticker.server.node import Node


class _Base(JsonHandler):
    def initialize(self, server: Node) -> None:
        self.server = server


class QuotesHandler(_Base):
    """``GET /api/quotes?symbols=A,B``: the last value of each symbol (all cached ones without ``symbols``)."""

    def get(self) -> None:
        raw = self.get_query_argument("symbols", None)
        if raw is None:
            symbols = self.server.hub.cached_symbols()[: self.server.config.max_symbols]
        else:
            try:
                symbols = query_symbols(raw, self.server.config.max_symbols, "request")
                if not symbols:
                    raise InvalidSymbol(raw)
            except ProtocolError as exc:
                self.send_json({"error": {"code": exc.code, "message": exc.message}}, 400)
                return
        entries = self.server.hub.last_encoded(symbols)
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"data":[' + b",".join(entries) + b"]}")


class SymbolsHandler(_Base):
    """``GET /api/symbols``: symbols the feeds offer and those with a last value."""

    def get(self) -> None:
        self.send_json({"symbols": self.server.known_symbols()})
