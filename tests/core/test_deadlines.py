"""対応時間目標, the postmortem schedule (Phase 5) and the outage duration (障害時間)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.deadlines import (
    PostmortemSchedule,
    format_duration_ja,
    outage_duration,
    postmortem_schedule,
    response_deadline,
)
from incident_ops.core.runbook import Runbook

JST = ZoneInfo("Asia/Tokyo")


def jst(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=JST)


@pytest.mark.parametrize(
    ("severity", "deadline"),
    [
        ("P1", jst(2026, 11, 20, 20, 15)),  # 15分以内
        ("P2", jst(2026, 11, 20, 20, 30)),  # 30分以内
        ("P3", jst(2026, 11, 20, 22, 0)),  # 2時間以内
        ("P4", jst(2026, 11, 21, 20, 0)),  # 24時間以内, weekends included
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
def test_postmortem_due_48h_after_recovery_with_a_reminder_at_24h(runbook: Runbook, severity: str) -> None:
    schedule = postmortem_schedule(runbook, severity, jst(2026, 11, 20, 21, 30))
    assert schedule == PostmortemSchedule(
        required=True, reminder_at=jst(2026, 11, 21, 21, 30), due_at=jst(2026, 11, 22, 21, 30)
    )
    assert schedule.to_dict()["due_at"] == "2026-11-22T21:30:00+09:00"


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
