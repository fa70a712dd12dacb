"""エスカレーションパス: who is notified, how, and from when, for a severity at an instant.

The table lives in the runbook (`escalation`). `oncall` is the rotation's engineer at that instant
(paged through PagerDuty), `dev_team` is the team's Slack channel, anything else a person from
`contacts.people`. A notice marked `next_business_day_ok` (P4: Slack 翌営業日可) that falls outside
business hours waits until the next business day's 9:00, skipping weekends, public holidays and the
runbook's extra days off (年末年始).

Our addition to the table (`escalation.p3_off_hours_pagerduty`, on by default): a P3 outside business
hours also pages the rotation's engineer through PagerDuty with a low urgency (no phone call), so the
2-hour target has someone on it at night. The notice carries `urgency`; delivery turns it into the
Events API v2 `payload.severity` (low → warning, high → error).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from incident_ops.core.calendar import ensure_aware, is_business_hours, next_business_start
from incident_ops.core.oncall import rotation_engineer
from incident_ops.core.runbook import SEVERITIES, Notice, Person, Runbook

__all__ = [
    "Notification",
    "route",
    "unacknowledged_route",
]


@dataclass(frozen=True)
class Notification:
    """One notice to send. `recipients` is empty for `dev_team`, which goes to `channel`."""

    target: str
    via: str
    not_before: dt.datetime
    recipients: list[dict[str, str | None]] = field(default_factory=list)
    channel: str | None = None
    # The instant the notice was routed at, when it waits for business hours (else None).
    deferred_from: dt.datetime | None = None
    # PagerDuty urgency asked for (the P3 night page: "low"); None = the severity's own.
    urgency: str | None = None

    @property
    def deferred(self) -> bool:
        """True when this notice waits for business hours instead of going out now."""
        return self.deferred_from is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "via": self.via,
            "not_before": self.not_before.isoformat(),
            "recipients": [dict(recipient) for recipient in self.recipients],
            "channel": self.channel,
            "deferred": self.deferred,
            "urgency": self.urgency,
        }


def _recipient(person_id: str, person: Person) -> dict[str, str | None]:
    return {
        "id": person_id,
        "name": person.name,
        "slack_user_id": person.slack_user_id,
        "pagerduty_user_id": person.pagerduty_user_id,
        "email": person.email,
    }


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; severities are {', '.join(SEVERITIES)}")


def _notifications(runbook: Runbook, notices: list[Notice], at: dt.datetime) -> list[Notification]:
    local = ensure_aware(at, "at").astimezone(runbook.tz)
    routed: list[Notification] = []
    for notice in notices:
        not_before, deferred_from = local, None
        if notice.next_business_day_ok and not is_business_hours(runbook, local):
            not_before, deferred_from = next_business_start(runbook, local).astimezone(runbook.tz), local
        if notice.target == "oncall":
            engineer = rotation_engineer(runbook, local)
            recipients, channel = [_recipient(engineer.id, engineer)], None
        elif notice.target == "dev_team":
            recipients, channel = [], runbook.contacts.channels["dev_team"]
        else:
            recipients, channel = [_recipient(notice.target, runbook.person(notice.target))], None
        routed.append(Notification(notice.target, notice.via, not_before, recipients, channel, deferred_from))
    return routed


def _off_hours_page(runbook: Runbook, severity: str, at: dt.datetime, planned: list[Notification]) -> list[Notification]:
    """The P3 night page (`escalation.p3_off_hours_pagerduty`), unless the table already pages the on-call."""
    setting = runbook.escalation.p3_off_hours_pagerduty
    local = ensure_aware(at, "at").astimezone(runbook.tz)
    if severity != "P3" or not setting.enabled or is_business_hours(runbook, local):
        return []
    if any(n.target == "oncall" and n.via == "pagerduty" for n in planned):
        return []
    (page,) = _notifications(runbook, [Notice(target="oncall", via="pagerduty")], local)
    return [replace(page, urgency=setting.urgency)]


def route(runbook: Runbook, severity: str, at: dt.datetime) -> list[Notification]:
    """The notices for a new incident of `severity` detected or declared at `at`: the escalation
    table's, plus the P3 night page outside business hours (see the module doc)."""
    _check_severity(severity)
    planned = _notifications(runbook, runbook.escalation.for_severity(severity), at)
    return planned + _off_hours_page(runbook, severity, at, planned)


def unacknowledged_route(runbook: Runbook, severity: str, at: dt.datetime) -> list[Notification]:
    """The further notices when nobody started the response by the severity's target (`at`)."""
    _check_severity(severity)
    return _notifications(runbook, list(runbook.escalation.unacknowledged.get(severity, [])), at)
