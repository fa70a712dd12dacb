"""The seeded inventory matches the runbook (names, counts, states), and seeding is idempotent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sandbox.seed import seed
from sandbox.server import Sandbox

from .helpers import Aws


def test_production_inventory(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    env = runbook.environment("production")
    backend = env.services["backend"]
    services = aws.ecs.describe_services(cluster=env.cluster, services=[s.ecs_service for s in env.services.values()])["services"]
    assert {s["serviceName"] for s in services} == {s.ecs_service for s in env.services.values()}
    for service in services:
        spec = env.service(service["serviceName"])
        family = service["taskDefinition"].rsplit("/", 1)[1].split(":")[0]
        revisions = aws.ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
        assert len(revisions) == 2 and service["taskDefinition"] == revisions[-1]
        assert service["desiredCount"] == spec.min_desired_count
        assert service["launchType"] == "FARGATE"
    be = next(s for s in services if s["serviceName"] == backend.ecs_service)
    app_sg = be["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"]
    groups = {g["GroupName"]: g for g in aws.ec2.describe_security_groups()["SecurityGroups"]}
    assert app_sg == [groups["peoplebooster-production-app"]["GroupId"]]
    quarantine = groups[env.quarantine_security_group]
    assert quarantine["IpPermissions"] == [] and quarantine["IpPermissionsEgress"] == []
    assert len(aws.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [quarantine["VpcId"]]}])["Subnets"]) == 2

    for spec in env.services.values():
        tg = aws.elbv2.describe_target_groups(Names=[spec.target_group])["TargetGroups"][0]
        assert tg["TargetType"] == "ip"
        targets = aws.elbv2.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]
        assert len(targets) == spec.min_desired_count
    alb = aws.elbv2.describe_load_balancers(Names=[env.load_balancer.split("/")[1]])["LoadBalancers"][0]
    assert aws.elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]

    cluster = aws.rds.describe_db_clusters(DBClusterIdentifier=env.database.cluster_id)["DBClusters"][0]
    members = {m["DBInstanceIdentifier"]: m["IsClusterWriter"] for m in cluster["DBClusterMembers"]}
    assert members == {env.database.instance_id: True, "peoplebooster-production-db-2": False}
    assert cluster["Engine"] == env.database.engine
    assert aws.rds.describe_db_cluster_snapshots(DBClusterIdentifier=env.database.cluster_id)["DBClusterSnapshots"]

    flag = aws.ssm.get_parameter(Name=env.feature_flags["external_fallback"])["Parameter"]["Value"]
    assert flag == "off"
    alarms = {a["AlarmName"]: a["StateValue"] for a in aws.cloudwatch.describe_alarms()["MetricAlarms"]}
    assert alarms == {a.name: "OK" for a in env.alarms}


def test_calm_logs_and_metrics(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    env = runbook.environment("production")
    start = int((dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)).timestamp() * 1000)
    lines = aws.logs.filter_log_events(logGroupName=env.log_groups["application"], startTime=start)["events"]
    assert len(lines) >= 20
    text = " ".join(e["message"] for e in lines)
    for scenario in runbook.scenarios.values():
        for term in scenario.signals.log_terms:
            assert term not in text, f"the calm baseline mentions {term!r}"
    now = dt.datetime.now(dt.UTC)
    cpu = aws.cloudwatch.get_metric_statistics(
        Namespace="AWS/ECS",
        MetricName="CPUUtilization",
        Dimensions=[{"Name": "ClusterName", "Value": env.cluster}, {"Name": "ServiceName", "Value": env.services["backend"].ecs_service}],
        StartTime=now - dt.timedelta(minutes=60),
        EndTime=now,
        Period=60,
        Statistics=["Average"],
    )["Datapoints"]
    assert len(cpu) >= 30 and max(p["Average"] for p in cpu) < 85


def test_seeding_twice_creates_nothing(sb: Sandbox, runbook: Any) -> None:
    again = seed(sb.ctx.aws, runbook, ["production"])
    assert all(result.created == [] for result in again.values())


def test_staging_seeds_alongside(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    created = seed(sb.ctx.aws, runbook, ["staging"])["staging"].created
    assert "ecs service peoplebooster-backend" in created and "security group peoplebooster-staging-quarantine" in created
    env = runbook.environment("staging")
    service = aws.ecs.describe_services(cluster=env.cluster, services=[env.services["backend"].ecs_service])["services"][0]
    assert service["desiredCount"] == env.services["backend"].min_desired_count
    assert aws.ssm.get_parameter(Name=env.feature_flags["external_fallback"])["Parameter"]["Value"] == "off"


def test_the_artifacts_bucket_is_seeded_private_and_emptied_by_a_reset(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    """The bucket INCIDENT_OPS_ARTIFACTS_URL points at (`s3://<bucket>/<prefix>`), named after the
    cluster and announced in the endpoints; a reset wipes moto and seeds it again, empty."""
    bucket = f"{runbook.environment('production').cluster}-incident-artifacts"
    assert sb.endpoints["artifacts_bucket"] == bucket
    assert bucket in {b["Name"] for b in aws.s3.list_buckets()["Buckets"]}
    assert aws.s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "ap-northeast-1"
    block = aws.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()), block
    aws.s3.put_object(Bucket=bucket, Key="incident-ops/x.txt", Body=b"x")
    sb.client.reset()
    assert aws.s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_object_storage_writes_into_the_bucket_through_the_aws_connection(
    sb: Sandbox, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Celery worker does with INCIDENT_OPS_ARTIFACTS_URL=s3://…: Airflow's ObjectStoragePath
    (the amazon provider's s3fs file system) with aws_default as the stacks build it (moto's endpoint
    in the connection's extra)."""
    from incident_ops import artifacts
    from scripts.incident_runner import sandbox_connections

    for name, value in sandbox_connections(sb.endpoints).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    bucket = sb.endpoints["artifacts_bucket"]
    monkeypatch.setenv(artifacts.ARTIFACTS_URL_ENV, f"s3://{bucket}/run-1")
    url = artifacts.write_text(artifacts.artifact("incidents", "INC-1", "evidence.json"), '{"ok": true}')
    assert url == f"s3://{bucket}/run-1/incidents/INC-1/evidence.json"
    assert artifacts.read_text(url) == '{"ok": true}' and artifacts.exists(url)
    body = aws.s3.get_object(Bucket=bucket, Key="run-1/incidents/INC-1/evidence.json")["Body"].read()
    assert body == b'{"ok": true}'
