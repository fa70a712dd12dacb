"""The registry: one function per runbook action, params from the inventory, run by name."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from incident_ops.actions import ACTION_FUNCTIONS as LAZY_ACTION_FUNCTIONS
from incident_ops.actions.base import ActionError, GuardRailError, Result
from incident_ops.actions.registry import ACTION_FUNCTIONS, Clients, aws_client_config, run_action, step_params
from incident_ops.clients.github import GitHubClient
from incident_ops.clients.http import HttpClient, RetryPolicy
from incident_ops.core.runbook import ACTIONS, Runbook

from .conftest import INCIDENT
from .inventory import Inventory


def test_every_runbook_action_has_a_function() -> None:
    assert set(ACTION_FUNCTIONS) == ACTIONS
    assert LAZY_ACTION_FUNCTIONS is ACTION_FUNCTIONS


def test_aws_client_config_retries_throttling() -> None:
    assert aws_client_config().retries == {"mode": "standard", "max_attempts": 8}


def step(runbook: Runbook, scenario: str, step_id: str):
    return runbook.scenario(scenario).step(step_id)


def test_step_params_merge_inventory_step_and_guard_rails(runbook: Runbook) -> None:
    p = step_params(runbook, "production", step(runbook, "resource", "scale_out"), incident_id=INCIDENT)
    assert p == {
        "region": "ap-northeast-1", "confirm": False, "cluster": "peoplebooster-production",
        "service": "peoplebooster-backend", "desired_count": 10, "environment": "production",
        "incident_id": INCIDENT, "allow_remediation": True, "max_desired_count": 20, "min_desired_count": 4,
    }
    front = step_params(runbook, "production", step(runbook, "resource", "scale_out"), service="frontend",
                        incident_id=INCIDENT)
    assert (front["service"], front["max_desired_count"]) == ("peoplebooster-frontend", 10)

    gh = step_params(runbook, "production", step(runbook, "deploy", "rollback"), incident_id=INCIDENT,
                     since="2026-01-05T10:00:00+09:00")
    assert {k: gh[k] for k in ("repository", "ref", "workflow", "environment", "service", "version", "since",
                                "ecs_service", "timeout_seconds")} == {
        "repository": "peoplebooster/peoplebooster", "ref": "main", "workflow": "rollback.yml",
        "environment": "production", "service": "backend", "version": "latest-1",
        "since": "2026-01-05T10:00:00+09:00", "ecs_service": "peoplebooster-backend", "timeout_seconds": 900}

    db = step_params(runbook, "production", step(runbook, "database", "restore"), incident_id=INCIDENT, confirm=True)
    assert (db["cluster_id"], db["instance_id"], db["snapshot"], db["confirm"]) == (
        "peoplebooster-production-db", "peoplebooster-production-db-1", "latest", True)
    assert db["restore_instance_class"] == "db.r6g.large"

    flag = step_params(runbook, "production", step(runbook, "external", "fallback"), incident_id=INCIDENT)
    assert (flag["name"], flag["value"]) == ("/peoplebooster/production/feature-flags/external-fallback", "on")

    status = step_params(runbook, "production", step(runbook, "external", "check_status"), incident_id=INCIDENT)
    assert status["url"] == "https://status.example-payments.com/api/v2/status.json"

    iso = step_params(runbook, "production", step(runbook, "security", "isolate"), incident_id=INCIDENT)
    assert (iso["target_group"], iso["quarantine_security_group"], iso["method"]) == (
        "peoplebooster-backend-tg", "peoplebooster-production-quarantine", "deregister")

    staging = step_params(runbook, "staging", step(runbook, "resource", "scale_out"), incident_id=INCIDENT)
    assert staging["allow_remediation"] is False and staging["max_desired_count"] == 4


def test_step_params_cannot_override_guard_rails(runbook: Runbook) -> None:
    sneaky = {"action": "ecs_scale_out", "params": {"desired_count": 50, "max_desired_count": 100,
                                                    "allow_remediation": True}}
    p = step_params(runbook, "staging", sneaky, incident_id=INCIDENT)
    assert (p["allow_remediation"], p["max_desired_count"], p["desired_count"]) == (False, 4, 50)


def test_step_params_unknown_flag(runbook: Runbook) -> None:
    with pytest.raises(ActionError, match="unknown feature flag 'nope'"):
        step_params(runbook, "production", {"action": "set_feature_flag", "params": {"flag": "nope", "value": "on"}},
                    incident_id=INCIDENT)


def test_run_action_errors() -> None:
    with pytest.raises(ActionError, match="unknown action 'reboot_everything'"):
        run_action("reboot_everything", Clients(), {}, check_mode=True)
    with pytest.raises(ActionError, match="ecs_scale_out needs the ecs client"):
        run_action("ecs_scale_out", Clients(), {"cluster": "c", "service": "s", "desired_count": 1,
                                                "max_desired_count": 2}, check_mode=True)


def aws_state(clients: Clients, inv: Inventory) -> dict:
    svc = clients.ecs.describe_services(cluster=inv.cluster, services=["peoplebooster-backend"])["services"][0]
    return {
        "service": svc,
        "service_tags": clients.ecs.list_tags_for_resource(resourceArn=svc["serviceArn"])["tags"],
        "task_definitions": clients.ecs.list_task_definitions()["taskDefinitionArns"],
        "clusters": [(c["DBClusterIdentifier"], c["Status"], c["DBClusterMembers"])
                     for c in clients.rds.describe_db_clusters()["DBClusters"]],
        "targets": clients.elbv2.describe_target_health(
            TargetGroupArn=inv.service("backend").target_group_arn)["TargetHealthDescriptions"],
        "rules": clients.elbv2.describe_rules(ListenerArn=inv.listener_arn)["Rules"],
        "flag": clients.ssm.get_parameter(Name=inv.feature_flags["external_fallback"])["Parameter"]["Value"],
    }


def test_every_runbook_step_runs_in_check_mode_and_changes_nothing(
    runbook: Runbook, clients: Clients, inventory: Inventory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/v2/status.json").respond_with_json(
        {"status": {"indicator": "major", "description": "Partial System Outage"}})
    clients.github = GitHubClient("t", base_url=httpserver.url_for(""))
    clients.http = HttpClient("", policy=RetryPolicy(attempts=1))
    before = aws_state(clients, inventory)

    ran = []
    for name, scenario in runbook.scenarios.items():
        for st in scenario.steps:
            params = step_params(runbook, "production", st, incident_id=INCIDENT, severity="P1")
            if st.action == "external_status_check":
                params["url"] = httpserver.url_for("/api/v2/status.json")
            result = run_action(st.action, clients, params, check_mode=True)
            assert isinstance(result, Result) and result.check_mode, (name, st.id)
            ran.append((st.action, result.changed))

    assert {a for a, _ in ran} == {s.action for sc in runbook.scenarios.values() for s in sc.steps}
    assert ("external_status_check", False) in ran
    assert all(changed for action, changed in ran if action != "external_status_check")
    assert aws_state(clients, inventory) == before
    # only the status page (the check and the wait's first look); nothing dispatched
    status_steps = [s for sc in runbook.scenarios.values() for s in sc.steps if s.action == "external_status_check"]
    assert [r.method for r, _ in httpserver.log] == ["GET"] * len(status_steps)


def test_staging_refuses_to_remediate_through_the_registry(runbook: Runbook, clients: Clients,
                                                           inventory: Inventory) -> None:
    params = step_params(runbook, "staging", step(runbook, "external", "fallback"), incident_id=INCIDENT)
    with pytest.raises(GuardRailError, match="remediation is not allowed in staging"):
        run_action("set_feature_flag", clients, params, check_mode=False)
    # The runbook asks for 10 tasks; staging's cap is 4: refused even in check mode (the drill shows it).
    params = step_params(runbook, "staging", step(runbook, "resource", "scale_out"), incident_id=INCIDENT)
    with pytest.raises(GuardRailError, match="above the cap max_desired_count=4"):
        run_action("ecs_scale_out", clients, params, check_mode=True)


def test_apply_through_the_registry_then_again(runbook: Runbook, clients: Clients, inventory: Inventory) -> None:
    params = step_params(runbook, "production", step(runbook, "external", "fallback"), incident_id=INCIDENT)
    first = run_action("set_feature_flag", clients, params, check_mode=False)
    second = run_action("set_feature_flag", clients, params, check_mode=False)
    assert (first.changed, second.changed, first.check_mode) == (True, False, False)

    params = step_params(runbook, "production", step(runbook, "resource", "scale_out"), incident_id=INCIDENT)
    assert run_action("ecs_scale_out", clients, params, check_mode=False).after["desired_count"] == 10
    assert not run_action("ecs_scale_out", clients, params, check_mode=False).changed
