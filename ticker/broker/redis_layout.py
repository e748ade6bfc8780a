"""What the Redis publisher and the Redis edge nodes agree on: key layout, payload codec, connections.

Layout (``P`` is ``--broker-prefix``, default ``ticker``; Redis pub/sub ignores the DB number,
so deployments sharing a Redis must use different prefixes):

- ``P:q:SYMBOL`` — one pub/sub channel per symbol. A message is ``{"pt":publish_ms,"e":epoch,"q":[Q,...]}``:
  the publish time (epoch ms, fractional), the publisher's lease epoch, and every quote of that symbol in
  one publish window, oldest first. Q is the wire protocol's entry without ``q`` (the sequence is per edge node), as
  ``ticker.quote.encode_entry(quote)`` writes it and ``decode_entry(q, sequenced=False)`` reads it.
- ``P:last`` — hash SYMBOL → Q: the last value of every carried symbol, for snapshots.
- ``P:demand:NODE`` — set of the symbols node NODE's clients want, with a TTL the node refreshes.
- ``P:nodes`` — set of node ids that may hold a demand key (the publisher prunes expired ones).
- ``P:ctl`` — channel: ``demand`` (a node's demand changed), ``hello`` (a publisher (re)started) and
  ``directory`` (the publisher wrote a new symbol directory).
- ``P:directory`` — hash SYMBOL → ``{"name","exchange","type","currency"}``: the publisher's symbol
  directory; ``P:directory:meta`` — what it is (``{"publisher","version","complete","loading","symbols"}``);
  ``P:directory:tmp:PUBLISHER`` — the next directory while it is written (codec: :mod:`ticker.broker.redis_directory`).
- ``P:health`` — the publisher's health report (its feeds, and its symbols that are not live), set every
  second with a 5 s TTL, so it vanishes when the publisher dies (codec: :mod:`ticker.broker.redis_health`).
- ``P:b:SYMBOL`` — channel: the publisher's bar updates of one symbol; ``P:bars:SYMBOL:INTERVAL`` — sorted
  set, the bounded bar history (score ``t``); ``P:bars:SYMBOL`` — the publisher has written that symbol's
  history (codec and bounds: :mod:`ticker.broker.redis_bars`).
- ``P:lease`` — the active publisher's token ``ID#EPOCH`` with a TTL (``--lease-ttl``); ``P:epoch`` — the
  takeover counter; ``P:publishers`` — channel: ``release TOKEN`` when the active one stops (standbys
  subscribe; :mod:`ticker.broker.redis_lease`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.retry import Retry

from ticker.backoff import Backoff
from ticker.quote import Quote, decode_entry

log = logging.getLogger("ticker.redis")

# Reconnect backoff (full jitter) towards Redis: it is our own infrastructure, so retry fast.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
SOCKET_TIMEOUT = 5.0  # seconds a command may take before the connection counts as dead
HELLO = b"hello"
DEMAND = b"demand"
DIRECTORY = b"directory"


def check_url(url: str) -> str:
    """Validate a ``redis://`` / ``rediss://`` / ``unix://`` URL; raise ``ValueError`` with a clear reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"broker URL must start with redis://, rediss:// or unix://, got {url!r}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"broker URL {url!r} has a bad port") from None
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ValueError(f"broker URL {url!r}: the path must be a DB number")
    return url


def redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def connect(url: str, name: str, socket_timeout: float | None = SOCKET_TIMEOUT) -> Redis:
    """A client that fails fast (no internal retries): the caller owns reconnects and backoff.

    Pub/sub clients pass ``socket_timeout=None`` (an idle subscription is no error) and check
    liveness with their own pings. A password may come from the URL or, to keep it off the command line, from ``TICKER_REDIS_PASSWORD``.
    """
    kwargs: dict[str, Any] = {}
    password = os.environ.get("TICKER_REDIS_PASSWORD")
    if password and urlsplit(url).password is None:
        kwargs["password"] = password
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=SOCKET_TIMEOUT,
        socket_timeout=socket_timeout,
        socket_keepalive=True,
        client_name=name,
        **kwargs,
    )


def node_id() -> str:
    """A unique id for this process: host, pid and a random part (a restarted process is a new node)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Layout:
    """Key and channel names under one prefix."""

    prefix: str = "ticker"

    def channel(self, symbol: str) -> bytes:
        """The pub/sub channel of ``symbol``."""
        return f"{self.prefix}:q:{symbol}".encode()

    def symbol_of(self, channel: bytes) -> str:
        """The symbol of a quote channel."""
        return channel[len(self.prefix) + 3 :].decode()

    @property
    def last(self) -> str:
        return f"{self.prefix}:last"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}:nodes"

    def demand(self, node: str) -> str:
        """The demand set of ``node``."""
        return f"{self.prefix}:demand:{node}"

    @property
    def ctl(self) -> bytes:
        return f"{self.prefix}:ctl".encode()

    @property
    def directory(self) -> str:
        return f"{self.prefix}:directory"

    @property
    def directory_meta(self) -> str:
        return f"{self.prefix}:directory:meta"

    @property
    def health(self) -> str:
        return f"{self.prefix}:health"

    def bar_channel(self, symbol: str) -> bytes:
        """The pub/sub channel of ``symbol``'s bar updates."""
        return f"{self.prefix}:b:{symbol}".encode()

    @property
    def bar_channel_prefix(self) -> bytes:
        """What every bar channel starts with (the symbol follows)."""
        return f"{self.prefix}:b:".encode()

    def bars(self, symbol: str, interval: str) -> str:
        """The history of ``symbol`` at ``interval`` (a symbol is upper case, an interval ends in a lower-case
        letter, so no two (symbol, interval) pairs share a name)."""
        return f"{self.prefix}:bars:{symbol}:{interval}"

    def bars_ready(self, symbol: str) -> str:
        """Set once the publisher has written ``symbol``'s history (after its backfill)."""
        return f"{self.prefix}:bars:{symbol}"

    @property
    def lease(self) -> str:
        return f"{self.prefix}:lease"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def publishers(self) -> bytes:
        return f"{self.prefix}:publishers".encode()

    def directory_tmp(self, publisher: str) -> str:
        """Where ``publisher`` writes its next directory before renaming it into place."""
        return f"{self.prefix}:directory:tmp:{publisher}"


def encode_message(entries: Iterable[bytes], publish_ms: float, epoch: int | None = None) -> bytes:
    """A channel message from Q entries of one symbol, each encoded once with ``encode_entry(quote)`` (no ``q``);
    ``epoch``: the publisher's lease epoch (``"e"``), which names the term that published it."""
    head = b'{"pt":' + repr(round(publish_ms, 3)).encode()
    if epoch is not None:
        head += b',"e":' + str(epoch).encode()
    return head + b',"q":[' + b",".join(entries) + b"]}"


def json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object; else ``ValueError("malformed <what>: ...")``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed {what}: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"malformed {what}: not an object")
    return obj


def decode_message(data: bytes) -> tuple[float, list[Quote]]:
    """(publish time in epoch ms, quotes) of a channel message; raises ``ValueError`` when malformed."""
    msg = json_object(data, "quote message")
    pt, entries = msg.get("pt"), msg.get("q")
    if isinstance(pt, bool) or not isinstance(pt, int | float):
        raise ValueError("malformed quote message: bad pt")
    if not isinstance(entries, list):
        raise ValueError("malformed quote message: q is not a list")
    return float(pt), [decode_entry(e, sequenced=False) for e in entries]


async def end_session(tasks: Iterable[asyncio.Task[None] | None], pubsub: PubSub, *clients: Redis) -> None:
    """End one Redis session: cancel and await its ``tasks``, then close the subscription and ``clients``
    (a second each, errors ignored: the connection may already be gone)."""
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    for closing in (pubsub.aclose(), *(c.aclose() for c in clients)):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(closing, 1.0)


async def stay_connected(
    session: Callable[[], Awaitable[None]], url: str, was_up: Callable[[], bool], set_down: Callable[[], None]
) -> None:
    """Run ``session`` for ever: after any loss of Redis, wait (backoff with full jitter) and start again."""
    backoff = Backoff(BACKOFF_BASE, BACKOFF_CAP)
    while True:
        try:
            await session()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any loss of Redis: reconnect with backoff
            if was_up():
                log.warning("lost Redis at %s: %s; reconnecting", redact(url), exc or type(exc))
                backoff.reset()
            else:
                log.debug("cannot reach Redis: %r", exc)
        set_down()
        await asyncio.sleep(backoff.next_delay())
