from __future__ import annotations

import datetime as dt

import pytest

from incident_ops.core.diagnosis import suggest_scenario

NOW = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)


def logs(*messages: str) -> dict:
    return {"application": {"events": [{"message": m} for m in messages]}, "error": {"events": []}}


def test_no_evidence_no_suggestion(runbook) -> None:
    suggestion = suggest_scenario(runbook, {}, NOW)
    assert suggestion.scenario is None
    assert set(suggestion.scores) == {"deploy", "resource", "database", "external", "security"}
    assert all(score == 0 for score in suggestion.scores.values())


def test_recent_deploy_and_5xx_alarm_suggest_rollback(runbook) -> None:
    evidence = {
        "deploys": [{"service": "backend", "at": (NOW - dt.timedelta(minutes=12)).isoformat()}],
        "alarms": [{"AlarmName": "peoplebooster-production-alb-5xx"}],
        "logs": logs("ERROR TypeError: cannot read property 'id' of undefined"),
    }
    suggestion = suggest_scenario(runbook, evidence, NOW)
    assert suggestion.scenario == "deploy"
    assert any("12分前" in reason for reason in suggestion.reasons["deploy"])
    assert any("alb-5xx" in reason for reason in suggestion.reasons["deploy"])


def test_old_deploy_is_not_evidence(runbook) -> None:
    evidence = {"deploys": [{"service": "backend", "at": (NOW - dt.timedelta(hours=5)).isoformat()}]}
    assert suggest_scenario(runbook, evidence, NOW).scenario is None


def test_cpu_past_threshold_suggests_resource(runbook) -> None:
    evidence = {"metrics": {"ecs_cpu_backend": {"label": "ECS CPU backend", "values": [40.0, 97.5, 96.0]}}}
    suggestion = suggest_scenario(runbook, evidence, NOW)
    assert suggestion.scenario == "resource"
    assert suggestion.reasons["resource"] == ["ECS CPU backend が 97.5 (閾値 85)"]


def test_metric_below_threshold_is_not_evidence(runbook) -> None:
    evidence = {"metrics": {"ecs_cpu_backend": {"values": [40.0, 60.0]}}}
    assert suggest_scenario(runbook, evidence, NOW).scenario is None


@pytest.mark.parametrize(
    ("line", "scenario"),
    [
        ("ERROR could not connect to database: connection refused", "database"),
        ("ERROR ExternalServiceError: payment upstream returned 503", "external"),
        ("WARN SecurityAlert: unauthorized access to /admin from 203.0.113.9", "security"),
    ],
)
def test_log_terms(runbook, line: str, scenario: str) -> None:
    assert suggest_scenario(runbook, {"logs": logs(line, line)}, NOW).scenario == scenario


def test_naive_now_is_refused(runbook) -> None:
    with pytest.raises(ValueError):
        suggest_scenario(runbook, {}, dt.datetime(2026, 11, 28, 3, 0))


def series(metric_id: str, *values: float) -> dict:
    return {"metric_id": metric_id, "label": metric_id, "values": list(values)}


def test_load_balancer_5xx_without_target_5xx_points_at_capacity(runbook) -> None:
    evidence = {"metrics": {"elb_5xx": series("elb_5xx", 3, 240, 260), "alb_5xx": series("alb_5xx", 0, 4, 2)}}
    suggestion = suggest_scenario(runbook, evidence, NOW)
    assert suggestion.scenario == "resource"
    assert suggestion.reasons["resource"] == [
        "ロードバランサー自身の5xx が 260、ターゲットの5xx は 4: コードではなく容量・ヘルスチェックの問題"]
    # no target series at all counts as no target 5xx
    assert suggest_scenario(runbook, {"metrics": {"elb_5xx": series("elb_5xx", 50)}}, NOW).scenario == "resource"


@pytest.mark.parametrize("evidence", [
    # the targets answer 5xx themselves: the code (or what it calls), not capacity
    {"metrics": {"elb_5xx": series("elb_5xx", 260), "alb_5xx": series("alb_5xx", 300)}},
    # a few load-balancer errors are noise
    {"metrics": {"elb_5xx": series("elb_5xx", 8), "alb_5xx": series("alb_5xx", 0)}},
])
def test_load_balancer_5xx_that_is_not_evidence(runbook, evidence: dict) -> None:
    assert suggest_scenario(runbook, evidence, NOW).scores["resource"] == 0
