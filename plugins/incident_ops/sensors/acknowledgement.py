"""Phase 1's wait: someone starts the response (PagerDuty acknowledgement, or the ledger) by the deadline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

__all__ = ["AcknowledgementSensor", "seconds_until"]


def seconds_until(deadline: dt.datetime, start: dt.datetime) -> float:
    """The sensor's timeout: from `start` (its first poke) to the deadline, at least one second."""
    return max((deadline - start).total_seconds(), 1.0)


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
        from incident_ops.flows.incident import current_response_deadline

        # The deadline of the incident's severity now (a later, higher alarm shortens it), counted
        # against the first poke: in reschedule mode Airflow measures the run from there.
        deadline = current_response_deadline(self.incident)
        first_poke = context["ti"].get_first_reschedule_date(context) if self.reschedule else None
        self.timeout = seconds_until(deadline, first_poke or dt.datetime.now(dt.UTC))
        return super().execute(context)

    def poke(self, context: Any) -> PokeReturnValue:
        from incident_ops.flows.incident import acknowledgement

        found = acknowledgement(self.incident)
        return PokeReturnValue(is_done=found is not None, xcom_value=found)
