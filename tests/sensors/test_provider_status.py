"""ProviderStatusSensor (待機): defers to the triggerer, posts each change of the status page to the
incident channel once, records how the wait ended — which then decides the fallback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from incident_ops.actions import playbook
from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.flows import incident as incident_flow
from incident_ops.operators.conditions import StepConditionOperator
from incident_ops.sensors.provider_status import ProviderStatusSensor
from incident_ops.triggers.provider_status import ProviderStatusTrigger
from tests.flows.scheduled.conftest import RecordingSlack

DETECTED = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC)
STATUS_URL = "https://status.sandbox.test/api/v2/status.json"
OPERATIONAL = {"indicator": "none", "description": "All Systems Operational", "operational": True,
               "page": {"name": "Example Payments"}}


@pytest.fixture
def slack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingSlack]:
    monkeypatch.setenv(LEDGER_URL_ENV, f"sqlite:///{tmp_path / 'ledger.db'}")
    recording = RecordingSlack()
    settings = SimpleNamespace(health_url="https://api.sandbox.test/health", verify=True,
                               action_overrides=lambda: {"external_status_check": {"url": STATUS_URL}})
    monkeypatch.setattr(incident_flow, "services_for",
                        lambda environment: SimpleNamespace(slack=recording, settings=settings, clients=lambda: None))
    yield recording
    Ledger().dispose()


@pytest.fixture
def incident_id(slack: RecordingSlack) -> str:
    ledger = Ledger()
    opened, _ = ledger.open_or_join(fingerprint="production:backend:ext", severity="P2", symptom="ext", title="ext",
                                    service="backend", environment="production", reporter="test", at=DETECTED)
    ledger.update(opened["id"], DETECTED, slack_channel="incident-20261102", slack_channel_id="C0INC")
    checked = {"step": "check_status", "action": "external_status_check", "ok": True, "changed": False,
               "skipped": False, "check_mode": False, "details": {**OPERATIONAL, "url": STATUS_URL}, "message": ""}
    ledger.record_event(opened["id"], at=DETECTED, kind="action", message="checked", data=checked,
                        idempotency_key="action:check_status:apply")
    return opened["id"]


def sensor(incident_id: str, check_mode: bool = False) -> ProviderStatusSensor:
    return ProviderStatusSensor(task_id="wait", scenario="external", step_id="wait", environment="production",
                                incident_id=incident_id, check_mode=check_mode)


def posts(slack: RecordingSlack) -> list[str]:
    return [m["text"] for m in slack.messages if m["channel"] == "C0INC"]


def test_waits_in_the_triggerer_and_says_so_once(slack: RecordingSlack, incident_id: str, runbook) -> None:
    with pytest.raises(TaskDeferred) as deferred:
        sensor(incident_id).execute({})
    trigger = deferred.value.trigger
    wait = runbook.scenario("external").step("wait").wait
    assert isinstance(trigger, ProviderStatusTrigger)
    assert (trigger.status_url, trigger.health_url) == (STATUS_URL, "https://api.sandbox.test/health")
    assert trigger.status_interval == wait.interval_minutes * 60
    assert (trigger.health_interval, trigger.consecutive) == (runbook.ladder.interval_seconds,
                                                              runbook.ladder.consecutive_healthy)
    assert trigger.last_seen["description"] == "All Systems Operational"
    plan = deferred.value.kwargs["plan"]
    assert deferred.value.kwargs["deadline"] == pytest.approx(
        dt.datetime.fromisoformat(plan["started_at"]).timestamp() + wait.max_minutes * 60)
    [start] = posts(slack)
    assert start.splitlines()[1] == "ステータスページ（Example Payments）: 「All Systems Operational」（正常稼働）"
    with pytest.raises(TaskDeferred):  # a retry of the task does not post the start twice
        sensor(incident_id).execute({})
    assert len(posts(slack)) == 1


def test_a_change_is_posted_then_the_wait_goes_on_to_recovery(slack: RecordingSlack, incident_id: str) -> None:
    with pytest.raises(TaskDeferred) as deferred:
        sensor(incident_id).execute({})
    kwargs = deferred.value.kwargs
    started = dt.datetime.fromisoformat(kwargs["started_at"])
    changed = {"outcome": "changed", "at": (started + dt.timedelta(minutes=4)).isoformat(), "consecutive": 0,
               "status": {"indicator": "none", "description": "Investigating elevated error rates", "operational": True}}
    with pytest.raises(TaskDeferred) as again:
        sensor(incident_id).execute_complete({}, changed, **kwargs)
    assert again.value.trigger.last_seen == changed["status"]
    assert again.value.kwargs["deadline"] == kwargs["deadline"]  # the wait's end does not move
    assert "表示が変わりました: 「Investigating elevated error rates」（正常稼働）" in posts(slack)[-1]
    assert "待機を続けます（経過 4分）。" in posts(slack)[-1]

    healed = {"outcome": "recovered", "at": (started + dt.timedelta(minutes=9)).isoformat(), "consecutive": 3,
              "status": changed["status"]}
    [report] = sensor(incident_id).execute_complete({}, healed, **again.value.kwargs)
    assert report["details"]["wait_outcome"] == "recovered" and report["ok"] and not report["changed"]
    assert "サービスが復旧しました（ヘルスチェック 3回連続で正常）" in posts(slack)[-1]
    actions = [e for e in Ledger().events(incident_id) if e["kind"] == "action" and e["data"]["step"] == "wait"]
    assert [a["message"] for a in actions] == ["外部サービスの復旧を待機し、ステータスページを定期確認（待機中に復旧、9分、確認済み）"]
    # ... and the fallback is not needed
    fallback = StepConditionOperator(task_id="when_fallback", scenario="external", step_id="fallback",
                                     environment="production", incident_id=incident_id)
    with pytest.raises(AirflowSkipException, match="待機中にサービスが復旧したためフォールバック有効化は不要"):
        fallback.execute({})


def test_an_outage_on_the_status_page_ends_the_wait_and_the_fallback_follows(slack: RecordingSlack,
                                                                             incident_id: str) -> None:
    with pytest.raises(TaskDeferred) as deferred:
        sensor(incident_id).execute({})
    outage = {"outcome": "outage", "at": "2026-11-02T01:06:00+00:00", "consecutive": 0,
              "status": {"indicator": "major", "description": "Major System Outage", "operational": False}}
    [report] = sensor(incident_id).execute_complete({}, outage, **deferred.value.kwargs)
    assert report["details"]["wait_outcome"] == "outage" and report["details"]["url"] == STATUS_URL
    assert "障害を報告しました: 「Major System Outage」（障害）" in posts(slack)[-1]
    decision = StepConditionOperator(task_id="when_fallback", scenario="external", step_id="fallback",
                                     environment="production", incident_id=incident_id).execute({})
    assert decision["run"] and decision["reason"].startswith("待機中にステータスページが障害を報告したため")


def test_check_mode_looks_once_and_does_not_wait(slack: RecordingSlack, incident_id: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    looked = {"step": "wait", "action": "external_status_check", "ok": True, "changed": False, "skipped": False,
              "check_mode": True, "details": dict(OPERATIONAL), "message": "operational"}
    monkeypatch.setattr(playbook, "run_step", lambda *args, **kwargs: [dict(looked)])
    [report] = sensor(incident_id, check_mode=True).execute({})
    assert report["details"]["wait_outcome"] == "check_mode" and report["check_mode"]
    assert posts(slack) == []
