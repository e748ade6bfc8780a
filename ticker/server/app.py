"""The Tornado application of a node: every route, with the WebSocket settings."""

from __future__ import annotations

import tornado.web

from ticker.server.node import Node
from ticker.server.ops import ops_routes
from ticker.server.page import PageHandler, find_web_dir
from ticker.server.rest import QuotesHandler, SymbolsHandler
from ticker.server.sse import sse_route
from ticker.server.websocket import QuoteSocket

__all__ = ["make_app"]


def make_app(server: Node) -> tornado.web.Application:
    """The Tornado application serving every endpoint of ``server``."""
    cfg = server.config
    web = str(find_web_dir())
    s = {"server": server}
    return tornado.web.Application(
        [
            (r"/ws", QuoteSocket, s),
            sse_route(server),
            (r"/api/quotes", QuotesHandler, s),
            (r"/api/symbols", SymbolsHandler, s),
            *ops_routes(server.metrics, server.readiness),
            (r"/()", PageHandler, {"path": web, "default_filename": "index.html"}),
            (r"/static/(.*)", PageHandler, {"path": web}),
        ],
        websocket_max_message_size=cfg.max_message_bytes,
        # No per-connection ping task: the server's heartbeat pings every connection (QuoteSocket.heartbeat).
        websocket_ping_interval=None,
        compress_response=True,
    )
