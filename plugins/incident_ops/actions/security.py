"""Security isolation of an ECS service, and its reversal.

`isolate_service` puts the service's awsvpc networking on the quarantine security group and takes
it out of the load balancer (deregisters its targets, or answers 503 in front of it with a listener
rule) while the tasks keep running for forensics (the desired count is never touched).
What it replaced is recorded in service tags so that `restore_service` can put it back:

- `incident-ops:isolate`          "<incident_id> <method> <target group name>"
- `incident-ops:isolate-sgs`      the original security group ids, space separated
- `incident-ops:isolate-targets-N` the deregistered targets "id:port ...", in chunks (tag values <= 256)

Listener rules it creates carry the ELB tag `incident-ops:isolate` = "<cluster>/<service>".
"""

from __future__ import annotations

from typing import Any

from incident_ops.actions import incident_token, require_confirm, require_param, require_remediation
from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError, Result
from incident_ops.actions.ecs import describe_service, service_tags, tag_service

__all__ = ["ISOLATE_SGS_TAG", "ISOLATE_TAG", "ISOLATE_TARGETS_TAG", "isolate_service", "restore_service"]

ISOLATE_TAG = "incident-ops:isolate"
ISOLATE_SGS_TAG = "incident-ops:isolate-sgs"
ISOLATE_TARGETS_TAG = "incident-ops:isolate-targets-"
METHODS = ("deregister", "listener_rule")
_TAG_VALUE_MAX = 256
_MAX_PRIORITY = 50000


def _client(clients: Any, name: str, action: str) -> Any:
    client = getattr(clients, name, None)
    if client is None:
        raise ActionError(f"{action} needs the {name} client")
    return client


def _awsvpc(svc: dict[str, Any]) -> dict[str, Any]:
    conf = (svc.get("networkConfiguration") or {}).get("awsvpcConfiguration")
    if not conf or not conf.get("subnets"):
        raise ActionError(f"service {svc.get('serviceName')} does not use awsvpc networking; cannot change its "
                          "security groups")
    return conf


def _quarantine_group(ec2: Any, name: str, subnet_id: str) -> str:
    vpc_id = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"]
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    if not groups:
        raise ActionError(
            f"quarantine security group {name!r} does not exist in {vpc_id} (the service's VPC); create it "
            "beforehand (no ingress, no egress) — this step does not create it"
        )
    return groups[0]["GroupId"]


def _target_group(elbv2: Any, name: str, svc: dict[str, Any]) -> dict[str, Any]:
    try:
        tg = elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]
    except elbv2.exceptions.TargetGroupNotFoundException:
        raise ActionError(f"target group {name!r} not found") from None
    attached = {lb.get("targetGroupArn") for lb in svc.get("loadBalancers", [])}
    if tg["TargetGroupArn"] not in attached:
        raise GuardRailError(
            f"target group {name!r} is not attached to service {svc['serviceName']}; refusing to touch another "
            "service's targets. Nothing was changed."
        )
    return tg


def _registered(elbv2: Any, tg_arn: str) -> list[dict[str, Any]]:
    health = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return [
        {k: v for k, v in h["Target"].items() if k in ("Id", "Port", "AvailabilityZone")}
        for h in health
        if h.get("TargetHealth", {}).get("State") != "draining"
    ]


def _target_key(target: dict[str, Any]) -> str:
    return f"{target['Id']}:{target['Port']}" if target.get("Port") is not None else target["Id"]


def _parse_target(text: str) -> dict[str, Any]:
    ident, _, port = text.rpartition(":")
    if ident and port.isdigit():
        return {"Id": ident, "Port": int(port)}
    return {"Id": text}


def _recorded_targets(tags: dict[str, str]) -> list[str]:
    keys = sorted((k for k in tags if k.startswith(ISOLATE_TARGETS_TAG)), key=lambda k: int(k.rsplit("-", 1)[-1]))
    return [t for k in keys for t in tags[k].split()]


def _target_tags(targets: list[str]) -> dict[str, str]:
    chunks: list[list[str]] = [[]]
    for target in targets:
        if len(" ".join([*chunks[-1], target])) > _TAG_VALUE_MAX:
            chunks.append([])
        chunks[-1].append(target)
    return {f"{ISOLATE_TARGETS_TAG}{i}": " ".join(chunk) for i, chunk in enumerate(chunks) if chunk}


def _forwards_to(actions: list[dict[str, Any]], tg_arn: str) -> bool:
    for act in actions:
        if act.get("Type") != "forward":
            continue
        if act.get("TargetGroupArn") == tg_arn:
            return True
        groups = (act.get("ForwardConfig") or {}).get("TargetGroups", [])
        if any(g.get("TargetGroupArn") == tg_arn for g in groups):
            return True
    return False


def _rule_tags(elbv2: Any, arns: list[str]) -> dict[str, dict[str, str]]:
    tags: dict[str, dict[str, str]] = {}
    for i in range(0, len(arns), 20):
        for desc in elbv2.describe_tags(ResourceArns=arns[i:i + 20])["TagDescriptions"]:
            tags[desc["ResourceArn"]] = {t["Key"]: t["Value"] for t in desc.get("Tags", [])}
    return tags


def _listeners(elbv2: Any, tg: dict[str, Any]) -> list[str]:
    arns: list[str] = []
    for lb_arn in tg.get("LoadBalancerArns", []):
        for page in elbv2.get_paginator("describe_listeners").paginate(LoadBalancerArn=lb_arn):
            arns.extend(listener["ListenerArn"] for listener in page["Listeners"])
    return arns


def _rules(elbv2: Any, listener_arn: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    marker = None
    while True:
        kwargs = {"ListenerArn": listener_arn, **({"Marker": marker} if marker else {})}
        page = elbv2.describe_rules(**kwargs)
        rules.extend(page["Rules"])
        marker = page.get("NextMarker")
        if not marker:
            return rules


def _isolation_rules(elbv2: Any, tg: dict[str, Any], key: str) -> list[str]:
    found: list[str] = []
    for listener in _listeners(elbv2, tg):
        arns = [r["RuleArn"] for r in _rules(elbv2, listener) if not r.get("IsDefault")]
        for arn, tags in _rule_tags(elbv2, arns).items() if arns else ():
            if tags.get(ISOLATE_TAG) == key:
                found.append(arn)
    return found


def _clean_condition(cond: dict[str, Any]) -> dict[str, Any]:
    configs = {k: v for k, v in cond.items() if k.endswith("Config")}
    return {"Field": cond["Field"], **configs} if configs else {"Field": cond["Field"], "Values": cond["Values"]}


def _plan_rules(elbv2: Any, tg: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """CreateRule requests (503 fixed response) in front of every rule/default forwarding to the group."""
    plans: list[dict[str, Any]] = []
    for listener in _listeners(elbv2, tg):
        rules = _rules(elbv2, listener)
        non_default = [r for r in rules if not r.get("IsDefault")]
        tags = _rule_tags(elbv2, [r["RuleArn"] for r in non_default]) if non_default else {}
        if any(t.get(ISOLATE_TAG) == key for t in tags.values()):
            continue  # this listener is already isolated for the service
        used = {int(r["Priority"]) for r in non_default}
        for rule in sorted(rules, key=lambda r: _MAX_PRIORITY + 1 if r.get("IsDefault") else int(r["Priority"])):
            if not _forwards_to(rule.get("Actions", []), tg["TargetGroupArn"]):
                continue
            if rule.get("IsDefault"):
                top, conditions = _MAX_PRIORITY, [{"Field": "path-pattern", "Values": ["/*"]}]
            else:
                top, conditions = int(rule["Priority"]) - 1, [_clean_condition(c) for c in rule.get("Conditions", [])]
            priority = next((p for p in range(top, 0, -1) if p not in used), None)
            if priority is None:
                raise ActionError(f"no free listener rule priority in front of {rule['RuleArn']}")
            used.add(priority)
            plans.append({
                "ListenerArn": listener,
                "Priority": priority,
                "Conditions": conditions,
                "Actions": [{"Type": "fixed-response", "FixedResponseConfig": {
                    "StatusCode": "503", "ContentType": "text/plain",
                    "MessageBody": "Service temporarily unavailable (isolated)"}}],
                "Tags": [{"Key": ISOLATE_TAG, "Value": key}],
            })
    return plans


def _network(conf: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    return {"awsvpcConfiguration": {**conf, "securityGroups": groups}}


def isolate_service(clients: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Quarantine the service's network and take it out of the load balancer; tasks keep running.

    clients: ecs, ec2, elbv2. params: cluster, service, quarantine_security_group (group name; must
    exist in the service's VPC), target_group (name; must be attached to the service),
    method "deregister" | "listener_rule", incident_id, confirm, allow_remediation.
    Idempotent by state (security groups already the quarantine group, no targets left / the 503
    rule present); the original groups and targets are recorded once, never overwritten.
    """
    action = "isolate_service"
    ecs, ec2, elbv2 = (_client(clients, n, action) for n in ("ecs", "ec2", "elbv2"))
    cluster = require_param(params, "cluster", action)
    service = require_param(params, "service", action)
    sg_name = require_param(params, "quarantine_security_group", action)
    tg_name = require_param(params, "target_group", action)
    method = params.get("method") or "deregister"
    if method not in METHODS:
        raise ActionError(f"{action}: method must be one of {', '.join(METHODS)}, got {method!r}")
    incident_id = incident_token(params, action)
    require_remediation(params, check_mode, action)
    require_confirm(params, check_mode, action)

    svc = describe_service(ecs, cluster, service)
    conf = _awsvpc(svc)
    quarantine = _quarantine_group(ec2, sg_name, conf["subnets"][0])
    tg = _target_group(elbv2, tg_name, svc)
    key = f"{cluster}/{service}"
    tags = service_tags(ecs, svc["serviceArn"])
    current_sgs = list(conf.get("securityGroups") or [])
    registered = _registered(elbv2, tg["TargetGroupArn"])
    rules_now = _isolation_rules(elbv2, tg, key)
    before = {"security_groups": current_sgs, "targets": [_target_key(t) for t in registered],
              "isolation_rules": rules_now, "desired_count": svc.get("desiredCount")}

    sg_change = current_sgs != [quarantine]
    to_deregister = registered if method == "deregister" else []
    rule_plans = _plan_rules(elbv2, tg, key) if method == "listener_rule" else []
    new_record: dict[str, str] = {}
    if ISOLATE_TAG not in tags:
        new_record[ISOLATE_TAG] = f"{incident_id} {method} {tg_name}"
    if ISOLATE_SGS_TAG not in tags and sg_change:
        new_record[ISOLATE_SGS_TAG] = " ".join(current_sgs)
    if to_deregister:
        recorded = _recorded_targets(tags)
        merged = recorded + [k for k in (_target_key(t) for t in to_deregister) if k not in recorded]
        new_record.update(_target_tags(merged))

    after = {
        "security_groups": [quarantine],
        "targets": [] if method == "deregister" else before["targets"],
        "isolation_rules": rules_now + [f"(503 rule, priority {p['Priority']})" for p in rule_plans],
        "desired_count": svc.get("desiredCount"),
    }
    todo = []
    if sg_change:
        todo.append(f"security groups {' '.join(current_sgs) or '(none)'} -> {quarantine} ({sg_name})")
    if to_deregister:
        todo.append(f"deregister {len(to_deregister)} target(s) from {tg_name}")
    if rule_plans:
        todo.append(f"add {len(rule_plans)} 503 listener rule(s) in front of {tg_name}")
    details = {"quarantine_group": quarantine, "target_group": tg["TargetGroupArn"], "method": method,
               "record": new_record}
    if not todo:
        if tags.get(ISOLATE_TAG, "").split()[:1] == [incident_id]:
            details[DONE_EARLIER] = True  # isolated by this incident's earlier attempt
        return Result(False, before, before, f"{service} is already isolated ({sg_name}, out of {tg_name}); "
                      "tasks keep running", details, check_mode)
    if check_mode:
        return Result(True, before, after, f"would isolate {service}: " + "; ".join(todo) + "; tasks keep running",
                      details, check_mode)

    if new_record:  # record first: whatever happens next, restore_service knows what to put back
        tag_service(ecs, svc["serviceArn"], new_record)
    if sg_change:
        ecs.update_service(cluster=cluster, service=service, networkConfiguration=_network(conf, [quarantine]))
    if to_deregister:
        elbv2.deregister_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=to_deregister)
    created = [elbv2.create_rule(**plan)["Rules"][0]["RuleArn"] for plan in rule_plans]
    now = describe_service(ecs, cluster, service)
    after = {
        "security_groups": list(_awsvpc(now).get("securityGroups") or []),
        "targets": [_target_key(t) for t in _registered(elbv2, tg["TargetGroupArn"])],
        "isolation_rules": rules_now + created,
        "desired_count": now.get("desiredCount"),
    }
    return Result(True, before, after, f"isolated {service}: " + "; ".join(todo) + "; tasks keep running",
                  details, check_mode)


def restore_service(clients: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Undo `isolate_service` from its record: original security groups, targets back, 503 rules gone.

    clients: ecs, ec2, elbv2. params: cluster, service, target_group (name; default: every target
    group of the service), quarantine_security_group (name, to detect an unrecorded quarantine),
    allow_remediation. Idempotent: once restored the record tags are removed and a second run finds
    nothing to do.
    """
    action = "restore_service"
    ecs, ec2, elbv2 = (_client(clients, n, action) for n in ("ecs", "ec2", "elbv2"))
    cluster = require_param(params, "cluster", action)
    service = require_param(params, "service", action)
    require_remediation(params, check_mode, action)

    svc = describe_service(ecs, cluster, service)
    conf = _awsvpc(svc)
    key = f"{cluster}/{service}"
    tags = service_tags(ecs, svc["serviceArn"])
    record = tags.get(ISOLATE_TAG, "").split()
    tg_name = params.get("target_group") or (record[2] if len(record) > 2 else None)
    if tg_name:
        groups = [_target_group(elbv2, str(tg_name), svc)]
    else:
        arns = [lb["targetGroupArn"] for lb in svc.get("loadBalancers", []) if lb.get("targetGroupArn")]
        groups = elbv2.describe_target_groups(TargetGroupArns=arns)["TargetGroups"] if arns else []
    current_sgs = list(conf.get("securityGroups") or [])
    original_sgs = tags.get(ISOLATE_SGS_TAG, "").split()
    recorded = [_parse_target(t) for t in _recorded_targets(tags)]
    registered = {tg["TargetGroupArn"]: {_target_key(t) for t in _registered(elbv2, tg["TargetGroupArn"])}
                  for tg in groups}
    rules = list(dict.fromkeys(arn for tg in groups for arn in _isolation_rules(elbv2, tg, key)))
    before = {"security_groups": current_sgs, "targets": sorted(set().union(*registered.values())),
              "isolation_rules": rules, "desired_count": svc.get("desiredCount")}

    if not original_sgs and params.get("quarantine_security_group"):
        quarantine = _quarantine_group(ec2, str(params["quarantine_security_group"]), conf["subnets"][0])
        if quarantine in current_sgs:
            raise ActionError(f"{service} is on the quarantine group {quarantine} but there is no record of its "
                              f"original security groups (tag {ISOLATE_SGS_TAG}); restore them by hand")
    if recorded and len(groups) != 1:
        raise ActionError(f"{service} has {len(groups)} target groups and the record does not say which one was "
                          "isolated; pass target_group")
    sg_change = bool(original_sgs) and current_sgs != original_sgs
    tg_arn = groups[0]["TargetGroupArn"] if len(groups) == 1 else None
    missing = [t for t in recorded if _target_key(t) not in registered[tg_arn]] if tg_arn else []
    record_keys = [k for k in tags if k in (ISOLATE_TAG, ISOLATE_SGS_TAG) or k.startswith(ISOLATE_TARGETS_TAG)]
    todo = []
    if sg_change:
        todo.append(f"security groups {' '.join(current_sgs)} -> {' '.join(original_sgs)}")
    if missing:
        todo.append(f"register {len(missing)} target(s) in {groups[0]['TargetGroupName']} again")
    if rules:
        todo.append(f"delete {len(rules)} 503 listener rule(s)")
    if record_keys:
        todo.append("remove the isolation record")
    after = {"security_groups": original_sgs or current_sgs,
             "targets": sorted(set(before["targets"]) | {_target_key(t) for t in missing}),
             "isolation_rules": [], "desired_count": svc.get("desiredCount")}
    if not todo:
        return Result(False, before, before, f"{service} is not isolated; nothing to restore", {}, check_mode)
    if check_mode:
        return Result(True, before, after, f"would restore {service}: " + "; ".join(todo), {}, check_mode)
    if sg_change:
        ecs.update_service(cluster=cluster, service=service, networkConfiguration=_network(conf, original_sgs))
    if missing:
        elbv2.register_targets(TargetGroupArn=tg_arn, Targets=missing)
    for arn in rules:
        elbv2.delete_rule(RuleArn=arn)
    if record_keys:  # last: a failure above leaves the record for the retry
        ecs.untag_resource(resourceArn=svc["serviceArn"], tagKeys=record_keys)
    now = describe_service(ecs, cluster, service)
    after = {
        "security_groups": list(_awsvpc(now).get("securityGroups") or []),
        "targets": sorted(set().union(*({_target_key(t) for t in _registered(elbv2, g["TargetGroupArn"])}
                                         for g in groups))),
        "isolation_rules": [],
        "desired_count": now.get("desiredCount"),
    }
    return Result(True, before, after, f"restored {service}: " + "; ".join(todo), {}, check_mode)
