"""The halfway reminder's trigger (DecisionReminderTrigger) against a temporary ledger, run with
asyncio, and the operator that defers to it (DecisionReminderOperator)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.flows import decisions as flow
from incident_ops.operators.decision_reminder import DecisionReminderOperator
from incident_ops.triggers.decision_reminder import DecisionReminderTrigger, halfway

TASK = "recover.database.approve_failover"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(LEDGER_URL_ENV, url)
    ledger = Ledger(url)
    yield ledger
    ledger.dispose()


def open_incident(ledger: Ledger) -> str:
    incident, _ = ledger.open_or_join(fingerprint="production:backend:db", severity="P1", symptom="DB", title="DB",
                                      service="backend", environment="production", reporter="test",
                                      at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    return incident["id"]


def post(ledger: Ledger, incident_id: str, *, at: dt.datetime, deadline: dt.datetime, task_id: str = TASK) -> None:
    """What flows.decisions.announce records."""
    ledger.record_event(incident_id, at=at, kind="decision_posted", actor="incident_ops", message="判断を依頼: x",
                        data={"task_id": task_id, "channel": "C1", "ts": "1.1", "subject": "x",
                              "deadline": deadline.isoformat(), "on_timeout": "o", "try_number": 1},
                        idempotency_key=f"decision:{task_id}:1")


def first_event(trigger: DecisionReminderTrigger, seconds: float = 10.0) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(run(), seconds))


def test_halfway() -> None:
    start = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
    assert halfway(start, start + dt.timedelta(minutes=15)) == start + dt.timedelta(minutes=7, seconds=30)


def test_answered_when_the_ledger_has_the_answer(ledger: Ledger) -> None:
    incident_id = open_incident(ledger)
    now = dt.datetime.now(dt.UTC)
    post(ledger, incident_id, at=now, deadline=now + dt.timedelta(minutes=15))
    ledger.record_event(incident_id, at=now, kind="approval", message="承認", idempotency_key="approval:failover")
    trigger = DecisionReminderTrigger(incident_id, TASK, "failover", give_up=time.time() + 60, poll_seconds=0.05)
    assert first_event(trigger) == {"outcome": "answered", "task_id": TASK}


def test_answered_for_the_scenario_choice(ledger: Ledger) -> None:
    incident_id = open_incident(ledger)
    now = dt.datetime.now(dt.UTC)
    post(ledger, incident_id, at=now, deadline=now + dt.timedelta(minutes=10), task_id="recover.choose_scenario")
    ledger.record_event(incident_id, at=now, kind="decision_answered", message="m",
                        idempotency_key="decision_answered:recover.choose_scenario")
    trigger = DecisionReminderTrigger(incident_id, "recover.choose_scenario", None, give_up=time.time() + 60,
                                      poll_seconds=0.05)
    assert first_event(trigger)["outcome"] == "answered"


def test_answered_by_a_persons_consent_without_a_message(ledger: Ledger) -> None:
    """A consent gate a person's choice answered was never posted: the reminder ends at once."""
    incident_id = open_incident(ledger)
    ledger.record_event(incident_id, at=dt.datetime.now(dt.UTC), kind="approval", message="m",
                        data={"consent": True}, idempotency_key="approval:rollback")
    trigger = DecisionReminderTrigger(incident_id, "recover.deploy.approve_rollback", "rollback",
                                      give_up=time.time() + 60, poll_seconds=0.05)
    assert first_event(trigger)["outcome"] == "answered"


def test_due_at_halfway_when_posted_and_unanswered(ledger: Ledger) -> None:
    incident_id = open_incident(ledger)
    now = dt.datetime.now(dt.UTC)
    post(ledger, incident_id, at=now, deadline=now + dt.timedelta(seconds=1.6))  # halfway in 0.8 s
    trigger = DecisionReminderTrigger(incident_id, TASK, "failover", give_up=time.time() + 60, poll_seconds=0.05)
    started = time.monotonic()
    assert first_event(trigger) == {"outcome": "due", "task_id": TASK}
    assert 0.5 <= time.monotonic() - started < 5


def test_not_due_before_halfway(ledger: Ledger) -> None:
    incident_id = open_incident(ledger)
    now = dt.datetime.now(dt.UTC)
    post(ledger, incident_id, at=now, deadline=now + dt.timedelta(minutes=15))
    trigger = DecisionReminderTrigger(incident_id, TASK, "failover", give_up=time.time() + 1.0, poll_seconds=0.05)
    assert first_event(trigger)["outcome"] == "gone"  # give_up came first


def test_an_answer_of_an_earlier_try_does_not_count(ledger: Ledger) -> None:
    incident_id = open_incident(ledger)
    now = dt.datetime.now(dt.UTC)
    ledger.record_event(incident_id, at=now - dt.timedelta(minutes=30), kind="decision_answered", message="m",
                        idempotency_key=f"decision_answered:{TASK}")
    post(ledger, incident_id, at=now - dt.timedelta(minutes=1), deadline=now + dt.timedelta(seconds=1))
    trigger = DecisionReminderTrigger(incident_id, TASK, "failover", give_up=time.time() + 60, poll_seconds=0.05)
    assert first_event(trigger)["outcome"] == "due"


def test_gone_after_give_up(ledger: Ledger) -> None:
    incident_id = open_incident(ledger)
    trigger = DecisionReminderTrigger(incident_id, TASK, "failover", give_up=time.time() + 0.3, poll_seconds=0.05)
    assert first_event(trigger) == {"outcome": "gone", "task_id": TASK}


def test_serialize_round_trips() -> None:
    trigger = DecisionReminderTrigger("INC-1", TASK, "failover", give_up=123.5, poll_seconds=2.0)
    path, kwargs = trigger.serialize()
    assert path == "incident_ops.triggers.decision_reminder.DecisionReminderTrigger"
    again = DecisionReminderTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)


# --- the operator ------------------------------------------------------------------------------------


def reminder(check_mode: bool | str = False) -> DecisionReminderOperator:
    return DecisionReminderOperator(task_id="remind_failover", incident_id="INC-1", decision_task_id=TASK,
                                    step_id="failover", response_timeout=dt.timedelta(minutes=15),
                                    check_mode=check_mode)


def test_the_operator_defers_until_past_the_deadline() -> None:
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        reminder().execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, DecisionReminderTrigger)
    assert (trigger.incident_id, trigger.decision_task_id, trigger.step_id) == ("INC-1", TASK, "failover")
    assert before + 15 * 60 + 60 <= trigger.give_up <= time.time() + 15 * 60 + 60
    assert deferred.value.method_name == "execute_complete"


@pytest.mark.parametrize("flag", [True, "True", "true"])
def test_the_operator_is_skipped_in_check_mode(flag: bool | str) -> None:
    with pytest.raises(AirflowSkipException, match="check mode"):
        reminder(flag).execute({})


def test_the_operator_reminds_only_when_due(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(flow, "remind", lambda *args: calls.append(args) or {"reminded": True, "to": "tanaka"})
    for outcome in ("answered", "gone"):
        assert reminder().execute_complete({}, {"outcome": outcome}) == {"reminded": False, "reason": outcome}
    assert calls == []
    assert reminder().execute_complete(SimpleNamespace(), {"outcome": "due"}) == {"reminded": True, "to": "tanaka"}
    assert calls == [("INC-1", TASK, "failover")]
