"""One ``ticker feed`` process among any number for the same feeds and broker: exactly one publishes.

A :class:`Candidate` stands by until it holds the publisher lease (:mod:`ticker.broker.redis_lease`): it tries to
take it every :func:`~ticker.lease.poll_every` seconds, and at once when the active publisher says it released
it. A standby runs no feed (a provider key is used by one process at a time). Once it holds the lease it builds
a :class:`~ticker.broker.publisher.Publisher` with fresh feeds, starts it (the publisher says ``hello`` with its
first data, so edge nodes resync their clients) and renews the lease every :func:`~ticker.lease.renew_every`
seconds. When it learns that it lost the lease (a renewal found another holder, or Redis refused a write) it
stops that publisher and stands by again. On a clean stop it hands over: when standbys listen it leaves the
health report to its successor, releases the lease and waits a moment for one to take it.
``ticker_publisher_active`` says which it is; the log says who took over and why, in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisClusterException, RedisError

from ticker import lease as pure
from ticker.backoff import Backoff
from ticker.broker import redis_fence as rf
from ticker.broker import redis_layout as rc
from ticker.broker import redis_lease as rl
from ticker.broker.publisher import Publisher
from ticker.metrics.registry import Metrics
from ticker.tasks import cancel_and_wait

log = logging.getLogger("ticker.publisher")

START_WAIT = 3.0  # seconds start() waits for the first answer of Redis (active or standby)
HANDOVER_WAIT = 1.0  # seconds a stopping active publisher waits for a standby to take the lease
HANDOVER_POLL = 0.05
START_RETRY = 5.0  # seconds a publisher whose feeds failed to start stands by before trying again


async def _first(seconds: float, *events: asyncio.Event) -> None:
    """Return once any of ``events`` is set, or after ``seconds``."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class Candidate:
    """Stands by until this process holds the lease, then runs a publisher (made by ``make``) until it loses it."""

    def __init__(
        self,
        url: str,
        make: Callable[[rl.Lease], Publisher],
        metrics: Metrics,
        prefix: str = "ticker",
        ttl: float = 3.0,
    ) -> None:
        self.url = rc.check_url(url)
        self.layout = rc.layout_of(self.url, prefix)
        self.lease = rf.new_lease(self.layout, rc.node_id(), ttl)
        self.metrics = metrics
        self.publisher: Publisher | None = None
        self._make = make
        self._candidacy = pure.Candidacy(ttl)
        self._standby_up = False
        self._decided = asyncio.Event()  # Redis answered once: active (publisher started) or standing by
        self._task: asyncio.Task[None] | None = None
        self._demoting: asyncio.Task[None] | None = None
        metrics.publisher_active.set(0)

    @property
    def id(self) -> str:
        """This process's publisher id (host, pid and a random part)."""
        return self.lease.publisher

    @property
    def active(self) -> bool:
        """Whether this process holds the lease and publishes."""
        return self.publisher is not None and self.lease.token is not None

    @property
    def up(self) -> bool:
        """Whether this process is connected to Redis (as the active publisher, or as a standby)."""
        pub = self.publisher
        return pub.up if pub is not None else self._standby_up

    def readiness(self) -> tuple[bool, str]:
        """The active publisher's feeds' readiness (a standby runs none: ready, saying so)."""
        pub = self.publisher
        if pub is None or not self.active:
            return True, "standby: another publisher holds the lease"
        return pub.runner.readiness()

    def _set_standby_up(self, up: bool) -> None:
        """A standby's connection to Redis (``ticker_broker_up``; the active publisher sets it itself)."""
        self._standby_up = up
        self.metrics.broker_up.set(1 if up else 0)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Stand by or publish, in the background; wait briefly until Redis has said which."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="publisher-candidate")
        try:
            await asyncio.wait_for(self._decided.wait(), START_WAIT)
        except TimeoutError:
            log.warning("Redis at %s is not reachable yet; standing by until it is", rc.redact(self.url))

    async def stop(self) -> None:
        """Stop; the active publisher hands over to a standby (or withdraws its health report when none listens)."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._demoting is not None:
            await self._demoting
        pub, self.publisher = self.publisher, None
        self._standby_up = False
        if pub is None:
            return
        if self.lease.token is None:
            await pub.stop(withdraw_health=False)
            self.metrics.publisher_active.set(0)
            return
        client = rc.connect(self.url, f"ticker-publisher:{self.id}")
        try:
            standbys = await self._standbys(client)
            await pub.stop(withdraw_health=not standbys)
            epoch = self.lease.epoch
            released = False
            with contextlib.suppress(RedisError, OSError):
                released = await self.lease.release(client)
            self.metrics.publisher_active.set(0)
            if released:
                log.info(
                    "publisher %s released the lease (epoch %d); standbys listening: %d",
                    self.id,
                    epoch,
                    standbys,
                )
                if standbys:
                    await self._handover(client)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1.0)

    async def _standbys(self, client: Redis) -> int:
        """How many standbys listen on ``P:publishers`` (0 when Redis cannot say)."""
        try:
            return await rc.listeners(client, self.layout, self.layout.publishers)
        except (RedisError, OSError):
            return 0

    async def _handover(self, client: Redis) -> None:
        """Wait a moment for a standby to take the lease; if none does, withdraw the health report (nodes then
        say at once that no publisher runs)."""
        deadline = time.monotonic() + HANDOVER_WAIT
        with contextlib.suppress(RedisError, OSError):
            while time.monotonic() < deadline:
                holder = await client.get(self.layout.lease)
                if holder is not None:
                    log.info("handed over to %s", pure.describe(rl.text(holder)))
                    return
                await asyncio.sleep(HANDOVER_POLL)
            if await self.lease.vacate(client, self.layout.health):
                log.info("no standby took over within %g s: withdrew the health report", HANDOVER_WAIT)

    async def _run(self) -> None:
        while True:
            await self._stand_by()
            await self._serve()

    # -- standing by ---------------------------------------------------------------------------
    async def _stand_by(self) -> None:
        """Return once this process holds the lease; reconnect to Redis with backoff meanwhile."""
        backoff = Backoff(rc.BACKOFF_BASE, rc.BACKOFF_CAP)
        while True:
            try:
                if await self._standby_session(backoff):
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any loss of Redis: reconnect with backoff
                if self._standby_up:
                    log.warning("lost Redis at %s: %s; reconnecting", rc.redact(self.url), exc or type(exc))
                else:
                    log.debug("cannot reach Redis: %r", exc)
            self._set_standby_up(False)
            await asyncio.sleep(backoff.next_delay())

    async def _standby_session(self, backoff: Backoff) -> bool:
        name = f"ticker-standby:{self.id}"
        client = rc.connect(self.url, name)
        sub_client = rc.connect(self.url, name, socket_timeout=None)
        pubsub = sub_client.pubsub(ignore_subscribe_messages=True)
        wake = asyncio.Event()
        reader: asyncio.Task[None] | None = None
        candidacy = self._candidacy
        try:
            await pubsub.subscribe(self.layout.publishers)
            reader = asyncio.get_running_loop().create_task(self._listen(pubsub, wake), name="standby-reader")
            while True:
                wake.clear()
                status, value = await self.lease.acquire(client, candidacy.force(time.monotonic()))
                if not self._standby_up:
                    self._set_standby_up(True)
                    backoff.reset()
                if status == rl.ACQUIRED:
                    log.log(
                        logging.INFO if candidacy.planned() else logging.WARNING,
                        "publisher %s is now active (epoch %d): %s",
                        self.id,
                        self.lease.epoch,
                        candidacy.reason(),
                    )
                    candidacy.held(value)  # the last holder seen, should this process stand by again
                    self._standby_up = False  # the publisher says whether it is connected now
                    return True
                if status == rl.HELD:
                    line = candidacy.held(value)
                    if line:
                        log.info("%s", line)
                else:
                    candidacy.lost(time.monotonic())
                self._decided.set()
                await _first(pure.poll_every(self.lease.ttl), wake)
                if reader.done():
                    reader.result()
                    raise ConnectionError("subscription ended")
        finally:
            await rc.end_session([reader], pubsub, client, sub_client)

    async def _listen(self, pubsub: PubSub, wake: asyncio.Event) -> None:
        async for msg in pubsub.listen():
            data = msg.get("data")
            if msg["type"] == "message" and isinstance(data, bytes) and data.startswith(rl.RELEASE_MESSAGE):
                self._candidacy.heard_release(data[len(rl.RELEASE_MESSAGE) :].decode(errors="replace"))
                wake.set()

    # -- publishing ----------------------------------------------------------------------------
    async def _serve(self) -> None:
        """Run a publisher while this process holds the lease; then stop it (shielded from a stop())."""
        pub = self.publisher = self._make(self.lease)
        self.metrics.publisher_active.set(1)
        try:
            await pub.start()
        except Exception as exc:  # a feed that cannot start: give the lease up, try again later
            log.error("publisher %s could not start its feeds: %r; releasing the lease", self.id, exc)
            await self._give_up(pub)
            return
        self._decided.set()
        reason = await self._hold(pub)
        self.metrics.publisher_active.set(0)
        self.publisher = None
        log.warning("publisher %s stands by: %s", self.id, reason)
        self._demoting = asyncio.get_running_loop().create_task(self._demote(pub), name="publisher-demote")
        await asyncio.shield(self._demoting)
        self._demoting = None

    async def _give_up(self, pub: Publisher) -> None:
        """After a failed start: stop the publisher, release the lease, wait before standing by again."""
        self.metrics.publisher_active.set(0)
        self.publisher = None
        await self._demote(pub)
        client = rc.connect(self.url, f"ticker-publisher:{self.id}")
        try:
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release(client)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1.0)
        self.lease.token = None
        await asyncio.sleep(START_RETRY)

    async def _demote(self, pub: Publisher) -> None:
        await pub.stop(withdraw_health=False)
        for feed in pub.runner.feeds:  # a standby reports no feed
            with contextlib.suppress(KeyError):
                self.metrics.feed_up.remove(feed.name)

    async def _hold(self, pub: Publisher) -> str:
        """Renew the lease every second until it is lost; the reason. A lease retaken (it had lapsed while
        Redis was away, or Redis restarted empty) makes the publisher republish its last values."""
        lease = self.lease
        backoff = Backoff(rc.BACKOFF_BASE, rc.BACKOFF_CAP)
        client = rc.connect(self.url, f"ticker-publisher-lease:{self.id}")  # one for the term: it reconnects
        try:
            while True:
                try:
                    while not lease.lost.is_set():
                        lease.renew_wanted.clear()
                        status, _ = await lease.renew(client)
                        backoff.reset()
                        if status == rl.RETAKEN:
                            log.warning(
                                "publisher %s retook the lease (epoch %d): it had lapsed while Redis was away "
                                "or restarted empty",
                                self.id,
                                lease.epoch,
                            )
                            pub.retaken()
                        await _first(pure.renew_every(lease.ttl), lease.lost, lease.renew_wanted)
                except (RedisError, OSError, RedisClusterException) as exc:  # the session logs a lost Redis
                    log.debug("could not renew the lease: %r", exc)
                if lease.lost.is_set():
                    return lease.lost_reason
                await _first(backoff.next_delay(), lease.lost)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1.0)
