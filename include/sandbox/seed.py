"""Seed moto with the runbook's inventory (environments.<name>), under the runbook's names.

Per environment: a VPC with two private subnets; security groups (ALB, app, DB and the quarantine
group with no rules at all); the ECS cluster with every service of the runbook (two task-definition
revisions each, the service on the latest, awsvpc with the app group, desired = min_desired_count)
behind the ALB and its target groups (ip targets registered); the Aurora cluster with the runbook's
writer and a reader, plus cluster snapshots; the two log groups with recent application lines; the
CloudWatch alarms (OK) and an hour of metrics; the feature-flag parameters in SSM ("off").

`seed()` only creates what is missing, so it can run twice. It does not repair drift (the sandbox's
reset wipes moto and seeds again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from .aws import AwsClients

__all__ = ["Names", "SeedResult", "artifacts_bucket_name", "baseline_metrics", "metric_data", "names_for", "seed"]


@dataclass(frozen=True)
class ServiceNames:
    key: str
    ecs_service: str
    family: str
    container: str
    port: int
    image_repo: str
    target_group: str
    min_desired: int
    cpu: int
    memory: int


@dataclass(frozen=True)
class Names:
    """The AWS names of one environment, derived from the runbook's inventory."""

    env_name: str
    region: str
    account_id: str
    cluster: str
    prefix: str
    vpc_cidr: str
    services: dict[str, ServiceNames]
    default_service: str
    alb_name: str
    alb_dimension: str
    alb_sg: str
    app_sg: str
    db_sg: str
    quarantine_sg: str
    db_cluster: str
    db_writer: str
    db_reader: str
    db_engine: str
    db_subnet_group: str
    log_groups: dict[str, str]
    flags: dict[str, str]
    alarms: tuple[tuple[str, str], ...]
    # The bucket INCIDENT_OPS_ARTIFACTS_URL points at in production (s3://<bucket>/incident-ops).
    artifacts_bucket: str = ""

    @property
    def backend(self) -> ServiceNames:
        return self.services[self.default_service]


def names_for(runbook: Any, env_name: str = "production", index: int = 0) -> Names:
    env = runbook.environment(env_name)
    alb_dimension = env.load_balancer
    alb_name = alb_dimension.split("/")[1] if alb_dimension.count("/") >= 2 else alb_dimension
    services: dict[str, ServiceNames] = {}
    for key, svc in env.services.items():
        backendish = key == env.default_service
        services[key] = ServiceNames(
            key=key,
            ecs_service=svc.ecs_service,
            family=svc.ecs_service,
            container=key,
            port=3000 if backendish else 80,
            image_repo=f"{env.account_id}.dkr.ecr.{env.region}.amazonaws.com/{svc.ecs_service}",
            target_group=svc.target_group,
            min_desired=svc.min_desired_count,
            cpu=1024 if backendish else 512,
            memory=2048 if backendish else 1024,
        )
    writer = env.database.instance_id
    reader = writer[:-2] + "-2" if writer.endswith("-1") else f"{writer}-reader"
    return Names(
        env_name=env_name,
        region=env.region,
        account_id=env.account_id,
        cluster=env.cluster,
        prefix=env.cluster,
        vpc_cidr=f"10.{index}.0.0/16",
        services=services,
        default_service=env.default_service,
        alb_name=alb_name,
        alb_dimension=alb_dimension,
        alb_sg=f"{env.cluster}-alb",
        app_sg=f"{env.cluster}-app",
        db_sg=f"{env.cluster}-db",
        quarantine_sg=env.quarantine_security_group,
        db_cluster=env.database.cluster_id or f"{env.cluster}-db",
        db_writer=writer,
        db_reader=reader,
        db_engine=env.database.engine,
        db_subnet_group=f"{env.cluster}-db-subnets",
        log_groups=dict(env.log_groups),
        flags=dict(env.feature_flags),
        alarms=tuple((alarm.name, alarm.service) for alarm in env.alarms),
        artifacts_bucket=artifacts_bucket_name(env.cluster),
    )


def artifacts_bucket_name(cluster: str) -> str:
    """The artifacts bucket of an environment, named after its cluster like the other resources."""
    return f"{cluster}-incident-artifacts"



@dataclass
class SeedResult:
    """What one environment's seed found or created (ids that moto chose)."""

    names: Names
    vpc_id: str = ""
    subnet_ids: list[str] = field(default_factory=list)
    security_groups: dict[str, str] = field(default_factory=dict)
    target_groups: dict[str, str] = field(default_factory=dict)
    load_balancer_arn: str = ""
    created: list[str] = field(default_factory=list)

    def tg_dimension(self, service_key: str) -> str:
        """`targetgroup/<name>/<id>`: the TargetGroup dimension of the ALB metrics."""
        arn = self.target_groups[service_key]
        return arn.split(":")[-1]


def _tags(name: str, env_name: str) -> list[dict[str, str]]:
    return [{"Key": "Name", "Value": name}, {"Key": "Environment", "Value": env_name}, {"Key": "Project", "Value": "peoplebooster"}]


def _hex(seed: str, length: int = 32) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def seed(aws: AwsClients, runbook: Any, environments: Iterable[str] = ("production",)) -> dict[str, SeedResult]:
    """Create the inventory of each environment in moto (only what is missing)."""
    all_envs = list(runbook.environments)
    return {name: _seed_environment(aws, names_for(runbook, name, all_envs.index(name))) for name in environments}


def _seed_environment(aws: AwsClients, n: Names) -> SeedResult:
    result = SeedResult(names=n)
    _network(aws, n, result)
    _ecs_and_alb(aws, n, result)
    _database(aws, n, result)
    fresh_logs = _log_groups(aws, n, result)
    _alarms(aws, n, result)
    _flags(aws, n, result)
    _artifacts_bucket(aws, n, result)
    if fresh_logs:
        now = time.time()
        _baseline_logs(aws, n, now)
        put_metrics(aws, metric_data(result, [(now - 60 * m, baseline_metrics(n)) for m in range(60, 0, -1)]))
    return result


# --- network -----------------------------------------------------------------------------------


def _network(aws: AwsClients, n: Names, result: SeedResult) -> None:
    ec2 = aws.ec2
    vpc_name = n.prefix
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [vpc_name]}])["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(
            CidrBlock=n.vpc_cidr,
            TagSpecifications=[{"ResourceType": "vpc", "Tags": _tags(vpc_name, n.env_name)}],
        )["Vpc"]["VpcId"]
        result.created.append(f"vpc {vpc_name}")
    result.vpc_id = vpc_id
    base = n.vpc_cidr.split(".")[1]
    for index, zone in enumerate(("a", "c"), start=1):
        subnet_name = f"{n.prefix}-private-{zone}"
        found = ec2.describe_subnets(
            Filters=[{"Name": "tag:Name", "Values": [subnet_name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
        )["Subnets"]
        if found:
            result.subnet_ids.append(found[0]["SubnetId"])
            continue
        subnet = ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=f"10.{base}.{index}.0/24",
            AvailabilityZone=f"{n.region}{zone}",
            TagSpecifications=[{"ResourceType": "subnet", "Tags": _tags(subnet_name, n.env_name)}],
        )["Subnet"]
        result.subnet_ids.append(subnet["SubnetId"])
        result.created.append(f"subnet {subnet_name}")

    descriptions = {
        n.alb_sg: "PeopleBooster ALB: HTTPS from the internet",
        n.app_sg: "PeopleBooster ECS tasks: traffic from the ALB",
        n.db_sg: "PeopleBooster Aurora: PostgreSQL from the app",
        n.quarantine_sg: "Quarantine: no inbound, no outbound (incident isolation)",
    }
    for name, description in descriptions.items():
        found = ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
        )["SecurityGroups"]
        if found:
            result.security_groups[name] = found[0]["GroupId"]
            continue
        group_id = ec2.create_security_group(
            GroupName=name,
            Description=description,
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _tags(name, n.env_name)}],
        )["GroupId"]
        result.security_groups[name] = group_id
        result.created.append(f"security group {name}")
        if name == n.alb_sg:
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
        elif name == n.quarantine_sg:
            ec2.revoke_security_group_egress(
                GroupId=group_id,
                IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
    sg = result.security_groups
    if f"security group {n.app_sg}" in result.created:
        ec2.authorize_security_group_ingress(
            GroupId=sg[n.app_sg],
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 3000, "UserIdGroupPairs": [{"GroupId": sg[n.alb_sg]}]}],
        )
    if f"security group {n.db_sg}" in result.created:
        ec2.authorize_security_group_ingress(
            GroupId=sg[n.db_sg],
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": sg[n.app_sg]}]}],
        )


# --- ECS and the ALB ---------------------------------------------------------------------------

RELEASES = ("v1.41.0", "v1.42.0")


def container_definition(n: Names, svc: ServiceNames, image_tag: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    environment = {"NODE_ENV": "production", "APP_ENV": n.env_name, "APP_VERSION": image_tag, **(extra_env or {})}
    return {
        "name": svc.container,
        "image": f"{svc.image_repo}:{image_tag}",
        "essential": True,
        "cpu": svc.cpu,
        "memory": svc.memory,
        "portMappings": [{"containerPort": svc.port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in environment.items()],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": n.log_groups["application"],
                "awslogs-region": n.region,
                "awslogs-stream-prefix": svc.container,
            },
        },
    }


def register_revision(aws: AwsClients, n: Names, svc: ServiceNames, image_tag: str, extra_env: dict[str, str] | None = None) -> str:
    """Register a task-definition revision of the service's family; returns its ARN."""
    return aws.ecs.register_task_definition(
        family=svc.family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu=str(svc.cpu),
        memory=str(svc.memory),
        executionRoleArn=f"arn:aws:iam::{n.account_id}:role/{n.prefix}-ecs-execution",
        taskRoleArn=f"arn:aws:iam::{n.account_id}:role/{n.prefix}-{svc.key}-task",
        containerDefinitions=[container_definition(n, svc, image_tag, extra_env)],
        tags=[{"key": "Environment", "value": n.env_name}],
    )["taskDefinition"]["taskDefinitionArn"]


def target_ips(n: Names, svc: ServiceNames) -> list[str]:
    base = n.vpc_cidr.split(".")[1]
    offset = 10 if svc.port == 3000 else 50
    return [f"10.{base}.{1 + i % 2}.{offset + i}" for i in range(svc.min_desired)]


def _ecs_and_alb(aws: AwsClients, n: Names, result: SeedResult) -> None:
    ecs, elb = aws.ecs, aws.elbv2
    clusters = ecs.describe_clusters(clusters=[n.cluster])["clusters"]
    if not any(c["status"] == "ACTIVE" for c in clusters):
        ecs.create_cluster(
            clusterName=n.cluster,
            capacityProviders=["FARGATE", "FARGATE_SPOT"],
            tags=[{"key": "Environment", "value": n.env_name}],
        )
        result.created.append(f"ecs cluster {n.cluster}")

    for key, svc in n.services.items():
        try:
            tg = elb.describe_target_groups(Names=[svc.target_group])["TargetGroups"][0]
        except ClientError:
            tg = elb.create_target_group(
                Name=svc.target_group,
                Protocol="HTTP",
                Port=svc.port,
                VpcId=result.vpc_id,
                TargetType="ip",
                HealthCheckProtocol="HTTP",
                HealthCheckPath="/health",
                HealthCheckIntervalSeconds=15,
                HealthyThresholdCount=2,
                UnhealthyThresholdCount=3,
                Matcher={"HttpCode": "200"},
            )["TargetGroups"][0]
            elb.register_targets(
                TargetGroupArn=tg["TargetGroupArn"],
                Targets=[{"Id": ip, "Port": svc.port} for ip in target_ips(n, svc)],
            )
            result.created.append(f"target group {svc.target_group}")
        result.target_groups[key] = tg["TargetGroupArn"]

    try:
        lb = elb.describe_load_balancers(Names=[n.alb_name])["LoadBalancers"][0]
    except ClientError:
        lb = elb.create_load_balancer(
            Name=n.alb_name,
            Subnets=result.subnet_ids,
            SecurityGroups=[result.security_groups[n.alb_sg]],
            Scheme="internet-facing",
            Type="application",
            IpAddressType="ipv4",
            Tags=_tags(n.alb_name, n.env_name),
        )["LoadBalancers"][0]
        result.created.append(f"load balancer {n.alb_name}")
    result.load_balancer_arn = lb["LoadBalancerArn"]
    if not elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
        keys = list(n.services)
        frontend = next((k for k in keys if k != n.default_service), n.default_service)
        listener = elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": result.target_groups[frontend]}],
        )["Listeners"][0]
        if frontend != n.default_service:
            elb.create_rule(
                ListenerArn=listener["ListenerArn"],
                Priority=10,
                Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*", "/health"]}}],
                Actions=[{"Type": "forward", "TargetGroupArn": result.target_groups[n.default_service]}],
            )

    for key, svc in n.services.items():
        existing = ecs.describe_services(cluster=n.cluster, services=[svc.ecs_service])["services"]
        if any(s["status"] == "ACTIVE" for s in existing):
            continue
        revisions = ecs.list_task_definitions(familyPrefix=svc.family)["taskDefinitionArns"]
        latest = revisions[-1] if revisions else ""
        for tag in RELEASES[len(revisions) :]:
            latest = register_revision(aws, n, svc, tag)
        ecs.create_service(
            cluster=n.cluster,
            serviceName=svc.ecs_service,
            taskDefinition=latest,
            desiredCount=svc.min_desired,
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": result.subnet_ids,
                    "securityGroups": [result.security_groups[n.app_sg]],
                    "assignPublicIp": "DISABLED",
                }
            },
            loadBalancers=[{"targetGroupArn": result.target_groups[key], "containerName": svc.container, "containerPort": svc.port}],
            propagateTags="SERVICE",
            tags=[{"key": "Environment", "value": n.env_name}, {"key": "Service", "value": key}],
        )
        result.created.append(f"ecs service {svc.ecs_service}")


# --- Aurora ------------------------------------------------------------------------------------


def _database(aws: AwsClients, n: Names, result: SeedResult) -> None:
    rds = aws.rds
    try:
        rds.describe_db_subnet_groups(DBSubnetGroupName=n.db_subnet_group)
    except ClientError:
        rds.create_db_subnet_group(
            DBSubnetGroupName=n.db_subnet_group,
            DBSubnetGroupDescription=f"{n.db_cluster} private subnets",
            SubnetIds=result.subnet_ids,
        )
    try:
        rds.describe_db_clusters(DBClusterIdentifier=n.db_cluster)
    except ClientError:
        rds.create_db_cluster(
            DBClusterIdentifier=n.db_cluster,
            Engine=n.db_engine,
            EngineVersion="15.4",
            DatabaseName="peoplebooster",
            MasterUsername="peoplebooster",
            MasterUserPassword="sandbox-db-password",
            DBSubnetGroupName=n.db_subnet_group,
            VpcSecurityGroupIds=[result.security_groups[n.db_sg]],
            BackupRetentionPeriod=7,
            Tags=_tags(n.db_cluster, n.env_name),
        )
        result.created.append(f"db cluster {n.db_cluster}")
    for instance in (n.db_writer, n.db_reader):
        try:
            rds.describe_db_instances(DBInstanceIdentifier=instance)
        except ClientError:
            rds.create_db_instance(
                DBInstanceIdentifier=instance,
                DBClusterIdentifier=n.db_cluster,
                Engine=n.db_engine,
                DBInstanceClass="db.r6g.large",
                Tags=_tags(instance, n.env_name),
            )
            result.created.append(f"db instance {instance}")
    snapshots = rds.describe_db_cluster_snapshots(DBClusterIdentifier=n.db_cluster)["DBClusterSnapshots"]
    if not snapshots:
        for suffix in ("before-v1-42-0", "nightly"):
            rds.create_db_cluster_snapshot(
                DBClusterIdentifier=n.db_cluster,
                DBClusterSnapshotIdentifier=f"{n.db_cluster}-{suffix}",
                Tags=_tags(f"{n.db_cluster}-{suffix}", n.env_name),
            )
        result.created.append(f"db cluster snapshots of {n.db_cluster}")


# --- logs, alarms, flags -----------------------------------------------------------------------


def _log_groups(aws: AwsClients, n: Names, result: SeedResult) -> bool:
    """Create the log groups; True when any was new (then baseline lines and metrics follow)."""
    fresh = False
    for group in n.log_groups.values():
        found = aws.logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        if any(g["logGroupName"] == group for g in found):
            continue
        aws.logs.create_log_group(logGroupName=group, tags={"Environment": n.env_name})
        aws.logs.put_retention_policy(logGroupName=group, retentionInDays=30)
        result.created.append(f"log group {group}")
        fresh = True
    return fresh


def log_stream(n: Names, svc: ServiceNames, index: int = 0) -> str:
    """`<prefix>/<container>/<task id>`: the awslogs stream name of a task."""
    return f"{svc.container}/{svc.container}/{_hex(f'{n.cluster}/{svc.key}/{index}')}"


def put_log_lines(aws: AwsClients, group: str, stream: str, lines: list[tuple[float, str]]) -> None:
    """Append (epoch seconds, message) lines to a stream (created when missing), in time order."""
    if not lines:
        return
    try:
        aws.logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    events = [{"timestamp": int(ts * 1000), "message": msg} for ts, msg in sorted(lines, key=lambda x: x[0])]
    for start in range(0, len(events), 500):
        aws.logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events[start : start + 500])


def log_line(ts: float, level: str, service: str, message: str) -> str:
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{stamp} {level:<5} [{service}] {message}"


_BASELINE_MESSAGES = (
    ("INFO", "GET /health 200 4ms"),
    ("INFO", "POST /api/v1/auth/login 200 48ms user=2231"),
    ("INFO", "GET /api/v1/users/me 200 12ms"),
    ("INFO", "POST /api/v1/diagnoses 201 96ms diagnosis=8123 診断を開始しました"),
    ("INFO", "PUT /api/v1/diagnoses/8123/answers/1 200 31ms 回答を保存しました"),
    ("INFO", "GET /api/v1/reports/8011 200 412ms レポートを生成しました"),
    ("WARN", "slow query 812ms: SELECT * FROM diagnosis_answers WHERE diagnosis_id = $1"),
    ("INFO", "redis cache hit ratio 0.94"),
)


def _baseline_logs(aws: AwsClients, n: Names, now: float) -> None:
    for svc in n.services.values():
        lines = []
        for i in range(30):
            ts = now - 1800 + i * 60
            level, message = _BASELINE_MESSAGES[i % len(_BASELINE_MESSAGES)]
            lines.append((ts, log_line(ts, level, svc.ecs_service, message)))
        put_log_lines(aws, n.log_groups["application"], log_stream(n, svc), lines)


def _alarm_spec(n: Names, result: SeedResult, name: str, service_key: str) -> dict[str, Any]:
    svc = n.services[service_key]
    lower = name.lower()
    ecs_dims = [{"Name": "ClusterName", "Value": n.cluster}, {"Name": "ServiceName", "Value": svc.ecs_service}]
    tg_dims = [{"Name": "LoadBalancer", "Value": n.alb_dimension}, {"Name": "TargetGroup", "Value": result.tg_dimension(service_key)}]
    if "cpu" in lower and "rds" in lower:
        metric = ("AWS/RDS", "CPUUtilization", "Average", 90.0, [{"Name": "DBClusterIdentifier", "Value": n.db_cluster}])
    elif "connections" in lower:
        metric = ("AWS/RDS", "DatabaseConnections", "Average", 500.0, [{"Name": "DBClusterIdentifier", "Value": n.db_cluster}])
    elif "cpu" in lower:
        metric = ("AWS/ECS", "CPUUtilization", "Average", 85.0, ecs_dims)
    elif "memory" in lower:
        metric = ("AWS/ECS", "MemoryUtilization", "Average", 85.0, ecs_dims)
    elif "health" in lower:
        metric = ("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum", 0.0, tg_dims)
    elif service_key != n.default_service:
        metric = ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", 20.0, tg_dims)
    else:
        metric = ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", 50.0, [{"Name": "LoadBalancer", "Value": n.alb_dimension}])
    namespace, metric_name, stat, threshold, dims = metric
    return {
        "AlarmName": name,
        "AlarmDescription": f"PeopleBooster {n.env_name}: {metric_name} ({service_key})",
        "Namespace": namespace,
        "MetricName": metric_name,
        "Statistic": stat,
        "Dimensions": dims,
        "Period": 60,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": threshold,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [f"arn:aws:sns:{n.region}:{n.account_id}:{n.prefix}-alerts"],
        "OKActions": [f"arn:aws:sns:{n.region}:{n.account_id}:{n.prefix}-alerts"],
    }


def _alarms(aws: AwsClients, n: Names, result: SeedResult) -> None:
    if not n.alarms:
        return
    existing = {a["AlarmName"] for a in aws.cloudwatch.describe_alarms(AlarmNames=[a for a, _ in n.alarms])["MetricAlarms"]}
    for name, service_key in n.alarms:
        if name in existing:
            continue
        aws.cloudwatch.put_metric_alarm(**_alarm_spec(n, result, name, service_key))
        aws.cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="Sandbox seed: metrics within thresholds")
        result.created.append(f"alarm {name}")


def _flags(aws: AwsClients, n: Names, result: SeedResult) -> None:
    for flag, path in n.flags.items():
        try:
            aws.ssm.get_parameter(Name=path)
        except ClientError:
            aws.ssm.put_parameter(
                Name=path,
                Value="off",
                Type="String",
                Description=f"PeopleBooster feature flag {flag} ({n.env_name})",
            )
            result.created.append(f"ssm parameter {path}")


def _artifacts_bucket(aws: AwsClients, n: Names, result: SeedResult) -> None:
    """The artifacts bucket: in the environment's region, public access blocked, tagged."""
    try:
        aws.s3.head_bucket(Bucket=n.artifacts_bucket)
        return
    except ClientError:
        pass
    create: dict[str, Any] = {"Bucket": n.artifacts_bucket}
    if n.region != "us-east-1":  # S3 refuses the constraint for us-east-1 and requires it elsewhere
        create["CreateBucketConfiguration"] = {"LocationConstraint": n.region}
    aws.s3.create_bucket(**create)
    aws.s3.put_public_access_block(Bucket=n.artifacts_bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    aws.s3.put_bucket_tagging(Bucket=n.artifacts_bucket, Tagging={"TagSet": _tags(n.artifacts_bucket, n.env_name)})
    result.created.append(f"s3 bucket {n.artifacts_bucket}")


# --- metrics -----------------------------------------------------------------------------------


def baseline_metrics(n: Names) -> dict[str, float]:
    """Per-minute values of a calm service; keys are the metric ids (`ecs_cpu:<service>` per service)."""
    values = {"alb_requests": 1800.0, "alb_5xx": 1.0, "elb_5xx": 0.5, "rds_connections": 85.0, "rds_cpu": 24.0,
              "unhealthy_hosts": 0.0}
    for key in n.services:
        backend = key == n.default_service
        values[f"ecs_cpu:{key}"] = 38.0 if backend else 22.0
        values[f"ecs_memory:{key}"] = 52.0 if backend else 35.0
    return values


def _wiggle(ts: float, key: str) -> float:
    """A small deterministic variation so the series do not look flat (±4%)."""
    digest = hashlib.sha256(f"{int(ts // 60)}:{key}".encode()).digest()
    return 0.96 + (digest[0] / 255) * 0.08


def _series(result: SeedResult, values: dict[str, float]) -> list[tuple[str, str, list[dict[str, str]], float, str, str]]:
    """(namespace, metric, dimensions, value, unit, key) of every series, for one set of values."""
    n = result.names
    lb = {"Name": "LoadBalancer", "Value": n.alb_dimension}
    backend = n.default_service
    series: list[tuple[str, str, list[dict[str, str]], float, str, str]] = []
    for key, svc in n.services.items():
        ecs = [{"Name": "ClusterName", "Value": n.cluster}, {"Name": "ServiceName", "Value": svc.ecs_service}]
        tg = [lb, {"Name": "TargetGroup", "Value": result.tg_dimension(key)}]
        share = 0.7 if key == backend else 0.3
        series += [
            ("AWS/ECS", "CPUUtilization", ecs, min(values[f"ecs_cpu:{key}"], 100.0), "Percent", key),
            ("AWS/ECS", "MemoryUtilization", ecs, min(values[f"ecs_memory:{key}"], 100.0), "Percent", key),
            ("AWS/ApplicationELB", "RequestCount", tg, values["alb_requests"] * share, "Count", key),
            ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", tg, values["alb_5xx"] if key == backend else 0.0, "Count", key),
            ("AWS/ApplicationELB", "UnHealthyHostCount", tg, values["unhealthy_hosts"] if key == backend else 0.0, "Count", key),
        ]
    cluster = [{"Name": "DBClusterIdentifier", "Value": n.db_cluster}]
    writer = [{"Name": "DBInstanceIdentifier", "Value": n.db_writer}]
    series += [
        ("AWS/ApplicationELB", "RequestCount", [lb], values["alb_requests"], "Count", "lb"),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", [lb], values["alb_5xx"], "Count", "lb"),
        # the load balancer's own 5xx (no healthy target, timeouts): per load balancer only
        ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", [lb], values["elb_5xx"], "Count", "lb"),
        ("AWS/RDS", "DatabaseConnections", cluster, values["rds_connections"], "Count", "db"),
        ("AWS/RDS", "CPUUtilization", cluster, min(values["rds_cpu"], 100.0), "Percent", "db"),
        ("AWS/RDS", "DatabaseConnections", writer, values["rds_connections"] * 0.8, "Count", "w"),
        ("AWS/RDS", "CPUUtilization", writer, min(values["rds_cpu"], 100.0), "Percent", "w"),
    ]
    return series


def metric_data(result: SeedResult, points: list[tuple[float, dict[str, float]]]) -> list[dict[str, Any]]:
    """CloudWatch MetricData for (epoch seconds, values) points, with the dimensions AWS uses."""
    data: list[dict[str, Any]] = []
    for ts, values in points:
        stamp = dt.datetime.fromtimestamp(ts - ts % 60, dt.UTC)
        for namespace, metric, dims, value, unit, key in _series(result, values):
            data.append(
                {
                    "Namespace": namespace,
                    "MetricName": metric,
                    "Dimensions": dims,
                    "Timestamp": stamp,
                    "Value": round(value * _wiggle(ts, key + metric + str(dims)), 2) if value else 0.0,
                    "Unit": unit,
                }
            )
    return data


def put_metrics(aws: AwsClients, data: list[dict[str, Any]]) -> None:
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for item in data:
        entry = dict(item)
        by_namespace.setdefault(entry.pop("Namespace"), []).append(entry)
    for namespace, items in by_namespace.items():
        for start in range(0, len(items), 500):
            aws.cloudwatch.put_metric_data(Namespace=namespace, MetricData=items[start : start + 500])
