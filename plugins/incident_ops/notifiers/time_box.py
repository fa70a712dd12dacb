"""Phase time boxes as Airflow deadline alerts (`DeadlineAlert` callbacks of `incident_response`).

The DAG declares one DeadlineAlert per time-boxed phase: reference = the run's queued time, interval
= `phase_time_boxes.detect` (15 min) / `.investigate` (60 min), callback = `SyncCallback` to
`phase_time_box_alert` with `{"phase": 1}` / `{"phase": 2}`. Airflow prunes the deadlines of a run
that succeeded before them; otherwise the scheduler queues the callback at the deadline and the
executor runs it with `context = {"dag_run": {...}, "deadline": {...}}`.

The callback is a thin adapter: it finds the incident the run drives (ledger), asks the core
(`incident_ops.core.timeboxes`) whether that phase is still unfinished, and if so posts the notice to
the incident channel (#dev-team when the channel does not exist yet) mentioning the dev lead, once
per incident and phase (ledger event key `time_box:phase<N>`, Slack idempotency key
`<incident id>:time_box:phase<N>`). Silent when the run drives no open incident or the phase is done.

Nothing heavy is imported at module level: the DAG file names this module when it is parsed.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

__all__ = ["notify_time_box", "phase_time_box_alert"]

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _find_incident(ledger: Any, run_id: str | None, incident_id: str | None) -> dict[str, Any] | None:
    if incident_id:
        try:
            return ledger.get(incident_id)
        except KeyError:
            return None
    if not run_id:
        return None
    return next((item for item in ledger.open_incidents() if item.get("dag_run_id") == run_id), None)


def notify_time_box(
    phase: int,
    *,
    run_id: str | None,
    now: dt.datetime,
    incident_id: str | None = None,
    runbook: Any = None,
    ledger: Any = None,
    services: Any = None,
) -> dict[str, Any]:
    """The time-box notice of `phase` for the incident driven by `run_id`, if it is due at `now`.

    `runbook`, `ledger`, `services` default to the project's (tests pass their own)."""
    from incident_ops.core import timeboxes
    from incident_ops.core.handoff import person_dict
    from incident_ops.core.ledger import Ledger
    from incident_ops.flows.incident import deliver_notices, load, services_for

    runbook = runbook or load()
    ledger = ledger or Ledger()
    box = timeboxes.time_box(runbook, phase)
    record = _find_incident(ledger, run_id, incident_id)
    if record is None:
        return {"phase": phase, "sent": False, "reason": f"no open incident driven by run {run_id!r}"}
    events = ledger.events(record["id"])
    reached = timeboxes.phase_reached(record, events)
    detected = _aware(record["detected_at"])
    elapsed = _aware(now) - detected
    sent_keys = [str(event.get("idempotency_key")) for event in events]
    due = timeboxes.due_time_boxes(runbook, reached=reached, elapsed=elapsed, status=str(record.get("status")),
                                   sent=sent_keys, phases=[phase])
    summary = {"incident_id": record["id"], "phase": phase, "reached": reached,
               "elapsed_minutes": round(elapsed.total_seconds() / 60, 1)}
    if not due:
        return {**summary, "sent": False, "reason": "the phase is done, already notified, or not over yet"}

    channel_id = record.get("slack_channel_id")
    channel_name = record.get("slack_channel")
    text = timeboxes.render_time_box_notice(
        runbook, box, incident_id=record["id"], severity=record["severity"],
        symptom=record.get("title") or record.get("symptom") or record["id"], detected_at=detected, elapsed=elapsed,
        channel=f"#{str(channel_name).lstrip('#')}" if channel_name and not channel_id else None,
    )
    people = runbook.contacts.people
    recipients = [person_dict(people["dev_lead"], "dev_lead")] if "dev_lead" in people else []
    notice = {
        "target": "dev_lead" if recipients else "dev_team", "via": "slack",
        "channel": channel_id or runbook.contacts.channels["dev_team"], "recipients": recipients,
        "text": text, "dedup_key": record["id"], "severity": record["severity"],
        "summary": f"[{record['severity']}] Phase {phase} 時間枠超過: {record['id']}",
        "idempotency_key": f"{record['id']}:{box.key}",
    }
    services = services or services_for(record["environment"])
    report = deliver_notices(runbook, services, [notice], default_channel=channel_id)
    at = _aware(now)
    ledger.record_event(
        record["id"], at=at, kind="time_box", actor="incident_ops",
        message=f"Phase {phase}（{box.name}）の時間枠（{box.ends_after // dt.timedelta(minutes=1)}分）を超過",
        data={**summary, **report.to_dict()}, idempotency_key=box.key,
    )
    if not report.reached_anyone:
        raise RuntimeError(f"the Phase {phase} time-box notice reached nobody: {report.results}")
    return {**summary, "sent": True, "report": report.to_dict()}


def phase_time_box_alert(phase: int, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """DeadlineAlert callback: `phase` from the alert's kwargs, `context` from Airflow."""
    run = (context or {}).get("dag_run") or {}
    conf = run.get("conf") or {}
    result = notify_time_box(
        int(phase), run_id=run.get("dag_run_id") or run.get("run_id"), incident_id=conf.get("incident_id") or None,
        now=_now(),
    )
    log.info("phase %s time box: %s", phase, result)
    return result
