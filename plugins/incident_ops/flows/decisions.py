"""The Slack side of the decisions that wait for a person (task bodies, imported when a task runs).

- `announce`: when a human-in-the-loop task starts waiting (its notifier), the question goes to the
  incident channel (#dev-team when there is none yet) with a button per option, the deadline in JST,
  what happens on timeout and the link to the task in the Airflow UI. Recorded in the ledger as
  `decision_posted` (key `decision:<task_id>:<try>`), which the reminder and the conclusion read.
- `remind`: halfway to the deadline, still unanswered: a reply in the message's thread mentions the
  on-call engineer (once per decision).
- `conclude`: the task resumed (answered anywhere, or the deadline's default): the message is updated
  in place (who chose what, or the default), and on a timeout the dev lead is told what was done.

Slack being down never holds a decision: every step here logs and carries on (the UI still asks).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from incident_ops.core import decisions
from incident_ops.core.ledger import Ledger
from incident_ops.core.oncall import rotation_engineer
from incident_ops.core.phrases import phrase

__all__ = ["announce", "answer_recorded", "conclude", "posted_decision", "remind"]

log = logging.getLogger(__name__)

# Ledger event keys that mean "this decision was answered" (the operators' records and the webhook's).
_ANSWER_KINDS = ("scenario_chosen", "approval", "decision_answered")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: Any) -> dt.datetime:
    # Local (the triggerer imports this module: it must stay light, no clients or hooks).
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _services(incident: dict[str, Any]) -> Any:
    from incident_ops.flows.incident import services_for

    return services_for(incident["environment"])


def _runbook() -> Any:
    from incident_ops.flows.incident import load

    return load()


def announce(request: dict[str, Any]) -> dict[str, Any] | None:
    """Post the decision `request` (built by the operator) and record it; None when Slack is absent
    or failed (logged: the Airflow UI still asks)."""
    ledger = Ledger()
    incident = ledger.get(request["incident_id"])
    runbook = _runbook()
    deadline = _aware(request["deadline"])
    values = [decisions.button_value(incident_id=incident["id"], dag_id=request["dag_id"], run_id=request["run_id"],
                                     task_id=request["task_id"], map_index=request["map_index"], option=o["value"])
              for o in request["options"]]
    options = [decisions.Option(o["value"], o["label"], o.get("style")) for o in request["options"]]
    text, blocks = decisions.decision_message(
        runbook, kind=request["kind"], incident=incident, subject=request["subject"], question=request["question"],
        options=options, values=values, deadline=deadline, minutes=request["minutes"],
        on_timeout=request["on_timeout"], suggestion=request.get("suggestion"), reasons=request.get("reasons", ()),
        link=request.get("link"))
    channel = incident.get("slack_channel_id") or runbook.contacts.channels["dev_team"]
    key = f"decision:{request['task_id']}:{request['try_number']}"
    try:
        slack = _services(incident).slack
        if slack is None:
            log.warning("Slack is not configured: decision %s is asked in the Airflow UI only", request["task_id"])
            return None
        posted = slack.post(channel, text, idempotency_key=f"{incident['id']}:{key}", blocks=blocks)
    except Exception:  # noqa: BLE001 - the UI still asks; the run must not wait for Slack
        log.exception("posting decision %s to Slack failed; it is asked in the Airflow UI", request["task_id"])
        return None
    data = {"task_id": request["task_id"], "dag_id": request["dag_id"], "run_id": request["run_id"],
            "map_index": request["map_index"], "channel": posted["channel"], "ts": posted["ts"],
            "subject": request["subject"], "options": [o["value"] for o in request["options"]],
            "deadline": deadline.isoformat(), "kind": request["kind"], "on_timeout": request["on_timeout"],
            "default": request.get("default"), "text": text, "try_number": request["try_number"]}
    ledger.record_event(incident["id"], at=_now(), kind="decision_posted", actor="incident_ops",
                        message=phrase("event.decision_posted", plain=True, subject=request["subject"]),
                        data=data, idempotency_key=key)
    return data


def posted_decision(incident_id: str, task_id: str) -> dict[str, Any] | None:
    """The latest `decision_posted` of `task_id` (the last try's message)."""
    found = [e for e in Ledger().events(incident_id)
             if e["kind"] == "decision_posted" and (e.get("data") or {}).get("task_id") == task_id]
    return found[-1] if found else None


def answer_recorded(incident_id: str, task_id: str, step_id: str | None, since: dt.datetime | None = None) -> bool:
    """Whether the decision of `task_id` has an answer on the ledger (a person's, the default's, or
    the consent a person gave by choosing the scenario)."""
    keys = {f"decision_answered:{task_id}", f"approval:{step_id}" if step_id else "scenario_chosen"}
    for event in Ledger().events(incident_id):
        if event["kind"] in _ANSWER_KINDS and event.get("idempotency_key") in keys:
            if since is None or _aware(event["at"]) >= since - dt.timedelta(seconds=5):
                return True
    return False


def remind(incident_id: str, task_id: str, step_id: str | None) -> dict[str, Any]:
    """Halfway: mention the on-call engineer in the decision's thread, if still unanswered."""
    posted = posted_decision(incident_id, task_id)
    if posted is None:
        return {"reminded": False, "reason": "no decision message was posted"}
    if answer_recorded(incident_id, task_id, step_id):
        return {"reminded": False, "reason": "answered"}
    ledger = Ledger()
    incident = ledger.get(incident_id)
    runbook = _runbook()
    data = posted["data"]
    engineer = rotation_engineer(runbook, _now())
    text = decisions.reminder_text(runbook, mention=f"<@{engineer.slack_user_id}>" if engineer.slack_user_id else None,
                                   subject=data["subject"], deadline=_aware(data["deadline"]),
                                   on_timeout=data["on_timeout"])
    key = f"decision_reminder:{task_id}:{data.get('try_number', 1)}"
    try:
        slack = _services(incident).slack
        if slack is None:
            return {"reminded": False, "reason": "Slack is not configured"}
        slack.reply(data["channel"], data["ts"], text, idempotency_key=f"{incident_id}:{key}")
    except Exception:  # noqa: BLE001 - a reminder lost to Slack is logged, the decision still waits
        log.exception("the reminder of decision %s could not be posted", task_id)
        return {"reminded": False, "reason": "Slack failed"}
    ledger.record_event(incident_id, at=_now(), kind="decision_reminded", actor="incident_ops",
                        message=phrase("event.decision_reminded", plain=True, name=engineer.name,
                                       subject=data["subject"]),
                        data={"task_id": task_id, "to": engineer.id}, idempotency_key=key)
    return {"reminded": True, "to": engineer.id}


def conclude(incident_id: str, task_id: str, *, option: str, by: str | None, outcome: str) -> dict[str, Any]:
    """The task resumed: the message says who chose what (or the default); on a timeout the dev lead
    is told what was done. `outcome`: what the answer does, in Japanese."""
    posted = posted_decision(incident_id, task_id)
    ledger = Ledger()
    incident = ledger.get(incident_id)
    runbook = _runbook()
    result: dict[str, Any] = {"updated": False, "told_lead": False}
    try:
        slack = _services(incident).slack
    except Exception:  # noqa: BLE001
        log.exception("Slack client unavailable; decision %s concluded without Slack", task_id)
        return result
    if slack is None:
        return result
    if posted is not None:
        data = posted["data"]
        text, blocks = decisions.answered_blocks(runbook, data.get("text") or data["subject"], by=by, option=option,
                                                 at=_now(), note=outcome if by is None else None)
        try:
            slack.update(data["channel"], data["ts"], text, blocks=blocks)
            result["updated"] = True
        except Exception:  # noqa: BLE001
            log.exception("updating the message of decision %s failed", task_id)
    if by is None:
        lead = runbook.contacts.people.get("dev_lead")
        subject = (posted or {}).get("data", {}).get("subject") or task_id
        text = decisions.timeout_notice_text(
            runbook, mention=f"<@{lead.slack_user_id}>" if lead and lead.slack_user_id else None,
            subject=subject, incident_id=incident_id, option=option, outcome=outcome)
        channel = incident.get("slack_channel_id") or runbook.contacts.channels["dev_team"]
        try:
            slack.post(channel, text, idempotency_key=f"{incident_id}:decision_timeout:{task_id}")
            result["told_lead"] = True
        except Exception:  # noqa: BLE001
            log.exception("telling the dev lead about decision %s's timeout failed", task_id)
    return result
