"""A scenario step's `when:` as an Airflow task: run the step (and ask for its approval) or skip it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from incident_ops.params import rendered_flag

__all__ = ["StepConditionOperator"]


class StepConditionOperator(BaseOperator):
    """Decides a conditional step (`incident_ops.core.recovery.decide_step`) before its approval.

    A ladder's next rung (`when: still_unhealthy`) first gives the service the runbook's
    `ladder.settle_seconds` to answer healthy `consecutive_healthy` times in a row, deferred to
    `HealthTrigger` (no worker slot held). Runs → the reason goes to XCom (the approval shows it);
    not needed → the reason is recorded in the ledger and the step (approval included) is skipped.
    In check mode the step always runs (a dry run reports everything it would do).
    """

    template_fields: Sequence[str] = ("environment", "incident_id", "check_mode")
    ui_color = "#e9c46a"

    def __init__(self, *, scenario: str, step_id: str, environment: str, incident_id: str,
                 check_mode: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.step_id = step_id
        self.environment = environment
        self.incident_id = incident_id
        self.check_mode = check_mode

    def execute(self, context: Any) -> dict[str, Any]:
        from incident_ops.core.recovery import needs_health
        from incident_ops.flows.incident import load, services_for
        from incident_ops.triggers.health import HealthTrigger

        runbook = load()
        step = runbook.scenario(self.scenario).step(self.step_id)
        if needs_health(step) and not rendered_flag(self.check_mode):
            settings = services_for(self.environment).settings
            ladder = runbook.ladder
            self.defer(
                trigger=HealthTrigger(url=settings.health_url, consecutive=ladder.consecutive_healthy,
                                      interval=ladder.interval_seconds, timeout=ladder.settle_seconds,
                                      verify=settings.verify),
                method_name="execute_complete",
                timeout=timedelta(seconds=ladder.settle_seconds + 60),
            )
        return self._decide(None)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        return self._decide(event)

    def _decide(self, health: dict[str, Any] | None) -> dict[str, Any]:
        from incident_ops.flows import recovery

        decision = recovery.decide(self.incident_id, self.scenario, self.step_id,
                                   check_mode=rendered_flag(self.check_mode), health=health)
        self.log.info("%s: %s", self.step_id, decision["reason"])
        if not decision["run"]:
            raise AirflowSkipException(decision["reason"])
        return decision
