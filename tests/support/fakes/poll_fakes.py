"""Shared parts of the fake HTTP providers used by the polled-feed tests (finnhub-rest, yahoo).

A :class:`FakeHttpProvider` runs an aiohttp web app on an ephemeral port of 127.0.0.1,
logs every request with the server's own arrival time, enforces an optional rate limit
the way the provider would (HTTP 429), and plays scripted faults: ``"ok"`` (none this time), ``"429"`` (no
Retry-After), ``"429:SECONDS"``, ``"500"``, ``"garbage"`` (a non-JSON body), ``"shape"``
(JSON of the wrong shape), ``"drop"`` (the connection is closed without a response); ``fault_paths``, when
set, limits the faults to requests of those paths.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Self

from aiohttp import web

from tests.support.fakes.local_http import start_app


@dataclass
class Hit:
    """One request as the fake saw it."""

    at: float  # the fake's time.monotonic() on arrival
    path: str
    query: dict[str, str]
    status: int = 0


class FakeHttpProvider:
    """Base of the fakes: subclasses add routes in :meth:`routes` and answer through :meth:`gate`."""

    def __init__(self, *, limit: int | None = None, window: float = 1.0) -> None:
        self.hits: list[Hit] = []
        self.faults: deque[str] = deque()
        self.fault_paths: set[str] = set()  # when set, only requests of these paths take the faults
        self.limit = limit
        self.window = window
        self.limited: deque[float] = deque()  # arrival times inside the rate-limit window
        self.always_429 = False
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._runner, self.port = await start_app(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def log(self, request: web.Request) -> Hit:
        hit = Hit(time.monotonic(), request.path, dict(request.query))
        self.hits.append(hit)
        return hit

    def gate(self, request: web.Request, hit: Hit, shape_body: bytes) -> web.StreamResponse | None:
        """Apply rate limit and scripted faults; returns the response to send instead, or ``None``."""
        now = hit.at
        if self.limit is not None:
            while self.limited and now - self.limited[0] >= self.window:
                self.limited.popleft()
            if len(self.limited) >= self.limit:
                hit.status = 429
                return self.too_many(None)
            self.limited.append(now)
        if self.always_429:
            hit.status = 429
            return self.too_many(None)
        if not self.faults or (self.fault_paths and request.path not in self.fault_paths):
            return None
        fault = self.faults.popleft()
        if fault == "ok":  # no fault this time
            return None
        if fault.startswith("429"):
            hit.status = 429
            return self.too_many(fault.partition(":")[2] or None)
        if fault == "500":
            hit.status = 500
            return web.Response(status=500, text="Internal Server Error")
        if fault == "garbage":
            hit.status = 200
            return web.Response(body=b"<html>\x00\xff not json", content_type="application/json")
        if fault == "shape":
            hit.status = 200
            return web.Response(body=shape_body, content_type="application/json")
        if fault == "drop":
            hit.status = -1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client
        raise AssertionError(f"unknown fault {fault!r}")

    def too_many(self, retry_after: str | None) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after else {}
        return web.Response(
            status=429, headers=headers, body=self.too_many_body(), content_type="application/json"
        )

    def too_many_body(self) -> bytes:
        return b'{"error": "Too Many Requests"}'

    def count(self, path: str, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for h in self.hits if h.path == path and since <= h.at < until)
