"""Time targets of the runbook: response start (対応時間目標), postmortem (Phase 5), outage length.

Response targets count wall-clock time, nights and holidays included (the on-call engineer covers
them), from the instant work may start: detection, except for a severity whose every notice may
wait for the next business day (P4: Slack 翌営業日可). Reported outside business hours, such an
incident may be worked on from the next business day's 9:00, and its target (P4: 24 h) counts from
then; reported in business hours, work may start at once.

The postmortem is due `postmortem.due_after_hours` (48 h) after recovery. With
`postmortem.align: next_business_day_end` (the default) a due time at night or on a day off moves
to the end of the next business hours (18:00), and a reminder (24 h) outside business hours to the
next business day's start (9:00), so nobody is due or reminded at 3 a.m. or on 元日; with
`wall_clock`, both are recovery + the hours as they are. Results are aware datetimes in the
runbook's time zone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from incident_ops.core.calendar import business_hours_end, ensure_aware, is_business_hours, next_business_start
from incident_ops.core.runbook import SEVERITIES, Runbook

__all__ = [
    "PostmortemSchedule",
    "ResponseWindow",
    "format_duration_ja",
    "outage_duration",
    "postmortem_schedule",
    "postmortem_times",
    "response_deadline",
    "response_may_wait",
    "response_window",
]


@dataclass(frozen=True)
class ResponseWindow:
    """When the response to an incident may start (`work_from`) and must have started (`deadline`).

    `deferred`: work may wait for the next business day (P4 reported outside business hours), so
    `work_from` is later than `detected_at`."""

    severity: str
    detected_at: dt.datetime
    work_from: dt.datetime
    deadline: dt.datetime
    target_minutes: int

    @property
    def deferred(self) -> bool:
        return self.work_from > self.detected_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "detected_at": self.detected_at.isoformat(),
            "work_from": self.work_from.isoformat(),
            "deadline": self.deadline.isoformat(),
            "target_minutes": self.target_minutes,
            "deferred": self.deferred,
        }


@dataclass(frozen=True)
class PostmortemSchedule:
    """Whether a postmortem is required and, if so, when to remind and when it is due.

    `nominal_reminder_at`/`nominal_due_at` are recovery + the hours; `reminder_at`/`due_at` the
    times that count (moved out of nights and days off under `postmortem.align`)."""

    required: bool
    reminder_at: dt.datetime | None
    due_at: dt.datetime | None
    nominal_reminder_at: dt.datetime | None = None
    nominal_due_at: dt.datetime | None = None

    @property
    def due_moved(self) -> bool:
        """The due time is not recovery + due_after_hours (that fell at night or on a day off)."""
        return self.due_at is not None and self.nominal_due_at is not None and self.due_at != self.nominal_due_at

    def to_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "required": self.required,
            "reminder_at": iso(self.reminder_at),
            "due_at": iso(self.due_at),
            "nominal_reminder_at": iso(self.nominal_reminder_at),
            "nominal_due_at": iso(self.nominal_due_at),
            "due_moved": self.due_moved,
        }


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; severities are {', '.join(SEVERITIES)}")


def response_may_wait(runbook: Runbook, severity: str) -> bool:
    """True when every notice of the severity's escalation may wait for the next business day
    (`next_business_day_ok`: P4 翌営業日可): work on it need not start before business hours."""
    _check_severity(severity)
    notices = runbook.escalation.for_severity(severity)
    return bool(notices) and all(notice.next_business_day_ok for notice in notices)


def response_window(runbook: Runbook, severity: str, detected_at: dt.datetime) -> ResponseWindow:
    """From when work may start and by when it must have started (see the module doc)."""
    _check_severity(severity)
    detected = ensure_aware(detected_at, "detected_at").astimezone(runbook.tz)
    work_from = detected
    if response_may_wait(runbook, severity) and not is_business_hours(runbook, detected):
        work_from = next_business_start(runbook, detected).astimezone(runbook.tz)
    minutes = runbook.severities[severity].response_start_minutes
    return ResponseWindow(severity, detected, work_from, work_from + dt.timedelta(minutes=minutes), minutes)


def response_deadline(runbook: Runbook, severity: str, detected_at: dt.datetime) -> dt.datetime:
    """When the response must have started: the severity's response_start_minutes after work may
    start (detection; for P4 outside business hours, the next business day's 9:00)."""
    return response_window(runbook, severity, detected_at).deadline


def postmortem_times(runbook: Runbook, recovered_at: dt.datetime) -> PostmortemSchedule:
    """The reminder and due time after `recovered_at` under the runbook's `postmortem.align`
    (whatever the severity: `postmortem_schedule` decides whether one is required)."""
    recovered = ensure_aware(recovered_at, "recovered_at").astimezone(runbook.tz)
    policy = runbook.postmortem
    reminder = recovered + dt.timedelta(hours=policy.reminder_after_hours)
    due = recovered + dt.timedelta(hours=policy.due_after_hours)
    reminder_at, due_at = reminder, due
    if policy.align == "next_business_day_end":
        # 18:00 sharp is the end of business hours itself: it stays.
        closing = is_business_hours(runbook, due - dt.timedelta(microseconds=1))
        if not is_business_hours(runbook, due) and not closing:
            # The end of the next business hours: a weekday night → that (or the next business)
            # day's 18:00; a day off → the first business day's 18:00.
            due_at = business_hours_end(runbook, due).astimezone(runbook.tz)
        if not is_business_hours(runbook, reminder):
            reminder_at = next_business_start(runbook, reminder).astimezone(runbook.tz)
    return PostmortemSchedule(
        required=True, reminder_at=reminder_at, due_at=due_at, nominal_reminder_at=reminder, nominal_due_at=due
    )


def postmortem_schedule(runbook: Runbook, severity: str, recovered_at: dt.datetime) -> PostmortemSchedule:
    """Reminder and due time after recovery for severities in postmortem.required_for (else not required)."""
    _check_severity(severity)
    times = postmortem_times(runbook, recovered_at)
    if severity not in runbook.postmortem.required_for:
        return PostmortemSchedule(required=False, reminder_at=None, due_at=None)
    return times


def outage_duration(detected_at: dt.datetime, recovered_at: dt.datetime) -> dt.timedelta:
    """Recovered minus detected; ValueError when recovery is before detection."""
    detected = ensure_aware(detected_at, "detected_at")
    recovered = ensure_aware(recovered_at, "recovered_at")
    duration = recovered - detected
    if duration < dt.timedelta(0):
        raise ValueError(f"recovered_at {recovered.isoformat()} is before detected_at {detected.isoformat()}")
    return duration


def format_duration_ja(duration: dt.timedelta) -> str:
    """The recovery template's 障害時間 "X時間Y分" (whole minutes, rounded down)."""
    if duration < dt.timedelta(0):
        raise ValueError(f"duration must not be negative, got {duration}")
    minutes = int(duration.total_seconds()) // 60
    return f"{minutes // 60}時間{minutes % 60}分"
