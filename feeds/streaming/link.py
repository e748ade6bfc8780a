"""One upstream WebSocket connection of a streaming feed (aiohttp); the errors that end one are in feeds.errors."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson
from yarl import URL

from feeds import reasons
from feeds.errors import Malformed, UpstreamError
from feeds.ratelimit import wait_for_token
from ticker.tokenbucket import TokenBucket


def redact_url(url: str) -> str:
    """``url`` without query string or user info, safe to log (tokens travel in queries)."""
    u = URL(url)
    return str(u.with_query(None).with_user(None).with_fragment(None))


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    """``items`` in consecutive lists of at most ``size``."""
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + max(1, size)]


class UpstreamLink:
    """One live upstream WebSocket: paced JSON sends and frame reads that track liveness."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, limiter: TokenBucket | None, host: str = "upstream"
    ) -> None:
        self.ws = ws
        self.limiter = limiter
        self.host = host  # named in the reasons a connection ends for
        self.opened = self.last_alive = time.monotonic()

    async def send(self, payload: Any) -> None:
        """Send ``payload`` as one JSON text frame (waiting for the provider's rate limit)."""
        if self.limiter is not None:
            await wait_for_token(self.limiter)
        await self.ws.send_str(orjson.dumps(payload).decode())

    async def ping(self) -> None:
        """Send a WebSocket ping (counted against the rate limit like any frame)."""
        if self.limiter is not None:
            await wait_for_token(self.limiter)
        await self.ws.ping()

    async def recv(self, within: float) -> Any:
        """The next JSON message; ping/pong frames count as life. Raises :class:`UpstreamError` on close or
        when nothing at all arrived for ``within`` seconds, :class:`Malformed` on a non-JSON frame."""
        while True:
            left = self.last_alive + within - time.monotonic()
            if left <= 0:
                raise UpstreamError(f"no data or heartbeat from {self.host} for {within:g} s", "silence")
            try:
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                continue
            kind = msg.type
            if kind in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                self.last_alive = time.monotonic()
                try:
                    return orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    raise Malformed("not JSON") from None
            if kind == aiohttp.WSMsgType.PING:
                self.last_alive = time.monotonic()
                if self.limiter is not None:
                    await wait_for_token(self.limiter)
                await self.ws.pong(msg.data)
            elif kind == aiohttp.WSMsgType.PONG:
                self.last_alive = time.monotonic()
            elif kind == aiohttp.WSMsgType.CLOSE:
                extra = f": {msg.extra}" if msg.extra else ""
                raise UpstreamError(
                    f"{self.host} closed the connection (code {msg.data}{extra})", "disconnect"
                )
            elif kind == aiohttp.WSMsgType.ERROR:
                why = (
                    reasons.connection_failed(self.host, msg.data)
                    if isinstance(msg.data, BaseException)
                    else ""
                )
                raise UpstreamError(why or f"the connection to {self.host} failed", "disconnect")
            else:  # CLOSING / CLOSED
                raise UpstreamError(f"the connection to {self.host} closed", "disconnect")
