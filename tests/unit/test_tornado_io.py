"""Guard for ticker/server/tornado_io.py, the one module that reaches into Tornado's internals.

Everything runs on real Tornado objects over ``socket.socketpair()`` (no connect, no bind) with the
running event loop: the direct write on an ``IOStream``, and an in-process ``HTTPServer`` serving a
WebSocket, an event stream and errors. When a Tornado upgrade renames or changes what the module
relies on, these tests fail with a message naming the Tornado version.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Any, ClassVar, TypeVar

import pytest
import tornado
import tornado.httpserver
import tornado.iostream
import tornado.tcpserver
import tornado.web
import tornado.websocket

from tests.support.timing import eventually, timeout
from ticker.frames import ws_text_frame
from ticker.server import tornado_io
from ticker.server.descriptors import AcceptGuard
from ticker.server.peersockets import PeerSockets

T = TypeVar("T")
WAIT = timeout(10.0)  # seconds before a read that never completes fails the test


def relied_on(ok: object, what: str) -> None:
    """Fail loudly: the installed Tornado no longer does what tornado_io.py relies on."""
    if not ok:
        pytest.fail(
            f"Tornado {tornado.version}: {what}. ticker/server/tornado_io.py relies on it: "
            "adapt that module (and the tornado pin in setup.cfg).",
            pytrace=False,
        )


async def within(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, WAIT)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[tornado.iostream.IOStream, socket.socket]]:
    """An IOStream and the raw, non-blocking socket at the other end."""
    a, b = socket.socketpair()
    b.setblocking(False)
    stream = tornado.iostream.IOStream(a)
    yield stream, b
    stream.close()
    b.close()


async def test_the_write_buffer_internals_are_where_the_module_reads_them(pair):
    stream, _peer = pair
    buf = getattr(stream, "_write_buffer", None)
    relied_on(buf is not None, "IOStream has no _write_buffer")
    relied_on(isinstance(getattr(buf, "_size", None), int), "IOStream._write_buffer has no integer _size")
    relied_on(isinstance(stream.socket, socket.socket), "IOStream.socket is not the socket")
    relied_on(tornado_io.can_write_direct(stream), "a plain IOStream is not of type IOStream")
    stream.close()
    relied_on(
        stream._write_buffer is None, "a closed IOStream keeps its _write_buffer (closed streams look open)"
    )


async def test_direct_writes_keep_order_and_count_what_tornado_holds(pair):
    stream, peer = pair
    small, big, tail = ws_text_frame(b'{"a":1}'), b"x" * (8 << 20), ws_text_frame(b'{"b":2}')
    relied_on(tornado_io.write_frame(stream, small, True) == 0, "a small direct write did not go out whole")
    relied_on(not stream.writing(), "IOStream.writing() is true with nothing buffered")
    held = tornado_io.write_frame(stream, big, True)  # more than the kernel takes: the rest is Tornado's
    relied_on(0 < held < len(big), f"an 8 MiB write left {held} bytes buffered")
    relied_on(tornado_io.buffered(stream) == held, "the buffered size differs from what write_frame reported")
    relied_on(stream.writing(), "IOStream.writing() is false while _write_buffer._size > 0")
    got = bytearray(peer.recv(1 << 16))  # room in the kernel again, while Tornado still holds the rest
    left = tornado_io.write_frame(stream, tail, True)  # Tornado sends what fits, in order
    assert 0 < left <= held + len(tail), "a frame jumped Tornado's backlog"
    want = small + big + tail
    while len(got) < len(want):
        got += await within(asyncio.get_running_loop().sock_recv(peer, 1 << 16))
    relied_on(got == want, "bytes arrived out of order or changed")
    relied_on(tornado_io.buffered(stream) == 0, "_write_buffer._size is not 0 once everything arrived")
    relied_on(not stream.writing(), "IOStream.writing() is true once everything arrived")


async def test_a_closed_stream_reports_minus_one_and_nothing_buffered(pair):
    stream, _peer = pair
    stream.close()
    assert tornado_io.write_frame(stream, b"late", True) == -1
    assert tornado_io.write_frame(stream, b"late", False) == -1
    assert tornado_io.buffered(stream) == 0
    assert tornado_io.buffered(None) == 0


# -- frames held behind a backlog (PeerStream) ---------------------------------------------------
@pytest.fixture
async def peer_pair() -> AsyncIterator[tuple[tornado_io.PeerStream, socket.socket]]:
    """A PeerStream (counted in a PeerSockets table) and the raw, non-blocking socket at the other end."""
    a, b = socket.socketpair()
    b.setblocking(False)
    peers: PeerSockets[Any] = PeerSockets(10)
    key = peers.admit("10.0.0.1")
    assert key is not None
    stream = tornado_io.PeerStream(a, peers, key)
    yield stream, b
    stream.close()
    b.close()


async def _receive(peer: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        got += await within(asyncio.get_running_loop().sock_recv(peer, 1 << 16))
    return bytes(got)


async def test_frames_behind_a_backlog_are_held_large_by_reference_small_copied_and_go_out_in_order(
    peer_pair,
):
    stream, peer = peer_pair
    relied_on(
        callable(getattr(stream, "_handle_write", None)) and isinstance(stream._total_write_index, int),
        "IOStream has no _handle_write or integer _total_write_index",
    )
    big = b"x" * (8 << 20)
    backlog = tornado_io.write_frame(stream, big, True)
    relied_on(0 < backlog < len(big), f"an 8 MiB write left {backlog} bytes buffered")
    frames = [ws_text_frame(b"%d" % i * n) for i, n in enumerate((3, 3000, 1, 2, 700))]
    for frame in frames:
        unsent = tornado_io.write_frame(stream, frame, True)
    small, shared, small2, small3, shared2 = frames
    held = stream.held
    assert len(held) == 4 and held[1] is shared and held[3] is shared2, "large frames not held by reference"
    assert type(held[0]) is bytearray and held[0] == small  # small ones copied, one after the other
    assert type(held[2]) is bytearray and held[2] == small2 + small3
    assert stream._write_buffer._size == backlog, "a held frame went into Tornado's buffer"
    assert unsent == backlog + sum(map(len, frames)) == tornado_io.buffered(stream)
    got = await _receive(
        peer, len(big) + sum(map(len, frames))
    )  # Tornado hands them on once it wrote its own
    relied_on(got == big + b"".join(frames), "held frames went out of order or changed")
    assert not stream.held and tornado_io.buffered(stream) == 0


async def test_what_tornado_writes_itself_goes_after_the_held_frames(peer_pair):
    stream, peer = peer_pair
    big, held, later = b"x" * (8 << 20), ws_text_frame(b"held"), ws_text_frame(b"later")
    tornado_io.write_frame(stream, big, True)
    tornado_io.write_frame(stream, held, True)
    stream.write(b"own")  # a pong or a Close that Tornado writes
    assert not stream.held
    tornado_io.write_frame(stream, later, True)  # held again: Tornado's buffer is not empty
    assert stream.held == [later]
    got = await _receive(peer, len(big) + len(held) + 3 + len(later))
    assert got == big + held + b"own" + later


async def test_a_closed_peer_stream_lets_go_of_what_it_held(peer_pair):
    stream, _peer = peer_pair
    tornado_io.write_frame(stream, b"x" * (8 << 20), True)
    tornado_io.write_frame(stream, ws_text_frame(b"held"), True)
    stream.close()
    assert not stream.held and stream.held_bytes == 0
    assert tornado_io.buffered(stream) == 0
    assert tornado_io.write_frame(stream, b"late", True) == -1


async def test_frames_go_by_send_frame_only_to_a_peer_stream_written_directly(
    peer_pair: tuple[tornado_io.PeerStream, socket.socket],
    pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    stream, peer = peer_pair
    assert tornado_io.frame_stream(stream) is stream
    assert tornado_io.frame_stream(pair[0]) is None  # a plain IOStream: write_frame
    stream.max_write_buffer_size = 1 << 20
    assert tornado_io.frame_stream(stream) is None  # write's own check of the bound must run
    stream.max_write_buffer_size = None
    small, big = ws_text_frame(b'{"a":1}'), b"x" * (8 << 20)
    assert stream.send_frame(small) == 0
    backlog = stream.send_frame(big)
    assert 0 < backlog == tornado_io.buffered(stream) and not stream.held
    assert stream.send_frame(small) == backlog + len(small) and stream.held == [small]
    assert await _receive(peer, len(small) * 2 + len(big)) == small + big + small
    stream.close()
    assert stream.send_frame(small) == -1


def test_only_plain_streams_are_written_directly():
    class Wrapped(tornado.iostream.IOStream):
        pass

    a, b = socket.socketpair()
    with a, b:
        assert not tornado_io.can_write_direct(Wrapped(a))


# -- an in-process HTTP server over a socket pair ------------------------------------------------
class Seen:
    """What the handlers below found out on the server side."""

    stream: Any = None


class Socket(tornado.websocket.WebSocketHandler):
    def open(self, *args: str, **kwargs: str) -> None:
        stream = tornado_io.websocket_stream(self)
        Seen.stream = stream
        tornado_io.write_frame(stream, ws_text_frame(b"hi"), tornado_io.can_write_direct(stream))


class Metered(tornado.websocket.WebSocketHandler):
    """Records what the metered protocol reports: ``F`` a fragment, ``P`` a ping, ``p`` a pong, the messages."""

    seen: ClassVar[list[str]] = []

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        return tornado_io.metered_protocol(self)

    def on_fragment(self) -> None:
        self.seen.append("F")

    def on_ping(self, data: bytes) -> None:
        self.seen.append("P")

    def on_pong(self, data: bytes) -> None:
        self.seen.append("p")

    def on_message(self, message: str | bytes) -> None:
        self.seen.append(f"m:{message!s}")


class Aborting(Metered):
    """Drops the connection at its first ping, as the server drops a flooder."""

    seen: ClassVar[list[str]] = []

    def on_ping(self, data: bytes) -> None:
        self.seen.append("P")
        tornado_io.stop_reading(self)
        tornado_io.websocket_stream(self).close()


class Events(tornado.web.RequestHandler):
    def prepare(self) -> None:
        if self.get_query_argument("gzip", "") != "yes":
            tornado_io.no_compression(self)

    def get(self) -> None:
        Seen.stream = tornado_io.request_stream(self)
        self.set_header("Content-Type", "text/event-stream")
        self.finish(b'event: quotes\ndata: {"type":"quotes"}\n\n' * 100)


class Refusing(tornado.web.RequestHandler):
    def get(self) -> None:
        if self.get_query_argument("how") == "reason":
            raise tornado.web.HTTPError(503, reason="too many connections")
        raise ValueError("a bug")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish({"message": tornado_io.error_reason(status_code, kwargs)})


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    app = tornado.web.Application(
        [
            ("/ws", Socket),
            ("/sse", Events),
            ("/err", Refusing),
            ("/metered", Metered),
            ("/aborting", Aborting),
        ],
        compress_response=True,
    )
    server = tornado.httpserver.HTTPServer(app)
    clients: list[tornado.iostream.IOStream] = []

    async def request(head: str) -> tuple[tornado.iostream.IOStream, tornado.iostream.IOStream, bytes]:
        """Send ``head`` over a new connection; return (server side, client side, response head)."""
        a, b = socket.socketpair()
        ours, client = tornado.iostream.IOStream(a), tornado.iostream.IOStream(b)
        clients.append(client)
        server.handle_stream(ours, ("127.0.0.1", 0))
        await client.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        return ours, client, await within(client.read_until(b"\r\n\r\n"))

    yield request
    for c in clients:
        c.close()
    await server.close_all_connections()


def upgrade(path: str) -> str:
    """The head of a WebSocket upgrade request for ``path`` (what ``serve`` sends)."""
    return (
        f"GET {path} HTTP/1.1\nHost: t\nUpgrade: websocket\nConnection: Upgrade\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n"
    )


async def test_the_stream_under_a_websocket_is_found_and_written_directly(serve):
    ours, client, head = await serve(upgrade("/ws"))
    assert head.startswith(b"HTTP/1.1 101 ")
    relied_on(Seen.stream is ours, "WebSocketHandler.ws_connection.stream is not the connection's IOStream")
    assert await within(client.read_bytes(4)) == b"\x81\x02hi"


async def test_the_stream_under_a_request_is_found_and_an_event_stream_is_not_gzipped(serve):
    ours, client, head = await serve("GET /sse HTTP/1.1\nHost: t\nAccept-Encoding: gzip\nConnection: close\n")
    relied_on(Seen.stream is ours, "request.connection.stream is not the connection's IOStream")
    body = await within(client.read_until_close())
    relied_on(
        b"Content-Encoding" not in head and body.startswith(b"event: quotes\n"),
        "dropping GZipContentEncoding from RequestHandler._transforms no longer turns gzip off",
    )
    _ours, client, head = await serve(
        "GET /sse?gzip=yes HTTP/1.1\nHost: t\nAccept-Encoding: gzip\nConnection: close\n"
    )
    assert b"Content-Encoding: gzip" in head  # the control: without no_compression Tornado does compress it
    assert gzip.decompress(await within(client.read_until_close())).startswith(b"event: quotes\n")


@pytest.mark.parametrize(
    ("how", "status_line", "message"),
    [
        ("reason", b"HTTP/1.1 503 too many connections", b"too many connections"),
        ("bug", b"HTTP/1.1 500 Internal Server Error", b"Internal Server Error"),
    ],
)
async def test_the_error_reason_is_the_one_tornado_sends(serve, how, status_line, message):
    _ours, client, head = await serve(f"GET /err?how={how} HTTP/1.1\nHost: t\nConnection: close\n")
    body = await within(client.read_until_close())
    assert head.split(b"\r\n")[0] == status_line
    assert body == b'{"message": "' + message + b'"}'


def test_error_reason_follows_send_error_for_reasons_tornado_rejects():
    bad = tornado.web.HTTPError(400, reason="<b>no</b>")
    assert tornado_io.error_reason(400, {"exc_info": (type(bad), bad, None)}) == "Unknown"
    assert tornado_io.error_reason(418, {}) == "I'm a Teapot"
    assert tornado_io.error_reason(599, {}) == "Unknown"
    assert tornado_io.error_reason(404, {"reason": "no such symbol"}) == "no such symbol"


class ScriptedListener:
    """A listening socket's stand-in: ``accept()`` follows a script; its descriptor is a real, readable one."""

    def __init__(self, readable: socket.socket, script: list[Any]) -> None:
        self.readable, self.script, self.calls = readable, script, 0

    def fileno(self) -> int:
        return self.readable.fileno()

    def accept(self) -> Any:
        self.calls += 1
        item = self.script.pop(0) if self.script else OSError(errno.EMFILE, "Too many open files")
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.readable.close()


class StreamTaker(tornado.tcpserver.TCPServer):
    def __init__(self) -> None:
        super().__init__()
        self.streams: list[tornado.iostream.IOStream] = []

    def handle_stream(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        self.streams.append(stream)


async def test_guarded_accepts_fill_tcpserver_internals_hand_over_pause_and_stop():
    server = StreamTaker()
    relied_on(
        isinstance(getattr(server, "_sockets", None), dict)
        and isinstance(getattr(server, "_handlers", None), dict),
        "TCPServer has no _sockets/_handlers dicts (fd -> socket, fd -> remove handler)",
    )
    relied_on(callable(getattr(server, "_handle_connection", None)), "TCPServer has no _handle_connection")
    a, b = socket.socketpair()
    kept, kept_peer = socket.socketpair()
    shed, shed_peer = socket.socketpair()
    b.send(b"x")  # `a` stays readable: the event loop calls the accept handler until it pauses
    counted: list[str] = []
    listener = ScriptedListener(
        a, [(kept, ("peer", 1)), OSError(errno.ECONNABORTED, "gone"), (shed, ("peer", 2))]
    )
    guard = AcceptGuard(counted.append, watermark=shed.fileno())  # `kept` (a lower number) is below it
    (accept,) = tornado_io.accept_guarded(server, [listener], guard)  # type: ignore[list-item]
    relied_on(server._handlers.get(a.fileno()) == accept.remove, "stop() would not find the accept handler")

    await eventually(lambda: server.streams, what="the first connection handed to handle_stream")
    relied_on(server.streams[0].socket is kept, "_handle_connection did not wrap the accepted socket")
    await eventually(lambda: len(counted) >= 3, what="three pauses")  # 0.1 s, then 0.2 s
    assert shed.fileno() == -1, "a connection over the watermark was not closed"
    assert counted[0] == "reserve" and set(counted[1:]) == {"emfile"}
    assert listener.calls == 2 + len(counted), "accept() was called again without a pause"

    server.stop()
    relied_on(accept.removed and not server._handlers, "TCPServer.stop() did not remove the guarded handler")
    assert a.fileno() == -1
    for s in (b, kept_peer, shed_peer):
        s.close()
    server.streams[0].close()


def _frame(first: int, payload: bytes) -> bytes:
    """A masked client frame with the first header byte ``first`` (FIN bit and opcode); zero mask."""
    return bytes((first, 0x80 | len(payload))) + b"\0\0\0\0" + payload


async def test_fragments_that_end_no_message_are_reported_to_the_handler(serve):
    Metered.seen = []
    _ours, client, head = await serve(upgrade("/metered"))
    assert head.startswith(b"HTTP/1.1 101 ")
    frames = [
        _frame(0x01, b"ab"),  # a text message begins (not final)
        _frame(0x00, b""),  # two empty continuations
        _frame(0x00, b""),
        _frame(0x89, b"x"),  # a ping between fragments
        _frame(0x80, b"c"),  # the final continuation: the message
        _frame(0x8A, b""),  # an unsolicited pong
        _frame(0x81, b"d"),  # a whole message
    ]
    await client.write(b"".join(frames))
    await within(client.read_bytes(3))  # the pong Tornado answered the ping with

    await within(client.write(_frame(0x89, b"end")))  # the server reads in order: its pong comes after all
    await within(client.read_bytes(5))
    relied_on(
        Metered.seen == ["F", "F", "F", "P", "m:abc", "p", "m:d", "P"],
        f"MeteredProtocol reported {Metered.seen}: WebSocketProtocol13._receive_frame, _handle_message or "
        "_fragmented_message_buffer changed",
    )


async def test_a_dropped_flooder_s_frames_already_read_are_not_parsed(serve):
    Aborting.seen = []
    _ours, client, head = await serve(upgrade("/aborting"))
    assert head.startswith(b"HTTP/1.1 101 ")
    await within(client.write(_frame(0x89, b"") * 1000))  # one write: the server reads them in one chunk
    with contextlib.suppress(tornado.iostream.StreamClosedError):
        await within(client.read_until_close())
    relied_on(
        Aborting.seen == ["P"],
        f"{len(Aborting.seen)} pings parsed after the stream was closed: the frame loop no longer ends at "
        "WebSocketProtocol.client_terminated",
    )


BIG_FRAME = ws_text_frame(b"x" * (8 << 20))  # more than a socket pair's buffers take


class ClosingBehind(tornado.websocket.WebSocketHandler):
    """Leaves a backlog, holds one more frame behind it, then closes: as the server closes a slow reader
    (``slow``: the held frames dropped first, as ``QuoteSocket.close_slow`` does), or any other way."""

    slow = True

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        return tornado_io.metered_protocol(self)

    def open(self, *args: str, **kwargs: str) -> None:
        stream = tornado_io.websocket_stream(self)
        tornado_io.write_frame(stream, BIG_FRAME, True)
        tornado_io.write_frame(stream, ws_text_frame(b"held"), True)
        Seen.stream = stream
        if self.slow:
            tornado_io.drop_held(stream)
        self.close(1013 if self.slow else 1001, "bye")


class ClosingAway(ClosingBehind):
    slow = False


async def test_a_slow_readers_close_follows_the_backlog_and_drops_the_frames_held_behind_it():
    await _close_after_backlog(ClosingBehind, b"")


async def test_any_other_close_sends_the_held_frames_first():
    await _close_after_backlog(ClosingAway, ws_text_frame(b"held"))


async def _close_after_backlog(handler: type[ClosingBehind], then: bytes) -> None:
    server = tornado.httpserver.HTTPServer(tornado.web.Application([("/ws", handler)]))
    a, b = socket.socketpair()
    peers: PeerSockets[Any] = PeerSockets(10)
    server.handle_stream(tornado_io.PeerStream(a, peers, peers.admit("10.0.0.1") or ""), ("10.0.0.1", 0))
    client = tornado.iostream.IOStream(b)
    try:
        await within(
            client.write(
                b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
        )
        assert (await within(client.read_until(b"\r\n\r\n"))).startswith(b"HTTP/1.1 101 ")
        assert await within(client.read_bytes(len(BIG_FRAME))) == BIG_FRAME
        if then:
            assert await within(client.read_bytes(len(then))) == then
        close = await within(client.read_bytes(2))
        assert close[0] == 0x88 and not Seen.stream.held, f"after the backlog came {close!r}, not the Close"
    finally:
        client.close()
        await server.close_all_connections()


def test_the_cross_origin_hook_strict_origin_replaces_is_where_tornado_calls_it():
    import inspect

    import tornado.websocket

    from ticker.server.tornado_io import StrictOrigin

    hook = getattr(tornado.web.RequestHandler, "_check_cross_origin", None)
    relied_on(hook is not None, "RequestHandler._check_cross_origin is gone")
    assert hook is not None
    relied_on(
        "_check_cross_origin(self.check_origin)" in inspect.getsource(tornado.websocket.WebSocketHandler.get),
        "WebSocketHandler.get no longer calls self._check_cross_origin(self.check_origin)",
    )
    relied_on(
        list(inspect.signature(hook).parameters)
        == list(inspect.signature(StrictOrigin._check_cross_origin).parameters),
        "RequestHandler._check_cross_origin takes other parameters",
    )


# -- sockets counted per peer address (ticker/server/peersockets.py) ------------------------------
class FedListener:
    """A listening socket's stand-in fed by the test: readable while connections wait in :meth:`give`."""

    def __init__(self) -> None:
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)
        self.queue: list[tuple[socket.socket, Any]] = []

    def fileno(self) -> int:
        return self.r.fileno()

    def give(self, conn: socket.socket, ip: str) -> None:
        self.queue.append((conn, (ip, 1)))
        self.w.send(b"x")

    def accept(self) -> tuple[socket.socket, Any]:
        if not self.queue:
            with contextlib.suppress(BlockingIOError):
                self.r.recv(4096)
            raise BlockingIOError
        return self.queue.pop(0)

    def close(self) -> None:
        self.r.close()
        self.w.close()


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


class Echo(tornado.websocket.WebSocketHandler):
    pass


@pytest.fixture
async def counted() -> AsyncIterator[Any]:
    """``start(cap, watermark)``: an HTTPServer behind FirstHeaders and accept_guarded with a PeerSockets table;
    returns (listener, peers, what the guard and the table counted)."""
    made: list[tuple[tornado.httpserver.HTTPServer, FedListener]] = []

    def start(cap: int, watermark: int | None = None) -> tuple[FedListener, PeerSockets[Any], list[str]]:
        seen: list[str] = []
        peers: PeerSockets[Any] = PeerSockets(cap, refused=lambda: seen.append("ip_sockets"), grace=0.0)
        app = tornado.web.Application([("/", Hello), ("/ws", Echo)])
        server = tornado.httpserver.HTTPServer(tornado_io.FirstHeaders(app, peers))
        listener = FedListener()
        guard = AcceptGuard(seen.append, watermark=watermark)
        tornado_io.accept_guarded(server, [listener], guard, peers)  # type: ignore[list-item]
        made.append((server, listener))
        return listener, peers, seen

    yield start
    for server, _listener in made:
        server.stop()
        await server.close_all_connections()


def _client(sock: socket.socket) -> tornado.iostream.IOStream:
    return tornado.iostream.IOStream(sock)


async def _get(client: tornado.iostream.IOStream, path: str = "/") -> bytes:
    """A request on a kept-alive connection: the response head (the body, ``ok``, is read and checked)."""
    await within(client.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()))
    head = await within(client.read_until(b"\r\n\r\n"))
    assert await within(client.read_bytes(2)) == b"ok"
    return head


async def test_sockets_over_the_peer_cap_get_429_and_a_closed_websocket_gives_its_slot_back(counted):
    listener, peers, seen = counted(1)
    ws_s, ws_c = socket.socketpair()
    over_s, over_c = socket.socketpair()
    listener.give(ws_s, "10.0.0.1")
    client = _client(ws_c)
    await within(
        client.write(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    )
    assert (await within(client.read_until(b"\r\n\r\n"))).startswith(b"HTTP/1.1 101 ")
    assert peers.open_from("10.0.0.1") == 1 and peers.idle() == 0, "the upgrade's headers made it not idle"

    listener.give(over_s, "10.0.0.1")
    refused = _client(over_c)
    answer = await within(refused.read_until_close())
    assert answer == tornado_io.IP_SOCKETS_ANSWER and seen == ["ip_sockets"]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    assert over_s.fileno() == -1

    client.close()  # the WebSocket ends: Tornado closes the stream, PeerStream.close_fd gives the slot back
    await eventually(
        lambda: peers.open_from("10.0.0.1") == 0,
        what="IOStream.close_fd() called when a WebSocket's stream closes (PeerStream relies on it)",
    )


async def test_at_the_watermark_the_oldest_idle_connection_is_closed_and_not_one_that_sent_a_request(counted):
    pairs = [socket.socketpair() for _ in range(4)]  # idle, busy, then two on higher descriptors
    (idle_s, idle_c), (busy_s, busy_c), (high_s, high_c), (again_s, again_c) = pairs
    listener, peers, seen = counted(10, watermark=high_s.fileno())
    listener.give(idle_s, "10.0.0.1")
    listener.give(busy_s, "10.0.0.2")
    await eventually(lambda: peers.idle() == 2, what="two connections served")
    busy = _client(busy_c)
    assert (await _get(busy)).startswith(b"HTTP/1.1 200 ")
    assert peers.idle() == 1, "FirstHeaders did not mark the connection whose headers came"

    idle = _client(idle_c)
    listener.give(high_s, "10.0.0.3")
    assert await within(idle.read_until_close()) == b"", "the idle connection was not closed"
    assert seen == ["reserve_idle"]
    assert high_s.fileno() == -1, "the new connection was not moved off the descriptor above the watermark"
    high = _client(high_c)
    assert (await _get(high)).startswith(b"HTTP/1.1 200 "), "the moved connection is not served"
    assert (await _get(busy)).startswith(b"HTTP/1.1 200 "), "the connection that sent a request was closed"
    assert peers.open_from("10.0.0.1") == 0 and peers.open_from("10.0.0.3") == 1

    listener.give(again_s, "10.0.0.4")  # no idle connection left: the newest is closed, the listener pauses
    assert await within(_client(again_c).read_until_close()) == b""
    assert seen == ["reserve_idle", "reserve"] and peers.open_from("10.0.0.4") == 0
    for c in (busy, high):
        c.close()


def test_a_peer_stream_is_written_directly_like_a_plain_one():
    a, b = socket.socketpair()
    with b:
        stream = tornado_io.PeerStream(a, PeerSockets(1), "")
        assert tornado_io.can_write_direct(stream)
        stream.close()
