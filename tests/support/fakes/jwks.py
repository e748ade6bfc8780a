"""A JWKS endpoint on an ephemeral port of 127.0.0.1 (aiohttp), for the ``--jwt-jwks-url`` tests.

Set :attr:`FakeJwks.keys` (a list of JWK dicts) to rotate, :attr:`FakeJwks.status` to answer an
error, or :attr:`FakeJwks.body` to send raw bytes; :attr:`FakeJwks.requests` counts the fetches.
"""

from __future__ import annotations

import json
from typing import Any, Self

from aiohttp import web

from tests.support.fakes.local_http import start_app


class FakeJwks:
    """Serves ``{"keys": keys}`` at ``/jwks.json``."""

    def __init__(self, keys: list[dict[str, Any]] | None = None) -> None:
        self.keys: list[dict[str, Any]] = list(keys or [])
        self.status = 200
        self.body: bytes | None = None
        self.requests = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.status != 200:
            return web.Response(status=self.status, text="no")
        body = self.body if self.body is not None else json.dumps({"keys": self.keys}).encode()
        return web.Response(body=body, content_type="application/json")

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/jwks.json", self._serve)
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
