"""What people read about an incident, in Japanese, from what the machines recorded.

The remediation modules, the ledger and the evidence speak English and JSON (logs, XCom, the CLI's
keys). People read the recovery message and the postmortem: this module turns a step report, a
ledger event or the evidence into Japanese sentences that say what happened, including what failed.
Pure: no Airflow, no I/O; every input is a plain mapping as the ledger stores it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from incident_ops.core.runbook import Runbook

__all__ = [
    "ACTOR_LABELS",
    "EVENT_LABELS",
    "action_outcome",
    "action_parts",
    "action_sentence",
    "actions_summary",
    "actor_label",
    "cause_text",
    "channel_label",
    "event_label",
    "event_sentence",
    "evidence_sections",
    "notice_sentence",
    "target_label",
]

# Ledger event kinds as people read them (the postmortem timeline's 種別).
EVENT_LABELS: dict[str, str] = {
    "opened": "検知",
    "occurrence": "再検知",
    "classified": "レベル判定",
    "severity_raised": "レベル引き上げ",
    "escalation_requested": "レベル引き上げ",
    "declared": "宣言",
    "channel_opened": "チャンネル作成",
    "notified": "通知",
    "notified_unacknowledged": "再通知",
    "paged": "呼び出し",
    "confirmed": "状況確認",
    "acknowledged": "対応開始",
    "escalated": "エスカレーション",
    "evidence": "調査",
    "scenario": "シナリオ決定",
    "scenario_chosen": "シナリオ決定",
    "approval": "承認",
    "action": "対応",
    "mitigated": "緩和",
    "verified": "復旧確認",
    "functional_checks": "機能確認",
    "recovered": "復旧",
    "postmortem_draft": "ポストモーテム作成",
    "postmortem_done": "ポストモーテム完了",
    "closed": "クローズ",
    "failure": "失敗",
    "task_failed": "自動処理の失敗",
    "trigger_failed": "起動失敗",
    "alarm_ok": "アラーム正常化",
    "time_box": "時間枠超過",
    "alarm_insufficient_data": "アラーム データ不足",
    "step_decision": "判断",
    "step_skipped": "見送り",
    "scenario_notice": "連絡",
    "status_update": "外部サービス状況",
    "decision_posted": "判断の依頼",
    "decision_reminded": "リマインド",
    "decision_answered": "回答",
    "pagerduty_resolved": "PagerDuty 解決",
    "pagerduty_escalated": "PagerDuty エスカレーション",
    "pagerduty_reassigned": "PagerDuty 担当変更",
}

ACTOR_LABELS: dict[str, str] = {
    "incident_ops": "自動（incident-ops）",
    "incident_ops.webhooks": "監視アラート",
    "webhook-intake": "監視アラートの受付（即時呼び出し）",
    "airflow-ui": "Airflow UI",
    "monitoring": "監視",
}

_VIA = {"pagerduty": "PagerDuty", "phone": "電話", "slack": "Slack", "email": "メール"}
_TARGETS = {"oncall": "オンコール担当", "dev_team": "開発チーム", "dev_lead": "開発リード", "cto": "CTO",
            "infra": "インフラチーム", "emergency": "緊急連絡先"}
_APPROVAL_WORDS = {"approve": "承認", "approved": "承認", "reject": "却下", "rejected": "却下", "yes": "承認",
                   "no": "却下"}


def _short(arn: Any) -> str:
    """`family:revision` of a task definition ARN (or the text as it is)."""
    return str(arn).rsplit("/", 1)[-1] if arn else "—"


def _get(mapping: Any, *keys: str) -> Any:
    value = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# --- remediation steps ----------------------------------------------------------------------------


def _rollback_run(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    details = report.get("details") or {}
    workflow = details.get("workflow") or "rollback.yml"
    facts = []
    run_id = details.get("run_id") or _get(report, "after", "id")
    if run_id:
        facts.append(f"run {run_id}")
    conclusion = _get(report, "after", "conclusion")
    if conclusion and conclusion != "success":
        facts.append(f"結果 {conclusion}")
    return f"GitHub Actions {workflow} を実行", facts


def _ecs_rollback(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    details = report.get("details") or {}
    start = details.get("from") or _get(report, "before", "task_definition")
    end = details.get("to") or _get(report, "after", "task_definition")
    facts = [f"{_short(start)} → {_short(end)}"] if start and end and start != end else []
    return "ECS サービスを前のタスク定義に戻す", facts


def _scale_out(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    start, end = _get(report, "before", "desired_count"), _get(report, "after", "desired_count")
    facts = [f"タスク数 {start} → {end}"] if start is not None and end is not None and start != end else []
    return "ECS サービスのタスク数を増加（スケールアウト）", facts


def _scale_up(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    before, after = report.get("before") or {}, report.get("after") or {}
    facts = []
    if before.get("cpu") != after.get("cpu") and after.get("cpu") is not None:
        facts.append(f"CPU {before.get('cpu')} → {after.get('cpu')}")
    if before.get("memory") != after.get("memory") and after.get("memory") is not None:
        facts.append(f"メモリ {before.get('memory')} → {after.get('memory')}")
    return "タスクの CPU・メモリを増強（スケールアップ）", facts


def _failover(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    start, end = _get(report, "before", "writer"), _get(report, "after", "writer")
    facts = [f"書き込みインスタンス {start} → {end}"] if start and end and start != end else []
    return "RDS フェイルオーバー", facts


def _restore(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    after = report.get("after") or {}
    target = after.get("cluster") or after.get("instance")
    return "スナップショットから新しいデータベースを復元", [f"復元先 {target}"] if target else []


_WAIT_OUTCOMES = {"recovered": "待機中に復旧", "outage": "待機中に障害を確認", "timeout": "待機の上限に到達",
                  "check_mode": "待機なし（チェックモード）"}


def _status_check(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    details = report.get("details") or {}
    if details.get("wait_outcome"):
        facts = [_WAIT_OUTCOMES.get(str(details["wait_outcome"]), str(details["wait_outcome"]))]
        if details.get("waited_minutes") is not None:
            minutes = float(details["waited_minutes"])
            facts.append(f"{minutes:.0f}分" if minutes >= 1 else "1分未満")
        return "外部サービスの復旧を待機し、ステータスページを定期確認", facts
    if "operational" not in details:
        return "外部サービスのステータスページを確認", []
    if details.get("indicator") == "unreachable":
        state = "ステータスページに接続できず"
    else:
        state = "正常稼働" if details.get("operational") else f"障害あり（{details.get('indicator')}）"
    description = details.get("description")
    return "外部サービスのステータスページを確認", [state + (f": {description}" if description else "")]


def _feature_flag(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    name = _get(report, "after", "name") or _get(report, "before", "name") or "フラグ"
    start, end = _get(report, "before", "value"), _get(report, "after", "value")
    facts = [f"{start if start is not None else '未設定'} → {end}"] if end is not None and start != end else []
    return f"フォールバック用フラグ {str(name).rsplit('/', 1)[-1]} を設定", facts


def _isolate(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    return "該当サービスを隔離（隔離用セキュリティグループ、ロードバランサーから切り離し、タスクは保全）", []


def _restore_service(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    return "隔離したサービスを元に戻す", []


def _force_deployment(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    return "ECS サービスを再デプロイ（タスクの入れ替え）", []


def _support_case(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    details = report.get("details") or {}
    case = details.get("case_id") or _get(report, "after", "case_id")
    facts = [f"ケース {case}"] if case else []
    if details.get("severity_code"):
        facts.append(f"重要度 {details['severity_code']}")
    return "AWS サポートにケースを起票", facts


_ACTIONS: dict[str, Callable[[Mapping[str, Any]], tuple[str, list[str]]]] = {
    "github_rollback": _rollback_run,
    "ecs_rollback": _ecs_rollback,
    "ecs_scale_out": _scale_out,
    "ecs_scale_up": _scale_up,
    "rds_failover": _failover,
    "rds_restore_snapshot": _restore,
    "external_status_check": _status_check,
    "set_feature_flag": _feature_flag,
    "isolate_service": _isolate,
    "restore_service": _restore_service,
    "ecs_force_deployment": _force_deployment,
    "aws_support_case": _support_case,
}

_READ_ONLY = frozenset({"external_status_check"})


def action_outcome(report: Mapping[str, Any]) -> str:
    """成功 / 失敗 / 変更なし / 確認のみ — what the step did, in one word or two."""
    if report.get("skipped"):
        return "見送り"
    if report.get("ok") is False:
        return "失敗"
    if report.get("check_mode"):
        return "確認のみ（チェックモード）"
    if report.get("action") in _READ_ONLY:
        return "確認済み"
    if report.get("changed"):
        return "成功"
    return "変更なし（適用済み）"


def action_parts(report: Mapping[str, Any]) -> tuple[str, list[str], str]:
    """(what the step does, the facts of this run, the outcome), each in Japanese."""
    action = str(report.get("action") or "")
    describe = _ACTIONS.get(action)
    if describe is None:
        what, facts = f"手順 {report.get('step') or action}", []
    else:
        what, facts = describe(report)
    return what, facts, action_outcome(report)


def action_sentence(report: Mapping[str, Any]) -> str:
    """「GitHub Actions rollback.yml を実行（run 9100000002、成功）」: the step, its facts, its outcome."""
    what, facts, outcome = action_parts(report)
    return f"{what}（{'、'.join([*facts, outcome])}）"


def actions_summary(reports: Iterable[Mapping[str, Any]]) -> str:
    """The recovery message's 対応内容: what succeeded, and what failed named as failed.

    Steps that changed nothing (already in place) and dry runs are left out unless nothing else
    happened, so the line says what was done, not what was looked at.
    """
    reports = list(reports)
    shown = [r for r in reports if r.get("ok") is False or r.get("changed") or r.get("action") in _READ_ONLY]
    if not shown:
        shown = [r for r in reports if not r.get("skipped")]
    if not shown:
        return "自動対応なし（手動で対応）"
    return "、".join(action_sentence(report) for report in shown)


def cause_text(runbook: Runbook, scenario: str | None, suggestion: Mapping[str, Any] | None) -> str:
    """The recovery message's 原因: the chosen scenario and the evidence's strongest reason for it.

    It is the automation's reading, so it says so: a person confirms the cause in the postmortem.
    """
    reasons = list(_get(suggestion, "reasons", scenario or "") or []) if scenario else []
    plan = runbook.scenarios.get(scenario) if scenario else None
    if plan is None:
        return "調査中（ポストモーテムで確定）"
    if reasons:
        return f"{plan.label}（推定: {reasons[0]}。ポストモーテムで確定）"
    return f"{plan.label}（推定。ポストモーテムで確定）"


# --- notices --------------------------------------------------------------------------------------


def channel_label(via: Any) -> str:
    """PagerDuty / 電話 / Slack / メール."""
    return _VIA.get(str(via), str(via))


def target_label(target: Any) -> str:
    """オンコール担当 / 開発チーム / … (a person id as it is, where no runbook names it)."""
    return _TARGETS.get(str(target), str(target))


def _target_name(runbook: Runbook, target: Any) -> str:
    try:
        return runbook.person(str(target)).name
    except (KeyError, ValueError, AttributeError):
        return _TARGETS.get(str(target), str(target))


def notice_sentence(runbook: Runbook, results: Sequence[Mapping[str, Any]]) -> str:
    """「オンコール担当（PagerDuty）: 送信済み、CTO（電話）: 失敗」."""
    parts = []
    for result in results:
        via = _VIA.get(str(result.get("via")), str(result.get("via")))
        state = "送信済み" if result.get("ok") else "失敗"
        parts.append(f"{_target_name(runbook, result.get('target'))}（{via}）: {state}")
    return "、".join(parts) or "通知先なし"


# --- the timeline -----------------------------------------------------------------------------------


def event_label(kind: Any) -> str:
    return EVENT_LABELS.get(str(kind), "記録")


def actor_label(actor: Any) -> str:
    if not actor:
        return "—"
    return ACTOR_LABELS.get(str(actor), str(actor))


def _approval_sentence(runbook: Runbook, event: Mapping[str, Any]) -> str | None:
    data = event.get("data") or {}
    chosen = data.get("chosen") or data.get("chosen_options")
    if isinstance(chosen, list | tuple):
        chosen = chosen[0] if chosen else None
    if not chosen:
        return None
    step = data.get("step") or data.get("step_id") or ""
    word = _APPROVAL_WORDS.get(str(chosen).strip().lower(), str(chosen))
    who = data.get("by") or event.get("actor")
    timed_out = data.get("timed_out")
    suffix = "（回答なし: 既定値）" if timed_out else (f"（{actor_label(who)}）" if who else "")
    if data.get("consent"):
        suffix = f"（シナリオを選んだ {actor_label(who)} の判断）"
    scenario = runbook.scenarios.get(str(data.get("scenario") or ""))
    if scenario is not None and step:
        try:
            return f"手順「{scenario.step(str(step)).title}」を{word}{suffix}"
        except KeyError:
            pass
    return f"手順 {step} を{word}{suffix}" if step else f"{word}{suffix}"


def event_sentence(runbook: Runbook, event: Mapping[str, Any]) -> str:
    """One timeline row's 内容, in Japanese, from the event's data where it has it."""
    kind = str(event.get("kind") or "")
    data = event.get("data") or {}
    message = " ".join(str(event.get("message") or "").split())
    if kind == "action" and isinstance(data, Mapping) and data.get("action"):
        return action_sentence(data)
    if kind in ("notified", "notified_unacknowledged") and isinstance(data, Mapping) and data.get("results"):
        return notice_sentence(runbook, data["results"])
    if kind == "classified" and isinstance(data, Mapping) and data.get("severity"):
        label = data.get("label") or data.get("symptom_label") or data.get("symptom")
        return f"障害レベルを {data['severity']} と判定" + (f"（症状: {label}）" if label else "")
    if kind == "confirmed" and isinstance(data, Mapping) and "healthy" in data:
        alarms = data.get("alarms") or []
        health = "正常" if data.get("healthy") else "異常"
        return f"ヘルスチェック {health}、ALARM 状態のアラーム {len(alarms)}件"
    if kind == "evidence" and isinstance(data, Mapping) and isinstance(data.get("suggestion"), Mapping):
        suggestion = data["suggestion"]
        name = suggestion.get("scenario")
        plan = runbook.scenarios.get(name) if name else None
        if plan is None:
            return "ログ・メトリクス・アラームを調査（推奨シナリオなし）"
        reasons = list((suggestion.get("reasons") or {}).get(name) or [])
        return f"ログ・メトリクス・アラームを調査し「{plan.label}」を推奨" + (f"（根拠: {'、'.join(reasons[:3])}）"
                                                                         if reasons else "")
    if kind == "approval":
        sentence = _approval_sentence(runbook, event)
        if sentence:
            return sentence
    if kind == "postmortem_draft" and message:
        return f"ポストモーテムのドラフトを作成（{message.rsplit('/', 1)[-1]}）"
    if kind in ("declared", "channel_opened") and message.startswith("#"):
        return f"インシデントを宣言（{message}）" if kind == "declared" else f"状況チャンネルを作成（{message}）"
    return message or event_label(kind)


# --- the evidence -----------------------------------------------------------------------------------


def _jst(value: Any, tz: dt.tzinfo) -> str:
    try:
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(tz).strftime("%m/%d %H:%M")


def evidence_sections(runbook: Runbook, evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The postmortem's 調査時の証拠, as Japanese lines and a score table (no Python reprs).

    `evidence`: {"suggestion": {"scenario", "scores", "reasons"}, "alarms": [names], "highlights":
    [Japanese lines], "deploys": [{"service", "at"}]} — any part may be missing.
    """
    suggestion = evidence.get("suggestion") or {}
    chosen = suggestion.get("scenario")
    scores = dict(suggestion.get("scores") or {})
    reasons = suggestion.get("reasons") or {}
    rows = []
    for name in sorted(scores, key=lambda key: (-int(scores[key] or 0), key)):
        plan = runbook.scenarios.get(name)
        rows.append(
            {
                "scenario": plan.label if plan else str(name),
                "score": scores[name],
                "reasons": "、".join(str(r) for r in reasons.get(name) or []) or "—",
                "chosen": name == chosen,
            }
        )
    plan = runbook.scenarios.get(chosen) if chosen else None
    lines = [f"推奨シナリオ: {plan.label}（{plan.remediation}）" if plan else "推奨シナリオ: なし（証拠が弱い）"]
    alarms = [str(a) for a in evidence.get("alarms") or [] if a]
    lines.append("ALARM 状態のアラーム: " + ("、".join(alarms) if alarms else "なし"))
    for deploy in evidence.get("deploys") or []:
        if isinstance(deploy, Mapping) and deploy.get("at"):
            lines.append(f"直近のデプロイ: {deploy.get('service') or '—'}（{_jst(deploy['at'], runbook.tz)}）")
    observations = [str(line) for line in evidence.get("highlights") or [] if line]
    return {"lines": lines, "scores": rows, "observations": observations}
