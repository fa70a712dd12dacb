"""Phase 1's wait: someone starts the response (PagerDuty acknowledgement, or the ledger) by the deadline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from incident_ops.triggers.incident_waits import AcknowledgementTrigger

__all__ = ["DEFER_GRACE_SECONDS", "AcknowledgementSensor", "seconds_until"]

# How long past its deadline a deferred wait may stay deferred before Airflow ends it itself (the
# triggerer down): the trigger fires at the deadline; this only bounds a lost trigger.
DEFER_GRACE_SECONDS = 120.0


def seconds_until(deadline: dt.datetime, start: dt.datetime) -> float:
    """The time left from `start` to the deadline, at least one second."""
    return max((deadline - start).total_seconds(), 1.0)


class AcknowledgementSensor(BaseSensorOperator):
    """Waits, deferred to the triggerer (no worker slot held), until someone acknowledged or the
    response-start deadline of the severity the incident has now passes (a later, higher alarm
    shortens it); then it is skipped (soft fail) and the escalation task takes over. Acknowledge in
    PagerDuty (its webhook records it in the ledger), or from the Airflow UI with the
    `incident_acknowledge` DAG.

    `execute` looks once (ledger, then PagerDuty): already acknowledged, it returns at once; past the
    deadline, it is skipped at once; else it defers to `AcknowledgementTrigger`, which reads the ledger
    every `poll` seconds and PagerDuty every `pagerduty_poll` seconds. XCom: {"by", "at", "source"}.
    """

    template_fields: Sequence[str] = ("incident",)

    def __init__(self, *, incident: Any, poll: float = 3.0, pagerduty_poll: float = 20.0, **kwargs: Any) -> None:
        kwargs.setdefault("soft_fail", True)
        super().__init__(**kwargs)
        self.incident = incident
        self.poll = poll
        self.pagerduty_poll = pagerduty_poll

    def execute(self, context: Any) -> dict[str, Any]:
        from incident_ops.flows.incident import acknowledgement, current_response_deadline

        found = acknowledgement(self.incident)
        if found is not None:
            return found
        deadline = current_response_deadline(self.incident)
        now = dt.datetime.now(dt.UTC)
        if deadline <= now:
            raise AirflowSkipException(f"nobody acknowledged {self.incident['id']} by {deadline.isoformat()}; "
                                       "the escalation takes over")
        self.defer(
            trigger=AcknowledgementTrigger(self.incident["id"], self.incident["environment"],
                                           deadline=deadline.timestamp(), poll=self.poll,
                                           pagerduty_poll=self.pagerduty_poll),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=seconds_until(deadline, now) + DEFER_GRACE_SECONDS),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("acknowledged"):
            return event["acknowledged"]
        raise AirflowSkipException(f"nobody acknowledged {self.incident['id']} by {event.get('deadline')}; "
                                   "the escalation takes over")
