"""The RDS restore's deferred wait: the new cluster and instance polled in the triggerer, against a
scripted RDS client: available, failed, timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from incident_ops.triggers import health
from incident_ops.triggers import rds as rds_trigger
from incident_ops.triggers.rds import RdsRestoreTrigger

CLUSTER = "peoplebooster-production-db-restore-inc-1"
INSTANCE = "peoplebooster-production-db-1-restore-inc-1"


class ScriptedRds:
    """describe_db_clusters/describe_db_instances answer the next status of their script (the last for ever)."""

    def __init__(self, clusters: list[str], instances: list[str]) -> None:
        self.clusters, self.instances = list(clusters), list(instances)
        self.calls: list[str] = []

    @staticmethod
    def _next(script: list[str]) -> str:
        return script.pop(0) if len(script) > 1 else script[0]

    def describe_db_clusters(self, DBClusterIdentifier: str) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        self.calls.append(f"cluster {DBClusterIdentifier}")
        return {"DBClusters": [{"DBClusterIdentifier": DBClusterIdentifier, "Status": self._next(self.clusters),
                                "Endpoint": f"{DBClusterIdentifier}.cluster.example"}]}

    def describe_db_instances(self, DBInstanceIdentifier: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(f"instance {DBInstanceIdentifier}")
        return {"DBInstances": [{"DBInstanceIdentifier": DBInstanceIdentifier,
                                 "DBInstanceStatus": self._next(self.instances),
                                 "Endpoint": {"Address": f"{DBInstanceIdentifier}.example", "Port": 5432}}]}


@pytest.fixture(autouse=True)
def no_first_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "MIN_FIRST_WAIT", 0.0)


def use(monkeypatch: pytest.MonkeyPatch, rds: ScriptedRds) -> ScriptedRds:
    environments: list[str] = []
    monkeypatch.setattr(rds_trigger, "rds_client", lambda environment: environments.append(environment) or rds)
    return rds


def first_event(trigger: RdsRestoreTrigger) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(go())


def trigger(*, cluster: str | None = CLUSTER, seconds: float = 30.0, poll: float = 0.02) -> RdsRestoreTrigger:
    return RdsRestoreTrigger("production", INSTANCE, cluster=cluster, deadline=time.time() + seconds,
                             timeout=seconds, poll=poll)


def test_fires_when_the_cluster_and_then_its_instance_are_available(monkeypatch: pytest.MonkeyPatch) -> None:
    rds = use(monkeypatch, ScriptedRds(["creating", "creating", "available"], ["creating", "available"]))
    event = first_event(trigger())
    assert event == {"state": "available", "endpoint": f"{CLUSTER}.cluster.example"}
    # the instance is read only once the cluster is available
    assert rds.calls == [f"cluster {CLUSTER}", f"cluster {CLUSTER}", f"cluster {CLUSTER}", f"instance {INSTANCE}",
                         f"cluster {CLUSTER}", f"instance {INSTANCE}"]


def test_an_instance_restore_reports_the_instance_address(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, ScriptedRds(["unused"], ["creating", "backing-up", "available"]))
    assert first_event(trigger(cluster=None)) == {"state": "available", "endpoint": f"{INSTANCE}.example"}


def test_fires_failed_when_the_restore_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, ScriptedRds(["available"], ["creating", "incompatible-restore"]))
    event = first_event(trigger())
    assert event["state"] == "failed"
    assert event["message"] == f"instance {INSTANCE} is 'incompatible-restore'; the restore failed"


def test_times_out_while_still_creating(monkeypatch: pytest.MonkeyPatch) -> None:
    rds = use(monkeypatch, ScriptedRds(["creating"], ["creating"]))
    started = time.monotonic()
    event = first_event(trigger(seconds=0.3, poll=0.05))
    assert event["state"] == "timeout"
    assert event["message"].startswith(f"cluster {CLUSTER} is still 'creating' after ")
    assert event["message"].endswith("(timeout_seconds=0)")
    assert 0.2 < time.monotonic() - started < 5 and len(rds.calls) >= 3


def test_serializes_to_its_plugin_import_path() -> None:
    path, kwargs = RdsRestoreTrigger("production", INSTANCE, cluster=CLUSTER, deadline=1e9, timeout=1800,
                                     poll=30).serialize()
    assert path == "incident_ops.triggers.rds.RdsRestoreTrigger"
    assert kwargs == {"environment": "production", "instance": INSTANCE, "cluster": CLUSTER, "deadline": 1e9,
                      "timeout": 1800.0, "poll": 30.0}
    assert RdsRestoreTrigger(**kwargs).serialize() == (path, kwargs)
