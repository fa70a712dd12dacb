"""The incident DAG's task bodies (Airflow adapter): core rules + ledger + clients, one function a task.

Each function takes the run's params and facts and returns a small JSON-serialisable dict for XCom.
Every side effect carries an idempotency key derived from the incident id (Slack message metadata,
PagerDuty dedup_key, ledger event keys), so a retried task or a re-run repeats nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

from incident_ops import artifacts
from incident_ops.core import diagnosis, messages, narrative
from incident_ops.core.deadlines import postmortem_schedule, response_deadline
from incident_ops.core.decisions import acknowledge_blocks
from incident_ops.core.escalation import route, unacknowledged_route
from incident_ops.core.ledger import Ledger
from incident_ops.core.oncall import rotation_engineer
from incident_ops.core.phrases import phrase
from incident_ops.core.runbook import Runbook, runbook_path
from incident_ops.core.triage import classify, fingerprint_for
from incident_ops.services import IncidentServices

__all__ = [
    "AUTO",
    "acknowledge_incident",
    "announce_recovery",
    "collect_evidence",
    "confirm_incident",
    "current_response_deadline",
    "declare",
    "escalate_unacknowledged",
    "load",
    "notify_responders",
    "open_incident",
    "record_preset_scenario",
    "write_postmortem",
]

log = logging.getLogger(__name__)
AUTO = "auto"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


@cache
def load() -> Runbook:
    from incident_ops.core.runbook import load_runbook

    return load_runbook(runbook_path())


def state_dir() -> Path:
    path = Path(os.environ.get("INCIDENT_OPS_STATE_DIR") or PROJECT_ROOT / "state")
    path.mkdir(parents=True, exist_ok=True)
    return path


def services_for(environment: str) -> IncidentServices:
    from incident_ops.hooks.services import IncidentServicesHook

    return IncidentServicesHook(load().environment(environment)).services


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- Phase 1: detect and declare -----------------------------------------------------------------


def open_incident(params: dict[str, Any], *, run_id: str, run_after: dt.datetime) -> dict[str, Any]:
    """Classify the report, then open (or reuse) the ledger record; returns the incident summary."""
    runbook = load()
    environment = params["environment"]
    alarm = params.get("alarm") or None
    override = None if params.get("severity") in (None, AUTO) else params["severity"]
    result = classify(runbook, params["symptom"], alarm=alarm, environment=environment, override=override)
    env = runbook.environment(environment)
    service = params.get("service") or result.service or env.default_service
    service = env.service_key(service)
    detected_at = _aware(alarm["StateChangeTime"]) if alarm and alarm.get("StateChangeTime") else _aware(run_after)
    ledger = Ledger()
    if params.get("incident_id"):
        incident = ledger.get(params["incident_id"])
        created = False
    else:
        incident, created = ledger.open_or_join(
            fingerprint=fingerprint_for(environment, service, result.symptom_id, params["symptom"], alarm),
            severity=result.severity,
            symptom=result.symptom_id or params["symptom"],
            title=params["symptom"],
            service=service,
            environment=environment,
            reporter=params.get("reporter") or "airflow-ui",
            at=detected_at,
            occurrence_key=run_id,
            detected_at=detected_at,
            dag_run_id=run_id,
            check_mode=bool(params.get("check_mode")),
        )
    owner = incident.get("dag_run_id")
    if owner and owner != run_id and not created:
        # Another run already drives this incident: this one only adds the occurrence.
        return {"id": incident["id"], "proceed": False, "handled_by": owner, "severity": incident["severity"]}
    if not owner:
        incident = ledger.update(incident["id"], _now(), dag_run_id=run_id)
    severity = incident["severity"]
    deadline = response_deadline(runbook, severity, _aware(incident["detected_at"]))
    ledger.record_event(
        incident["id"], at=_now(), kind="classified", actor="incident_ops",
        message=phrase("event.classified", plain=True, severity=severity,
                       symptom=result.symptom_label or params["symptom"]),
        data=result.to_dict(), idempotency_key="classified",
    )
    symptom_label = result.symptom_label or params["symptom"]
    return {
        "id": incident["id"],
        "proceed": True,
        "created": created,
        "severity": severity,
        "rule": result.rule,
        "symptom": symptom_label,
        "symptom_id": result.symptom_id,
        "impact": params.get("impact") or result.impact or symptom_label,
        "service": service,
        "environment": environment,
        "detected_at": _iso(_aware(incident["detected_at"])),
        "response_deadline": _iso(deadline),
        "check_mode": bool(params.get("check_mode")),
        "declare": severity in runbook.declare_severities,
        "reporter": params.get("reporter") or "airflow-ui",
    }


def _responders(runbook: Runbook, at: dt.datetime) -> list[dict[str, Any]]:
    engineer = rotation_engineer(runbook, at)
    return [{"id": engineer.id, "name": engineer.name, "slack_user_id": engineer.slack_user_id,
             "pagerduty_user_id": engineer.pagerduty_user_id}]


def declare(incident: dict[str, Any]) -> dict[str, Any]:
    """Incident channel (#incident-YYYYMMDD, suffix on collision) and the declaration (P1/P2)."""
    runbook = load()
    services = services_for(incident["environment"])
    slack = services.slack
    if slack is None:
        raise RuntimeError("Slack is not configured: add the connection slack_api_default")
    detected_at = _aware(incident["detected_at"])
    ledger = Ledger()
    base_name = messages.channel_name(runbook, detected_at)
    channel = slack.ensure_channel(base_name, incident["id"])
    responders = _responders(runbook, detected_at)
    people = [r["slack_user_id"] for r in responders]
    if incident["severity"] in ("P1", "P2"):
        people += [runbook.contacts.people[p].slack_user_id for p in ("dev_lead",) if p in runbook.contacts.people]
    slack.invite(channel["id"], people)
    posted = []
    if incident["declare"]:
        text = messages.render_declaration(
            runbook,
            severity=incident["severity"],
            detected_at=detected_at,
            symptom=incident["symptom"],
            impact=incident["impact"],
            responders=responders,
            channel=channel["name"],
        )
        # The template's text as is; the blocks add the 「対応開始」 button (acknowledges for who presses it).
        blocks = acknowledge_blocks(text, incident["id"])
        for where in (runbook.contacts.channels["dev_team"], channel["id"]):
            posted.append(slack.post(where, text, idempotency_key=f"{incident['id']}:declaration:{where}",
                                     blocks=blocks))
    ledger.update(incident["id"], _now(), slack_channel=channel["name"], slack_channel_id=channel["id"],
                  declared_at=_now() if incident["declare"] else None)
    ledger.record_event(
        incident["id"], at=_now(), kind="declared" if incident["declare"] else "channel_opened",
        actor="incident_ops", message=f"#{channel['name']}", idempotency_key="declared",
    )
    return {"channel": channel["name"], "channel_id": channel["id"], "created": channel.get("created", False),
            "declaration_posts": len(posted)}


def _notice_text(runbook: Runbook, incident: dict[str, Any], plan: list[Any]) -> str:
    """The notice of the plan (core/notices.py): when work may start, the response-start target and
    the P3 night page; the same window as the acknowledgement wait's deadline."""
    from incident_ops.core.notices import render_notice

    return render_notice(
        runbook, incident_id=incident["id"], severity=incident["severity"], symptom=incident["symptom"],
        impact=incident["impact"], detected_at=_aware(incident["detected_at"]), notices=plan,
    )


def deliver_notices(runbook: Runbook, services: IncidentServices, notices: list[dict[str, Any]], *,
                    default_channel: str | None, **once: Any) -> Any:
    """Send notices (Slack, PagerDuty page, phone through PagerDuty, e-mail); when every real-time
    channel fails, the e-mail fallback to the emergency contact. Returns the DeliveryReport.
    `once`: `delivered`, `on_delivered`, `fallback_key` of `incident_ops.notify.deliver`."""
    from incident_ops.clients.email import send_email
    from incident_ops.notify import deliver

    email_sender = None
    smtp = services.settings.smtp
    if smtp is not None:
        def email_sender(to: list[str], subject: str, body: str) -> Any:
            return send_email(smtp.host, smtp.port, smtp.sender, to, subject, body, username=smtp.username,
                              password=smtp.password, starttls=smtp.starttls)

    people = runbook.contacts.people
    return deliver(
        notices,
        slack=services.slack,
        pager=services.pager,
        email_sender=email_sender,
        emergency_email=runbook.contacts.emergency_email,
        default_channel=default_channel,
        pd_requester_id=people["dev_lead"].pagerduty_user_id if "dev_lead" in people else None,
        **once,
    )


# Who sent the webhook intake's page (`incident_ops.webhooks.paging`): the actor of its `paged` event.
INTAKE_ACTOR = "webhook-intake"


def intake_page(ledger: Ledger, incident_id: str) -> dict[str, Any] | None:
    """The PagerDuty trigger the webhook intake sent for this incident (its `paged` event's data), or
    None when it did not reach PagerDuty."""
    for event in ledger.events(incident_id):
        if event["kind"] == "paged" and event.get("idempotency_key") == "paged":
            return {**(event.get("data") or {}), "by": event.get("actor")}
    return None


def deliver_once(runbook: Runbook, services: IncidentServices, ledger: Ledger, incident_id: str,
                 notices: list[dict[str, Any]], *, stage: str, default_channel: str | None, at: dt.datetime,
                 intake: dict[str, Any] | None = None) -> Any:
    """`deliver_notices`, exactly once per (channel, target): each notice that goes out is recorded in
    the ledger's notice table under its idempotency key (`<incident>:<stage>:<target>:<via>`) at
    once, and a notice recorded by an earlier attempt is not sent again; the fallback e-mail likewise
    (`<incident>:<stage>:fallback:email`).

    `intake`: the webhook intake's page (`intake_page`). It stands for the Events API v2 trigger of
    the on-call page of the same severity (PagerDuty has it under the same dedup key), nothing else:
    the CTO's phone call is a responder request and is always the DAG's."""
    delivered: dict[str, dict[str, Any]] = {}
    fallback_key = f"{incident_id}:{stage}:fallback:email"
    for key in [notice["idempotency_key"] for notice in notices] + [fallback_key]:
        found = ledger.notice(key)
        if found is not None:
            delivered[key] = dict((found.get("data") or {}).get("result") or {})
    if intake:
        for notice in notices:
            if (notice["via"] == "pagerduty" and notice["target"] == "oncall" and not notice.get("urgency")
                    and intake.get("severity") == notice.get("severity") and notice["idempotency_key"] not in delivered):
                delivered[notice["idempotency_key"]] = {"dedup_key": intake.get("dedup_key"), "by": INTAKE_ACTOR}

    def on_delivered(key: str, result: dict[str, Any]) -> None:
        ledger.record_notice(key, at, {"incident_id": incident_id, "result": result})

    return deliver_notices(runbook, services, notices, default_channel=default_channel, delivered=delivered,
                           on_delivered=on_delivered, fallback_key=fallback_key)


def record_not_reached(runbook: Runbook, ledger: Ledger, incident_id: str, *, step: str, at: dt.datetime,
                 report: Any, missing: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> RuntimeError:
    """Record that a required notice did not go out (the task fails; its retry sends only what failed)."""
    ledger.record_event(
        incident_id, at=at, kind="failure", actor="incident_ops",
        message="通知が届いていません（再試行します）: " + narrative.notice_sentence(runbook, missing),
        data={**report.to_dict(), **(extra or {}), "step": step, "missing": missing},
    )
    return RuntimeError(f"required notices did not reach anyone yet ({step}): {missing}")


def notify_responders(incident: dict[str, Any], *, unacknowledged: bool = False) -> dict[str, Any]:
    """The escalation matrix for the severity (or its unacknowledged level): page, phone, Slack, e-mail.

    Exactly once per channel and target (`deliver_once`): a retry sends only what failed. The step
    is done, and `notified` (`escalated`) recorded, once every required notice
    (`core.notices.required_notices`: the page and the phone call, else the Slack notice) went out;
    until then it records a `failure` event with what went out and what did not, and raises, so
    Airflow retries it. An optional notice that failed is reported in the event, never retried.
    The webhook intake's page (`paged`, P1/P2) counts as the on-call's PagerDuty trigger."""
    from incident_ops.core.notices import page_summary, required_notices

    runbook = load()
    kind = "escalated" if unacknowledged else "notified"
    stage = "unack" if unacknowledged else "notify"
    ledger = Ledger()
    for event in ledger.events(incident["id"]):
        if event.get("idempotency_key") == kind:
            return {**(event.get("data") or {}), "repeated": False, "already_done": True}
    services = services_for(incident["environment"])
    at = _now()
    plan = (unacknowledged_route if unacknowledged else route)(runbook, incident["severity"], at)
    text = _notice_text(runbook, incident, plan)
    notices = []
    for notification in plan:
        notice = notification.to_dict()
        notice.update(
            text=text,
            dedup_key=incident["id"],
            severity=incident["severity"],
            summary=page_summary(incident["severity"], incident["symptom"], incident["environment"], incident["service"]),
            idempotency_key=f"{incident['id']}:{stage}:{notice['target']}:{notice['via']}",
        )
        notices.append(notice)

    record = ledger.get(incident["id"])
    report = deliver_once(runbook, services, ledger, incident["id"], notices, stage=stage,
                          default_channel=record.get("slack_channel_id"), at=at,
                          intake=None if unacknowledged else intake_page(ledger, incident["id"]))
    missing = report.missing(required_notices(notices))
    if missing:
        raise record_not_reached(runbook, ledger, incident["id"], step=kind, at=at, report=report, missing=missing)
    ledger.record_event(
        incident["id"], at=at, kind=kind, actor="incident_ops",
        message=narrative.notice_sentence(runbook, report.results),
        data=report.to_dict(), idempotency_key=kind,
    )
    if unacknowledged:
        ledger.update(incident["id"], at, escalated_at=at)
    return report.to_dict()


def acknowledgement(incident: dict[str, Any], *, ask_pagerduty: bool = True) -> dict[str, Any] | None:
    """Who started the response, from the ledger or PagerDuty (recorded in the ledger when found).
    `ask_pagerduty=False`: the ledger only (the acknowledgement wait's frequent, cheap look)."""
    ledger = Ledger()
    record = ledger.get(incident["id"])
    if record.get("acknowledged_at"):
        return {"by": record.get("acknowledged_by"), "at": _iso(record["acknowledged_at"]), "source": "ledger"}
    if not ask_pagerduty or not was_paged(ledger, incident["id"]):
        return None  # not paged (P4, a P3 in business hours): no PagerDuty incident to acknowledge
    pager = services_for(incident["environment"]).pager
    if pager is None or pager.rest is None:
        return None
    found = pager.incident_for_dedup_key(incident["id"])
    if found and found.get("acknowledged_at"):
        at = _aware(found["acknowledged_at"])
        by = found.get("acknowledged_by") or "pagerduty"
        ledger.acknowledge(incident["id"], at, by)
        ledger.record_event(incident["id"], at=at, kind="acknowledged", actor=by,
                            message=phrase("event.acknowledged_in_pagerduty", plain=True, by=by),
                            idempotency_key="acknowledged")
        return {"by": by, "at": _iso(at), "source": "pagerduty"}
    return None


def was_paged(ledger: Ledger, incident_id: str) -> bool:
    """Whether PagerDuty holds an incident for this one: P1/P2, and a P3 outside business hours
    (`escalation.p3_off_hours_pagerduty`, low urgency); P4 and a P3 in business hours page nobody.
    The webhook intake's page (`paged`) and the pages of an attempt that failed otherwise count."""
    for event in ledger.events(incident_id):
        if event["kind"] == "paged":
            return True
        if event["kind"] in ("notified", "escalated", "failure"):
            for result in (event.get("data") or {}).get("results", []):
                if result.get("via") in ("pagerduty", "phone") and result.get("ok"):
                    return True
    return False


def acknowledge_incident(incident_id: str, responder: str) -> dict[str, Any]:
    """対応開始 from a person (Airflow UI or CLI): ledger first, then PagerDuty's incident."""
    ledger = Ledger()
    record = ledger.get(incident_id)
    now = _now()
    first = ledger.acknowledge(incident_id, now, responder)
    if first:
        ledger.record_event(incident_id, at=now, kind="acknowledged", actor=responder,
                            message=phrase("event.acknowledged", plain=True, by=responder),
                            idempotency_key="acknowledged")
    pager = services_for(record["environment"]).pager
    if pager is not None and pager.events is not None and was_paged(ledger, incident_id):
        pager.acknowledge(incident_id)
    record = ledger.get(incident_id)
    return {"incident_id": incident_id, "acknowledged_by": record.get("acknowledged_by"),
            "acknowledged_at": _iso(record.get("acknowledged_at")), "first": first}


def current_response_deadline(incident: dict[str, Any]) -> dt.datetime:
    """The response-start deadline for the incident's severity in the ledger now: a later alarm of a
    higher severity (joined through the webhook) shortens the one computed when the run began."""
    record = Ledger().get(incident["id"])
    return response_deadline(load(), record["severity"], _aware(record["detected_at"]))


def record_preset_scenario(incident: dict[str, Any], scenario: str | None, *, suggested: bool) -> None:
    """The scenario decided without asking (given in the form, or a dry run's suggestion; None: manual):
    the same `scenario_chosen` event a person's choice records, which ends Phase 2's time box."""
    chosen = scenario or "manual"
    plan = load().scenarios.get(scenario) if scenario else None
    label = plan.label if plan else phrase("event.scenario_manual", plain=True)
    how = phrase("event.scenario_how_suggested" if suggested else "event.scenario_how_given", plain=True)
    Ledger().record_event(incident["id"], at=_now(), kind="scenario_chosen", actor="incident_ops",
                          message=phrase("event.scenario_started", plain=True, label=label, how=how),
                          data={"chosen": chosen, "scenario": scenario, "by": None, "timed_out": False, "preset": True},
                          idempotency_key="scenario_chosen")


def escalate_unacknowledged(incident: dict[str, Any]) -> dict[str, Any]:
    """Past the response-start target with nobody acknowledging: notice in the channel + next level."""
    if acknowledgement(incident):
        return {"escalated": False}
    runbook = load()
    services = services_for(incident["environment"])
    record = Ledger().get(incident["id"])
    # The level it has now (it may have been raised since the run began).
    incident = {**incident, "severity": record["severity"],
                "response_deadline": _iso(response_deadline(runbook, record["severity"], _aware(record["detected_at"])))}
    plan = [n.to_dict() for n in unacknowledged_route(runbook, incident["severity"], _now())]
    if services.slack is not None and record.get("slack_channel_id"):
        text = messages.render_ack_escalation(
            runbook, incident_id=incident["id"], severity=incident["severity"],
            detected_at=_aware(incident["detected_at"]), symptom=incident["symptom"],
            notify=[r for n in plan for r in n["recipients"]] or [{"name": "dev-team"}],
            channel=record["slack_channel"],
        )
        services.slack.post(record["slack_channel_id"], text, idempotency_key=f"{incident['id']}:ack-escalation")
    report = notify_responders(incident, unacknowledged=True)
    return {"escalated": True, "report": report}


def confirm_incident(incident: dict[str, Any]) -> dict[str, Any]:
    """障害の確認: the health endpoint, CloudWatch alarms in ALARM, the ECS services."""
    from incident_ops.clients.health import check_health
    from incident_ops.observe.aws import alarms_in_alarm, ecs_service_state

    runbook = load()
    env = runbook.environment(incident["environment"])
    services = services_for(incident["environment"])
    health = check_health(services.http, services.settings.health_url, timeout=5.0)
    alarms = alarms_in_alarm(services.aws("cloudwatch"))
    ecs = ecs_service_state(services.aws("ecs"), env.cluster, [s.ecs_service for s in env.services.values()])
    facts = {"health": _jsonable(health), "alarms": [a.get("AlarmName", a.get("name")) for a in alarms],
             "ecs": ecs}
    Ledger().record_event(
        incident["id"], at=_now(), kind="confirmed", actor="incident_ops",
        message=phrase("event.confirmed", plain=True, healthy=health.healthy, alarms=len(alarms)),
        data=facts, idempotency_key="confirmed",
    )
    return {"healthy": health.healthy, "alarms": facts["alarms"]}


def _jsonable(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value):
        return json.loads(json.dumps(dataclasses.asdict(value), default=str))
    return json.loads(json.dumps(value, default=str))


# --- Phase 2: investigate ------------------------------------------------------------------------


def _recent_deploys(services: IncidentServices, env: Any, since: dt.datetime) -> list[dict[str, Any]]:
    """Deploys of the window: GitHub `deploy.yml` runs (the team deploys through GitHub Actions)."""
    if not services.settings.github_token:
        return []
    owner_repo = env.github.repository
    try:
        runs = services.github.list_workflow_runs(owner_repo, "deploy.yml", event=None, created_since=since)
    except Exception as exc:  # noqa: BLE001 - evidence is best effort; say what is missing
        log.warning("recent deploys unavailable: %s", exc)
        return []
    deploys = []
    for run in runs:
        inputs = run.get("inputs") or {}
        deploys.append({"service": inputs.get("service") or run.get("display_title") or "?",
                        "at": run.get("created_at"), "url": run.get("html_url"), "conclusion": run.get("conclusion")})
    return deploys


def collect_evidence(incident: dict[str, Any]) -> dict[str, Any]:
    """Logs, metrics (one GetMetricData call), alarms, Sentry, recent deploys; chart; suggestion."""
    from incident_ops.charts import metrics_chart
    from incident_ops.observe.aws import alarms_in_alarm, error_log_events, fetch_metrics

    runbook = load()
    env = runbook.environment(incident["environment"])
    services = services_for(incident["environment"])
    now = _now()
    window_start = now - dt.timedelta(minutes=30)
    evidence: dict[str, Any] = {"window": {"start": _iso(window_start), "end": _iso(now)}, "missing": []}
    evidence["logs"] = error_log_events(services.aws("logs"), env.log_groups, now, minutes=30)
    metrics = fetch_metrics(services.aws("cloudwatch"), env.metrics, env,
                            [s.ecs_service for s in env.services.values()], now, minutes=60)
    evidence["metrics"] = metrics["series"]
    evidence["metric_api_calls"] = metrics["api_calls"]
    evidence["alarms"] = alarms_in_alarm(services.aws("cloudwatch"))
    evidence["deploys"] = _recent_deploys(services, env, now - dt.timedelta(hours=2))
    if services.sentry is not None:
        try:
            evidence["sentry"] = services.sentry.new_and_spiking_issues(
                env.sentry.organization, env.sentry.project, since=window_start, now=now)
        except Exception as exc:  # noqa: BLE001 - a missing source is reported, not fatal
            evidence["missing"].append(f"sentry: {exc}")
    else:
        evidence["missing"].append("sentry: not configured (sentry_default)")
    suggestion = diagnosis.suggest_scenario(runbook, evidence, now)
    evidence["suggestion"] = suggestion.to_dict()

    # Through the artifacts store (file:// or s3://): a later task may run on another worker.
    evidence_url = artifacts.write_text(artifacts.artifact("incidents", incident["id"], "evidence.json"),
                                        json.dumps(evidence, ensure_ascii=False, indent=2, default=str))
    chart_png = metrics_chart(evidence["metrics"], title=f"{incident['id']} metrics (JST)", tz=runbook.tz)
    chart_url = artifacts.write_bytes(artifacts.artifact("incidents", incident["id"], "metrics.png"), chart_png)

    highlights = _highlights(evidence)
    record = Ledger().get(incident["id"])
    if services.slack is not None and record.get("slack_channel_id"):
        header = messages.render_evidence_header(
            runbook, incident_id=incident["id"], at=now, window_start=window_start, window_end=now,
            environment=incident["environment"], service=incident["service"],
            suggested_scenario=suggestion.scenario, highlights=highlights,
        )
        post = services.slack.post(record["slack_channel_id"], header, idempotency_key=f"{incident['id']}:evidence")
        services.slack.upload_image(record["slack_channel_id"], chart_png, "metrics.png", "メトリクス",
                                    idempotency_key=f"{incident['id']}:evidence-chart", thread_ts=post.get("ts"))
    Ledger().record_event(
        incident["id"], at=now, kind="evidence", actor="incident_ops",
        message=narrative.event_sentence(load(), {"kind": "evidence", "data": {"suggestion": suggestion.to_dict()}}),
        data={"suggestion": suggestion.to_dict(), "path": evidence_url},
        idempotency_key="evidence",
    )
    return {
        "suggested": suggestion.scenario,
        "reasons": suggestion.reasons.get(suggestion.scenario or "", []),
        "scores": suggestion.scores,
        "highlights": highlights,
        "chart": chart_url,
        "path": evidence_url,
        "metric_api_calls": metrics["api_calls"],
    }


def _jst_text(value: Any) -> str:
    """`MM/DD HH:MM` in the runbook's time zone (people read Japan time)."""
    if not value:
        return "—"
    try:
        return _aware(value).astimezone(load().tz).strftime("%m/%d %H:%M")
    except ValueError:
        return str(value)


def _highlights(evidence: dict[str, Any]) -> list[str]:
    lines = []
    logs = evidence.get("logs") or {}
    for name, group in (logs.get("groups") or logs).items():
        if isinstance(group, dict) and "count" in group:
            lines.append(f"ログ {name}: ERROR {group['count']}件")
    alarms = [a.get("name") or a.get("AlarmName") for a in evidence.get("alarms") or []]
    if alarms:
        lines.append("ALARM: " + ", ".join(str(a) for a in alarms))
    for series in (evidence.get("metrics") or {}).values():
        values = series.get("values") or []
        if values:
            lines.append(f"{series.get('label_ja') or series.get('label')}: 最大 {max(values):g}")
    sentry = evidence.get("sentry") or {}
    if sentry.get("new") or sentry.get("spiking"):
        lines.append(f"Sentry: 新規 {len(sentry.get('new') or [])}件 / 急増 {len(sentry.get('spiking') or [])}件")
    for deploy in evidence.get("deploys") or []:
        lines.append(f"デプロイ: {deploy.get('service')} {_jst_text(deploy.get('at'))}")
    return lines


# --- Phase 3: recover (the remediation steps run in incident_ops.operators.remediation) ------------


# --- Phase 4: verify and announce ------------------------------------------------------------------


def run_functional_checks(incident: dict[str, Any]) -> list[dict[str, Any]]:
    from incident_ops.clients.health import run_functional_checks as run_checks

    runbook = load()
    env = runbook.environment(incident["environment"])
    services = services_for(incident["environment"])
    results = [_jsonable(r) for r in run_checks(services.api, env.functional_checks, services.settings.secrets)]
    failed = [r for r in results if not r["ok"]]
    Ledger().record_event(
        incident["id"], at=_now(), kind="functional_checks", actor="incident_ops",
        message="、".join(phrase("event.functional_check", plain=True, label=r["label"], ok=r["ok"],
                                elapsed_ms=r.get("elapsed_ms")) for r in results),
        data={"results": results}, idempotency_key="functional_checks",
    )
    if failed:
        raise RuntimeError("functional checks failed: " + "; ".join(f"{r['label']}: {r.get('reason')}" for r in failed))
    return results


def actions_taken(ledger: Ledger, incident_id: str) -> list[dict[str, Any]]:
    """The remediation reports recorded by the steps, in order (with who approved them)."""
    return [event["data"] for event in ledger.events(incident_id) if event["kind"] == "action" and event.get("data")]


def _suggestion(ledger: Ledger, incident_id: str) -> dict[str, Any]:
    """The evidence's suggestion ({"scenario", "scores", "reasons"}) as Phase 2 recorded it."""
    for event in ledger.events(incident_id):
        if event["kind"] == "evidence" and isinstance((event.get("data") or {}).get("suggestion"), dict):
            return event["data"]["suggestion"]
    return {}


def _chosen_scenario(ledger: Ledger, incident_id: str) -> str | None:
    runbook = load()
    for event in ledger.events(incident_id):
        chosen = str((event.get("data") or {}).get("chosen") or "") if event["kind"] == "scenario_chosen" else ""
        for name in runbook.scenarios:
            if chosen == name or chosen.startswith(f"{name}:") or chosen.startswith(f"{name} "):
                return name
    return None


def announce_recovery(incident: dict[str, Any]) -> dict[str, Any]:
    """復旧宣言 in the runbook's template, ledger recovered (postmortem due), PagerDuty resolved."""
    runbook = load()
    services = services_for(incident["environment"])
    ledger = Ledger()
    record = ledger.get(incident["id"])
    actions = actions_taken(ledger, incident["id"])
    suggestion = _suggestion(ledger, incident["id"])
    # The scenario a step acted on; else the one people chose or the evidence suggested.
    scenario = record.get("scenario") or _chosen_scenario(ledger, incident["id"]) or suggestion.get("scenario")
    recovered_at = _aware(record["recovered_at"]) if record.get("recovered_at") else _now()
    schedule = postmortem_schedule(runbook, incident["severity"], recovered_at)
    cause = narrative.cause_text(runbook, scenario, suggestion)
    record = ledger.mark_recovered(incident["id"], recovered_at, cause=cause,
                                   postmortem_due_at=schedule.due_at if schedule.required else None)
    text = messages.render_recovery(
        runbook, detected_at=_aware(incident["detected_at"]), recovered_at=recovered_at, cause=cause,
        actions=narrative.actions_summary(actions), postmortem_required=schedule.required,
    )
    if services.slack is not None:
        for where in filter(None, (runbook.contacts.channels["dev_team"], record.get("slack_channel_id"))):
            services.slack.post(where, text, idempotency_key=f"{incident['id']}:recovery:{where}")
    if services.pager is not None and services.pager.events is not None and was_paged(ledger, incident["id"]):
        services.pager.resolve(incident["id"])
    ledger.record_event(incident["id"], at=recovered_at, kind="recovered", actor="incident_ops",
                        message=text.splitlines()[1] if "\n" in text else text, idempotency_key="recovered")
    return {"recovered_at": _iso(recovered_at), "postmortem_due_at": _iso(schedule.due_at), "text": text}


# --- Phase 5: postmortem -------------------------------------------------------------------------


def write_postmortem(incident: dict[str, Any], evidence: dict[str, Any] | None) -> dict[str, Any]:
    """The draft with the runbook's sections, timeline from the ledger, written to the storage URL.

    The evidence and its chart are read from the URLs Phase 2 handed over (file:// or s3://), so this
    task may run on another worker than the one that collected them."""
    runbook = load()
    ledger = Ledger()
    record = ledger.get(incident["id"])
    timeline = ledger.events(incident["id"])
    actions = actions_taken(ledger, incident["id"])
    full_evidence: dict[str, Any] = {}
    if evidence and artifacts.exists(evidence.get("path")):
        full_evidence = json.loads(artifacts.read_text(evidence["path"]))
    summary = {
        "suggestion": full_evidence.get("suggestion"),
        "alarms": [a.get("name") or a.get("AlarmName") for a in full_evidence.get("alarms") or []],
        "deploys": full_evidence.get("deploys") or [],
        "highlights": (evidence or {}).get("highlights", []),
    }
    folder = artifacts.open_url(artifacts.postmortem_url(runbook))
    # Charts go beside the postmortem and are linked relative to it, so the draft reads the same
    # wherever the folder is copied or served.
    charts = []
    chart_url = (evidence or {}).get("chart")
    if chart_url and artifacts.exists(chart_url):
        name = artifacts.open_url(chart_url).name
        artifacts.write_bytes(folder / incident["id"] / name, artifacts.read_bytes(chart_url))
        charts.append(f"{incident['id']}/{name}")
    text = messages.render_postmortem(runbook, incident=record, timeline=timeline, evidence=summary,
                                      actions=actions, charts=charts)
    target = artifacts.write_text(folder / f"{incident['id']}.md", text)
    ledger.update(incident["id"], _now(), postmortem_path=target)
    ledger.record_event(incident["id"], at=_now(), kind="postmortem_draft", actor="incident_ops",
                        message=target, idempotency_key="postmortem_draft")
    services = services_for(incident["environment"])
    if services.slack is not None and record.get("slack_channel_id"):
        due = record.get("postmortem_due_at")
        due_text = messages.format_time_jst(_aware(due), runbook.tz) if due else "-"
        services.slack.post(
            record["slack_channel_id"],
            f"ポストモーテムのドラフトを作成しました: {target}\n期限: {_aware(due).astimezone(runbook.tz):%m/%d} {due_text}" if due
            else f"ポストモーテムのドラフトを作成しました: {target}",
            idempotency_key=f"{incident['id']}:postmortem",
        )
    return {"path": target}
