"""The simulated market's history (pure, deterministic): bars of the sessions before the live simulation.

A symbol's history ends where its live simulation starts (:class:`HistoryAnchor`: the instant its
simulation was made, its first price, its previous close and its session volume so far), so the chart
joins the live bars without a jump:

- **1m**: the current session (or, while the market is closed, the last one) from its start up to the
  anchor's minute (exclusive: the live bars start there), its last close the anchor's price, and the whole
  session before, closing at the anchor's previous close. Each session's minute path is an
  Ornstein-Uhlenbeck deviation (per-minute step as large as the live simulation's, reverting so a day
  ranges a few percent) around the straight line from the session's open to its close, pinned at both
  ends; the current session's volumes add up to the anchor's session volume.
- **5m** and **1h**: those minute bars aggregated (the bucket holding the anchor is partial).
- **1d**: up to :data:`~ticker.bars.HISTORY` days back (a year and more): the two sessions above from their
  minute bars, older ones from a daily walk back from the previous close (seeded gaps and returns).
- **1s**: none (only the live market has seconds).

Everything is drawn from random streams seeded by ``(key, symbol's anchor day)``: the same seed, symbol
and anchor give the same bars. Cost: about 2 µs per 1m bar (see tests/unit/test_simhistory.py).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from feeds.sessions import CLOSE, OPEN, last_close, new_york, trading_day, us_equities_open
from ticker.bars import DAY, INTERVALS, Bar, DayStart

MINUTE_MS = 60_000
#: Intraday deviation of the log price from a session's open-to-close line (its stationary SD).
INTRADAY_SD = 0.01
#: Standard deviation of a day's log return, and of its opening gap from the previous close.
DAY_RETURN_SD = 0.02
GAP_SD = 0.005
#: Sessions with minute bars: the current (or last) one and the one before.
MINUTE_SESSIONS = 2

_NEXT_DAY_MS = 36 * 3_600_000  # from a day's start: past the longest day, short of the next one's end


@dataclass(frozen=True, slots=True)
class HistoryAnchor:
    """Where a symbol's history ends: the minute ``ms`` its live simulation started, its first ``price``,
    ``prev_close`` and session ``volume`` so far, on a ``tick`` grid (a later ``ms`` in that minute makes
    the same history)."""

    ms: int
    price: float
    prev_close: float
    volume: float
    tick: float = 0.01


@dataclass(frozen=True, slots=True)
class SimSession:
    """One trading session ``[open_ms, close_ms)``; ``day_ms`` is its day's start (the 1d bar's ``t``)."""

    day_ms: int
    open_ms: int
    close_ms: int


#: The ``count`` sessions up to an instant, newest first (the one holding it, or the last before it, first).
Calendar = Callable[[int, int], list[SimSession]]


def round_the_clock(day_start: DayStart) -> Calendar:
    """Session ``always``: each day (by ``day_start``) is a session, midnight to midnight."""

    def sessions(at_ms: int, count: int) -> list[SimSession]:
        out: list[SimSession] = []
        start = day_start(at_ms)
        end = day_start(start + _NEXT_DAY_MS)
        for _ in range(count):
            out.append(SimSession(start, start, end))
            start, end = day_start(start - 1), start
        return out

    return sessions


def _ms(at: datetime) -> int:
    return int(at.timestamp()) * 1000


def us_equities(at_ms: int, count: int) -> list[SimSession]:
    """Session ``us-equities``: regular hours of the trading days, the one in progress (or the last) first."""
    zone = new_york()
    at = datetime.fromtimestamp(at_ms / 1000, UTC)
    day = at.astimezone(zone).date() if us_equities_open(at) else last_close(at).date()
    out: list[SimSession] = []
    for _ in range(count):
        out.append(
            SimSession(
                _ms(datetime.combine(day, time(), zone)),
                _ms(datetime.combine(day, OPEN, zone)),
                _ms(datetime.combine(day, CLOSE, zone)),
            )
        )
        day = _previous_trading_day(day)
    return out


def _previous_trading_day(day: date) -> date:
    day -= timedelta(days=1)
    while not trading_day(day):
        day -= timedelta(days=1)
    return day


def _rng(key: str, *parts: object) -> random.Random:
    digest = hashlib.sha256(":".join([key, *map(str, parts)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def minute_sigma(rate: float, volatility: float) -> float:
    """The live simulation's per-minute log-price step: ``volatility`` per tick at ``rate`` ticks a second."""
    return volatility * math.sqrt(max(1.0, 60.0 * rate))


class SimulatedHistory:
    """A symbol's generated bars, ending at ``anchor`` (see the module docstring): the minute bars at once,
    the day bars on the first ask for them."""

    __slots__ = ("_close", "_days", "_later", "_prev", "_volume", "_walk", "anchor", "minutes")

    def __init__(self, key: str, anchor: HistoryAnchor, sessions: Sequence[SimSession], sigma: float) -> None:
        self.anchor = anchor
        scale = round(1 / anchor.tick)
        end_ms = anchor.ms - anchor.ms % MINUTE_MS  # the live bars start at the anchor's minute
        walk = self._walk = _rng(key, "days", end_ms)
        close = round(anchor.price * scale)
        prev = anchor.prev_close
        volume = self._volume = max(anchor.volume, 100.0)
        self.minutes: list[Bar] = []  # oldest first
        days: list[Bar] = []  # newest first until read
        for k, session in enumerate(sessions[:MINUTE_SESSIONS]):
            gap, ret, noise = walk.gauss(0.0, GAP_SD), walk.gauss(0.0, DAY_RETURN_SD), walk.gauss(0.0, 0.3)
            if k:  # the close before the previous session's is walked back from it
                prev = close / scale * math.exp(-ret)
            n = (min(session.close_ms, end_ms) - session.open_ms) // MINUTE_MS
            if n > 0:
                total = volume if k == 0 else volume * math.exp(noise)
                rng = _rng(key, "minutes", session.day_ms, end_ms)
                open_ = max(1, round(prev * math.exp(gap) * scale))
                bars = _minute_bars(rng, session.open_ms, n, open_, close, sigma, total, scale)
                self.minutes[:0] = bars
                days.append(_day_of(session.day_ms, bars))
            close = max(1, round(prev * scale))
        self._days = days
        self._close = close / scale  # where the walk of the older days starts from
        self._prev = prev
        self._later: Sequence[SimSession] | None = sessions[MINUTE_SESSIONS:]

    @property
    def days(self) -> list[Bar]:
        """The day bars, oldest first."""
        if self._later is not None:
            self._walk_days(self._later)
            self._later = None
            self._days.reverse()
        return self._days

    def _walk_days(self, sessions: Sequence[SimSession]) -> None:
        """The days before the minute sessions, walked back from the last one's previous close."""
        walk = self._walk
        tick = self.anchor.tick
        digits = max(0, round(-math.log10(tick)))
        close = self._close
        exp = math.exp
        for session in sessions:
            gap, ret, noise = walk.gauss(0.0, GAP_SD), walk.gauss(0.0, DAY_RETURN_SD), walk.gauss(0.0, 0.3)
            prev = close * exp(-ret)
            o = _on_grid(prev * exp(gap), tick, digits)
            c = _on_grid(close, tick, digits)
            hi = _on_grid(max(o, c) * exp(walk.random() * INTRADAY_SD), tick, digits)
            lo = _on_grid(min(o, c) * exp(-walk.random() * INTRADAY_SD), tick, digits)
            self._days.append(Bar(session.day_ms, o, hi, lo, c, int(round(self._volume * exp(noise), -2))))
            close = prev

    def bars(self, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Fresh bars at ``interval`` starting in ``[start_ms, end_ms)``, oldest first; None for ``1s``."""
        if interval == DAY:
            source = self.days
        elif interval == "1m":
            source = self.minutes
        elif interval in INTERVALS and INTERVALS[interval] > MINUTE_MS:
            return aggregate(self.minutes, INTERVALS[interval], start_ms, end_ms)
        else:
            return None
        return [Bar(b.t, b.o, b.h, b.l, b.c, b.v) for b in source if start_ms <= b.t < end_ms]


def _on_grid(price: float, tick: float, digits: int) -> float:
    return round(max(tick, round(price / tick) * tick), digits)


def _minute_bars(
    rng: random.Random,
    t0: int,
    n: int,
    open_: int,
    close: int,
    sigma: float,
    volume: float,
    scale: int,
) -> list[Bar]:
    """``n`` minute bars from ``t0``, from ``open_`` to ``close`` (in ticks, ``scale`` a unit), ``volume`` in all."""
    phi = math.sqrt(max(0.0, 1.0 - (sigma / INTRADAY_SD) ** 2))  # mean reversion keeping the day's range
    gauss = rng.gauss
    rand = rng.random
    exp = math.exp
    a = math.log(open_)
    xs = [0.0] * (n + 1)
    x = 0.0
    for i in range(1, n + 1):
        x = phi * x + sigma * gauss(0.0, 1.0)
        xs[i] = x
    slope = (math.log(close) - a - x) / n  # pins the path's end at the close
    weights = [0.3 + rand() for _ in range(n)]
    per = volume / sum(weights)
    wick = sigma * 0.5
    bars: list[Bar] = []
    append = bars.append
    o = open_
    for i in range(1, n):
        c = int(exp(a + xs[i] + slope * i) + 0.5) or 1
        hi, lo = (o, c) if o > c else (c, o)
        hi += int(hi * wick * rand())
        lo = lo - int(lo * wick * rand()) or 1
        append(Bar(t0, o / scale, hi / scale, lo / scale, c / scale, int(round(per * weights[i - 1], -2))))
        t0 += MINUTE_MS
        o = c
    hi, lo = (o, close) if o > close else (close, o)
    hi += int(hi * wick * rand())
    lo = lo - int(lo * wick * rand()) or 1
    append(Bar(t0, o / scale, hi / scale, lo / scale, close / scale, int(round(per * weights[-1], -2))))
    return bars


def _day_of(day_ms: int, minutes: list[Bar]) -> Bar:
    return Bar(
        day_ms,
        minutes[0].o,
        max(b.h for b in minutes),
        min(b.l for b in minutes),
        minutes[-1].c,
        sum(b.v for b in minutes),
    )


def aggregate(minutes: list[Bar], ms: int, start_ms: int, end_ms: int) -> list[Bar]:
    """Minute bars (oldest first) merged into bars of ``ms`` aligned to the epoch, starting in ``[start_ms, end_ms)``."""
    out: list[Bar] = []
    cur: Bar | None = None
    for b in minutes:
        t = b.t - b.t % ms
        if t < start_ms or t >= end_ms:
            continue
        if cur is not None and cur.t == t:
            if b.h > cur.h:
                cur.h = b.h
            if b.l < cur.l:
                cur.l = b.l
            cur.c = b.c
            cur.v += b.v
        else:
            cur = Bar(t, b.o, b.h, b.l, b.c, b.v)
            out.append(cur)
    return out
