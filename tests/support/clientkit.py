"""Helpers for tests of the Python client (:class:`ticker.client.TickerClient`)."""

from __future__ import annotations

import asyncio

from tests.support.timing import timeout
from ticker.client import Quote, TickerClient


async def take(client: TickerClient, n: int, within: float = 10.0) -> list[Quote]:
    """The next ``n`` quotes of ``client``, within ``within`` seconds (scaled)."""
    out: list[Quote] = []

    async def run() -> None:
        async for q in client:
            out.append(q)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout(within))
    return out
