"""The publisher lease seen from outside: every quote message Redis carries with its epoch, which ``ticker feed``
is active (its metric), and the checks that no two publishers' quotes interleave. Used by
tests/e2e/test_publisher_lease.py and bench/takeover.py."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from tests.support.redisproc import FeedProcess, RedisProcess
from tests.support.serverproc import scrape
from tests.support.timing import eventually


@dataclass(frozen=True, slots=True)
class Published:
    """One quote as Redis carried it: when this process received it (monotonic), the publisher's epoch."""

    at: float
    epoch: int
    symbol: str
    t: int
    p: float


@dataclass
class QuoteRecorder:
    """Subscribes to every quote channel of ``prefix`` (``PSUBSCRIBE P:q:*``) and keeps each quote in arrival
    order, which is the order Redis ran the publishes in."""

    url: str
    prefix: str = "ticker"
    quotes: list[Published] = field(default_factory=list)
    _client: Redis | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> QuoteRecorder:
        self._client = Redis.from_url(self.url)
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(f"{self.prefix}:q:*")
        self._task = asyncio.get_running_loop().create_task(self._read(pubsub))
        return self

    async def _read(self, pubsub: Any) -> None:
        await record_published(pubsub, "pmessage", self.quotes)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def epochs(self) -> list[int]:
        """The epochs in arrival order, each run once: ``[1, 2]`` after one takeover."""
        out: list[int] = []
        for q in self.quotes:
            if not out or out[-1] != q.epoch:
                out.append(q.epoch)
        return out

    def first_of(self, epoch: int) -> Published | None:
        return next((q for q in self.quotes if q.epoch == epoch), None)

    async def wait_epoch(self, epoch: int, within: float) -> Published:
        """The first quote of ``epoch``, once Redis carried one (fails after ``within`` s, scaled)."""
        return await eventually(lambda: self.first_of(epoch), within, f"a quote of epoch {epoch}")

    def by_key(self) -> dict[tuple[str, int], Published]:
        """(symbol, feed time) → the quote published with it (one each: no two publishers interleave)."""
        return {(q.symbol, q.t): q for q in self.quotes}


async def record_published(pubsub: Any, kind: str, into: list[Published]) -> None:
    """Append each quote of the publisher's channel messages (``kind``: pmessage, smessage) read from ``pubsub``
    to ``into`` with the time it came, until cancelled; then close ``pubsub``."""
    try:
        async for msg in pubsub.listen():
            if msg["type"] != kind:
                continue
            at = time.monotonic()
            body = orjson.loads(msg["data"])
            for q in body["q"]:
                into.append(Published(at, body["e"], q["s"], q["t"], q["p"]))
    finally:
        await pubsub.aclose()


def active_of(pub: FeedProcess) -> float:
    """``ticker_publisher_active`` of a running publisher (its --metrics-port)."""
    return scrape(f"http://127.0.0.1:{pub.metrics_port}")["ticker_publisher_active"]


def publisher_id(pub: FeedProcess) -> str:
    """The publisher id (``host:pid:random``) of ``pub``, as its log or the other's names it."""
    assert pub.proc is not None
    m = re.search(rf"publisher (\S+:{pub.proc.pid}:[0-9a-f]+)", pub.output())
    assert m, pub.output()
    return m.group(1)


def lease_holder(r: RedisProcess) -> str | None:
    """The token in the lease (``ID#EPOCH``), or None when vacant."""
    got = r.command("GET", "ticker:lease")
    return str(got) if got is not None else None


def never_interleaved(recorder: QuoteRecorder, entries: Iterable[dict[str, Any]]) -> int:
    """Check that Redis carried one epoch after another (never an older one again), and that every quote
    entry a client received is one Redis carried, each symbol's in epoch order; returns the entries checked."""
    epochs = recorder.epochs()
    assert epochs == sorted(set(epochs)), f"epochs interleaved in Redis: {epochs}"
    published = recorder.by_key()
    last: dict[str, int] = {}
    n = 0
    for e in entries:
        q = published.get((e["s"], e["t"]))
        assert q is not None, f"a quote no publisher published: {e}"
        assert q.p == e["p"], (e, q)
        assert q.epoch >= last.get(e["s"], 0), f"{e['s']}: epoch {q.epoch} after {last[e['s']]}"
        last[e["s"]] = q.epoch
        n += 1
    return n


def one_price_per_q(entries: Iterable[dict[str, Any]]) -> int:
    """Check that every (symbol, q) a client saw (quotes and snapshots) maps to one price; how many pairs."""
    seen: dict[tuple[str, int], float] = {}
    for e in entries:
        key = (e["s"], e["q"])
        assert seen.setdefault(key, e["p"]) == e["p"], f"{key}: {seen[key]} and {e['p']}"
    return len(seen)
