"""Every scenario: healthy after seed; break -> unhealthy in the runbook's format, alarm in ALARM and
evidence in logs/metrics/Sentry; a fake remediation changes nothing; the real one (plain boto3, or
the GitHub rollback workflow) heals it, and the evaluator returns the alarm to OK."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sandbox.server import Sandbox

from .helpers import Aws, get, post, wait_for

ENV = "production"
SPEC_CHECKS = ("database", "redis", "externalServices")
# scenario -> the health check that must fail (application = the extra check for app problems)
FAILING_CHECK = {
    "deploy": "application",
    "resource": "application",
    "database": "database",
    "external": "externalServices",
    "security": "application",
}
ALARM = {
    "deploy": "peoplebooster-production-alb-5xx",
    "resource": "peoplebooster-production-backend-cpu-high",
    "database": "peoplebooster-production-rds-connections-high",
    "external": "peoplebooster-production-health-check-failed",
    "security": "peoplebooster-production-health-check-failed",
}
LOG_TERM = {
    "deploy": "ERROR",
    "resource": "OutOfMemory",
    "database": "connection refused",
    "external": "ExternalServiceError",
    "security": "SecurityAlert",
}


def health(sb: Sandbox) -> tuple[int, dict[str, Any]]:
    response = get(sb, "/pb/health")
    return response.status_code, response.json()


def alarm_state(aws: Aws, name: str) -> str:
    return aws.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]


def backend(aws: Aws, runbook: Any) -> dict[str, Any]:
    env = runbook.environment(ENV)
    return aws.ecs.describe_services(cluster=env.cluster, services=[env.services["backend"].ecs_service])["services"][0]


# --- remediations (plain boto3, as an operator or the automation would do them) -------------------


def ecs_rollback(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    current = aws.ecs.describe_task_definition(taskDefinition=backend(aws, runbook)["taskDefinition"])["taskDefinition"]
    aws.ecs.update_service(
        cluster=env.cluster,
        service=env.services["backend"].ecs_service,
        taskDefinition=f"{current['family']}:{current['revision'] - 1}",
    )


def github_rollback(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    sb.client.set_faults(github_conclusion="success")
    response = post(
        sb,
        f"/github/repos/{env.github.repository}/actions/workflows/rollback.yml/dispatches",
        headers={"Authorization": "Bearer ghp_sandbox", "Accept": "application/vnd.github+json"},
        json={"ref": env.github.ref, "inputs": {"environment": ENV, "service": "backend", "version": "latest-1"}, "return_run_details": True},
    )
    assert response.status_code == 200, response.text
    run_path = f"/github/repos/{env.github.repository}/actions/runs/{response.json()['workflow_run_id']}"

    def completed() -> dict[str, Any] | None:
        run = get(sb, run_path, headers={"Authorization": "Bearer ghp_sandbox"}).json()
        return run if run["status"] == "completed" else None

    assert wait_for(completed)["conclusion"] == "success"


def scale_out(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    aws.ecs.update_service(cluster=env.cluster, service=env.services["backend"].ecs_service, desiredCount=10)


def failover(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    aws.rds.failover_db_cluster(DBClusterIdentifier=runbook.environment(ENV).database.cluster_id)


def fallback_on(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    aws.ssm.put_parameter(Name=env.feature_flags["external_fallback"], Value="on", Type="String", Overwrite=True)


def quarantine_sg(aws: Aws, runbook: Any) -> str:
    env = runbook.environment(ENV)
    groups = aws.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [env.quarantine_security_group]}])
    return groups["SecurityGroups"][0]["GroupId"]


def isolate_sg(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    network = backend(aws, runbook)["networkConfiguration"]["awsvpcConfiguration"]
    aws.ecs.update_service(
        cluster=env.cluster,
        service=env.services["backend"].ecs_service,
        networkConfiguration={"awsvpcConfiguration": {"subnets": network["subnets"], "securityGroups": [quarantine_sg(aws, runbook)], "assignPublicIp": "DISABLED"}},
    )


def deregister(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    tg = aws.elbv2.describe_target_groups(Names=[env.services["backend"].target_group])["TargetGroups"][0]["TargetGroupArn"]
    targets = [t["Target"] for t in aws.elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]]
    if targets:
        aws.elbv2.deregister_targets(TargetGroupArn=tg, Targets=targets)


def isolate(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    isolate_sg(aws, runbook, sb)
    deregister(aws, runbook, sb)


# --- fake remediations (they change something, just not the cause) -------------------------------


def unrelated_scale(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    aws.ecs.update_service(cluster=env.cluster, service=env.services["backend"].ecs_service, desiredCount=12, forceNewDeployment=True)


def rollback_workflow_fails(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    sb.client.set_faults(github_conclusion="failure")
    env = runbook.environment(ENV)
    response = post(
        sb,
        f"/github/repos/{env.github.repository}/actions/workflows/rollback.yml/dispatches",
        headers={"Authorization": "Bearer ghp_sandbox"},
        json={"ref": "main", "inputs": {"environment": ENV, "service": "backend"}, "return_run_details": True},
    )
    run_path = f"/github/repos/{env.github.repository}/actions/runs/{response.json()['workflow_run_id']}"
    run = wait_for(lambda: (r := get(sb, run_path, headers={"Authorization": "Bearer x"}).json())["status"] == "completed" and r)
    assert run["conclusion"] == "failure"


def too_small_scale(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    aws.ecs.update_service(cluster=env.cluster, service=env.services["backend"].ecs_service, desiredCount=5)


def restore_snapshot(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    snapshot = aws.rds.describe_db_cluster_snapshots(DBClusterIdentifier=env.database.cluster_id)["DBClusterSnapshots"][-1]
    aws.rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier=f"{env.database.cluster_id}-restored",
        SnapshotIdentifier=snapshot["DBClusterSnapshotIdentifier"],
        Engine=env.database.engine,
    )


def wrong_flag_value(aws: Aws, runbook: Any, sb: Sandbox) -> None:
    env = runbook.environment(ENV)
    aws.ssm.put_parameter(Name=env.feature_flags["external_fallback"], Value="enabled", Type="String", Overwrite=True)


CASES: list[tuple[str, Callable[..., None], Callable[..., None]]] = [
    ("deploy", ecs_rollback, unrelated_scale),
    ("deploy", github_rollback, rollback_workflow_fails),
    ("resource", scale_out, too_small_scale),
    ("database", failover, restore_snapshot),
    ("external", fallback_on, wrong_flag_value),
    ("security", isolate, deregister),
    ("security", isolate, isolate_sg),
]


def test_healthy_after_seed(sb: Sandbox, aws: Aws) -> None:
    status, body = health(sb)
    assert status == 200
    assert body == {"status": "healthy", "checks": {name: {"status": "healthy"} for name in SPEC_CHECKS}}
    alarms = aws.cloudwatch.describe_alarms()["MetricAlarms"]
    assert alarms and {a["StateValue"] for a in alarms} == {"OK"}


@pytest.mark.parametrize(("scenario", "remedy", "fake"), CASES, ids=[f"{s}-{r.__name__}" for s, r, _ in CASES])
def test_break_fake_then_real_remediation(sb: Sandbox, aws: Aws, runbook: Any, scenario: str, remedy: Callable[..., None], fake: Callable[..., None]) -> None:
    assert health(sb)[0] == 200
    sb.client.break_scenario(scenario)

    status, body = health(sb)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert set(body) == {"status", "checks"}
    assert set(SPEC_CHECKS) <= set(body["checks"])
    assert body["checks"][FAILING_CHECK[scenario]]["status"] == "unhealthy"
    for name in SPEC_CHECKS:
        if name != FAILING_CHECK[scenario]:
            assert body["checks"][name]["status"] == "healthy"
    assert alarm_state(aws, ALARM[scenario]) == "ALARM"
    assert sb.client.state()["scenarios"] == [scenario]

    fake(aws, runbook, sb)
    sb.client.tick()
    assert health(sb)[0] == 503, f"{fake.__name__} must not heal {scenario}"
    assert alarm_state(aws, ALARM[scenario]) == "ALARM"

    remedy(aws, runbook, sb)
    status, body = health(sb)
    assert status == 200, body
    assert body == {"status": "healthy", "checks": {name: {"status": "healthy"} for name in SPEC_CHECKS}}
    sb.client.tick()
    assert alarm_state(aws, ALARM[scenario]) == "OK"
    assert sb.client.state()["breaks"][scenario]["healed_at"] is not None


@pytest.mark.parametrize("scenario", list(FAILING_CHECK))
def test_break_leaves_evidence(sb: Sandbox, aws: Aws, runbook: Any, scenario: str) -> None:
    env = runbook.environment(ENV)
    sb.client.break_scenario(scenario)
    start = int((dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)).timestamp() * 1000)
    for group in env.log_groups.values():
        events = aws.logs.filter_log_events(logGroupName=group, startTime=start, filterPattern=f'"{LOG_TERM[scenario]}"')["events"]
        assert events, f"no {LOG_TERM[scenario]!r} line in {group}"
    terms = runbook.scenario(scenario).signals.log_terms
    app_lines = " ".join(e["message"] for e in aws.logs.filter_log_events(logGroupName=env.log_groups["application"], startTime=start)["events"])
    assert all(term in app_lines for term in terms), terms

    issues = get(sb, f"/sentry/api/0/projects/{env.sentry.organization}/{env.sentry.project}/issues/", headers={"Authorization": "Bearer s"}).json()
    fresh = [i for i in issues if i["substatus"] == "new"]
    assert fresh and all(sum(n for _, n in i["stats"]["24h"]) > 0 for i in fresh)

    now = dt.datetime.now(dt.UTC)
    queries = []
    for spec in env.metrics:
        dims = []
        if spec.per_service:
            dims = [{"Name": "ClusterName", "Value": env.cluster}, {"Name": "ServiceName", "Value": env.services["backend"].ecs_service}]
        elif spec.namespace == "AWS/ApplicationELB":
            dims = [{"Name": "LoadBalancer", "Value": env.load_balancer}]
        elif spec.namespace == "AWS/RDS":
            dims = [{"Name": "DBClusterIdentifier", "Value": env.database.cluster_id}]
        queries.append({"Id": spec.id, "MetricStat": {"Metric": {"Namespace": spec.namespace, "MetricName": spec.metric, "Dimensions": dims}, "Period": 60, "Stat": spec.stat}})
    results = aws.cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=now - dt.timedelta(minutes=30), EndTime=now + dt.timedelta(minutes=1))
    values = {r["Id"]: r["Values"] for r in results["MetricDataResults"]}
    assert all(values[spec.id] for spec in env.metrics), {k: len(v) for k, v in values.items()}
    peak = {key: max(v) for key, v in values.items()}
    thresholds = runbook.scenario(scenario).signals.metrics_above
    for metric_id, threshold in thresholds.items():
        assert peak[metric_id] > threshold, (metric_id, peak[metric_id])
    if scenario == "deploy":
        assert peak["alb_5xx"] > 100
        service = backend(aws, runbook)
        deployed = service["deployments"][0]
        assert deployed["taskDefinition"] == service["taskDefinition"]
        assert now - deployed["createdAt"] < dt.timedelta(minutes=runbook.scenario("deploy").signals.recent_deploy_minutes)
        # ... and the deploy that brought the bad build is a GitHub Actions deploy.yml run of the window.
        since = (now - dt.timedelta(minutes=runbook.scenario("deploy").signals.recent_deploy_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        runs = get(sb, f"/github/repos/{env.github.repository}/actions/workflows/deploy.yml/runs",
                   headers={"Authorization": "Bearer ghp_sandbox"}, params={"created": f">={since}"}).json()
        assert runs["total_count"] == 1, runs
        run = runs["workflow_runs"][0]
        assert (run["status"], run["conclusion"], run["event"]) == ("completed", "success", "push")
        assert "backend" in run["display_title"] and "broken-" in run["display_title"]
    else:
        no_deploys = get(sb, f"/github/repos/{env.github.repository}/actions/workflows/deploy.yml/runs",
                         headers={"Authorization": "Bearer ghp_sandbox"}).json()
        assert no_deploys["total_count"] == 0


def test_functional_endpoints_follow_health(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    def run_checks() -> list[int]:
        login = post(sb, "/pb/api/v1/auth/login", json={"email": "healthcheck@peoplebooster.com", "password": "sandbox-password"})
        if login.status_code != 200:
            return [login.status_code]
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = post(sb, "/pb/api/v1/diagnoses", json={"template": "standard"}, headers=auth)
        codes = [login.status_code, created.status_code]
        if created.status_code == 201:
            codes.append(
                requests.put(f"{sb.endpoints['http']}/pb/api/v1/diagnoses/{created.json()['id']}/answers/1", json={"value": 3}, headers=auth, timeout=10).status_code
            )
        codes.append(get(sb, "/pb/api/v1/users/me", headers=auth).status_code)
        return codes

    assert run_checks() == [200, 201, 200, 200]
    sb.client.break_scenario("database")
    assert run_checks() == [503]
    failover(aws, runbook, sb)
    assert run_checks() == [200, 201, 200, 200]
    sb.client.break_scenario("external")
    assert run_checks() == [200, 503, 200]  # login and /users/me work; the diagnoses need the provider


def test_api_auth(sb_light: Sandbox) -> None:
    wrong = post(sb_light, "/pb/api/v1/auth/login", json={"email": "healthcheck@peoplebooster.com", "password": "nope"})
    assert wrong.status_code == 401
    assert get(sb_light, "/pb/api/v1/users/me").status_code == 401
    assert get(sb_light, "/pb/api/v1/users/me", headers={"Authorization": "Bearer forged"}).status_code == 401
    missing = requests.put(f"{sb_light.endpoints['http']}/pb/api/v1/diagnoses/999/answers/1", json={"value": 1}, timeout=10)
    assert missing.status_code == 404


def test_status_page_and_clear(sb: Sandbox) -> None:
    page = get(sb, "/status/api/v2/status.json").json()
    assert page["status"] == {"indicator": "none", "description": "All Systems Operational"}
    sb.client.break_scenario("external")
    assert get(sb, "/status/api/v2/status.json").json()["status"]["indicator"] == "major"
    assert health(sb)[0] == 503
    sb.client.clear_scenario("external")  # the provider recovers by itself (待機)
    assert get(sb, "/status/api/v2/status.json").json()["status"]["indicator"] == "none"
    assert health(sb)[0] == 200


def test_a_status_page_that_still_says_operational(sb: Sandbox) -> None:
    """Both external paths: the page says operational while the provider fails us (待機), the
    provider recovers by itself, or the page starts reporting the outage (the fallback)."""
    sb.client.break_scenario("external")
    sb.client.set_faults(status_page="none")
    assert get(sb, "/status/api/v2/status.json").json()["status"] == {"indicator": "none",
                                                                      "description": "All Systems Operational"}
    assert health(sb)[0] == 503  # the provider fails us all the same
    summary = get(sb, "/status/api/v2/summary.json").json()
    assert summary["components"][0]["status"] == "operational" and summary["incidents"] == []
    sb.client.set_faults(status_page=None)  # the page catches up with the truth
    assert get(sb, "/status/api/v2/status.json").json()["status"]["indicator"] == "major"
    sb.client.set_faults(status_page="minor")
    assert get(sb, "/status/api/v2/summary.json").json()["components"][0]["status"] == "degraded_performance"
    sb.client.clear_scenario("external")
    assert health(sb)[0] == 200
    with pytest.raises(RuntimeError, match="status_page must be"):
        sb.client.set_faults(status_page="purple")


def test_resource_break_is_the_load_balancers_5xx(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    """Too few healthy targets: the load balancer's own 5xx, hardly any from the targets."""
    env = runbook.environment(ENV)
    sb.client.break_scenario("resource")
    now = dt.datetime.now(dt.UTC)
    lb = [{"Name": "LoadBalancer", "Value": env.load_balancer}]
    queries = [{"Id": ident, "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": metric,
                                                       "Dimensions": lb}, "Period": 60, "Stat": "Sum"}}
               for ident, metric in (("elb", "HTTPCode_ELB_5XX_Count"), ("target", "HTTPCode_Target_5XX_Count"))]
    answer = aws.cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=now - dt.timedelta(minutes=5),
                                            EndTime=now + dt.timedelta(minutes=1))
    peak = {r["Id"]: max(r["Values"]) for r in answer["MetricDataResults"]}
    assert peak["elb"] > 100 and peak["target"] < peak["elb"] / 10, peak


def test_database_break_follows_the_writer(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    sb.client.break_scenario("database")
    state = sb.client.state()["aws"]
    assert state["failed_writer"] == runbook.environment(ENV).database.instance_id
    failover(aws, runbook, sb)
    assert sb.client.state()["aws"]["writer"] != state["failed_writer"]
    assert health(sb)[0] == 200
    failover(aws, runbook, sb)  # failing back onto the broken instance breaks it again
    assert health(sb)[0] == 503


def test_resource_scale_up_counts_as_capacity(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    env = runbook.environment(ENV)
    sb.client.break_scenario("resource")
    current = aws.ecs.describe_task_definition(taskDefinition=backend(aws, runbook)["taskDefinition"])["taskDefinition"]
    bigger = aws.ecs.register_task_definition(
        family=current["family"],
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="2048",
        memory="4096",
        containerDefinitions=current["containerDefinitions"],
    )["taskDefinition"]["taskDefinitionArn"]
    aws.ecs.update_service(cluster=env.cluster, service=env.services["backend"].ecs_service, taskDefinition=bigger)
    assert health(sb)[0] == 503  # 1 task x 2 vCPU is still below the need of 8
    aws.ecs.update_service(cluster=env.cluster, service=env.services["backend"].ecs_service, desiredCount=4)
    assert health(sb)[0] == 200


def test_reset_heals_everything(sb: Sandbox) -> None:
    for scenario in FAILING_CHECK:
        sb.client.break_scenario(scenario)
    state = sb.client.state()
    assert set(state["problems"]) == set(FAILING_CHECK)
    state = sb.client.reset()
    assert state["healthy"] and state["scenarios"] == []
    assert health(sb)[0] == 200


def test_unknown_scenario(sb_light: Sandbox) -> None:
    response = post(sb_light, "/_sandbox/break/meteor")
    assert response.status_code == 404
    assert "scenarios are" in response.json()["error"]
