"""A ticker server inside the test's own event loop, for tests that need a server and a client but nothing
of a process (signals, flags, workers, exit codes, its log): no start-up of an interpreter, and the node
is at hand.

The server and the test share one event loop: a test must not block it (run a blocking call, such as
:func:`tests.support.serverproc.scrape`, in a thread: :func:`~tests.support.serverproc.scrape_async`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from feeds.base import Feed
from feeds.simulated import SimulatedFeed
from tests.support.serverproc import ServerUrls
from tests.support.timing import eventually, timeout
from ticker.server.config import Config
from ticker.server.node import Node
from ticker.server.service import Service


class InProcessServer(ServerUrls):
    """A started :class:`~ticker.server.service.Service` on 127.0.0.1, with the URLs a client needs."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.port = service.port  # the ephemeral port it listens on (it is started)

    @property
    def node(self) -> Node:
        """The node behind the listeners (hub, fan-out, metrics, connections)."""
        return self.service.node


@contextlib.asynccontextmanager
async def serve_in_process(
    *,
    symbols: list[str] | None = None,
    sim_rate: float = 20.0,
    seed: int | None = 7,
    wait_for_directory: bool = True,
    feed: Feed | None = None,
    **config: Any,
) -> AsyncIterator[InProcessServer]:
    """Serve a seeded simulated market (``symbols``, ``sim_rate`` ticks/s), or ``feed`` instead, on an
    ephemeral port.

    ``config`` holds further server settings by name (as :class:`~ticker.server.config.Config` spells
    them, e.g. ``stale_after=1``); the server is stopped on exit, its clients closed with 1001.
    """
    cfg = Config(host="127.0.0.1", port=0, **config)
    feed = feed if feed is not None else SimulatedFeed(symbols=symbols, rate=sim_rate, seed=seed)
    service = Service(cfg, Node(cfg, feeds=[feed]))
    await service.start()
    try:
        # The simulated market's directory loads at once, in the background: wait for it, so that whether a
        # symbol is unknown or still pending never depends on how fast a test sends its first subscribe.
        if wait_for_directory:
            await eventually(lambda: service.node.directory.complete, what="the directory to load")
        yield InProcessServer(service)
    finally:
        await asyncio.wait_for(service.stop(), timeout(10))
