"""The publisher's health report through Redis: its feeds' health and the state of each carried symbol
that is not live, so edge nodes (which run no feed) say ``down``, ``closed`` or ``halted`` as a single
node would.

``P:health`` (``P`` is ``--broker-prefix``) is a string the publisher sets every :data:`EVERY` seconds
with a TTL of :data:`TTL` seconds, so it vanishes soon after the publisher dies::

    {"publisher": ID,
     "feeds": {NAME: {"up": BOOL, "reason": TEXT, "quiet_s": SECONDS|null, "steady": BOOL}},
     "symbols": {SYMBOL: {"state": STATE, "reason": TEXT}}}

``symbols`` holds only the carried symbols (the nodes' demand and ``--symbols``) that are not live, as
:func:`feeds.states.feed_state` works them out (the rule a single node's status board uses).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from feeds.base import Feed
from feeds.states import feed_down, owner
from ticker.broker import redis_layout as rc
from ticker.directory import Directory
from ticker.status import LIVE, STATES, SymbolStatus
from ticker.symbols import valid_symbol

EVERY = 1.0  # seconds between two reports
TTL = 5  # seconds a report lives: the publisher is taken for dead once it has expired
QUIET_DIGITS = 1  # quiet_s is rounded to tenths


@dataclass(frozen=True, slots=True)
class FeedReport:
    """One publisher feed's health: up (and why not), seconds since its last data, whether it is steady."""

    up: bool
    reason: str = ""
    quiet_s: float | None = None
    steady: bool = False

    def to_json(self) -> dict[str, object]:
        return {"up": self.up, "reason": self.reason, "quiet_s": self.quiet_s, "steady": self.steady}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What ``P:health`` says: the publisher, its feeds and its symbols that are not live."""

    publisher: str
    feeds: Mapping[str, FeedReport] = field(default_factory=dict)
    symbols: Mapping[str, SymbolStatus] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "publisher": self.publisher,
                "feeds": {name: f.to_json() for name, f in self.feeds.items()},
                "symbols": {s: {"state": st.state, "reason": st.reason} for s, st in self.symbols.items()},
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> HealthReport:
        """Raises ``ValueError`` when malformed. Equal states share one :class:`SymbolStatus`."""
        m = rc.json_object(raw, "health report")
        publisher, feeds, symbols = m.get("publisher"), m.get("feeds", {}), m.get("symbols", {})
        if not isinstance(publisher, str) or not isinstance(feeds, dict) or not isinstance(symbols, dict):
            raise ValueError("malformed health report: bad publisher, feeds or symbols")
        return cls(publisher, {str(k): _feed(v) for k, v in feeds.items()}, _symbols(symbols))


def _feed(v: object) -> FeedReport:
    if not isinstance(v, dict):
        raise ValueError("malformed health report: a feed is not an object")
    up, reason, quiet, steady = v.get("up"), v.get("reason", ""), v.get("quiet_s"), v.get("steady", False)
    if not isinstance(up, bool) or not isinstance(reason, str) or not isinstance(steady, bool):
        raise ValueError("malformed health report: bad feed field")
    if quiet is not None and (isinstance(quiet, bool) or not isinstance(quiet, int | float)):
        raise ValueError("malformed health report: bad quiet_s")
    return FeedReport(up, reason, None if quiet is None else float(quiet), steady)


def _symbols(entries: dict[str, object]) -> dict[str, SymbolStatus]:
    shared: dict[tuple[str, str], SymbolStatus] = {}
    out: dict[str, SymbolStatus] = {}
    for symbol, v in entries.items():
        if valid_symbol(symbol) != symbol:
            raise ValueError(f"malformed health report: bad symbol {symbol!r}")
        if not isinstance(v, dict):
            raise ValueError(f"malformed health report: {symbol} is not an object")
        state, reason = v.get("state"), v.get("reason", "")
        if state not in STATES or not isinstance(reason, str):
            raise ValueError(f"malformed health report: bad state of {symbol}")
        if state == LIVE:
            continue
        key = (state, reason)
        st = shared.get(key)
        if st is None:
            st = shared[key] = SymbolStatus(state, reason)
        out[symbol] = st
    return out


def report(
    publisher: str,
    feeds: Iterable[Feed],
    symbols: Iterable[str],
    now: float,
    stale_after: float | None,
    directory: Directory | None = None,
) -> HealthReport:
    """The report of ``publisher`` at monotonic ``now``: each feed's health, and the state of each of
    ``symbols`` that is not live by its feed (:func:`feeds.states.owner`; symbols of no feed are left out)."""
    feeds = list(feeds)
    reports: dict[str, FeedReport] = {}
    down: dict[Feed, SymbolStatus | None] = {}
    for f in feeds:
        h = f.health()
        quiet = None if h.last_data is None else round(max(0.0, now - h.last_data), QUIET_DIGITS)
        reports[f.name] = FeedReport(h.up, h.reason if not h.up else "", quiet, f.steady)
        down[f] = feed_down(f, now, stale_after)
    states: dict[str, SymbolStatus] = {}
    for s in sorted(symbols):
        feed = owner(feeds, s, directory)
        if feed is None:
            continue
        st = down[feed] or feed.symbol_state(s)
        if st is not None and st.state != LIVE:
            states[s] = st
    return HealthReport(publisher, reports, states)
