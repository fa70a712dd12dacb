"""One entry point for every module of the collection.

- `Clients`: the bundle of clients a module may need (all optional; a module names the one it lacks).
- `ACTION_FUNCTIONS`: runbook action name -> `(clients, params, check_mode) -> Result`, one per name
  in `incident_ops.core.runbook.ACTIONS`.
- `step_params`: a scenario step's params merged with the environment's inventory and guard rails.
- `run_action`: look up and run by name.
- `aws_client_config`: the botocore Config for boto3 clients (standard retries, throttling included).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.config import Config

from incident_ops.actions import ecs, external, flags, github, rds, security, support
from incident_ops.actions.base import ActionError, Result
from incident_ops.core.runbook import Runbook, Step

__all__ = [
    "ACTION_FUNCTIONS",
    "AWS_CLIENT_REGIONS",
    "AWS_SERVICES",
    "Clients",
    "aws_client_config",
    "aws_client_region",
    "run_action",
    "step_params",
]

AWS_SERVICES = ("ecs", "rds", "ssm", "elbv2", "ec2", "logs", "cloudwatch", "support")
# Services served from one region whatever the environment's (AWS Support: us-east-1 only).
AWS_CLIENT_REGIONS = {"support": support.SUPPORT_REGION}


def aws_client_region(name: str, region: str | None) -> str | None:
    """The region a client of service `name` must use (the environment's, except for global APIs)."""
    return AWS_CLIENT_REGIONS.get(name, region)


def aws_client_config(**overrides: Any) -> Config:
    """botocore retries throttling and transient errors itself in "standard" mode."""
    return Config(retries={"mode": "standard", "max_attempts": 8}, **overrides)


@dataclass
class Clients:
    """Clients for the modules. AWS ones are boto3 clients; github a GitHubClient; http an HttpClient."""

    ecs: Any = None
    rds: Any = None
    ssm: Any = None
    elbv2: Any = None
    ec2: Any = None
    logs: Any = None
    cloudwatch: Any = None
    support: Any = None
    github: Any = None
    http: Any = None
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_session(cls, session: Any = None, *, region_name: str | None = None, endpoint_url: str | None = None,
                     **others: Any) -> Clients:
        """Every AWS client from one boto3 session (e.g. moto server's URL as endpoint_url), plus `others`."""
        if session is None:
            import boto3

            session = boto3.session.Session(region_name=region_name)
        config = aws_client_config()
        made = {
            name: session.client(name, region_name=aws_client_region(name, region_name), endpoint_url=endpoint_url,
                                 config=config)
            for name in AWS_SERVICES
        }
        return cls(**made, **others)

    def need(self, name: str, action: str) -> Any:
        client = getattr(self, name)
        if client is None:
            raise ActionError(f"{action} needs the {name} client")
        return client


ActionFunction = Callable[[Clients, dict[str, Any], bool], Result]


def _ecs_scale_out(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return ecs.scale_out(clients.need("ecs", "ecs_scale_out"), params, check_mode)


def _ecs_scale_up(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return ecs.scale_up(clients.need("ecs", "ecs_scale_up"), params, check_mode)


def _ecs_rollback(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return ecs.rollback(clients.need("ecs", "ecs_rollback"), params, check_mode)


def _ecs_force_deployment(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return ecs.force_deployment(clients.need("ecs", "ecs_force_deployment"), params, check_mode)


def _rds_failover(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return rds.failover(clients.need("rds", "rds_failover"), params, check_mode)


def _rds_restore_snapshot(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return rds.restore_snapshot(clients.need("rds", "rds_restore_snapshot"), params, check_mode, sleep=clients.sleep)


def _set_feature_flag(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return flags.set_feature_flag(clients.need("ssm", "set_feature_flag"), params, check_mode)


def _external_status_check(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return external.external_status_check(clients.http, params, check_mode)


def _aws_support_case(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return support.aws_support_case(clients.need("support", "aws_support_case"), params, check_mode)


ACTION_FUNCTIONS: dict[str, ActionFunction] = {
    "ecs_scale_out": _ecs_scale_out,
    "ecs_scale_up": _ecs_scale_up,
    "ecs_rollback": _ecs_rollback,
    "ecs_force_deployment": _ecs_force_deployment,
    "github_rollback": github.github_rollback,
    "rds_failover": _rds_failover,
    "rds_restore_snapshot": _rds_restore_snapshot,
    "set_feature_flag": _set_feature_flag,
    "external_status_check": _external_status_check,
    "isolate_service": security.isolate_service,
    "restore_service": security.restore_service,
    "aws_support_case": _aws_support_case,
}

# Inventory keys a step's YAML params may not override (guard rails come from the environment).
_PROTECTED = ("allow_remediation", "max_desired_count", "min_desired_count", "environment", "incident_id", "severity")


def run_action(name: str, clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    """Run the module `name`; the Result's check_mode always tells how it ran."""
    try:
        function = ACTION_FUNCTIONS[name]
    except KeyError:
        raise ActionError(f"unknown action {name!r}; known: {', '.join(sorted(ACTION_FUNCTIONS))}") from None
    result = function(clients, dict(params), check_mode)
    return result if result.check_mode == check_mode else dataclasses.replace(result, check_mode=check_mode)


def step_params(runbook: Runbook, environment_name: str, step: Step | dict[str, Any], *, service: str | None = None,
                incident_id: str, since: str | None = None, confirm: bool = False,
                severity: str | None = None) -> dict[str, Any]:
    """The params a module gets for `step`: inventory values, then the step's params, then guard rails.

    `service` is the short name (backend) or the ECS name; default: the environment's default service.
    `severity` is the incident's (P1-P4; the AWS Support case's severity code comes from it).
    """
    env = runbook.environment(environment_name)
    svc = env.service(service)
    action = step.action if isinstance(step, Step) else step["action"]
    own = dict(step.params if isinstance(step, Step) else step.get("params") or {})
    guard = {
        "environment": environment_name,
        "incident_id": incident_id,
        "allow_remediation": env.guard_rails.allow_remediation,
        "max_desired_count": svc.max_desired_count,
        "min_desired_count": svc.min_desired_count,
    }
    base: dict[str, Any] = {"region": env.region, "confirm": confirm}
    if since is not None:
        base["since"] = since
    if severity is not None:
        guard["severity"] = severity
    if action.startswith("ecs_"):
        base.update(cluster=env.cluster, service=svc.ecs_service)
    elif action == "github_rollback":
        base.update(repository=env.github.repository, ref=env.github.ref, service=svc.github_service,
                    cluster=env.cluster, ecs_service=svc.ecs_service)
    elif action.startswith("rds_"):
        base.update(cluster_id=env.database.cluster_id, instance_id=env.database.instance_id,
                    engine=env.database.engine, restore_instance_class=env.database.restore_instance_class)
    elif action == "set_feature_flag":
        flag = own.get("flag")
        if flag is not None and "name" not in own:
            if flag not in env.feature_flags:
                raise ActionError(f"step {getattr(step, 'id', action)}: unknown feature flag {flag!r} in "
                                  f"{environment_name}; known: {', '.join(env.feature_flags)}")
            base["name"] = env.feature_flags[flag]
    elif action == "external_status_check":
        base["url"] = env.external_status_url
    elif action in ("isolate_service", "restore_service"):
        base.update(cluster=env.cluster, service=svc.ecs_service, target_group=svc.target_group,
                    quarantine_security_group=env.quarantine_security_group, load_balancer=env.load_balancer)
    return {**base, **{k: v for k, v in own.items() if k not in _PROTECTED}, **guard}
