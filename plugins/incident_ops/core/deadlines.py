"""Time targets of the runbook: response start (対応時間目標), postmortem (Phase 5), outage length.

Response targets count wall-clock time from detection, nights and holidays included: the on-call
engineer covers them. Results are aware datetimes in the runbook's time zone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from incident_ops.core.calendar import ensure_aware
from incident_ops.core.runbook import SEVERITIES, Runbook

__all__ = [
    "PostmortemSchedule",
    "format_duration_ja",
    "outage_duration",
    "postmortem_schedule",
    "response_deadline",
]


@dataclass(frozen=True)
class PostmortemSchedule:
    """Whether a postmortem is required and, if so, when to remind and when it is due."""

    required: bool
    reminder_at: dt.datetime | None
    due_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "required": self.required,
            "reminder_at": self.reminder_at.isoformat() if self.reminder_at else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
        }


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; severities are {', '.join(SEVERITIES)}")


def response_deadline(runbook: Runbook, severity: str, detected_at: dt.datetime) -> dt.datetime:
    """When the response must have started: detection + the severity's response_start_minutes."""
    _check_severity(severity)
    detected = ensure_aware(detected_at, "detected_at").astimezone(runbook.tz)
    return detected + dt.timedelta(minutes=runbook.severities[severity].response_start_minutes)


def postmortem_schedule(runbook: Runbook, severity: str, recovered_at: dt.datetime) -> PostmortemSchedule:
    """Reminder and due time after recovery for severities in postmortem.required_for (else not required)."""
    _check_severity(severity)
    recovered = ensure_aware(recovered_at, "recovered_at").astimezone(runbook.tz)
    policy = runbook.postmortem
    if severity not in policy.required_for:
        return PostmortemSchedule(required=False, reminder_at=None, due_at=None)
    return PostmortemSchedule(
        required=True,
        reminder_at=recovered + dt.timedelta(hours=policy.reminder_after_hours),
        due_at=recovered + dt.timedelta(hours=policy.due_after_hours),
    )


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
