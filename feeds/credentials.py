"""Feed credentials: from environment variables (or files they name) only, never logged."""

from __future__ import annotations

import os

from feeds.errors import FeedConfigError

MAX_SECRET_FILE_BYTES = 64 * 1024  # a secret file is read up to this size


def secret(name: str) -> str | None:
    """Return the secret in env var ``name``, or the stripped contents of the file named by ``name_FILE``.

    Raises :class:`FeedConfigError` (one line: exit status 2) when that file cannot be read."""
    value = os.environ.get(name)
    if value:
        return value.strip()
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read(MAX_SECRET_FILE_BYTES).strip() or None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise FeedConfigError(f"{name}_FILE: cannot read {path!r}: {why}") from None
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
