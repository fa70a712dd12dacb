"""AcknowledgementSensor: how long it waits for someone to start the response before the escalation
takes over. It looks once, then defers to `AcknowledgementTrigger` (tests/triggers/test_incident_waits.py
runs the trigger); its resumption maps the trigger's event to the XCom value or a skip (soft fail). The
ledger is on SQLite, PagerDuty absent unless a test gives one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from incident_ops.core.ledger import Ledger
from incident_ops.flows import incident as incident_flow
from incident_ops.sensors.acknowledgement import DEFER_GRACE_SECONDS, AcknowledgementSensor, seconds_until
from incident_ops.triggers.incident_waits import AcknowledgementTrigger


class NoPagerDuty:
    pager = None


@pytest.fixture
def now() -> dt.datetime:
    """The test's start: the sensor compares deadlines with the real clock."""
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", url)
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: NoPagerDuty())
    return Ledger(url)


def open_incident(ledger: Ledger, now: dt.datetime, severity: str, detected_minutes_ago: float) -> dict[str, Any]:
    detected = now - dt.timedelta(minutes=detected_minutes_ago)
    record, _ = ledger.open_or_join(fingerprint=f"fp-{severity}-{detected_minutes_ago}", severity=severity,
                                    symptom="s", title="t", service="backend", environment="production",
                                    reporter="test", at=detected, occurrence_key="o", detected_at=detected)
    # What open_incident hands the sensor (its deadline is the one of the severity at the start).
    return {"id": record["id"], "environment": "production", "severity": severity,
            "response_deadline": incident_flow.current_response_deadline({"id": record["id"]}).isoformat()}


def sensor(incident: dict[str, Any]) -> AcknowledgementSensor:
    return AcknowledgementSensor(task_id="wait_for_ack", incident=incident)


def deferred(incident: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as raised:
        sensor(incident).execute({})
    return raised.value


def test_not_acknowledged_it_defers_until_the_deadline_of_the_severity(ledger: Ledger, now: dt.datetime) -> None:
    # P1 (15 min): detected 10 min ago, 5 min left. The wait is the triggerer's, to that deadline.
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=10)
    deferral = deferred(incident)
    trigger = deferral.trigger
    assert isinstance(trigger, AcknowledgementTrigger)
    deadline = incident_flow.current_response_deadline(incident)
    assert (trigger.incident_id, trigger.environment, trigger.deadline) == (incident["id"], "production",
                                                                              deadline.timestamp())
    assert trigger.poll < trigger.pagerduty_poll  # the ledger often, PagerDuty as the fallback
    assert deferral.method_name == "execute_complete"
    # Airflow ends a lost trigger's wait only after the deadline (then the sensor is skipped, below).
    left = seconds_until(deadline, now)
    assert left < deferral.timeout.total_seconds() <= left + DEFER_GRACE_SECONDS


def test_already_acknowledged_it_returns_at_once_without_deferring(ledger: Ledger, now: dt.datetime) -> None:
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=1)
    ledger.acknowledge(incident["id"], now, "tanaka")
    found = sensor(incident).execute({})
    assert (found["by"], found["source"]) == ("tanaka", "ledger")


def test_past_the_deadline_it_is_skipped_at_once_for_the_escalation(ledger: Ledger, now: dt.datetime) -> None:
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=16)
    with pytest.raises(AirflowSkipException, match="escalation takes over"):
        sensor(incident).execute({})


def test_acknowledged_past_the_deadline_still_counts(ledger: Ledger, now: dt.datetime) -> None:
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=16)
    ledger.acknowledge(incident["id"], now, "tanaka")
    assert sensor(incident).execute({})["by"] == "tanaka"


def test_a_raised_severity_shortens_the_wait(ledger: Ledger, now: dt.datetime) -> None:
    # P2 (30 min), detected 20 min ago: it defers. A P1 alarm joins it (the ledger raises the
    # severity): P1's 15 min have passed, so the escalation takes over now.
    incident = open_incident(ledger, now, "P2", detected_minutes_ago=20)
    assert deferred(incident).trigger.deadline == incident_flow.current_response_deadline(incident).timestamp()
    record = ledger.get(incident["id"])
    ledger.open_or_join(fingerprint=record["fingerprint"], severity="P1", symptom="s", title="t",
                        service="backend", environment="production", reporter="webhook", at=now,
                        occurrence_key="raise")
    assert ledger.get(incident["id"])["severity"] == "P1"
    with pytest.raises(AirflowSkipException):
        sensor(incident).execute({})


def test_resumed_with_the_acknowledgement_it_returns_it_as_its_xcom_value(ledger: Ledger, now: dt.datetime) -> None:
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=1)
    found = {"by": "tanaka", "at": now.isoformat(), "source": "ledger"}
    assert sensor(incident).execute_complete({}, event={"acknowledged": found}) == found


def test_resumed_at_the_deadline_it_is_skipped_for_the_escalation(ledger: Ledger, now: dt.datetime) -> None:
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=15)
    with pytest.raises(AirflowSkipException, match=incident["id"]):
        sensor(incident).execute_complete({}, event={"timeout": True, "deadline": now.isoformat()})


def test_a_lost_trigger_past_airflows_timeout_is_skipped_too(ledger: Ledger, now: dt.datetime) -> None:
    # The triggerer never answered: Airflow resumes the task with __fail__ (trigger timeout).
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=15)
    with pytest.raises(AirflowSkipException):
        sensor(incident).resume_execution("__fail__", {"error": "Trigger timeout"}, {})


class AcknowledgedInPagerDuty:
    """PagerDuty's REST side as `acknowledgement` uses it: the incident was acknowledged in the app."""

    rest = True

    def __init__(self, acknowledged_at: dt.datetime) -> None:
        self.acknowledged_at = acknowledged_at
        self.lookups: list[str] = []

    def incident_for_dedup_key(self, dedup_key: str) -> dict[str, Any]:
        self.lookups.append(dedup_key)
        return {"acknowledged_at": self.acknowledged_at.isoformat(), "acknowledged_by": "PTANAKA"}


@pytest.mark.parametrize(("severity", "paged"), [("P1", True), ("P3", False)])
def test_pagerduty_is_asked_only_for_an_incident_it_paged(ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch,
                                                          severity: str, paged: bool) -> None:
    pagerduty = AcknowledgedInPagerDuty(acknowledged_at=now)
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: type("S", (), {"pager": pagerduty})())
    incident = open_incident(ledger, now, severity, detected_minutes_ago=1)
    if paged:  # what notify_responders records for a P1
        ledger.record_event(incident["id"], at=now, kind="notified", actor="incident_ops", message="oncall via pagerduty: ok",
                            data={"results": [{"target": "oncall", "via": "pagerduty", "ok": True}]},
                            idempotency_key="notified")
    found = incident_flow.acknowledgement(incident)
    if paged:
        assert found["source"] == "pagerduty" and ledger.get(incident["id"])["acknowledged_by"] == "PTANAKA"
    else:  # P3/P4 page nobody: no PagerDuty incident exists, so none is looked up
        assert found is None and pagerduty.lookups == []


def test_a_p3_paged_at_night_is_asked_in_pagerduty_too(ledger: Ledger, now: dt.datetime,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # escalation.p3_off_hours_pagerduty: outside business hours a P3 opens a low-urgency PagerDuty
    # incident, so the acknowledgement there ends the wait like a P1's.
    pagerduty = AcknowledgedInPagerDuty(acknowledged_at=now)
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: type("S", (), {"pager": pagerduty})())
    incident = open_incident(ledger, now, "P3", detected_minutes_ago=1)
    ledger.record_event(incident["id"], at=now, kind="notified", actor="incident_ops", message="night page",
                        data={"results": [{"target": "dev_team", "via": "slack", "ok": True},
                                          {"target": "oncall", "via": "pagerduty", "ok": True, "urgency": "low"}]},
                        idempotency_key="notified")
    found = incident_flow.acknowledgement(incident)
    assert found["source"] == "pagerduty" and pagerduty.lookups == [incident["id"]]


def test_a_p4_reported_on_friday_evening_waits_until_tuesday_9(ledger: Ledger) -> None:
    # 翌営業日可: work may start Monday 9:00 and the 24 h target counts from then.
    jst = dt.timezone(dt.timedelta(hours=9))
    detected = dt.datetime(2026, 12, 4, 18, 30, tzinfo=jst)
    record, _ = ledger.open_or_join(fingerprint="fp-p4-friday", severity="P4", symptom="s", title="t",
                                    service="backend", environment="production", reporter="test", at=detected,
                                    occurrence_key="o", detected_at=detected)
    deadline = incident_flow.current_response_deadline({"id": record["id"]})
    assert deadline == dt.datetime(2026, 12, 8, 9, 0, tzinfo=jst)
    first_poke = detected + dt.timedelta(minutes=1)
    assert seconds_until(deadline, first_poke) == (dt.timedelta(days=3, hours=14, minutes=29)).total_seconds()
