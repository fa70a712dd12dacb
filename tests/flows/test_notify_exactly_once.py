"""Notices per channel and target, exactly once (flows/incident.py notify_responders, flows/escalation.py
raise_severity): a retry after a failure reaches people, sends only what failed, and `notified` /
`escalated` is recorded once every required notice went out. Against a recording Slack and a
PagerDuty that fails on demand (no server)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.clients.pagerduty import PagerDutyError
from incident_ops.core.ledger import Ledger
from incident_ops.flows import escalation as escalation_flow
from incident_ops.flows import incident as incident_flow
from tests.flows.scheduled.conftest import RecordingSlack

JST = dt.timezone(dt.timedelta(hours=9))
BUSINESS_HOURS = dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST)  # a Tuesday


class FlakySlack(RecordingSlack):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def invite(self, channel: str, user_ids: list[str]) -> None:
        pass

    def post(self, channel: str, text: str, **kwargs: Any) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            self.calls += 1
            raise RuntimeError("slack: internal_error")
        return super().post(channel, text, **kwargs)


class FlakyPager:
    """Events API triggers and responder requests (the phone call), each failing `n` times on demand."""

    events = True
    rest = True

    def __init__(self) -> None:
        self.triggers: list[tuple[str, str]] = []
        self.responders: list[str] = []
        self.trigger_failures = 0
        self.responder_failures = 0

    def trigger(self, dedup_key: str, summary: str, severity: str, source: str, **_: Any) -> str:
        if self.trigger_failures:
            self.trigger_failures -= 1
            raise PagerDutyError(f"trigger event {dedup_key}", "server error", 500)
        self.triggers.append((dedup_key, severity))
        return dedup_key

    def incident_for_dedup_key(self, dedup_key: str) -> dict[str, Any] | None:
        return {"id": f"PD-{dedup_key}"} if self.triggers else None

    def wait_for_incident(self, dedup_key: str, **_: Any) -> dict[str, Any]:
        return {"id": f"PD-{dedup_key}"}

    def add_responder(self, incident_id: str, user_id: str, message: str, requester_id: str) -> dict[str, Any]:
        if self.responder_failures:
            self.responder_failures -= 1
            raise PagerDutyError(f"responder request for {user_id}", "server error", 500)
        self.responders.append(user_id)
        return {"id": f"RR{len(self.responders)}"}


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setattr(incident_flow, "_now", lambda: BUSINESS_HOURS)
    monkeypatch.setattr(escalation_flow, "_now", lambda: BUSINESS_HOURS)
    found = SimpleNamespace(slack=FlakySlack(), pager=FlakyPager(), settings=SimpleNamespace(smtp=None))
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: found)
    return found


def open_incident(symptom: str) -> dict[str, Any]:
    params = {"symptom": symptom, "severity": "auto", "service": "backend", "environment": "production",
              "impact": "", "reporter": "test", "scenario": "auto", "check_mode": False, "alarm": {},
              "incident_id": None}
    return incident_flow.open_incident(params, run_id="manual__test", run_after=BUSINESS_HOURS)


def kinds(incident: dict[str, Any]) -> list[str]:
    return [event["kind"] for event in Ledger().events(incident["id"])]


def test_the_retry_after_a_failed_page_reaches_the_oncall(services: SimpleNamespace) -> None:
    incident = open_incident("診断機能が動作しない")  # P2: PagerDuty (required) + the dev lead in Slack
    assert incident["severity"] == "P2"
    services.pager.trigger_failures = 5  # the package's own retries are spent: PagerDuty is down
    with pytest.raises(RuntimeError, match="required notices"):
        incident_flow.notify_responders(incident)
    assert "notified" not in kinds(incident) and "failure" in kinds(incident)
    slack_calls = services.slack.calls
    assert len(services.slack.messages) == 1  # the Slack notice went out on the first attempt

    services.pager.trigger_failures = 0  # PagerDuty is back: Airflow's retry
    report = incident_flow.notify_responders(incident)
    assert services.pager.triggers == [(incident["id"], "P2")]  # the page reached the on-call
    assert services.slack.calls == slack_calls  # the Slack notice is not sent again
    results = {(r["target"], r["via"]): r for r in report["results"]}
    assert results[("dev_lead", "slack")]["earlier"] and results[("oncall", "pagerduty")]["ok"]
    assert kinds(incident).count("notified") == 1
    assert incident_flow.notify_responders(incident)["already_done"]  # a re-run sends nothing
    assert services.pager.triggers == [(incident["id"], "P2")] and services.slack.calls == slack_calls


def test_the_p1_phone_call_is_placed_once_and_the_page_not_repeated(services: SimpleNamespace) -> None:
    incident = open_incident("ログインできない")  # P1: PagerDuty + the CTO by phone, both required
    services.pager.responder_failures = 1
    with pytest.raises(RuntimeError, match="cto"):
        incident_flow.notify_responders(incident)
    assert services.pager.triggers == [(incident["id"], "P1")] and services.pager.responders == []
    assert incident_flow.was_paged(Ledger(), incident["id"])  # the page of the failed attempt counts

    incident_flow.notify_responders(incident)
    assert services.pager.triggers == [(incident["id"], "P1")]  # not triggered twice
    assert len(services.pager.responders) == 1  # one phone call
    assert kinds(incident).count("notified") == 1


def test_an_optional_channel_failing_does_not_fail_the_step(services: SimpleNamespace) -> None:
    incident = open_incident("診断機能が動作しない")  # P2: the dev lead's Slack mention is optional
    services.slack.failures = 1
    report = incident_flow.notify_responders(incident)
    results = {(r["target"], r["via"]): r for r in report["results"]}
    assert results[("oncall", "pagerduty")]["ok"] and not results[("dev_lead", "slack")]["ok"]
    assert "notified" in kinds(incident) and "failure" not in kinds(incident)


def test_a_p3_in_business_hours_requires_its_slack_notice(services: SimpleNamespace) -> None:
    incident = open_incident("レポート生成が遅い")  # P3: #dev-team in Slack only
    services.slack.failures = 1
    with pytest.raises(RuntimeError, match="dev_team"):
        incident_flow.notify_responders(incident)
    incident_flow.notify_responders(incident)
    assert len(services.slack.to("#dev-team")) == 1 and "notified" in kinds(incident)


def test_the_unacknowledged_escalation_retries_only_the_phone_call(services: SimpleNamespace) -> None:
    incident = open_incident("ログインできない")
    incident_flow.notify_responders(incident)
    services.pager.responder_failures = 1  # unacknowledged P1: the CTO's call (required) + the dev lead (Slack)
    with pytest.raises(RuntimeError, match="cto"):
        incident_flow.notify_responders(incident, unacknowledged=True)
    assert "escalated" not in kinds(incident)
    slack_calls = services.slack.calls
    calls_before = len(services.pager.responders)

    incident_flow.notify_responders(incident, unacknowledged=True)
    assert len(services.pager.responders) == calls_before + 1
    assert services.slack.calls == slack_calls  # the dev lead is not told twice
    assert kinds(incident).count("escalated") == 1
    assert Ledger().get(incident["id"])["escalated_at"] is not None


def test_a_raise_retries_what_failed_and_nothing_else(services: SimpleNamespace) -> None:
    incident = open_incident("診断機能が動作しない")  # P2
    incident_flow.notify_responders(incident)
    triggers_before = len(services.pager.triggers)
    services.pager.responder_failures = 1  # P2 → P1: the CTO's phone call fails first
    with pytest.raises(RuntimeError, match="cto"):
        escalation_flow.raise_severity(incident["id"], "P1")
    assert "escalated" not in kinds(incident)
    assert len(services.pager.triggers) == triggers_before + 1  # PagerDuty updated to P1 once

    result = escalation_flow.raise_severity(incident["id"], "P1")
    assert result["escalated"] and not result.get("already_done")
    assert len(services.pager.triggers) == triggers_before + 1  # not sent again on the retry
    assert len(services.pager.responders) == 1
    assert escalation_flow.raise_severity(incident["id"], "P1")["already_done"]
    assert kinds(incident).count("escalated") == 1


def test_a_failed_first_notice_does_not_hold_up_a_raise(services: SimpleNamespace) -> None:
    incident = open_incident("診断機能が動作しない")
    Ledger().record_event(incident["id"], at=BUSINESS_HOURS, kind="channel_opened", actor="incident_ops",
                          message="#incident-20261201", idempotency_key="declared")  # what declare records
    assert not escalation_flow.first_notice_sent(incident["id"])
    services.pager.trigger_failures = 5
    with pytest.raises(RuntimeError):
        incident_flow.notify_responders(incident)
    assert escalation_flow.first_notice_sent(incident["id"])


def test_the_intakes_page_stands_for_the_trigger_not_the_phone_call(services: SimpleNamespace) -> None:
    incident = open_incident("ログインできない")
    Ledger().record_event(incident["id"], at=BUSINESS_HOURS, kind="paged", actor="webhook-intake", message="paged",
                          data={"dedup_key": incident["id"], "severity": "P1", "ok": True}, idempotency_key="paged")
    services.pager.triggers.append((incident["id"], "P1"))  # what PagerDuty got from the intake
    report = incident_flow.notify_responders(incident)
    assert services.pager.triggers == [(incident["id"], "P1")]  # the DAG sent no trigger
    assert len(services.pager.responders) == 1  # the call is the DAG's
    results = {(r["target"], r["via"]): r for r in report["results"]}
    assert results[("oncall", "pagerduty")]["by"] == "webhook-intake"
    assert "by" not in results[("cto", "phone")]
