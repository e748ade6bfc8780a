"""The Tornado application of a node: every route, with the WebSocket settings."""

from __future__ import annotations

import logging
from typing import Any

import tornado.httputil
import tornado.web

from ticker.server.hosts import EXEMPT_PATHS, MISDIRECTED, HostPolicy, all_interfaces_warning
from ticker.server.node import Node
from ticker.server.ops import JsonHandler, metrics_token, ops_routes
from ticker.server.page import page_routes
from ticker.server.peers import access_logger, redact_tornado_logs
from ticker.server.refusals import HOST, RequestRefusals
from ticker.server.rest import BarsHandler, QuotesHandler, SearchHandler, SymbolEntryHandler, SymbolsHandler
from ticker.server.sse import sse_route
from ticker.server.websocket import QuoteSocket
from ticker.server.workerheader import WorkerHeader

__all__ = ["HostCheckedApplication", "MisdirectedHandler", "make_app"]

log = logging.getLogger("ticker")


class MisdirectedHandler(JsonHandler):
    """A request naming a host this server does not answer for: 421 with ``host_not_allowed``, any method.

    (Behind :class:`~ticker.server.bodies.BodyRefusal`, as served, such a request is answered before it
    gets here.)"""

    def prepare(self) -> None:
        refusals = getattr(self.application, "refusals", None)
        if refusals is not None:
            refusals.refused(HOST, 421, self.request)
        self.send_json(MISDIRECTED, 421)


class HostCheckedApplication(tornado.web.Application):
    """The Application that checks ``Host`` before any route (:mod:`ticker.server.hosts`): a request naming
    a host ``policy`` does not allow gets 421, on every path but :data:`~ticker.server.hosts.EXEMPT_PATHS`;
    ``refusals`` counts and logs them (and :class:`~ticker.server.bodies.BodyRefusal` its own refusals)."""

    def __init__(
        self,
        handlers: list[Any],
        policy: HostPolicy,
        refusals: RequestRefusals | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(handlers, **settings)
        self.policy = policy
        self.refusals = refusals

    def find_handler(
        self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any
    ) -> tornado.web._HandlerDelegate:
        if request.path not in EXEMPT_PATHS and not self.policy.request_ok(request):
            return self.get_handler_delegate(request, MisdirectedHandler)
        return super().find_handler(request, **kwargs)


def make_app(server: Node) -> tornado.web.Application:
    """The Tornado application serving every endpoint of ``server``."""
    cfg = server.config
    s = {"server": server}
    redact_tornado_logs()
    warning = all_interfaces_warning(cfg.host, cfg.allowed_hosts)
    if warning is not None and cfg.worker_index == 0:  # once, not once per worker
        log.warning("%s", warning)
    app = HostCheckedApplication(
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
        cfg.host_policy,
        RequestRefusals(server.metrics.count_request_refused, cfg.trusted_proxies),
        websocket_max_message_size=cfg.max_message_bytes,
        # No per-connection ping task: the server's heartbeat pings every connection (QuoteSocket.heartbeat).
        websocket_ping_interval=None,
        compress_response=True,
        # The access log names the client behind --trusted-proxies and never shows an access_token.
        log_function=access_logger(cfg.trusted_proxies),
    )
    if cfg.workers > 1:  # X-Ticker-Worker: which worker answered
        app.add_transform(WorkerHeader)
    return app
