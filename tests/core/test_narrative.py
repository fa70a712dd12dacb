"""What people read: Japanese sentences from step reports, ledger events and the evidence."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from incident_ops.core import narrative
from incident_ops.core.messages import render_recovery

ROLLBACK = {
    "step": "rollback", "action": "github_rollback", "ok": True, "changed": True, "check_mode": False,
    "before": None, "after": {"id": 9100000002, "status": "completed", "conclusion": "success"},
    "message": "rollback run 9100000002 dispatched and completed successfully", "details": {
        "workflow": "rollback.yml", "run_id": 9100000002},
}
ROLLBACK_FAILED = {
    **ROLLBACK, "ok": False, "after": {"id": 42, "status": "completed", "conclusion": "failure"},
    "details": {"workflow": "rollback.yml", "run_id": 42},
    "message": "rollback run 42 concluded failure; fall back to the ECS rollback",
}
ECS_ROLLBACK = {
    "step": "ecs_rollback", "action": "ecs_rollback", "ok": True, "changed": True,
    "before": {"task_definition": "arn:aws:ecs:ap-northeast-1:1:task-definition/pb-backend:12"},
    "after": {"task_definition": "arn:aws:ecs:ap-northeast-1:1:task-definition/pb-backend:11"}, "details": {},
}
SCALE_OUT = {"step": "scale_out", "action": "ecs_scale_out", "ok": True, "changed": True,
             "before": {"desired_count": 4}, "after": {"desired_count": 10}, "details": {}}
SCALE_OUT_NOOP = {**SCALE_OUT, "changed": False, "after": {"desired_count": 4}}
FAILOVER = {"step": "failover", "action": "rds_failover", "ok": True, "changed": True,
            "before": {"writer": "db-1"}, "after": {"writer": "db-2"}, "details": {}}
FLAG = {"step": "fallback", "action": "set_feature_flag", "ok": True, "changed": True,
        "before": {"name": "/peoplebooster/production/feature-flags/external_fallback", "value": "off"},
        "after": {"name": "/peoplebooster/production/feature-flags/external_fallback", "value": "on"}, "details": {}}
STATUS_DOWN = {"step": "check_status", "action": "external_status_check", "ok": True, "changed": False,
               "details": {"operational": False, "indicator": "major", "description": "Partial outage"}}


def _has_latin_words(text: str) -> list[str]:
    """English words a Japanese reader would stumble on (names like rollback.yml, ECS, RDS are fine)."""
    allowed = {"GitHub", "Actions", "rollback", "yml", "ECS", "RDS", "CPU", "run", "PagerDuty", "Slack", "CTO",
               "ALARM", "pb", "backend", "db", "external_fallback", "major", "Partial", "outage", "incident",
               "ops", "UI", "Airflow", "md", "INC"}
    return [w for w in re.findall(r"[A-Za-z_]+", text) if w not in allowed]


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (ROLLBACK, "GitHub Actions rollback.yml を実行（run 9100000002、成功）"),
        (ROLLBACK_FAILED, "GitHub Actions rollback.yml を実行（run 42、結果 failure、失敗）"),
        (ECS_ROLLBACK, "ECS サービスを前のタスク定義に戻す（pb-backend:12 → pb-backend:11、成功）"),
        (SCALE_OUT, "ECS サービスのタスク数を増加（スケールアウト）（タスク数 4 → 10、成功）"),
        (SCALE_OUT_NOOP, "ECS サービスのタスク数を増加（スケールアウト）（変更なし（適用済み））"),
        (FAILOVER, "RDS フェイルオーバー（書き込みインスタンス db-1 → db-2、成功）"),
        (FLAG, "フォールバック用フラグ external_fallback を設定（off → on、成功）"),
        (STATUS_DOWN, "外部サービスのステータスページを確認（障害あり（major）: Partial outage、確認済み）"),
        ({**SCALE_OUT, "check_mode": True}, "ECS サービスのタスク数を増加（スケールアウト）（タスク数 4 → 10、確認のみ（チェックモード））"),
    ],
    ids=["rollback", "rollback-failed", "ecs-rollback", "scale-out", "noop", "failover", "flag", "status", "check"],
)
def test_each_step_reads_as_a_japanese_sentence_with_its_outcome(report, expected) -> None:
    assert narrative.action_sentence(report) == expected


def test_an_unknown_action_still_reads_in_japanese() -> None:
    assert narrative.action_sentence({"step": "custom", "action": "new_thing", "ok": True, "changed": True}) == \
        "手順 custom（成功）"


def test_the_summary_lists_what_succeeded_and_names_what_failed() -> None:
    summary = narrative.actions_summary([ROLLBACK_FAILED, ECS_ROLLBACK, SCALE_OUT_NOOP])
    assert summary == ("GitHub Actions rollback.yml を実行（run 42、結果 failure、失敗）、"
                       "ECS サービスを前のタスク定義に戻す（pb-backend:12 → pb-backend:11、成功）")
    assert "concluded" not in summary and "fall back" not in summary  # no module log lines


def test_the_summary_when_nothing_was_automated() -> None:
    assert narrative.actions_summary([]) == "自動対応なし（手動で対応）"
    assert narrative.actions_summary([SCALE_OUT_NOOP]) == narrative.action_sentence(SCALE_OUT_NOOP)


def test_the_cause_comes_from_the_scenario_and_the_strongest_reason(runbook) -> None:
    suggestion = {"scenario": "deploy", "scores": {"deploy": 7},
                  "reasons": {"deploy": ["直近のデプロイ: backend (5分前)", "ログに「ERROR」が12件"],
                              "resource": ["ECS CPU が 91 (閾値 80)"]}}
    assert narrative.cause_text(runbook, "deploy", suggestion) == \
        "デプロイ後の障害（推定: 直近のデプロイ: backend (5分前)。ポストモーテムで確定）"
    # People chose another scenario than the suggestion: its own reasons.
    assert narrative.cause_text(runbook, "resource", suggestion) == \
        "リソース枯渇（推定: ECS CPU が 91 (閾値 80)。ポストモーテムで確定）"
    assert narrative.cause_text(runbook, "database", suggestion) == "データベース問題（推定。ポストモーテムで確定）"
    assert narrative.cause_text(runbook, None, suggestion) == "調査中（ポストモーテムで確定）"


def test_notices_name_who_and_how_in_japanese(runbook) -> None:
    results = [{"target": "oncall", "via": "pagerduty", "ok": True}, {"target": "cto", "via": "phone", "ok": False},
               {"target": "dev_team", "via": "slack", "ok": True}]
    assert narrative.notice_sentence(runbook, results) == \
        f"オンコール担当（PagerDuty）: 送信済み、{runbook.person('cto').name}（電話）: 失敗、開発チーム（Slack）: 送信済み"


def test_timeline_sentences_from_event_data(runbook) -> None:
    action = {"kind": "action", "actor": "incident_ops", "message": "rollback (github_rollback): rollback run…",
              "data": ROLLBACK}
    assert narrative.event_sentence(runbook, action) == "GitHub Actions rollback.yml を実行（run 9100000002、成功）"
    classified = {"kind": "classified", "message": "P1: symptom login_failure (ログインできない) → P1",
                  "data": {"severity": "P1", "label": "ログインできない"}}
    assert narrative.event_sentence(runbook, classified) == "障害レベルを P1 と判定（症状: ログインできない）"
    confirmed = {"kind": "confirmed", "message": "health=unhealthy, alarms in ALARM=2",
                 "data": {"healthy": False, "alarms": [{"name": "a"}, {"name": "b"}]}}
    assert narrative.event_sentence(runbook, confirmed) == "ヘルスチェック 異常、ALARM 状態のアラーム 2件"
    approval = {"kind": "approval", "actor": "airflow-ui", "message": "failover: Approve",
                "data": {"step": "failover", "chosen": "Approve", "by": None, "timed_out": True}}
    assert narrative.event_sentence(runbook, approval) == "手順 failover を承認（回答なし: 既定値）"
    rejected = {"kind": "approval", "actor": "佐藤", "data": {"step": "restore", "chosen": "Reject", "by": "佐藤"}}
    assert narrative.event_sentence(runbook, rejected) == "手順 restore を却下（佐藤）"
    draft = {"kind": "postmortem_draft", "message": "file:///srv/state/postmortems/INC-20261201-abcdef.md"}
    assert narrative.event_sentence(runbook, draft) == "ポストモーテムのドラフトを作成（INC-20261201-abcdef.md）"


def test_every_kind_the_code_records_has_a_japanese_label() -> None:
    for kind in ("opened", "occurrence", "classified", "declared", "channel_opened", "notified", "confirmed",
                 "acknowledged", "escalated", "evidence", "scenario_chosen", "approval", "action",
                 "functional_checks", "recovered", "postmortem_draft", "postmortem_done", "closed", "task_failed",
                 "trigger_failed", "escalation_requested", "severity_raised", "alarm_ok"):
        assert not _has_latin_words(narrative.event_label(kind)), kind
    assert narrative.event_label("something_new") == "記録"
    assert narrative.actor_label("incident_ops") == "自動（incident-ops）"


@pytest.mark.parametrize(("severity", "line"), [("P1", "ポストモーテム実施予定"), ("P2", "ポストモーテム実施予定"),
                                                ("P3", "経過観察（このレベルはポストモーテム不要）"),
                                                ("P4", "経過観察（このレベルはポストモーテム不要）")])
def test_the_recovery_message_promises_a_postmortem_only_where_the_runbook_requires_one(runbook, severity, line) -> None:
    detected = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
    text = render_recovery(runbook, detected_at=detected, recovered_at=detected + dt.timedelta(minutes=42),
                           cause="c", actions="a",
                           postmortem_required=severity in runbook.postmortem.required_for)
    assert text.splitlines()[-1] == f"今後の対応: {line}"
