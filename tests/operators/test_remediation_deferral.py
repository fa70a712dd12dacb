"""RemediationOperator's long waits: in apply mode the GitHub run and the RDS restore are waited for in
the triggerer (the task defers, holding no worker slot); `execute_complete` finishes the step, runs the
fallback and records the reports as a step without a wait does. Check mode never defers."""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from incident_ops.actions import playbook
from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.flows import incident as incident_flow
from incident_ops.operators.remediation import DEFER_MARGIN_SECONDS, RemediationOperator
from incident_ops.triggers.github import GitHubRunTrigger
from incident_ops.triggers.rds import RdsRestoreTrigger

DETECTED = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC)
REPO = "peoplebooster/peoplebooster"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(LEDGER_URL_ENV, url)
    ledger = Ledger(url)
    services = SimpleNamespace(clients=lambda: None, settings=SimpleNamespace(action_overrides=lambda: {}))
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: services)
    yield ledger
    ledger.dispose()


def open_incident(ledger: Ledger, scenario: str) -> str:
    incident, _ = ledger.open_or_join(fingerprint=f"production:backend:{scenario}", severity="P1", symptom="down",
                                      title="down", service="backend", environment="production", reporter="test",
                                      at=DETECTED)
    return incident["id"]


def github_started(run_id: int = 4242) -> dict[str, Any]:
    """The report of `start_rollback` after a dispatch (what `run_step(defer_waits=True)` returns)."""
    details = {"repository": REPO, "workflow": "rollback.yml", "ref": "main",
               "inputs": {"environment": "production", "service": "backend", "version": "latest-1"},
               "command": "gh workflow run rollback.yml --ref main -f environment=production -f service=backend "
                          "-f version=latest-1", "run_id": run_id,
               playbook.WAIT_FOR: {"repository": REPO, "run_id": run_id, "timeout": 900.0, "poll": 15.0,
                                   "dispatched": True, "found_by": None}}
    return {"step": "rollback", "action": "github_rollback", "ok": True, "changed": True, "skipped": False,
            "before": None, "after": None, "message": f"rollback run {run_id} dispatched; waiting for it to complete "
            "(up to 900s)", "details": details, "check_mode": False}


def restore_started(incident_id: str) -> dict[str, Any]:
    cluster, instance = "peoplebooster-production-db-restore-x", "peoplebooster-production-db-1-restore-x"
    message = f"restored snapshot snap-1 into new cluster {cluster} (instance {instance}); ..."
    details = {"snapshot": "snap-1", "cluster": cluster, "instance": instance, "instance_class": "db.r6g.large",
               "source_cluster": "peoplebooster-production-db",
               playbook.WAIT_FOR: {"cluster": cluster, "instance": instance, "timeout": 1800.0, "poll": 30.0,
                                   "started": True, "message": message}}
    return {"step": "restore", "action": "rds_restore_snapshot", "ok": True, "changed": True, "skipped": False,
            "before": {"cluster": None, "instance": None}, "after": {"cluster": cluster, "instance": instance},
            "message": "restore started; waiting", "details": details, "check_mode": False}


def completed(conclusion: str | None, status: str = "completed", run_id: int = 4242) -> dict[str, Any]:
    return {"id": run_id, "status": status, "conclusion": conclusion, "display_title": "Rollback",
            "html_url": f"https://github.com/{REPO}/actions/runs/{run_id}", "created_at": "2026-11-02T01:05:00Z"}


def run_step_answering(monkeypatch: pytest.MonkeyPatch, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def run_step(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        calls.append(kwargs)
        return copy.deepcopy(reports)

    monkeypatch.setattr(playbook, "run_step", run_step)
    return calls


def operator(incident_id: str, scenario: str = "deploy", step_id: str = "rollback", **kwargs: Any) -> RemediationOperator:
    return RemediationOperator(task_id=step_id, scenario=scenario, step_id=step_id, environment="production",
                               service="backend", incident_id=incident_id, **kwargs)


def actions(ledger: Ledger, incident_id: str) -> list[dict[str, Any]]:
    return [e for e in ledger.events(incident_id) if e["kind"] == "action"]


def defer(op: RemediationOperator) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    return deferred.value


def test_the_github_run_wait_is_deferred_and_nothing_is_recorded_yet(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, "deploy")
    calls = run_step_answering(monkeypatch, [github_started()])

    deferred = defer(operator(incident_id))

    assert calls[0]["defer_waits"] is True and calls[0]["check_mode"] is False
    trigger = deferred.trigger
    assert isinstance(trigger, GitHubRunTrigger)
    assert (trigger.environment, trigger.repository, trigger.run_id, trigger.poll) == ("production", REPO, 4242, 15.0)
    assert time.time() + 890 < trigger.deadline <= time.time() + 900
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == dt.timedelta(seconds=900 + DEFER_MARGIN_SECONDS)
    assert deferred.kwargs == {"reports": [github_started()]}
    assert actions(ledger, incident_id) == []  # recorded when the wait is over


def test_execute_complete_records_a_successful_run_as_the_synchronous_step_did(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, "deploy")
    run_step_answering(monkeypatch, [github_started()])
    deferred = defer(operator(incident_id))

    reports = operator(incident_id).execute_complete(
        {}, event={"run": completed("success"), "timed_out": False}, **deferred.kwargs)

    assert [r["step"] for r in reports] == ["rollback"]
    report = reports[0]
    assert report["ok"] and report["changed"] and report["before"] is None
    assert report["message"] == f"rollback run 4242 dispatched and completed successfully https://github.com/{REPO}/actions/runs/4242"
    assert playbook.WAIT_FOR not in report["details"] and report["details"]["run_id"] == 4242
    assert report["after"]["conclusion"] == "success"
    events = actions(ledger, incident_id)
    assert [e["idempotency_key"] for e in events] == ["action:rollback:apply"]
    assert events[0]["data"]["message"] == report["message"]
    assert ledger.get(incident_id)["scenario"] == "deploy"


@pytest.mark.parametrize(("event", "said"), [
    ({"run": completed("failure"), "timed_out": False}, "rollback run 4242 concluded failure"),
    ({"run": completed(None, status="in_progress"), "timed_out": True},
     "rollback run 4242 did not complete within 900s (still in_progress)"),
    ({"error": "GET .../runs/4242 -> 502"}, "failed: github_rollback: GitHub API error: GET .../runs/4242 -> 502"),
])
def test_a_failed_or_timed_out_run_falls_back_to_the_ecs_rollback(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch, event: dict[str, Any], said: str) -> None:
    incident_id = open_incident(ledger, "deploy")
    run_step_answering(monkeypatch, [github_started()])
    deferred = defer(operator(incident_id))
    attempted: list[tuple[str, dict[str, Any]]] = []

    def attempt(runbook: Any, environment: str, step: Any, clients: Any, **kwargs: Any) -> dict[str, Any]:
        attempted.append((step.id, kwargs))
        return {"step": step.id, "action": step.action, "ok": True, "changed": True, "skipped": False,
                "before": {"taskDefinition": "td:8"}, "after": {"taskDefinition": "td:7"},
                "message": "rolled back to td:7", "details": {}, "check_mode": False}

    monkeypatch.setattr(playbook, "_attempt", attempt)
    reports = operator(incident_id).execute_complete({}, event=event, **deferred.kwargs)

    assert [(r["step"], r["ok"]) for r in reports] == [("rollback", False), ("ecs_rollback", True)]
    assert reports[0]["message"].startswith(said)
    assert [step for step, _ in attempted] == ["ecs_rollback"]
    assert attempted[0][1]["defer_waits"] is True and attempted[0][1]["check_mode"] is False
    events = actions(ledger, incident_id)
    assert [e["idempotency_key"] for e in events] == ["action:rollback:apply", "action:ecs_rollback:apply"]
    assert [e["data"]["ok"] for e in events] == [False, True]
    assert ledger.get(incident_id)["scenario"] == "deploy"


def test_the_rds_restore_wait_is_deferred_and_finished(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, "database")
    started = restore_started(incident_id)
    run_step_answering(monkeypatch, [started])
    op = operator(incident_id, scenario="database", step_id="restore", approved_by="U123")

    deferred = defer(op)

    trigger = deferred.trigger
    assert isinstance(trigger, RdsRestoreTrigger)
    assert (trigger.instance, trigger.cluster, trigger.timeout, trigger.poll) == (
        started["details"]["instance"], started["details"]["cluster"], 1800.0, 30.0)
    assert deferred.timeout == dt.timedelta(seconds=1800 + DEFER_MARGIN_SECONDS)

    reports = op.execute_complete({}, event={"state": "available", "endpoint": "x.cluster.example"}, **deferred.kwargs)

    assert reports[0]["ok"] and reports[0]["changed"] and reports[0]["approved_by"] == "U123"
    assert reports[0]["message"] == started["details"][playbook.WAIT_FOR]["message"]
    assert reports[0]["details"]["endpoint"] == "x.cluster.example"
    events = actions(ledger, incident_id)
    assert [e["idempotency_key"] for e in events] == ["action:restore:apply"] and events[0]["actor"] == "U123"


def test_a_failed_restore_fails_the_task_and_is_recorded(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, "database")
    run_step_answering(monkeypatch, [restore_started(incident_id)])
    op = operator(incident_id, scenario="database", step_id="restore", approved_by="U123")
    deferred = defer(op)

    with pytest.raises(AirflowException, match="step restore failed: failed: instance x is 'failed'"):
        op.execute_complete({}, event={"state": "failed", "message": "instance x is 'failed'; the restore failed"},
                            **deferred.kwargs)

    events = actions(ledger, incident_id)
    assert len(events) == 1 and events[0]["data"]["ok"] is False and events[0]["data"]["changed"] is False
    assert ledger.get(incident_id)["scenario"] is None


def test_check_mode_never_defers(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, "deploy")
    check = {**github_started(), "check_mode": True, "message": "would dispatch rollback.yml",
             "details": {"command": "gh workflow run rollback.yml"}}
    calls = run_step_answering(monkeypatch, [check])

    reports = operator(incident_id, check_mode=True).execute({})

    assert calls[0]["defer_waits"] is False and calls[0]["check_mode"] is True
    assert reports[0]["message"] == "would dispatch rollback.yml"
    assert [e["idempotency_key"] for e in actions(ledger, incident_id)] == ["action:rollback:check"]
