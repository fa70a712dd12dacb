"""Phase 1's wait: someone starts the response (PagerDuty acknowledgement, or the ledger) by the deadline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

__all__ = ["AcknowledgementSensor"]


class AcknowledgementSensor(BaseSensorOperator):
    """Pokes PagerDuty and the ledger in reschedule mode (no worker slot held between pokes) until
    someone acknowledged or the severity's response-start deadline passes; then it is skipped
    (soft fail) and the escalation task takes over. Acknowledge in PagerDuty, or from the Airflow UI
    with the `incident_acknowledge` DAG."""

    template_fields: Sequence[str] = ("incident",)

    def __init__(self, *, incident: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("soft_fail", True)
        kwargs.setdefault("poke_interval", 15)
        super().__init__(**kwargs)
        self.incident = incident

    def execute(self, context: Any) -> Any:
        deadline = dt.datetime.fromisoformat(self.incident["response_deadline"])
        # The sensor's own timeout is the deadline, counted from the first poke of this run.
        self.timeout = max((deadline - dt.datetime.now(dt.UTC)).total_seconds(), 1.0)
        return super().execute(context)

    def poke(self, context: Any) -> PokeReturnValue:
        from incident_ops.incident_flow import acknowledgement

        found = acknowledgement(self.incident)
        return PokeReturnValue(is_done=found is not None, xcom_value=found)
