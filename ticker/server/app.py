"""HTTP edge: the page, the REST snapshot, symbols, health, readiness and metrics."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import tornado.routing
import tornado.web

from ticker import protocol
from ticker.metrics.registry import Metrics
from ticker.server.node import Server
from ticker.server.sse import sse_route
from ticker.server.websocket import QuoteSocket


def find_web_dir() -> Path:
    """The page's files: ``web/`` beside the package in a checkout, else where ``pip install`` put them."""
    checkout = Path(__file__).resolve().parents[2]
    for cand in (checkout / "web", Path(sys.prefix) / "share" / "ticker" / "web"):
        if (cand / "index.html").is_file():
            return cand
    raise FileNotFoundError("the web page's files (web/index.html) are not installed")


Readiness = Callable[[], tuple[bool, str]]


class _JSON(tornado.web.RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(obj))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.send_json({"error": {"code": f"http_{status_code}", "message": self._reason}}, status_code)


class _Base(_JSON):
    def initialize(self, server: Server) -> None:
        self.server = server


class QuotesHandler(_Base):
    """``GET /api/quotes?symbols=A,B``: the last value of each symbol (all cached ones without ``symbols``)."""

    def get(self) -> None:
        raw = self.get_query_argument("symbols", None)
        if raw is None:
            symbols = self.server.hub.cached_symbols()[: self.server.config.max_symbols]
        else:
            symbols, bad = protocol.split_symbols(p for p in raw.split(",") if p.strip())
            if bad or not symbols:
                msg = protocol.invalid_symbols_message(bad or [raw])
                self.send_json({"error": {"code": protocol.INVALID_SYMBOL, "message": msg}}, 400)
                return
            if len(symbols) > self.server.config.max_symbols:
                msg = f"at most {self.server.config.max_symbols} symbols per request"
                self.send_json({"error": {"code": protocol.TOO_MANY_SYMBOLS, "message": msg}}, 400)
                return
        entries = self.server.hub.last_encoded(symbols)
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"data":[' + b",".join(entries) + b"]}")


class SymbolsHandler(_Base):
    """``GET /api/symbols``: symbols the feeds offer and those with a last value."""

    def get(self) -> None:
        self.send_json({"symbols": self.server.known_symbols()})


class _Ops(_JSON):
    def initialize(self, metrics: Metrics, readiness: Readiness) -> None:
        self.metrics = metrics
        self.readiness = readiness


class HealthHandler(_Ops):
    """``GET /healthz``: 200 while the process serves."""

    def get(self) -> None:
        self.send_json({"status": "ok"})


class ReadyHandler(_Ops):
    """``GET /readyz``: 200 when feeds (and broker) are up and fresh, else 503 with the reason."""

    def get(self) -> None:
        ok, reason = self.readiness()
        self.send_json({"status": "ready" if ok else "not ready", "reason": reason}, 200 if ok else 503)


class MetricsHandler(_Ops):
    """``GET /metrics``: Prometheus text format."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.metrics.render())


def ops_routes(metrics: Metrics, readiness: Readiness) -> list[tornado.routing.Rule]:
    """``/metrics``, ``/healthz`` and ``/readyz`` for any process with metrics and a readiness check."""
    o = {"metrics": metrics, "readiness": readiness}
    return [
        tornado.routing.Rule(tornado.routing.PathMatches(path), handler, o)
        for path, handler in (
            ("/metrics", MetricsHandler),
            ("/healthz", HealthHandler),
            ("/readyz", ReadyHandler),
        )
    ]


class PageHandler(tornado.web.StaticFileHandler):
    """``GET /``: the trader's page, with a strict Content-Security-Policy."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'",
        )


def make_metrics_app(metrics: Metrics, readiness: Readiness) -> tornado.web.Application:
    """A separate listener with only the operations endpoints (``--metrics-port``, the publisher)."""
    return tornado.web.Application(ops_routes(metrics, readiness))


def make_app(server: Server) -> tornado.web.Application:
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
