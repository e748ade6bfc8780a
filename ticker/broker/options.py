"""Values of the broker flags (``--broker``, ``--broker-prefix``), checked without loading redis-py."""

from __future__ import annotations

from typing import Any

from ticker.errors import OptionError
from ticker.options import option


def broker_url(text: str) -> str:
    """``memory`` or a valid ``redis://`` (or ``redis+cluster://``) URL."""
    if text.strip().lower() == "memory":
        return "memory"
    from ticker.broker.redis_layout import check_url  # redis-py loads only for a Redis URL

    try:
        return check_url(text.strip())
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def redis_url(text: str) -> str:
    """A valid ``redis://`` URL (``memory`` is refused: the publisher needs Redis)."""
    url = broker_url(text)
    if url == "memory":
        raise OptionError(
            "the publisher needs a Redis URL (redis://HOST:PORT/DB or redis+cluster://HOST:PORT,...)"
        )
    return url


def key_prefix(text: str) -> str:
    """A prefix of Redis keys and channels: 1-64 characters, no spaces, glob characters or braces (a Redis
    Cluster's hash tags; refused with any broker, so that a deployment keeps its prefix when it moves to a cluster)."""
    if not text or len(text) > 64 or any(c in text for c in " *?[]{}\\"):
        raise OptionError(f"prefix must be 1-64 characters without spaces or */?/[/]/{{/}}: {text!r}")
    return text


def prefix_option(group: str) -> Any:
    """``--broker-prefix`` (``TICKER_BROKER_PREFIX``), declared once for ``ticker serve`` and ``ticker feed``."""
    return option(
        "ticker",
        "prefix of every Redis key and channel; one per deployment sharing a Redis (ticker)",
        env="BROKER_PREFIX",
        parse=key_prefix,
        group=group,
    )
