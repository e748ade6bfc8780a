"""A serving node: the :class:`~ticker.server.node.Node` behind its HTTP listeners (the app and ``--metrics-port``)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from typing import Any

import tornado.httpserver
import tornado.ioloop
import tornado.netutil

from ticker.server import heap, tornado_io
from ticker.server.app import make_app
from ticker.server.bodies import BodyRefusal
from ticker.server.config import Config
from ticker.server.descriptors import AcceptGuard, soft_limit, watermark
from ticker.server.node import Node
from ticker.server.ops import ListenError, announce, bind, listen_ops
from ticker.server.peersockets import IP_SOCKETS, TCP, PeerSockets

log = logging.getLogger("ticker")

MAX_BODY_BYTES = 1 << 20  # no route takes a body (BodyRefusal); Tornado's own bound, should one get through
MAX_HEADER_BYTES = 64 * 1024  # a request's start line and headers


class Service:
    """Starts a node, then listens; stops accepting, then stops the node, then closes what is left."""

    def __init__(self, config: Config, node: Node | None = None) -> None:
        self.config = config
        self.node = node or Node(config)
        self.port = config.port
        self.metrics_port: int | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._metrics_http: tornado.httpserver.HTTPServer | None = None

    async def start(self, sockets: Iterable[socket.socket] | None = None) -> None:
        """Start the node, then listen on ``sockets`` if given, else on the configured host and port.

        Raises :class:`~ticker.server.ops.ListenError` (with everything stopped again) when an address is taken,
        :class:`~ticker.auth.options.KeyLoadError` (before anything starts) when ``--auth jwt`` has no usable key.
        """
        cfg, node = self.config, self.node
        if cfg.access.auth == "jwt" and node.verifier is None:  # a key that does not load: nothing starts
            from ticker.auth.verifier import TokenVerifier  # PyJWT and cryptography only with --auth jwt

            node.verifier = await TokenVerifier.load(cfg.access)
            log.info("auth: jwt, keys: %s", node.verifier.sources)
        try:
            socks = (
                list(sockets) if sockets is not None else bind(cfg.host, cfg.port)
            )  # fails before anything starts
        except ListenError:
            await self._close_verifier()
            raise
        await node.start()
        # open sockets per peer address, counted at accept (see ticker/server/peersockets.py)
        peers: PeerSockets[Any] = PeerSockets(
            cfg.sockets_per_ip,
            cfg.trusted_proxies,
            node.metrics.connections_refused.labels(TCP, IP_SOCKETS).inc,
        )
        self._http = tornado.httpserver.HTTPServer(
            # no route takes a body: refused before it is read; the first headers make a connection not idle
            tornado_io.FirstHeaders(BodyRefusal(make_app(node)), peers),
            max_body_size=MAX_BODY_BYTES,
            max_header_size=MAX_HEADER_BYTES,
            # Tornado's header timeout: from the connect, or the end of the previous response, to the end of
            # the headers; so also how long an idle keep-alive connection stays open.
            idle_connection_timeout=cfg.header_timeout,
            body_timeout=cfg.body_timeout,
            xheaders=False,
        )
        # tables an attack's connections size, rebuilt smaller once they went (Node._compact_tables)
        loop = asyncio.get_running_loop()
        node.compact_also(
            self._http, peers, tornado.ioloop.IOLoop.current(), getattr(loop, "_selector", None)
        )
        guard = AcceptGuard(node.metrics.count_accept_error, watermark(soft_limit()), "the listener")
        tornado_io.accept_guarded(self._http, socks, guard, peers)
        node.metrics.max_connections.set(cfg.max_connections)
        self.port = socks[0].getsockname()[1]
        if cfg.metrics_port is not None:
            mport = cfg.metrics_port + cfg.worker_index if cfg.metrics_port else 0
            try:
                self._metrics_http, self.metrics_port = listen_ops(
                    node.metrics, node.readiness, cfg.host, mport
                )
            except ListenError:
                await self.stop()
                raise
        announce.info(
            "ticker listening on http://%s:%d (feeds: %s, broker: %s, at most %d connections, memory: %s)",
            cfg.host,
            self.port,
            ",".join(f.name for f in node.feeds) or "none",
            node.broker.name,
            cfg.max_connections,
            heap.allocator(),
        )

    async def stop(self) -> None:
        """Stop accepting, stop the node (clients get 1001), then close the remaining HTTP connections."""
        if self._http is not None:
            self._http.stop()
        await self.node.stop()
        await self._close_verifier()
        if self._metrics_http is not None:
            self._metrics_http.stop()
        if self._http is not None:
            try:
                await asyncio.wait_for(self._http.close_all_connections(), timeout=1.0)
            except TimeoutError:
                log.warning("some HTTP connections did not close in time")
        log.info("ticker stopped")

    async def _close_verifier(self) -> None:
        verifier, self.node.verifier = self.node.verifier, None
        if verifier is not None:
            await verifier.close()
