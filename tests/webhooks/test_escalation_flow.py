"""A higher severity for an open incident: `incident_escalate`'s task bodies against the sandbox's Slack
and PagerDuty (over HTTPS), after the incident's own run did its Phase 1 steps (the real functions)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sandbox.server import Sandbox

from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.flows import escalation as escalation_flow
from incident_ops.flows import incident as incident_flow
from incident_ops.services import IncidentServices, ServiceSettings


@pytest.fixture
def flows(sandbox: Sandbox, runbook: Runbook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    sandbox.client.reset(aws=False)
    endpoints = sandbox.endpoints
    env = {
        "SLACK_TOKEN": "xoxb-sandbox-token",
        "SLACK_API_URL": endpoints["slack_api"],
        "PAGERDUTY_ROUTING_KEY": "sandbox-routing-key",
        "PAGERDUTY_API_TOKEN": "sandbox-pagerduty-token",
        "PAGERDUTY_EVENTS_URL": endpoints["pagerduty"],
        "PAGERDUTY_REST_URL": endpoints["pagerduty"],
        "PAGERDUTY_FROM_EMAIL": "incident-ops@peoplebooster.com",
        "INCIDENT_OPS_CA_BUNDLE": endpoints["ca_bundle"],
    }
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", url)
    monkeypatch.setattr(incident_flow, "services_for",
                        lambda name: IncidentServices(ServiceSettings.from_env(runbook.environment(name), env)))
    return Ledger(url)


JST = dt.timezone(dt.timedelta(hours=9))
BUSINESS_HOURS = dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST)  # a Tuesday
NIGHT = dt.datetime(2026, 12, 4, 23, 0, tzinfo=JST)  # a Friday night


def pin_clock(monkeypatch: pytest.MonkeyPatch, at: dt.datetime) -> None:
    """The flows' notion of now: who is notified depends on it (a P3 at night also pages)."""
    monkeypatch.setattr(incident_flow, "_now", lambda: at)
    monkeypatch.setattr(escalation_flow, "_now", lambda: at)


def run_phase_one(symptom: str) -> dict[str, Any]:
    """What the incident_response run does first: open, declare/channel, notify."""
    params = {"symptom": symptom, "severity": "auto", "service": "backend", "environment": "production",
              "impact": "", "reporter": "test", "scenario": "auto", "check_mode": False, "alarm": {},
              "incident_id": None}
    incident = incident_flow.open_incident(params, run_id="manual__test", run_after=dt.datetime.now(dt.UTC))
    incident_flow.declare(incident)
    incident_flow.notify_responders(incident)
    return incident


def join_with(ledger: Ledger, incident: dict[str, Any], severity: str) -> None:
    record = ledger.get(incident["id"])
    ledger.open_or_join(fingerprint=record["fingerprint"], severity=severity, symptom=record["symptom"],
                        title="raised", service="backend", environment="production", reporter="webhook",
                        at=dt.datetime.now(dt.UTC), occurrence_key=f"raise-{severity}")


def test_waits_for_the_runs_first_notices(flows: Ledger) -> None:
    params = {"symptom": "診断機能が動作しない", "severity": "auto", "service": "backend", "environment": "production",
              "alarm": {}, "incident_id": None, "reporter": "t"}
    incident = incident_flow.open_incident(params, run_id="manual__wait", run_after=dt.datetime.now(dt.UTC))
    assert not escalation_flow.first_notice_sent(incident["id"])
    incident_flow.declare(incident)
    assert not escalation_flow.first_notice_sent(incident["id"])
    incident_flow.notify_responders(incident)
    assert escalation_flow.first_notice_sent(incident["id"])


def test_p2_to_p1_phones_the_cto_and_tells_the_channel_once(flows: Ledger, sandbox: Sandbox) -> None:
    incident = run_phase_one("診断機能が動作しない")  # P2: on-call paged, dev lead in Slack
    assert incident["severity"] == "P2"
    join_with(flows, incident, "P1")
    before_messages = len(sandbox.client.slack_messages())
    result = escalation_flow.raise_severity(incident["id"], "P1")
    assert result["escalated"] and (result["from"], result["to"]) == ("P2", "P1")
    sent = {(r["target"], r["via"]) for r in result["results"] if r["ok"]}
    assert sent == {("oncall", "pagerduty"), ("cto", "phone")}  # the P2 notices are not repeated
    triggers = [e for e in sandbox.client.pagerduty_events() if e["event_action"] == "trigger"]
    assert {e["dedup_key"] for e in triggers} == {incident["id"]}  # one PagerDuty incident, updated
    messages = sandbox.client.slack_messages()[before_messages:]
    raised = [m for m in messages if "【障害レベル引き上げ】P2 → P1" in m["text"]]
    assert len(raised) == 1 and raised[0]["channel"].startswith("incident-")
    assert not [m for m in messages if "インシデント発生】" in m["text"]]  # P2 was declared already

    again = escalation_flow.raise_severity(incident["id"], "P1")  # a retry repeats nothing
    assert again["already_done"]
    assert len(sandbox.client.slack_messages()) == before_messages + len(messages)
    kinds = [e["kind"] for e in flows.events(incident["id"])]
    assert kinds.count("escalated") == 1
    assert flows.get(incident["id"])["escalated_at"] is not None


def test_p3_to_p1_pages_and_declares(flows: Ledger, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_clock(monkeypatch, BUSINESS_HOURS)
    incident = run_phase_one("レポート生成が遅い")  # P3: dev team in Slack only, channel but no declaration
    assert incident["severity"] == "P3" and sandbox.client.pagerduty_events() == []
    join_with(flows, incident, "P1")
    escalation_flow.raise_severity(incident["id"], "P1")
    assert [e["event_action"] for e in sandbox.client.pagerduty_events()] == ["trigger"]
    declarations = [m for m in sandbox.client.slack_messages() if "【P1インシデント発生】" in m["text"]]
    assert len(declarations) == 2  # #dev-team and the incident channel
    assert "declared" in [e["kind"] for e in flows.events(incident["id"])]
    assert incident_flow.was_paged(flows, incident["id"])  # so acknowledge/resolve reach PagerDuty later


def test_triggered_by_hand_raises_the_ledger_too(flows: Ledger) -> None:
    incident = run_phase_one("レポート生成が遅い")
    result = escalation_flow.raise_severity(incident["id"], "P2")
    assert result["escalated"] and flows.get(incident["id"])["severity"] == "P2"
    assert "severity_raised" in [e["kind"] for e in flows.events(incident["id"])]


def test_nothing_to_do_for_a_lower_severity_or_a_closed_incident(flows: Ledger) -> None:
    incident = run_phase_one("診断機能が動作しない")
    assert escalation_flow.raise_severity(incident["id"], "P3") == {"escalated": False, "reason": "the incident is already P2"}
    flows.mark_recovered(incident["id"], dt.datetime.now(dt.UTC))
    assert escalation_flow.raise_severity(incident["id"], "P1")["escalated"] is False
    assert escalation_flow.first_notice_sent(incident["id"])  # a closed incident needs no waiting


def test_p3_at_night_opens_a_low_urgency_pagerduty_incident(flows: Ledger, sandbox: Sandbox,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # escalation.p3_off_hours_pagerduty: the on-call engineer gets a low-urgency incident (no phone call).
    pin_clock(monkeypatch, NIGHT)
    incident = run_phase_one("レポート生成が遅い")
    assert incident["severity"] == "P3"
    [trigger] = [e for e in sandbox.client.pagerduty_events() if e["event_action"] == "trigger"]
    assert (trigger["dedup_key"], trigger["payload"]["severity"]) == (incident["id"], "warning")
    [pd_incident] = sandbox.client.pagerduty_incidents()
    assert pd_incident["urgency"] == "low" and pd_incident["responder_requests"] == []
    texts = [m["text"] for m in sandbox.client.slack_messages() if m["channel"] == "dev-team"]
    assert any("PagerDuty で通知します（低緊急度: 電話なし）" in text for text in texts)
    assert incident_flow.was_paged(flows, incident["id"])
    # Acknowledged in the PagerDuty app: the acknowledgement wait finds it.
    sandbox.client.acknowledge(incident["id"])
    assert incident_flow.acknowledgement(incident)["source"] == "pagerduty"


def test_p3_paged_at_night_then_raised_to_p1_becomes_high_urgency(flows: Ledger, sandbox: Sandbox,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # PagerDuty keeps an open incident's urgency when a more severe alert of the same key arrives:
    # the raise makes it high itself, so the on-call engineer's high-urgency rules (the phone) apply.
    pin_clock(monkeypatch, NIGHT)
    incident = run_phase_one("レポート生成が遅い")
    [before] = sandbox.client.pagerduty_incidents()
    assert before["urgency"] == "low"
    join_with(flows, incident, "P1")
    result = escalation_flow.raise_severity(incident["id"], "P1")
    assert result["escalated"] and result["urgency_raised"] is True
    [after] = sandbox.client.pagerduty_incidents()
    assert (after["id"], after["urgency"]) == (before["id"], "high")  # the same incident, now high urgency
    assert [e["payload"]["severity"] for e in sandbox.client.pagerduty_events()
            if e["event_action"] == "trigger"] == ["warning", "critical"]
    # A second raise (a retried task, another alarm) pages nobody again and leaves it high.
    escalation_flow.raise_severity(incident["id"], "P1")
    assert len(sandbox.client.pagerduty_events()) == 2
    assert [i["urgency"] for i in sandbox.client.pagerduty_incidents()] == ["high"]


def test_a_raise_to_p3_keeps_a_low_urgency_page_low(flows: Ledger, sandbox: Sandbox,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pin_clock(monkeypatch, NIGHT)
    incident = run_phase_one("ページに誤字がある")
    assert incident["severity"] == "P4" and sandbox.client.pagerduty_events() == []
    join_with(flows, incident, "P3")
    result = escalation_flow.raise_severity(incident["id"], "P3")
    assert result["escalated"] and result["urgency_raised"] is False
    assert [i["urgency"] for i in sandbox.client.pagerduty_incidents()] == ["low"]
