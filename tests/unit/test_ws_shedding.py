"""What an open WebSocket keeps of its handshake (ticker/server/tornado_io.py: ``MeteredProtocol``'s reading task,
``shed_handshake``, ``reserve_attributes``), on real Tornado objects over ``socket.socketpair()``.

When a Tornado upgrade moves what the module replaces, :func:`relied_on` fails naming the Tornado version.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import pytest
import tornado
import tornado.httpserver
import tornado.httputil
import tornado.iostream
import tornado.web
import tornado.websocket

from tests.support.timing import eventually
from ticker.server import tornado_io

T = TypeVar("T")
WAIT = 10.0  # seconds before a read that never completes fails the test
UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def relied_on(ok: object, what: str) -> None:
    """Fail loudly: the installed Tornado no longer has what tornado_io.py replaces."""
    if not ok:
        pytest.fail(
            f"Tornado {tornado.version}: {what}. ticker/server/tornado_io.py relies on it: adapt that module.",
            pytrace=False,
        )


async def within(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, WAIT)


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (FIN set) with a zero mask."""
    return struct.pack("BB", 0x80 | opcode, 0x80 | len(payload)) + b"\0\0\0\0" + payload


def own_dict(obj: object, key: str) -> bool:
    """Whether ``obj`` keeps its attributes in a dict of its own (one holding ``key``), not in its class's shared keys."""
    return any(type(r) is dict and key in r for r in gc.get_referents(obj))


class Shed(tornado.websocket.WebSocketHandler):
    """Does what QuoteSocket does around its handshake; echoes messages; records what happened."""

    opened: ClassVar[list[Shed]] = []
    events: ClassVar[list[str]] = []
    before: ClassVar[dict[str, bool]] = {}  # which replaced attributes existed before shed_handshake
    summary: ClassVar[
        tuple[object, ...]
    ] = ()  # the request's method, URI, version, client address, host before it

    def initialize(self) -> None:
        tornado_io.reserve_attributes(self)
        self.returned = False

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        return tornado_io.metered_protocol(self)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        await super().get(*args, **kwargs)
        self.returned = True
        self.events.append(f"get returned, reading={tornado_io.reading(self)}")

    def open(self, *args: str, **kwargs: str) -> None:
        self.events.append(f"open x={self.get_query_argument('x', '')}")
        Shed.before = {
            **{f"handler.{n}": hasattr(self, n) for n, _ in tornado_io._SHED_HANDLER},
            **{f"request.{n}": hasattr(self.request, n) for n, _ in tornado_io._SHED_REQUEST},
        }
        req = self.request
        Shed.summary = (req.method, req.uri, req.version, req.remote_ip, req.host, req.protocol)
        tornado_io.shed_handshake(self)
        self.opened.append(self)

    def on_message(self, message: str | bytes) -> None:
        self.write_message(b"echo:" + (message.encode() if isinstance(message, str) else message))

    def on_close(self) -> None:
        self.events.append(f"close {self.close_code}")


class Unreserved(tornado.websocket.WebSocketHandler):
    """A handler that does not reserve its late attributes (the control of the burst test)."""

    opened: ClassVar[list[Unreserved]] = []

    def open(self, *args: str, **kwargs: str) -> None:
        self.opened.append(self)


class Reserved(Unreserved):
    opened: ClassVar[list[Unreserved]] = []

    def initialize(self) -> None:
        tornado_io.reserve_attributes(self)


Connect = Callable[[str], Awaitable[tuple[tornado.iostream.IOStream, bytes]]]


@pytest.fixture
async def serve() -> AsyncIterator[tuple[Connect, Callable[[str], tornado.iostream.IOStream]]]:
    """(connect, send): ``connect(path)`` upgrades a new connection and returns (client stream, response head);
    ``send(path)`` only writes the upgrade request of a new connection (the server reads it later)."""
    Shed.opened, Shed.events = [], []
    Unreserved.opened, Reserved.opened = [], []
    app = tornado.web.Application([("/ws", Shed), ("/unreserved", Unreserved), ("/reserved", Reserved)])
    server = tornado.httpserver.HTTPServer(app)
    clients: list[tornado.iostream.IOStream] = []

    def send(path: str) -> tornado.iostream.IOStream:
        a, b = socket.socketpair()
        b.sendall(UPGRADE.format(path=path).encode())  # in the kernel's buffer before the server reads it
        client = tornado.iostream.IOStream(b)
        clients.append(client)
        server.handle_stream(tornado.iostream.IOStream(a), ("127.0.0.1", 0))
        return client

    async def connect(path: str) -> tuple[tornado.iostream.IOStream, bytes]:
        client = send(path)
        return client, await within(client.read_until(b"\r\n\r\n"))

    yield connect, send
    for c in clients:
        c.close()
    await server.close_all_connections()


async def test_after_open_the_handshake_ends_and_frames_are_read_on_a_task_of_their_own(serve):
    connect, _send = serve
    client, head = await connect("/ws?x=1")
    assert head.startswith(b"HTTP/1.1 101 ")
    await eventually(lambda: Shed.events[-1:] == ["get returned, reading=True"], WAIT, "get() to return")
    handler = Shed.opened[0]
    relied_on(
        handler.returned and tornado_io.reading(handler),
        "WebSocketProtocol13._accept_connection no longer awaits _receive_frame_loop after open()",
    )
    task = handler.ws_connection._reader  # type: ignore[union-attr]
    assert task is not None and task.get_name() == tornado_io.READER_TASK
    for text in (b"a", b"b"):  # messages still flow, in order
        await client.write(frame(0x1, text))
        assert await within(client.read_bytes(2 + 6)) == b"\x81\x06echo:" + text
    await client.write(frame(0x9, b"hi"))  # Tornado still answers pings
    assert await within(client.read_bytes(4)) == b"\x8a\x02hi"
    await client.write(frame(0x8, struct.pack(">H", 1000)))  # the close handshake ends the reading task
    assert (await within(client.read_bytes(4)))[:2] == b"\x88\x02"
    await eventually(lambda: task.done(), WAIT, "the reading task to end")
    assert Shed.events == ["open x=1", "get returned, reading=True", "close 1000"]
    assert not tornado_io.reading(handler) and not task.cancelled() and task.exception() is None


async def test_what_an_open_handler_keeps_of_its_upgrade(serve, caplog: pytest.LogCaptureFixture):
    connect, _send = serve
    _client, head = await connect("/ws?x=1&token=t")
    assert head.startswith(b"HTTP/1.1 101 ")
    await eventually(lambda: Shed.opened, WAIT, "open()")
    missing = [name for name, present in Shed.before.items() if not present]
    relied_on(not missing, f"an open WebSocketHandler no longer has {missing}")
    handler = Shed.opened[0]
    req = handler.request
    assert req.connection is None and req.server_connection is None
    assert dict(req.headers) == {} and dict(handler._headers) == {}
    assert req.arguments == {} and req.query_arguments == {} and req.body_arguments == {} and req.files == {}
    assert handler.ui is None and list(handler._transforms) == []
    with pytest.raises(TypeError):
        req.headers["X"] = "y"  # one empty set of headers for all: never written to
    with pytest.raises(TypeError):
        req.headers.add("X", "y")
    with pytest.raises(TypeError):
        req.arguments["x"] = [b"2"]
    assert (req.method, req.uri, req.version, req.remote_ip, req.host, req.protocol) == Shed.summary
    assert Shed.summary[:3] == ("GET", "/ws?x=1&token=t", "HTTP/1.1")
    assert handler.get_query_argument("x", "gone") == "gone"  # arguments read as empty after open()
    # What Tornado logs of a handler's error still names the request.
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        with caplog.at_level(logging.ERROR, logger="tornado.application"):
            handler.log_exception(*sys.exc_info())
    # (the token is shown as *** once ticker.server.peers' redaction filter is installed, as in a server)
    assert re.search(
        rf"Uncaught exception GET /ws\?x=1&token=(t|\*\*\*) \({re.escape(req.remote_ip)}\)", caplog.text
    )


async def test_an_error_in_the_frame_loop_is_logged_and_the_connection_dropped(serve, monkeypatch, caplog):
    connect, _send = serve

    async def broken(self: tornado.websocket.WebSocketProtocol13) -> None:
        await self._read_bytes(2)
        raise RuntimeError("broken frame loop")

    monkeypatch.setattr(tornado.websocket.WebSocketProtocol13, "_receive_frame", broken)
    client, _head = await connect("/ws")
    await eventually(lambda: Shed.opened, WAIT, "open()")
    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        await client.write(frame(0x1, b"a"))
        with pytest.raises(tornado.iostream.StreamClosedError):
            await within(client.read_bytes(1))  # dropped: no close handshake
        await eventually(lambda: "close None" in Shed.events, WAIT, "on_close()")
    assert "Uncaught exception GET /ws" in caplog.text and "broken frame loop" in caplog.text


async def test_a_cancelled_reading_task_drops_the_connection(serve):
    connect, _send = serve
    client, _head = await connect("/ws")
    await eventually(lambda: Shed.opened, WAIT, "open()")
    task = Shed.opened[0].ws_connection._reader  # type: ignore[union-attr]
    assert task is not None
    task.cancel()
    with pytest.raises(tornado.iostream.StreamClosedError):
        await within(client.read_bytes(1))
    await eventually(lambda: task.done() and "close None" in Shed.events, WAIT, "on_close()")
    assert task.cancelled()


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's instance layout")
async def test_a_burst_of_upgrades_leaves_no_handler_with_a_dict_of_its_own(serve):
    """All upgrade requests are in before the server reads one: each handler is created before the first one's
    get() runs, which is when CPython 3.11 stops finding room for Tornado's late attributes."""
    _connect, send = serve
    burst = 40
    clients = [send("/reserved") for _ in range(burst)] + [send("/unreserved") for _ in range(burst)]
    for c in clients:
        assert (await within(c.read_until(b"\r\n\r\n"))).startswith(b"HTTP/1.1 101 ")
    await eventually(lambda: len(Reserved.opened) == len(Unreserved.opened) == burst, WAIT, "every open()")
    relied_on(
        not any(own_dict(h, "application") for h in Reserved.opened),
        "handlers of a burst keep a dict of their own despite reserve_attributes (LATE_ATTRIBUTES incomplete?)",
    )
    assert not any(own_dict(h.ws_connection, "handler") for h in Reserved.opened)  # MeteredProtocol's slots
    if sys.version_info[:2] == (3, 11):  # the control: without the reservation, the burst gives them dicts
        assert all(own_dict(h, "application") for h in Unreserved.opened[1:])


def test_reserving_leaves_no_attribute_behind():
    class Plain:
        def finish(self) -> str:
            return "the method"

    obj = Plain()
    tornado_io.reserve_attributes(obj)  # type: ignore[arg-type]
    assert obj.finish() == "the method"
    assert not any(hasattr(obj, name) for name in tornado_io.LATE_ATTRIBUTES if name != "finish")
    assert Plain in tornado_io._reserved
