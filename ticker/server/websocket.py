"""The WebSocket transport: Tornado's WebSocketHandler at the edge of the protocol and the hub.

Control messages (subscribed, snapshot, pong, error) go through ``write_message``; quote
frames are built once per batch by the fan-out and written as the same bytes to every
connection, straight to the socket while Tornado's own buffer is empty.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import tornado.iostream
import tornado.web
import tornado.websocket

from ticker.errors import CLIENT, PING_TIMEOUT, SHUTDOWN, SLOW_CONSUMER, Disconnect
from ticker.frames import ws_text_frame
from ticker.server import tornado_io
from ticker.server.fanout import Connection
from ticker.session import Outcome, Session

if TYPE_CHECKING:
    from ticker.server.node import Node

log = logging.getLogger("ticker.ws")

PING_FRAME = b"\x89\x00"  # a final, empty ping control frame: the same two bytes for every connection


def origin_allowed(origin: str, host: str, allowed: frozenset[str]) -> bool:
    """Same host as the request's Host header, or listed in ``allowed`` (``*`` allows every origin)."""
    if "*" in allowed or origin.lower().rstrip("/") in allowed:
        return True
    return urlsplit(origin).netloc.lower() == host.lower()


class QuoteSocket(tornado.websocket.WebSocketHandler, Connection):
    """One client on ``/ws``."""

    transport: ClassVar[str] = "ws"
    framer = staticmethod(ws_text_frame)

    def initialize(self, server: Node) -> None:
        self.server = server
        self.registered = False
        self.session: Session[Connection] | None = None  # from open() until on_close() releases it
        self._closing = False  # set once we sent Close (or dropped the stream): nothing more is written
        self.disconnect: Disconnect = CLIENT  # why the connection ended: close code and metric label

    # -- handshake ---------------------------------------------------------------------------
    def check_origin(self, origin: str) -> bool:
        ok = origin_allowed(origin, self.request.host, self.server.config.allowed_origins)
        if not ok:
            log.info("refused origin %r for host %r", origin[:200], self.request.host)
        return ok

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.server.closing:
            raise tornado.web.HTTPError(503, reason="server shutting down")
        if self.server.connection_count() >= self.server.config.max_connections:
            raise tornado.web.HTTPError(503, reason="too many connections")
        await super().get(*args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        cfg, now = self.server.config, time.monotonic()
        self.session = session = Session(self.server.hub, self, cfg.rate_limit, cfg.rate_burst, now)
        stream = tornado_io.websocket_stream(self)
        self._stream: tornado.iostream.IOStream | None = stream
        self._direct = stream is not None and tornado_io.can_write_direct(stream)
        self.alive_at = now  # the connect, then the last pong
        self.ping_sent: float | None = None
        self.set_nodelay(True)
        self.server.register(self)
        self.registered = True
        self._deliver(session.open(self.get_query_argument("symbols", "")))

    # -- inbound -----------------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        session = self.session
        if session is not None and not self._closing:  # nothing more is answered once we sent Close
            self._deliver(session.receive(message, time.monotonic()))

    def _deliver(self, out: Outcome) -> None:
        """Count the errors, drop what was unsubscribed from the fan-out, write the replies, then close if told."""
        server = self.server
        for code in out.errors:
            server.metrics.client_errors.labels(code).inc()
        if out.unsubscribed:
            server.fanout.unsubscribed(self, out.unsubscribed)
        for payload in out.replies:
            self._send(payload)
        if out.close is not None:
            self.disconnect = out.close
            self.close(out.close.code, out.close.text)

    def _send(self, payload: bytes) -> None:
        if self._closing:
            return
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(payload)
        # A peer that sends but never reads must not make replies queue without bound either.
        unsent, bound = self.buffered(), self.server.config.slow_bytes
        if unsent > 4 * bound:
            self.server.fanout.drop_slow(self)
        elif unsent > bound:
            self.server.fanout.mark_slow(self)

    # -- fan-out side ------------------------------------------------------------------------
    def write_frame(self, frame: bytes) -> int:
        stream = self._stream
        if stream is None or self._closing:  # nothing may follow our Close frame (RFC 6455 5.5.1)
            return -1
        return tornado_io.write_frame(stream, frame, self._direct)

    def buffered(self) -> int:
        return tornado_io.buffered(self._stream)

    def heartbeat(self, now: float) -> None:
        """Ping every ``--ping-interval``; drop a peer whose last ping went unanswered ``--ping-timeout``."""
        cfg = self.server.config
        if self._closing:
            return
        if self.ping_sent is not None:  # only a pong answers a ping: messages do not count
            if now - self.ping_sent >= cfg.ping_timeout:
                log.info("dropping a peer that did not answer a ping in %.0f s", cfg.ping_timeout)
                self.disconnect = PING_TIMEOUT
                self.abort()  # a dead peer answers no close handshake either
        elif now - self.alive_at >= cfg.ping_interval:
            self.write_frame(PING_FRAME)
            self.ping_sent = now

    def on_pong(self, data: bytes) -> None:
        self.alive_at = time.monotonic()
        self.ping_sent = None

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self._closing = True
        super().close(code, reason)

    def abort(self) -> None:
        self._closing = True
        if self._stream is not None:
            self._stream.close()

    def close_slow(self) -> None:
        self.disconnect = SLOW_CONSUMER
        self.close(SLOW_CONSUMER.code, SLOW_CONSUMER.text)

    def close_going_away(self) -> None:
        self.disconnect = SHUTDOWN
        self.close(SHUTDOWN.code, SHUTDOWN.text)

    def on_close(self) -> None:
        if self.session is not None:  # break the handler <-> session cycle: no collector run needed
            self.session.release()
            self.session = None
        if self.registered:
            self.registered = False
            self.server.unregister(self, self.disconnect.reason)
