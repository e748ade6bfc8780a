"""Feed credentials: from environment variables (or files they name) only, never logged."""

from __future__ import annotations

import os

from feeds.errors import FeedConfigError


def secret(name: str) -> str | None:
    """Return the secret in env var ``name``, or the stripped contents of the file named by ``name_FILE``."""
    value = os.environ.get(name)
    if value:
        return value.strip()
    path = os.environ.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    return None


def require_env(feed: str, *names: str) -> list[str]:
    """The secrets ``names`` (see :func:`secret`), or :class:`FeedConfigError` naming the missing ones."""
    values = {n: secret(n) for n in names}
    missing = [n for n, v in values.items() if not v]
    if missing:
        raise FeedConfigError(
            f"feed {feed!r} needs {' and '.join(missing)} set in the environment (or {missing[0]}_FILE)"
        )
    return [v for v in values.values() if v]
