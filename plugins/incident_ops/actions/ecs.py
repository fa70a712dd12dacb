"""ECS modules: scale out, scale up, roll back to the previous task definition, force a deployment.

Each reads the service first and writes only when the service is not yet in the wanted state.
Records that make a step idempotent per incident are tags on the service (`incident-ops:*`); they
are written by the step itself and read back first on the next run.
"""

from __future__ import annotations

import re
from typing import Any

from incident_ops.actions import incident_token, require_param, require_remediation
from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError, Result

__all__ = [
    "FORCE_DEPLOYMENT_TAG",
    "ROLLBACK_TAG",
    "SCALE_OUT_TAG",
    "SCALE_UP_TAG",
    "describe_service",
    "force_deployment",
    "rollback",
    "scale_out",
    "scale_up",
    "service_tags",
    "tag_service",
]

ROLLBACK_TAG = "incident-ops:rollback"
FORCE_DEPLOYMENT_TAG = "incident-ops:force-deployment"
SCALE_UP_TAG = "incident-ops:scale-up"
SCALE_OUT_TAG = "incident-ops:scale-out"

_REVISION = re.compile(r"^(?:.*task-definition/)?(?P<family>[^:/]+):(?P<revision>\d+)$")


# --- shared helpers (also used by the security and github modules) -------------------------------


def describe_service(ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    """The ACTIVE service, or ActionError naming the cluster and service."""
    answer = ecs.describe_services(cluster=cluster, services=[service])
    for svc in answer.get("services", []):
        if svc.get("status") == "ACTIVE":
            return svc
    reasons = ", ".join(f.get("reason", "?") for f in answer.get("failures", [])) or "not ACTIVE"
    raise ActionError(f"ECS service {service!r} in cluster {cluster!r} not found ({reasons})")


def service_tags(ecs: Any, service_arn: str) -> dict[str, str]:
    tags = ecs.list_tags_for_resource(resourceArn=service_arn).get("tags", [])
    return {tag["key"]: tag["value"] for tag in tags}


def tag_service(ecs: Any, service_arn: str, tags: dict[str, str]) -> None:
    ecs.tag_resource(resourceArn=service_arn, tags=[{"key": k, "value": v} for k, v in tags.items()])


def _family_revision(arn: str) -> tuple[str, int]:
    match = _REVISION.match(arn)
    if not match:
        raise ActionError(f"not a task definition family:revision or ARN: {arn!r}")
    return match["family"], int(match["revision"])


def _short(arn: str | None) -> str | None:
    """`family:revision` of a task definition ARN, for messages."""
    return arn.rsplit("/", 1)[-1] if arn else arn


def _service_view(svc: dict[str, Any]) -> dict[str, Any]:
    return {
        "desired_count": svc.get("desiredCount"),
        "running_count": svc.get("runningCount"),
        "pending_count": svc.get("pendingCount"),
        "task_definition": svc.get("taskDefinition"),
    }


def _int_param(params: dict[str, Any], key: str, action: str, minimum: int = 0) -> int:
    value = require_param(params, key, action)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ActionError(f"{action}: {key} must be an integer, got {value!r}") from None
    if number < minimum:
        raise GuardRailError(f"{action}: {key} must be >= {minimum}, got {number}. Nothing was changed.")
    return number


# --- scale out ------------------------------------------------------------------------------------


def scale_out(ecs: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Raise the service's desired count to `desired_count` (never above `max_desired_count`).

    params: cluster, service, desired_count, max_desired_count, allow_scale_down=False,
    min_desired_count (optional floor for allowed scale-downs), allow_remediation.
    Idempotent by state: a service already at or above the target is left alone. With an
    incident_id, the service tag `incident-ops:scale-out` = "<incident_id> <from> <to>" is written
    before the update, so a retry after a killed try knows the change was this incident's.
    """
    action = "ecs_scale_out"
    cluster = require_param(params, "cluster", action)
    service = require_param(params, "service", action)
    target = _int_param(params, "desired_count", action)
    if params.get("max_desired_count") is None:
        raise GuardRailError(f"{action}: no max_desired_count cap given for {service}; refusing to scale without one")
    cap = _int_param(params, "max_desired_count", action)
    if target > cap:
        raise GuardRailError(
            f"{action}: desired_count {target} for {service} is above the cap max_desired_count={cap}. "
            "Nothing was changed."
        )
    allow_down = params.get("allow_scale_down") is True
    floor = params.get("min_desired_count")
    if allow_down and floor is not None and target < int(floor):
        raise GuardRailError(
            f"{action}: desired_count {target} for {service} is below min_desired_count={floor}. Nothing was changed."
        )
    require_remediation(params, check_mode, action)

    svc = describe_service(ecs, cluster, service)
    before = _service_view(svc)
    current = int(svc["desiredCount"])
    incident_id = params.get("incident_id")
    if current == target or (current > target and not allow_down):
        why = "" if current == target else f" (not scaling down to {target}: allow_scale_down is false)"
        details: dict[str, Any] = {"target": target}
        record = service_tags(ecs, svc["serviceArn"]).get(SCALE_OUT_TAG, "") if incident_id else ""
        if record.split()[:1] == [incident_id] and record.split()[-1:] == [str(target)]:
            details[DONE_EARLIER] = True  # this incident's earlier try scaled it
        return Result(False, before, before, f"{service}: desired count is already {current}{why}",
                      details, check_mode)
    verb = "scale down" if current > target else "scale out"
    if check_mode:
        after = {**before, "desired_count": target}
        return Result(True, before, after, f"would {verb} {service} from {current} to {target} tasks",
                      {"target": target}, check_mode)
    if incident_id:
        tag_service(ecs, svc["serviceArn"], {SCALE_OUT_TAG: f"{incident_id} {current} {target}"})
    updated = ecs.update_service(cluster=cluster, service=service, desiredCount=target)["service"]
    return Result(True, before, _service_view(updated), f"{verb} {service} from {current} to {target} tasks",
                  {"target": target}, check_mode)


# --- scale up -------------------------------------------------------------------------------------


def _register_input_keys(ecs: Any) -> set[str]:
    shape = ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape
    return set(shape.members)


def _copy_task_definition(ecs: Any, described: dict[str, Any], tags: list[dict[str, str]]) -> dict[str, Any]:
    """A RegisterTaskDefinition request that copies every registrable field of `described`."""
    keys = _register_input_keys(ecs)
    request = {k: v for k, v in described.items() if k in keys and v not in (None, [], {})}
    request["family"] = described["family"]
    request["containerDefinitions"] = described["containerDefinitions"]
    if tags:
        request["tags"] = tags
    return request


def _find_scale_up_revision(ecs: Any, family: str, incident_id: str, from_arn: str) -> str | None:
    """A revision this incident already registered (a retry after register succeeded)."""
    arns = ecs.list_task_definitions(familyPrefix=family, status="ACTIVE", sort="DESC").get("taskDefinitionArns", [])
    for arn in arns[:5]:
        if _family_revision(arn)[0] != family:
            continue
        answer = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        tags = {t["key"]: t["value"] for t in answer.get("tags", [])}
        if tags.get(SCALE_UP_TAG) == f"{incident_id} {from_arn}":
            return arn
    return None


def scale_up(ecs: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Deploy a copy of the current task definition with more task-level cpu/memory.

    params: cluster, service, cpu, memory (task-level units, e.g. 2048 / 4096), incident_id,
    allow_remediation. Neither value is ever lowered (each becomes max(current, wanted)).
    Idempotent by state (the current revision already has enough) and per incident (a revision
    registered for this incident and `from` revision is reused, not registered twice).
    """
    action = "ecs_scale_up"
    cluster = require_param(params, "cluster", action)
    service = require_param(params, "service", action)
    cpu = _int_param(params, "cpu", action, minimum=1)
    memory = _int_param(params, "memory", action, minimum=1)
    incident_id = incident_token(params, action)
    require_remediation(params, check_mode, action)

    svc = describe_service(ecs, cluster, service)
    current_arn = svc["taskDefinition"]
    answer = ecs.describe_task_definition(taskDefinition=current_arn, include=["TAGS"])
    described = answer["taskDefinition"]
    cur_cpu, cur_mem = int(described.get("cpu") or 0), int(described.get("memory") or 0)
    before = {"task_definition": current_arn, "cpu": cur_cpu, "memory": cur_mem}
    new_cpu, new_mem = max(cur_cpu, cpu), max(cur_mem, memory)
    if (new_cpu, new_mem) == (cur_cpu, cur_mem):
        ours = any(t["key"] == SCALE_UP_TAG and t["value"].split()[:1] == [incident_id] for t in answer.get("tags", []))
        return Result(False, before, before,
                      f"{service}: {_short(current_arn)} already has cpu {cur_cpu} / memory {cur_mem} "
                      f"(wanted {cpu} / {memory})", {DONE_EARLIER: True} if ours else {}, check_mode)
    if check_mode:
        after = {"task_definition": f"(new revision of {described['family']})", "cpu": new_cpu, "memory": new_mem}
        return Result(True, before, after,
                      f"would register a copy of {_short(current_arn)} with cpu {new_cpu} / memory {new_mem} "
                      f"and deploy it to {service}", {}, check_mode)

    new_arn = _find_scale_up_revision(ecs, described["family"], incident_id, current_arn)
    if new_arn is None:
        tags = [t for t in answer.get("tags", []) if t["key"] != SCALE_UP_TAG]
        tags.append({"key": SCALE_UP_TAG, "value": f"{incident_id} {current_arn}"})
        request = _copy_task_definition(ecs, described, tags)
        request["cpu"], request["memory"] = str(new_cpu), str(new_mem)
        new_arn = ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster=cluster, service=service, taskDefinition=new_arn)
    after = {"task_definition": new_arn, "cpu": new_cpu, "memory": new_mem}
    return Result(True, before, after,
                  f"deployed {_short(new_arn)} (cpu {cur_cpu}->{new_cpu}, memory {cur_mem}->{new_mem}) to {service}",
                  {"registered": new_arn}, check_mode)


# --- rollback -------------------------------------------------------------------------------------


def _resolve(ecs: Any, task_definition: str) -> str:
    try:
        return ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]["taskDefinitionArn"]
    except ecs.exceptions.ClientException as exc:
        raise ActionError(f"task definition {task_definition!r} not found: {exc}") from None


def _previous_revision(ecs: Any, current_arn: str) -> str:
    family, revision = _family_revision(current_arn)
    paginator = ecs.get_paginator("list_task_definitions")
    candidates: list[tuple[int, str]] = []
    for page in paginator.paginate(familyPrefix=family, status="ACTIVE"):
        for arn in page.get("taskDefinitionArns", []):
            fam, rev = _family_revision(arn)
            if fam == family and rev < revision:
                candidates.append((rev, arn))
    if not candidates:
        raise ActionError(f"no ACTIVE revision of {family} below {revision} to roll back to")
    return max(candidates)[1]


def _parse_record(value: str | None) -> tuple[str, str, str] | None:
    parts = (value or "").split()
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def rollback(ecs: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Deploy the task definition that ran before the current one.

    params: cluster, service, incident_id, allow_remediation; optional target_task_definition
    (family:revision or ARN; default: the highest ACTIVE revision of the family below the current)
    and from_task_definition (the revision current when the incident started).
    Idempotency: the service tag `incident-ops:rollback` = "<incident_id> <from-arn> <to-arn>" is
    written before the update and read first, so a retry for the same incident never goes back one
    more revision; with `from_task_definition`, a service that no longer runs it is left alone.
    """
    action = "ecs_rollback"
    cluster = require_param(params, "cluster", action)
    service = require_param(params, "service", action)
    incident_id = incident_token(params, action)
    require_remediation(params, check_mode, action)

    svc = describe_service(ecs, cluster, service)
    current = svc["taskDefinition"]
    before = {"task_definition": current}
    record = _parse_record(service_tags(ecs, svc["serviceArn"]).get(ROLLBACK_TAG))
    target: str | None = None
    if record and record[0] == incident_id:
        _, rec_from, rec_to = record
        if current == rec_from:
            target = rec_to  # recorded, but the update did not happen: finish it
        else:
            state = "already rolled back" if current == rec_to else f"now runs {_short(current)}"
            found: dict[str, Any] = {"record": {"from": rec_from, "to": rec_to}}
            if current == rec_to:
                found[DONE_EARLIER] = True
            return Result(False, before, before,
                          f"{service}: {state} for incident {incident_id} "
                          f"({_short(rec_from)} -> {_short(rec_to)}); not rolling back again",
                          found, check_mode)
    if target is None and params.get("from_task_definition"):
        started = _resolve(ecs, str(params["from_task_definition"]))
        if current != started:
            return Result(False, before, before,
                          f"{service} runs {_short(current)}, not {_short(started)} (the revision when the incident "
                          "started): already rolled back or redeployed", {"from_task_definition": started}, check_mode)
    if target is None and params.get("target_task_definition"):
        target = _resolve(ecs, str(params["target_task_definition"]))
        if _family_revision(target)[0] != _family_revision(current)[0]:
            raise GuardRailError(
                f"{action}: target {_short(target)} is not of the service's family {_family_revision(current)[0]}. "
                "Nothing was changed."
            )
        if target == current:
            return Result(False, before, before, f"{service} already runs {_short(target)}", {}, check_mode)
    if target is None:
        target = _previous_revision(ecs, current)
    after = {"task_definition": target}
    details = {"from": current, "to": target}
    if check_mode:
        return Result(True, before, after, f"would roll back {service} from {_short(current)} to {_short(target)}",
                      details, check_mode)
    tag_service(ecs, svc["serviceArn"], {ROLLBACK_TAG: f"{incident_id} {current} {target}"})
    ecs.update_service(cluster=cluster, service=service, taskDefinition=target)
    return Result(True, before, after, f"rolled back {service} from {_short(current)} to {_short(target)}",
                  details, check_mode)


# --- force deployment ------------------------------------------------------------------------------


def _primary_deployment(svc: dict[str, Any]) -> str | None:
    for deployment in svc.get("deployments", []):
        if deployment.get("status") == "PRIMARY":
            return deployment.get("id")
    return None


def force_deployment(ecs: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Start a new deployment of the same task definition (fresh tasks), once per incident.

    params: cluster, service, incident_id, allow_remediation. The service tag
    `incident-ops:force-deployment` = incident id is written after the deployment started.
    """
    action = "ecs_force_deployment"
    cluster = require_param(params, "cluster", action)
    service = require_param(params, "service", action)
    incident_id = incident_token(params, action)
    require_remediation(params, check_mode, action)

    svc = describe_service(ecs, cluster, service)
    before = {"task_definition": svc["taskDefinition"], "deployment": _primary_deployment(svc)}
    if service_tags(ecs, svc["serviceArn"]).get(FORCE_DEPLOYMENT_TAG) == incident_id:
        return Result(False, before, before, f"{service}: a new deployment was already forced for incident {incident_id}",
                      {DONE_EARLIER: True}, check_mode)
    if check_mode:
        return Result(True, before, {**before, "deployment": "(new)"},
                      f"would force a new deployment of {service} ({_short(svc['taskDefinition'])})", {}, check_mode)
    updated = ecs.update_service(cluster=cluster, service=service, forceNewDeployment=True)["service"]
    tag_service(ecs, svc["serviceArn"], {FORCE_DEPLOYMENT_TAG: incident_id})
    after = {"task_definition": updated["taskDefinition"], "deployment": _primary_deployment(updated)}
    return Result(True, before, after, f"forced a new deployment of {service}", {}, check_mode)
