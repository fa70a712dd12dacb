"""StepConditionOperator: a conditional step is decided from the ledger (and, for a ladder's next
rung, the service's health after the rung before it), recorded, and skipped with its reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.flows import incident as incident_flow
from incident_ops.operators.conditions import StepConditionOperator
from incident_ops.triggers.health import HealthTrigger

DETECTED = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(LEDGER_URL_ENV, url)
    settings = SimpleNamespace(health_url="https://api.example/health", verify="/ca.pem")
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: SimpleNamespace(settings=settings))
    ledger = Ledger(url)
    yield ledger
    ledger.dispose()


def incident(ledger: Ledger) -> str:
    opened, _ = ledger.open_or_join(fingerprint="production:backend:db", severity="P2", symptom="db", title="db",
                                    service="backend", environment="production", reporter="test", at=DETECTED)
    return opened["id"]


def record(ledger: Ledger, incident_id: str, step: str, action: str, *, ok: bool = True, changed: bool = True) -> None:
    data = {"step": step, "action": action, "ok": ok, "changed": changed, "skipped": False, "check_mode": False,
            "details": {}, "message": "failed: timed out" if not ok else "done"}
    ledger.record_event(incident_id, at=DETECTED, kind="action", message=step, data=data,
                        idempotency_key=f"action:{step}:apply")


def gate(incident_id: str, scenario: str, step: str, check_mode: bool = False) -> StepConditionOperator:
    return StepConditionOperator(task_id=f"when_{step}", scenario=scenario, step_id=step, environment="production",
                                 incident_id=incident_id, check_mode=check_mode)


def decisions(ledger: Ledger, incident_id: str) -> list[tuple[str, str]]:
    return [(e["kind"], e["message"]) for e in ledger.events(incident_id) if e["kind"].startswith("step_")]


def test_a_ladder_rung_waits_for_the_health_in_the_triggerer(ledger: Ledger, runbook) -> None:
    incident_id = incident(ledger)
    record(ledger, incident_id, "failover", "rds_failover")
    with pytest.raises(TaskDeferred) as deferred:
        gate(incident_id, "database", "restore").execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, HealthTrigger)
    ladder = runbook.ladder
    assert (trigger.url, trigger.consecutive, trigger.interval, trigger.timeout, trigger.verify) == (
        "https://api.example/health", ladder.consecutive_healthy, ladder.interval_seconds, ladder.settle_seconds,
        "/ca.pem")
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout > dt.timedelta(seconds=ladder.settle_seconds)


def test_healed_by_the_failover_the_restore_is_skipped_with_its_reason(ledger: Ledger) -> None:
    incident_id = incident(ledger)
    record(ledger, incident_id, "failover", "rds_failover")
    with pytest.raises(AirflowSkipException, match="フェイルオーバーで復旧したためスナップショット復元は不要"):
        gate(incident_id, "database", "restore").execute_complete({}, {"healthy": True, "consecutive": 3})
    assert decisions(ledger, incident_id) == [("step_skipped", "フェイルオーバーで復旧したためスナップショット復元は不要")]
    # a retry of the gate records nothing twice
    with pytest.raises(AirflowSkipException):
        gate(incident_id, "database", "restore").execute_complete({}, {"healthy": True, "consecutive": 3})
    assert len(decisions(ledger, incident_id)) == 1


def test_still_unhealthy_the_restore_is_offered(ledger: Ledger) -> None:
    incident_id = incident(ledger)
    record(ledger, incident_id, "failover", "rds_failover")
    decision = gate(incident_id, "database", "restore").execute_complete(
        {}, {"healthy": False, "consecutive": 0, "reason": "not 3x healthy within 180s"})
    assert decision["run"] and decision["reason"] == "フェイルオーバーの後もサービスが復旧していないためスナップショット復元を提案"
    assert decision["health"] == {"healthy": False, "consecutive": 0, "reason": "not 3x healthy within 180s"}
    assert decisions(ledger, incident_id) == [("step_decision", decision["reason"])]


def test_no_health_wait_for_a_support_case_or_in_check_mode(ledger: Ledger) -> None:
    incident_id = incident(ledger)
    record(ledger, incident_id, "failover", "rds_failover", ok=False, changed=False)
    decision = gate(incident_id, "database", "support_case").execute({})
    assert decision["run"] and "フェイルオーバーが AWS 側で失敗した" in decision["reason"]
    dry = gate(incident_id, "database", "restore", check_mode="True").execute({})
    assert dry["run"] and dry["reason"].startswith("チェックモード")


def test_nothing_failed_at_aws_no_support_case(ledger: Ledger) -> None:
    incident_id = incident(ledger)
    record(ledger, incident_id, "failover", "rds_failover")
    with pytest.raises(AirflowSkipException, match="AWS サポートへの問い合わせは不要"):
        gate(incident_id, "database", "support_case").execute({})
