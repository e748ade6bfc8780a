"""Sockets counted per peer address at accept, and what the listener closes at its descriptor watermark
(docs/security.md, "Per-address limits" and "File descriptors"), against a real server under a low ``ulimit -n``.

300 TCP connections from 127.0.0.1 that never send a byte (and a header timeout of 60 s, so that they
last): with a low ``--max-sockets-per-ip`` the ones past it get 429 at once and another address
(127.0.0.2: loopback answers every 127.x address) is served; with the default cap the listener, at its
watermark, closes the idle connections oldest first (once idle for a second), never an established
WebSocket, and the effective ``--max-connections`` is still reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import resource
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.support.serverproc import ServerProcess, scrape_async
from tests.support.system import open_idle_sockets
from tests.support.timing import eventually, timeout
from ticker.server.peersockets import IDLE_GRACE

HARD = 256
EFFECTIVE = 188  # 256 descriptors - (64 + 4 for the simulated feed) kept for everything else
FLOOD = 300  # idle connections from 127.0.0.1: more than the process has descriptors
CAP = 50
BATCH = 60  # connects opened at once: fewer than the accept queue (128) holds
OTHER = "127.0.0.2"  # another source address on loopback
_OPS = re.compile(r"metrics on http://[^:]+:(\d+)/metrics")
REFUSED = 'ticker_connections_refused_total{reason="ip_sockets",transport="tcp"}'
EVICTED = 'ticker_accept_errors_total{reason="reserve_idle"}'
SHED = 'ticker_accept_errors_total{reason="reserve"}'


def _low_limit() -> None:
    """In the child: ``ulimit -Sn 64 -Hn 256`` (the server raises the soft limit itself)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, HARD))


@contextlib.asynccontextmanager
async def low_server(*args: str) -> AsyncIterator[tuple[ServerProcess, str]]:
    """A server under soft/hard RLIMIT_NOFILE 64/256 with an ops listener; yields it and the ops URL."""
    srv = ServerProcess(
        [
            *("--host", "127.0.0.1", "--loop", "asyncio", "--metrics-port", "0", "--sim-rate", "5"),
            *("--header-timeout", "60"),  # idle connections last through the test
            *args,
        ]
    )
    srv.preexec_fn = _low_limit
    await asyncio.to_thread(srv.start, 20.0)
    try:
        m = _OPS.search(srv.output())
        assert m, srv.output()
        yield srv, f"http://127.0.0.1:{m.group(1)}"
    finally:
        await asyncio.to_thread(srv.stop)


def open_fds(pid: int) -> int:
    """Descriptors the process ``pid`` holds (Linux)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def healthz_from(source: str, port: int) -> int:
    """GET /healthz on a new connection from ``source``: the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout(5), source_address=(source, 0))
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def read_to_close(source: str, port: int) -> bytes:
    """Connect from ``source``, send nothing, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5), source_address=(source, 0)) as s:
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        return got


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server closed ``s`` (EOF or reset); False while it is open and silent."""
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def ws_from(srv: ServerProcess, source: str) -> ClientConnection:
    return await connect(srv.ws_url, open_timeout=timeout(5), local_addr=(source, 0))


async def alive(ws: ClientConnection) -> None:
    """The WebSocket answers a ping."""
    pong = await ws.ping()
    await asyncio.wait_for(pong, timeout(5))


async def value(ops: str, key: str) -> float:
    return (await scrape_async(ops)).get(key, 0.0)


async def at_least(ops: str, key: str, n: float) -> bool:
    return await value(ops, key) >= n


async def at_least_of(read: Callable[[], Awaitable[float]], n: float) -> bool:
    return await read() >= n


async def served(port: int) -> bool:
    """/healthz from 127.0.0.1 answers 200 (not 429)."""
    try:
        return await asyncio.to_thread(healthz_from, "127.0.0.1", port) == 200
    except (OSError, http.client.HTTPException):
        return False


async def test_sockets_over_the_per_address_cap_get_429_and_another_address_is_served(flood):
    async with low_server("--max-sockets-per-ip", str(CAP)) as (srv, ops):
        # In batches the kernel's accept queue (128) holds: a connection that overflows it is dropped by the
        # server's kernel (SYN cookies) while the client believes it is open, and would never be counted.
        assert srv.proc is not None
        pid = srv.proc.pid
        base = open_fds(pid)
        open_idle_sockets(srv.port, CAP, flood)
        await eventually(lambda: open_fds(pid) >= base + CAP, 10, f"{CAP} connections accepted")
        for n in range(CAP, FLOOD, CAP):
            open_idle_sockets(srv.port, CAP, flood)
            await eventually(partial(at_least, ops, REFUSED, n), 10, f"{n} sockets refused")
        assert await asyncio.to_thread(healthz_from, OTHER, srv.port) == 200
        ws = await ws_from(srv, OTHER)
        await alive(ws)

        answer = await asyncio.to_thread(read_to_close, "127.0.0.1", srv.port)
        assert answer.startswith(b"HTTP/1.1 429 ") and b"Retry-After: 10\r\n" in answer, answer
        assert answer.endswith(
            b'{"error":{"code":"ip_limit","message":"too many open connections from this address"}}'
        )
        refused = await value(ops, REFUSED)
        assert FLOOD - CAP + 1 <= refused <= FLOOD + 1, refused
        assert await value(ops, SHED) == 0 and await value(ops, EVICTED) == 0

        for s in flood:  # the slots come back as the server sees the connections close
            s.close()
        await eventually(lambda: served(srv.port), 15, "127.0.0.1 served again")
        await alive(ws)
        await ws.close()
        assert "Traceback" not in srv.output()


async def test_at_the_watermark_idle_sockets_are_closed_oldest_first_and_the_connection_limit_is_reached(
    flood,
):
    async with low_server("--connect-burst", "1000") as (srv, ops):
        assert (await scrape_async(ops))["ticker_max_connections"] == EFFECTIVE
        established = await ws_from(srv, OTHER)

        assert srv.proc is not None
        pid, base = srv.proc.pid, open_fds(srv.proc.pid)

        async def accepted() -> float:  # what the listener took: still open, or closed at the watermark
            return open_fds(pid) - base + await value(ops, EVICTED) + await value(ops, SHED)

        for n in range(BATCH, FLOOD + 1, BATCH):  # batches the accept queue holds (see the test above)
            open_idle_sockets(srv.port, BATCH, flood)
            await eventually(partial(at_least_of, accepted, n), 15, f"{n} connections accepted")
        # While every idle connection is younger than the grace (1 s) the newest is shed; then the oldest go.
        await eventually(lambda: closed_by_server(flood[0]), 20, "the oldest idle connection closed")
        await alive(established)
        assert await asyncio.to_thread(healthz_from, OTHER, srv.port) == 200
        assert await value(ops, EVICTED) >= 1
        shed = await value(ops, SHED)
        await asyncio.sleep(IDLE_GRACE)  # the scenario: every idle connection has been idle for the grace

        # FD exhaustion never comes below the effective connection limit: idle sockets make room.
        sockets = [established] + [await ws_from(srv, OTHER) for _ in range(EFFECTIVE - 1)]
        with pytest.raises(InvalidStatus) as refused:
            await ws_from(srv, OTHER)
        assert refused.value.response.status_code == 503
        for ws in sockets:
            await alive(ws)
        assert await value(ops, SHED) == shed, "a new connection was closed while idle ones were open"
        for ws in sockets:
            await ws.close()
        assert "Traceback" not in srv.output()
