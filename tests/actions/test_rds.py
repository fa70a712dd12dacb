"""RDS modules against moto: failover (Aurora and Multi-AZ) and snapshot restore into a new database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from incident_ops.actions import rds as rds_actions
from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError

from .conftest import INCIDENT
from .inventory import Inventory

WRITE_PREFIXES = ("Modify", "Delete", "Reboot", "Failover", "Stop", "Promote", "AddTags", "RemoveTags")


def fparams(inv: Inventory, **extra: Any) -> dict[str, Any]:
    return {"cluster_id": inv.db_cluster_id, "instance_id": inv.db_writer, "incident_id": INCIDENT,
            "allow_remediation": True, "confirm": True, "environment": "production", **extra}


def writer(rds, cluster_id: str) -> str:
    members = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]["DBClusterMembers"]
    return next(m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"])


def cluster_tags(rds, cluster_id: str) -> dict[str, str]:
    arn = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]["DBClusterArn"]
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


@pytest.fixture
def rds_calls(rds) -> Iterator[list[str]]:
    """Names of the RDS operations called from now on (the client serves later tests too: unregistered after)."""
    calls: list[str] = []
    rds.meta.events.register("before-call.rds", lambda model, **_: calls.append(model.name), unique_id="rds_calls")
    yield calls
    rds.meta.events.unregister("before-call.rds", unique_id="rds_calls")


# --- Aurora failover ------------------------------------------------------------------------------


def test_failover_check_apply_again(rds, inventory: Inventory, rds_calls: list[str]) -> None:
    assert writer(rds, inventory.db_cluster_id) == inventory.db_writer

    check = rds_actions.failover(rds, fparams(inventory, confirm=False), check_mode=True)
    assert check.changed
    # Same instance class as the writer beats the better promotion tier of the bigger reader.
    assert check.message == (f"would fail over {inventory.db_cluster_id} from {inventory.db_writer} "
                             f"to {inventory.db_readers[0]}")
    assert writer(rds, inventory.db_cluster_id) == inventory.db_writer
    assert rds_actions.FAILOVER_TAG not in cluster_tags(rds, inventory.db_cluster_id)
    assert not [c for c in rds_calls if c.startswith(WRITE_PREFIXES)]

    applied = rds_actions.failover(rds, fparams(inventory), check_mode=False)
    assert applied.changed
    assert applied.before["writer"] == inventory.db_writer and applied.after["writer"] == inventory.db_readers[0]
    assert writer(rds, inventory.db_cluster_id) == inventory.db_readers[0]
    assert cluster_tags(rds, inventory.db_cluster_id)[rds_actions.FAILOVER_TAG] == (
        f"{INCIDENT} {inventory.db_writer} {inventory.db_readers[0]}")

    again = rds_actions.failover(rds, fparams(inventory), check_mode=False)
    assert not again.changed and "already failed over for incident" in again.message
    assert again.details[DONE_EARLIER]
    assert writer(rds, inventory.db_cluster_id) == inventory.db_readers[0]


def test_failover_from_writer_makes_it_idempotent_without_a_record(rds, inventory: Inventory) -> None:
    rds.failover_db_cluster(DBClusterIdentifier=inventory.db_cluster_id,
                            TargetDBInstanceIdentifier=inventory.db_readers[1])  # someone else did it
    result = rds_actions.failover(rds, fparams(inventory, from_writer=inventory.db_writer), check_mode=False)
    assert not result.changed and "writer is already" in result.message
    assert DONE_EARLIER not in result.details  # someone else's failover is not this incident's change
    assert writer(rds, inventory.db_cluster_id) == inventory.db_readers[1]


def test_failover_to_a_named_target(rds, inventory: Inventory) -> None:
    result = rds_actions.failover(rds, fparams(inventory, target_instance=inventory.db_readers[1]), check_mode=False)
    assert result.changed and writer(rds, inventory.db_cluster_id) == inventory.db_readers[1]
    with pytest.raises(ActionError, match="not a member"):
        rds_actions.failover(rds, fparams(inventory, incident_id="INC-2", target_instance="other-db"), check_mode=True)


def test_failover_guard_rails(rds, inventory: Inventory, rds_calls: list[str]) -> None:
    with pytest.raises(GuardRailError, match="destructive and needs confirm=True"):
        rds_actions.failover(rds, fparams(inventory, confirm=False), check_mode=False)
    with pytest.raises(GuardRailError, match="remediation is not allowed"):
        rds_actions.failover(rds, fparams(inventory, allow_remediation=False), check_mode=False)
    assert rds_calls == []
    assert writer(rds, inventory.db_cluster_id) == inventory.db_writer


# --- Multi-AZ instance failover -------------------------------------------------------------------


def make_instance(rds, ident: str = "legacy-db", multi_az: bool = True) -> str:
    rds.create_db_instance(DBInstanceIdentifier=ident, Engine="postgres", DBInstanceClass="db.m6g.large",
                           AllocatedStorage=20, MasterUsername="u", MasterUserPassword="not-a-real-password",
                           MultiAZ=multi_az)
    return ident


def instance_tags(rds, ident: str) -> dict[str, str]:
    arn = rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]["DBInstanceArn"]
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


def test_multi_az_instance_failover_once_per_incident(rds, inventory: Inventory, rds_calls: list[str]) -> None:
    ident = make_instance(rds)
    p = {"instance_id": ident, "incident_id": INCIDENT, "allow_remediation": True, "confirm": True}
    rds_calls.clear()

    check = rds_actions.failover(rds, p, check_mode=True)
    assert check.changed and "would reboot legacy-db with ForceFailover" in check.message
    assert "RebootDBInstance" not in rds_calls and rds_actions.FAILOVER_TAG not in instance_tags(rds, ident)

    applied = rds_actions.failover(rds, p, check_mode=False)
    assert applied.changed and rds_calls.count("RebootDBInstance") == 1
    assert instance_tags(rds, ident)[rds_actions.FAILOVER_TAG] == INCIDENT

    again = rds_actions.failover(rds, p, check_mode=False)
    assert not again.changed and rds_calls.count("RebootDBInstance") == 1


def test_single_az_instance_cannot_fail_over(rds, inventory: Inventory) -> None:
    ident = make_instance(rds, "single-db", multi_az=False)
    with pytest.raises(ActionError, match="not Multi-AZ"):
        rds_actions.failover(rds, {"instance_id": ident, "incident_id": INCIDENT, "allow_remediation": True,
                                   "confirm": True}, check_mode=False)


# --- snapshot restore -----------------------------------------------------------------------------


def rparams(inv: Inventory, **extra: Any) -> dict[str, Any]:
    return {"cluster_id": inv.db_cluster_id, "instance_id": inv.db_writer, "snapshot": "latest",
            "restore_instance_class": "db.r6g.large", "incident_id": INCIDENT, "allow_remediation": True,
            "confirm": True, "timeout_seconds": 60, "poll_seconds": 5}


def source_state(rds, inv: Inventory) -> dict[str, Any]:
    cluster = rds.describe_db_clusters(DBClusterIdentifier=inv.db_cluster_id)["DBClusters"][0]
    instances = rds.describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": [inv.db_cluster_id]}])
    return {
        "members": cluster["DBClusterMembers"],
        "status": cluster["Status"],
        "endpoint": cluster.get("Endpoint"),
        "instances": sorted((i["DBInstanceIdentifier"], i["DBInstanceClass"], i["DBInstanceStatus"])
                            for i in instances["DBInstances"]),
        "tags": cluster_tags(rds, inv.db_cluster_id),
    }


def exists(rds, cluster_id: str) -> bool:
    try:
        rds.describe_db_clusters(DBClusterIdentifier=cluster_id)
    except rds.exceptions.DBClusterNotFoundFault:
        return False
    return True


def test_restore_identifier() -> None:
    assert rds_actions.restore_identifier("peoplebooster-production-db-1", "INC-20260105-001") == (
        "peoplebooster-production-db-1-restore-inc-20260105-001")
    long = rds_actions.restore_identifier("peoplebooster-production-db-1", "INC-2026-01-05T10:00:00+09:00/backend")
    assert len(long) <= 63 and long.startswith("peoplebooster-production-db-1-restore-") and "--" not in long
    assert long == rds_actions.restore_identifier("peoplebooster-production-db-1", "INC-2026-01-05T10:00:00+09:00/backend")
    assert len(rds_actions.restore_identifier("x" * 63, "INC-1")) <= 63


def test_restore_cluster_check_apply_again(rds, inventory: Inventory, rds_calls: list[str], sleeps) -> None:
    new_cluster = f"{inventory.db_cluster_id}-restore-inc-20260105-001"
    new_instance = f"{inventory.db_writer}-restore-inc-20260105-001"
    original = source_state(rds, inventory)

    check = rds_actions.restore_snapshot(rds, {**rparams(inventory), "confirm": False}, check_mode=True)
    assert check.changed and check.details["snapshot"] == inventory.db_snapshot  # the newest (manual) snapshot
    assert check.message.startswith(f"would restore snapshot {inventory.db_snapshot} into new cluster {new_cluster}")
    assert not exists(rds, new_cluster)

    applied = rds_actions.restore_snapshot(rds, rparams(inventory), check_mode=False, sleep=sleeps.append)
    assert applied.changed and applied.after == {"cluster": new_cluster, "instance": new_instance}
    restored = rds.describe_db_clusters(DBClusterIdentifier=new_cluster)["DBClusters"][0]
    assert restored["Status"] == "available"
    assert [m["DBInstanceIdentifier"] for m in restored["DBClusterMembers"]] == [new_instance]
    inst = rds.describe_db_instances(DBInstanceIdentifier=new_instance)["DBInstances"][0]
    assert inst["DBInstanceClass"] == "db.r6g.large" and inst["DBInstanceStatus"] == "available"

    again = rds_actions.restore_snapshot(rds, rparams(inventory), check_mode=False, sleep=sleeps.append)
    assert not again.changed and "already restored" in again.message and again.details[DONE_EARLIER]

    # The existing database was only read: no modify/delete/reboot/failover/tag call, state unchanged.
    assert not [c for c in rds_calls if c.startswith(WRITE_PREFIXES)]
    assert {c for c in rds_calls if not c.startswith("Describe") and c != "ListTagsForResource"} == {
        "RestoreDBClusterFromSnapshot", "CreateDBInstance"}
    assert source_state(rds, inventory) == original


def test_restore_a_named_snapshot(rds, inventory: Inventory) -> None:
    snaps = rds.describe_db_cluster_snapshots(DBClusterIdentifier=inventory.db_cluster_id,
                                              SnapshotType="automated")["DBClusterSnapshots"]
    name = snaps[0]["DBClusterSnapshotIdentifier"]
    result = rds_actions.restore_snapshot(rds, {**rparams(inventory), "snapshot": name}, check_mode=True)
    assert result.details["snapshot"] == name
    with pytest.raises(ActionError, match="not found"):
        rds_actions.restore_snapshot(rds, {**rparams(inventory), "snapshot": "nope"}, check_mode=True)


def test_restore_guard_rails(rds, inventory: Inventory, rds_calls: list[str]) -> None:
    with pytest.raises(GuardRailError, match="confirm=True"):
        rds_actions.restore_snapshot(rds, {**rparams(inventory), "confirm": False}, check_mode=False)
    with pytest.raises(GuardRailError, match="remediation is not allowed"):
        rds_actions.restore_snapshot(rds, {**rparams(inventory), "allow_remediation": False}, check_mode=False)
    assert rds_calls == []


class StuckCreating:
    """An RDS client on which the restored cluster never becomes available."""

    def __init__(self, rds, stuck: str) -> None:
        self._rds, self._stuck = rds, stuck

    def __getattr__(self, name: str):
        return getattr(self._rds, name)

    def describe_db_clusters(self, **kwargs):
        answer = self._rds.describe_db_clusters(**kwargs)
        for cluster in answer["DBClusters"]:
            if cluster["DBClusterIdentifier"] == self._stuck:
                cluster["Status"] = "creating"
        return answer


def test_restore_waits_and_times_out(rds, inventory: Inventory, sleeps) -> None:
    new_cluster = f"{inventory.db_cluster_id}-restore-inc-20260105-001"
    with pytest.raises(ActionError, match="still 'creating' after 60s"):
        rds_actions.restore_snapshot(StuckCreating(rds, new_cluster), rparams(inventory), check_mode=False,
                                     sleep=sleeps.append)
    assert sleeps == [5.0] * 12


def test_restore_instance_snapshot(rds, inventory: Inventory, sleeps) -> None:
    ident = make_instance(rds)
    rds.create_db_snapshot(DBInstanceIdentifier=ident, DBSnapshotIdentifier="legacy-db-before-release")
    p = {"instance_id": ident, "incident_id": INCIDENT, "allow_remediation": True, "confirm": True}

    check = rds_actions.restore_snapshot(rds, p, check_mode=True)
    assert check.changed and check.details["snapshot"] == "legacy-db-before-release"
    with pytest.raises(rds.exceptions.DBInstanceNotFoundFault):
        rds.describe_db_instances(DBInstanceIdentifier="legacy-db-restore-inc-20260105-001")

    applied = rds_actions.restore_snapshot(rds, p, check_mode=False, sleep=sleeps.append)
    assert applied.changed
    restored = rds.describe_db_instances(DBInstanceIdentifier="legacy-db-restore-inc-20260105-001")["DBInstances"][0]
    assert restored["DBInstanceStatus"] == "available"
    assert rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]["DBInstanceStatus"] == "available"

    again = rds_actions.restore_snapshot(rds, p, check_mode=False, sleep=sleeps.append)
    assert not again.changed
