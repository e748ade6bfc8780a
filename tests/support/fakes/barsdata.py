"""Bars for the provider fakes' history endpoints: one deterministic series per symbol and bar length.

:func:`fake_bars` makes a bar at every multiple of ``ms`` (days: every New York midnight, weekdays only, as
US equities' day bars are stamped) in a range, except every :data:`GAP_EVERY`-th interval, which has no
trades (providers publish no bar for it; Yahoo a row of nulls). Prices follow the bar's start, so any two
requests agree on a bar. :func:`expected` is what an adapter must return for a range.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from feeds.sessions import new_york
from ticker.bars import Bar

DAY_MS = 86_400_000
GAP_EVERY = 7  # every 7th interval has no trades
MAX_BARS = 200_000  # bars one request may make at most (a runaway range is cut)


def _starts(ms: int, start_ms: int, end_ms: int, *, ny_days: bool) -> list[int]:
    if ms == DAY_MS and ny_days:
        zone = new_york()
        day = datetime.fromtimestamp(start_ms / 1000, zone).date()
        out: list[int] = []
        while len(out) < MAX_BARS:
            t = int(datetime.combine(day, datetime.min.time(), zone).timestamp() * 1000)
            if t >= end_ms:
                break
            if t >= start_ms and day.weekday() < 5:
                out.append(t)
            day += timedelta(days=1)
        return out
    first = -(-start_ms // ms) * ms
    return list(range(first, end_ms, ms))[:MAX_BARS]


def has_bar(t: int, ms: int) -> bool:
    """Whether the interval starting at ``t`` had trades."""
    return (t // ms) % GAP_EVERY != GAP_EVERY - 1


def bar_at(symbol: str, t: int, ms: int) -> Bar:
    """The bar of ``symbol`` starting at ``t`` (prices in cents, a base per symbol)."""
    base = 50 + zlib.crc32(symbol.encode()) % 400
    k = (t // ms) % 97
    o = round(base + k * 0.05, 2)
    c = round(o + (0.07 if k % 2 else -0.04), 2)
    return Bar(t, o, round(max(o, c) + 0.03, 2), round(min(o, c) - 0.02, 2), c, float(1000 + k * 10))


def fake_bars(symbol: str, ms: int, start_ms: int, end_ms: int, *, ny_days: bool = True) -> list[Bar]:
    """The bars of ``symbol`` of length ``ms`` starting in ``[start_ms, end_ms)``, oldest first."""
    return [bar_at(symbol, t, ms) for t in _starts(ms, start_ms, end_ms, ny_days=ny_days) if has_bar(t, ms)]


def gaps(symbol: str, ms: int, start_ms: int, end_ms: int, *, ny_days: bool = True) -> list[int]:
    """The starts in ``[start_ms, end_ms)`` without a bar."""
    return [t for t in _starts(ms, start_ms, end_ms, ny_days=ny_days) if not has_bar(t, ms)]


def expected(symbol: str, ms: int, start_ms: int, end_ms: int, *, ny_days: bool = True) -> list[Bar]:
    """What ``load_history`` must return for the range (the same as :func:`fake_bars`)."""
    return fake_bars(symbol, ms, start_ms, end_ms, ny_days=ny_days)
