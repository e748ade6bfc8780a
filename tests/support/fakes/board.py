"""A node as the status board (and the node's allotter) read it: hubs, feeds and their runner, a quiet broker."""

from __future__ import annotations

from typing import Any

from feeds.base import Feed, FeedContext
from feeds.runner import FeedRunner
from ticker.barhub import BarHub
from ticker.delay import split_keys
from ticker.directory import Directory
from ticker.hub import Hub
from ticker.status import SymbolStatus


class QuietBroker:
    """An in-process broker that is up and reports no symbol state."""

    up = True
    name = "memory"

    def symbol_status(self, symbol: str) -> SymbolStatus | None:
        return None


class BoardNode:
    """The parts of :class:`~ticker.server.node.Node` the status board reads (its ``Watched`` protocol)."""

    def __init__(self, feeds: list[Feed]) -> None:
        self.hub: Hub[Any] = Hub()
        self.bar_hub: BarHub[Any] = BarHub()
        self.feeds = feeds
        self.runner = FeedRunner(feeds, lambda f: FeedContext(emit=lambda q: None))
        self.broker = QuietBroker()

    @property
    def directory(self) -> Directory:
        return self.runner.directory

    def demand(self) -> frozenset[str]:
        rt, dl = split_keys(self.hub.demand())  # as the node's: delayed keys stand for their symbols
        return frozenset(rt | dl | self.bar_hub.demand())
