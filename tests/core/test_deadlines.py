"""対応時間目標, the postmortem schedule (Phase 5) and the outage duration (障害時間)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.deadlines import (
    PostmortemSchedule,
    format_duration_ja,
    outage_duration,
    postmortem_schedule,
    postmortem_times,
    response_deadline,
    response_may_wait,
    response_window,
)
from incident_ops.core.runbook import Runbook, parse_runbook
from tests.conftest import runbook_data

JST = ZoneInfo("Asia/Tokyo")


def jst(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=JST)


def runbook_variant(change: Callable[[dict[str, Any]], None]) -> Runbook:
    data = runbook_data()
    change(data)
    return parse_runbook(data)


@pytest.mark.parametrize(
    ("severity", "deadline"),
    [
        ("P1", jst(2026, 11, 20, 20, 15)),  # 15分以内
        ("P2", jst(2026, 11, 20, 20, 30)),  # 30分以内
        ("P3", jst(2026, 11, 20, 22, 0)),  # 2時間以内
        # 24時間以内 from the next business day's 9:00 (翌営業日可): Friday night, Monday 11/23 is
        # 勤労感謝の日, so work may start Tuesday 9:00 and must have started by Wednesday 9:00.
        ("P4", jst(2026, 11, 25, 9, 0)),
    ],
)
def test_response_start_targets(runbook: Runbook, severity: str, deadline: dt.datetime) -> None:
    assert response_deadline(runbook, severity, jst(2026, 11, 20, 20, 0)) == deadline


def test_response_deadline_is_in_tokyo_time(runbook: Runbook) -> None:
    deadline = response_deadline(runbook, "P1", dt.datetime(2026, 11, 20, 11, 0, tzinfo=dt.UTC))
    assert deadline.isoformat() == "2026-11-20T20:15:00+09:00"


def test_response_deadline_refuses_bad_input(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="unknown severity"):
        response_deadline(runbook, "P0", jst(2026, 11, 20, 20, 0))
    with pytest.raises(ValueError, match="detected_at must be timezone-aware"):
        response_deadline(runbook, "P1", dt.datetime(2026, 11, 20, 20, 0))


@pytest.mark.parametrize("severity", ["P1", "P2"])
def test_postmortem_due_48h_after_recovery_with_a_reminder_at_24h(severity: str) -> None:
    runbook = runbook_variant(lambda data: data["postmortem"].update(align="wall_clock"))
    schedule = postmortem_schedule(runbook, severity, jst(2026, 11, 20, 21, 30))
    assert schedule == PostmortemSchedule(
        required=True, reminder_at=jst(2026, 11, 21, 21, 30), due_at=jst(2026, 11, 22, 21, 30),
        nominal_reminder_at=jst(2026, 11, 21, 21, 30), nominal_due_at=jst(2026, 11, 22, 21, 30),
    )
    assert schedule.to_dict()["due_at"] == "2026-11-22T21:30:00+09:00"
    assert not schedule.due_moved


@pytest.mark.parametrize("severity", ["P3", "P4"])
def test_no_postmortem_required_for_lower_severities(runbook: Runbook, severity: str) -> None:
    schedule = postmortem_schedule(runbook, severity, jst(2026, 11, 20, 21, 30))
    assert schedule == PostmortemSchedule(required=False, reminder_at=None, due_at=None)


def test_postmortem_schedule_refuses_bad_input(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="unknown severity"):
        postmortem_schedule(runbook, "high", jst(2026, 11, 20, 21, 30))
    with pytest.raises(ValueError, match="recovered_at"):
        postmortem_schedule(runbook, "P1", dt.datetime(2026, 11, 20, 21, 30))


def test_outage_duration() -> None:
    assert outage_duration(jst(2026, 11, 20, 20, 0), jst(2026, 11, 20, 21, 23)) == dt.timedelta(hours=1, minutes=23)
    assert outage_duration(jst(2026, 11, 20, 20, 0), jst(2026, 11, 20, 20, 0)) == dt.timedelta(0)
    # Offsets may differ: 11:00 UTC is 20:00 JST.
    assert outage_duration(jst(2026, 11, 20, 20, 0), dt.datetime(2026, 11, 20, 11, 30, tzinfo=dt.UTC)) == dt.timedelta(
        minutes=30
    )


def test_outage_duration_refuses_recovery_before_detection() -> None:
    with pytest.raises(ValueError, match="before detected_at"):
        outage_duration(jst(2026, 11, 20, 20, 0), jst(2026, 11, 20, 19, 59))
    with pytest.raises(ValueError, match="timezone-aware"):
        outage_duration(dt.datetime(2026, 11, 20, 20, 0), jst(2026, 11, 20, 21, 0))


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (dt.timedelta(0), "0時間0分"),
        (dt.timedelta(hours=1, minutes=23, seconds=59), "1時間23分"),
        (dt.timedelta(days=1, hours=2, minutes=5), "26時間5分"),
    ],
)
def test_duration_in_the_recovery_template_format(duration: dt.timedelta, text: str) -> None:
    assert format_duration_ja(duration) == text


def test_negative_durations_have_no_text() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration_ja(dt.timedelta(minutes=-1))


# --- P4 翌営業日可: from when work may start, by when it must have started ---------------------------


@pytest.mark.parametrize(
    ("detected", "work_from", "deadline"),
    [
        # Friday 12/04 18:30: work from Monday 9:00, target 24 h later (not Saturday 18:30).
        (jst(2026, 12, 4, 18, 30), jst(2026, 12, 7, 9, 0), jst(2026, 12, 8, 9, 0)),
        # Sunday night.
        (jst(2026, 11, 29, 23, 0), jst(2026, 11, 30, 9, 0), jst(2026, 12, 1, 9, 0)),
        # Weekday early morning: the same day's 9:00.
        (jst(2026, 12, 1, 6, 0), jst(2026, 12, 1, 9, 0), jst(2026, 12, 2, 9, 0)),
        # Friday before a public holiday Monday (11/23 勤労感謝の日): Tuesday.
        (jst(2026, 11, 20, 18, 0), jst(2026, 11, 24, 9, 0), jst(2026, 11, 25, 9, 0)),
        # Year end: the last business day's evening, then 年末年始 12/29–1/3 and a weekend.
        (jst(2026, 12, 28, 19, 0), jst(2027, 1, 4, 9, 0), jst(2027, 1, 5, 9, 0)),
        (jst(2027, 1, 1, 10, 0), jst(2027, 1, 4, 9, 0), jst(2027, 1, 5, 9, 0)),
        # Golden Week 2027: 5/3–5/5 are holidays (Mon–Wed), Thursday is a business day.
        (jst(2027, 5, 1, 12, 0), jst(2027, 5, 6, 9, 0), jst(2027, 5, 7, 9, 0)),
        # In business hours: work may start at once, 24 h from detection.
        (jst(2026, 12, 1, 14, 0), jst(2026, 12, 1, 14, 0), jst(2026, 12, 2, 14, 0)),
        (jst(2026, 12, 4, 17, 59), jst(2026, 12, 4, 17, 59), jst(2026, 12, 5, 17, 59)),
        # UTC in, Tokyo out: Friday 09:30 UTC = 18:30 JST.
        (dt.datetime(2026, 12, 4, 9, 30, tzinfo=dt.UTC), jst(2026, 12, 7, 9, 0), jst(2026, 12, 8, 9, 0)),
    ],
)
def test_p4_counts_its_24_hours_from_the_next_business_day(
    runbook: Runbook, detected: dt.datetime, work_from: dt.datetime, deadline: dt.datetime
) -> None:
    window = response_window(runbook, "P4", detected)
    assert (window.work_from, window.deadline) == (work_from, deadline)
    assert window.deferred is (work_from != detected)
    assert window.deadline.utcoffset() == dt.timedelta(hours=9)
    assert response_deadline(runbook, "P4", detected) == deadline


@pytest.mark.parametrize("severity", ["P1", "P2", "P3"])
def test_other_severities_start_at_detection_even_at_night(runbook: Runbook, severity: str) -> None:
    window = response_window(runbook, severity, jst(2026, 12, 4, 18, 30))
    assert window.work_from == jst(2026, 12, 4, 18, 30) and not window.deferred
    assert not response_may_wait(runbook, severity)
    assert response_may_wait(runbook, "P4")


def test_response_window_as_json(runbook: Runbook) -> None:
    assert response_window(runbook, "P4", jst(2026, 12, 4, 18, 30)).to_dict() == {
        "severity": "P4",
        "detected_at": "2026-12-04T18:30:00+09:00",
        "work_from": "2026-12-07T09:00:00+09:00",
        "deadline": "2026-12-08T09:00:00+09:00",
        "target_minutes": 1440,
        "deferred": True,
    }


def test_p4_waits_only_when_every_notice_may_wait() -> None:
    paged = runbook_variant(lambda data: data["escalation"]["P4"].append({"target": "oncall", "via": "pagerduty"}))
    window = response_window(paged, "P4", jst(2026, 12, 4, 18, 30))
    assert not window.deferred and window.deadline == jst(2026, 12, 5, 18, 30)


# --- the postmortem due time, moved out of nights and days off -----------------------------------------


@pytest.mark.parametrize(
    ("recovered", "reminder", "due"),
    [
        # Tuesday 10:00: 24 h and 48 h later are in business hours, nothing moves.
        (jst(2026, 12, 1, 10, 0), jst(2026, 12, 2, 10, 0), jst(2026, 12, 3, 10, 0)),
        # Friday evening: Saturday 20:00 and Sunday 20:00 → Monday 9:00 and Monday 18:00.
        (jst(2026, 12, 4, 20, 0), jst(2026, 12, 7, 9, 0), jst(2026, 12, 7, 18, 0)),
        # Sunday night: Monday 23:00 is a night (reminder Tuesday 9:00), Tuesday 23:00 → Wednesday 18:00.
        (jst(2026, 12, 6, 23, 0), jst(2026, 12, 8, 9, 0), jst(2026, 12, 9, 18, 0)),
        # Weekday 03:00 at night: Thursday 03:00 → Thursday 18:00 (the same day's end of business hours).
        (jst(2026, 12, 1, 3, 0), jst(2026, 12, 2, 9, 0), jst(2026, 12, 3, 18, 0)),
        # Due at 18:00 sharp is the end of business hours: it stays.
        (jst(2026, 12, 1, 18, 0), jst(2026, 12, 3, 9, 0), jst(2026, 12, 3, 18, 0)),
        # Friday before 勤労感謝の日 (Mon 11/23): the first business day is Tuesday.
        (jst(2026, 11, 20, 21, 30), jst(2026, 11, 24, 9, 0), jst(2026, 11, 24, 18, 0)),
        # Year end: recovered on the last business day, due inside 年末年始 → 1/4 (Mon) 18:00.
        (jst(2026, 12, 28, 15, 0), jst(2027, 1, 4, 9, 0), jst(2027, 1, 4, 18, 0)),
        # Golden Week 2027: recovered Friday 4/30 → Thursday 5/6.
        (jst(2027, 4, 30, 12, 0), jst(2027, 5, 6, 9, 0), jst(2027, 5, 6, 18, 0)),
    ],
)
def test_postmortem_due_moves_to_the_next_business_day_end(
    runbook: Runbook, recovered: dt.datetime, reminder: dt.datetime, due: dt.datetime
) -> None:
    schedule = postmortem_schedule(runbook, "P1", recovered)
    assert (schedule.reminder_at, schedule.due_at) == (reminder, due)
    assert schedule.nominal_due_at == recovered + dt.timedelta(hours=48)
    assert schedule.due_moved is (due != recovered + dt.timedelta(hours=48))
    assert schedule.reminder_at < schedule.due_at
    assert schedule.due_at.utcoffset() == dt.timedelta(hours=9)


def test_wall_clock_keeps_recovery_plus_the_hours() -> None:
    runbook = runbook_variant(lambda data: data["postmortem"].update(align="wall_clock"))
    schedule = postmortem_schedule(runbook, "P2", jst(2026, 12, 4, 20, 0))
    assert (schedule.reminder_at, schedule.due_at) == (jst(2026, 12, 5, 20, 0), jst(2026, 12, 6, 20, 0))


def test_postmortem_times_for_any_severity(runbook: Runbook) -> None:
    assert postmortem_times(runbook, jst(2026, 12, 4, 20, 0)).due_at == jst(2026, 12, 7, 18, 0)
    assert postmortem_schedule(runbook, "P3", jst(2026, 12, 4, 20, 0)).due_at is None
