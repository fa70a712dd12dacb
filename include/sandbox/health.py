"""PeopleBooster's health, derived from the AWS state in moto on every call.

`read_facts` reads moto with boto3 (the ECS service, its task definition and tags, the target group,
the Aurora writer, the SSM flag); `evaluate` turns those facts plus the sandbox's memory of the
breaks into the health answer. The rules (a scenario is a *problem* while its rule holds):

- deploy:   the backend runs a bad task definition (image tag `broken-<n>` or env SANDBOX_FAULT).
- resource: backend capacity (desiredCount x task cpu / 1024) is below the need: the need is
            min_desired_count, raised to `resource_need` (8) while the resource scenario is broken.
- database: the cluster's writer (IsClusterWriter) is the instance the break marked failed.
- external: the external provider is down (status page "major") and the SSM flag
            external_fallback is not "on".
- security: the backend carries the compromise tag and is not isolated, i.e. its security groups
            are not exactly the quarantine group or targets are still registered in its target group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from .aws import AwsClients
from .seed import Names
from .state import ScenarioMemory

__all__ = ["COMPROMISE_TAG", "Facts", "Health", "evaluate", "is_bad_task_definition", "read_facts"]

COMPROMISE_TAG = "sandbox:compromised"
BAD_ENV = "SANDBOX_FAULT"


def is_bad_task_definition(task_definition: dict[str, Any]) -> bool:
    for container in task_definition.get("containerDefinitions", []):
        tag = container.get("image", "").rsplit(":", 1)[-1]
        if tag.startswith("broken-"):
            return True
        if any(env.get("name") == BAD_ENV for env in container.get("environment", [])):
            return True
    return False


@dataclass
class Facts:
    """The AWS facts the health rules use (as read from moto just now)."""

    task_definition: str | None = None
    image: str | None = None
    bad_deploy: bool = False
    desired_count: int = 0
    task_cpu: int = 1024
    security_groups: list[str] = field(default_factory=list)
    quarantine_group: str | None = None
    registered_targets: int = 0
    compromised: bool = False
    writer: str | None = None
    flag: str | None = None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_facts(aws: AwsClients, names: Names) -> Facts:
    facts = Facts()
    svc = names.backend
    try:
        services = aws.ecs.describe_services(cluster=names.cluster, services=[svc.ecs_service], include=["TAGS"])["services"]
        service = next((s for s in services if s.get("status") == "ACTIVE"), None)
        if service is None:
            facts.errors.append(f"ECS service {svc.ecs_service} not found")
        else:
            facts.desired_count = int(service.get("desiredCount", 0))
            facts.task_definition = service.get("taskDefinition")
            network = service.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
            facts.security_groups = list(network.get("securityGroups", []))
            tags = service.get("tags")
            if tags is None:
                tags = aws.ecs.list_tags_for_resource(resourceArn=service["serviceArn"]).get("tags", [])
            facts.compromised = any(t.get("key") == COMPROMISE_TAG for t in tags)
            if facts.task_definition:
                td = aws.ecs.describe_task_definition(taskDefinition=facts.task_definition)["taskDefinition"]
                facts.task_definition = td["taskDefinitionArn"]
                containers = td.get("containerDefinitions", [])
                facts.image = containers[0].get("image") if containers else None
                facts.bad_deploy = is_bad_task_definition(td)
                facts.task_cpu = int(td.get("cpu") or 1024)
    except ClientError as exc:
        facts.errors.append(f"ECS: {exc}")
    try:
        groups = aws.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [names.quarantine_sg]}])
        found = groups["SecurityGroups"]
        facts.quarantine_group = found[0]["GroupId"] if found else None
    except ClientError as exc:
        facts.errors.append(f"EC2: {exc}")
    try:
        tg = aws.elbv2.describe_target_groups(Names=[svc.target_group])["TargetGroups"][0]
        targets = aws.elbv2.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]
        facts.registered_targets = sum(1 for t in targets if t["TargetHealth"]["State"] not in ("draining", "unused"))
    except (ClientError, IndexError) as exc:
        facts.errors.append(f"ELBv2: {exc}")
    try:
        cluster = aws.rds.describe_db_clusters(DBClusterIdentifier=names.db_cluster)["DBClusters"][0]
        facts.writer = next((m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")), None)
    except ClientError as exc:
        facts.errors.append(f"RDS: {exc}")
    flag_path = names.flags.get("external_fallback")
    if flag_path:
        try:
            facts.flag = aws.ssm.get_parameter(Name=flag_path)["Parameter"]["Value"]
        except ClientError as exc:
            facts.errors.append(f"SSM: {exc}")
    return facts


@dataclass
class Health:
    healthy: bool
    problems: dict[str, str]
    checks: dict[str, dict[str, Any]]
    facts: Facts
    capacity: float
    need: int

    def body(self) -> dict[str, Any]:
        """The /health answer in the runbook's format (plus an `application` check when it fails)."""
        body: dict[str, Any] = {"status": "healthy" if self.healthy else "unhealthy", "checks": {}}
        for name in ("database", "redis", "externalServices"):
            body["checks"][name] = dict(self.checks[name])
        if self.checks["application"]["status"] != "healthy":
            body["checks"]["application"] = dict(self.checks["application"])
        return body

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "checks": self.checks,
            "capacity": self.capacity,
            "need": self.need,
            "facts": self.facts.to_dict(),
        }


def evaluate(facts: Facts, memory: ScenarioMemory, names: Names) -> Health:
    problems: dict[str, str] = {}
    if facts.bad_deploy:
        problems["deploy"] = f"bad task definition deployed: {facts.task_definition} ({facts.image})"
    need = memory.resource_need if memory.resource_need is not None else names.backend.min_desired
    capacity = facts.desired_count * facts.task_cpu / 1024
    if capacity < need:
        problems["resource"] = f"capacity {capacity:g} tasks (desiredCount {facts.desired_count}) below the need {need}"
    if memory.failed_writer and facts.writer == memory.failed_writer:
        problems["database"] = f"writer {facts.writer} failed: could not connect to server"
    if memory.external_outage and facts.flag != "on":
        problems["external"] = f"external provider outage and external_fallback is {facts.flag!r}"
    if facts.compromised:
        isolated = (
            facts.quarantine_group is not None
            and facts.security_groups == [facts.quarantine_group]
            and facts.registered_targets == 0
        )
        if not isolated:
            problems["security"] = (
                f"compromised service not isolated (security groups {facts.security_groups}, "
                f"{facts.registered_targets} target(s) registered)"
            )
    if facts.errors and not problems:
        problems["inventory"] = "; ".join(facts.errors)

    def check(*scenarios: str) -> dict[str, Any]:
        failing = [problems[s] for s in scenarios if s in problems]
        return {"status": "unhealthy", "message": "; ".join(failing)} if failing else {"status": "healthy"}

    checks = {
        "database": check("database"),
        "redis": {"status": "healthy"},
        "externalServices": check("external"),
        "application": check("deploy", "resource", "security", "inventory"),
    }
    return Health(healthy=not problems, problems=problems, checks=checks, facts=facts, capacity=capacity, need=need)
