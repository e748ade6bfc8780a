"""Feed credentials: read from environment variables only, with a one-line error when missing."""

from __future__ import annotations

import os


class FeedConfigError(ValueError):
    """A feed cannot start as configured (for example, missing credentials); the message is one line."""


def require_env(feed: str, *names: str) -> list[str]:
    """The values of the env vars ``names``, or :class:`FeedConfigError` naming the missing ones."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise FeedConfigError(f"feed {feed!r} needs {' and '.join(missing)} set in the environment")
    return [os.environ[n] for n in names]
