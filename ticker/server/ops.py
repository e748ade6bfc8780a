"""Operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics``, for every process that serves them."""

from __future__ import annotations

import hmac
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import orjson
import tornado.httpserver
import tornado.netutil
import tornado.routing
import tornado.web

from ticker.errors import UNAUTHORIZED
from ticker.metrics.registry import Metrics
from ticker.server import tornado_io
from ticker.server.descriptors import AcceptGuard
from ticker.server.hosts import HostPolicy
from ticker.server.peers import access_logger

log = logging.getLogger("ticker")
# Where the ops endpoints listen is printed whatever --log-level says: scripts and tests read it (port 0).
announce = logging.getLogger("ticker.listen")
announce.setLevel(logging.INFO)

Readiness = Callable[[], tuple[bool, str]]

METRICS_TOKEN_ENV = "TICKER_METRICS_TOKEN"


class JsonHandler(tornado.web.RequestHandler):
    """Base of the JSON endpoints: no sniffing, no caching, errors as ``{"error":{"code","message"}}``.

    A handler that sets :attr:`cors` (the REST endpoints do) answers CORS the way ``/sse`` decides
    origins: the same origin (scheme, host and port) or listed in ``--allowed-origins``. An allowed ``Origin`` gets
    ``Access-Control-Allow-Origin``; a preflight ``OPTIONS`` gets 204 (allowed) or 403 (not).
    """

    #: Which browser origins get CORS (:meth:`~ticker.server.hosts.HostPolicy.origin_allowed`); None: no CORS.
    cors: HostPolicy | None = None

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        self._cors_headers()  # again after an error's clear(); a no-op before initialize() ran

    def prepare(self) -> None:
        self._cors_headers()

    def _cors_origin(self) -> str | None:
        """The request's ``Origin`` when CORS is on for this handler and the origin is allowed."""
        origin = self.request.headers.get("Origin")
        if self.cors is None or origin is None:
            return None
        return origin if self.cors.origin_allowed(origin, self.request) else None

    def _cors_headers(self) -> None:
        if self.cors is None:
            return
        self.set_header("Vary", "Origin")
        origin = self._cors_origin()
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)

    def options(self, *args: str, **kwargs: str) -> None:
        """CORS preflight: 204 with what may be asked for an allowed origin, 403 for any other."""
        if self.cors is None:
            raise tornado.web.HTTPError(405)
        if self._cors_origin() is None:
            self.send_json(
                {"error": {"code": "forbidden_origin", "message": "this origin may not call the API"}}, 403
            )
            return
        self.set_header("Access-Control-Allow-Methods", "GET, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Authorization")
        self.set_header("Access-Control-Max-Age", "600")
        self.clear_header("Content-Type")
        self.set_status(204)
        self.finish()

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
    """``GET /metrics``: Prometheus text format; see :func:`ops_routes` for ``token``."""

    def initialize(self, metrics: Metrics, readiness: Readiness, token: bytes | None = None) -> None:
        super().initialize(metrics, readiness)
        self.token = token

    def get(self) -> None:
        if self.token is not None and not self._authorized(self.token):
            return
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.metrics.render())

    def _authorized(self, token: bytes) -> bool:
        """Whether the request carries ``Authorization: Bearer <token>``; else answers 404 or 401."""
        if not token:
            raise tornado.web.HTTPError(404)
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("latin-1"), token):
            return True
        bad = scheme.lower() == "bearer"  # a token was presented (RFC 6750 §3.1), else none was
        self.set_header("WWW-Authenticate", 'Bearer error="invalid_token"' if bad else "Bearer")
        msg = "/metrics needs Authorization: Bearer with the metrics token"
        self.send_json({"error": {"code": UNAUTHORIZED, "message": msg}}, 401)
        return False


def metrics_token(auth: str) -> bytes | None:
    """What ``/metrics`` on the public port asks for under ``--auth AUTH``: None (open) without auth, else
    ``TICKER_METRICS_TOKEN`` as bytes (empty when unset: then ``/metrics`` is 404 there). Read once, never logged.
    """
    if auth == "none":
        return None
    return os.fsencode(os.environ.get(METRICS_TOKEN_ENV, "").strip())


def ops_routes(
    metrics: Metrics, readiness: Readiness, token: bytes | None = None
) -> list[tornado.routing.Rule]:
    """``/metrics``, ``/healthz`` and ``/readyz`` for any process with metrics and a readiness check.

    ``token`` (see :func:`metrics_token`): None serves ``/metrics`` to anyone (``--metrics-port``, ``--auth
    none``); otherwise ``/metrics`` needs ``Authorization: Bearer <token>`` (401), and is 404 if it is empty.
    """
    o = {"metrics": metrics, "readiness": readiness}
    return [
        tornado.routing.Rule(tornado.routing.PathMatches(path), handler, args)
        for path, handler, args in (
            ("/metrics", MetricsHandler, {**o, "token": token}),
            ("/healthz", HealthHandler, o),
            ("/readyz", ReadyHandler, o),
        )
    ]


#: Connections the kernel queues for accept() (capped by ``net.core.somaxconn``): a connect storm waits there
#: while the listener takes 16 a loop pass (``tornado_io.ACCEPT_BATCH``), instead of clients' SYNs being
#: dropped and retried 1, 3, 7 s later (Tornado's default is 128).
LISTEN_BACKLOG = 1024


class ListenError(OSError):
    """An address that cannot be listened on; the message names it and says why."""


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on ``host``:``port`` (0 picks a free port); :class:`ListenError` when that fails."""
    try:
        return tornado.netutil.bind_sockets(port, host, backlog=LISTEN_BACKLOG)
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
    app = tornado.web.Application(ops_routes(metrics, readiness), log_function=access_logger(()))
    server = tornado.httpserver.HTTPServer(app)
    # no watermark: the ops listener may take the descriptors the main listener keeps free
    tornado_io.accept_guarded(
        server, socks, AcceptGuard(metrics.count_accept_error, None, "the ops listener")
    )
    bound = int(socks[0].getsockname()[1])
    announce.info(banner, host, bound)
    return server, bound
