"""What the Python peers share: their command line, the fd limit and the simulated market.

Peers run the project's own :class:`feeds.simulated.SimulatedFeed`, so their ticks come at the
same rates and cost the same to produce as ticker's, and fill in the day statistics as ticker's
node does (:class:`ticker.daystats.DayStats`), so their entries carry the same fields.
"""

from __future__ import annotations

import argparse
import resource
from collections.abc import Callable
from typing import Any

import orjson

from feeds.base import FeedContext
from feeds.simulated import SimulatedFeed
from ticker import protocol
from ticker.daystats import DayStats
from ticker.quote import Quote, encode_entry


def parse_args(description: str) -> argparse.Namespace:
    """Parse the peer command line (the subset of ``ticker serve`` flags the harness passes)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--symbols", required=True, help="comma-separated symbol universe")
    ap.add_argument("--sim-rate", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    return ap.parse_args()


def raise_fd_limit() -> None:
    """Raise RLIMIT_NOFILE to its hard limit so thousands of connections fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_subscribe(raw: str | bytes, known: set[str]) -> list[str] | None:
    """Symbols of a ``subscribe`` request restricted to ``known``; None when it is not one."""
    try:
        msg: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, dict) or msg.get("op") != "subscribe" or not isinstance(msg.get("symbols"), list):
        return None
    return [s.upper() for s in msg["symbols"] if isinstance(s, str) and s.upper() in known]


def subscribed_message(symbols: set[str]) -> bytes:
    """The ``subscribed`` acknowledgement for a connection's full symbol set."""
    return orjson.dumps({"type": "subscribed", "symbols": sorted(symbols)})


def make_feed(
    args: argparse.Namespace, on_update: Callable[[str, bytes], None]
) -> tuple[SimulatedFeed, FeedContext]:
    """A simulated feed over ``--symbols`` whose quotes arrive encoded as single-entry quotes messages."""
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    feed = SimulatedFeed(symbols, rate=args.sim_rate, seed=args.seed)
    seq: dict[str, int] = dict.fromkeys(symbols, 0)
    fill_day = DayStats().apply

    def emit(quote: Quote) -> None:
        n = seq.get(quote.symbol, 0) + 1
        seq[quote.symbol] = n
        on_update(quote.symbol, protocol.encode_quotes(protocol.QUOTES, [encode_entry(fill_day(quote), n)]))

    return feed, FeedContext(emit=emit)
