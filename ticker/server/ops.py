"""Operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics``, for every process that serves them."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import orjson
import tornado.httpserver
import tornado.netutil
import tornado.routing
import tornado.web

from ticker.metrics.registry import Metrics
from ticker.server import tornado_io

log = logging.getLogger("ticker")
# Where the ops endpoints listen is printed whatever --log-level says: scripts and tests read it (port 0).
announce = logging.getLogger("ticker.listen")
announce.setLevel(logging.INFO)

Readiness = Callable[[], tuple[bool, str]]


class JsonHandler(tornado.web.RequestHandler):
    """Base of the JSON endpoints: no sniffing, no caching, errors as ``{"error":{"code","message"}}``."""

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(obj))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = tornado_io.error_reason(status_code, kwargs)
        self.send_json({"error": {"code": f"http_{status_code}", "message": reason}}, status_code)


class _Ops(JsonHandler):
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


class ListenError(OSError):
    """An address that cannot be listened on; the message names it and says why."""


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on ``host``:``port`` (0 picks a free port); :class:`ListenError` when that fails."""
    try:
        return tornado.netutil.bind_sockets(port, host)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def listen_ops(
    metrics: Metrics,
    readiness: Readiness,
    host: str,
    port: int,
    banner: str = "ticker metrics on http://%s:%d/metrics",
) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Serve the operations endpoints on ``host``:``port`` (0 picks one) and announce it with ``banner``
    (given the host and the bound port); returns the server and the bound port. Raises :class:`ListenError`.
    """
    socks = bind(host, port)
    server = tornado.httpserver.HTTPServer(tornado.web.Application(ops_routes(metrics, readiness)))
    server.add_sockets(socks)
    bound = int(socks[0].getsockname()[1])
    announce.info(banner, host, bound)
    return server, bound
