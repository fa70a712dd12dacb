"""Isolation of a service (quarantine security group, out of the load balancer) and its reversal."""

from __future__ import annotations

from typing import Any

import pytest

from incident_ops.actions import security
from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError

from .conftest import INCIDENT
from .inventory import Inventory


def iparams(inv: Inventory, key: str = "backend", **extra: Any) -> dict[str, Any]:
    svc = {"backend": "peoplebooster-backend-tg", "frontend": "peoplebooster-frontend-tg"}
    return {"cluster": inv.cluster, "service": inv.service(key).name, "target_group": svc[key],
            "quarantine_security_group": inv.quarantine_security_group_name, "method": "deregister",
            "incident_id": INCIDENT, "allow_remediation": True, "confirm": True, "environment": "production",
            **extra}


def state(clients, inv: Inventory, key: str = "backend") -> dict[str, Any]:
    svc = clients.ecs.describe_services(cluster=inv.cluster, services=[inv.service(key).name])["services"][0]
    health = clients.elbv2.describe_target_health(TargetGroupArn=inv.service(key).target_group_arn)
    tags = clients.ecs.list_tags_for_resource(resourceArn=inv.service(key).arn)["tags"]
    rules = clients.elbv2.describe_rules(ListenerArn=inv.listener_arn)["Rules"]
    return {
        "security_groups": svc["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"],
        "subnets": svc["networkConfiguration"]["awsvpcConfiguration"]["subnets"],
        "desired_count": svc["desiredCount"],
        "task_definition": svc["taskDefinition"],
        "targets": sorted(f"{h['Target']['Id']}:{h['Target']['Port']}" for h in health["TargetHealthDescriptions"]
                          if h["TargetHealth"]["State"] != "draining"),
        "record": {t["key"]: t["value"] for t in tags if t["key"].startswith("incident-ops:isolate")},
        "rules": sorted((r["Priority"], r["Actions"][0]["Type"]) for r in rules),
    }


def test_isolate_by_deregistering_then_restore(clients, inventory: Inventory) -> None:
    original = state(clients, inventory)
    frontend = state(clients, inventory, "frontend")
    assert len(original["targets"]) == 4 and original["security_groups"] == [inventory.app_security_group]

    check = security.isolate_service(clients, iparams(inventory, confirm=False), check_mode=True)
    assert check.changed and check.message.startswith("would isolate peoplebooster-backend")
    assert "deregister 4 target(s)" in check.message and "tasks keep running" in check.message
    assert state(clients, inventory) == original

    applied = security.isolate_service(clients, iparams(inventory), check_mode=False)
    assert applied.changed
    now = state(clients, inventory)
    assert now["security_groups"] == [inventory.quarantine_security_group]
    assert now["subnets"] == original["subnets"]
    assert now["targets"] == []
    assert now["desired_count"] == original["desired_count"] == 4  # tasks kept for forensics
    assert now["task_definition"] == original["task_definition"]
    assert now["record"][security.ISOLATE_TAG] == f"{INCIDENT} deregister peoplebooster-backend-tg"
    assert now["record"][security.ISOLATE_SGS_TAG] == inventory.app_security_group
    assert sorted(now["record"][f"{security.ISOLATE_TARGETS_TAG}0"].split()) == original["targets"]
    assert applied.after["desired_count"] == 4 and applied.after["targets"] == []
    assert state(clients, inventory, "frontend") == frontend  # the other service is untouched

    again = security.isolate_service(clients, iparams(inventory), check_mode=False)
    assert not again.changed and "already isolated" in again.message and again.details[DONE_EARLIER]
    assert state(clients, inventory) == now  # the record still holds the ORIGINAL groups

    restore_params = {k: v for k, v in iparams(inventory).items() if k not in ("confirm", "method")}
    check_restore = security.restore_service(clients, restore_params, check_mode=True)
    assert check_restore.changed and "would restore" in check_restore.message
    assert state(clients, inventory) == now

    restored = security.restore_service(clients, restore_params, check_mode=False)
    assert restored.changed
    back = state(clients, inventory)
    assert back["security_groups"] == [inventory.app_security_group]
    assert back["targets"] == original["targets"]
    assert back["record"] == {} and back["desired_count"] == 4

    again_restore = security.restore_service(clients, restore_params, check_mode=False)
    assert not again_restore.changed and "not isolated" in again_restore.message


def test_isolate_with_a_503_listener_rule_then_restore(clients, inventory: Inventory) -> None:
    original = state(clients, inventory)
    p = iparams(inventory, method="listener_rule")

    check = security.isolate_service(clients, p, check_mode=True)
    assert check.changed and "add 1 503 listener rule(s)" in check.message
    assert state(clients, inventory) == original

    applied = security.isolate_service(clients, p, check_mode=False)
    assert applied.changed
    now = state(clients, inventory)
    assert now["security_groups"] == [inventory.quarantine_security_group]
    assert now["targets"] == original["targets"]  # still registered: the rule answers in front of them
    assert now["desired_count"] == 4
    rules = clients.elbv2.describe_rules(ListenerArn=inventory.listener_arn)["Rules"]
    rule = next(r for r in rules if r["Actions"][0]["Type"] == "fixed-response")
    forward = next(r for r in rules if r["Priority"] == "10")
    assert rule["Priority"] == "9"  # just in front of the backend's forwarding rule
    assert rule["Conditions"][0]["Field"] == "host-header"
    assert rule["Conditions"][0]["Values"] == forward["Conditions"][0]["Values"]
    assert rule["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "503"
    tags = clients.elbv2.describe_tags(ResourceArns=[rule["RuleArn"]])["TagDescriptions"][0]["Tags"]
    assert {"Key": security.ISOLATE_TAG, "Value": f"{inventory.cluster}/peoplebooster-backend"} in tags

    again = security.isolate_service(clients, p, check_mode=False)
    assert not again.changed
    assert state(clients, inventory) == now

    restore_params = {k: v for k, v in p.items() if k not in ("confirm", "method")}
    restored = security.restore_service(clients, restore_params, check_mode=False)
    assert restored.changed and "delete 1 503 listener rule(s)" in restored.message
    assert state(clients, inventory) == original
    assert not security.restore_service(clients, restore_params, check_mode=False).changed


def test_listener_rule_for_the_default_action(clients, inventory: Inventory) -> None:
    p = iparams(inventory, "frontend", method="listener_rule")
    security.isolate_service(clients, p, check_mode=False)
    rules = clients.elbv2.describe_rules(ListenerArn=inventory.listener_arn)["Rules"]
    rule = next(r for r in rules if r["Actions"][0]["Type"] == "fixed-response")
    assert rule["Priority"] == "50000"  # behind every other rule: only what fell through to the default
    assert rule["Conditions"][0]["Values"] == ["/*"]
    assert state(clients, inventory)["security_groups"] == [inventory.app_security_group]  # backend untouched


def test_isolate_needs_the_quarantine_group(clients, inventory: Inventory) -> None:
    original = state(clients, inventory)
    p = iparams(inventory, quarantine_security_group="no-such-group")
    with pytest.raises(ActionError, match="quarantine security group 'no-such-group' does not exist in vpc-"):
        security.isolate_service(clients, p, check_mode=False)
    assert state(clients, inventory) == original


def test_isolate_refuses_another_services_target_group(clients, inventory: Inventory) -> None:
    original = state(clients, inventory, "frontend")
    p = iparams(inventory, target_group="peoplebooster-frontend-tg")
    with pytest.raises(GuardRailError, match="not attached to service peoplebooster-backend"):
        security.isolate_service(clients, p, check_mode=False)
    assert state(clients, inventory, "frontend") == original


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"confirm": False}, "destructive and needs confirm=True"),
        ({"allow_remediation": False}, "remediation is not allowed in production"),
    ],
)
def test_isolate_guard_rails(clients, inventory: Inventory, extra: dict, message: str) -> None:
    original = state(clients, inventory)
    with pytest.raises(GuardRailError, match=message):
        security.isolate_service(clients, iparams(inventory, **extra), check_mode=False)
    assert state(clients, inventory) == original


def test_isolate_rejects_an_unknown_method(clients, inventory: Inventory) -> None:
    with pytest.raises(ActionError, match="method must be one of"):
        security.isolate_service(clients, iparams(inventory, method="unplug"), check_mode=True)


def test_restore_without_a_record_of_the_original_groups(clients, inventory: Inventory) -> None:
    svc = inventory.service("backend")
    clients.ecs.update_service(cluster=inventory.cluster, service=svc.name, networkConfiguration={
        "awsvpcConfiguration": {"subnets": inventory.subnets, "securityGroups": [inventory.quarantine_security_group]}})
    p = {k: v for k, v in iparams(inventory).items() if k not in ("confirm", "method")}
    with pytest.raises(ActionError, match="no record of its original security groups"):
        security.restore_service(clients, p, check_mode=False)


def test_target_record_is_chunked_into_tag_sized_values() -> None:
    targets = [f"10.0.{i // 250}.{i % 250}:8080" for i in range(40)]
    tags = security._target_tags(targets)
    assert len(tags) > 1 and all(len(v) <= 256 for v in tags.values())
    assert security._recorded_targets(tags) == targets
