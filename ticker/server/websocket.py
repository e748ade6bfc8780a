"""The WebSocket transport: Tornado's WebSocketHandler at the edge of the protocol and the hub.

Control messages (subscribed, snapshot, pong, error, bars) are framed one by one; quote
and bar frames are built once per batch by the fan-out and written as the same bytes to every
connection, straight to the socket while Tornado's own buffer is empty. A ``subscribe_bars``
waits for its symbol's history (a backfill, at most a few seconds) before its ``bars`` reply;
Tornado reads the connection's next message only after that. Once open, a connection keeps nothing of its HTTP
upgrade and its frames are read on a task of its own (``tornado_io.shed_handshake``, ``MeteredProtocol``): an idle
connection costs about 7.5 KiB (docs/performance.md, "idle").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import tornado.iostream
import tornado.websocket

from ticker.entitlements import Identity
from ticker.errors import (
    AUTH_FAILED,
    CLIENT,
    FLOOD,
    PING_TIMEOUT,
    SHUTDOWN,
    SLOW_CONSUMER,
    Disconnect,
    ProtocolError,
    TokenRejected,
)
from ticker.frames import ws_text_frame
from ticker.server import tornado_io
from ticker.server.access import Refused, count_failure, identify, over_cap
from ticker.server.fanout import Connection
from ticker.server.gate import admit_connection
from ticker.session import BarRequest, Outcome, Session

if TYPE_CHECKING:
    from ticker.server.node import Node

log = logging.getLogger("ticker.ws")

PING_HEAD = b"\x89\x04"  # a final ping control frame with 4 bytes of payload: a fresh nonce per ping


class QuoteSocket(tornado_io.StrictOrigin, tornado.websocket.WebSocketHandler, Connection):
    """One client on ``/ws``."""

    transport: ClassVar[str] = "ws"
    framer = staticmethod(ws_text_frame)
    # Ours as slots: Tornado's handler sets 27 attributes, and on Python 3.11 an instance whose class has more than 29
    # attribute names keeps them in a dict of its own (about 1.6 KB instead of 0.3 KB).
    __slots__ = (
        "_address",
        "_closing",
        "_direct",
        "_frame_stream",
        "_holds_address",
        "_identity",
        "_stream",
        "alive_at",
        "disconnect",
        "ping_nonce",
        "ping_sent",
        "registered",
        "server",
        "session",
    )

    def initialize(self, server: Node) -> None:
        tornado_io.reserve_attributes(self)  # so that Tornado's later attributes need no dict per handler
        self.server = server
        self.registered = False
        self.session: Session[Connection] | None = None  # from open() until on_close() releases it
        self._closing = False  # set once we sent Close (or dropped the stream): nothing more is written
        self.disconnect: Disconnect = CLIENT  # why the connection ended: close code and metric label
        self._identity: Identity | None = None  # a header token's bearer, checked before the upgrade
        self._address: str | None = None  # the client address admitted (its slot and its connect rate)
        self._holds_address = False  # its slot is still ours to give back (_give_back_address)

    # -- handshake ---------------------------------------------------------------------------
    def check_origin(self, origin: str) -> bool:
        ok = self.server.config.host_policy.origin_allowed(origin, self.request)  # scheme, host and port
        if not ok:
            log.info("refused origin %r for host %r", origin[:200], self.request.host)
        return ok

    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:  # a header (or access_token) token is checked before the upgrade; without one, "auth" may follow
            # shutting down or full (503), then the address's limits (429/503): all with Retry-After
            self._address = admit_connection(self.server, self.request, self.transport)
            self._holds_address = True  # given back when the connection ends (on_close) or fails to open
            self._identity = await identify(self.server, self.request, self.transport, optional=True)
            refused = (
                None if self._identity is None else over_cap(self.server, self._identity, self.transport)
            )
            if refused is not None:
                raise refused
        except Refused as exc:
            self._give_back_address()
            self.set_status(exc.status)
            for name, value in exc.headers.items():
                self.set_header(name, value)
            self.set_header("Content-Type", "application/json")
            self.finish(orjson.dumps(exc.body))
            return
        except BaseException:
            self._give_back_address()
            raise
        try:
            # Returns after open(): the connection's frames are read on a task of their own from then on, and the
            # handshake's coroutines end here with what they hold (or when the connection ends, on an older Tornado).
            await super().get(*args, **kwargs)
        finally:  # never opened, or already ended: else on_close gives the slot back
            if not tornado_io.reading(self):
                self._give_back_address()

    def _give_back_address(self) -> None:
        """Give the admitted address's slot back, once."""
        if self._holds_address and self._address is not None:
            self._holds_address = False
            self.server.admission.release(self._address)

    def open(self, *args: str, **kwargs: str) -> None:
        cfg, now = self.server.config, time.monotonic()
        srv = self.server
        self.session = session = Session(
            srv.hub,
            self,
            cfg.rate_limit,
            cfg.rate_burst,
            now,
            srv.access,
            self._identity,
            srv.board,
            srv.bar_hub,
        )
        stream = tornado_io.websocket_stream(self)
        self._stream: tornado.iostream.IOStream | None = stream
        self._frame_stream = tornado_io.frame_stream(stream)  # the stream if frames go to its socket directly
        self._direct = stream is not None and tornado_io.can_write_direct(stream)
        self.alive_at = now  # the connect, then the last pong that answered our ping
        self.ping_sent: float | None = None
        self.ping_nonce = b""  # the payload of our outstanding ping: only a pong echoing it proves liveness
        self.set_nodelay(True)
        self.server.register(self)
        self.registered = True
        arg = self.get_query_argument
        opened = session.open(
            arg("symbols", ""), arg("max_hz", None), arg("fields", None), arg("delta", None), now
        )
        tornado_io.shed_handshake(self)  # what an idle connection costs: nothing of the upgrade stays
        self._deliver(opened)

    # -- inbound -----------------------------------------------------------------------------
    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        return tornado_io.metered_protocol(self)  # fragments that end no message call on_fragment()

    def _charge(self) -> None:
        """A ping, pong or fragment costs a token of the rate limit as a message does (a flood closes 1008)."""
        session = self.session
        if session is not None and not self._closing:
            self._deliver(session.frame(time.monotonic()))

    def on_fragment(self) -> None:
        self._charge()

    def on_ping(self, data: bytes) -> None:
        self._charge()  # Tornado has answered it (at most one pong outstanding)

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        session = self.session
        if session is not None and not self._closing:  # nothing more is answered once we sent Close
            out = session.receive(message, time.monotonic())
            self._deliver(out)
            if out.verify is not None:  # Tornado reads the next message once this check is done
                return self._verify(session, out.verify.token)
            if out.bars:  # the same: the next message waits for this history
                return self._send_bars(out.bars)
        return None

    async def _verify(self, session: Session[Connection], token: str) -> None:
        """Check the token of an ``auth`` or ``refresh`` and give the session the verdict."""
        verifier = self.server.verifier
        try:
            if verifier is None:
                raise TokenRejected("invalid", "tokens cannot be checked yet")
            identity = await verifier.verify(token)
        except TokenRejected as exc:
            out = session.reject(exc)
        else:
            out = session.authorize(identity, time.monotonic())
        if not self._closing:
            self._deliver(out)
            if out.bars:  # a refresh moved bar subscriptions between tiers
                await self._send_bars(out.bars)

    async def _send_bars(self, requests: list[BarRequest]) -> None:
        """For each accepted ``subscribe_bars``: wait for the symbols' history, send ``bars`` (the newest
        ``history`` bars this user may see), then make the subscription live so ``bar`` messages follow
        (history that arrives after the wait comes as one more ``bars``: :meth:`Node._resend_bars`)."""
        srv = self.server
        await srv.histories(req.symbol for req in requests)  # a later load sends ``bars`` again
        wall_ms = int(time.time() * 1000)
        for req in requests:
            hold = srv.bar_hub.holds(self).get((req.symbol, req.interval))
            if self._closing or self.session is None or hold is None or hold.key != req.key:
                continue  # closed, unsubscribed or moved meanwhile
            payload, since = srv.bar_hub.opening(
                srv.bars, req.symbol, req.interval, req.key, req.history, wall_ms
            )
            self._send(payload)
            srv.bar_hub.start(self, req.symbol, req.interval, req.key, since)

    def _deliver(self, out: Outcome) -> None:
        """Count the errors, drop what was unsubscribed from the fan-out, write the replies, then close if told."""
        server = self.server
        for code in out.errors:
            server.metrics.client_errors.labels(code).inc()
        for reason in out.auth_failures:
            count_failure(server, self.transport, reason)
        if out.unsubscribed:
            server.fanout.unsubscribed(self, out.unsubscribed)
        for payload in out.replies:
            self._send(payload)
        if out.close is not None:
            self.disconnect = out.close
            self.close(out.close.code, out.close.text)
            if out.close is FLOOD:  # its frames would still be read and parsed while we wait for its Close
                self.abort()
                if self._address is not None:  # and a flooder reconnecting at once floods again
                    server.admission.penalize(self._address, time.monotonic())

    def _send(self, payload: bytes) -> None:
        if self._closing:
            return
        # Written as the fan-out writes: no Future, no task, so no exception is ever left unretrieved.
        unsent = self.write_frame(ws_text_frame(payload))
        # A peer that sends but never reads must not make replies queue without bound either (per
        # connection and in the global budget: the fan-out decides).
        self.server.fanout.replied(self, unsent)

    # -- fan-out side ------------------------------------------------------------------------
    def write_frame(self, frame: bytes) -> int:
        if self._closing:  # nothing may follow our Close frame (RFC 6455 5.5.1)
            return -1
        direct = self._frame_stream
        if direct is not None:  # the fan-out's path: one call per frame below this one
            return direct.send_frame(frame)
        stream = self._stream
        if stream is None:
            return -1
        return tornado_io.write_frame(stream, frame, self._direct)

    def buffered(self) -> int:
        return tornado_io.buffered(self._stream)

    def receives_delayed(self) -> bool:
        return self.session is not None and self.session.delayed > 0

    def send_message(self, kind: str, payload: bytes) -> None:
        self._send(payload)

    def drop_symbols(self, symbols: list[str], refusal: ProtocolError) -> None:
        if self.session is not None and not self._closing:
            self._deliver(self.session.drop(symbols, refusal))

    def heartbeat(self, now: float) -> None:
        """Ping every ``--ping-interval``; drop a peer whose last ping went unanswered ``--ping-timeout``."""
        cfg = self.server.config
        if self._closing:
            return
        session = self.session
        ended = None if session is None else session.expired(now, time.time())
        if ended is not None:  # no auth within --auth-timeout (4001), or the token's exp passed (4003)
            count_failure(self.server, self.transport, "missing" if ended == AUTH_FAILED else "expired")
            self.disconnect = ended
            self.close(ended.code, ended.text)
            return
        if self.ping_sent is not None:  # only a pong answers a ping: messages do not count
            if now - self.ping_sent >= cfg.ping_timeout:
                log.info("dropping a peer that did not answer a ping in %.0f s", cfg.ping_timeout)
                self.disconnect = PING_TIMEOUT
                self.abort()  # a dead peer answers no close handshake either
        elif now - self.alive_at >= cfg.ping_interval:
            self.ping_nonce = os.urandom(4)
            self.write_frame(PING_HEAD + self.ping_nonce)
            self.ping_sent = now

    def on_pong(self, data: bytes) -> None:
        self._charge()
        if self.ping_sent is not None and data == self.ping_nonce:  # unsolicited pongs prove nothing
            self.alive_at = time.monotonic()
            self.ping_sent = None

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self._closing = True
        super().close(code, reason)

    def abort(self) -> None:
        self._closing = True
        tornado_io.stop_reading(self)  # a flooder's frames already read are not parsed either
        if self._stream is not None:
            self._stream.close()

    def close_slow(self) -> None:
        self.disconnect = SLOW_CONSUMER
        tornado_io.drop_held(self._stream)  # the reader is behind: its Close need not wait for more frames
        self.close(SLOW_CONSUMER.code, SLOW_CONSUMER.text)

    def close_going_away(self) -> None:
        self.disconnect = SHUTDOWN
        self.close(SHUTDOWN.code, SHUTDOWN.text)

    def on_close(self) -> None:
        self._give_back_address()
        if self.session is not None:  # break the handler <-> session cycle: no collector run needed
            self.session.release()
            self.session = None
        if self.registered:
            self.registered = False
            self.server.unregister(self, self.disconnect.reason)
