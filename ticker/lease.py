"""The publisher lease, as far as it is decided without Redis: tokens, timings, when a standby may take over,
what a refused write means, and the words the log uses.

Any number of ``ticker feed`` processes run for one broker prefix; the one holding the lease publishes, the
others stand by. The lease is a Redis key holding the active publisher's token ``ID#EPOCH`` with a TTL
(``--lease-ttl``): ``ID`` names the process, ``EPOCH`` counts the takeovers under the prefix (the fencing
token). The active renews it every :func:`renew_every` seconds; a standby tries to take it every
:func:`poll_every` seconds and at once when the active releases it. Every write of the active is a Lua
script that first checks the lease still holds its token, so Redis refuses the writes of a publisher
that lost it (paused, or cut off from Redis, longer than the TTL) — :func:`refusal` says what it does then.
The Redis side is :mod:`ticker.broker.redis_lease`.
"""

from __future__ import annotations

import enum

RENEW_EVERY = 1.0  # seconds between two renewals by the active publisher (at most)
POLL_EVERY = 0.2  # seconds between two attempts of a standby to take the lease (at most)
MIN_TTL = 0.5  # seconds: the shortest --lease-ttl
RETAKE_MARGIN = 0.5  # seconds beyond a renewal the last holder has to retake a lease Redis lost


def renew_every(ttl: float) -> float:
    """Seconds between two renewals of a lease of ``ttl`` seconds: every second, a third of a shorter TTL."""
    return min(RENEW_EVERY, ttl / 3)


def poll_every(ttl: float) -> float:
    """Seconds between two attempts of a standby: 0.2, a tenth of a shorter TTL."""
    return min(POLL_EVERY, ttl / 10)


def retake_grace(ttl: float) -> float:
    """Seconds a standby leaves the last holder to retake a lease that Redis lost with its epoch (Redis
    restarted empty), so the active keeps publishing (its feeds, its bars) through a Redis restart."""
    return renew_every(ttl) + RETAKE_MARGIN


def token(publisher: str, epoch: int) -> str:
    """The lease value of ``publisher`` in its term ``epoch``."""
    return f"{publisher}#{epoch}"


def parse_token(raw: str) -> tuple[str, int] | None:
    """(publisher id, epoch) of a lease value; None when it is not one."""
    publisher, sep, epoch = raw.rpartition("#")
    if not sep or not publisher or not epoch.isdigit():
        return None
    return publisher, int(epoch)


def describe(raw: str) -> str:
    """``publisher ID (epoch N)`` for a log line (the raw value when it is no token)."""
    parsed = parse_token(raw)
    if parsed is None:
        return f"an unknown holder {raw!r}"
    return f"publisher {parsed[0]} (epoch {parsed[1]})"


class Refusal(enum.Enum):
    """What the active publisher does when Redis refused one of its writes."""

    IGNORE = "ignore"  # the write carried the token of an earlier term of its own (it retook the lease since)
    RENEW = "renew"  # nobody holds the lease (it lapsed, or Redis restarted empty): retake it at once
    STAND_DOWN = "stand_down"  # another publisher holds it: stop the feeds and stand by


def refusal(current: str | None, holder: str) -> Refusal:
    """What a refused write means: ``current`` is this publisher's token now (None: it knows it holds no
    lease), ``holder`` what the lease held when Redis refused ("" when vacant)."""
    if current is not None and holder == current:
        return Refusal.IGNORE
    if not holder and current is not None:
        return Refusal.RENEW
    return Refusal.STAND_DOWN


def lost_reason(holder: str, refused: bool) -> str:
    """Why the active publisher stands by: ``holder`` took the lease ("": nobody holds it now)."""
    how = "Redis refused its write" if refused else "its renewal found the lease taken"
    who = describe(holder) + " took over" if holder else "the lease lapsed"
    return f"{who} while it was paused or cut off from Redis for longer than its lease ({how})"


class Candidacy:
    """A standby's view of the lease: who holds it, and whether to take a vacant one now.

    A vacant lease whose epoch key is gone means Redis lost its data (it restarted empty): the last holder
    is given :func:`retake_grace` seconds to retake it first. A vacant lease with its epoch kept lapsed (its
    holder died or was paused) or was released: it is taken at once."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.holder: str | None = None  # the last token seen in the lease
        self.released: str | None = None  # the token of the last release heard of
        self._lost_since: float | None = None  # when the lease was first seen vacant without its epoch

    def held(self, holder: str) -> str | None:
        """The lease holds ``holder``: a log line when that is news, else None."""
        self._lost_since = None
        if holder == self.holder:
            return None
        self.holder = holder
        return f"standing by: {describe(holder)} is active; taking over if its lease of {self.ttl:g} s lapses"

    def heard_release(self, holder: str) -> None:
        """The active publisher ``holder`` said it released the lease (it stops)."""
        self.released = holder

    def lost(self, now: float) -> None:
        """The lease is vacant and its epoch gone (Redis restarted empty)."""
        if self._lost_since is None:
            self._lost_since = now

    def force(self, now: float) -> bool:
        """Whether to take a vacant lease even though its epoch is gone: when no holder was ever seen (a
        first start), or the last one did not retake it within the grace."""
        if self.holder is None:
            return True
        return self._lost_since is not None and now - self._lost_since >= retake_grace(self.ttl)

    def planned(self) -> bool:
        """Whether taking the lease was no failover: a first start, or a handover by a publisher that stopped."""
        return self.holder is None or self.released == self.holder

    def reason(self) -> str:
        """Why this standby took the lease (after it did)."""
        if self.holder is None:
            return "no publisher held the lease"
        if self.released == self.holder:
            return f"{describe(self.holder)} released the lease as it stopped"
        if self._lost_since is not None:
            return (
                f"Redis lost the lease of {describe(self.holder)} (restarted empty?) and it did not retake it "
                f"within {retake_grace(self.ttl):g} s"
            )
        return f"the lease of {describe(self.holder)} expired (not renewed for {self.ttl:g} s)"
