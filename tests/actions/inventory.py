"""Seed an AWS account (moto) with an environment of the runbook's inventory, by its real names.

Test-only. `seed_environment(runbook, "production")` creates, in the environment's region:
- VPC, two subnets, the application and database security groups and the quarantine group
- the ECS cluster and every service, each with two task-definition revisions (awsvpc, Fargate,
  two containers) and the service on the newest one
- the ALB, one target group per service with registered IP targets, an HTTP listener whose
  default action forwards to the frontend and a host-header rule to the backend
- the Aurora cluster with its writer (the inventory's instance_id) and two readers, and a manual
  cluster snapshot (moto adds an automated one)
- the SSM feature-flag parameters, set to "off"
Works against moto in-process (`mock_aws`) or a moto server (pass `endpoint_url`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3

from incident_ops.core.runbook import Runbook

ACCOUNT_ID = "123456789012"


@dataclass
class SeededService:
    key: str
    name: str
    arn: str
    family: str
    task_definitions: list[str]
    target_group_arn: str
    targets: list[dict[str, Any]]


@dataclass
class Inventory:
    environment: str
    region: str
    cluster: str
    vpc_id: str
    subnets: list[str]
    app_security_group: str
    db_security_group: str
    quarantine_security_group: str
    quarantine_security_group_name: str
    load_balancer_arn: str
    listener_arn: str
    db_cluster_id: str
    db_writer: str
    db_readers: list[str]
    db_snapshot: str
    feature_flags: dict[str, str]
    services: dict[str, SeededService] = field(default_factory=dict)

    def service(self, key: str = "backend") -> SeededService:
        return self.services[key]


def _container_definitions(service: str, version: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "app",
            "image": f"{ACCOUNT_ID}.dkr.ecr.ap-northeast-1.amazonaws.com/{service}:{version}",
            "essential": True,
            "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            "environment": [{"name": "APP_VERSION", "value": version}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {"awslogs-group": f"/aws/ecs/{service}", "awslogs-region": "ap-northeast-1",
                            "awslogs-stream-prefix": "app"},
            },
        },
        {
            "name": "datadog-agent",
            "image": "public.ecr.aws/datadog/agent:7",
            "essential": False,
            "memoryReservation": 256,
        },
    ]


def seed_environment(runbook: Runbook, environment: str = "production", *, endpoint_url: str | None = None,
                     session: Any = None) -> Inventory:
    env = runbook.environment(environment)
    region = env.region
    session = session or boto3.session.Session()

    def client(name: str) -> Any:
        return session.client(name, region_name=region, endpoint_url=endpoint_url)

    ec2, ecs, elbv2, rds, ssm = (client(n) for n in ("ec2", "ecs", "elbv2", "rds", "ssm"))
    name = f"peoplebooster-{environment}"

    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{region}{az}")["Subnet"]["SubnetId"]
        for cidr, az in (("10.0.1.0/24", "a"), ("10.0.2.0/24", "c"))
    ]
    app_sg = ec2.create_security_group(GroupName=f"{name}-app", Description="app tasks", VpcId=vpc_id)["GroupId"]
    db_sg = ec2.create_security_group(GroupName=f"{name}-db", Description="database", VpcId=vpc_id)["GroupId"]
    quarantine_sg = ec2.create_security_group(
        GroupName=env.quarantine_security_group, Description="quarantine: no ingress, no egress", VpcId=vpc_id
    )["GroupId"]

    lb_arn = elbv2.create_load_balancer(Name=f"{name}-alb", Subnets=subnets, SecurityGroups=[app_sg],
                                        Scheme="internet-facing", Type="application")["LoadBalancers"][0]["LoadBalancerArn"]
    ecs.create_cluster(clusterName=env.cluster)

    services: dict[str, SeededService] = {}
    octet = 10
    for key, svc in env.services.items():
        family = svc.ecs_service
        revisions = []
        for version in ("v1.4.0", "v1.5.0"):
            td = ecs.register_task_definition(
                family=family,
                containerDefinitions=_container_definitions(svc.ecs_service, version),
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu="512",
                memory="1024",
                executionRoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{name}-ecs-execution",
                taskRoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{name}-{key}-task",
                runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
                tags=[{"key": "service", "value": key}, {"key": "version", "value": version}],
            )["taskDefinition"]
            revisions.append(td["taskDefinitionArn"])
        tg_arn = elbv2.create_target_group(
            Name=svc.target_group, Protocol="HTTP", Port=8080, VpcId=vpc_id, TargetType="ip",
            HealthCheckPath="/health",
        )["TargetGroups"][0]["TargetGroupArn"]
        count = svc.min_desired_count
        targets = [{"Id": f"10.0.{1 + i % 2}.{octet + i}", "Port": 8080} for i in range(count)]
        octet += 20
        elbv2.register_targets(TargetGroupArn=tg_arn, Targets=targets)
        created = ecs.create_service(
            cluster=env.cluster,
            serviceName=svc.ecs_service,
            taskDefinition=revisions[-1],
            desiredCount=count,
            launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [app_sg],
                                                          "assignPublicIp": "DISABLED"}},
            loadBalancers=[{"targetGroupArn": tg_arn, "containerName": "app", "containerPort": 8080}],
            tags=[{"key": "service", "value": key}],
        )["service"]
        services[key] = SeededService(key, svc.ecs_service, created["serviceArn"], family, revisions, tg_arn, targets)

    default_key = "frontend" if "frontend" in services else env.default_service
    listener_arn = elbv2.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": services[default_key].target_group_arn}],
    )["Listeners"][0]["ListenerArn"]
    if default_key != env.default_service:
        host = env.api_base_url.split("://", 1)[1].split("/", 1)[0]
        elbv2.create_rule(
            ListenerArn=listener_arn, Priority=10,
            Conditions=[{"Field": "host-header", "Values": [host]}],
            Actions=[{"Type": "forward", "TargetGroupArn": services[env.default_service].target_group_arn}],
        )

    db = env.database
    cluster_id = db.cluster_id or f"{name}-db"
    rds.create_db_subnet_group(DBSubnetGroupName=f"{name}-db", DBSubnetGroupDescription="db", SubnetIds=subnets)
    rds.create_db_cluster(
        DBClusterIdentifier=cluster_id, Engine=db.engine, MasterUsername="peoplebooster",
        MasterUserPassword="not-a-real-password", DBSubnetGroupName=f"{name}-db", VpcSecurityGroupIds=[db_sg],
    )
    writer = db.instance_id
    readers = [f"{cluster_id}-2", f"{cluster_id}-3"]
    # The writer first (moto makes the first member the writer); reader -2 has the writer's class,
    # reader -3 a bigger class and a better promotion tier: the best reader is -2 (same class wins).
    for ident, klass, tier in ((writer, db.restore_instance_class, 1), (readers[0], db.restore_instance_class, 1),
                               (readers[1], "db.r6g.xlarge", 0)):
        rds.create_db_instance(DBInstanceIdentifier=ident, DBClusterIdentifier=cluster_id, Engine=db.engine,
                               DBInstanceClass=klass, PromotionTier=tier)
    snapshot = f"{cluster_id}-manual-1"
    rds.create_db_cluster_snapshot(DBClusterIdentifier=cluster_id, DBClusterSnapshotIdentifier=snapshot)

    for path in env.feature_flags.values():
        ssm.put_parameter(Name=path, Value="off", Type="String", Overwrite=True)

    return Inventory(
        environment=environment, region=region, cluster=env.cluster, vpc_id=vpc_id, subnets=subnets,
        app_security_group=app_sg, db_security_group=db_sg, quarantine_security_group=quarantine_sg,
        quarantine_security_group_name=env.quarantine_security_group, load_balancer_arn=lb_arn,
        listener_arn=listener_arn, db_cluster_id=cluster_id, db_writer=writer, db_readers=readers,
        db_snapshot=snapshot, feature_flags=dict(env.feature_flags), services=services,
    )
