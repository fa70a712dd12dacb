"""RemediationOperator: what a step's try records in the ledger, including the retry of a killed try."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.actions import playbook
from incident_ops.actions.base import DONE_EARLIER
from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.flows import incident as incident_flow
from incident_ops.operators.remediation import RemediationOperator

DETECTED = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(LEDGER_URL_ENV, url)  # the operator's Ledger()
    ledger = Ledger(url)
    yield ledger
    ledger.dispose()


def report(*, changed: bool, details: dict[str, Any], ok: bool = True, check_mode: bool = False) -> dict[str, Any]:
    return {"step": "rollback", "action": "github_rollback", "ok": ok, "changed": changed, "skipped": False,
            "before": None, "after": {"id": 7, "conclusion": "success"},
            "message": "rollback run 7 already completed successfully", "details": details, "check_mode": check_mode}


def run_step_answering(monkeypatch: pytest.MonkeyPatch, reports: list[dict[str, Any]]) -> None:
    monkeypatch.setattr(playbook, "run_step", lambda *args, **kwargs: copy.deepcopy(reports))
    services = SimpleNamespace(clients=lambda: None, settings=SimpleNamespace(action_overrides=lambda: {}))
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: services)


def execute(ledger: Ledger, *, check_mode: bool = False) -> tuple[str, list[dict[str, Any]]]:
    incident, _ = ledger.open_or_join(fingerprint="production:backend:deploy", severity="P1", symptom="down",
                                      title="down", service="backend", environment="production", reporter="test",
                                      at=DETECTED)
    operator = RemediationOperator(task_id="rollback", scenario="deploy", step_id="rollback",
                                   environment="production", service="backend", incident_id=incident["id"],
                                   check_mode=check_mode)
    return incident["id"], operator.execute({})


def test_a_retry_that_finds_the_change_of_its_killed_try_records_the_change(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Try 1 dispatched the rollback and its worker was killed before it recorded anything; try 2 finds
    the run by the incident's record (changed=False, done_earlier): the ledger says the step changed the
    service, and the incident's scenario is set, as try 1 would have done."""
    run_step_answering(monkeypatch, [report(changed=False, details={"found_by": "ECS service tag", DONE_EARLIER: True})])

    incident_id, reports = execute(ledger)

    assert reports[0]["changed"] is True
    events = [e for e in ledger.events(incident_id) if e["kind"] == "action"]
    assert len(events) == 1 and events[0]["data"]["changed"] is True
    assert events[0]["idempotency_key"] == "action:rollback:apply"
    assert ledger.get(incident_id)["scenario"] == "deploy"


def test_a_state_that_was_already_right_is_not_recorded_as_a_change(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    run_step_answering(monkeypatch, [report(changed=False, details={"found_by": "existing_run_id"})])

    incident_id, reports = execute(ledger)

    assert reports[0]["changed"] is False
    assert [e["data"]["changed"] for e in ledger.events(incident_id) if e["kind"] == "action"] == [False]
    assert ledger.get(incident_id)["scenario"] is None


def test_check_mode_never_turns_a_report_into_a_change(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    run_step_answering(monkeypatch, [report(changed=False, details={DONE_EARLIER: True}, check_mode=True)])

    incident_id, reports = execute(ledger, check_mode=True)

    assert reports[0]["changed"] is False
    events = [e for e in ledger.events(incident_id) if e["kind"] == "action"]
    assert events[0]["idempotency_key"] == "action:rollback:check" and events[0]["data"]["changed"] is False
    assert ledger.get(incident_id)["scenario"] is None
