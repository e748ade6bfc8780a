"""Shared machinery of the fake upstream providers: an aiohttp WebSocket server on an ephemeral port.

A provider fake subclasses :class:`FakeUpstream` and fills in ``on_connect``/``on_message``
with the provider's documented wire format. The base records every client message, tracks
connections (each with its own subscription set), can drop them (politely or abruptly),
go silent (stop reading and answering pings) and wait for conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tests.support.fakes.local_http import start_app
from tests.support.fakes.refdata import ReferenceDesk
from tests.support.timing import eventually


class FakeConn:
    """One client connection to a fake: its socket, request, subscriptions and what it sent."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, owner: FakeUpstream) -> None:
        self.ws = ws
        self.owner = owner
        self.request = request
        self.subs: set[str] = set()
        self.received: list[Any] = []
        self.frame_times: list[float] = []  # every client frame (text, ping, pong), for rate limits
        self.pongs = 0
        self.authed = False
        self.opened = time.monotonic()

    async def send(self, payload: Any) -> None:
        """Send ``payload`` as JSON (nothing while the fake is silent)."""
        await self.send_raw(json.dumps(payload))

    async def send_raw(self, text: str) -> None:
        if not self.ws.closed and not self.owner.silent:
            with contextlib.suppress(ConnectionError):  # the client went away meanwhile
                await self.ws.send_str(text)

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        await self.ws.close(code=code, message=message)

    def kill(self) -> None:
        """Drop the TCP connection without a close handshake."""
        if self.request.transport is not None:
            self.request.transport.close()


class FakeUpstream:
    """Base of the provider fakes; ``url`` is the WebSocket URL once :meth:`start` returned.

    The same port serves the provider's REST reference endpoints (:meth:`routes`), as an adapter given
    this fake's URL with ``--feed-url`` asks its host for them; ``desk`` logs those requests and plays
    scripted faults (:class:`~tests.support.fakes.refdata.ReferenceDesk`).
    """

    path = "/"
    autoping = False  # pings are answered by the read loop below, so a silent fake really is silent

    def __init__(self) -> None:
        self.conns: list[FakeConn] = []  # open connections
        self.connects = 0  # connections accepted so far
        self.received: list[Any] = []  # every client JSON message, all connections
        self.silent = False
        self._resume = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0
        self.desk = ReferenceDesk()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    @property
    def http_url(self) -> str:
        """The base of the fake's REST (reference) endpoints."""
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        """Add the provider's REST reference endpoints (provider fakes override)."""

    async def start(self) -> FakeUpstream:
        app = web.Application()
        self.routes(app)
        app.router.add_get(self.path, self._handle)
        self._runner, self.port = await start_app(app)
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self.conns):
            conn.kill()
        if self._runner is not None:
            await self._runner.cleanup()

    def background(self, coro: Any) -> None:
        """Run ``coro`` until the fake closes."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what provider fakes fill in --------------------------------------------------------

    def refuse(self, request: web.Request) -> web.Response | None:
        """An HTTP response refusing the WebSocket upgrade, or ``None`` to accept."""
        return None

    async def on_connect(self, conn: FakeConn) -> None:
        """Called once a client connected."""

    async def on_message(self, conn: FakeConn, msg: Any) -> None:
        """Called for each JSON message from a client."""

    async def on_frame(self, conn: FakeConn) -> None:
        """Called for every client frame (text, ping or pong) before it is handled."""

    async def on_bad_frame(self, conn: FakeConn, text: str) -> None:
        """Called for a client frame that is not JSON."""

    async def on_disconnect(self, conn: FakeConn) -> None:
        """Called when a client connection ended."""

    #: Provider-shaped messages that break the documented format (each must be counted, none may crash).
    BAD: tuple[str, ...] = ()

    def symbols(self) -> set[str]:
        """Symbols (in the adapter's convention) with a live data subscription on an open connection."""
        raise NotImplementedError

    async def trade(self, symbol: str, price: float) -> int:
        """Send one trade of ``symbol`` at ``price`` to its subscribers; returns how many connections got it."""
        raise NotImplementedError

    # -- controls for tests -----------------------------------------------------------------

    def go_silent(self) -> None:
        """Stop reading, answering pings and sending (an upstream that hangs)."""
        self.silent = True
        self._resume.clear()

    def wake(self) -> None:
        self.silent = False
        self._resume.set()

    async def broadcast(self, payload: Any, *, to: Callable[[FakeConn], bool] = lambda c: True) -> int:
        """Send ``payload`` to every open connection ``to`` accepts; returns how many got it."""
        n = 0
        for conn in list(self.conns):
            if to(conn) and not self.silent:
                await conn.send(payload)
                n += 1
        return n

    async def broadcast_raw(self, text: str) -> None:
        for conn in list(self.conns):
            await conn.send_raw(text)

    async def drop_all(self, code: int = 1001) -> None:
        for conn in list(self.conns):
            await conn.close(code)

    def kill_all(self) -> None:
        for conn in list(self.conns):
            conn.kill()

    def subscribed(self) -> set[str]:
        """The union of the subscriptions of the open connections."""
        out: set[str] = set()
        for conn in self.conns:
            out |= conn.subs
        return out

    async def wait_for(
        self, cond: Callable[[], object], within: float = 5.0, what: str = "condition"
    ) -> None:
        """Wait until ``cond()`` holds; fail after ``within`` seconds (scaled)."""
        await eventually(cond, within, what)

    # -- the server side --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        refused = self.refuse(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=self.autoping)
        await ws.prepare(request)
        conn = FakeConn(ws, request, self)
        self.conns.append(conn)
        self.connects += 1
        try:
            await self.on_connect(conn)
            while not ws.closed:
                if self.silent:
                    await self._resume.wait()
                    continue
                msg = await ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                conn.frame_times.append(time.monotonic())
                await self.on_frame(conn)
                if ws.closed:
                    break
                if msg.type == WSMsgType.PONG:
                    conn.pongs += 1
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        await self.on_bad_frame(conn, msg.data)
                        continue
                    conn.received.append(data)
                    self.received.append(data)
                    await self.on_message(conn, data)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if conn in self.conns:
                self.conns.remove(conn)
            with contextlib.suppress(Exception):
                await self.on_disconnect(conn)
        return ws
