"""A higher severity for an open incident: the `incident_escalate` DAG's task bodies (Airflow adapter).

The webhook intake joins a report of a higher severity to the open incident (the ledger raises the
severity, never lowers it) and triggers `incident_escalate` once per (incident, severity). Its run
waits until the incident's own run has sent its first notices (`first_notice_sent`), then
`raise_severity` tells the new level's escalation path what the first notices did not:

- every notice of the new severity's route that was not already delivered (same target and
  channel) — e.g. P2 → P1 adds the CTO's phone call; P3 → P1 pages the on-call and phones the CTO;
- PagerDuty again (same dedup key = the incident id: PagerDuty updates the alert, no new page);
- a note in the incident channel, and the declaration (P1/P2 template) when the incident was not
  declared yet, with the same idempotency keys the DAG's own declaration uses (never twice).

Everything carries idempotency keys derived from the incident id and the severity, so a retried task
or a second trigger repeats nothing. The notices go out exactly once per channel and target
(`flows.incident.deliver_once`): while a required one (`core.notices.required_notices`: the page and
the phone call) has not gone out, the task records a `failure` event and fails, and its retry sends
only what failed; `escalated` is recorded once every required notice went out.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from incident_ops.core import messages, narrative
from incident_ops.core.deadlines import response_deadline
from incident_ops.core.escalation import route
from incident_ops.core.handoff import format_moment
from incident_ops.core.ledger import OPEN_STATUSES, Ledger
from incident_ops.core.oncall import rotation_engineer
from incident_ops.core.phrases import phrase
from incident_ops.core.triage import severity_rank

__all__ = ["first_notice_sent", "raise_severity"]

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def first_notice_sent(incident_id: str) -> bool:
    """True once the incident's run has notified (or tried to: an attempt whose required notice
    failed counts, so a raise is not held up by a PagerDuty outage) and opened its channel, or the
    incident is closed."""
    ledger = Ledger()
    record = ledger.get(incident_id)
    if record["status"] not in OPEN_STATUSES:
        return True
    events = ledger.events(incident_id)
    kinds = {event["kind"] for event in events}
    tried = any(event["kind"] == "failure" and (event.get("data") or {}).get("step") == "notified" for event in events)
    return ("notified" in kinds or tried) and bool(kinds & {"declared", "channel_opened"})


def _label(runbook: Any, symptom: str | None) -> str:
    if not symptom:
        return "-"
    try:
        return runbook.symptom(symptom).label
    except KeyError:
        return symptom


def raise_severity(incident_id: str, severity: str) -> dict[str, Any]:
    """Raise the incident to `severity` (if it is higher) and notify the new level; see the module doc."""
    from incident_ops.core.notices import page_summary, required_notices
    from incident_ops.flows.incident import deliver_once, load, record_not_reached, services_for

    severity_rank(severity)  # ValueError for anything but P1-P4
    runbook = load()
    ledger = Ledger()
    now = _now()
    record = ledger.get(incident_id)
    if record["status"] not in OPEN_STATUSES:
        return {"escalated": False, "reason": f"the incident is {record['status']}"}
    current = record["severity"]
    if severity_rank(severity) < severity_rank(current):
        # Triggered by hand (not through a webhook join, where the ledger already raised it).
        record = ledger.update(incident_id, now, severity=severity)
        ledger.record_event(incident_id, at=now, kind="severity_raised", actor="incident_ops",
                            message=phrase("event.severity_raised", plain=True, previous=current, target=severity),
                            data={"from": current, "to": severity}, idempotency_key=f"severity_raised:{severity}")
    target = record["severity"]
    key = f"raised:{target}"
    events = ledger.events(incident_id)
    for event in events:
        if event.get("idempotency_key") == key:
            return {**(event.get("data") or {}), "escalated": True, "already_done": True}
    previous = next((e["data"]["from"] for e in reversed(events)
                     if e["kind"] == "severity_raised" and (e.get("data") or {}).get("to") == target), current)
    if previous == target:
        return {"escalated": False, "reason": f"the incident is already {target}"}

    delivered = {
        (result.get("target"), result.get("via"))
        for event in events if event["kind"] in ("notified", "escalated", "failure")
        for result in (event.get("data") or {}).get("results", []) if result.get("ok")
    }
    level = runbook.severities[target]
    detected_at = record["detected_at"]
    deadline = response_deadline(runbook, target, detected_at)
    symptom = _label(runbook, record.get("symptom"))
    # Slack text: what came from outside (the symptom, the service) is escaped, as in the templates.
    text = messages.render(
        "severity_raised.txt.j2", previous=previous, target=target, level_name=level.name, symptom=symptom,
        incident_id=incident_id, environment=record.get("environment") or "", service=record.get("service") or "",
        deadline=format_moment(runbook, deadline),
    ).rstrip("\n")
    notices = []
    for notification in route(runbook, target, now):
        notice = notification.to_dict()
        if notice["via"] != "pagerduty" and (notice["target"], notice["via"]) in delivered:
            continue
        notice.update(
            text=text, dedup_key=incident_id, severity=target,
            summary=page_summary(target, symptom, record.get("environment"), record.get("service")),
            idempotency_key=f"{incident_id}:raise:{target}:{notice['target']}:{notice['via']}",
        )
        notices.append(notice)

    services = services_for(record["environment"])
    report = deliver_once(runbook, services, ledger, incident_id, notices, stage=f"raise:{target}",
                          default_channel=record.get("slack_channel_id"), at=now)
    posts = _tell_channel(runbook, services.slack, ledger, record, target, text)
    data = {**report.to_dict(), "from": previous, "to": target, "channel_posts": posts}
    missing = report.missing(required_notices(notices))
    if missing:
        raise record_not_reached(runbook, ledger, incident_id, step=key, at=now, report=report, missing=missing,
                           extra={"from": previous, "to": target})
    data["urgency_raised"] = _raise_pagerduty_urgency(services.pager, incident_id, notices)
    ledger.record_event(
        incident_id, at=now, kind="escalated", actor="incident_ops",
        message=f"{previous} → {target}: " + (narrative.notice_sentence(runbook, report.results)
                                              if report.results else "通知済み"),
        data=data, idempotency_key=key,
    )
    ledger.update(incident_id, now, escalated_at=now)
    return {**data, "escalated": True}


def _raise_pagerduty_urgency(pager: Any, incident_id: str, notices: list[dict[str, Any]]) -> bool:
    """A page of the new level is high urgency, but PagerDuty keeps the urgency of the incident it
    opened for the first, low-urgency page (a P3 at night): make it high, so the on-call's phone rings.
    PUT is idempotent; a failure fails the task (its retry sends only what is missing, then this)."""
    high = any(n["via"] == "pagerduty" and n.get("urgency") != "low" for n in notices)
    if not high or pager is None or pager.rest is None:
        return False
    found = pager.incident_for_dedup_key(incident_id)
    if not found or found.get("status") == "resolved" or found.get("urgency") != "low":
        return False
    pager.make_high_urgency(found["id"])
    log.info("PagerDuty incident %s of %s raised to high urgency", found["id"], incident_id)
    return True


def _tell_channel(runbook: Any, slack: Any, ledger: Ledger, record: dict[str, Any], target: str, text: str) -> int:
    """The raise in the incident channel, and the declaration when it is now due and was not posted."""
    if slack is None or not record.get("slack_channel_id"):
        return 0
    incident_id = record["id"]
    slack.post(record["slack_channel_id"], text, idempotency_key=f"{incident_id}:raised:{target}")
    posts = 1
    kinds = {event["kind"] for event in ledger.events(incident_id)}
    if target in runbook.declare_severities and "declared" not in kinds:
        engineer = rotation_engineer(runbook, record["detected_at"])
        declaration = messages.render_declaration(
            runbook, severity=target, detected_at=record["detected_at"], symptom=_label(runbook, record.get("symptom")),
            impact=_impact(runbook, record.get("symptom")),
            responders=[{"name": engineer.name, "slack_user_id": engineer.slack_user_id}],
            channel=record["slack_channel"] or "",
        )
        for where in (runbook.contacts.channels["dev_team"], record["slack_channel_id"]):
            slack.post(where, declaration, idempotency_key=f"{incident_id}:declaration:{where}")
            posts += 1
        ledger.update(incident_id, _now(), declared_at=_now())
        ledger.record_event(incident_id, at=_now(), kind="declared", actor="incident_ops",
                            message=phrase("event.declared_on_raise", plain=True, channel=record["slack_channel"],
                                           target=target),
                            idempotency_key=f"declared:{target}")
    return posts


def _impact(runbook: Any, symptom: str | None) -> str:
    try:
        return runbook.symptom(symptom).impact if symptom else "-"
    except KeyError:
        return symptom or "-"
