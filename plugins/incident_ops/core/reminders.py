"""Postmortem deadline reminders (Phase 5: ポストモーテム、復旧後24-48時間以内).

For a recovered incident whose severity needs a postmortem (`postmortem.required_for`, P1/P2) and
whose postmortem is not done:

- stage ``reminder`` at recovery + `postmortem.reminder_after_hours` (24 h): a reminder in the
  incident channel and to the owner;
- stage ``overdue`` at the due time (the ledger's `postmortem_due_at`, else recovery +
  `postmortem.due_after_hours`, 48 h): an overdue notice to the owner, escalated to the dev lead.

Both times come from `deadlines.postmortem_times`: with `postmortem.align: next_business_day_end`
a due time at night or on a day off is the next business day's 18:00, and a reminder outside
business hours waits for the next 9:00 (nobody is reminded at 3 a.m. or on 元日).

Each stage is sent at most once: the ledger event with the idempotency key `stage_key(stage)` is
the record. A run that comes after both times sends only the overdue notice (the reminder would be
stale). The owner is whoever acknowledged (started the response), else the rotation's engineer at
detection (the declaration's 対応者). Times are inputs; nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from incident_ops.core.calendar import ensure_aware
from incident_ops.core.deadlines import postmortem_times
from incident_ops.core.handoff import find_person, format_moment, mention, person_dict
from incident_ops.core.messages import Trusted, render, slack_escape
from incident_ops.core.oncall import rotation_engineer
from incident_ops.core.runbook import Runbook

__all__ = [
    "STAGES",
    "DueReminder",
    "current_stage",
    "due_reminders",
    "due_rule_text",
    "owner_of",
    "postmortem_required",
    "render_reminder",
    "reminder_overview",
    "stage_key",
    "stage_times",
]

Stage = Literal["reminder", "overdue"]
Mentions = Literal["slack", "plain"]
STAGES: tuple[Stage, ...] = ("reminder", "overdue")
_EVENT_KINDS = {"reminder": "postmortem_reminder", "overdue": "postmortem_overdue"}


def _aware(value: Any, what: str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ensure_aware(value, what)


def stage_key(stage: str) -> str:
    """The ledger event's idempotency key (and kind) of a stage: one per incident and stage."""
    if stage not in STAGES:
        raise ValueError(f"unknown reminder stage {stage!r}; stages are {', '.join(STAGES)}")
    return _EVENT_KINDS[stage]


def postmortem_required(runbook: Runbook, severity: str) -> bool:
    return severity in runbook.postmortem.required_for


def stage_times(runbook: Runbook, incident: Mapping[str, Any]) -> dict[Stage, dt.datetime]:
    """When each stage is due for a recovered incident (in the runbook's zone)."""
    times = postmortem_times(runbook, _aware(incident["recovered_at"], "recovered_at"))
    due = incident.get("postmortem_due_at")
    overdue = _aware(due, "postmortem_due_at").astimezone(runbook.tz) if due else times.due_at
    assert times.reminder_at is not None and overdue is not None
    return {"reminder": times.reminder_at, "overdue": overdue}


def _pending(runbook: Runbook, incident: Mapping[str, Any]) -> bool:
    return (
        incident.get("status") == "recovered"
        and incident.get("recovered_at") is not None
        and incident.get("postmortem_done_at") is None
        and postmortem_required(runbook, str(incident.get("severity")))
    )


def current_stage(runbook: Runbook, incident: Mapping[str, Any], at: dt.datetime) -> Stage | None:
    """The latest stage reached at `at` (None before the reminder time, or when nothing is owed)."""
    if not _pending(runbook, incident):
        return None
    at = ensure_aware(at, "at")
    reached = [stage for stage, when in stage_times(runbook, incident).items() if when <= at]
    return reached[-1] if reached else None


def owner_of(runbook: Runbook, incident: Mapping[str, Any]) -> dict[str, Any]:
    """Who owns the postmortem: the person who acknowledged (when the runbook knows them), else the
    rotation's engineer at detection. `source` says which; `acknowledged_by` keeps the raw name."""
    by = incident.get("acknowledged_by")
    if by:
        person = find_person(runbook, ref=str(by))
        if person is not None:
            return {**person, "source": "acknowledged"}
    engineer = person_dict(rotation_engineer(runbook, _aware(incident["detected_at"], "detected_at")))
    return {**engineer, "source": "rotation", "acknowledged_by": by}


@dataclass(frozen=True)
class DueReminder:
    """A stage to send now for one incident."""

    incident_id: str
    stage: Stage
    stage_at: dt.datetime
    severity: str
    title: str
    recovered_at: dt.datetime
    due_at: dt.datetime
    channel: str | None
    channel_id: str | None
    owner: dict[str, Any]
    draft: str | None

    @property
    def key(self) -> str:
        return stage_key(self.stage)

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "stage": self.stage,
            "stage_at": self.stage_at.isoformat(),
            "severity": self.severity,
            "title": self.title,
            "recovered_at": self.recovered_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "channel": self.channel,
            "channel_id": self.channel_id,
            "owner": {k: self.owner.get(k) for k in ("id", "name", "slack_user_id", "source")},
            "key": self.key,
        }


def _due(runbook: Runbook, incident: Mapping[str, Any], stage: Stage) -> DueReminder:
    times = stage_times(runbook, incident)
    channel = incident.get("slack_channel")
    return DueReminder(
        incident_id=str(incident["id"]),
        stage=stage,
        stage_at=times[stage],
        severity=str(incident["severity"]),
        title=str(incident.get("title") or incident.get("symptom") or incident["id"]),
        recovered_at=_aware(incident["recovered_at"], "recovered_at").astimezone(runbook.tz),
        due_at=times["overdue"],
        channel=str(channel).lstrip("#") if channel else None,
        channel_id=incident.get("slack_channel_id"),
        owner=owner_of(runbook, incident),
        draft=incident.get("postmortem_path"),
    )


def due_reminders(
    runbook: Runbook,
    incidents: Iterable[Mapping[str, Any]],
    at: dt.datetime,
    sent: Mapping[str, Collection[str]],
) -> list[DueReminder]:
    """The stages to send at `at`: per incident the latest stage reached, unless its key is in
    `sent[incident_id]` (the idempotency keys of the incident's ledger events). Earliest first."""
    due = []
    for incident in incidents:
        stage = current_stage(runbook, incident, at)
        if stage is None or stage_key(stage) in sent.get(str(incident["id"]), ()):
            continue
        due.append(_due(runbook, incident, stage))
    return sorted(due, key=lambda item: (item.stage_at, item.incident_id))


def reminder_overview(
    runbook: Runbook,
    incidents: Iterable[Mapping[str, Any]],
    at: dt.datetime,
    sent: Mapping[str, Collection[str]],
) -> list[dict[str, Any]]:
    """Every pending postmortem with its stage times, what was sent, and what is due at `at`."""
    rows = []
    for incident in incidents:
        if not _pending(runbook, incident):
            continue
        times = stage_times(runbook, incident)
        keys = sent.get(str(incident["id"]), ())
        stage = current_stage(runbook, incident, at)
        rows.append(
            {
                "incident_id": incident["id"],
                "severity": incident["severity"],
                "recovered_at": _aware(incident["recovered_at"], "recovered_at").astimezone(runbook.tz).isoformat(),
                "reminder_at": times["reminder"].isoformat(),
                "due_at": times["overdue"].isoformat(),
                "sent": [s for s in STAGES if stage_key(s) in keys],
                "stage_now": stage,
                "due_now": stage if stage is not None and stage_key(stage) not in keys else None,
                "owner": owner_of(runbook, incident).get("id") or owner_of(runbook, incident).get("name"),
            }
        )
    return rows


def _channel_ref(reminder: DueReminder, mentions: Mentions) -> str:
    if not reminder.channel:
        return "—"
    if mentions == "slack" and reminder.channel_id:
        return Trusted(f"<#{reminder.channel_id}|{slack_escape(reminder.channel)}>")
    return f"#{reminder.channel}"


def _hours(value: float) -> str:
    return f"{value:g}"


def render_reminder(
    runbook: Runbook, reminder: DueReminder, at: dt.datetime, *, mentions: Mentions = "slack"
) -> str:
    """The text of a stage: `reminder.txt.j2` (24 h) or `overdue.txt.j2` (48 h, to the dev lead too)."""
    at = ensure_aware(at, "at")
    lead = runbook.contacts.people.get("dev_lead")
    lead_person = person_dict(lead, "dev_lead") if lead else None
    overdue_for = at - reminder.due_at
    context = {
        "owner": mention(reminder.owner, mentions),
        "lead": mention(lead_person, mentions) if lead_person else "",
        "incident_id": reminder.incident_id,
        "severity": reminder.severity,
        "title": " ".join(str(reminder.title).split()),  # escaped by the template
        "recovered": format_moment(runbook, reminder.recovered_at),
        "due": format_moment(runbook, reminder.due_at),
        "due_rule": due_rule_text(runbook, reminder.recovered_at, reminder.due_at),
        "reminder_hours": _hours(runbook.postmortem.reminder_after_hours),
        "due_hours": _hours(runbook.postmortem.due_after_hours),
        "overdue_by": _duration(overdue_for) if overdue_for > dt.timedelta(0) else "",
        "channel": _channel_ref(reminder, mentions),
        "draft": reminder.draft or "",
        "sections": "、".join(runbook.postmortem.sections),
    }
    name = "reminder.txt.j2" if reminder.stage == "reminder" else "overdue.txt.j2"
    return render(name, plain=mentions == "plain", **context).rstrip("\n")


def due_rule_text(runbook: Runbook, recovered_at: dt.datetime, due_at: dt.datetime) -> str:
    """Why the due time is what it is: `復旧から48時間以内`, or when recovery + 48 h fell outside
    business hours, `復旧から48時間後（12/05(土) 21:30）が業務時間外のため翌営業日の終業時刻`."""
    hours = _hours(runbook.postmortem.due_after_hours)
    nominal = postmortem_times(runbook, recovered_at).nominal_due_at
    assert nominal is not None
    if _aware(due_at, "due_at") == nominal:
        return f"復旧から{hours}時間以内"
    return f"復旧から{hours}時間後（{format_moment(runbook, nominal)}）が業務時間外のため翌営業日の終業時刻"


def _duration(value: dt.timedelta) -> str:
    minutes = int(value.total_seconds()) // 60
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours}時間{rest}分"
    return f"{hours}時間" if hours else f"{rest}分"
