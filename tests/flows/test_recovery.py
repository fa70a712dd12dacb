"""Phase 3 between the steps (flows/recovery.py): the notice to #infra-support when the database or
resource scenario starts, and what a support-case step is told about the incident."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.flows import incident as incident_flow
from incident_ops.flows import recovery as recovery_flow
from tests.flows.scheduled.conftest import RecordingSlack

DETECTED = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
def slack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingSlack]:
    monkeypatch.setenv(LEDGER_URL_ENV, f"sqlite:///{tmp_path / 'ledger.db'}")
    recording = RecordingSlack()
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: SimpleNamespace(slack=recording))
    yield recording
    Ledger().dispose()


def opened(*, channel: bool = True, check_mode: bool = False) -> dict[str, Any]:
    ledger = Ledger()
    record, _ = ledger.open_or_join(fingerprint="production:backend:diagnosis_broken", severity="P2",
                                    symptom="diagnosis_broken", title="診断機能が動作しない", service="backend",
                                    environment="production", reporter="cloudwatch", at=DETECTED, detected_at=DETECTED)
    if channel:
        ledger.update(record["id"], DETECTED, slack_channel="incident-20261102", slack_channel_id="C0INC")
    suggestion = {"scenario": "database", "scores": {"database": 7},
                  "reasons": {"database": ["RDS Connections が 640 (閾値 500)", "ログに「database」が12件"]}}
    ledger.record_event(record["id"], at=DETECTED, kind="evidence", message="調査", data={"suggestion": suggestion},
                        idempotency_key="evidence")
    return {"id": record["id"], "environment": "production", "severity": "P2", "symptom": "診断機能が動作しない",
            "check_mode": check_mode}


def test_the_database_scenario_tells_infra_once(slack: RecordingSlack) -> None:
    incident = opened()
    result = recovery_flow.notify_scenario_contacts(incident, "database")
    assert result == {"notified": [{"channel": "#infra-support", "posted": True}]}
    [notice] = slack.to("#infra-support")
    assert notice["text"].splitlines() == [
        "【インフラチームへの連絡】データベース問題（P2）",
        f"インシデントID: {incident['id']}",
        "症状: 診断機能が動作しない",
        "対応: RDSフェイルオーバー/スナップショット復元",
        "根拠: RDS Connections が 640 (閾値 500)、ログに「database」が12件",
        "状況チャンネル: <#C0INC|incident-20261102>",
    ]
    # a retried task (or another run of the same incident) posts nothing twice
    assert recovery_flow.notify_scenario_contacts(incident, "database")["notified"][0]["posted"] is False
    assert len(slack.to("#infra-support")) == 1
    events = [e for e in Ledger().events(incident["id"]) if e["kind"] == "scenario_notice"]
    assert [e["message"] for e in events] == [
        "インフラチーム（#infra-support）に連絡: データベース問題（RDSフェイルオーバー/スナップショット復元）"]


def test_resource_tells_infra_and_the_others_do_not(slack: RecordingSlack) -> None:
    incident = opened(channel=False, check_mode=True)
    recovery_flow.notify_scenario_contacts(incident, "resource")
    [notice] = slack.to("#infra-support")
    assert notice["text"].startswith("【インフラチームへの連絡】リソース枯渇（P2）")
    assert "根拠: 調査結果からの根拠なし（担当者の判断）" in notice["text"]  # the evidence pointed elsewhere
    assert "状況チャンネル: 未作成" in notice["text"] and "チェックモード" in notice["text"]
    for scenario in ("deploy", "external", "security"):
        assert recovery_flow.notify_scenario_contacts(incident, scenario) == {"notified": []}
    assert len(slack.messages) == 1


def test_a_support_case_step_is_told_the_incident_and_what_failed(slack: RecordingSlack) -> None:
    incident = opened()
    failed = {"step": "failover", "action": "rds_failover", "ok": False, "changed": False, "skipped": False,
              "check_mode": False, "details": {}, "message": "failed: InvalidDBClusterStateFault"}
    Ledger().record_event(incident["id"], at=DETECTED, kind="action", message="x", data=failed,
                          idempotency_key="action:failover:apply")
    record = Ledger().get(incident["id"])
    context = recovery_flow.step_context(record, "database", "support_case")
    subject, body = context["aws_support_case"]["subject"], context["aws_support_case"]["body"]
    assert subject == f"[{incident['id']}] PeopleBooster production: フェイルオーバーの失敗（P2）"
    assert "・フェイルオーバー（rds_failover）: failed: InvalidDBClusterStateFault" in body
    assert recovery_flow.step_context(record, "database", "restore") == {}
