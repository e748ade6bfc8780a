"""Feed names known to ``--feed``, the ``--feed`` option, and where each one's factory lives (imported only
when the name is used).

A factory takes the typed :class:`~feeds.options.FeedOptions` and returns a ready-to-start feed, or
raises ``ValueError`` (for example :class:`~feeds.credentials.FeedConfigError`) with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any, cast

from ticker.errors import OptionError
from ticker.options import option

if TYPE_CHECKING:
    from feeds.base import Feed
    from feeds.options import FeedOptions

FeedFactory = Callable[["FeedOptions"], "Feed"]

#: ``--feed`` name → ``"module:function"`` of its factory.
FEEDS: dict[str, str] = {
    "simulated": "feeds.simulated:create",
    "finnhub": "feeds.streaming.finnhub:create",
    "alpaca": "feeds.streaming.alpaca:create",
    "polygon": "feeds.streaming.polygon:create",
    "coinbase": "feeds.streaming.coinbase:create",
    "binance": "feeds.streaming.binance:create",
    "finnhub-rest": "feeds.polled.finnhub_rest:create",
    "yahoo": "feeds.polled.yahoo:create",
    "replay": "feeds.recording.replay:create",
}


def factory(name: str) -> FeedFactory:
    """The factory of feed ``name``, importing its module now; unknown names raise ``ValueError``."""
    target = FEEDS.get(name)
    if target is None:
        raise ValueError(f"unknown feed {name!r} (known: {', '.join(sorted(FEEDS))})")
    module, function = target.split(":")
    return cast(FeedFactory, getattr(import_module(module), function))


def create_feeds(names: list[str], options: FeedOptions) -> list[Feed]:
    """Build one feed per name from ``options``; unknown names and bad options raise ``ValueError``."""
    return [factory(name)(options) for name in names]


def _names(text: str) -> list[str]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not names:
        raise OptionError("needs at least one name")
    return names


def feed_option(default: list[str] | None, help_tail: str) -> Any:
    """The ``--feed`` field of a command: adapter names, comma-separated; ``help_tail`` says the default."""
    known = ", ".join(sorted(FEEDS))
    return option(
        default,
        f"feed adapter(s), comma-separated: {known}; {help_tail}",
        env="FEED",
        flag="--feed",
        parse=_names,
    )
