"""Deferrable wait of the RDS snapshot restore: the new cluster and its instance, polled in the
triggerer until available (no worker slot held for the up to 1800 s a restore may take).

The amazon provider's `RdsDbAvailableTrigger` does not fit as it is: it waits for one resource (a
restore here is a cluster and then its instance, one deadline for both), its async waiter builds an
aiobotocore client outside the project's AWS client settings (retries, the call log), and its failure
states differ from the synchronous wait's of the command line. So both waits read the same `incident_ops.actions.rds.restore_progress`, here with
the provider's AWS hook's client (`aws_default`, built as the task builds it) in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from incident_ops.triggers import health

__all__ = ["RdsRestoreTrigger", "rds_client"]


def rds_client(environment: str) -> Any:
    """The RDS client of `environment`, from the connections (the amazon provider's hook on `aws_default`)."""
    from incident_ops.flows.incident import services_for

    return services_for(environment).aws("rds")


class RdsRestoreTrigger(BaseTrigger):
    """Polls the restored cluster (when `cluster` is set) and instance every `poll` seconds. Fires once
    with the outcome `incident_ops.actions.rds.finish_restore` reads: {"state": "available",
    "endpoint"}, {"state": "failed", "message"} or, when `deadline` (epoch seconds) passes first,
    {"state": "timeout", "message"}. Importable from plugins/ (the triggerer loads it by its path)."""

    def __init__(self, environment: str, instance: str, *, cluster: str | None = None, deadline: float,
                 timeout: float, poll: float) -> None:
        super().__init__()
        self.environment = environment
        self.instance = instance
        self.cluster = cluster
        self.deadline = float(deadline)
        self.timeout = float(timeout)
        self.poll = float(poll)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "incident_ops.triggers.rds.RdsRestoreTrigger",
            {"environment": self.environment, "instance": self.instance, "cluster": self.cluster,
             "deadline": self.deadline, "timeout": self.timeout, "poll": self.poll},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from incident_ops.actions.rds import restore_progress, timed_out

        await asyncio.sleep(min(health.MIN_FIRST_WAIT, max(self.deadline - time.time(), 0.0)))
        rds = await asyncio.to_thread(rds_client, self.environment)
        wait = {"cluster": self.cluster, "instance": self.instance}
        while True:
            progress = await asyncio.to_thread(restore_progress, rds, wait)
            self.log.info("restore of %s: %s", self.cluster or self.instance, progress)
            if progress["state"] != "pending":
                yield TriggerEvent(progress)
                return
            left = self.deadline - time.time()
            if left <= 0:
                yield TriggerEvent(timed_out(progress, self.timeout - left, self.timeout))
                return
            await asyncio.sleep(min(self.poll, left))
