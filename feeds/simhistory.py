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
and anchor give the same bars, whatever is asked first. Each part is made when first asked: the day bars
of a recent range (what a node asks of a newly demanded symbol) cost the two minute sessions' draws
without their bar objects (about 1 µs a minute) and the older days walked back only as far as the range
goes; the minute bars about 2 µs each.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Sequence
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
_TWOPI = 2.0 * math.pi  # as random.gauss has it


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


@dataclass(frozen=True, slots=True)
class _MinuteSession:
    """What makes one session's minute bars: ``n`` minutes from ``open_ms``, from ``open_`` to ``close`` (in
    ticks), ``volume`` shares in all."""

    day_ms: int
    open_ms: int
    n: int
    open_: int
    close: int
    volume: float


class SimulatedHistory:
    """A symbol's generated bars, ending at ``anchor`` (see the module docstring), each part made at the
    first ask for it: the minute bars (``1m``, ``5m``, ``1h``); the day bars of the minute sessions (their
    summary, without the minute bars); the older day bars, walked back only as far as asked (on from where
    the last ask stopped: the same bars whatever order and ranges are asked)."""

    __slots__ = (
        "_close",
        "_end_ms",
        "_key",
        "_later",
        "_minutes",
        "_older",
        "_plans",
        "_recent",
        "_scale",
        "_sigma",
        "_volume",
        "_walk",
        "anchor",
    )

    def __init__(self, key: str, anchor: HistoryAnchor, sessions: Sequence[SimSession], sigma: float) -> None:
        self.anchor = anchor
        self._key = key
        self._sigma = sigma
        scale = self._scale = round(1 / anchor.tick)
        end_ms = self._end_ms = (
            anchor.ms - anchor.ms % MINUTE_MS
        )  # the live bars start at the anchor's minute
        walk = self._walk = _rng(key, "days", end_ms)
        close = round(anchor.price * scale)
        prev = anchor.prev_close
        volume = self._volume = max(anchor.volume, 100.0)
        plans: list[_MinuteSession] = []  # newest first
        for k, session in enumerate(sessions[:MINUTE_SESSIONS]):
            gap, ret, noise = walk.gauss(0.0, GAP_SD), walk.gauss(0.0, DAY_RETURN_SD), walk.gauss(0.0, 0.3)
            if k:  # the close before the previous session's is walked back from it
                prev = close / scale * math.exp(-ret)
            n = (min(session.close_ms, end_ms) - session.open_ms) // MINUTE_MS
            if n > 0:
                total = volume if k == 0 else volume * math.exp(noise)
                open_ = max(1, round(prev * math.exp(gap) * scale))
                plans.append(_MinuteSession(session.day_ms, session.open_ms, n, open_, close, total))
            close = max(1, round(prev * scale))
        self._plans = plans
        self._minutes: list[Bar] | None = None  # oldest first
        self._recent: list[Bar] | None = None  # the minute sessions' day bars, newest first
        self._older: list[Bar] = []  # the older day bars walked so far, newest first
        self._close = close / scale  # where the walk of the older days goes on from
        self._later: Sequence[SimSession] = sessions[MINUTE_SESSIONS:]

    @property
    def minutes(self) -> list[Bar]:
        """The minute bars, oldest first."""
        if self._minutes is None:
            minutes: list[Bar] = []
            days: list[Bar] = []
            for plan in reversed(self._plans):
                days.append(self._session(plan, minutes))
            self._minutes = minutes
            if self._recent is None:
                self._recent = days[::-1]
        return self._minutes

    @property
    def days(self) -> list[Bar]:
        """The day bars, oldest first (all of them walked)."""
        return self._days_from(-math.inf)

    def _days_from(self, start_ms: float) -> list[Bar]:
        """The day bars oldest first, from the first starting at ``start_ms`` or later (older ones may follow
        walked before)."""
        self._walk_back(start_ms)
        if self._recent is None:
            self._recent = [self._session(plan, None) for plan in self._plans]
        return [*reversed(self._older), *reversed(self._recent)]

    def _session(self, plan: _MinuteSession, out: list[Bar] | None) -> Bar:
        """The day bar of a minute session (its minute bars appended to ``out`` when given)."""
        rng = _rng(self._key, "minutes", plan.day_ms, self._end_ms)
        scale = self._scale
        hi, lo, volume = _minute_path(
            rng, plan.open_ms, plan.n, plan.open_, plan.close, self._sigma, plan.volume, scale, out
        )
        return Bar(plan.day_ms, plan.open_ / scale, hi / scale, lo / scale, plan.close / scale, volume)

    def _walk_back(self, start_ms: float) -> None:
        """Walk the days before the minute sessions back from the last one's previous close, on from where the
        last walk stopped, down to the first starting before ``start_ms``."""
        later = self._later
        first = len(self._older)
        last = first
        while last < len(later) and later[last].day_ms >= start_ms:
            last += 1
        if last == first:
            return
        walk = self._walk
        tick = self.anchor.tick
        digits = max(0, round(-math.log10(tick)))
        close = self._close
        exp = math.exp
        volume = self._volume
        append = self._older.append
        for k in range(first, last):
            gap, ret, noise = walk.gauss(0.0, GAP_SD), walk.gauss(0.0, DAY_RETURN_SD), walk.gauss(0.0, 0.3)
            prev = close * exp(-ret)
            o = _on_grid(prev * exp(gap), tick, digits)
            c = _on_grid(close, tick, digits)
            hi = _on_grid(max(o, c) * exp(walk.random() * INTRADAY_SD), tick, digits)
            lo = _on_grid(min(o, c) * exp(-walk.random() * INTRADAY_SD), tick, digits)
            append(Bar(later[k].day_ms, o, hi, lo, c, int(round(volume * exp(noise), -2))))
            close = prev
        self._close = close

    def bars(self, interval: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        """Fresh bars at ``interval`` starting in ``[start_ms, end_ms)``, oldest first; None for ``1s``."""
        if interval == DAY:
            source = self._days_from(start_ms)
        elif interval == "1m":
            source = self.minutes
        elif interval in INTERVALS and INTERVALS[interval] > MINUTE_MS:
            return aggregate(self.minutes, INTERVALS[interval], start_ms, end_ms)
        else:
            return None
        return [Bar(b.t, b.o, b.h, b.l, b.c, b.v) for b in source if start_ms <= b.t < end_ms]


def hundreds(values: Iterable[float]) -> list[int]:
    """``int(round(v, -2))`` of each of ``values`` (non-negative, below 2**53): to the nearest 100, ties to
    even, in half the time (``v % 100`` and ``v - v % 100`` are exact)."""
    return [
        int(v - (r := v % 100.0)) + (100 if r > 50.0 or (r == 50.0 and (v - r) % 200.0) else 0)
        for v in values
    ]


def _on_grid(price: float, tick: float, digits: int) -> float:
    return round(max(tick, round(price / tick) * tick), digits)


def _minute_path(
    rng: random.Random,
    t0: int,
    n: int,
    open_: int,
    close: int,
    sigma: float,
    volume: float,
    scale: int,
    out: list[Bar] | None,
) -> tuple[int, int, int]:
    """``n`` minute bars from ``t0``, from ``open_`` to ``close`` (in ticks, ``scale`` a unit), ``volume`` in
    all, appended to ``out`` when given; their high and low (in ticks) and their volume.

    The normal draws are :meth:`random.Random.gauss`'s (pairs of them from two uniforms), inlined: the same
    numbers from the same seed (tests/unit/test_simhistory.py checks it), at a fraction of the cost."""
    phi = math.sqrt(max(0.0, 1.0 - (sigma / INTRADAY_SD) ** 2))  # mean reversion keeping the day's range
    rand = rng.random
    exp, log, sqrt, cos, sin = math.exp, math.log, math.sqrt, math.cos, math.sin
    pairs = 2 * ((n + 1) // 2)  # uniforms of the normal draws; an odd n leaves one normal unused
    u = [rand() for _ in range(pairs + 3 * n)]  # then a weight and two wicks a minute, in this order
    xs = [0.0]
    push = xs.append
    x = 0.0
    for j in range(0, pairs, 2):
        angle = u[j] * _TWOPI
        radius = sqrt(-2.0 * log(1.0 - u[j + 1]))
        x = phi * x + sigma * (cos(angle) * radius)
        push(x)
        x = phi * x + sigma * (sin(angle) * radius)
        push(x)
    x = xs[n]
    a = math.log(open_)
    slope = (log(close) - a - x) / n  # pins the path's end at the close
    weights = [0.3 + w for w in u[pairs : pairs + n]]
    per = volume / sum(weights)
    wick = sigma * 0.5
    closes = [int(exp(a + xs[i] + slope * i) + 0.5) or 1 for i in range(1, n)]
    closes.append(close)
    opens = [open_, *closes[:-1]]
    highs = [h + int(h * wick * r) for h, r in zip(map(max, opens, closes), u[pairs + n :: 2], strict=True)]
    lows = [
        lo - int(lo * wick * r) or 1
        for lo, r in zip(map(min, opens, closes), u[pairs + n + 1 :: 2], strict=True)
    ]
    volumes = hundreds(map(per.__mul__, weights))
    if out is not None:
        out += [
            Bar(t0 + k * MINUTE_MS, o / scale, h / scale, lo / scale, c / scale, v)
            for k, (o, h, lo, c, v) in enumerate(zip(opens, highs, lows, closes, volumes, strict=True))
        ]
    return max(highs), min(lows), sum(volumes)


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
