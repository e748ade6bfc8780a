"""The feeds side's errors, one hierarchy under :class:`FeedError` (pure, no I/O).

Configuration and bad-input errors are also :class:`ValueError`, as callers (argparse types,
parse loops) catch them as such.
"""

from __future__ import annotations


class FeedError(Exception):
    """Base class of every error a feed, its engine or a recording raises on purpose."""


class FeedConfigError(FeedError, ValueError):
    """A feed cannot start as configured (for example, missing credentials); the message is one line."""


class UpstreamError(FeedError):
    """The upstream ended or refused the session; ``reason`` shows in health, ``kind`` is counted."""

    def __init__(self, reason: str, kind: str = "upstream_error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class AuthFailed(UpstreamError):
    """The provider refused the credentials, or obtaining session credentials failed; the reason says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "auth")


class RateLimited(FeedError):
    """The provider answered 429; ``retry_after`` is its ``Retry-After`` in seconds, if it gave one."""

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("rate limited upstream")
        self.retry_after = retry_after


class IncompleteReference(FeedError):
    """A reference load that could not list everything (a page or row limit reached): it is not used,
    since the directory takes a feed's list for whole, and the runner tries again later."""


class BodyTooLarge(FeedError):
    """A polled response body over the engine's size limit."""


class Malformed(FeedError, ValueError):
    """An upstream message that does not have the documented shape."""


class RecordingError(FeedError, ValueError):
    """A file that is not a readable recording; the message says why."""
