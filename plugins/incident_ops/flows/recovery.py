"""Phase 3's task bodies between the remediation steps (Airflow adapter, no Airflow import):
whether a conditional step runs, the scenario's notices, the external wait's posts and record.

The rules are `incident_ops.core.recovery`'s; here they meet the ledger (the step reports recorded
so far), Slack and the connections. Every post and record carries an idempotency key derived from
the incident id, so a retried task repeats nothing.
"""

from __future__ import annotations

from typing import Any

from incident_ops.core import narrative, recovery
from incident_ops.core.ledger import Ledger
from incident_ops.core.phrases import phrase
from incident_ops.flows import incident as incident_flow

__all__ = [
    "decide",
    "notify_scenario_contacts",
    "step_context",
    "wait_changed",
    "wait_check_mode",
    "wait_finished",
    "wait_plan",
]


def decide(incident_id: str, scenario: str, step_id: str, *, check_mode: bool,
           health: dict[str, Any] | None = None) -> dict[str, Any]:
    """The decision on a conditional step, recorded in the ledger (skipped: the reason why)."""
    runbook = incident_flow.load()
    ledger = Ledger()
    step = runbook.scenario(scenario).step(step_id)
    decision = recovery.decide_step(runbook, scenario, step_id, incident_flow.actions_taken(ledger, incident_id),
                                    health=health, check_mode=check_mode)
    observed = {k: health.get(k) for k in ("healthy", "consecutive", "reason")} if health else None
    data = {"scenario": scenario, "step": step_id, "action": step.action, "condition": step.when,
            "run": decision.run, "reason": decision.reason, "health": observed, "check_mode": check_mode}
    ledger.record_event(
        incident_id, at=incident_flow._now(), kind="step_decision" if decision.run else "step_skipped", actor="incident_ops",
        message=decision.reason, data=data,
        idempotency_key=f"step_decision:{scenario}:{step_id}:{'check' if check_mode else 'apply'}",
    )
    return {**decision.to_dict(), "step": step_id, "health": observed}


def notify_scenario_contacts(incident: dict[str, Any], scenario: str) -> dict[str, Any]:
    """The scenario's `notify` channels (#infra-support for the database and resource scenarios):
    what is happening, the incident channel, the evidence's reason. Once per incident and channel."""
    runbook = incident_flow.load()
    plan = runbook.scenario(scenario)
    if not plan.notify:
        return {"notified": []}
    slack = incident_flow.services_for(incident["environment"]).slack
    if slack is None:
        raise RuntimeError("Slack is not configured: add the connection slack_api_default")
    ledger = Ledger()
    record = ledger.get(incident["id"])
    reasons = list((incident_flow._suggestion(ledger, incident["id"]).get("reasons") or {}).get(scenario) or [])
    posted = []
    for key in plan.notify:
        channel = runbook.contacts.channels[key]
        text = recovery.render_scenario_notice(
            runbook, channel_key=key, incident_id=incident["id"], scenario=scenario,
            severity=record.get("severity") or incident["severity"], symptom=incident.get("symptom") or "—",
            reasons=reasons, incident_channel=record.get("slack_channel"),
            incident_channel_id=record.get("slack_channel_id"), check_mode=bool(incident.get("check_mode")),
        )
        answer = slack.post(channel, text, idempotency_key=f"{incident['id']}:scenario-notice:{scenario}:{key}")
        posted.append({"channel": channel, "posted": answer.get("posted", True)})
    names = "、".join(f"{narrative.target_label(key)}（{runbook.contacts.channels[key]}）" for key in plan.notify)
    ledger.record_event(incident["id"], at=incident_flow._now(), kind="scenario_notice", actor="incident_ops",
                        message=phrase("event.scenario_notice", plain=True, names=names, label=plan.label,
                                       remediation=plan.remediation),
                        data={"scenario": scenario, "channels": posted}, idempotency_key=f"scenario_notice:{scenario}")
    return {"notified": posted}


def step_context(incident: dict[str, Any], scenario: str, step_id: str) -> dict[str, dict[str, Any]]:
    """Per-action params a step gets from the incident (beside the runbook's): the AWS Support
    case's subject and body name the incident and the AWS operations that failed."""
    runbook = incident_flow.load()
    step = runbook.scenario(scenario).step(step_id)
    if step.action != "aws_support_case":
        return {}
    subject, body = recovery.support_case_text(runbook, incident=incident, scenario=scenario,
                                               reports=incident_flow.actions_taken(Ledger(), incident["id"]))
    return {step.action: {"subject": subject, "body": body}}


# --- the external wait (待機) -------------------------------------------------------------------------


def _status_url(incident_id: str, environment: str, scenario: str, step_id: str) -> str:
    from incident_ops.actions.registry import step_params

    runbook = incident_flow.load()
    step = runbook.scenario(scenario).step(step_id)
    params = step_params(runbook, environment, step, incident_id=incident_id)
    params.update(incident_flow.services_for(environment).settings.action_overrides().get(step.action, {}))
    url = params.get("url")
    if not url:
        raise RuntimeError(f"{environment}: no external_status_url (runbook or the peoplebooster_api connection)")
    return str(url)


def _post(incident_id: str, environment: str, text: str, key: str) -> None:
    slack = incident_flow.services_for(environment).slack
    record = Ledger().get(incident_id)
    if slack is not None and record.get("slack_channel_id"):
        slack.post(record["slack_channel_id"], text, idempotency_key=f"{incident_id}:{key}")


def _last_status(incident_id: str, scenario: str) -> dict[str, Any] | None:
    plan = incident_flow.load().scenario(scenario)
    for report in reversed(recovery.scenario_reports(plan, incident_flow.actions_taken(Ledger(), incident_id))):
        details = report.get("details") or {}
        if report.get("action") == "external_status_check" and "indicator" in details:
            return {k: details.get(k) for k in ("indicator", "description", "operational", "page")}
    return None


def wait_plan(incident_id: str, environment: str, scenario: str, step_id: str) -> dict[str, Any]:
    """What the wait polls and for how long; posts (once) that the wait begins and what the status
    page said at the check."""
    runbook = incident_flow.load()
    step = runbook.scenario(scenario).step(step_id)
    if step.wait is None:
        raise ValueError(f"step {step_id} of {scenario} does not wait")
    services = incident_flow.services_for(environment)
    last_seen = _last_status(incident_id, scenario)
    text = recovery.render_wait_message(runbook, kind="start", incident_id=incident_id, scenario=scenario,
                                        step_id=step_id, status=last_seen)
    _post(incident_id, environment, text, f"wait:{step_id}:start")
    Ledger().record_event(incident_id, at=incident_flow._now(), kind="status_update", actor="incident_ops",
                          message=text.splitlines()[-1], data={"step": step_id, "kind": "start", "status": last_seen},
                          idempotency_key=f"status_update:{step_id}:start")
    now = incident_flow._now()
    return {
        "started_at": now.isoformat(),
        # epoch seconds: a trigger deferred again after a change keeps the wait's end
        "deadline": now.timestamp() + step.wait.max_minutes * 60,
        "status_url": _status_url(incident_id, environment, scenario, step_id),
        "health_url": services.settings.health_url,
        "verify": services.settings.verify,
        "status_interval": step.wait.interval_minutes * 60,
        "health_interval": runbook.ladder.interval_seconds,
        "consecutive": runbook.ladder.consecutive_healthy,
        "last_seen": last_seen,
    }


def _waited(started_at: str, at: str | None) -> float:
    end = incident_flow._aware(at) if at else incident_flow._now()
    return max((end - incident_flow._aware(started_at)).total_seconds() / 60, 0.0)


def wait_changed(incident_id: str, environment: str, scenario: str, step_id: str, event: dict[str, Any], *,
                 started_at: str) -> None:
    """The status page says something new: tell the incident channel (the wait goes on)."""
    runbook = incident_flow.load()
    text = recovery.render_wait_message(runbook, kind="changed", incident_id=incident_id, scenario=scenario,
                                        step_id=step_id, status=event.get("status"),
                                        waited_minutes=_waited(started_at, event.get("at")))
    _post(incident_id, environment, text, f"wait:{step_id}:{event.get('at')}")
    Ledger().record_event(incident_id, at=incident_flow._now(), kind="status_update", actor="incident_ops",
                          message=text.splitlines()[1], data={"step": step_id, "kind": "changed", **event},
                          idempotency_key=f"status_update:{step_id}:{event.get('at')}")


def _record(incident_id: str, report: dict[str, Any], check_mode: bool) -> None:
    report["approved_by"] = None
    report["at"] = incident_flow._now().isoformat()
    Ledger().record_event(incident_id, at=incident_flow._now(), kind="action", actor="incident_ops",
                          message=narrative.action_sentence(report), data=report,
                          idempotency_key=f"action:{report['step']}:{'check' if check_mode else 'apply'}")


def wait_finished(incident_id: str, environment: str, scenario: str, step_id: str, event: dict[str, Any], *,
                  started_at: str, status_url: str | None = None) -> list[dict[str, Any]]:
    """The wait is over (recovered, outage, timeout): tell the channel, record the step's report."""
    runbook = incident_flow.load()
    step = runbook.scenario(scenario).step(step_id)
    outcome = str(event["outcome"])
    status = dict(event.get("status") or {})
    waited = _waited(started_at, event.get("at"))
    text = recovery.render_wait_message(runbook, kind=outcome, incident_id=incident_id, scenario=scenario,  # type: ignore[arg-type]
                                        step_id=step_id, status=status, waited_minutes=waited,
                                        consecutive=event.get("consecutive"))
    _post(incident_id, environment, text, f"wait:{step_id}:{outcome}")
    details = {**status, "wait_outcome": outcome, "waited_minutes": round(waited, 1),
               "consecutive": event.get("consecutive"), "url": status_url}
    report = {"step": step_id, "action": step.action, "ok": True, "changed": False, "skipped": False,
              "before": None, "after": status, "message": f"waited {waited:.1f} min: {outcome}",
              "details": details, "check_mode": False}
    _record(incident_id, report, check_mode=False)
    return [report]


def wait_check_mode(incident_id: str, environment: str, scenario: str, step_id: str) -> list[dict[str, Any]]:
    """Check mode: one look at the status page (read-only), no waiting."""
    from incident_ops.actions.playbook import run_step

    services = incident_flow.services_for(environment)
    reports = run_step(incident_flow.load(), environment, scenario, step_id, services.clients(), check_mode=True,
                       incident_id=incident_id, overrides=services.settings.action_overrides())
    for report in reports:
        report["details"] = {**(report.get("details") or {}), "wait_outcome": "check_mode"}
        _record(incident_id, report, check_mode=True)
    return reports
