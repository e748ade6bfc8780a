"""Helpers for tests of ``ticker serve --workers N`` sharing one feed process (docs/scaling.md, ``--workers``).

Which worker answered is the ``X-Ticker-Worker`` response header (the WebSocket upgrade's too); the feed
process's pid and epoch, and each worker's ops port (``--metrics-port 0``), are read from the server's log.
"""

from __future__ import annotations

import asyncio
import http.client
import re
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.serverproc import TickerProcess
from tests.support.timing import timeout

WORKER_HEADER = "X-Ticker-Worker"
_FEED_PID = re.compile(r"feed process pid (\d+)")
_EPOCH = re.compile(r"feed process: feeds \S+, epoch (\S+)")
_OPS = re.compile(r"\[\d+ w(\d+)\] .*metrics on http://[^:]+:(\d+)/metrics")


def worker_of(ws: ClientConnection) -> int:
    """The index of the worker holding ``ws``."""
    assert ws.response is not None
    return int(ws.response.headers[WORKER_HEADER])


async def one_per_worker(url: str, workers: int = 2, within: float = 15.0) -> dict[int, ClientConnection]:
    """A WebSocket connection (to ``url``) on each of the ``workers`` workers: connections are opened until
    every index is seen (the kernel spreads them), the extra ones closed."""
    held: dict[int, ClientConnection] = {}
    async with asyncio.timeout(timeout(within)):
        while len(held) < workers:
            ws = await websockets.connect(url)
            w = worker_of(ws)
            if w in held:
                await ws.close()
            else:
                held[w] = ws
    return held


def feed_pid(srv: TickerProcess) -> int:
    """The pid of the feed process now running (the supervisor names each one it forks)."""
    found = _FEED_PID.findall(srv.output())
    assert found, "no feed process in the log"
    return int(found[-1])


def epochs(srv: TickerProcess) -> list[str]:
    """The epochs of the feed processes so far, in order."""
    return _EPOCH.findall(srv.output())


def ops_ports(srv: TickerProcess) -> dict[int, int]:
    """Worker index → its ``--metrics-port 0`` listener's port."""
    return {int(w): int(p) for w, p in _OPS.findall(srv.output())}


def get_json(port: int, path: str) -> tuple[int, dict[str, str], Any]:
    """``GET path`` on a fresh connection to 127.0.0.1:``port`` (so the kernel picks a worker anew): status,
    headers, decoded body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout(5))
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), orjson.loads(resp.read())
    finally:
        conn.close()


def one_entry_per_update(entries: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Entries by ``(symbol, q)``, asserting that no two different entries share one."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for e in entries:
        key = (e["s"], e["q"])
        assert out.setdefault(key, e) == e, f"two entries for {key}: {out[key]} and {e}"
    return out
