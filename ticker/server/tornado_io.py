"""Every use of Tornado beyond its public API, in one place; and the direct write of pre-built frames.

Tornado's ``IOStream.write`` copies into its buffer and makes a Future per call. On the fan-out hot
path the same bytes go to thousands of streams, so while a stream's own buffer is empty the frame is
handed to ``socket.send`` directly; only what the kernel does not take goes through ``write``.

What this module relies on beyond the public API (tests/unit/test_tornado_io.py fails, naming the
Tornado version, if an upgrade changes any of it):

- ``IOStream._write_buffer._size``: the bytes accepted but not yet sent, and ``_write_buffer is None``
  once the stream is closed. The public ``IOStream.writing()`` only says *whether* bytes wait and costs
  two Python calls per write, which the hot path cannot afford; there is no public size.
- ``WebSocketHandler.ws_connection.stream`` and ``HTTP1Connection.stream`` (via ``request.connection``):
  the connection's ``IOStream``. ``RequestHandler.detach()`` is public but takes the response away
  from the handler, which the event stream still writes and finishes.
- ``RequestHandler._transforms``: the output transforms of one request, to drop gzip from an event
  stream. Tornado offers no per-handler switch (``Content-Encoding: identity`` would work, but
  RFC 9110 says not to send it).

- ``TCPServer._sockets``, ``TCPServer._handlers`` and ``TCPServer._handle_connection``: the listening
  sockets and their accept handlers, which :func:`accept_guarded` fills in place of ``add_sockets``
  (Tornado's own accept loop lets ``EMFILE`` escape to the event loop, which calls it again at once:
  100 % CPU and a traceback per call), so that ``stop()`` still stops them; and the per-connection
  set-up (the IOStream, TLS) that ``add_sockets`` would have run.

- ``WebSocketProtocol13._receive_frame`` (one frame read and acted on), ``_handle_message`` (called for
  every frame that ends a message and every control frame) and ``_fragmented_message_buffer`` (not None
  while a fragmented message is being joined): :class:`MeteredProtocol` calls the handler's
  ``on_fragment()`` for each data frame that does not end its message, which Tornado joins silently,
  so that such frames cost a token of the rate limit as pings, pongs and messages do.

- ``RequestHandler._check_cross_origin(check)`` (called by ``WebSocketHandler.get`` before the upgrade):
  :class:`StrictOrigin` replaces it so that ``check_origin`` alone decides. Tornado 6.6's own version
  accepts before asking ``check_origin`` when ``Sec-Fetch-Site`` is ``same-origin`` or ``none``, or when
  the ``Origin``'s host:port equals the ``Host`` whatever its scheme (``chrome-extension://``, ``https://``
  for an http server, a DNS-rebinding page).

The reason phrase of an error is read the public way (:func:`error_reason`), not from ``_reason``.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import tornado
import tornado.http1connection
import tornado.httputil
import tornado.ioloop
import tornado.iostream
import tornado.tcpserver
import tornado.web
import tornado.websocket

from ticker.server.descriptors import RESERVE, AcceptGuard, reason_of

_PHRASE = re.compile(
    r"[\t\x20-\x7e\x80-\xff]+"
)  # reason-phrase (RFC 9112 §4); Tornado sends "Unknown" otherwise


def can_write_direct(stream: tornado.iostream.IOStream) -> bool:
    """Whether the direct path may be used: plain TCP streams only (TLS must go through Tornado)."""
    return type(stream) is tornado.iostream.IOStream


def write_frame(stream: tornado.iostream.IOStream, frame: bytes | memoryview, direct: bool) -> int:
    """Write ``frame``; return the bytes still unsent afterwards, or -1 if the stream is closed."""
    buf = stream._write_buffer
    if buf is None:
        return -1
    if direct and not buf._size and stream.socket is not None:
        try:
            sent = stream.socket.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Tornado meet the error below and close the stream its own way
        if sent == len(frame):
            return 0
        if sent:
            frame = memoryview(frame)[sent:]  # no copy of the rest
    try:
        stream.write(frame)
    except tornado.iostream.StreamClosedError:
        return -1
    buf = stream._write_buffer
    return buf._size if buf is not None else -1


def buffered(stream: tornado.iostream.IOStream | None) -> int:
    """Bytes accepted by ``stream`` but not yet handed to the kernel (0 once closed)."""
    buf = stream._write_buffer if stream is not None else None
    return buf._size if buf is not None else 0


def websocket_stream(handler: tornado.websocket.WebSocketHandler) -> tornado.iostream.IOStream:
    """The stream under an open WebSocket (call it from ``open()``)."""
    stream = getattr(handler.ws_connection, "stream", None)
    if not isinstance(stream, tornado.iostream.IOStream):
        raise TypeError(f"no IOStream under this WebSocket (Tornado {tornado.version})")
    return stream


def request_stream(handler: tornado.web.RequestHandler) -> tornado.iostream.IOStream:
    """The stream under an HTTP/1.x request, which the handler keeps writing to through Tornado too."""
    conn = handler.request.connection
    if not isinstance(conn, tornado.http1connection.HTTP1Connection):
        raise TypeError(f"not an HTTP/1.x connection: {type(conn).__name__} (Tornado {tornado.version})")
    return conn.stream


def no_compression(handler: tornado.web.RequestHandler) -> None:
    """Turn gzip off for this response (call it in ``prepare``): compression holds events back."""
    handler._transforms = [
        t for t in handler._transforms if not isinstance(t, tornado.web.GZipContentEncoding)
    ]


def error_reason(status_code: int, kwargs: dict[str, Any]) -> str:
    """The reason phrase of an error response, from ``write_error``'s arguments, chosen as ``send_error`` does."""
    exc_info = kwargs.get("exc_info")
    exc = exc_info[1] if exc_info else None
    reason = exc.reason if isinstance(exc, tornado.web.HTTPError) and exc.reason else kwargs.get("reason")
    if not isinstance(reason, str):
        return tornado.httputil.responses.get(status_code, "Unknown")
    return reason if _PHRASE.fullmatch(reason) and "<" not in reason else "Unknown"


ACCEPT_BATCH = 128  # connections taken per wake-up at most, as Tornado's own accept loop (its backlog)


class GuardedAccept:
    """The accept handler of one listening socket: Tornado's loop, plus the :class:`AcceptGuard`'s back-off.

    On ``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM`` (or a connection accepted above the guard's
    watermark, closed at once) the socket leaves the event loop for the guard's pause; the pending
    connections wait in the kernel's backlog meanwhile.
    """

    def __init__(
        self,
        sock: socket.socket,
        callback: Callable[[socket.socket, Any], None],
        guard: AcceptGuard,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sock, self.callback, self.guard, self.clock = sock, callback, guard, clock
        self.io_loop = tornado.ioloop.IOLoop.current()
        self.fd = sock.fileno()
        self.removed = False
        self.paused: object | None = None  # the timeout that resumes accepting
        self.io_loop.add_handler(self.fd, self.on_readable, tornado.ioloop.IOLoop.READ)

    def on_readable(self, _fd: int, _events: int) -> None:
        """Accept what is pending (at most :data:`ACCEPT_BATCH`); pause on the guard's word."""
        for _ in range(ACCEPT_BATCH):
            if self.removed or self.paused is not None:
                return
            try:
                conn, address = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                reason = reason_of(exc)
                if reason is not None:
                    self.pause(self.guard.failed(reason, self.clock()))
                continue  # that pending connection is gone; the next one may be fine
            if self.guard.over(conn.fileno()):
                conn.close()
                self.pause(self.guard.failed(RESERVE, self.clock()))
                continue
            self.guard.accepted()
            self.callback(conn, address)

    def pause(self, delay: float) -> None:
        """Stop watching the socket for ``delay`` seconds."""
        self.io_loop.remove_handler(self.fd)
        self.paused = self.io_loop.call_later(delay, self.resume)

    def resume(self) -> None:
        """Watch the socket again (after a pause)."""
        self.paused = None
        if not self.removed:
            self.io_loop.add_handler(self.fd, self.on_readable, tornado.ioloop.IOLoop.READ)

    def remove(self) -> None:
        """Stop accepting for good (``TCPServer.stop()`` calls it, then closes the socket)."""
        if self.removed:
            return
        self.removed = True
        if self.paused is not None:
            self.io_loop.remove_timeout(self.paused)
            self.paused = None
        else:
            self.io_loop.remove_handler(self.fd)


def accept_guarded(
    server: tornado.tcpserver.TCPServer, sockets: Iterable[socket.socket], guard: AcceptGuard
) -> list[GuardedAccept]:
    """``server.add_sockets(sockets)``, with accept errors and the descriptor reserve handled by ``guard``."""
    handlers = []
    for sock in sockets:
        accept = GuardedAccept(sock, server._handle_connection, guard)
        server._sockets[sock.fileno()] = sock
        server._handlers[sock.fileno()] = accept.remove
        handlers.append(accept)
    return handlers


class MeteredProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, calling ``handler.on_fragment()`` after each data frame that does not end its message."""

    _ended = False  # set by _handle_message: the frame just read ended a message or was a control frame

    async def _receive_frame(self) -> None:
        self._ended = False
        await super()._receive_frame()
        if not self._ended and self._fragmented_message_buffer is not None:
            on_fragment = getattr(self.handler, "on_fragment", None)
            if on_fragment is not None:
                on_fragment()

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        self._ended = True
        return super()._handle_message(opcode, data)


def metered_protocol(
    handler: tornado.websocket.WebSocketHandler,
) -> tornado.websocket.WebSocketProtocol | None:
    """``handler.get_websocket_protocol()`` (call it from an override), as a :class:`MeteredProtocol`."""
    base = tornado.websocket.WebSocketHandler.get_websocket_protocol(handler)
    if type(base) is not tornado.websocket.WebSocketProtocol13:
        return base
    return MeteredProtocol(handler, False, base.params)


class StrictOrigin:
    """A WebSocket handler mixin: the handler's ``check_origin`` alone decides about a request's ``Origin``
    (Tornado's cross-origin shortcuts are skipped; see the module docstring)."""

    request: tornado.httputil.HTTPServerRequest

    def _check_cross_origin(self, check: Callable[[str], bool]) -> str | None:
        origin = self.request.headers.get("Origin")
        return None if origin is None or check(origin) else f"Origin {origin[:200]!r} not allowed"
