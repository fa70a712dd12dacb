"""boto3 pointed at the sandbox's moto server, and a few in-process corrections to moto's ECS.

`aws_env(endpoint)` is the environment a process needs so that every boto3 client it creates talks
to moto (AWS_ENDPOINT_URL and test credentials). `AwsClients` holds the clients the sandbox itself
uses; boto3 clients are thread-safe once created, so they are created once, up front.

moto 5.2.5's ECS differs from AWS in ways the incident automation can see. While a sandbox runs (and
only then: `moto_fixes(True)`), the patches below make it closer to AWS:
- `update_service(taskDefinition="family:rev")` stores the short name; AWS answers the full ARN.
- a new task definition on a service does not start a new PRIMARY deployment (so no deploy time).
- task definitions have no `registeredAt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

__all__ = [
    "AWS_REGION",
    "AwsClients",
    "aws_env",
    "boto3_session",
    "moto_fixes",
]

AWS_REGION = "ap-northeast-1"
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def aws_env(endpoint: str, region: str = AWS_REGION) -> dict[str, str]:
    """Environment variables that point boto3 (and the Airflow AWS hooks) at the moto server."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        **TEST_CREDENTIALS,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


def boto3_session(region: str = AWS_REGION) -> boto3.Session:
    """A boto3 session with moto's test credentials (pass endpoint_url to its clients)."""
    return boto3.Session(
        aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )


@dataclass
class AwsClients:
    endpoint: str
    region: str
    ec2: Any
    ecs: Any
    elbv2: Any
    rds: Any
    cloudwatch: Any
    logs: Any
    ssm: Any
    s3: Any

    @classmethod
    def create(cls, endpoint: str, region: str = AWS_REGION) -> AwsClients:
        session = boto3_session(region)
        names = ("ec2", "ecs", "elbv2", "rds", "cloudwatch", "logs", "ssm", "s3")
        clients = {name: session.client(name, endpoint_url=endpoint) for name in names}
        return cls(endpoint=endpoint, region=region, **clients)


# --- moto corrections (in-process, only while a sandbox runs) --------------------------------------

_PATCH = {"installed": False, "enabled": 0}


def moto_fixes(enable: bool) -> None:
    """Turn the ECS corrections on (a sandbox starts) or off (it stops); nested starts count."""
    _install()
    _PATCH["enabled"] = max(0, _PATCH["enabled"] + (1 if enable else -1))


def _install() -> None:
    if _PATCH["installed"]:
        return
    from moto.core.utils import utcnow
    from moto.ecs import models
    from moto.moto_api._internal import mock_random

    original_init = models.TaskDefinition.__init__
    original_update = models.EC2ContainerServiceBackend.update_service

    def task_definition_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if _PATCH["enabled"]:
            self.registered_at = utcnow()

    def update_service(self: Any, service_properties: dict[str, Any]) -> Any:
        if not _PATCH["enabled"]:
            return original_update(self, service_properties)
        cluster = service_properties.get("cluster", "default")
        name = str(service_properties.get("service", "")).split("/")[-1]
        wanted = service_properties.get("task_definition")
        try:
            before = self._get_service(cluster, name).task_definition
        except Exception:  # noqa: BLE001 - the original call raises the proper error
            before = None
        service = original_update(self, service_properties)
        if wanted:
            arn = self.describe_task_definition(wanted).arn
            service.task_definition = arn
            if arn != before and service.deployments:
                now = utcnow()
                deployment_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
                primary = dict(service.deployments[0])
                primary.update(
                    id=deployment_id,
                    taskDefinition=arn,
                    createdAt=now,
                    updatedAt=now,
                    desiredCount=service.desired_count,
                    runningCount=service.desired_count,
                    pendingCount=0,
                    status="PRIMARY",
                    rolloutState="COMPLETED",
                    rolloutStateReason=f"ECS deployment {deployment_id} completed.",
                )
                service.deployments = [primary]
                service.events.insert(
                    0,
                    {
                        "id": str(mock_random.uuid4()),
                        "createdAt": now,
                        "message": f"(service {service.name}) has started a deployment of {arn.split('/')[-1]}.",
                    },
                )
        if service.deployments:
            service.deployments[0]["desiredCount"] = service.desired_count
            service.deployments[0]["runningCount"] = service.desired_count
            if service.network_configuration:
                service.deployments[0]["networkConfiguration"] = service.network_configuration
        return service

    models.TaskDefinition.__init__ = task_definition_init
    models.EC2ContainerServiceBackend.update_service = update_service
    _PATCH["installed"] = True
