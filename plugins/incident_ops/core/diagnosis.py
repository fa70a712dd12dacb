"""Phase 2's conclusion: which recovery scenario the evidence points to, and why.

Each scenario's `signals` in the runbook say what evidence suggests it (a recent deploy, log terms,
alarms in ALARM, metrics above a threshold, the load balancer's own 5xx without the targets' 5xx —
requests that never reached a healthy target: capacity or health, not the code). The score is a plain sum so the reasons can be shown to
the person who confirms the scenario; no evidence at all gives no suggestion.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from incident_ops.core.runbook import SCENARIOS, Runbook

__all__ = ["Suggestion", "lb_only_5xx", "suggest_scenario"]

# Weights: a deploy in the window or a metric past its threshold is strong evidence; a log term
# is weaker (the same words appear in many failures), an alarm the runbook ties to the scenario sits between.
WEIGHT_RECENT_DEPLOY = 3
WEIGHT_METRIC = 3
WEIGHT_ALARM = 2
WEIGHT_LOG_TERM = 1


@dataclass(frozen=True)
class Suggestion:
    scenario: str | None
    scores: dict[str, int]
    reasons: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "scores": dict(self.scores), "reasons": {k: list(v) for k, v in self.reasons.items()}}


def _aware(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else None


def _log_messages(evidence: Mapping[str, Any]) -> list[str]:
    messages: list[str] = []
    logs = evidence.get("logs") or {}
    # observe.aws.error_log_events nests the groups under "groups"; a plain {group: {...}} works too.
    for group in (logs.get("groups") or logs).values():
        if isinstance(group, Mapping):
            for event in group.get("events") or []:
                message = event.get("message") if isinstance(event, Mapping) else event
                if isinstance(message, str):
                    messages.append(message)
    return messages


def _metric_peak(evidence: Mapping[str, Any], metric_id: str) -> tuple[float, str] | None:
    """The highest value of the series for `metric_id` (per-service series are `<id>_<service>`)."""
    peak: tuple[float, str] | None = None
    for series_id, series in (evidence.get("metrics") or {}).items():
        base = series.get("metric_id", series_id) if isinstance(series, Mapping) else series_id
        if base != metric_id and not str(series_id).startswith(f"{metric_id}_"):
            continue
        values = [float(v) for v in (series.get("values") or []) if v is not None]
        if values and (peak is None or max(values) > peak[0]):
            peak = (max(values), str(series.get("label") or series_id))
    return peak


def lb_only_5xx(evidence: Mapping[str, Any], rule: Any) -> str | None:
    """The reason when the load balancer's own 5xx peak is above `rule.above` while the targets'
    5xx peak stays under `rule.max_target_share` of it (none at all counts as 0); else None."""
    lb = _metric_peak(evidence, rule.lb_metric)
    if lb is None or lb[0] <= rule.above:
        return None
    targets = _metric_peak(evidence, rule.target_metric)
    target_peak = targets[0] if targets is not None else 0.0
    if target_peak > lb[0] * rule.max_target_share:
        return None
    return (f"ロードバランサー自身の5xx が {lb[0]:g}、ターゲットの5xx は {target_peak:g}: "
            "コードではなく容量・ヘルスチェックの問題")


def suggest_scenario(runbook: Runbook, evidence: Mapping[str, Any], now: dt.datetime) -> Suggestion:
    """Score every scenario against the evidence; the highest positive score is the suggestion.

    `evidence`: {"logs": {group: {"events": [{"message"}]}}, "metrics": {series_id: {"values", "label"}},
    "alarms": [{"AlarmName"}], "deploys": [{"service", "at"}]} — what the investigation collected.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    messages = _log_messages(evidence)
    alarms_in_alarm = {
        (alarm.get("name") or alarm.get("AlarmName")) if isinstance(alarm, Mapping) else alarm
        for alarm in evidence.get("alarms") or []
    }
    scores: dict[str, int] = {}
    reasons: dict[str, list[str]] = {}
    for name in SCENARIOS:
        signals = runbook.scenario(name).signals
        score = 0
        why: list[str] = []
        if signals.recent_deploy_minutes:
            window = dt.timedelta(minutes=signals.recent_deploy_minutes)
            for deploy in evidence.get("deploys") or []:
                at = _aware(deploy.get("at"))
                if at is not None and dt.timedelta(0) <= now - at <= window:
                    minutes = int((now - at).total_seconds() // 60)
                    score += WEIGHT_RECENT_DEPLOY
                    why.append(f"直近のデプロイ: {deploy.get('service', '?')} ({minutes}分前)")
                    break
        for term in signals.log_terms:
            needle = term.casefold()
            hits = sum(1 for message in messages if needle in message.casefold())
            if hits:
                score += WEIGHT_LOG_TERM
                why.append(f"ログに「{term}」が{hits}件")
        for alarm in signals.alarms:
            if alarm in alarms_in_alarm:
                score += WEIGHT_ALARM
                why.append(f"アラーム {alarm} が ALARM")
        for metric_id, threshold in signals.metrics_above.items():
            peak = _metric_peak(evidence, metric_id)
            if peak is not None and peak[0] > threshold:
                score += WEIGHT_METRIC
                why.append(f"{peak[1]} が {peak[0]:g} (閾値 {threshold:g})")
        if signals.lb_5xx_only is not None:
            reason = lb_only_5xx(evidence, signals.lb_5xx_only)
            if reason:
                score += WEIGHT_METRIC
                why.append(reason)
        scores[name] = score
        reasons[name] = why
    best = max(SCENARIOS, key=lambda name: (scores[name], -SCENARIOS.index(name)))
    return Suggestion(scenario=best if scores[best] > 0 else None, scores=scores, reasons=reasons)
