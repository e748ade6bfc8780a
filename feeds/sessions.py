"""Trading sessions (pure): when US equities trade, for the simulated market's ``--sim-session us-equities``.

Regular hours are 09:30–16:00 America/New_York, Monday to Friday, except the NYSE's full-day
holidays of :data:`NYSE_HOLIDAYS` (2025–2027; later years know weekends only). Early closes
(13:00 on some eves) are not modelled. Every function takes an aware :class:`~datetime.datetime`
in any zone and answers in New York time.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

OPEN = time(9, 30)
CLOSE = time(16, 0)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not strftime's %a, which follows the locale

#: NYSE full-day closures (the exchange's published holiday calendar, observed dates).
NYSE_HOLIDAYS: dict[date, str] = {
    date(2025, 1, 1): "New Year's Day",
    date(2025, 1, 9): "the National Day of Mourning for President Carter",
    date(2025, 1, 20): "Martin Luther King, Jr. Day",
    date(2025, 2, 17): "Washington's Birthday",
    date(2025, 4, 18): "Good Friday",
    date(2025, 5, 26): "Memorial Day",
    date(2025, 6, 19): "Juneteenth",
    date(2025, 7, 4): "Independence Day",
    date(2025, 9, 1): "Labor Day",
    date(2025, 11, 27): "Thanksgiving Day",
    date(2025, 12, 25): "Christmas Day",
    date(2026, 1, 1): "New Year's Day",
    date(2026, 1, 19): "Martin Luther King, Jr. Day",
    date(2026, 2, 16): "Washington's Birthday",
    date(2026, 4, 3): "Good Friday",
    date(2026, 5, 25): "Memorial Day",
    date(2026, 6, 19): "Juneteenth",
    date(2026, 7, 3): "Independence Day",
    date(2026, 9, 7): "Labor Day",
    date(2026, 11, 26): "Thanksgiving Day",
    date(2026, 12, 25): "Christmas Day",
    date(2027, 1, 1): "New Year's Day",
    date(2027, 1, 18): "Martin Luther King, Jr. Day",
    date(2027, 2, 15): "Washington's Birthday",
    date(2027, 3, 26): "Good Friday",
    date(2027, 5, 31): "Memorial Day",
    date(2027, 6, 18): "Juneteenth",
    date(2027, 7, 5): "Independence Day",
    date(2027, 9, 6): "Labor Day",
    date(2027, 11, 25): "Thanksgiving Day",
    date(2027, 12, 24): "Christmas Day",
}


@functools.cache
def new_york() -> ZoneInfo:
    """America/New_York; ``ValueError`` where the system has no time zone database (``pip install tzdata``)."""
    try:
        return ZoneInfo("America/New_York")
    except ZoneInfoNotFoundError:
        raise ValueError("no time zone database for America/New_York (install the tzdata package)") from None


def _ny(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("a session time needs a time zone")
    return at.astimezone(new_york())


def trading_day(day: date) -> bool:
    """Whether US equities trade on ``day`` (a weekday that is no NYSE holiday)."""
    return day.weekday() < 5 and day not in NYSE_HOLIDAYS


def _on(day: date, moment: time) -> datetime:
    return datetime.combine(day, moment, new_york())


def _next(at: datetime, moment: time) -> datetime:
    """The first ``moment`` (:data:`OPEN` or :data:`CLOSE`) of a trading day after ``at``."""
    ny = _ny(at)
    day = ny.date()
    if ny >= _on(day, moment):
        day += timedelta(days=1)
    while not trading_day(day):
        day += timedelta(days=1)
    return _on(day, moment)


def us_equities_open(at: datetime) -> bool:
    """Whether US equities are in regular trading hours at ``at``."""
    ny = _ny(at)
    return trading_day(ny.date()) and OPEN <= ny.time() < CLOSE


def next_open(at: datetime) -> datetime:
    """The first session open after ``at`` (New York time); during a session, the next day's."""
    return _next(at, OPEN)


def next_close(at: datetime) -> datetime:
    """The first session close after ``at`` (New York time): today's during a session."""
    return _next(at, CLOSE)


def last_close(at: datetime) -> datetime:
    """The latest session close at or before ``at`` (New York time)."""
    ny = _ny(at)
    day = ny.date()
    if ny < _on(day, CLOSE):
        day -= timedelta(days=1)
    while not trading_day(day):
        day -= timedelta(days=1)
    return _on(day, CLOSE)


def closed_reason(at: datetime) -> str:
    """Words for a closed market at ``at``: ``US market closed; opens Mon 09:30 ET`` (naming a holiday)."""
    ny = _ny(at)
    opens = next_open(ny)
    when = f"{_WEEKDAYS[opens.weekday()]} {opens:%H:%M}"
    if opens - ny >= timedelta(days=6):  # a week away or more: say the date too
        when = f"{_WEEKDAYS[opens.weekday()]} {opens:%Y-%m-%d %H:%M}"
    holiday = NYSE_HOLIDAYS.get(ny.date())
    closed = f"US market closed for {holiday}" if holiday else "US market closed"
    return f"{closed}; opens {when} ET"
