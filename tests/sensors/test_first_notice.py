"""FirstNoticeSensor (incident_escalate's first wait): returns at once when the incident's run already
sent its first notices, else defers to `FirstNoticeTrigger` (tests/triggers/test_incident_waits.py runs
it); at its deadline the task fails as the reschedule-mode sensor's timeout did (AirflowSensorTimeout:
no retry, the raise does not run). Ledger on SQLite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.sensors.acknowledgement import DEFER_GRACE_SECONDS
from incident_ops.sensors.first_notice import FirstNoticeSensor
from incident_ops.triggers.incident_waits import FirstNoticeTrigger

NOW = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv(LEDGER_URL_ENV, f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    yield ledger
    ledger.dispose()


@pytest.fixture
def incident_id(ledger: Ledger) -> str:
    record, _ = ledger.open_or_join(fingerprint="fp", severity="P2", symptom="s", title="t", service="backend",
                                    environment="production", reporter="test", at=NOW, occurrence_key="o",
                                    detected_at=NOW)
    return record["id"]


def sensor(incident_id: str) -> FirstNoticeSensor:
    return FirstNoticeSensor(task_id="wait_for_first_notice", incident_id=incident_id, timeout_seconds=30 * 60)


def first_notices(ledger: Ledger, incident_id: str) -> None:
    """What the incident's run records when it paged and declared."""
    for kind in ("notified", "declared"):
        ledger.record_event(incident_id, at=NOW, kind=kind, actor="incident_ops", message=kind, idempotency_key=kind)


def test_sent_already_it_returns_without_deferring(ledger: Ledger, incident_id: str) -> None:
    first_notices(ledger, incident_id)
    assert sensor(incident_id).execute({}) is None


def test_not_sent_yet_it_defers_for_30_minutes(ledger: Ledger, incident_id: str) -> None:
    ledger.record_event(incident_id, at=NOW, kind="notified", actor="incident_ops", message="m",
                        idempotency_key="notified")  # paged, but no channel or declaration yet
    before = dt.datetime.now(dt.UTC).timestamp()
    with pytest.raises(TaskDeferred) as raised:
        sensor(incident_id).execute({})
    after = dt.datetime.now(dt.UTC).timestamp()
    trigger = raised.value.trigger
    assert isinstance(trigger, FirstNoticeTrigger) and trigger.incident_id == incident_id
    assert before + 30 * 60 <= trigger.deadline <= after + 30 * 60
    assert raised.value.method_name == "execute_complete"
    assert raised.value.timeout == dt.timedelta(seconds=30 * 60 + DEFER_GRACE_SECONDS)


def test_an_unknown_incident_fails_the_look_before_any_wait(ledger: Ledger) -> None:
    with pytest.raises(Exception, match="INC-20990101-000000"):
        sensor("INC-20990101-000000").execute({})


def test_resumed_with_the_first_notice_it_succeeds(incident_id: str) -> None:
    assert sensor(incident_id).execute_complete({}, event={"first_notice": True}) is None


def test_resumed_at_the_deadline_it_fails_without_retry(incident_id: str) -> None:
    with pytest.raises(AirflowSensorTimeout, match=incident_id):
        sensor(incident_id).execute_complete({}, event={"timeout": True, "deadline": NOW.isoformat()})


def test_a_lost_trigger_fails_the_same_way(incident_id: str) -> None:
    with pytest.raises(AirflowSensorTimeout):
        sensor(incident_id).resume_execution("__fail__", {"error": "Trigger timeout"}, {})

