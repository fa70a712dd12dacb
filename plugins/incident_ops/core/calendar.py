"""The business calendar of the runbook (オンコール体制).

Business hours are 9:00–18:00 (start inclusive, end exclusive) on business days in the calendar's
time zone (Asia/Tokyo). Weekends, Japanese public holidays (the `holidays` package) and the
runbook's `extra_days_off` are days off: dates, date ranges and month-day ranges that come back every
year (年末年始 `12-29..01-03`, wrapping the year end). Every function takes the time as an argument and accepts
only aware datetimes; results are aware datetimes in the calendar's time zone.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from incident_ops.core.runbook import WEEKDAYS, Runbook

__all__ = [
    "business_hours_end",
    "business_hours_start",
    "ensure_aware",
    "extra_day_off_name",
    "is_business_day",
    "is_business_hours",
    "is_day_off",
    "local_date",
    "next_business_start",
    "off_hours_windows",
    "public_holiday_name",
]

# No real calendar has a year without a business day; this bounds the search if a runbook does.
_MAX_SEARCH_DAYS = 400


def ensure_aware(instant: dt.datetime, name: str = "instant") -> dt.datetime:
    """Return `instant` unchanged, or raise ValueError when it has no UTC offset."""
    if not isinstance(instant, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(instant).__name__}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {instant.isoformat()}); add a UTC offset")
    return instant


def _zone(runbook: Runbook) -> ZoneInfo:
    return ZoneInfo(runbook.calendar.timezone)


def _clock(hhmm: str) -> dt.time:
    hours, minutes = hhmm.split(":")
    return dt.time(int(hours), int(minutes))


def _at(runbook: Runbook, day: dt.date, hhmm: str) -> dt.datetime:
    return dt.datetime.combine(day, _clock(hhmm), tzinfo=_zone(runbook))


@lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> holidays.HolidayBase:
    try:
        return holidays.country_holidays(country, years=year)
    except NotImplementedError:
        raise ValueError(f"calendar.public_holidays: unknown country {country!r} for the holidays package") from None


def local_date(runbook: Runbook, day: dt.date | dt.datetime) -> dt.date:
    """The calendar date of `day`: a date as is, an (aware) datetime as its date in the calendar's zone."""
    if isinstance(day, dt.datetime):
        return ensure_aware(day, "day").astimezone(_zone(runbook)).date()
    return day


def public_holiday_name(runbook: Runbook, day: dt.date | dt.datetime) -> str | None:
    """The public holiday's name on `day`, or None (also when the runbook has no holiday country)."""
    country = runbook.calendar.public_holidays
    if not country:
        return None
    date = local_date(runbook, day)
    return _holidays(country, date.year).get(date)


def extra_day_off_name(runbook: Runbook, day: dt.date | dt.datetime) -> str | None:
    """The company day off (calendar.extra_days_off) `day` falls in: its name, `休業日` when it has
    none; None when `day` is not one."""
    date = local_date(runbook, day)
    for entry in runbook.calendar.extra_days_off:
        if entry.contains(date):
            return entry.name or "休業日"
    return None


def is_day_off(runbook: Runbook, day: dt.date | dt.datetime) -> bool:
    """Weekend (not in calendar.business_days), public holiday or one of calendar.extra_days_off."""
    date = local_date(runbook, day)
    if WEEKDAYS[date.weekday()] not in runbook.calendar.business_days:
        return True
    if extra_day_off_name(runbook, date) is not None:
        return True
    return public_holiday_name(runbook, date) is not None


def is_business_day(runbook: Runbook, day: dt.date | dt.datetime) -> bool:
    return not is_day_off(runbook, day)


def business_hours_start(runbook: Runbook, day: dt.date) -> dt.datetime:
    """When business hours begin on the calendar date `day` (whether or not it is a business day)."""
    return _at(runbook, day, runbook.calendar.business_hours.start)


def _business_hours_end_on(runbook: Runbook, day: dt.date) -> dt.datetime:
    return _at(runbook, day, runbook.calendar.business_hours.end)


def is_business_hours(runbook: Runbook, instant: dt.datetime) -> bool:
    """True on a business day from the start (inclusive) to the end (exclusive) of business hours."""
    local = ensure_aware(instant).astimezone(_zone(runbook))
    date = local.date()
    if is_day_off(runbook, date):
        return False
    return business_hours_start(runbook, date) <= local < _business_hours_end_on(runbook, date)


def _next_business_day(runbook: Runbook, date: dt.date) -> dt.date:
    """The first business day on or after `date`."""
    for offset in range(_MAX_SEARCH_DAYS):
        candidate = date + dt.timedelta(days=offset)
        if not is_day_off(runbook, candidate):
            return candidate
    raise ValueError(f"no business day within {_MAX_SEARCH_DAYS} days after {date.isoformat()}; check calendar")


def next_business_start(runbook: Runbook, instant: dt.datetime) -> dt.datetime:
    """`instant` itself inside business hours, otherwise the next instant business hours begin."""
    local = ensure_aware(instant).astimezone(_zone(runbook))
    if is_business_hours(runbook, local):
        return local
    date = local.date()
    if local >= business_hours_start(runbook, date):
        date += dt.timedelta(days=1)
    return business_hours_start(runbook, _next_business_day(runbook, date))


def business_hours_end(runbook: Runbook, instant: dt.datetime) -> dt.datetime:
    """The end of the business hours `instant` is in; outside them, the end of the next business hours."""
    start = next_business_start(runbook, instant)
    return _business_hours_end_on(runbook, start.date())


def off_hours_windows(runbook: Runbook, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The off-hours parts of [start, end) as merged (from, to) windows in the calendar's zone.

    Weekday nights (18:00–9:00) and whole days off join into one window, e.g. Friday 18:00 to
    Monday 9:00, or to Tuesday 9:00 when that Monday is a public holiday.
    """
    zone = _zone(runbook)
    start = ensure_aware(start, "start").astimezone(zone)
    end = ensure_aware(end, "end").astimezone(zone)
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    windows: list[tuple[dt.datetime, dt.datetime]] = []
    cursor = start
    while cursor < end:
        begins = next_business_start(runbook, cursor)
        if begins > cursor:
            windows.append((cursor, min(begins, end)))
        cursor = business_hours_end(runbook, begins) if begins < end else end
    return windows
