"""AcknowledgementSensor: how long it waits for someone to start the response before the escalation
takes over. Airflow's own sensor loop runs (reschedule mode), with the ledger on SQLite and no
PagerDuty; only the task instance's first-poke time is given by the test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException

from incident_ops.core.ledger import Ledger
from incident_ops.flows import incident as incident_flow
from incident_ops.sensors.acknowledgement import AcknowledgementSensor, seconds_until


class NoPagerDuty:
    pager = None


class FirstPoke:
    """The task instance, as far as a reschedule-mode sensor asks: when it first poked."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def get_first_reschedule_date(self, context: Any) -> dt.datetime:
        return self.at


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


def poke_once(incident: dict[str, Any], first_poke: dt.datetime) -> type[Exception]:
    sensor = AcknowledgementSensor(task_id="wait_for_ack", incident=incident)
    with pytest.raises((AirflowRescheduleException, AirflowSkipException)) as raised:
        sensor.execute({"ti": FirstPoke(first_poke)})
    return raised.type


def test_keeps_waiting_until_the_deadline_counted_from_the_first_poke(ledger: Ledger, now: dt.datetime) -> None:
    # P1 (15 min): detected 10 min ago, first poke 1 min after; 5 min are left, 9 have run. The wait
    # lasts to the deadline, not to the midpoint between first poke and deadline.
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=10)
    assert poke_once(incident, first_poke=now - dt.timedelta(minutes=9)) is AirflowRescheduleException


def test_past_the_deadline_it_is_skipped_for_the_escalation(ledger: Ledger, now: dt.datetime) -> None:
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=16)
    assert poke_once(incident, first_poke=now - dt.timedelta(minutes=15)) is AirflowSkipException


def test_an_acknowledgement_in_the_ledger_ends_the_wait(ledger: Ledger, now: dt.datetime) -> None:
    incident = open_incident(ledger, now, "P1", detected_minutes_ago=16)
    ledger.acknowledge(incident["id"], now, "tanaka")
    sensor = AcknowledgementSensor(task_id="wait_for_ack", incident=incident)
    found = sensor.execute({"ti": FirstPoke(now - dt.timedelta(minutes=15))})
    assert (found["by"], found["source"]) == ("tanaka", "ledger")


def test_a_raised_severity_shortens_the_wait(ledger: Ledger, now: dt.datetime) -> None:
    # P2 (30 min), detected 20 min ago: still waiting. A P1 alarm joins it (the ledger raises the
    # severity): P1's 15 min have passed, so the escalation takes over now.
    incident = open_incident(ledger, now, "P2", detected_minutes_ago=20)
    first_poke = now - dt.timedelta(minutes=19)
    assert poke_once(incident, first_poke) is AirflowRescheduleException
    record = ledger.get(incident["id"])
    ledger.open_or_join(fingerprint=record["fingerprint"], severity="P1", symptom="s", title="t",
                        service="backend", environment="production", reporter="webhook", at=now,
                        occurrence_key="raise")
    assert ledger.get(incident["id"])["severity"] == "P1"
    assert poke_once(incident, first_poke) is AirflowSkipException


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
