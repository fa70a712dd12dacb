"""Between the steps: ladders, the external wait, AWS failures — and what people read about them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml

from incident_ops.core import recovery
from incident_ops.core.recovery import decide_step, wait_transition
from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH, Runbook, RunbookError, parse_runbook

OPERATIONAL = {"indicator": "none", "description": "All Systems Operational", "operational": True,
               "page": {"name": "Example Payments"}}
OUTAGE = {"indicator": "major", "description": "Major System Outage", "operational": False}
UNREACHABLE = {"indicator": "unreachable", "description": "connection refused", "operational": False}


def report(step: str, action: str, *, ok: bool = True, changed: bool = True, check_mode: bool = False,
           **extra: Any) -> dict[str, Any]:
    return {"step": step, "action": action, "ok": ok, "changed": changed, "skipped": False, "check_mode": check_mode,
            "details": {}, "message": "", **extra}


FAILOVER = report("failover", "rds_failover", before={"writer": "db-1"}, after={"writer": "db-2"})


# --- the runbook: conditions, waits, notices as data ----------------------------------------------


def test_the_runbooks_ladders_waits_and_notices(runbook: Runbook) -> None:
    database, resource, external = (runbook.scenario(n) for n in ("database", "resource", "external"))
    assert [(s.id, s.when, s.approval, s.optional) for s in database.steps] == [
        ("failover", None, True, False), ("restore", "still_unhealthy", True, True),
        ("support_case", "aws_failure", True, True)]
    assert [(s.id, s.when) for s in resource.steps] == [
        ("scale_out", None), ("scale_up", "still_unhealthy"), ("support_case", "aws_failure")]
    assert [(s.id, s.when, s.approval) for s in external.steps] == [
        ("check_status", None, False), ("wait", "provider_operational", False), ("fallback", "provider_down", False)]
    assert external.step("wait").wait is not None and external.step("wait").wait.interval_minutes < \
        external.step("wait").wait.max_minutes
    assert database.notify == resource.notify == ["infra"] and runbook.contacts.channels["infra"] == "#infra-support"
    assert all(not runbook.scenario(n).notify for n in ("deploy", "external", "security"))
    ladder = runbook.ladder
    assert ladder.consecutive_healthy * ladder.interval_seconds <= ladder.settle_seconds
    assert database.step("restore").title == "スナップショット復元"


def _broken(mutate) -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))
    mutate(data)
    return data


@pytest.mark.parametrize(("mutate", "path", "reason"), [
    (lambda d: d["scenarios"]["database"]["steps"][0].update(when="still_unhealthy"),
     "scenarios.database", "still_unhealthy needs an earlier step"),
    (lambda d: d["scenarios"]["database"]["steps"][1].update(when="provider_down"),
     "scenarios.database", "needs an earlier external_status_check"),
    (lambda d: d["scenarios"]["external"]["steps"][2].update(when="aws_failure"),
     "scenarios.external", "aws_failure needs an earlier AWS step"),
    (lambda d: d["scenarios"]["database"]["steps"][1].update(wait={"interval_minutes": 1, "max_minutes": 5}),
     "scenarios.database.steps[1]", "only external_status_check can wait"),
    (lambda d: d["scenarios"]["external"]["steps"][1].update(wait={"interval_minutes": 10, "max_minutes": 5}),
     "scenarios.external.steps[1].wait", "interval_minutes must not exceed max_minutes"),
    (lambda d: d["scenarios"]["database"].update(notify=["dba"]), "scenarios.database.notify", "unknown channel 'dba'"),
    (lambda d: d["scenarios"]["database"]["steps"][1].update(when="sometimes"),
     "scenarios.database.steps[1].when", "Input should be"),
    (lambda d: d.update(ladder={"settle_seconds": 10, "consecutive_healthy": 3, "interval_seconds": 10}),
     "ladder", "must fit in settle_seconds"),
])
def test_a_bad_condition_is_refused_with_its_key(mutate, path: str, reason: str) -> None:
    with pytest.raises(RunbookError) as caught:
        parse_runbook(_broken(mutate))
    assert caught.value.path.startswith(path), caught.value
    assert reason in caught.value.reason, caught.value


# --- the ladder: the next rung only while still unhealthy ------------------------------------------


def test_failover_healed_the_service_so_no_restore(runbook: Runbook) -> None:
    decision = decide_step(runbook, "database", "restore", [FAILOVER], health={"healthy": True, "consecutive": 3})
    assert not decision.run
    assert decision.reason == "フェイルオーバーで復旧したためスナップショット復元は不要"


def test_still_unhealthy_after_the_failover_offers_the_restore(runbook: Runbook) -> None:
    decision = decide_step(runbook, "database", "restore", [FAILOVER], health={"healthy": False})
    assert decision.run and decision.reason == "フェイルオーバーの後もサービスが復旧していないためスナップショット復元を提案"
    failed = report("failover", "rds_failover", ok=False, changed=False, message="failed: timed out")
    assert decide_step(runbook, "database", "restore", [failed], health={"healthy": False}).reason == (
        "フェイルオーバーが失敗し、サービスが復旧していないためスナップショット復元を提案")


def test_healthy_without_the_rung_before_it(runbook: Runbook) -> None:
    # failover rejected (no report): the service came back by itself
    decision = decide_step(runbook, "database", "restore", [], health={"healthy": True})
    assert not decision.run and decision.reason == "サービスが正常に戻ったためスナップショット復元は不要"
    scaled = report("scale_out", "ecs_scale_out", changed=False)  # already 10 tasks: nothing done now
    assert decide_step(runbook, "resource", "scale_up", [scaled], health={"healthy": True}).reason == (
        "サービスが正常に戻ったためスケールアップは不要")
    assert decide_step(runbook, "resource", "scale_up", [report("scale_out", "ecs_scale_out")],
                       health={"healthy": True}).reason == "スケールアウトで復旧したためスケールアップは不要"


def test_a_ladder_needs_the_health_and_check_mode_always_offers(runbook: Runbook) -> None:
    assert recovery.needs_health(runbook.scenario("database").step("restore"))
    assert not recovery.needs_health(runbook.scenario("database").step("support_case"))
    with pytest.raises(ValueError, match="health"):
        decide_step(runbook, "database", "restore", [FAILOVER])
    dry = decide_step(runbook, "database", "restore", [{**FAILOVER, "check_mode": True}], check_mode=True)
    assert dry.run and dry.reason.startswith("チェックモード")


def test_a_step_without_a_condition_always_runs(runbook: Runbook) -> None:
    assert decide_step(runbook, "database", "failover", []).run


# --- the external scenario: confirmed outage → fallback; not confirmed → wait ----------------------


def status(step: str, details: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return report(step, "external_status_check", changed=False, details=dict(details), **extra)


def test_operational_status_page_means_wait_not_fallback(runbook: Runbook) -> None:
    checked = [status("check_status", OPERATIONAL)]
    wait = decide_step(runbook, "external", "wait", checked)
    assert wait.run and "All Systems Operational" in wait.reason and wait.reason.endswith("待機")
    fallback = decide_step(runbook, "external", "fallback", checked)  # the wait never ran (failed)
    assert not fallback.run and fallback.reason.endswith("フォールバック有効化は見送り")


def test_confirmed_outage_goes_straight_to_the_fallback(runbook: Runbook) -> None:
    checked = [status("check_status", OUTAGE)]
    wait = decide_step(runbook, "external", "wait", checked)
    assert not wait.run and wait.reason.startswith("ステータスページで障害を確認したため待機は不要")
    fallback = decide_step(runbook, "external", "fallback", checked)
    assert fallback.run and "Major System Outage" in fallback.reason
    unreachable = [status("check_status", UNREACHABLE)]
    assert not decide_step(runbook, "external", "wait", unreachable).run
    assert decide_step(runbook, "external", "fallback", unreachable).reason == (
        "ステータスページに接続できず障害を否定できないためフォールバック有効化を実施")


@pytest.mark.parametrize(("outcome", "runs", "reason"), [
    ("recovered", False, "待機中にサービスが復旧したためフォールバック有効化は不要"),
    ("outage", True, "待機中にステータスページが障害を報告したためフォールバック有効化を実施（「Major System Outage」（障害））"),
    ("timeout", True, "待機の上限までにサービスが復旧しなかったためフォールバック有効化を実施"),
])
def test_how_the_wait_ended_decides_the_fallback(runbook: Runbook, outcome: str, runs: bool, reason: str) -> None:
    seen = OUTAGE if outcome == "outage" else OPERATIONAL
    reports = [status("check_status", OPERATIONAL), status("wait", {**seen, "wait_outcome": outcome})]
    decision = decide_step(runbook, "external", "fallback", reports)
    assert (decision.run, decision.reason) == (runs, reason)


def test_a_dry_runs_reports_do_not_decide_a_real_run(runbook: Runbook) -> None:
    dry = [status("check_status", OUTAGE, check_mode=True)]
    assert decide_step(runbook, "external", "fallback", dry, check_mode=True).run
    # the real run has no status of its own yet: nothing to deny the outage with
    real = decide_step(runbook, "external", "fallback", dry)
    assert real.run and "確認結果がなく" in real.reason
    assert not decide_step(runbook, "external", "wait", dry).run


def test_wait_transition() -> None:
    assert wait_transition(OPERATIONAL, OPERATIONAL) == "same"
    assert wait_transition({**OPERATIONAL, "description": "Investigating elevated errors"}, OPERATIONAL) == "changed"
    assert wait_transition(UNREACHABLE, OPERATIONAL) == "changed"  # an unreachable page is no confirmation
    assert wait_transition(OPERATIONAL, None) == "changed"
    for indicator in ("minor", "major", "critical"):
        assert wait_transition({"indicator": indicator, "description": "x"}, OPERATIONAL) == "outage"


# --- AWS failures: the support case ----------------------------------------------------------------


def test_a_failed_failover_offers_the_support_case(runbook: Runbook) -> None:
    failed = report("failover", "rds_failover", ok=False, changed=False, message="failed: InvalidDBClusterStateFault")
    decision = decide_step(runbook, "database", "support_case", [failed])
    assert decision.run and decision.reason == "フェイルオーバーが AWS 側で失敗したためAWS サポートへの問い合わせを提案"
    refused = report("failover", "rds_failover", ok=False, changed=False, refused=True)
    assert not decide_step(runbook, "database", "support_case", [refused]).run  # our guard rail, not AWS
    fine = decide_step(runbook, "database", "support_case", [FAILOVER])
    assert not fine.run and fine.reason == (
        "AWS 側の操作（フェイルオーバー・スナップショット復元）に失敗がないためAWS サポートへの問い合わせは不要")


# --- what people read ------------------------------------------------------------------------------


def test_wait_messages(runbook: Runbook) -> None:
    kwargs = {"incident_id": "INC-20260105-001", "scenario": "external", "step_id": "wait"}
    start = recovery.render_wait_message(runbook, kind="start", status=OPERATIONAL, **kwargs)
    assert start.splitlines() == [
        "【外部サービス待機】INC-20260105-001",
        "ステータスページ（Example Payments）: 「All Systems Operational」（正常稼働）",
        "外部サービスの障害を確認できないため、フォールバック有効化はせずに待機します（2分ごとに確認、最大1時間）。",
    ]
    changed = recovery.render_wait_message(runbook, kind="changed", waited_minutes=4.2,
                                           status={**OPERATIONAL, "description": "Investigating <errors>"}, **kwargs)
    assert "「Investigating &lt;errors&gt;」（正常稼働）" in changed and "経過 4分" in changed
    outage = recovery.render_wait_message(runbook, kind="outage", status=OUTAGE, waited_minutes=6, **kwargs)
    assert "障害を報告しました: 「Major System Outage」（障害）" in outage and "フォールバック有効化に進みます" in outage
    healed = recovery.render_wait_message(runbook, kind="recovered", status=OPERATIONAL, waited_minutes=90,
                                          consecutive=3, **kwargs)
    assert "ヘルスチェック 3回連続で正常" in healed and "経過 1時間30分" in healed and "フォールバック有効化は不要" in healed
    timeout = recovery.render_wait_message(runbook, kind="timeout", status=OPERATIONAL, waited_minutes=60, **kwargs)
    assert "待機の上限（1時間）" in timeout
    with pytest.raises(ValueError, match="does not wait"):
        recovery.render_wait_message(runbook, kind="start", status=None, incident_id="x", scenario="external",
                                     step_id="fallback")


def test_the_infra_notice(runbook: Runbook) -> None:
    text = recovery.render_scenario_notice(
        runbook, channel_key="infra", incident_id="INC-20260105-001", scenario="database", severity="P2",
        symptom="診断機能が動作しない", reasons=["RDS Connections が 640 (閾値 500)", "ログに「database」が12件"],
        incident_channel="incident-20260105", incident_channel_id="C0123",
    )
    assert text.splitlines() == [
        "【インフラチームへの連絡】データベース問題（P2）",
        "インシデントID: INC-20260105-001",
        "症状: 診断機能が動作しない",
        "対応: RDSフェイルオーバー/スナップショット復元",
        "根拠: RDS Connections が 640 (閾値 500)、ログに「database」が12件",
        "状況チャンネル: <#C0123|incident-20260105>",
    ]
    bare = recovery.render_scenario_notice(runbook, channel_key="infra", incident_id="INC-1", scenario="resource",
                                           severity="P3", symptom="x", check_mode=True)
    assert "根拠: 調査結果からの根拠なし（担当者の判断）" in bare and "状況チャンネル: 未作成" in bare
    assert bare.endswith("（チェックモード: 手順は確認のみで、変更は行いません）")


def test_the_support_case_names_the_incident_and_what_failed(runbook: Runbook) -> None:
    incident = {"id": "INC-20260105-001", "environment": "production", "severity": "P1", "symptom": "診断機能が動作しない",
                "detected_at": dt.datetime(2026, 1, 5, 1, 0, tzinfo=dt.UTC)}
    failed = report("failover", "rds_failover", ok=False, changed=False, message="failed: InvalidDBClusterStateFault")
    subject, body = recovery.support_case_text(runbook, incident=incident, scenario="database", reports=[failed])
    assert subject == "[INC-20260105-001] PeopleBooster production: フェイルオーバーの失敗（P1）"
    assert "発生時刻: 2026-01-05 10:00 JST" in body
    assert "・フェイルオーバー（rds_failover）: failed: InvalidDBClusterStateFault" in body
    assert "対象: peoplebooster-production、peoplebooster-production-db" in body
    assert "アカウント: 123456789012 / リージョン: ap-northeast-1" in body


def test_the_new_steps_read_as_japanese_sentences() -> None:
    from incident_ops.core.narrative import action_sentence

    case = {"step": "support_case", "action": "aws_support_case", "ok": True, "changed": True, "check_mode": False,
            "details": {"case_id": "case-123", "severity_code": "urgent"}}
    assert action_sentence(case) == "AWS サポートにケースを起票（ケース case-123、重要度 urgent、成功）"
    waited = {"step": "wait", "action": "external_status_check", "ok": True, "changed": False, "check_mode": False,
              "details": {**OPERATIONAL, "wait_outcome": "timeout", "waited_minutes": 60.2}}
    assert action_sentence(waited) == "外部サービスの復旧を待機し、ステータスページを定期確認（待機の上限に到達、60分、確認済み）"
    brief = {**waited, "details": {**OPERATIONAL, "wait_outcome": "recovered", "waited_minutes": 0.3}}
    assert "（待機中に復旧、1分未満、確認済み）" in action_sentence(brief)
