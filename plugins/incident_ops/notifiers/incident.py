"""Any failed task of an incident run tells the incident channel and the on-call engineer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

__all__ = ["IncidentFailureNotifier"]


class IncidentFailureNotifier(BaseNotifier):
    """on_failure_callback: a failure notice (runbook voice) in the incident channel mentioning the
    rotation's engineer, a PagerDuty trigger with the incident's dedup key, and a ledger event.
    Notifying never raises: a broken Slack must not hide the original failure."""

    template_fields: Sequence[str] = ()

    def __init__(self, open_task_id: str = "detect.open_incident") -> None:
        super().__init__()
        self.open_task_id = open_task_id

    def notify(self, context: Any) -> None:
        from incident_ops.core import messages
        from incident_ops.core.ledger import Ledger
        from incident_ops.core.oncall import rotation_engineer
        from incident_ops.flows.incident import load, services_for

        ti = context["ti"]
        incident = ti.xcom_pull(task_ids=self.open_task_id) or {}
        if not incident.get("id"):
            self.log.warning("no incident opened yet; nothing to notify about %s", ti.task_id)
            return
        runbook = load()
        now = dt.datetime.now(dt.UTC)
        error = str(context.get("exception") or "unknown error")[:500]
        engineer = rotation_engineer(runbook, now)
        try:
            ledger = Ledger()
            ledger.record_event(incident["id"], at=now, kind="task_failed", actor="incident_ops",
                                message=f"{ti.task_id}: {error}", idempotency_key=f"failed:{ti.task_id}:{ti.try_number}")
            record = ledger.get(incident["id"])
            services = services_for(incident["environment"])
            text = messages.render_failure_notice(
                runbook, incident_id=incident["id"], step=ti.task_id, error=error, at=now,
                notify=[{"name": engineer.name, "slack_user_id": engineer.slack_user_id}],
            )
            if services.slack is not None:
                channel = record.get("slack_channel_id") or runbook.contacts.channels["dev_team"]
                services.slack.post(channel, text, idempotency_key=f"{incident['id']}:failed:{ti.task_id}:{ti.try_number}")
            # Page only while the incident is open: after recovery a late failure (e.g. the postmortem
            # draft) must not re-open the PagerDuty incident and wake people.
            if services.pager is not None and services.pager.events is not None and record["status"] == "open":
                services.pager.trigger(
                    incident["id"], summary=f"[{incident.get('severity')}] automation step failed: {ti.task_id}",
                    severity=incident.get("severity", "P2"), source="incident_ops",
                    custom_details={"error": error, "task": ti.task_id},
                )
        except Exception as exc:  # noqa: BLE001 - the callback must not mask the task's own failure
            self.log.exception("could not notify about the failure of %s: %s", ti.task_id, exc)
