"""The business calendar: Asia/Tokyo, weekends, Japanese public holidays, 9:00–18:00."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.calendar import (
    business_hours_end,
    ensure_aware,
    extra_day_off_name,
    is_business_day,
    is_business_hours,
    is_day_off,
    next_business_start,
    off_hours_windows,
    public_holiday_name,
)
from incident_ops.core.runbook import Runbook, parse_runbook
from tests.conftest import runbook_data

JST = ZoneInfo("Asia/Tokyo")
UTC = dt.UTC


def jst(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=JST)


def runbook_variant(change: Callable[[dict[str, Any]], None]) -> Runbook:
    data = runbook_data()
    change(data)
    return parse_runbook(data)


@pytest.mark.parametrize(
    ("day", "off"),
    [
        (dt.date(2026, 11, 20), False),  # Friday
        (dt.date(2026, 11, 21), True),  # Saturday
        (dt.date(2026, 11, 22), True),  # Sunday
        (dt.date(2026, 11, 23), True),  # Monday, 勤労感謝の日
        (dt.date(2026, 11, 24), False),  # Tuesday
        (dt.date(2026, 11, 3), True),  # Tuesday, 文化の日
        (dt.date(2026, 12, 28), False),  # Monday, the last business day of 2026
        (dt.date(2026, 12, 29), True),  # Tuesday, 年末年始 (the runbook's 12-29..01-03)
        (dt.date(2026, 12, 31), True),  # Thursday, not a public holiday but 年末年始
        (dt.date(2027, 1, 1), True),  # 元日
        (dt.date(2027, 1, 4), False),  # first business day of 2027
    ],
)
def test_days_off_follow_weekends_and_japanese_holidays(runbook: Runbook, day: dt.date, off: bool) -> None:
    assert is_day_off(runbook, day) is off
    assert is_business_day(runbook, day) is not off


def test_public_holiday_names_come_from_the_holidays_package(runbook: Runbook) -> None:
    assert public_holiday_name(runbook, dt.date(2026, 11, 3)) is not None
    assert public_holiday_name(runbook, dt.date(2026, 11, 23)) is not None
    assert public_holiday_name(runbook, dt.date(2026, 11, 24)) is None


def test_a_datetime_is_judged_by_its_tokyo_date(runbook: Runbook) -> None:
    # 2026-11-23 (a holiday) in UTC is already Tuesday 05:00 in Tokyo.
    assert is_day_off(runbook, dt.datetime(2026, 11, 23, 20, 0, tzinfo=UTC)) is False
    # Sunday 16:00 UTC is Monday 01:00 in Tokyo, still the holiday.
    assert is_day_off(runbook, dt.datetime(2026, 11, 22, 16, 0, tzinfo=UTC)) is True


def test_extra_days_off_close_the_office(runbook: Runbook) -> None:
    closed = runbook_variant(lambda data: data["calendar"].update(extra_days_off=["2026-12-30", "2026-12-31"]))
    open_all_year = runbook_variant(lambda data: data["calendar"].update(extra_days_off=[]))
    assert is_day_off(closed, dt.date(2026, 12, 31)) is True
    assert is_day_off(closed, dt.date(2026, 12, 29)) is False
    assert is_day_off(open_all_year, dt.date(2026, 12, 31)) is False
    assert next_business_start(closed, jst(2026, 12, 29, 18, 0)) == jst(2027, 1, 4, 9, 0)


def test_no_public_holidays_when_the_runbook_names_no_country() -> None:
    plain = runbook_variant(lambda data: data["calendar"].update(public_holidays=None))
    assert is_day_off(plain, dt.date(2026, 11, 23)) is False


def test_an_unknown_holiday_country_is_a_clear_error() -> None:
    odd = runbook_variant(lambda data: data["calendar"].update(public_holidays="XX"))
    with pytest.raises(ValueError, match="calendar.public_holidays"):
        is_day_off(odd, dt.date(2026, 11, 24))


@pytest.mark.parametrize(
    ("instant", "inside"),
    [
        (jst(2026, 11, 24, 8, 59, 59), False),
        (jst(2026, 11, 24, 9, 0, 0), True),
        (jst(2026, 11, 24, 12, 0, 0), True),
        (jst(2026, 11, 24, 17, 59, 59), True),
        (jst(2026, 11, 24, 18, 0, 0), False),
        (jst(2026, 11, 24, 23, 0, 0), False),
        (jst(2026, 11, 21, 12, 0, 0), False),  # Saturday
        (jst(2026, 11, 3, 12, 0, 0), False),  # 文化の日
        (jst(2026, 11, 23, 12, 0, 0), False),  # 勤労感謝の日 (Monday)
        (dt.datetime(2026, 11, 24, 0, 0, tzinfo=UTC), True),  # 09:00 JST
        (dt.datetime(2026, 11, 24, 9, 0, tzinfo=UTC), False),  # 18:00 JST
    ],
)
def test_business_hours_start_inclusive_end_exclusive(runbook: Runbook, instant: dt.datetime, inside: bool) -> None:
    assert is_business_hours(runbook, instant) is inside


def test_naive_datetimes_are_refused(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_business_hours(runbook, dt.datetime(2026, 11, 24, 10, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_business_start(runbook, dt.datetime(2026, 11, 24, 10, 0))
    with pytest.raises(ValueError, match="start"):
        off_hours_windows(runbook, dt.datetime(2026, 11, 24), jst(2026, 11, 25))
    with pytest.raises(ValueError, match="timezone-aware"):
        ensure_aware(dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # Inside business hours: the instant itself.
        (jst(2026, 11, 24, 10, 30), jst(2026, 11, 24, 10, 30)),
        (jst(2026, 11, 24, 9, 0), jst(2026, 11, 24, 9, 0)),
        # Early morning on a business day: 9:00 the same day.
        (jst(2026, 11, 24, 8, 59, 59), jst(2026, 11, 24, 9, 0)),
        # Evening: the next morning.
        (jst(2026, 11, 24, 18, 0), jst(2026, 11, 25, 9, 0)),
        (jst(2026, 11, 24, 17, 59, 59), jst(2026, 11, 24, 17, 59, 59)),
        # Friday evening: Monday.
        (jst(2026, 11, 13, 20, 0), jst(2026, 11, 16, 9, 0)),
        # Friday before a Monday holiday: Tuesday.
        (jst(2026, 11, 20, 20, 0), jst(2026, 11, 24, 9, 0)),
        # On a weekday holiday: the next day.
        (jst(2026, 11, 3, 10, 0), jst(2026, 11, 4, 9, 0)),
        # Year end: 年末年始 12/29–1/3 (元日 is a Friday, then a weekend).
        (jst(2026, 12, 28, 18, 0), jst(2027, 1, 4, 9, 0)),
        (jst(2026, 12, 31, 18, 0), jst(2027, 1, 4, 9, 0)),
        (jst(2027, 1, 1, 12, 0), jst(2027, 1, 4, 9, 0)),
        # UTC input, Tokyo answer (Friday 11:00 UTC = 20:00 JST).
        (dt.datetime(2026, 11, 13, 11, 0, tzinfo=UTC), jst(2026, 11, 16, 9, 0)),
    ],
)
def test_next_business_start(runbook: Runbook, instant: dt.datetime, expected: dt.datetime) -> None:
    result = next_business_start(runbook, instant)
    assert result == expected
    assert result.utcoffset() == dt.timedelta(hours=9)


def test_business_hours_end_is_today_inside_and_the_next_window_outside(runbook: Runbook) -> None:
    assert business_hours_end(runbook, jst(2026, 11, 24, 10, 0)) == jst(2026, 11, 24, 18, 0)
    assert business_hours_end(runbook, jst(2026, 11, 24, 17, 59, 59)) == jst(2026, 11, 24, 18, 0)
    assert business_hours_end(runbook, jst(2026, 11, 24, 18, 0)) == jst(2026, 11, 25, 18, 0)
    assert business_hours_end(runbook, jst(2026, 11, 20, 20, 0)) == jst(2026, 11, 24, 18, 0)


def test_off_hours_windows_merge_nights_weekends_and_holidays(runbook: Runbook) -> None:
    windows = off_hours_windows(runbook, jst(2026, 11, 20, 12, 0), jst(2026, 11, 25, 12, 0))
    assert windows == [
        (jst(2026, 11, 20, 18, 0), jst(2026, 11, 24, 9, 0)),  # Friday night to Tuesday (Monday holiday)
        (jst(2026, 11, 24, 18, 0), jst(2026, 11, 25, 9, 0)),
    ]


def test_off_hours_windows_are_clipped_to_the_range(runbook: Runbook) -> None:
    windows = off_hours_windows(runbook, jst(2026, 11, 24, 7, 0), jst(2026, 11, 24, 20, 0))
    assert windows == [
        (jst(2026, 11, 24, 7, 0), jst(2026, 11, 24, 9, 0)),
        (jst(2026, 11, 24, 18, 0), jst(2026, 11, 24, 20, 0)),
    ]
    assert off_hours_windows(runbook, jst(2026, 11, 24, 10, 0), jst(2026, 11, 24, 17, 0)) == []
    assert off_hours_windows(runbook, jst(2026, 11, 24, 10, 0), jst(2026, 11, 24, 10, 0)) == []


def test_off_hours_windows_over_the_year_end(runbook: Runbook) -> None:
    # 年末年始: from the last business day's 18:00 (Monday 12/28) to 1/4 9:00, one window.
    windows = off_hours_windows(runbook, jst(2026, 12, 28, 12, 0), jst(2027, 1, 4, 12, 0))
    assert windows == [(jst(2026, 12, 28, 18, 0), jst(2027, 1, 4, 9, 0))]


def test_off_hours_windows_refuse_a_backwards_range(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="before start"):
        off_hours_windows(runbook, jst(2026, 11, 25), jst(2026, 11, 24))


def test_holiday_lookups_are_cached_per_country_and_year(runbook: Runbook) -> None:
    from incident_ops.core import calendar

    assert calendar._holidays("JP", 2026) is calendar._holidays("JP", 2026)
    assert calendar._holidays("JP", 2026) is not calendar._holidays("JP", 2027)


# --- company days off: 年末年始 every year, ranges, single dates --------------------------------------


@pytest.mark.parametrize(
    ("instant", "inside", "next_start"),
    [
        (jst(2026, 12, 28, 17, 59), True, jst(2026, 12, 28, 17, 59)),  # the last business hours of 2026
        (jst(2026, 12, 29, 10, 0), False, jst(2027, 1, 4, 9, 0)),  # a Tuesday, 年末年始
        (jst(2026, 12, 30, 9, 0), False, jst(2027, 1, 4, 9, 0)),
        (jst(2027, 1, 3, 23, 59), False, jst(2027, 1, 4, 9, 0)),
        (jst(2027, 1, 4, 9, 0), True, jst(2027, 1, 4, 9, 0)),
        # Another year: 2027-12-29 is a Wednesday, 2028-01-04 a Tuesday.
        (jst(2027, 12, 28, 18, 0), False, jst(2028, 1, 4, 9, 0)),
        (jst(2028, 1, 3, 12, 0), False, jst(2028, 1, 4, 9, 0)),
    ],
)
def test_the_year_end_closure_is_off_every_year(
    runbook: Runbook, instant: dt.datetime, inside: bool, next_start: dt.datetime
) -> None:
    assert is_business_hours(runbook, instant) is inside
    assert next_business_start(runbook, instant) == next_start


def test_day_off_names(runbook: Runbook) -> None:
    assert extra_day_off_name(runbook, dt.date(2026, 12, 30)) == "年末年始"
    assert extra_day_off_name(runbook, jst(2027, 1, 2, 12, 0)) == "年末年始"
    assert extra_day_off_name(runbook, dt.date(2026, 12, 28)) is None
    unnamed = runbook_variant(lambda data: data["calendar"].update(extra_days_off=["08-13..08-15"]))
    assert extra_day_off_name(unnamed, dt.date(2026, 8, 14)) == "休業日"
    assert extra_day_off_name(unnamed, dt.date(2026, 12, 30)) is None


def test_a_summer_closure_and_a_single_day_join_the_weekend(runbook: Runbook) -> None:
    closed = runbook_variant(lambda data: data["calendar"].update(extra_days_off=["08-12..08-14", "2026-05-07"]))
    # Tuesday 8/11 evening → Wednesday–Friday closed → Monday 8/17.
    assert next_business_start(closed, jst(2026, 8, 11, 18, 0)) == jst(2026, 8, 17, 9, 0)
    # Golden Week 2026: 5/6 is a substitute holiday, 5/7 the company's day off → Friday 5/8.
    assert next_business_start(closed, jst(2026, 5, 2, 12, 0)) == jst(2026, 5, 8, 9, 0)
    assert next_business_start(runbook, jst(2026, 5, 2, 12, 0)) == jst(2026, 5, 7, 9, 0)
