"""Phase 3 between the steps: whether a conditional step runs, the external wait, and what is said.

The runbook's steps may carry `when:` (see `incident_ops.core.runbook.STEP_CONDITIONS`). The rules:

- **still_unhealthy** — a ladder (the runbook's 「A/B」: スケールアウト then スケールアップ,
  フェイルオーバー then スナップショット復元): the next rung is offered only while the service is
  still unhealthy after the rung before it (`ladder` in the runbook: N healthy answers in a row
  within a short budget). Healed → skipped, with the reason 「フェイルオーバーで復旧したため
  スナップショット復元は不要」.
- **provider_operational** — the status step found the provider operational: the outage is not
  confirmed, so wait (待機) rather than switch to the fallback.
- **provider_down** — the status page reports an outage (at the check, or during the wait), or the
  wait ran out with the service still unhealthy: the fallback. A wait that ended because the
  service recovered makes it unnecessary.
- **aws_failure** — an earlier AWS step of the scenario failed (AWS refused or timed out; a guard
  rail's refusal is ours, not AWS's): open a case with AWS Support.

In check mode nothing changed, so a ladder's next rung is always offered (the dry run reports what
it would do); the other conditions are decided on the dry run's own reports (the status page was
really read; no AWS step really failed). Plain inputs (the step reports the ledger recorded, a
health observation), plain outputs; nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from incident_ops.core.messages import render, trusted
from incident_ops.core.runbook import AWS_ACTIONS, Runbook, Scenario, Step

__all__ = [
    "CONFIRMED_OUTAGE",
    "INDICATOR_LABELS",
    "StepDecision",
    "decide_step",
    "needs_health",
    "render_scenario_notice",
    "render_wait_message",
    "scenario_reports",
    "status_text",
    "support_case_text",
    "wait_transition",
]

# Status-page indicators that confirm an outage while waiting (an unreachable page does not: it is
# posted as a change and the wait goes on).
CONFIRMED_OUTAGE = frozenset({"minor", "major", "critical"})
INDICATOR_LABELS = {
    "none": "正常稼働",
    "minor": "一部障害",
    "major": "障害",
    "critical": "重大な障害",
    "unreachable": "接続できません",
    "unknown": "不明",
}
CONDITION_LABELS = {
    "still_unhealthy": "前の手順の後も異常が続く場合のみ",
    "provider_operational": "ステータスページが正常な場合のみ",
    "provider_down": "外部サービスの障害を確認した場合のみ",
    "aws_failure": "AWS 側の操作が失敗した場合のみ",
}
WaitEvent = Literal["outage", "changed", "same"]


@dataclass(frozen=True)
class StepDecision:
    run: bool
    reason: str
    condition: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def needs_health(step: Step) -> bool:
    """Whether deciding the step needs the service's health after the step before it."""
    return step.when == "still_unhealthy" and step.wait is None


def scenario_reports(plan: Scenario, reports: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The reports of this scenario's steps, in order (a report per step attempt)."""
    ids = {step.id for step in plan.steps}
    return [report for report in reports if report.get("step") in ids]


def _last(reports: Sequence[Mapping[str, Any]], step_ids: set[str]) -> Mapping[str, Any] | None:
    found = [report for report in reports if report.get("step") in step_ids]
    return found[-1] if found else None


def _earlier(plan: Scenario, step: Step) -> list[Step]:
    main = plan.main_steps()
    return main[: main.index(step)]


def _chain(plan: Scenario, step: Step) -> set[str]:
    """The step and the fallbacks it may run (a step's outcome is its last attempt)."""
    ids, current = {step.id}, step
    while current.fallback and current.fallback not in ids:
        ids.add(current.fallback)
        current = plan.step(current.fallback)
    return ids


def status_text(details: Mapping[str, Any] | None) -> str:
    """「All Systems Operational」（正常稼働） — what the status page says, for people."""
    details = details or {}
    indicator = str(details.get("indicator") or "unknown")
    label = INDICATOR_LABELS.get(indicator, indicator)
    description = " ".join(str(details.get("description") or "").split())[:200]
    return f"「{description}」（{label}）" if description else label


def _ladder(plan: Scenario, step: Step, reports: Sequence[Mapping[str, Any]], health: Mapping[str, Any] | None) -> StepDecision:
    if health is None:
        raise ValueError(f"step {step.id!r} (still_unhealthy) is decided on the service's health: pass it")
    previous = _earlier(plan, step)[-1]
    last = _last(reports, _chain(plan, previous))
    did = last is not None and not last.get("skipped") and last.get("ok") is not False and last.get("changed")
    failed = last is not None and last.get("ok") is False
    if health.get("healthy"):
        if did:
            return StepDecision(False, f"{previous.title}で復旧したため{step.title}は不要", step.when)
        return StepDecision(False, f"サービスが正常に戻ったため{step.title}は不要", step.when)
    if failed:
        return StepDecision(True, f"{previous.title}が失敗し、サービスが復旧していないため{step.title}を提案", step.when)
    if did:
        return StepDecision(True, f"{previous.title}の後もサービスが復旧していないため{step.title}を提案", step.when)
    return StepDecision(True, f"サービスが復旧していないため{step.title}を提案", step.when)


def _status_steps(plan: Scenario, step: Step) -> tuple[set[str], set[str]]:
    """(ids of the plain status checks, ids of the waits) before `step`."""
    checks, waits = set(), set()
    for earlier in _earlier(plan, step):
        if earlier.action == "external_status_check":
            (waits if earlier.wait else checks).add(earlier.id)
    return checks, waits


def _provider(plan: Scenario, step: Step, reports: Sequence[Mapping[str, Any]]) -> StepDecision:
    checks, waits = _status_steps(plan, step)
    waited = _last([r for r in reports if not r.get("skipped")], waits)
    if step.when == "provider_down" and waited is not None:
        details = waited.get("details") or {}
        outcome = details.get("wait_outcome")
        if outcome == "recovered":
            return StepDecision(False, f"待機中にサービスが復旧したため{step.title}は不要", step.when)
        if outcome == "outage":
            return StepDecision(True, f"待機中にステータスページが障害を報告したため{step.title}を実施"
                                      f"（{status_text(details)}）", step.when)
        if outcome == "timeout":
            return StepDecision(True, f"待機の上限までにサービスが復旧しなかったため{step.title}を実施", step.when)
    checked = _last([r for r in reports if not r.get("skipped")], checks)
    details = (checked or {}).get("details") or {}
    if checked is None or "operational" not in details:
        if step.when == "provider_operational":
            return StepDecision(False, f"ステータスページの確認結果がないため{step.title}はしない", step.when)
        return StepDecision(True, f"ステータスページの確認結果がなく障害を否定できないため{step.title}を実施", step.when)
    operational = bool(details.get("operational"))
    if step.when == "provider_operational":
        if operational:
            return StepDecision(True, f"ステータスページは{status_text(details)}で障害を確認できないため{step.title}",
                                step.when)
        return StepDecision(False, f"ステータスページで障害を確認したため{step.title}は不要（{status_text(details)}）",
                            step.when)
    if operational:
        return StepDecision(False, f"ステータスページは{status_text(details)}で障害を確認できないため{step.title}は見送り",
                            step.when)
    if details.get("indicator") == "unreachable":
        return StepDecision(True, f"ステータスページに接続できず障害を否定できないため{step.title}を実施", step.when)
    return StepDecision(True, f"ステータスページで外部サービスの障害を確認したため{step.title}を実施"
                              f"（{status_text(details)}）", step.when)


def _aws_failure(plan: Scenario, step: Step, reports: Sequence[Mapping[str, Any]]) -> StepDecision:
    earlier = [s for s in _earlier(plan, step) if s.action in AWS_ACTIONS]
    titles = {s.id: s.title for s in plan.steps}
    failed = [
        report for report in reports
        if report.get("action") in AWS_ACTIONS and report.get("ok") is False and not report.get("refused")
        and not report.get("skipped")
    ]
    if failed:
        names = "・".join(dict.fromkeys(titles.get(str(r.get("step")), str(r.get("step"))) for r in failed))
        return StepDecision(True, f"{names}が AWS 側で失敗したため{step.title}を提案", step.when)
    names = "・".join(s.title for s in earlier)
    return StepDecision(False, f"AWS 側の操作（{names}）に失敗がないため{step.title}は不要", step.when)


def decide_step(
    runbook: Runbook,
    scenario: str,
    step_id: str,
    reports: Sequence[Mapping[str, Any]],
    *,
    health: Mapping[str, Any] | None = None,
    check_mode: bool = False,
) -> StepDecision:
    """Whether `step_id` of `scenario` runs, and why (Japanese, for the ledger and the approval).

    `reports`: the step reports recorded for the incident so far (the ledger's `action` events),
    in order; `health`: {"healthy": bool, ...} after the step before it (only `still_unhealthy`
    needs it, see `needs_health`).
    """
    plan = runbook.scenario(scenario)
    step = plan.step(step_id)
    if step.when is None:
        return StepDecision(True, "", None)
    if check_mode and step.when == "still_unhealthy":
        return StepDecision(True, f"チェックモード: 前の手順は何も変えていないため{step.title}も確認"
                                  f"（条件: {CONDITION_LABELS[step.when]}）", step.when)
    # A real run does not count a dry run's reports of the same incident; a dry run counts its own.
    mine = scenario_reports(plan, [r for r in reports if bool(r.get("check_mode")) == check_mode])
    if step.when == "still_unhealthy":
        return _ladder(plan, step, mine, health)
    if step.when in ("provider_operational", "provider_down"):
        return _provider(plan, step, mine)
    return _aws_failure(plan, step, mine)


def wait_transition(status: Mapping[str, Any], last_seen: Mapping[str, Any] | None) -> WaitEvent:
    """One status-page answer during the wait: an outage (the wait ends), a change of what it says
    (posted, the wait goes on), or the same as last time (nothing to say)."""
    indicator = str(status.get("indicator") or "unknown")
    if indicator in CONFIRMED_OUTAGE:
        return "outage"
    seen = last_seen or {}
    if (indicator, status.get("description")) != (seen.get("indicator"), seen.get("description")):
        return "changed"
    return "same"


# --- what people read ------------------------------------------------------------------------------


def _duration(minutes: float) -> str:
    """`2分`, `1時間`, `1時間30分`, `30秒` (a wait's interval and length)."""
    seconds = round(float(minutes) * 60)
    if seconds < 60:
        return f"{seconds}秒"
    whole = seconds // 60
    hours, rest = divmod(whole, 60)
    if hours and rest:
        return f"{hours}時間{rest}分"
    return f"{hours}時間" if hours else f"{rest}分"


def _one_line(value: Any) -> str:
    """Whitespace (newlines too) collapsed; the template escapes it for Slack."""
    return " ".join(str(value).split())


def _next_title(plan: Scenario, step: Step) -> str:
    main = plan.main_steps()
    for later in main[main.index(step) + 1:]:
        if later.when == "provider_down":
            return later.title
    return "次の手順"


def render_wait_message(
    runbook: Runbook,
    *,
    kind: Literal["start", "changed", "outage", "recovered", "timeout"],
    incident_id: str,
    scenario: str,
    step_id: str,
    status: Mapping[str, Any] | None,
    waited_minutes: float = 0.0,
    consecutive: int | None = None,
) -> str:
    """The incident channel's post about the external wait: its start, each change of what the
    status page says, and how it ended (outage → fallback, recovered, or the limit)."""
    plan = runbook.scenario(scenario)
    step = plan.step(step_id)
    if step.wait is None:
        raise ValueError(f"step {step_id!r} of {scenario} does not wait")
    page = ((status or {}).get("page") or {}).get("name")
    return render(
        "status_wait.txt.j2",
        kind=kind,
        incident_id=_one_line(incident_id),
        page=f"（{_one_line(page)}）" if page else "",
        status=_one_line(status_text(status)),
        interval=_duration(step.wait.interval_minutes),
        max=_duration(step.wait.max_minutes),
        waited=_duration(waited_minutes),
        consecutive=consecutive or runbook.ladder.consecutive_healthy,
        next_step=_next_title(plan, step),
    ).rstrip("\n")


def render_scenario_notice(
    runbook: Runbook,
    *,
    channel_key: str,
    incident_id: str,
    scenario: str,
    severity: str,
    symptom: str,
    reasons: Sequence[str] = (),
    incident_channel: str | None = None,
    incident_channel_id: str | None = None,
    check_mode: bool = False,
) -> str:
    """The notice a scenario's `notify` channels get when it starts (e.g. #infra-support: what is
    happening, where to follow it, and the evidence's reason)."""
    from incident_ops.core.narrative import target_label

    plan = runbook.scenario(scenario)
    if incident_channel:
        name = incident_channel.lstrip("#")
        channel = trusted(f"<#{incident_channel_id}|{name}>") if incident_channel_id else f"#{name}"
    else:
        channel = "未作成"
    return render(
        "scenario_notice.txt.j2",
        team=target_label(channel_key),
        scenario=plan.label,
        remediation=plan.remediation,
        severity=severity,
        incident_id=_one_line(incident_id),
        symptom=_one_line(symptom),
        reason=_one_line("、".join(reasons[:3])) if reasons else "調査結果からの根拠なし（担当者の判断）",
        channel=channel,
        check_mode=check_mode,
    ).rstrip("\n")


def support_case_text(
    runbook: Runbook,
    *,
    incident: Mapping[str, Any],
    scenario: str,
    reports: Sequence[Mapping[str, Any]],
) -> tuple[str, str]:
    """(subject, body) of the AWS Support case: the incident, and the AWS operations that failed.

    The subject starts with `[<incident id>]`: the module finds the case of an incident by it."""
    plan = runbook.scenario(scenario)
    env = runbook.environment(str(incident["environment"]))
    titles = {s.id: s.title for s in plan.steps}
    failed = [
        r for r in scenario_reports(plan, reports)
        if r.get("action") in AWS_ACTIONS and r.get("ok") is False and not r.get("refused")
    ]
    names = "・".join(dict.fromkeys(titles.get(str(r.get("step")), str(r.get("step"))) for r in failed)) or plan.remediation
    severity = str(incident["severity"])
    subject = f"[{incident['id']}] PeopleBooster {incident['environment']}: {names}の失敗（{severity}）"
    detected = incident.get("detected_at")
    if isinstance(detected, str):
        detected = dt.datetime.fromisoformat(detected.replace("Z", "+00:00"))
    resources = [env.cluster, env.database.cluster_id or env.database.instance_id] if scenario == "database" else [env.cluster]
    body = render(
        "support_case.txt.j2",
        plain=True,  # AWS Support's console, not Slack: nothing to escape
        environment=incident["environment"],
        incident_id=incident["id"],
        severity=severity,
        detected=detected.astimezone(runbook.tz).strftime("%Y-%m-%d %H:%M JST") if isinstance(detected, dt.datetime) else "—",
        symptom=" ".join(str(incident.get("symptom") or "—").split()),
        scenario=f"{plan.label}（{plan.remediation}）",
        resources="、".join(r for r in resources if r),
        failures=[f"{titles.get(str(r.get('step')), r.get('step'))}（{r.get('action')}）: "
                  f"{' '.join(str(r.get('message') or '').split())[:300]}" for r in failed] or ["（記録なし）"],
        account_id=env.account_id,
        region=env.region,
    ).rstrip("\n")
    return subject, body
