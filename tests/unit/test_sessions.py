"""US equity regular hours: weekdays, weekends, the edges of the day, DST changes, NYSE holidays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from feeds.sessions import (
    NYSE_HOLIDAYS,
    closed_reason,
    last_close,
    new_york,
    next_close,
    next_open,
    trading_day,
    us_equities_open,
)


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=new_york())


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_a_weekday_is_open_from_0930_to_1600_new_york_time() -> None:
    # Tuesday 2026-03-10
    assert not us_equities_open(ny(2026, 3, 10, 9, 29, 59))
    assert us_equities_open(ny(2026, 3, 10, 9, 30))
    assert us_equities_open(ny(2026, 3, 10, 12, 0))
    assert us_equities_open(ny(2026, 3, 10, 15, 59, 59))
    assert not us_equities_open(ny(2026, 3, 10, 16, 0))
    assert not us_equities_open(ny(2026, 3, 10, 20, 0))
    assert not us_equities_open(ny(2026, 3, 10, 3, 0))


def test_any_time_zone_is_read_as_new_york_time() -> None:
    tokyo = timezone(timedelta(hours=9))
    # 23:30 in Tokyo on Tuesday 2026-03-10 is 10:30 EDT the same day
    assert us_equities_open(datetime(2026, 3, 10, 23, 30, tzinfo=tokyo))
    assert not us_equities_open(datetime(2026, 3, 10, 12, 0, tzinfo=tokyo))  # 23:00 on Monday in New York
    with pytest.raises(ValueError, match="time zone"):
        us_equities_open(datetime(2026, 3, 10, 12, 0))


def test_the_weekend_is_closed_and_opens_on_monday() -> None:
    saturday = ny(2026, 3, 14, 12, 0)
    assert not us_equities_open(saturday)
    assert not us_equities_open(ny(2026, 3, 15, 12, 0))
    assert next_open(saturday) == ny(2026, 3, 16, 9, 30)
    assert last_close(saturday) == ny(2026, 3, 13, 16, 0)
    assert closed_reason(saturday) == "US market closed; opens Mon 09:30 ET"
    assert next_open(ny(2026, 3, 13, 16, 0)) == ny(2026, 3, 16, 9, 30)  # Friday's close


def test_next_open_next_close_and_last_close_around_the_day() -> None:
    before, during, after = ny(2026, 3, 10, 8, 0), ny(2026, 3, 10, 11, 0), ny(2026, 3, 10, 20, 0)
    assert next_open(before) == ny(2026, 3, 10, 9, 30)
    assert next_open(during) == ny(2026, 3, 11, 9, 30)
    assert next_open(after) == ny(2026, 3, 11, 9, 30)
    assert next_close(before) == next_close(during) == ny(2026, 3, 10, 16, 0)
    assert next_close(after) == ny(2026, 3, 11, 16, 0)
    assert last_close(before) == last_close(during) == ny(2026, 3, 9, 16, 0)
    assert last_close(ny(2026, 3, 10, 16, 0)) == ny(2026, 3, 10, 16, 0)
    assert closed_reason(after) == "US market closed; opens Wed 09:30 ET"
    assert closed_reason(before) == "US market closed; opens Tue 09:30 ET"


def test_daylight_saving_changes_move_the_session_in_utc() -> None:
    # DST starts on Sunday 2026-03-08: the open is 14:30 UTC on Friday, 13:30 UTC on Monday
    assert not us_equities_open(utc(2026, 3, 6, 14, 29))
    assert us_equities_open(utc(2026, 3, 6, 14, 30))
    assert us_equities_open(utc(2026, 3, 9, 13, 30))
    assert next_open(utc(2026, 3, 7, 12, 0)) == utc(2026, 3, 9, 13, 30)
    # DST ends on Sunday 2026-11-01: Friday closes at 20:00 UTC, Monday opens at 14:30 UTC
    assert us_equities_open(utc(2026, 10, 30, 19, 59))
    assert not us_equities_open(utc(2026, 10, 30, 20, 0))
    assert next_open(utc(2026, 10, 31, 12, 0)) == utc(2026, 11, 2, 14, 30)
    assert not us_equities_open(utc(2026, 11, 2, 14, 0))
    assert last_close(utc(2026, 11, 2, 12, 0)) == utc(2026, 10, 30, 20, 0)


def test_holidays_are_closed_all_day() -> None:
    good_friday = ny(2026, 4, 3, 11, 0)
    assert not trading_day(good_friday.date())
    assert not us_equities_open(good_friday)
    assert next_open(good_friday) == ny(2026, 4, 6, 9, 30)
    assert closed_reason(good_friday) == "US market closed for Good Friday; opens Mon 09:30 ET"
    # Thanksgiving (Thursday 2026-11-26): Wednesday evening's next open is Friday
    assert next_open(ny(2026, 11, 25, 17, 0)) == ny(2026, 11, 27, 9, 30)
    # Christmas 2027 falls on a Saturday, observed on Friday the 24th: Thursday's close → Monday 27th
    assert next_open(ny(2027, 12, 23, 16, 30)) == ny(2027, 12, 27, 9, 30)
    assert last_close(ny(2027, 12, 27, 9, 0)) == ny(2027, 12, 23, 16, 0)
    # Juneteenth 2027 (a Saturday) is observed on Friday the 18th
    assert not us_equities_open(ny(2027, 6, 18, 10, 0))


def test_the_holiday_table_holds_weekdays_of_2025_to_2027() -> None:
    assert {d.year for d in NYSE_HOLIDAYS} == {2025, 2026, 2027}
    assert all(d.weekday() < 5 for d in NYSE_HOLIDAYS)
    assert sum(d.year == 2026 for d in NYSE_HOLIDAYS) == 10
    assert trading_day(ny(2026, 12, 24, 12, 0).date())  # Christmas Eve trades (an early close, not modelled)
