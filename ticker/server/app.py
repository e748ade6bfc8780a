"""The Tornado application of a node: every route, with the WebSocket settings."""

from __future__ import annotations

import tornado.web

from ticker.server.node import Node
from ticker.server.ops import metrics_token, ops_routes
from ticker.server.page import page_routes
from ticker.server.peers import access_logger, redact_tornado_logs
from ticker.server.rest import BarsHandler, QuotesHandler, SearchHandler, SymbolEntryHandler, SymbolsHandler
from ticker.server.sse import sse_route
from ticker.server.websocket import QuoteSocket

__all__ = ["make_app"]


def make_app(server: Node) -> tornado.web.Application:
    """The Tornado application serving every endpoint of ``server``."""
    cfg = server.config
    s = {"server": server}
    redact_tornado_logs()
    return tornado.web.Application(
        [
            (r"/ws", QuoteSocket, s),
            sse_route(server),
            (r"/api/quotes", QuotesHandler, s),
            (r"/api/symbols", SymbolsHandler, s),
            (r"/api/symbols/(.+)", SymbolEntryHandler, s),  # (.+): a symbol may hold "/" (EUR/USD)
            (r"/api/search", SearchHandler, s),
            (r"/api/bars", BarsHandler, s),
            *ops_routes(server.metrics, server.readiness, metrics_token(cfg.access.auth)),
            *page_routes(server),
        ],
        websocket_max_message_size=cfg.max_message_bytes,
        # No per-connection ping task: the server's heartbeat pings every connection (QuoteSocket.heartbeat).
        websocket_ping_interval=None,
        compress_response=True,
        # The access log names the client behind --trusted-proxies and never shows an access_token.
        log_function=access_logger(cfg.trusted_proxies),
    )
