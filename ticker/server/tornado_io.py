"""Every use of Tornado beyond its public API, in one place; and the direct write of pre-built frames.

Tornado's ``IOStream.write`` copies into its buffer and makes a Future per call. On the fan-out hot
path the same bytes go to thousands of streams, so while a stream's own buffer is empty the frame is
handed to ``socket.send`` directly; only what the kernel does not take goes through ``write``.

What this module relies on beyond the public API (tests/unit/test_tornado_io.py fails, naming the
Tornado version, if an upgrade changes any of it):

- ``IOStream._write_buffer._size``: the bytes accepted but not yet sent, and ``_write_buffer is None``
  once the stream is closed. The public ``IOStream.writing()`` only says *whether* bytes wait and costs
  two Python calls per write, which the hot path cannot afford; there is no public size.
- ``IOStream._write_buffer.append``, ``IOStream._total_write_index`` and ``IOStream._handle_write`` (called
  whenever the stream writes what it holds): a frame for a stream that already holds a backlog skips
  ``write`` and its Future per call (a reader that never reads would keep one per frame, with its
  callback and context, until it closed) and a ``send`` that would fail; a stream with a backlog is
  already watched for writability. A :class:`PeerStream` holds such frames itself and hands them to its
  buffer when ``_handle_write`` has emptied it.
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

- ``WebSocketProtocol.client_terminated``: the frame loop reads until it is set; closing the stream alone
  does not stop it, since ``IOStream.read_bytes`` still serves what the stream had read (a flooder's 64 KB
  chunk is about 10,000 frames). :func:`stop_reading` sets it.
- ``WebSocketProtocol13._receive_frame_loop`` (awaited by ``_accept_connection`` right after ``open()``, until the
  connection ends): :class:`MeteredProtocol` runs it on a task of its own instead, so that the handshake's
  coroutines (``RequestHandler._execute``, ``get``, ``accept_connection``) end after ``open()`` with what they hold.
  :func:`shed_handshake` then drops what the handler keeps of the upgrade: ``RequestHandler._headers`` (the
  101's), ``ui``, ``_transforms``, ``path_args``/``path_kwargs``, ``WebSocketHandler.open_args``/``open_kwargs``
  and, on its ``HTTPServerRequest``, ``headers``, ``connection``, ``server_connection`` and the arguments. Each is
  replaced only if it exists; what Tornado still reads afterwards (the request's method, URI, version, client
  address and host, for its logs) stays. On Python 3.11 an instance keeps its attributes in a small array only while
  their names fit its class's shared keys (29 names at most; a dict of about 1.6 KB otherwise): ``MeteredProtocol``
  adds its own as slots, since ``WebSocketProtocol13`` sets 29, and :func:`reserve_attributes` puts the names
  Tornado gives a handler after its ``__init__`` (:data:`LATE_ATTRIBUTES`) into those keys at once.

- ``RequestHandler._check_cross_origin(check)`` (called by ``WebSocketHandler.get`` before the upgrade):
  :class:`StrictOrigin` replaces it so that ``check_origin`` alone decides. Tornado 6.6's own version
  accepts before asking ``check_origin`` when ``Sec-Fetch-Site`` is ``same-origin`` or ``none``, or when
  the ``Origin``'s host:port equals the ``Host`` whatever its scheme (``chrome-extension://``, ``https://``
  for an http server, a DNS-rebinding page).

- ``IOStream.close_fd()`` (called once, by ``close()``, after the stream left the event loop, to close the
  socket) and ``TCPServer.max_buffer_size``/``read_chunk_size``: :class:`PeerStream` gives its peer
  address's slot back in ``close_fd`` (a stream's close callback is taken by the HTTP connection and then
  the WebSocket), and :func:`accept_guarded` with a :class:`~ticker.server.peersockets.PeerSockets` builds
  the streams itself, as ``_handle_connection`` does (no TLS).

The reason phrase of an error is read the public way (:func:`error_reason`), not from ``_reason``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from types import MappingProxyType
from typing import Any, cast

import tornado
import tornado.gen
import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.iostream
import tornado.log
import tornado.tcpserver
import tornado.web
import tornado.websocket

from feeds.ratelimit import ThrottledLog
from ticker.server.descriptors import KEEP_FREE, RESERVE, AcceptGuard, reason_of
from ticker.server.peersockets import RESERVE_IDLE, PeerSockets

log = logging.getLogger("ticker")

_PHRASE = re.compile(
    r"[\t\x20-\x7e\x80-\xff]+"
)  # reason-phrase (RFC 9112 §4); Tornado sends "Unknown" otherwise


def can_write_direct(stream: tornado.iostream.IOStream) -> bool:
    """Whether the direct path may be used: plain TCP streams only (TLS must go through Tornado), with no
    ``max_write_buffer_size`` (a frame queued behind a backlog skips ``IOStream.write``'s check of it)."""
    return type(stream) in _PLAIN and stream.max_write_buffer_size is None


def write_frame(stream: tornado.iostream.IOStream, frame: bytes | memoryview, direct: bool) -> int:
    """Write ``frame``; return the bytes still unsent afterwards, or -1 if the stream is closed.

    Behind a backlog (``direct`` streams) the frame is queued without ``IOStream.write``: no Future, done
    callback and context per frame (about 1 KB of small objects that a reader who never reads would pin,
    in a Python arena that outlives it), and no ``send`` that cannot succeed; the stream already waits to
    be writable, and writes it in order. A :class:`PeerStream` holds it by reference (:meth:`PeerStream.hold`).
    """
    if direct and type(stream) is PeerStream:
        return stream.send_frame(frame)
    buf = stream._write_buffer
    if buf is None:
        return -1
    if direct and buf._size:
        buf.append(frame)
        stream._total_write_index += len(frame)
        return buf._size
    sent = 0
    sock = stream.socket
    if direct and sock is not None:
        try:
            sent = sock.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Tornado meet the error below and close the stream its own way
        if sent == len(frame):
            return 0
    return _write_rest(stream, frame, sent)


def _write_rest(stream: tornado.iostream.IOStream, frame: bytes | memoryview, sent: int) -> int:
    """Hand what the socket did not take of ``frame`` (all but its first ``sent`` bytes) to Tornado's buffer."""
    if sent:
        frame = memoryview(frame)[sent:]  # no copy of the rest
    try:
        stream.write(frame)
    except tornado.iostream.StreamClosedError:
        return -1
    buf = stream._write_buffer
    return buf._size if buf is not None else -1


def frame_stream(stream: tornado.iostream.IOStream) -> PeerStream | None:
    """``stream`` if frames may go to it by :meth:`PeerStream.send_frame` (the same as :func:`write_frame` with
    ``direct``, in one call), else None."""
    return stream if type(stream) is PeerStream and can_write_direct(stream) else None


def stop_reading(handler: tornado.websocket.WebSocketHandler) -> None:
    """Read no more frames of ``handler``'s WebSocket, not even those its stream has read already (call it
    before closing the stream under a flooder: otherwise each buffered frame is still parsed)."""
    protocol = handler.ws_connection
    if protocol is not None:
        protocol.client_terminated = True


def drop_held(stream: tornado.iostream.IOStream | None) -> None:
    """Forget the frames ``stream`` holds behind Tornado's buffer (:meth:`PeerStream.hold`): a Close written
    next follows only what Tornado holds (a slow reader's close; other closes send the held frames first)."""
    if type(stream) is PeerStream:
        stream.discard_held()


def buffered(stream: tornado.iostream.IOStream | None) -> int:
    """Bytes accepted by ``stream`` but not yet handed to the kernel (0 once closed)."""
    buf = stream._write_buffer if stream is not None else None
    if buf is None:
        return 0
    return buf._size + stream.held_bytes if type(stream) is PeerStream else buf._size


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


#: Connections taken per wake-up at most. Their handshakes come in the next loop pass: 16 keep that pass short
#: (quotes keep flowing during a connect storm: 128, Tornado's own batch, let a canary wait 0.9 s behind 1,000
#: subscribers of 500 symbols each), and an idle loop passes often enough to accept thousands a second.
ACCEPT_BATCH = 16
#: The answer to a socket over ``--max-sockets-per-ip``, sent without reading anything, then closed.
IP_SOCKETS_ANSWER = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: 85\r\n"
    b"Retry-After: 10\r\nConnection: close\r\n\r\n"
    b'{"error":{"code":"ip_limit","message":"too many open connections from this address"}}'
)
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
#: Held frames of this size or less are copied (Python's own allocator serves objects up to 512 bytes).
SMALL_FRAME = 512


class PeerStream(tornado.iostream.IOStream):
    """A connection's ``IOStream`` that gives its slot in a :class:`PeerSockets` table back when it closes,
    and holds the frames written behind a backlog by reference (:meth:`hold`).

    Tornado's buffer would wrap each such frame in a memoryview, a managed buffer and a tuple (about 350
    bytes of small objects per frame), or copy it. A never-reading client's thousand frames would then
    fill Python's object arenas, which go back to the system only once wholly empty: long-lived objects
    made meanwhile keep most of them after the client is gone. Held frames cost a list slot each and stay
    the bytes the fan-out shares between connections. A frame of :data:`SMALL_FRAME` bytes or less (a
    reply, a quote or two), itself one of those small objects, is copied instead onto the end of a held
    ``bytearray``, whose buffer grows in the C heap that a trim gives back. Invariant: frames are held
    only while Tornado's buffer is not empty; when it empties (:meth:`_handle_write`) or Tornado writes
    something itself (:meth:`write`: a pong, a close), the held frames go into it first, joined, so the
    order is kept.
    """

    def __init__(self, sock: socket.socket, peers: PeerSockets[Any], key: str, **kwargs: Any) -> None:
        self.peer_table = peers
        self.peer_key = key
        self.held: list[bytes | bytearray | memoryview] = []
        self.held_bytes = 0
        super().__init__(sock, **kwargs)

    def send_frame(self, frame: bytes | memoryview) -> int:
        """:func:`write_frame` with ``direct`` (:func:`can_write_direct` must hold): the fan-out's per-frame path."""
        buf = self._write_buffer
        if buf is None:
            return -1
        if buf._size:
            return self.hold(frame)
        sock = self.socket
        if sock is None:
            return _write_rest(self, frame, 0)
        try:
            sent = sock.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Tornado meet the error in write and close the stream its own way
        if sent == len(frame):
            return 0
        return _write_rest(self, frame, sent)

    def hold(self, frame: bytes | memoryview) -> int:
        """Queue ``frame`` behind Tornado's buffer (not empty); return the bytes now unsent."""
        held = self.held
        n = len(frame)
        if n > SMALL_FRAME:
            held.append(frame)
        elif held and type(held[-1]) is bytearray:
            held[-1] += frame
        else:
            held.append(bytearray(frame))
        self.held_bytes += n
        return self._write_buffer._size + self.held_bytes

    def discard_held(self) -> None:
        """Forget the held frames (the connection closes: they will never be sent)."""
        self.held = []
        self.held_bytes = 0

    def _release_held(self) -> None:
        held = self.held
        data = held[0] if len(held) == 1 else b"".join(held)
        self.discard_held()
        self._write_buffer.append(data)
        self._total_write_index += len(data)

    def write(self, data: bytes | memoryview) -> asyncio.Future[None]:
        if self.held and self._write_buffer is not None:  # Tornado's own write goes after what was held
            self._release_held()
        return super().write(data)

    def _handle_write(self) -> None:
        super()._handle_write()
        while self.held and self._write_buffer is not None and not self._write_buffer._size:
            self._release_held()  # written all it had: the held frames are next
            super()._handle_write()

    def close_fd(self) -> None:
        try:
            super().close_fd()
        finally:
            self.peer_table.closed(self, self.peer_key)

    def close(self, exc_info: Any = False) -> None:
        super().close(exc_info)
        self.discard_held()
        err = self.error  # e.g. the reset of a peer that left with bytes unread
        if err is not None:  # its traceback's frames hold this stream: a cycle only a full collection frees
            err.__traceback__ = None


_PLAIN = (tornado.iostream.IOStream, PeerStream)  # the stream types written directly


def refuse_socket(conn: socket.socket) -> None:
    """Answer :data:`IP_SOCKETS_ANSWER` if the kernel takes it at once, and close."""
    with contextlib.suppress(OSError):
        if not _DONTWAIT:
            conn.setblocking(False)
        conn.send(IP_SOCKETS_ANSWER, _DONTWAIT)
    conn.close()


class GuardedAccept:
    """The accept handler of one listening socket: Tornado's loop, plus the :class:`AcceptGuard`'s back-off
    and, with ``peers``, the per-address socket cap and the choice of what to close at the watermark.

    On ``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM`` (or a connection accepted above the guard's
    watermark, closed at once) the socket leaves the event loop for the guard's pause; the pending
    connections wait in the kernel's backlog meanwhile. With ``peers``, a connection over its address's cap
    is answered 429 and closed (no pause), and one accepted above the watermark closes the oldest connection
    that has not sent a request's headers in the table's grace and takes its descriptor (no pause); only when there is none
    is the new connection closed and the listener paused. ``callback(conn, address, key)`` serves what is
    kept (``key``: the peer's slot in ``peers``).
    """

    def __init__(
        self,
        sock: socket.socket,
        callback: Callable[[socket.socket, Any, str], None],
        guard: AcceptGuard,
        clock: Callable[[], float] = time.monotonic,
        peers: PeerSockets[Any] | None = None,
    ) -> None:
        self.sock, self.callback, self.guard, self.clock = sock, callback, guard, clock
        self.peers = peers
        self.io_loop = tornado.ioloop.IOLoop.current()
        self.fd = sock.fileno()
        self.removed = False
        self.paused: object | None = None  # the timeout that resumes accepting
        self._evicted = ThrottledLog(log, interval=1.0)
        self.io_loop.add_handler(self.fd, self.on_readable, tornado.ioloop.IOLoop.READ)

    def on_readable(self, _fd: int, _events: int) -> None:
        """Accept what is pending (at most :data:`ACCEPT_BATCH`); pause on the guard's word."""
        peers = self.peers
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
            key = ""
            if peers is not None:
                admitted = peers.admit(address[0] if isinstance(address, tuple) else "")
                if admitted is None:
                    refuse_socket(conn)
                    continue
                key = admitted
            if self.guard.over(conn.fileno()):
                kept = self.make_room(conn)
                if kept is None:
                    if peers is not None:
                        peers.release(key)
                    self.pause(self.guard.failed(RESERVE, self.clock()))
                    continue
                conn = kept
            self.guard.accepted()
            self.callback(conn, address, key)

    def make_room(self, conn: socket.socket) -> socket.socket | None:
        """``conn`` came on a descriptor above the watermark: close the oldest idle connection (idle for the
        table's grace) and move ``conn`` to the descriptor that freed (the kernel gives the lowest); without
        one, close ``conn`` and return None."""
        victim = self.peers.oldest_idle(self.clock()) if self.peers is not None else None
        if victim is None:
            conn.close()
            return None
        victim.close()  # PeerStream.close_fd: its slot is given back, its descriptor free at once
        try:
            low = conn.dup()
        except OSError:
            low = None
        conn.close()
        if low is not None and self.guard.over(low.fileno()):
            low.close()
            low = None
        if low is not None:
            self.guard.count(RESERVE_IDLE)
            self._evicted.warning(
                RESERVE_IDLE,
                "%s closed the oldest connection that had sent no request, to keep the last %d file "
                "descriptors free",
                self.guard.name,
                KEEP_FREE,
            )
        return low

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


def _serve_counted(
    server: tornado.tcpserver.TCPServer,
    peers: PeerSockets[Any],
    conn: socket.socket,
    address: Any,
    key: str,
) -> None:
    """``server._handle_connection(conn, address)`` for plain TCP, with a :class:`PeerStream` (idle until
    its first request's headers are in)."""
    try:
        stream = PeerStream(
            conn, peers, key, max_buffer_size=server.max_buffer_size, read_chunk_size=server.read_chunk_size
        )
    except Exception:
        peers.release(key)
        conn.close()
        tornado.log.app_log.error("Error in connection callback", exc_info=True)
        return
    peers.opened(stream, time.monotonic())
    try:
        future = server.handle_stream(stream, address)
        if future is not None:
            tornado.ioloop.IOLoop.current().add_future(
                tornado.gen.convert_yielded(future), lambda f: f.result()
            )
    except Exception:
        tornado.log.app_log.error("Error in connection callback", exc_info=True)


def accept_guarded(
    server: tornado.tcpserver.TCPServer,
    sockets: Iterable[socket.socket],
    guard: AcceptGuard,
    peers: PeerSockets[Any] | None = None,
) -> list[GuardedAccept]:
    """``server.add_sockets(sockets)``, with accept errors and the descriptor reserve handled by ``guard``
    and, with ``peers``, each connection counted against its peer address (plain TCP only)."""
    serve: Callable[[socket.socket, Any, str], None]
    if peers is None:
        handle_connection = server._handle_connection
        serve = lambda conn, address, _key: handle_connection(conn, address)  # noqa: E731
    else:
        if server.ssl_options is not None:
            raise ValueError("counting sockets per peer works on plain TCP only")
        serve = functools.partial(_serve_counted, server, peers)
    handlers = []
    for sock in sockets:
        accept = GuardedAccept(sock, serve, guard, peers=peers)
        server._sockets[sock.fileno()] = sock
        server._handlers[sock.fileno()] = accept.remove
        handlers.append(accept)
    return handlers


class FirstHeaders(tornado.httputil.HTTPServerConnectionDelegate):
    """An ``HTTPServer``'s request callback: ``app``, telling ``peers`` when a connection's first request
    headers are in (it is no longer idle). Only the first request of a connection is wrapped."""

    def __init__(self, app: tornado.httputil.HTTPServerConnectionDelegate, peers: PeerSockets[Any]) -> None:
        self.app = app
        self.peers = peers

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        inner = self.app.start_request(server_conn, request_conn)
        stream = getattr(server_conn, "stream", None)
        if stream is not None and self.peers.is_idle(stream):
            return _HeadersIn(inner, self.peers, stream)
        return inner

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _HeadersIn(tornado.httputil.HTTPMessageDelegate):
    """The first request of a connection: marks it as no longer idle when its headers are in."""

    def __init__(
        self, inner: tornado.httputil.HTTPMessageDelegate, peers: PeerSockets[Any], stream: object
    ) -> None:
        self.inner, self.peers, self.stream = inner, peers, stream

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self.peers.requested(self.stream)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


#: Frames one connection reads before the event loop gets its turn: 64 flooders whose sockets are readable in
#: the same pass (each read until its 1008, about 200 frames at 25 us) would otherwise hold the loop 0.3 s.
FRAMES_PER_TURN = 16


class MeteredProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, calling ``handler.on_fragment()`` after each data frame that does not end its
    message, and reading frames on a task of its own once the connection is open."""

    # Slots, not attributes: WebSocketProtocol13 sets 29, the most Python 3.11 keeps without a dict of their own.
    __slots__ = ("_ended", "_frames", "_reader")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set by _handle_message: the frame just read ended a message or was a control frame.
        self._ended = False
        self._frames = 0  # read since the loop last had its turn (FRAMES_PER_TURN)
        self._reader: asyncio.Task[None] | None = None  # the task reading the frames, once open
        super().__init__(*args, **kwargs)

    async def _receive_frame_loop(self) -> None:
        """Start Tornado's loop on a task and return: ``_accept_connection`` and its callers end now."""
        self._reader = asyncio.get_running_loop().create_task(self._read_frames(), name=READER_TASK)

    async def _read_frames(self) -> None:
        """Tornado's loop, with what ``accept_connection`` and ``RequestHandler._execute`` did with its errors."""
        try:
            await super()._receive_frame_loop()  # it calls on_ws_connection_close (on_close) when it ends
        except asyncio.CancelledError:
            self._abort()
            raise
        except ValueError:
            tornado.log.gen_log.debug("Malformed WebSocket request received", exc_info=True)
            self._abort()
        except Exception:
            self.handler.log_exception(*sys.exc_info())
            self._abort()

    def reading(self) -> bool:
        """Whether frames are read on the task of :meth:`_receive_frame_loop` (its end calls ``on_close``)."""
        return self._reader is not None and not self._reader.done()

    async def _receive_frame(self) -> None:
        self._ended = False
        self._frames += 1
        if self._frames >= FRAMES_PER_TURN:  # Tornado's own loop yields only every 254 small frames
            self._frames = 0
            await asyncio.sleep(0)
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


#: The attributes Tornado gives a WebSocket handler after its ``__init__``: ``RequestHandler._execute``'s,
#: ``WebSocketHandler.get``'s and ``_detach_stream``'s (the methods it replaces with one that raises).
LATE_ATTRIBUTES = (
    "_transforms",
    "path_args",
    "path_kwargs",
    "open_args",
    "open_kwargs",
    "write",
    "redirect",
    "set_header",
    "set_cookie",
    "set_status",
    "flush",
    "finish",
)
_reserved: set[type] = set()


def reserve_attributes(handler: tornado.web.RequestHandler) -> None:
    """Call first thing in ``initialize()``: the first handler of its class sets and removes at once the
    :data:`LATE_ATTRIBUTES` (none is an attribute of the instance yet).

    On CPython 3.11 the room a class's shared keys leave for new attribute names shrinks by one with each instance
    created. A burst of upgrades creates many handlers before the first reaches ``_execute``; without this, the late
    names no longer fit and every handler from then on keeps a dict of its own (about 1.3 KB more each)."""
    cls = type(handler)
    if cls in _reserved:
        return
    _reserved.add(cls)
    for name in LATE_ATTRIBUTES:
        setattr(handler, name, None)
        delattr(handler, name)


#: One name for every connection's reading task (Python 3.11 makes a string per task otherwise).
READER_TASK = "ws-reader"


def reading(handler: tornado.websocket.WebSocketHandler) -> bool:
    """Whether ``handler``'s frames are read on a task of their own (a :class:`MeteredProtocol` after ``open()``):
    then ``get()`` has returned but the connection lives on, and its end calls ``on_close()``."""
    protocol = handler.ws_connection
    return isinstance(protocol, MeteredProtocol) and protocol.reading()


class SpentHeaders(tornado.httputil.HTTPHeaders):
    """No headers, and none can be added: what an open WebSocket keeps of its upgrade's (one, shared)."""

    def add(self, name: str, value: str, *, _chars_are_bytes: bool = True) -> None:
        raise TypeError("the headers of a spent request are read-only")

    def __setitem__(self, name: str, value: str) -> None:
        raise TypeError("the headers of a spent request are read-only")

    def __delitem__(self, name: str) -> None:
        raise TypeError("the headers of a spent request are read-only")


NO_HEADERS = SpentHeaders()
NO_ARGUMENTS = cast(dict[str, list[bytes]], MappingProxyType({}))  # read-only, shared
NO_FILES = cast(dict[str, list[tornado.httputil.HTTPFile]], MappingProxyType({}))
NO_KWARGS = cast(dict[str, Any], MappingProxyType({}))

#: What :func:`shed_handshake` replaces: (attribute, value), on the handler and on its request.
_SHED_HANDLER: tuple[tuple[str, object], ...] = (
    ("_headers", NO_HEADERS),  # the 101's headers, written
    ("ui", None),  # as RequestHandler._break_cycles does (WebSocketHandler keeps it for render_string)
    ("_transforms", ()),  # output transforms: nothing more goes through them
    ("path_args", ()),
    ("path_kwargs", NO_KWARGS),
    ("open_args", ()),
    ("open_kwargs", NO_KWARGS),
)
_SHED_REQUEST: tuple[tuple[str, object], ...] = (
    ("headers", NO_HEADERS),
    ("connection", None),  # the HTTP/1.1 connection, detached (RequestHandler.detach)
    ("server_connection", None),  # the HTTP server's, with its finished task and context
    ("arguments", NO_ARGUMENTS),
    ("query_arguments", NO_ARGUMENTS),
    ("body_arguments", NO_ARGUMENTS),
    ("files", NO_FILES),
)
#: The request's strings that are the same on most connections: one copy of each (interned).
_SHARED_STRINGS = ("method", "version", "protocol", "host", "host_name", "path")


def shed_handshake(handler: tornado.websocket.WebSocketHandler) -> None:
    """Drop what ``handler`` keeps of its HTTP upgrade once the WebSocket is open (call it at the end of ``open()``,
    after the last look at the request's headers or arguments; not for a handler that renders templates). The
    request keeps its method, URI, version, client address and host, which Tornado's logs of the handler read; its
    headers and arguments read as empty and refuse writes."""
    for name, value in _SHED_HANDLER:
        if hasattr(handler, name):
            setattr(handler, name, value)
    request = handler.request
    for name, value in _SHED_REQUEST:
        if hasattr(request, name):
            setattr(request, name, value)
    for name in _SHARED_STRINGS:
        value = getattr(request, name, None)
        if type(value) is str:
            setattr(request, name, sys.intern(value))


class StrictOrigin:
    """A WebSocket handler mixin: the handler's ``check_origin`` alone decides about a request's ``Origin``
    (Tornado's cross-origin shortcuts are skipped; see the module docstring)."""

    request: tornado.httputil.HTTPServerRequest

    def _check_cross_origin(self, check: Callable[[str], bool]) -> str | None:
        origin = self.request.headers.get("Origin")
        return None if origin is None or check(origin) else f"Origin {origin[:200]!r} not allowed"
