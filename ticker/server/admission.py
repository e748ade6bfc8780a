"""Per-IP admission: connections per address, connect and REST request rates, a process-wide connect rate.

Pure (no Tornado): the transports ask :class:`Admission` with the client address (as ``--trusted-proxies``
resolves it) and the monotonic time, and turn a :class:`Refusal` into an HTTP answer with ``Retry-After``.
IPv6 addresses count by their /64 (one host usually holds a whole /64). Memory is bounded: a rate table
forgets an address once its bucket has refilled (nothing is lost: a new bucket starts full), and holds at
most :data:`MAX_TRACKED` addresses (past that the least recently seen is forgotten); connection counts
exist only for addresses with open connections, at most ``--max-connections`` of them.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

from ticker.errors import RATE_LIMITED
from ticker.tables import compact
from ticker.tokenbucket import TokenBucket

MAX_TRACKED = 65_536  # addresses each rate table remembers at most (about 200 bytes each)
IP_LIMIT_RETRY = (
    10  # Retry-After (s) of a refusal over --max-connections-per-ip: no one knows when a slot frees
)

#: Seconds an address waits before its next connection once one of its connections was closed for flooding
#: (1008): a flooder that reconnects at once would have every frame it sends read and parsed again.
FLOOD_PENALTY = 10.0

IP_LIMIT = "ip_limit"  # reason (metric label) and error code: over --max-connections-per-ip
IP_RATE = "ip_rate"  # reason: over --connect-rate/--connect-burst (or --rest-rate/--rest-burst) of an address
PROCESS_RATE = "process_rate"  # reason: over --process-connect-rate/--process-connect-burst
UNAVAILABLE = "unavailable"  # error code of a 503


def address_key(address: str) -> str:
    """What an address counts as: an IPv4 address itself, an IPv6 address its /64; anything else as is."""
    if ":" not in address:
        return address
    try:
        net = ipaddress.IPv6Network((address, 64), strict=False)
    except ValueError:
        return address
    return str(net)


def retry_after(seconds: float) -> int:
    """Whole seconds for ``Retry-After``: rounded up, at least 1."""
    return max(1, math.ceil(seconds))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connect or request is refused: HTTP ``status``, error ``code`` and ``message``, the metric
    ``reason``, and ``retry_after`` seconds."""

    status: int
    code: str
    reason: str
    message: str
    retry_after: int

    @property
    def body(self) -> dict[str, dict[str, str]]:
        """The JSON error body every endpoint uses."""
        return {"error": {"code": self.code, "message": self.message}}

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After``."""
        return {"Retry-After": str(self.retry_after)}


class RateTable:
    """A token bucket per key (``rate`` per second, ``burst`` saved), bounded in keys.

    A key untouched for ``burst / rate`` seconds has a full bucket again and is dropped; past ``max_keys``
    the least recently touched key is dropped (it starts full when it comes back).
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_TRACKED) -> None:
        if max_keys < 1:
            raise ValueError("a rate table needs max_keys >= 1")
        TokenBucket(rate, burst, 0.0)  # the same checks of rate and burst
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()  # least recently touched first

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Spend one token of ``key``'s bucket: 0.0 if there was one, else the seconds until one is due."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            self._forget(now)
            bucket = buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            buckets.move_to_end(key)
        if bucket.take(now):
            return 0.0
        return (1.0 - bucket.tokens) / bucket.rate

    def hold_off(self, key: str, now: float, seconds: float) -> None:
        """Give ``key`` no token for ``seconds`` (a penalty)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        bucket.hold_off(now, seconds)

    def forget_refilled(self, now: float) -> int:
        """Drop the least recently touched keys whose buckets have refilled (a key without a bucket has a
        full one), up to the first that has not; then rebuild the table if a burst left it sparse (the bytes
        let go)."""
        buckets = self._buckets
        while buckets and _refilled(next(iter(buckets.values())), now):
            buckets.popitem(last=False)
        return compact(buckets)

    def _forget(self, now: float) -> None:
        """Drop the keys whose buckets have refilled (a penalized one later), and the oldest beyond
        ``max_keys - 1`` (room for one more)."""
        buckets = self._buckets
        while buckets:
            if not _refilled(next(iter(buckets.values())), now) and len(buckets) < self.max_keys:
                break
            buckets.popitem(last=False)


def _refilled(bucket: TokenBucket, now: float) -> bool:
    return bucket.tokens + (now - bucket.updated) * bucket.rate >= bucket.burst


class Admission:
    """The node's per-address limits and its process-wide connect rate (see the module docstring).

    Rates are ``(per second, burst)`` pairs.
    """

    def __init__(
        self,
        max_per_ip: int,
        connect: tuple[float, int],
        process_connect: tuple[float, int],
        rest: tuple[float, int],
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.max_per_ip = max_per_ip
        self.connects = RateTable(*connect, max_keys=max_tracked)
        self.requests = RateTable(*rest, max_keys=max_tracked)
        self.process = TokenBucket(process_connect[0], process_connect[1], -math.inf)
        self._open: dict[str, int] = {}  # address key -> open connections (only keys with some)

    def connect(self, address: str, now: float) -> Refusal | None:
        """Admit a connection from ``address`` (taking one of its slots) or say why not.

        Checked in order, so that refused attempts spend nothing further: the address's open connections,
        its connect rate, the process's connect rate. Give the slot back with :meth:`release`.
        """
        key = address_key(address)
        if self._open.get(key, 0) >= self.max_per_ip:
            return Refusal(429, IP_LIMIT, IP_LIMIT, "too many connections from this address", IP_LIMIT_RETRY)
        wait = self.connects.take(key, now)
        if wait:
            s = retry_after(wait)
            msg = f"too many connection attempts from this address; retry after {s} s"
            return Refusal(429, RATE_LIMITED, IP_RATE, msg, s)
        if not self.process.take(now):
            s = retry_after((1.0 - self.process.tokens) / self.process.rate)
            return Refusal(
                503, UNAVAILABLE, PROCESS_RATE, f"too many connection attempts; retry after {s} s", s
            )
        self._open[key] = self._open.get(key, 0) + 1
        return None

    def forget_refilled(self, now: float) -> int:
        """Drop the addresses whose rate buckets have refilled (see :meth:`RateTable.forget_refilled`), and
        rebuild the address tables a burst left sparse (:mod:`ticker.tables`); the bytes let go."""
        return self.connects.forget_refilled(now) + self.requests.forget_refilled(now) + compact(self._open)

    def penalize(self, address: str, now: float, seconds: float = FLOOD_PENALTY) -> None:
        """``address`` flooded: its next connection is refused (429, ``Retry-After``) for ``seconds``."""
        self.connects.hold_off(address_key(address), now, seconds)

    def release(self, address: str) -> None:
        """A connection admitted from ``address`` ended."""
        key = address_key(address)
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)

    def request(self, address: str, now: float) -> Refusal | None:
        """Admit a REST request from ``address`` or say why not (its request rate)."""
        wait = self.requests.take(address_key(address), now)
        if not wait:
            return None
        s = retry_after(wait)
        return Refusal(
            429, RATE_LIMITED, IP_RATE, f"too many requests from this address; retry after {s} s", s
        )

    def open_from(self, address: str) -> int:
        """Open connections admitted from ``address`` (its /64 for IPv6)."""
        return self._open.get(address_key(address), 0)

    def tracked(self) -> int:
        """Addresses held in memory: with open connections, and in each rate table."""
        return len(self._open) + len(self.connects) + len(self.requests)
