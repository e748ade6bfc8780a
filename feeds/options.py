"""What the feed factories take: every ``--feed-*``, ``--replay-*``, ``--poll-*`` and provider flag, typed.

The flags are declared here once (default, help, ``TICKER_*`` twin), so the command line can list
them without importing any adapter; :mod:`feeds.registry` declares ``--feed`` and hands a
:class:`FeedOptions` to the one factory a ``--feed`` name picks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ticker.errors import InvalidSymbol, OptionError
from ticker.options import option, positive
from ticker.symbols import DEFAULT_UNIVERSE, parse_symbol_list

ADAPTERS = "feed adapters"  # the --help heading of the adapter flags
ALPACA_SOURCES = ("iex", "sip")
ALPACA_IEX_LIMIT = 30  # symbols the free iex plan streams at once
SIM_SESSIONS = ("always", "us-equities")  # --sim-session: when the simulated market trades


def symbol_list(text: str) -> list[str]:
    """A comma-separated list of at least one valid symbol, upper-cased."""
    try:
        symbols = parse_symbol_list(text)
    except InvalidSymbol as exc:
        raise OptionError(str(exc)) from None
    if not symbols:
        raise OptionError("needs at least one symbol")
    return symbols


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """Options of the feed adapters; each factory reads the ones it needs."""

    symbols: list[str] = option(
        list(DEFAULT_UNIVERSE),
        "comma-separated symbols (default: about 30 US tickers)",
        env="SYMBOLS",
        parse=symbol_list,
    )
    sim_rate: float = option(
        2.0, "simulated ticks per second per symbol (2)", env="SIM_RATE", parse=positive(float)
    )
    sim_session: str = option(
        "always",
        "simulated market hours: always (default) or us-equities (09:30-16:00 New York time on NYSE trading days)",
        env="SIM_SESSION",
        choices=SIM_SESSIONS,
    )
    seed: int | None = option(None, "seed of the simulated market", env="SEED", parse=int)
    feed_url: str | None = option(
        None,
        "endpoint of the upstream provider (a sandbox, a proxy, a local fake); default: the provider's own",
        env="FEED_URL",
        group=ADAPTERS,
    )
    reconnect_base: float = option(
        0.5,
        "first reconnect delay ceiling in seconds (exponential backoff, full jitter)",
        env="RECONNECT_BASE",
        parse=float,
        group=ADAPTERS,
    )
    reconnect_cap: float = option(
        30.0, "largest reconnect delay ceiling in seconds", env="RECONNECT_CAP", parse=float, group=ADAPTERS
    )
    feed_silence: float = option(
        30.0,
        "seconds without data or heartbeat after which an upstream counts as dead and is reconnected",
        env="FEED_SILENCE",
        parse=float,
        group=ADAPTERS,
    )
    feed_linger: float = option(
        5.0,
        "seconds a symbol stays subscribed upstream after its last client left",
        env="FEED_LINGER",
        parse=float,
        group=ADAPTERS,
    )
    finnhub_max_symbols: int = option(
        50,
        "finnhub: most symbols subscribed at once (the plan's limit; 0 = no limit), default 50",
        env="FINNHUB_MAX_SYMBOLS",
        parse=int,
        group=ADAPTERS,
    )
    alpaca_feed: str = option(
        "iex",
        "alpaca: data feed, iex (free, default) or sip (all exchanges, paid plan)",
        env="ALPACA_FEED",
        choices=ALPACA_SOURCES,
        group=ADAPTERS,
    )
    alpaca_max_symbols: int = option(
        0,
        f"alpaca: most symbols subscribed at once (default {ALPACA_IEX_LIMIT} on iex, no limit on sip)",
        env="ALPACA_MAX_SYMBOLS",
        parse=int,
        group=ADAPTERS,
    )
    binance_streams: str = option(
        "ticker,trade",
        "binance: streams per symbol, from ticker,bookTicker,trade (default ticker,trade)",
        env="BINANCE_STREAMS",
        group=ADAPTERS,
    )
    poll_interval: float | None = option(
        None,
        "polled feeds (finnhub-rest, yahoo): seconds between polls of each demanded symbol "
        "(default: finnhub-rest 1, yahoo 5)",
        env="POLL_INTERVAL",
        parse=float,
        group=ADAPTERS,
    )
    poll_rate: float | None = option(
        None,
        "polled feeds: most requests per second (default: finnhub-rest 1 = the free plan's 60/min, "
        "never above Finnhub's 30/s; yahoo 0.5)",
        env="POLL_RATE",
        parse=float,
        group=ADAPTERS,
    )
    replay_file: str | None = option(
        None,
        "replay: recording to play (JSON Lines, optionally gzipped); default: the bundled sample",
        env="REPLAY_FILE",
        group=ADAPTERS,
    )
    replay_speed: float = option(
        1.0,
        "replay: 1 = real time, 10 = ten times faster, 0 = as fast as possible",
        env="REPLAY_SPEED",
        parse=float,
        group=ADAPTERS,
    )
    replay_loop: bool = option(
        False, "replay: start over at the end of the file", env="REPLAY_LOOP", group=ADAPTERS
    )
    replay_keep_time: bool = option(
        False,
        "replay: keep the recorded timestamps (default: rewrite them to the time of replay)",
        env="REPLAY_KEEP_TIME",
        group=ADAPTERS,
    )

    def stream_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every streaming feed (:class:`~feeds.streaming.engine.StreamFeed`) takes."""
        return {
            "url": self.feed_url,
            "reconnect_base": self.reconnect_base,
            "reconnect_cap": self.reconnect_cap,
            "silence": self.feed_silence,
            "linger": self.feed_linger,
        }

    def poll_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of a polled feed; unset interval and rate keep the feed's own defaults."""
        kwargs: dict[str, Any] = {
            "url": self.feed_url,
            "backoff_base": self.reconnect_base,
            "backoff_cap": self.reconnect_cap,
        }
        if self.poll_interval is not None:
            kwargs["interval"] = self.poll_interval
        if self.poll_rate is not None:
            kwargs["rate"] = self.poll_rate
        return kwargs
