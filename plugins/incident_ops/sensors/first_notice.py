"""The escalation's first wait: the incident's own run has sent its first notices (deferrable)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout

from incident_ops.sensors.acknowledgement import DEFER_GRACE_SECONDS
from incident_ops.triggers.incident_waits import FirstNoticeTrigger

__all__ = ["FirstNoticeSensor"]


class FirstNoticeSensor(BaseSensorOperator):
    """Waits, deferred to the triggerer (no worker slot held), until the incident's run has notified and
    opened its channel (`incident_ops.flows.escalation.first_notice_sent`), so a raise tells nothing
    twice and misses nobody. `execute` looks once and returns at once when they went out; else it
    defers to `FirstNoticeTrigger` (the ledger every `poll` seconds). Not within `timeout_seconds`:
    AirflowSensorTimeout fails the task (no retry) and the raise does not run."""

    template_fields: Sequence[str] = ("incident_id",)

    def __init__(self, *, incident_id: str, timeout_seconds: float = 30 * 60, poll: float = 3.0,
                 **kwargs: Any) -> None:
        super().__init__(timeout=timeout_seconds, **kwargs)
        self.incident_id = incident_id
        self.timeout_seconds = timeout_seconds
        self.poll = poll

    def execute(self, context: Any) -> None:
        from incident_ops.flows.escalation import first_notice_sent

        if first_notice_sent(self.incident_id):
            return
        self.defer(
            trigger=FirstNoticeTrigger(self.incident_id, deadline=time.time() + self.timeout_seconds, poll=self.poll),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout_seconds + DEFER_GRACE_SECONDS),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        if event.get("first_notice"):
            return
        raise AirflowSensorTimeout(f"the first notices of {self.incident_id} were not sent within "
                                   f"{self.timeout_seconds:.0f} s (until {event.get('deadline')})")
