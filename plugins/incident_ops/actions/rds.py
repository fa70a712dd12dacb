"""RDS modules: fail over the writer, restore a snapshot into a new database.

Neither ever modifies or deletes the existing database: failover uses FailoverDBCluster (Aurora) or
a forced-failover reboot (Multi-AZ instance); the restore creates a new cluster/instance beside it.

The restore's write and its wait (up to 30 minutes) are split: `start_restore` starts it (or finds it
started) and names what to wait for in `details[WAIT_FOR]`; `restore_progress` reads the new
cluster/instance once; `finish_restore` turns the wait's outcome into the step's result.
`restore_snapshot` is all three with a synchronous wait (the break-glass command line); Airflow waits
in the triggerer instead (`incident_ops.triggers.rds.RdsRestoreTrigger`), holding no worker slot.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from incident_ops.actions import incident_token, require_confirm, require_param, require_remediation
from incident_ops.actions.base import DONE_EARLIER, ActionError, Result

__all__ = [
    "FAILOVER_TAG",
    "RESTORE_TAG",
    "WAIT_FOR",
    "failover",
    "finish_restore",
    "restore_identifier",
    "restore_progress",
    "restore_snapshot",
    "start_restore",
    "timed_out",
    "wait_restore",
]

FAILOVER_TAG = "incident-ops:failover"
RESTORE_TAG = "incident-ops:restore"

# Result.details key of a started restore still to be waited for (removed by finish_restore).
WAIT_FOR = "wait_for"
# Statuses of the new cluster/instance that end the restore as failed.
RESTORE_FAILED = ("failed", "incompatible-restore", "incompatible-parameters", "deleting")

_NOT_FOUND = {"DBClusterNotFoundFault", "DBInstanceNotFound", "DBInstanceNotFoundFault"}


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _cluster(rds: Any, cluster_id: str) -> dict[str, Any] | None:
    try:
        return rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
    except ClientError as exc:
        if _error_code(exc) in _NOT_FOUND:
            return None
        raise


def _instance(rds: Any, instance_id: str) -> dict[str, Any] | None:
    try:
        return rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
    except ClientError as exc:
        if _error_code(exc) in _NOT_FOUND:
            return None
        raise


def _tags(rds: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn).get("TagList", [])}


def _writer(cluster: dict[str, Any]) -> str | None:
    for member in cluster.get("DBClusterMembers", []):
        if member.get("IsClusterWriter"):
            return member["DBInstanceIdentifier"]
    return None


# --- failover -------------------------------------------------------------------------------------


def _best_reader(rds: Any, cluster: dict[str, Any], writer: str | None) -> dict[str, Any]:
    """Available reader; same instance class as the writer first, then the lowest promotion tier."""
    members = {m["DBInstanceIdentifier"]: m for m in cluster.get("DBClusterMembers", [])}
    instances = {i: _instance(rds, i) for i in members}
    writer_class = (instances.get(writer) or {}).get("DBInstanceClass") if writer else None
    readers = [
        inst for ident, inst in instances.items()
        if inst and ident != writer and inst.get("DBInstanceStatus") == "available"
    ]
    if not readers:
        raise ActionError(f"cluster {cluster['DBClusterIdentifier']} has no available reader to fail over to")
    readers.sort(key=lambda i: (
        i.get("DBInstanceClass") != writer_class,
        members[i["DBInstanceIdentifier"]].get("PromotionTier", i.get("PromotionTier", 15)),
        i["DBInstanceIdentifier"],
    ))
    return readers[0]


def failover(rds: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Make another instance the writer (Aurora), or force a Multi-AZ failover (single instance).

    params: cluster_id (Aurora) or instance_id (Multi-AZ instance), target_instance (optional),
    from_writer (optional: the writer when the incident started), incident_id, confirm,
    allow_remediation.
    Idempotency: Aurora — a writer other than `from_writer` means done; the cluster tag
    `incident-ops:failover` = "<incident_id> <from> <to>" makes a retry for the same incident a no-op;
    a cluster already `failing-over` is left alone. Instance — the instance tag
    `incident-ops:failover` = incident id; one forced-failover reboot per incident.
    """
    action = "rds_failover"
    incident_id = incident_token(params, action)
    require_remediation(params, check_mode, action)
    require_confirm(params, check_mode, action)
    cluster_id = params.get("cluster_id")
    if cluster_id:
        return _failover_cluster(rds, str(cluster_id), params, incident_id, check_mode)
    return _failover_instance(rds, str(require_param(params, "instance_id", action)), incident_id, check_mode)


def _failover_cluster(rds: Any, cluster_id: str, params: dict[str, Any], incident_id: str, check_mode: bool) -> Result:
    cluster = _cluster(rds, cluster_id)
    if cluster is None:
        raise ActionError(f"Aurora cluster {cluster_id!r} not found")
    writer = _writer(cluster)
    before = {"writer": writer, "status": cluster.get("Status")}
    record = _tags(rds, cluster["DBClusterArn"]).get(FAILOVER_TAG, "").split()
    if record and record[0] == incident_id:
        return Result(False, before, before,
                      f"{cluster_id}: already failed over for incident {incident_id} ({' -> '.join(record[1:])}); "
                      f"writer is {writer}", {"record": record, DONE_EARLIER: True}, check_mode)
    from_writer = params.get("from_writer")
    if from_writer and writer != from_writer:
        return Result(False, before, before,
                      f"{cluster_id}: writer is already {writer}, not {from_writer} (the writer when the incident "
                      "started)", {}, check_mode)
    if cluster.get("Status") == "failing-over":
        return Result(False, before, before, f"{cluster_id}: a failover is already in progress", {}, check_mode)

    target_id = params.get("target_instance")
    if target_id:
        members = {m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])}
        if target_id not in members:
            raise ActionError(f"{target_id!r} is not a member of cluster {cluster_id}")
        if target_id == writer:
            return Result(False, before, before, f"{cluster_id}: {target_id} is already the writer", {}, check_mode)
        target = _instance(rds, target_id) or {}
        if target.get("DBInstanceStatus") != "available":
            raise ActionError(f"{target_id} is {target.get('DBInstanceStatus')!r}, not available; cannot fail over to it")
    else:
        target_id = _best_reader(rds, cluster, writer)["DBInstanceIdentifier"]
    if check_mode:
        return Result(True, before, {"writer": target_id, "status": "failing-over"},
                      f"would fail over {cluster_id} from {writer} to {target_id}", {"target": target_id}, check_mode)
    rds.failover_db_cluster(DBClusterIdentifier=cluster_id, TargetDBInstanceIdentifier=target_id)
    rds.add_tags_to_resource(ResourceName=cluster["DBClusterArn"],
                             Tags=[{"Key": FAILOVER_TAG, "Value": f"{incident_id} {writer} {target_id}"}])
    now = _cluster(rds, cluster_id) or {}
    after = {"writer": _writer(now), "status": now.get("Status")}
    return Result(True, before, after, f"failed over {cluster_id} from {writer} to {target_id}",
                  {"target": target_id}, check_mode)


def _failover_instance(rds: Any, instance_id: str, incident_id: str, check_mode: bool) -> Result:
    inst = _instance(rds, instance_id)
    if inst is None:
        raise ActionError(f"DB instance {instance_id!r} not found")
    before = {
        "status": inst.get("DBInstanceStatus"),
        "availability_zone": inst.get("AvailabilityZone"),
        "secondary_availability_zone": inst.get("SecondaryAvailabilityZone"),
    }
    if _tags(rds, inst["DBInstanceArn"]).get(FAILOVER_TAG) == incident_id:
        return Result(False, before, before, f"{instance_id}: already failed over for incident {incident_id}",
                      {DONE_EARLIER: True}, check_mode)
    if not inst.get("MultiAZ"):
        raise ActionError(f"{instance_id} is not Multi-AZ: there is no standby to fail over to")
    if inst.get("DBInstanceStatus") != "available":
        raise ActionError(f"{instance_id} is {inst.get('DBInstanceStatus')!r}; a failover reboot needs 'available'")
    if check_mode:
        return Result(True, before, {**before, "status": "rebooting"},
                      f"would reboot {instance_id} with ForceFailover (Multi-AZ standby takes over)", {}, check_mode)
    rds.reboot_db_instance(DBInstanceIdentifier=instance_id, ForceFailover=True)
    rds.add_tags_to_resource(ResourceName=inst["DBInstanceArn"], Tags=[{"Key": FAILOVER_TAG, "Value": incident_id}])
    now = _instance(rds, instance_id) or {}
    after = {
        "status": now.get("DBInstanceStatus"),
        "availability_zone": now.get("AvailabilityZone"),
        "secondary_availability_zone": now.get("SecondaryAvailabilityZone"),
    }
    return Result(True, before, after, f"rebooted {instance_id} with ForceFailover", {}, check_mode)


# --- restore from a snapshot ----------------------------------------------------------------------


def restore_identifier(base: str, incident_id: str) -> str:
    """`<base>-restore-<short incident id>`, a valid RDS identifier (<= 63 chars, no `--`)."""
    short = re.sub(r"[^a-z0-9]+", "-", incident_id.lower()).strip("-")
    if not short or len(short) > 16:
        short = hashlib.sha256(incident_id.encode()).hexdigest()[:10]
    ident = re.sub(r"-{2,}", "-", f"{base}-restore-{short}")
    if len(ident) > 63:
        ident = f"{base[: 63 - len(short) - 9].rstrip('-')}-restore-{short}"
    return ident


def _newest(snapshots: list[dict[str, Any]]) -> dict[str, Any] | None:
    usable = [s for s in snapshots if s.get("Status") == "available"]
    return max(usable, key=lambda s: s["SnapshotCreateTime"]) if usable else None


def _cluster_snapshot(rds: Any, cluster_id: str, name: str) -> dict[str, Any]:
    if name and name != "latest":
        try:
            snaps = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=name)["DBClusterSnapshots"]
        except ClientError as exc:
            raise ActionError(f"cluster snapshot {name!r} not found: {exc}") from None
        snap = snaps[0] if snaps else None
        if snap is None or snap.get("DBClusterIdentifier") != cluster_id:
            raise ActionError(f"cluster snapshot {name!r} is not a snapshot of {cluster_id}")
        return snap
    snaps: list[dict[str, Any]] = []
    for page in rds.get_paginator("describe_db_cluster_snapshots").paginate(DBClusterIdentifier=cluster_id):
        snaps.extend(page.get("DBClusterSnapshots", []))
    snap = _newest(snaps)
    if snap is None:
        raise ActionError(f"no available snapshot of cluster {cluster_id}")
    return snap


def _instance_snapshot(rds: Any, instance_id: str, name: str) -> dict[str, Any]:
    if name and name != "latest":
        try:
            snaps = rds.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"]
        except ClientError as exc:
            raise ActionError(f"DB snapshot {name!r} not found: {exc}") from None
        snap = snaps[0] if snaps else None
        if snap is None or snap.get("DBInstanceIdentifier") != instance_id:
            raise ActionError(f"DB snapshot {name!r} is not a snapshot of {instance_id}")
        return snap
    snaps: list[dict[str, Any]] = []
    for page in rds.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=instance_id):
        snaps.extend(page.get("DBSnapshots", []))
    snap = _newest(snaps)
    if snap is None:
        raise ActionError(f"no available snapshot of DB instance {instance_id}")
    return snap


def restore_progress(rds: Any, wait: dict[str, Any]) -> dict[str, Any]:
    """One look at a started restore (`wait` = `details[WAIT_FOR]` of `start_restore`): the new cluster
    (when there is one), then its instance. {"state": "available", "endpoint"} when both are available;
    {"state": "failed", "message"} when one is in a failed state; else {"state": "pending", "what",
    "status"} naming the first one not available yet."""
    resources: list[tuple[str, Callable[[], dict[str, Any] | None], str]] = []
    if wait.get("cluster"):
        resources.append((f"cluster {wait['cluster']}", lambda: _cluster(rds, wait["cluster"]), "Status"))
    resources.append((f"instance {wait['instance']}", lambda: _instance(rds, wait["instance"]), "DBInstanceStatus"))
    endpoint = None
    for index, (what, read, status_key) in enumerate(resources):
        current = read() or {}
        status = current.get(status_key)
        if status in RESTORE_FAILED:
            return {"state": "failed", "what": what, "status": status, "message": f"{what} is {status!r}; the restore failed"}
        if status != "available":
            return {"state": "pending", "what": what, "status": status}
        if index == 0:
            endpoint = current.get("Endpoint")
    if not wait.get("cluster") and isinstance(endpoint, dict):
        endpoint = endpoint.get("Address")
    return {"state": "available", "endpoint": endpoint}


def timed_out(progress: dict[str, Any], waited: float, timeout: float) -> dict[str, Any]:
    """The outcome of a wait whose `timeout` passed while `progress` was still pending."""
    return {"state": "timeout", "message": f"{progress.get('what')} is still {progress.get('status')!r} after "
            f"{int(waited)}s (timeout_seconds={int(timeout)})"}


def wait_restore(rds: Any, wait: dict[str, Any], *, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll `restore_progress` every `wait["poll"]` seconds until it is not pending or `wait["timeout"]`
    seconds passed; the outcome for `finish_restore` (synchronous: the command line's wait)."""
    waited = 0.0
    timeout, poll = float(wait["timeout"]), float(wait["poll"])
    while True:
        progress = restore_progress(rds, wait)
        if progress["state"] != "pending":
            return progress
        if waited >= timeout:
            return timed_out(progress, waited, timeout)
        sleep(poll)
        waited += poll


def finish_restore(started: Result, outcome: dict[str, Any]) -> Result:
    """The step's result from a started restore (`start_restore`) and the wait's outcome
    (`restore_progress` when not pending, or `timed_out`). A failed or timed-out restore raises
    ActionError, as the synchronous wait always did."""
    if outcome.get("state") != "available":
        raise ActionError(str(outcome.get("message") or f"the restore ended {outcome.get('state')!r}"))
    wait = started.details[WAIT_FOR]
    details = {k: v for k, v in started.details.items() if k != WAIT_FOR}
    if wait.get("started"):
        details["endpoint"] = outcome.get("endpoint")
    return Result(started.changed, started.before, started.after, wait["message"], details, started.check_mode)


def start_restore(rds: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Start restoring the newest (or a named) snapshot into a NEW cluster/instance next to the existing one.

    params: cluster_id (Aurora) and/or instance_id, snapshot ("latest" or an identifier),
    restore_instance_class (default: the source's), incident_id, confirm, allow_remediation,
    timeout_seconds (1800), poll_seconds (30).
    New ids: `<cluster_id>-restore-<short incident id>` and `<instance_id>-restore-<short incident id>`.
    Idempotency: the new ids derive from the incident id; what exists already is not created again.
    The existing database is only read (never modified or deleted).
    Check mode returns the final result. Otherwise the result is provisional: `details[WAIT_FOR]` =
    {cluster, instance, timeout, poll, started, message} names what must become available; hand the
    wait's outcome to `finish_restore`.
    """
    action = "rds_restore_snapshot"
    incident_id = incident_token(params, action)
    instance_id = str(require_param(params, "instance_id", action))
    require_remediation(params, check_mode, action)
    require_confirm(params, check_mode, action)
    snapshot_name = str(params.get("snapshot") or "latest")
    timeout = float(params.get("timeout_seconds") or 1800)
    poll = float(params.get("poll_seconds") or 30)
    cluster_id = params.get("cluster_id")
    new_instance = restore_identifier(instance_id, incident_id)
    tags = [{"Key": RESTORE_TAG, "Value": incident_id}]

    def waiting(changed: bool, before: Any, after: Any, message: str, details: dict[str, Any], *,
                cluster: str | None, started: bool) -> Result:
        details[WAIT_FOR] = {"cluster": cluster, "instance": new_instance, "timeout": timeout, "poll": poll,
                             "started": started, "message": message}
        what = f"{cluster} ({new_instance})" if cluster else new_instance
        return Result(changed, before, after, f"restore of {what} started; waiting for it to be available "
                      f"(up to {int(timeout)}s)", details, check_mode)

    if cluster_id:
        cluster_id = str(cluster_id)
        source = _cluster(rds, cluster_id)
        if source is None:
            raise ActionError(f"Aurora cluster {cluster_id!r} not found")
        new_cluster = restore_identifier(cluster_id, incident_id)
        existing_cluster = _cluster(rds, new_cluster)
        existing_instance = _instance(rds, new_instance)
        before = {"cluster": existing_cluster and new_cluster, "instance": existing_instance and new_instance}
        if existing_cluster and existing_instance:
            message = f"{new_cluster} ({new_instance}) was already restored for incident {incident_id}"
            details = {"cluster": new_cluster, "instance": new_instance, DONE_EARLIER: True}
            if check_mode:
                return Result(False, before, before, message, details, check_mode)
            return waiting(False, before, before, message, details, cluster=new_cluster, started=False)
        snap = None if existing_cluster else _cluster_snapshot(rds, cluster_id, snapshot_name)
        snap_id = snap["DBClusterSnapshotIdentifier"] if snap else None
        writer = _instance(rds, _writer(source) or instance_id) or {}
        instance_class = params.get("restore_instance_class") or writer.get("DBInstanceClass")
        after = {"cluster": new_cluster, "instance": new_instance}
        details = {"snapshot": snap_id, "cluster": new_cluster, "instance": new_instance,
                   "instance_class": instance_class, "source_cluster": cluster_id}
        if check_mode:
            what = f"restore snapshot {snap_id} into new cluster {new_cluster}" if snap else f"complete {new_cluster}"
            return Result(True, before, after, f"would {what} with instance {new_instance} ({instance_class}); "
                          f"{cluster_id} is not touched", details, check_mode)
        if not existing_cluster:
            request: dict[str, Any] = {
                "DBClusterIdentifier": new_cluster,
                "SnapshotIdentifier": snap["DBClusterSnapshotIdentifier"],
                "Engine": snap.get("Engine") or source["Engine"],
                "Tags": tags,
            }
            if snap.get("EngineVersion"):
                request["EngineVersion"] = snap["EngineVersion"]
            if source.get("DBSubnetGroup"):
                request["DBSubnetGroupName"] = source["DBSubnetGroup"]
            sgs = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
            if sgs:
                request["VpcSecurityGroupIds"] = sgs
            rds.restore_db_cluster_from_snapshot(**request)
        if not existing_instance:
            if not instance_class:
                raise ActionError(f"{action}: no restore_instance_class given and none found on {cluster_id}")
            rds.create_db_instance(DBInstanceIdentifier=new_instance, DBClusterIdentifier=new_cluster,
                                   Engine=source["Engine"], DBInstanceClass=instance_class, Tags=tags)
        return waiting(True, before, after, f"restored snapshot {snap_id} into new cluster {new_cluster} (instance "
                       f"{new_instance}); {cluster_id} is untouched: switching the application over is a separate, "
                       "manual decision", details, cluster=new_cluster, started=True)

    source_instance = _instance(rds, instance_id)
    if source_instance is None:
        raise ActionError(f"DB instance {instance_id!r} not found")
    existing = _instance(rds, new_instance)
    before = {"instance": existing and new_instance}
    if existing:
        message = f"{new_instance} was already restored for incident {incident_id}"
        details = {"instance": new_instance, DONE_EARLIER: True}
        if check_mode:
            return Result(False, before, before, message, details, check_mode)
        return waiting(False, before, before, message, details, cluster=None, started=False)
    snap = _instance_snapshot(rds, instance_id, snapshot_name)
    instance_class = params.get("restore_instance_class") or source_instance.get("DBInstanceClass")
    after = {"instance": new_instance}
    details = {"snapshot": snap["DBSnapshotIdentifier"], "instance": new_instance, "instance_class": instance_class,
               "source_instance": instance_id}
    if check_mode:
        return Result(True, before, after, f"would restore snapshot {snap['DBSnapshotIdentifier']} into new instance "
                      f"{new_instance} ({instance_class}); {instance_id} is not touched", details, check_mode)
    request = {"DBInstanceIdentifier": new_instance, "DBSnapshotIdentifier": snap["DBSnapshotIdentifier"],
               "DBInstanceClass": instance_class, "Tags": tags}
    subnet_group = (source_instance.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
    if subnet_group:
        request["DBSubnetGroupName"] = subnet_group
    sgs = [g["VpcSecurityGroupId"] for g in source_instance.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
    if sgs:
        request["VpcSecurityGroupIds"] = sgs
    rds.restore_db_instance_from_db_snapshot(**request)
    return waiting(True, before, after, f"restored snapshot {snap['DBSnapshotIdentifier']} into new instance "
                   f"{new_instance}; {instance_id} is untouched: switching the application over is a separate, "
                   "manual decision", details, cluster=None, started=True)


def restore_snapshot(rds: Any, params: dict[str, Any], check_mode: bool = False, *,
                     sleep: Callable[[float], None] = time.sleep) -> Result:
    """Restore a snapshot into a NEW cluster/instance and wait here until it is available
    (`start_restore`, `wait_restore`, `finish_restore`): the break-glass command line's way.
    See `start_restore` for the params; a failed or timed-out restore raises ActionError."""
    started = start_restore(rds, params, check_mode)
    wait = started.details.get(WAIT_FOR)
    if wait is None:
        return started
    return finish_restore(started, wait_restore(rds, wait, sleep=sleep))
