"""The file-descriptor budget of a serving process, and the back-off of a listener that meets its end.

Every connection holds a descriptor. At start a process raises its soft ``RLIMIT_NOFILE`` to the hard
limit (:func:`raise_soft_limit`), keeps :func:`reserve` descriptors for everything that is not a client
connection (feeds, Redis, the ops listener and its scrapes, logs, the event loop itself) and serves at
most the rest (:func:`fit`): a ``--max-connections`` that does not fit is lowered, with one warning.

A listener never takes the last :data:`KEEP_FREE` descriptors: a connection accepted on a descriptor
numbered at or above the *watermark* (the soft limit minus ``KEEP_FREE``) is closed at once. The kernel
hands out the lowest free number, so such a number means every one below it is in use. What a failed
or shed accept does next is :class:`AcceptGuard`'s: a pause that grows from 100 ms to 1 s (the pending
connections wait in the kernel's backlog, nothing spins), a count by reason, and a log line at most once
a second.
"""

from __future__ import annotations

import errno
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("ticker")

#: Descriptors kept for what is not a client connection: the event loop, standard streams, listeners,
#: Redis, the ops listener and its scrapes, log files, DNS lookups.
RESERVE_BASE = 64
#: Descriptors kept per feed (its upstream connection, a reconnect overlapping it, history requests).
RESERVE_PER_FEED = 4
#: The last descriptors no client connection may take: the ops listener, feeds and Redis get them.
KEEP_FREE = 16
#: Used as the target when the hard limit is unlimited (Linux refuses an unlimited RLIMIT_NOFILE).
UNLIMITED_TARGET = 1 << 20

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 1.0
LOG_EVERY = 1.0

#: accept() errors that pause the listener, by the ``reason`` label of ``ticker_accept_errors_total``.
PAUSING = {
    errno.EMFILE: "emfile",
    errno.ENFILE: "enfile",
    errno.ENOBUFS: "enobufs",
    errno.ENOMEM: "enomem",
}
#: Shed by the listener itself: accepted on a descriptor at or above the watermark, closed at once.
RESERVE = "reserve"
#: Any other error of accept() that is not a pending connection's own network error.
OTHER = "other"
#: Errors Linux passes up from a pending connection: that connection is gone, the next one may be fine.
PASS_THROUGH = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETDOWN",
        "ENETUNREACH",
        "EPERM",  # a firewall rule refused it
    )
    if hasattr(errno, name)
)
_WHY = {
    "emfile": "the process has no file descriptor left",
    "enfile": "the system has no file descriptor left",
    "enobufs": "the kernel has no buffer memory left",
    "enomem": "the kernel has no memory left",
    RESERVE: f"only the last {KEEP_FREE} file descriptors are left (kept for health, metrics, feeds)",
    OTHER: "accept() failed",
}


def reserve(feeds: int) -> int:
    """Descriptors kept for everything but client connections in a process that runs ``feeds`` feeds."""
    return RESERVE_BASE + RESERVE_PER_FEED * max(0, feeds)


@dataclass(frozen=True, slots=True)
class Fit:
    """How many connections a process may hold with ``soft`` descriptors (the effective limit)."""

    requested: int  #: ``--max-connections`` as given
    effective: int  #: what the process serves: ``requested``, or less when the descriptors are fewer
    soft: int | None  #: the soft RLIMIT_NOFILE after raising it (None: unlimited)
    reserve: int  #: descriptors kept for everything else

    @property
    def lowered(self) -> bool:
        """Whether ``--max-connections`` did not fit and was lowered."""
        return self.effective < self.requested


def fit(requested: int, soft: int | None, feeds: int) -> Fit:
    """The connections that fit in ``soft`` descriptors (None: unlimited) beside :func:`reserve` (at least 1)."""
    kept = reserve(feeds)
    room = requested if soft is None else max(1, soft - kept)
    return Fit(requested, min(requested, room), soft, kept)


def watermark(soft: int | None) -> int | None:
    """The first descriptor number a listener refuses to keep a connection on (None: no limit)."""
    return None if soft is None else max(1, soft - KEEP_FREE)


def raise_target(soft: int, hard: int) -> int:
    """The soft limit to ask for: the hard limit (a finite stand-in when that is unlimited); never lower."""
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    return soft if soft == resource.RLIM_INFINITY or soft >= target else target


def raise_soft_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit now (None: unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = raise_target(soft, hard)
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # e.g. above the kernel's nr_open, or macOS's OPEN_MAX
            log.info("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
    return soft_limit()


def soft_limit() -> int | None:
    """The soft ``RLIMIT_NOFILE`` now (None: unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def size_to_descriptors(requested: int, feeds: int, asked: bool = True) -> Fit:
    """Raise the soft limit, fit ``requested`` connections into it; one warning when they do not fit and
    ``asked`` (the operator set ``--max-connections``); the default is lowered quietly (a debug line: the
    start's "listening" line and ``ticker_max_connections`` say what is in force)."""
    result = fit(requested, raise_soft_limit(), feeds)
    if result.lowered:
        (log.warning if asked else log.debug)(
            "--max-connections %d does not fit in %d file descriptors (%d kept for feeds, Redis, health, "
            "metrics and logs): serving at most %d connections; raise the open-files limit "
            "(ulimit -n, LimitNOFILE=, --ulimit nofile=) to serve more",
            result.requested,
            result.soft,
            result.reserve,
            result.effective,
        )
    return result


class AcceptGuard:
    """What a listener does when accept() fails or sheds: pause (growing), count, log at most once a second.

    ``count(reason)`` is called for every failure (the metric); the clock is the caller's (monotonic
    seconds), so the guard is pure and its rules are unit-tested.
    """

    def __init__(
        self,
        count: Callable[[str], None],
        watermark: int | None = None,
        name: str = "listener",
    ) -> None:
        self.count = count
        self.watermark = watermark
        self.name = name
        self.delay = 0.0  #: the pause after the last failure (0 after a success)
        self.failures = 0  #: failures since the last log line
        self._last_log: float | None = None

    def over(self, fd: int) -> bool:
        """Whether a connection accepted on descriptor ``fd`` must be closed at once to keep the reserve."""
        return self.watermark is not None and fd >= self.watermark

    def accepted(self) -> None:
        """A connection was accepted and kept: the next failure starts the back-off from its shortest pause."""
        self.delay = 0.0

    def failed(self, reason: str, now: float) -> float:
        """Count a failure; return how long to stop accepting (seconds)."""
        self.count(reason)
        self.failures += 1
        self.delay = BACKOFF_FIRST if self.delay <= 0 else min(BACKOFF_MAX, self.delay * 2)
        if self._last_log is None or now - self._last_log >= LOG_EVERY:
            log.warning(
                "%s: %s; not accepting for %.1f s (%d such pauses since the last line)",
                self.name,
                _WHY.get(reason, _WHY[OTHER]),
                self.delay,
                self.failures,
            )
            self._last_log, self.failures = now, 0
        return self.delay


def reason_of(exc: OSError) -> str | None:
    """The ``reason`` of an accept() error that must pause the listener; None for a pending connection's own."""
    if exc.errno in PASS_THROUGH:
        return None
    return PAUSING.get(exc.errno or 0, OTHER)
