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

from ticker import protocol
from ticker.frames import ws_text_frame
from ticker.hub import TooManySymbols
from ticker.protocol import ProtocolError
from ticker.server import tornado_io
from ticker.server.fanout import Connection
from ticker.tokenbucket import TokenBucket

if TYPE_CHECKING:
    from ticker.server.node import Node

log = logging.getLogger("ticker.server.websocket")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013
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
        self._closing = False  # set once we sent Close (or dropped the stream): nothing more is written
        self.close_reason_label = "client"

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
        cfg = self.server.config
        self.init_fanout_state()
        self.bucket = TokenBucket(cfg.rate_limit, cfg.rate_burst, time.monotonic())
        self.violations = 0
        stream = self.ws_connection.stream if self.ws_connection else None
        self._stream: tornado.iostream.IOStream | None = stream
        self._direct = stream is not None and tornado_io.can_write_direct(stream)
        self.alive_at = time.monotonic()  # the connect, then the last pong
        self.ping_sent: float | None = None
        self.set_nodelay(True)
        self.server.register(self)
        self.registered = True
        raw = self.get_query_argument("symbols", "")
        if raw:
            valid, invalid = protocol.split_symbols(p for p in raw.split(",") if p.strip())
            self._subscribe(protocol.Subscribe(valid, invalid))

    # -- inbound -----------------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        if not self.bucket.take(time.monotonic()):
            self.violations += 1
            if self.violations > self.server.config.rate_burst:
                self.close_reason_label = "flood"
                self.close(CLOSE_POLICY, "rate limit exceeded")
                return
            if self.violations == 1 or self.violations % 10 == 0:
                self._error(protocol.RATE_LIMITED, "too many messages; slow down (message dropped)")
            return
        self.violations = 0
        if isinstance(message, bytes):
            self._error(protocol.BAD_REQUEST, "binary frames are not supported; send JSON text frames")
            return
        try:
            cmd = protocol.parse_client_message(message)
        except ProtocolError as exc:
            self._error(exc.code, exc.message)
            return
        if isinstance(cmd, protocol.Ping):
            self._send(protocol.pong(cmd.id))
        elif isinstance(cmd, protocol.Subscribe):
            self._subscribe(cmd)
        else:
            if cmd.invalid:
                self._error(protocol.INVALID_SYMBOL, protocol.invalid_symbols_message(cmd.invalid))
            self.server.hub.unsubscribe(self, cmd.symbols)
            for s in cmd.symbols:
                self.pending.pop(s, None)
            self._send(protocol.subscribed(self.server.hub.symbols_of(self)))

    def _subscribe(self, cmd: protocol.Subscribe) -> None:
        if cmd.invalid:
            self._error(protocol.INVALID_SYMBOL, protocol.invalid_symbols_message(cmd.invalid))
        hub = self.server.hub
        try:
            _added, snap = hub.subscribe(self, cmd.symbols)
        except TooManySymbols as exc:
            self._error(protocol.TOO_MANY_SYMBOLS, str(exc))
            return
        self._send(protocol.subscribed(hub.symbols_of(self)))
        if snap:
            self._send(protocol.encode_quotes(protocol.SNAPSHOT, snap))

    def _error(self, code: str, message: str) -> None:
        self.server.metrics.client_errors.labels(code).inc()
        self._send(protocol.error(code, message))

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
                self.close_reason_label = "ping_timeout"
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
        self.close_reason_label = "slow_consumer"
        self.close(CLOSE_TRY_AGAIN_LATER, "slow consumer: not reading fast enough")

    def close_going_away(self) -> None:
        self.close_reason_label = "shutdown"
        self.close(CLOSE_GOING_AWAY, "server shutting down")

    def on_close(self) -> None:
        if self.registered:
            self.registered = False
            self.server.unregister(self, self.close_reason_label)
