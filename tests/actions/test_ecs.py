"""ECS modules against moto: check mode writes nothing, apply changes, a second apply is a no-op."""

from __future__ import annotations

from typing import Any

import pytest

from incident_ops.actions import ecs as ecs_actions
from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError

from .conftest import INCIDENT
from .inventory import Inventory


def params(inv: Inventory, key: str = "backend", **extra: Any) -> dict[str, Any]:
    return {
        "cluster": inv.cluster,
        "service": inv.service(key).name,
        "incident_id": INCIDENT,
        "allow_remediation": True,
        "environment": "production",
        **extra,
    }


def service(ecs, inv: Inventory, key: str = "backend") -> dict[str, Any]:
    return ecs.describe_services(cluster=inv.cluster, services=[inv.service(key).name])["services"][0]


def tags(ecs, inv: Inventory, key: str = "backend") -> dict[str, str]:
    answer = ecs.list_tags_for_resource(resourceArn=inv.service(key).arn)["tags"]
    return {t["key"]: t["value"] for t in answer}


def revisions(ecs, family: str) -> list[str]:
    return ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


# --- scale out ------------------------------------------------------------------------------------


def scale_params(inv: Inventory, desired: int, **extra: Any) -> dict[str, Any]:
    return params(inv, desired_count=desired, max_desired_count=20, min_desired_count=4, **extra)


def test_scale_out_check_apply_again(ecs, inventory: Inventory) -> None:
    assert service(ecs, inventory)["desiredCount"] == 4

    check = ecs_actions.scale_out(ecs, scale_params(inventory, 10), check_mode=True)
    assert check.changed and check.check_mode
    assert check.message.startswith("would scale out peoplebooster-backend from 4 to 10")
    assert service(ecs, inventory)["desiredCount"] == 4

    applied = ecs_actions.scale_out(ecs, scale_params(inventory, 10), check_mode=False)
    assert applied.changed and not applied.check_mode
    assert applied.before["desired_count"] == 4 and applied.after["desired_count"] == 10
    assert service(ecs, inventory)["desiredCount"] == 10
    assert service(ecs, inventory)["runningCount"] == 10  # moto: running follows desired after an update

    assert tags(ecs, inventory)[ecs_actions.SCALE_OUT_TAG] == f"{INCIDENT} 4 10"

    # Applied again (a retry after a killed try): nothing to do, and it says this incident did it.
    again = ecs_actions.scale_out(ecs, scale_params(inventory, 10), check_mode=False)
    assert not again.changed
    assert "already 10" in again.message
    assert again.details[DONE_EARLIER] is True

    # Another incident finding the service at its target did nothing itself.
    other = ecs_actions.scale_out(ecs, scale_params(inventory, 10, incident_id="INC-20260105-002"), check_mode=False)
    assert not other.changed and DONE_EARLIER not in other.details


def test_scale_out_already_at_target_is_not_claimed(ecs, inventory: Inventory) -> None:
    # The service already runs the target count before the incident: no record, not "done earlier".
    result = ecs_actions.scale_out(ecs, scale_params(inventory, 4), check_mode=False)
    assert not result.changed and DONE_EARLIER not in result.details
    assert ecs_actions.SCALE_OUT_TAG not in tags(ecs, inventory)


def test_scale_out_refuses_above_the_cap(ecs, inventory: Inventory) -> None:
    with pytest.raises(GuardRailError, match="above the cap max_desired_count=20"):
        ecs_actions.scale_out(ecs, scale_params(inventory, 21), check_mode=False)
    with pytest.raises(GuardRailError, match="above the cap"):
        ecs_actions.scale_out(ecs, scale_params(inventory, 21), check_mode=True)
    assert service(ecs, inventory)["desiredCount"] == 4


def test_scale_out_needs_a_cap(ecs, inventory: Inventory) -> None:
    with pytest.raises(GuardRailError, match="no max_desired_count cap"):
        ecs_actions.scale_out(ecs, params(inventory, desired_count=5), check_mode=False)
    assert service(ecs, inventory)["desiredCount"] == 4


def test_scale_out_never_scales_down_unless_allowed(ecs, inventory: Inventory) -> None:
    ecs_actions.scale_out(ecs, scale_params(inventory, 10), check_mode=False)

    lower = ecs_actions.scale_out(ecs, scale_params(inventory, 6), check_mode=False)
    assert not lower.changed
    assert "not scaling down" in lower.message
    assert service(ecs, inventory)["desiredCount"] == 10

    with pytest.raises(GuardRailError, match="below min_desired_count=4"):
        ecs_actions.scale_out(ecs, scale_params(inventory, 2, allow_scale_down=True), check_mode=False)
    assert service(ecs, inventory)["desiredCount"] == 10

    down = ecs_actions.scale_out(ecs, scale_params(inventory, 6, allow_scale_down=True), check_mode=False)
    assert down.changed and down.message.startswith("scale down")
    assert service(ecs, inventory)["desiredCount"] == 6


def test_scale_out_refused_where_remediation_is_not_allowed(ecs, inventory: Inventory) -> None:
    p = scale_params(inventory, 10, allow_remediation=False, environment="staging")
    with pytest.raises(GuardRailError, match="remediation is not allowed in staging"):
        ecs_actions.scale_out(ecs, p, check_mode=False)
    assert service(ecs, inventory)["desiredCount"] == 4
    assert ecs_actions.scale_out(ecs, p, check_mode=True).changed  # check mode still reports


def test_scale_out_unknown_service(ecs, inventory: Inventory) -> None:
    p = scale_params(inventory, 10)
    p["service"] = "nope"
    with pytest.raises(ActionError, match="'nope' in cluster 'peoplebooster-production' not found"):
        ecs_actions.scale_out(ecs, p, check_mode=True)


# --- scale up -------------------------------------------------------------------------------------


def up_params(inv: Inventory, **extra: Any) -> dict[str, Any]:
    return params(inv, cpu=2048, memory=4096, **extra)


def test_scale_up_check_apply_again(ecs, inventory: Inventory) -> None:
    svc = inventory.service("backend")
    current = svc.task_definitions[-1]

    check = ecs_actions.scale_up(ecs, up_params(inventory), check_mode=True)
    assert check.changed and "would register a copy of peoplebooster-backend:2" in check.message
    assert len(revisions(ecs, svc.family)) == 2
    assert service(ecs, inventory)["taskDefinition"] == current

    applied = ecs_actions.scale_up(ecs, up_params(inventory), check_mode=False)
    assert applied.changed
    assert applied.before == {"task_definition": current, "cpu": 512, "memory": 1024}
    new_arn = applied.after["task_definition"]
    assert new_arn.endswith("peoplebooster-backend:3")
    assert service(ecs, inventory)["taskDefinition"] == new_arn

    old = ecs.describe_task_definition(taskDefinition=current)["taskDefinition"]
    new = ecs.describe_task_definition(taskDefinition=new_arn, include=["TAGS"])
    td = new["taskDefinition"]
    assert (td["cpu"], td["memory"]) == ("2048", "4096")
    for key in ("containerDefinitions", "taskRoleArn", "executionRoleArn", "networkMode",
                "requiresCompatibilities", "runtimePlatform", "family"):
        assert td[key] == old[key], key
    assert len(td["containerDefinitions"]) == 2
    new_tags = {t["key"]: t["value"] for t in new["tags"]}
    assert new_tags["version"] == "v1.5.0"  # the original's tags are kept
    assert new_tags[ecs_actions.SCALE_UP_TAG] == f"{INCIDENT} {current}"

    again = ecs_actions.scale_up(ecs, up_params(inventory), check_mode=False)
    assert not again.changed and "already has cpu 2048 / memory 4096" in again.message
    assert again.details[DONE_EARLIER]  # the revision carries this incident's record
    assert len(revisions(ecs, svc.family)) == 3


def test_scale_up_never_lowers_either_value(ecs, inventory: Inventory) -> None:
    applied = ecs_actions.scale_up(ecs, params(inventory, cpu=256, memory=2048), check_mode=False)
    assert applied.after["cpu"] == 512 and applied.after["memory"] == 2048
    nothing = ecs_actions.scale_up(ecs, params(inventory, cpu=256, memory=512), check_mode=False)
    assert not nothing.changed


class FailingUpdateOnce:
    """An ECS client whose first update_service fails (a crash between register and update)."""

    def __init__(self, ecs) -> None:
        self._ecs = ecs
        self.failed = False

    def __getattr__(self, name: str):
        return getattr(self._ecs, name)

    def update_service(self, **kwargs):
        if not self.failed:
            self.failed = True
            raise RuntimeError("connection reset")
        return self._ecs.update_service(**kwargs)


def test_scale_up_retry_reuses_the_registered_revision(ecs, inventory: Inventory) -> None:
    flaky = FailingUpdateOnce(ecs)
    with pytest.raises(RuntimeError):
        ecs_actions.scale_up(flaky, up_params(inventory), check_mode=False)
    assert len(revisions(ecs, "peoplebooster-backend")) == 3
    retried = ecs_actions.scale_up(flaky, up_params(inventory), check_mode=False)
    assert retried.changed and retried.after["task_definition"].endswith(":3")
    assert len(revisions(ecs, "peoplebooster-backend")) == 3


def test_scale_up_refused_where_remediation_is_not_allowed(ecs, inventory: Inventory) -> None:
    with pytest.raises(GuardRailError):
        ecs_actions.scale_up(ecs, up_params(inventory, allow_remediation=False), check_mode=False)
    assert len(revisions(ecs, "peoplebooster-backend")) == 2


# --- rollback -------------------------------------------------------------------------------------


def test_rollback_check_apply_again(ecs, inventory: Inventory) -> None:
    rev1, rev2 = inventory.service("backend").task_definitions

    check = ecs_actions.rollback(ecs, params(inventory), check_mode=True)
    assert check.changed
    assert check.message == "would roll back peoplebooster-backend from peoplebooster-backend:2 to peoplebooster-backend:1"
    assert service(ecs, inventory)["taskDefinition"] == rev2
    assert ecs_actions.ROLLBACK_TAG not in tags(ecs, inventory)

    applied = ecs_actions.rollback(ecs, params(inventory), check_mode=False)
    assert applied.changed and applied.before == {"task_definition": rev2} and applied.after == {"task_definition": rev1}
    assert service(ecs, inventory)["taskDefinition"] == rev1
    assert tags(ecs, inventory)[ecs_actions.ROLLBACK_TAG] == f"{INCIDENT} {rev2} {rev1}"

    again = ecs_actions.rollback(ecs, params(inventory), check_mode=False)
    assert not again.changed and "already rolled back" in again.message
    assert again.details[DONE_EARLIER]  # rolled back by this incident (its tag), e.g. by a killed try
    assert service(ecs, inventory)["taskDefinition"] == rev1


def test_rollback_does_not_walk_back_further_on_retries(ecs, inventory: Inventory) -> None:
    svc = inventory.service("backend")
    for _ in range(3):
        ecs.register_task_definition(family=svc.family, containerDefinitions=[{"name": "app", "image": "x", "memory": 512}])
    ecs.update_service(cluster=inventory.cluster, service=svc.name, taskDefinition=f"{svc.family}:5")
    results = [ecs_actions.rollback(ecs, params(inventory), check_mode=False) for _ in range(3)]
    assert [r.changed for r in results] == [True, False, False]
    assert service(ecs, inventory)["taskDefinition"].endswith(f"{svc.family}:4")


def test_rollback_finishes_a_recorded_but_unapplied_rollback(ecs, inventory: Inventory) -> None:
    rev1, rev2 = inventory.service("backend").task_definitions
    ecs.tag_resource(resourceArn=inventory.service("backend").arn,
                     tags=[{"key": ecs_actions.ROLLBACK_TAG, "value": f"{INCIDENT} {rev2} {rev1}"}])
    result = ecs_actions.rollback(ecs, params(inventory), check_mode=False)
    assert result.changed and service(ecs, inventory)["taskDefinition"] == rev1


def test_rollback_with_from_task_definition(ecs, inventory: Inventory) -> None:
    rev1, rev2 = inventory.service("backend").task_definitions
    p = params(inventory, from_task_definition="peoplebooster-backend:2")
    assert ecs_actions.rollback(ecs, p, check_mode=False).changed
    # A later run without the tag record (another incident id) but with the same starting revision.
    other = {**p, "incident_id": "INC-20260105-002"}
    result = ecs_actions.rollback(ecs, other, check_mode=False)
    assert not result.changed and "not peoplebooster-backend:2" in result.message
    assert service(ecs, inventory)["taskDefinition"] == rev1


def test_rollback_to_a_named_target(ecs, inventory: Inventory) -> None:
    svc = inventory.service("backend")
    ecs.register_task_definition(family=svc.family, containerDefinitions=[{"name": "app", "image": "x", "memory": 512}])
    ecs.update_service(cluster=inventory.cluster, service=svc.name, taskDefinition=f"{svc.family}:3")
    result = ecs_actions.rollback(ecs, params(inventory, target_task_definition=f"{svc.family}:1"), check_mode=False)
    assert result.after == {"task_definition": svc.task_definitions[0]}
    with pytest.raises(GuardRailError, match="not of the service's family"):
        ecs_actions.rollback(ecs, params(inventory, incident_id="INC-2", target_task_definition="peoplebooster-frontend:1"),
                             check_mode=False)
    assert service(ecs, inventory)["taskDefinition"] == svc.task_definitions[0]
    with pytest.raises(ActionError, match="task definition 'peoplebooster-backend:99' not found"):
        ecs_actions.rollback(ecs, params(inventory, incident_id="INC-3", target_task_definition=f"{svc.family}:99"),
                             check_mode=True)


def test_rollback_without_a_previous_revision(ecs, inventory: Inventory) -> None:
    ecs_actions.rollback(ecs, params(inventory), check_mode=False)
    with pytest.raises(ActionError, match="no ACTIVE revision of peoplebooster-backend below 1"):
        ecs_actions.rollback(ecs, params(inventory, incident_id="INC-20260106-001"), check_mode=False)


def test_rollback_skips_inactive_revisions(ecs, inventory: Inventory) -> None:
    svc = inventory.service("backend")
    ecs.register_task_definition(family=svc.family, containerDefinitions=[{"name": "app", "image": "x", "memory": 512}])
    ecs.update_service(cluster=inventory.cluster, service=svc.name, taskDefinition=f"{svc.family}:3")
    ecs.deregister_task_definition(taskDefinition=f"{svc.family}:2")
    result = ecs_actions.rollback(ecs, params(inventory), check_mode=True)
    assert result.after == {"task_definition": svc.task_definitions[0]}


def test_rollback_refused_where_remediation_is_not_allowed(ecs, inventory: Inventory) -> None:
    with pytest.raises(GuardRailError):
        ecs_actions.rollback(ecs, params(inventory, allow_remediation=False), check_mode=False)
    assert service(ecs, inventory)["taskDefinition"] == inventory.service("backend").task_definitions[-1]
    assert ecs_actions.ROLLBACK_TAG not in tags(ecs, inventory)


def test_rollback_needs_a_tag_safe_incident_id(ecs, inventory: Inventory) -> None:
    with pytest.raises(ActionError, match="incident_id"):
        ecs_actions.rollback(ecs, params(inventory, incident_id="INC 1,2"), check_mode=True)


# --- force deployment -----------------------------------------------------------------------------


def test_force_deployment_once_per_incident(ecs, inventory: Inventory) -> None:
    first_id = service(ecs, inventory)["deployments"][0]["id"]

    check = ecs_actions.force_deployment(ecs, params(inventory), check_mode=True)
    assert check.changed and check.message.startswith("would force a new deployment")
    assert service(ecs, inventory)["deployments"][0]["id"] == first_id
    assert ecs_actions.FORCE_DEPLOYMENT_TAG not in tags(ecs, inventory)

    applied = ecs_actions.force_deployment(ecs, params(inventory), check_mode=False)
    assert applied.changed
    second_id = service(ecs, inventory)["deployments"][0]["id"]
    assert second_id != first_id and applied.after["deployment"] == second_id
    assert tags(ecs, inventory)[ecs_actions.FORCE_DEPLOYMENT_TAG] == INCIDENT

    again = ecs_actions.force_deployment(ecs, params(inventory), check_mode=False)
    assert not again.changed and again.details[DONE_EARLIER]
    assert service(ecs, inventory)["deployments"][0]["id"] == second_id

    other = ecs_actions.force_deployment(ecs, params(inventory, incident_id="INC-20260105-002"), check_mode=False)
    assert other.changed


def test_force_deployment_refused_where_remediation_is_not_allowed(ecs, inventory: Inventory) -> None:
    first_id = service(ecs, inventory)["deployments"][0]["id"]
    with pytest.raises(GuardRailError):
        ecs_actions.force_deployment(ecs, params(inventory, allow_remediation=False), check_mode=False)
    assert service(ecs, inventory)["deployments"][0]["id"] == first_id
